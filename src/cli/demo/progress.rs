//! The demo's progress display: stage, candidate percentage, pairs judged, the current estimate
//! and interval per gate metric and cohort, and the gate's decision — redrawn in place about
//! once a second on a terminal, printed as one plain line per update otherwise.
//!
//! Owns: turning a rollout status into text (pure, tested here) and the redraw. Never: queries
//! anything itself.

use std::io::Write as _;

use crate::gate::{Action, Decision, Evidence, Verdict};
use crate::rollout::actions::RolloutStatus;

/// Everything one update shows.
#[derive(Debug, Clone)]
pub struct Snapshot<'a> {
    pub elapsed_secs: f64,
    pub status: &'a RolloutStatus,
    /// Pairs the judge has scored since the demo started.
    pub pairs_judged: u64,
    pub requests_sent: u64,
    pub requests_failed: u64,
}

fn action_word(a: Action) -> &'static str {
    match a {
        Action::Promote => "promote",
        Action::Hold => "hold",
        Action::Rollback => "roll back",
    }
}

/// `Δ -0.12 [-0.50, +0.26]`, or `–` when there is no estimate yet.
fn estimate_text(e: &Evidence) -> String {
    match (e.estimate, e.interval) {
        (Some(est), Some((lo, hi))) => format!("Δ {est:+.3} [{lo:+.3}, {hi:+.3}]"),
        (Some(est), None) => format!("Δ {est:+.3}"),
        _ => "–".to_owned(),
    }
}

/// The evidence lines worth showing: every gate metric's `all` cohort, and any cohort whose
/// verdict is worse.
fn shown(decision: &Decision) -> Vec<&Evidence> {
    decision
        .evidence
        .iter()
        .filter(|e| e.metric != "sample_ratio" && !e.metric.starts_with("judge_abstention"))
        .filter(|e| e.cohort == "all" || e.verdict == Verdict::Worse)
        .collect()
}

/// The header line: time, state, stage, percentage, pairs, requests, decision.
pub fn headline(s: &Snapshot<'_>) -> String {
    let time = format!("[{:>5.1}s]", s.elapsed_secs);
    let Some(r) = &s.status.rollout else {
        return format!("{time} waiting for the rollout to start");
    };
    let exposure = if r.mode == crate::vocab::Mode::Shadow {
        "shadow: every request mirrored to the candidate".to_owned()
    } else {
        format!("candidate serves {:.0}%", r.candidate_percent)
    };
    let decision = s
        .status
        .decision
        .as_ref()
        .map_or("–", |d| action_word(d.action));
    format!(
        "{time} {} · stage {}/{} `{}` · {exposure} · pairs judged {} · requests {} ({} failed) · gate: {decision}",
        r.state,
        (r.stage as usize + 1).min(r.stage_count),
        r.stage_count,
        r.stage_label,
        s.pairs_judged,
        s.requests_sent,
        s.requests_failed,
    )
}

/// One line per shown metric × cohort.
pub fn metric_lines(s: &Snapshot<'_>) -> Vec<String> {
    let Some(d) = &s.status.decision else {
        return Vec::new();
    };
    shown(d)
        .into_iter()
        .map(|e| {
            format!(
                "          {:<12} {:<16} {:<32} n={:<5} {}",
                e.metric,
                e.cohort,
                estimate_text(e),
                e.candidate_n,
                e.verdict.as_str()
            )
        })
        .collect()
}

/// The compact single line used when stdout is not a terminal.
pub fn plain_line(s: &Snapshot<'_>) -> String {
    let mut line = headline(s);
    if let Some(d) = &s.status.decision {
        for e in shown(d) {
            line.push_str(&format!(
                " · {} {} {}",
                e.metric,
                if e.cohort == "all" { "" } else { &e.cohort },
                estimate_text(e)
            ));
        }
    }
    line.replace("  ", " ")
}

/// Draws updates: in place on a terminal, line by line otherwise.
pub struct Display {
    tty: bool,
    drawn: usize,
}

impl Display {
    pub fn new(tty: bool) -> Self {
        Self { tty, drawn: 0 }
    }

    pub fn update(&mut self, s: &Snapshot<'_>) {
        let mut out = std::io::stdout().lock();
        if !self.tty {
            let _ = writeln!(out, "{}", plain_line(s));
            return;
        }
        if self.drawn > 0 {
            // Up over the previous block, then clear to the end of the screen.
            let _ = write!(out, "\x1b[{}A\x1b[J", self.drawn);
        }
        let mut lines = vec![headline(s)];
        lines.extend(metric_lines(s));
        for l in &lines {
            let _ = writeln!(out, "{l}");
        }
        self.drawn = lines.len();
        let _ = out.flush();
    }

    /// Keeps what is on screen and starts a new block below it (e.g. at a stage change).
    pub fn keep(&mut self) {
        self.drawn = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{Direction, Method};
    use crate::rollout::actions::RolloutView;

    fn evidence(metric: &str, cohort: &str, verdict: Verdict) -> Evidence {
        Evidence {
            metric: metric.into(),
            cohort: cohort.into(),
            estimate: Some(-1.5),
            interval: Some((-2.25, -1.125)),
            margin: 1.0,
            bound: -1.0,
            direction: Direction::HigherIsBetter,
            candidate_n: 42,
            stable_n: 42,
            method: Method::PairedCs,
            unit: Method::PairedCs.unit_of_analysis(),
            units: None,
            alpha: 0.01,
            verdict,
            note: None,
        }
    }

    fn status() -> RolloutStatus {
        RolloutStatus {
            deployment: "support-bot".into(),
            rollout: Some(RolloutView {
                id: "r".into(),
                candidate: "candidate".into(),
                state: "canary".into(),
                stage: 1,
                stage_count: 4,
                stage_label: "canary-1".into(),
                stage_started_at: chrono::Utc::now(),
                candidate_percent: 10.0,
                mode: crate::vocab::Mode::Live,
                config_version: 3,
                updated_at: chrono::Utc::now(),
            }),
            decision: Some(Decision {
                action: Action::Rollback,
                reason: "x".into(),
                evidence: vec![
                    evidence("helpfulness", "all", Verdict::Inconclusive),
                    evidence("helpfulness", "tier=enterprise", Verdict::Worse),
                    evidence("helpfulness", "tier=free", Verdict::Inconclusive),
                    evidence("sample_ratio", "all", Verdict::Passed),
                ],
                alerts: Vec::new(),
            }),
            live: Vec::new(),
        }
    }

    #[test]
    fn lines_show_stage_percent_pairs_estimates_and_decision() {
        let st = status();
        let s = Snapshot {
            elapsed_secs: 12.34,
            status: &st,
            pairs_judged: 321,
            requests_sent: 1000,
            requests_failed: 2,
        };
        let head = headline(&s);
        for needle in [
            "[ 12.3s]",
            "stage 2/4 `canary-1`",
            "candidate serves 10%",
            "pairs judged 321",
            "gate: roll back",
        ] {
            assert!(head.contains(needle), "{needle} not in {head}");
        }
        let lines = metric_lines(&s);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("helpfulness") && lines[0].contains("all"));
        assert!(lines[1].contains("tier=enterprise") && lines[1].contains("worse"));
        assert!(
            lines[1].contains("Δ -1.500 [-2.250, -1.125]"),
            "{}",
            lines[1]
        );
        let plain = plain_line(&s);
        assert!(!plain.contains('\n'));
        assert!(
            plain.contains("helpfulness tier=enterprise Δ -1.500"),
            "{plain}"
        );
    }
}
