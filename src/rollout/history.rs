//! Which of the gate's evaluations the controller records in the store's `gate_history`, for the
//! charts over time (each interval narrowing as data arrives).
//!
//! The gate re-evaluates every tick; recording each one would grow without bound. A cell (metric
//! × cohort) is recorded when its evidence changed and at least [`min_gap`] passed since its
//! last row — max(5 s, the stage's age / 40), so the rows thin out geometrically and a stage of
//! any length keeps a few hundred per cell — and always on its first evaluation, on a verdict
//! change, and on the first tick whose decision is not a hold (the decision that ends the stage,
//! so the last row is the evidence the transition records). The sample-ratio and abstention rows have
//! no interval and are not recorded.
//! Owns: that choice and the little memory it needs (the last row per cell of each deployment's
//! current stage; lost on restart, which costs one extra row per cell). Never: decides anything.
//! Pure: no I/O, no clock (the time comes in).

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::gate::{Action, Decision, Evidence, Method, Verdict};
use crate::store::GatePoint;

/// The shortest gap between two rows of one cell.
pub const MIN_GAP: Duration = Duration::seconds(5);

/// The gap after which a changed cell is recorded again, at stage age `age`.
pub fn min_gap(age: Duration) -> Duration {
    (age / 40).max(MIN_GAP)
}

/// What a cell last recorded.
#[derive(Debug, Clone, PartialEq)]
struct Last {
    at: DateTime<Utc>,
    numbers: [Option<f64>; 3],
    counts: (u64, u64),
    verdict: Verdict,
}

/// The last rows of one deployment's current stage.
#[derive(Debug, Default)]
struct StageMemory {
    rollout: Option<(Uuid, u32)>,
    /// The action of the last tick recorded as deciding (a stage awaiting approval keeps
    /// deciding "promote" every tick: only the first is a decision).
    action: Option<Action>,
    cells: HashMap<(String, String), Last>,
}

/// The controller's memory of what it recorded, per deployment.
#[derive(Debug, Default)]
pub struct HistoryRecorder {
    deployments: HashMap<String, StageMemory>,
}

/// Whether an evidence row has an interval to chart.
pub fn charted(e: &Evidence) -> bool {
    !matches!(e.method, Method::ChiSquareSrm | Method::AbstentionRate)
}

fn method_name(m: Method) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl HistoryRecorder {
    /// The rows to record for this tick's `decision` on stage `stage` of rollout `rollout`,
    /// which started at `stage_started_at`; remembers them as recorded.
    pub fn points(
        &mut self,
        deployment: &str,
        (rollout, stage): (Uuid, u32),
        stage_started_at: DateTime<Utc>,
        decision: &Decision,
        now: DateTime<Utc>,
    ) -> Vec<GatePoint> {
        let memory = self.deployments.entry(deployment.to_owned()).or_default();
        if memory.rollout != Some((rollout, stage)) {
            memory.rollout = Some((rollout, stage));
            memory.action = None;
            memory.cells.clear();
        }
        let gap = min_gap(now - stage_started_at);
        let deciding = decision.action != Action::Hold && memory.action != Some(decision.action);
        if deciding {
            memory.action = Some(decision.action);
        }
        let mut out = Vec::new();
        for e in decision.evidence.iter().filter(|e| charted(e)) {
            let (lo, hi) = e.interval.map_or((None, None), |(a, b)| (Some(a), Some(b)));
            let next = Last {
                at: now,
                numbers: [e.estimate, lo, hi],
                counts: (e.candidate_n, e.stable_n),
                verdict: e.verdict,
            };
            let key = (e.metric.clone(), e.cohort.clone());
            let record = match memory.cells.get(&key) {
                None => true,
                Some(last) => {
                    let changed = !same(&last.numbers, &next.numbers) || last.counts != next.counts;
                    deciding || last.verdict != next.verdict || (changed && now - last.at >= gap)
                }
            };
            if !record {
                continue;
            }
            out.push(GatePoint {
                rollout_id: rollout,
                deployment: deployment.to_owned(),
                stage_index: stage,
                metric: e.metric.clone(),
                cohort: e.cohort.clone(),
                at: now,
                estimate: e.estimate,
                lo,
                hi,
                bound: Some(e.bound),
                alpha: Some(e.alpha),
                method: method_name(e.method),
                verdict: e.verdict.as_str().to_owned(),
                candidate_n: e.candidate_n,
                stable_n: e.stable_n,
            });
            memory.cells.insert(key, next);
        }
        out
    }

    /// Forgets a deployment's stage (its rollout ended).
    pub fn forget(&mut self, deployment: &str) {
        self.deployments.remove(deployment);
    }
}

/// Equal numbers, NaN equal to NaN (an unbounded interval stays "unchanged").
fn same(a: &[Option<f64>; 3], b: &[Option<f64>; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| match (x, y) {
        (Some(x), Some(y)) => x == y || (x.is_nan() && y.is_nan()),
        (None, None) => true,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{AnalysisUnit, Direction};

    fn ev(metric: &str, n: u64, iv: Option<(f64, f64)>, verdict: Verdict) -> Evidence {
        Evidence {
            metric: metric.into(),
            cohort: "all".into(),
            estimate: iv.map(|(a, b)| (a + b) / 2.0),
            interval: iv,
            margin: 0.1,
            bound: -0.1,
            direction: Direction::HigherIsBetter,
            candidate_n: n,
            stable_n: n,
            method: Method::PairedDeltaCs,
            unit: AnalysisUnit::Unit,
            units: None,
            alpha: 0.01,
            verdict,
            note: None,
        }
    }

    fn decision(action: Action, evidence: Vec<Evidence>) -> Decision {
        Decision {
            action,
            reason: String::new(),
            evidence,
            alerts: vec![],
        }
    }

    #[test]
    fn cells_are_recorded_when_changed_at_most_once_per_gap_and_always_when_deciding() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let id = (Uuid::nil(), 1);
        let mut r = HistoryRecorder::default();
        let at = |s: i64| t0 + Duration::seconds(s);
        let hold = |n: u64, v: Verdict| {
            let iv = (n >= 10).then(|| (-1.0 / n as f64, 1.0 / n as f64));
            decision(Action::Hold, vec![ev("q", n, iv, v)])
        };
        let mut srm = ev("sample_ratio", 1, None, Verdict::Passed);
        srm.method = Method::ChiSquareSrm;
        let mut first = hold(1, Verdict::InsufficientData);
        first.evidence.push(srm);
        // First sight: recorded (the sample-ratio row never is).
        let p = r.points("d", id, t0, &first, at(1));
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].lo, p[0].hi, p[0].verdict.as_str()),
            (None, None, "insufficient_data")
        );
        // Unchanged: not recorded, whatever the time.
        assert!(
            r.points("d", id, t0, &hold(1, Verdict::InsufficientData), at(100))
                .is_empty()
        );
        // Changed within the gap (5 s at this age): not recorded.
        assert!(
            r.points("d", id, t0, &hold(2, Verdict::InsufficientData), at(3))
                .is_empty()
        );
        // A verdict change: recorded at once.
        assert_eq!(
            r.points("d", id, t0, &hold(10, Verdict::Inconclusive), at(4))
                .len(),
            1
        );
        // Changed, gap passed: recorded; then the gap grows with the stage's age.
        assert_eq!(
            r.points("d", id, t0, &hold(11, Verdict::Inconclusive), at(9))
                .len(),
            1
        );
        assert_eq!(min_gap(Duration::seconds(4000)), Duration::seconds(100));
        assert!(
            r.points("d", id, t0, &hold(12, Verdict::Inconclusive), at(4000))
                .len()
                == 1
        );
        assert!(
            r.points("d", id, t0, &hold(13, Verdict::Inconclusive), at(4050))
                .is_empty()
        );
        // The deciding tick: recorded even within the gap, with its interval; the same decision
        // again (a stage awaiting approval) is throttled like a hold.
        let end = |n: u64, lo: f64| {
            decision(
                Action::Promote,
                vec![ev("q", n, Some((lo, 0.07)), Verdict::NonInferior)],
            )
        };
        let p = r.points("d", id, t0, &end(14, -0.05), at(4051));
        assert_eq!((p[0].lo, p[0].hi), (Some(-0.05), Some(0.07)));
        assert_eq!(
            (p[0].method.as_str(), p[0].stage_index),
            ("paired_delta_cs", 1)
        );
        assert!(r.points("d", id, t0, &end(15, -0.04), at(4052)).is_empty());
        assert_eq!(r.points("d", id, t0, &end(16, -0.03), at(4200)).len(), 1);
        // A new stage starts afresh.
        assert_eq!(
            r.points(
                "d",
                (Uuid::nil(), 2),
                at(4051),
                &hold(1, Verdict::InsufficientData),
                at(4052)
            )
            .len(),
            1
        );
    }
}
