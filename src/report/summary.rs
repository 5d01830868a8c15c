//! The summary card every renderer (HTML, Markdown, the dashboard) puts first: which model
//! replaced which, what happened to the rollout, who did it, when and why, the key evidence in
//! one line, and a banner for each check that blocks promotion.
//!
//! A pure function of the rest of the report, so the card can never say something the report's
//! sections do not. Figures come from the recorded (or recomputed) decision, i.e. "at decision".

use super::format as f;
use super::model::*;
use crate::gate::{Method, Verdict};

/// The card of `r` (see [`Summary`]).
pub fn summarize(r: &StageReport) -> Summary {
    let ro = &r.rollout;
    let models = format!(
        "stable {} → candidate {} (config v{})",
        ro.stable_model
            .as_deref()
            .unwrap_or("(model not known to this report)"),
        candidate_text(ro),
        ro.config_version
    );
    let stage_name = |i: u32| {
        r.ramp
            .iter()
            .find(|p| p.index == i)
            .map_or_else(String::new, |p| format!(" {}", p.name))
    };
    let last = ro.last_transition.as_ref();
    let by = |t: &TransitionRef| {
        format!(
            " by {}, {}, because {}",
            t.actor,
            f::time(t.at),
            because(t.gate_reason.as_deref().unwrap_or(&t.reason))
        )
    };
    let (status, what) = match ro.state.as_str() {
        "promoted" => {
            let at = last.map_or(ro.stage_index, |t| t.from_stage);
            (
                "promoted",
                format!(
                    "promoted after stage {at}{}{}",
                    stage_name(at),
                    last.map(by).unwrap_or_default()
                ),
            )
        }
        "rolled_back" => {
            let at = last.map_or(ro.stage_index, |t| t.from_stage);
            (
                "rolled_back",
                format!(
                    "rolled back at stage {at}{}{}",
                    stage_name(at),
                    last.map(by).unwrap_or_default()
                ),
            )
        }
        state => {
            let exposure = r
                .ramp
                .iter()
                .find(|p| p.index == ro.stage_index)
                .map(exposure_text)
                .unwrap_or_default();
            let last_move = last.map_or_else(String::new, |t| {
                format!("; last moved {} → {}{}", t.from_state, t.to_state, by(t))
            });
            (
                "running",
                format!(
                    "at stage {}{}{exposure} ({}){last_move}",
                    ro.stage_index,
                    stage_name(ro.stage_index),
                    state.replace('_', " ")
                ),
            )
        }
    };
    let headline = format!("{models}: {what}");
    let stage_line = stage_line(r);
    Summary {
        status: status.to_owned(),
        headline,
        stage_line,
        evidence: evidence_line(r),
        evidence_when: match r.decision.as_ref().map(|d| &d.transition) {
            Some(Some(t)) => format!("at decision, {}", f::time(t.at)),
            Some(None) => "recomputed now".to_owned(),
            None => String::new(),
        },
        banners: banners(r),
    }
}

fn candidate_text(ro: &RolloutInfo) -> String {
    match &ro.candidate_model {
        Some(m) if *m == ro.candidate => m.clone(),
        Some(m) => format!("{m} (variant {})", ro.candidate),
        None => format!("variant {} (model not known to this report)", ro.candidate),
    }
}

/// `, 10% live` or `, shadow: mirrored 100% / served 0%`.
pub(super) fn exposure_text(p: &RampPoint) -> String {
    match p.mode {
        StageMode::Shadow => format!(", shadow: {}", f::shadow_split(p.percent)),
        _ => format!(", {} live", f::percent(p.percent)),
    }
}

/// A reason without the action word the badge beside it already shows ("roll back: …"), and
/// the gate's rollback reason without its method and counts (the evidence line has them).
pub fn because(reason: &str) -> String {
    let mut s = reason.trim();
    // The state machine's own preamble ("rolled back at stage 1: …"), which the headline says.
    for preamble in [
        "rolled back at stage ",
        "promoted to stage ",
        "promoted at stage ",
    ] {
        if let Some(rest) = s.strip_prefix(preamble)
            && let Some(i) = rest.find(": ")
            && rest[..i].chars().all(|c| c.is_ascii_digit())
        {
            s = &rest[i + 2..];
            break;
        }
    }
    for prefix in ["roll back: ", "rollback: ", "promote: ", "hold: "] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest;
            break;
        }
    }
    if let Some(i) = s.find(" is worse than its bound ")
        && let Some(j) = s[i..].find(": ")
    {
        return s[..i + j].to_owned();
    }
    s.to_owned()
}

/// This stage's own decision, when the report is about a stage other than the one the
/// rollout's last move was made in (or the rollout has not moved since).
fn stage_line(r: &StageReport) -> Option<String> {
    let d = r.decision.as_ref()?;
    let last_stage = r.rollout.last_transition.as_ref().map(|t| t.from_stage);
    if last_stage == Some(r.stage.index) && d.transition.is_some() {
        return None;
    }
    let source = match &d.transition {
        Some(t) => format!(" by {}, {}", t.actor, f::time(t.at)),
        None => " (recomputed now; no decision was recorded)".to_owned(),
    };
    Some(format!(
        "This stage ({} {}): {}{source}, because {}",
        r.stage.index,
        r.stage.name,
        d.action,
        because(&d.reason)
    ))
}

/// A verdict as words (`non-inferior`, `insufficient data`).
pub fn verdict_words(v: Verdict) -> String {
    v.as_str()
        .replace('_', " ")
        .replace("non inferior", "non-inferior")
}

/// Each statistical gate metric's estimate, interval, bound and verdict, worst first, then the
/// judged pairs: `error_rate (all) +0.010 [−0.020, +0.040] vs bound +0.150: non-inferior · …`.
fn evidence_line(r: &StageReport) -> String {
    let Some(d) = &r.decision else {
        return format!(
            "no gate decision for this stage · {} judged pairs",
            r.judge.judged_pairs
        );
    };
    let rank = |v: Verdict| match v {
        Verdict::Worse | Verdict::Invalid | Verdict::Blocked => 0,
        Verdict::Inconclusive | Verdict::InsufficientData | Verdict::Deferred => 1,
        Verdict::NonInferior | Verdict::Passed => 2,
    };
    let mut rows: Vec<_> = d
        .evidence
        .iter()
        .filter(|e| !matches!(e.method, Method::ChiSquareSrm | Method::AbstentionRate))
        .collect();
    rows.sort_by_key(|e| (rank(e.verdict), e.cohort != "all"));
    let shown = 4;
    let mut parts: Vec<String> = rows
        .iter()
        .take(shown)
        .map(|e| {
            format!(
                "{} ({}) {} {} vs bound {}: {}",
                e.metric,
                e.cohort,
                e.estimate
                    .map_or_else(|| f::MISSING.to_owned(), |v| f::signed(v, 3)),
                f::interval(e.interval, 3),
                f::signed(e.bound, 3),
                verdict_words(e.verdict)
            )
        })
        .collect();
    if rows.len() > shown {
        parts.push(format!("{} more in the gate evidence", rows.len() - shown));
    }
    if parts.is_empty() {
        parts.push("no statistical evidence".to_owned());
    }
    parts.push(format!("{} judged pairs", r.judge.judged_pairs));
    parts.join(" · ")
}

/// One sentence per check that blocks promotion, and per alert of the decision.
fn banners(r: &StageReport) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(d) = &r.decision {
        for e in d.evidence.iter().filter(|e| e.verdict == Verdict::Blocked) {
            let what = match e.method {
                Method::ChiSquareSrm => "the traffic split does not match the configuration \
                                         (sample-ratio mismatch)"
                    .to_owned(),
                Method::AbstentionRate => format!(
                    "the judge abstained too often ({} above the limit {})",
                    f::pct(e.estimate),
                    f::pct(Some(e.bound))
                ),
                _ => format!("{} is blocked", e.metric),
            };
            let note = e
                .note
                .as_deref()
                .map_or_else(String::new, |n| format!(": {n}"));
            out.push(format!("Promotion blocked: {what}{note}"));
        }
        for a in &d.alerts {
            let line = format!("Alert: {}", a.message);
            if !out.contains(&line) {
                out.push(line);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn because_drops_the_action_word_and_the_method() {
        assert_eq!(
            because(
                "roll back: helpfulness in cohort all is worse than its bound -0.3000: \
                 asymptotic … (estimate -2)"
            ),
            "helpfulness in cohort all is worse than its bound -0.3000"
        );
        assert_eq!(because("promote: all 2 checks"), "all 2 checks");
        assert_eq!(because("e2e: by hand"), "e2e: by hand");
        assert_eq!(
            because("rolled back at stage 1: manual rollback: e2e: by hand"),
            "manual rollback: e2e: by hand"
        );
        assert_eq!(because("promoted to stage 2: ok"), "ok");
    }

    #[test]
    fn verdicts_read_as_words() {
        assert_eq!(verdict_words(Verdict::NonInferior), "non-inferior");
        assert_eq!(
            verdict_words(Verdict::InsufficientData),
            "insufficient data"
        );
    }
}
