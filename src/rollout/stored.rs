//! The mapping between stored rollouts and the state machine, and from a state to live traffic.
//!
//! The store keeps a rollout as a state name, a stage index and the stage's start, plus the
//! audit log. [`machine_state`] rebuilds the machine's [`State`] from them — time spent paused
//! in the stage and whether the stage's timeout alert already fired are read back from the log —
//! so a restarted controller resumes exactly where the last one was. [`traffic_for`] says what
//! traffic a state means. Pure: no I/O, no clocks.

use chrono::{DateTime, Duration as ChronoDuration, Utc};

use super::{Exposure, Ramp, StageRun, State};
use crate::config::Deployment;
use crate::routing::{BUCKETS, TrafficState};
use crate::store::{Rollout, Transition};
use crate::vocab::Mode;

pub const DRAFT: &str = "draft";
pub const SHADOW: &str = "shadow";
pub const CANARY: &str = "canary";
pub const PAUSED: &str = "paused";
pub const AWAITING_APPROVAL: &str = "awaiting_approval";
pub const PROMOTED: &str = "promoted";
pub const ROLLED_BACK: &str = "rolled_back";

/// `evidence.kind` of the audit entry written when a stage's timeout alert fires.
pub const KIND_STAGE_TIMEOUT: &str = "stage_timeout";

/// The stored name of a state.
pub fn state_name(state: &State, ramp: &Ramp) -> &'static str {
    match state {
        State::Draft => DRAFT,
        State::Running(run) => match ramp.stages.get(run.stage).map(|s| s.exposure) {
            Some(Exposure::Shadow { .. }) => SHADOW,
            _ => CANARY,
        },
        State::Paused { .. } => PAUSED,
        State::AwaitingApproval { .. } => AWAITING_APPROVAL,
        State::Promoted { .. } => PROMOTED,
        State::RolledBack { .. } => ROLLED_BACK,
    }
}

/// Whether a stored state is still in progress (the controller looks after it).
pub fn is_active(name: &str) -> bool {
    matches!(name, DRAFT | SHADOW | CANARY | PAUSED | AWAITING_APPROVAL)
}

/// The stage index a state is at (terminal states keep the last stage).
pub fn stage_of(state: &State) -> Option<usize> {
    match state {
        State::Running(run) | State::Paused { run, .. } | State::AwaitingApproval { run, .. } => {
            Some(run.stage)
        }
        _ => None,
    }
}

/// The label observations of stage `stage` carry (`x-canarist-stage`, the summary scope).
pub fn stage_label(ramp: &Ramp, stage: usize) -> String {
    match ramp.stages.get(stage).map(|s| s.exposure) {
        Some(Exposure::Shadow { .. }) => "shadow".to_owned(),
        _ => format!("canary-{stage}"),
    }
}

/// The machine state of a stored rollout, given its audit log (oldest first).
pub fn machine_state(rollout: &Rollout, log: &[Transition]) -> State {
    let stage = rollout.stage_index;
    let started = rollout.stage_started_at;
    let in_stage: Vec<&Transition> = log
        .iter()
        .filter(|t| t.at >= started && t.from_stage == stage && t.to_stage == stage)
        .collect();
    let mut paused_total = ChronoDuration::zero();
    let mut paused_since: Option<DateTime<Utc>> = None;
    for t in &in_stage {
        if t.to_state == PAUSED && t.from_state != PAUSED {
            paused_since = Some(t.at);
        } else if t.from_state == PAUSED
            && t.to_state != PAUSED
            && let Some(since) = paused_since.take()
        {
            paused_total += t.at - since;
        }
    }
    let timeout_alerted = in_stage
        .iter()
        .any(|t| t.evidence.get("kind").and_then(|k| k.as_str()) == Some(KIND_STAGE_TIMEOUT));
    let run = StageRun {
        stage: stage as usize,
        entered_at: started + paused_total,
        timeout_alerted,
    };
    match rollout.state.as_str() {
        DRAFT => State::Draft,
        PAUSED => State::Paused {
            run,
            since: paused_since.unwrap_or(rollout.updated_at),
        },
        AWAITING_APPROVAL => State::AwaitingApproval {
            run,
            since: rollout.updated_at,
        },
        PROMOTED => State::Promoted {
            at: rollout.updated_at,
        },
        ROLLED_BACK => State::RolledBack {
            at: rollout.updated_at,
        },
        _ => State::Running(run),
    }
}

/// Buckets (0.01% steps) for a share in (0, 1].
fn buckets(share: f64) -> u16 {
    (share * f64::from(BUCKETS))
        .round()
        .clamp(0.0, f64::from(BUCKETS)) as u16
}

/// The traffic a state means for `base` (the deployment as configured, with one candidate):
/// a stage's exposure while running or paused (a paused rollout keeps serving its stage);
/// the candidate as the new stable once promoted; no candidate traffic at all once rolled back.
pub fn traffic_for(base: &Deployment, ramp: &Ramp, state: &State) -> TrafficState {
    let mut t = TrafficState::of(base);
    let set_share = |t: &mut TrafficState, b: u16| {
        for c in &mut t.candidates {
            c.buckets = b;
        }
    };
    match state {
        State::Draft => {
            t.mode = Mode::Off;
            t.stage = DRAFT.to_owned();
            set_share(&mut t, 0);
        }
        State::Running(run) | State::Paused { run, .. } | State::AwaitingApproval { run, .. } => {
            t.stage = stage_label(ramp, run.stage);
            t.exclude_cohorts = ramp
                .stages
                .get(run.stage)
                .map(|s| s.exclude_cohorts.clone())
                .unwrap_or_default();
            match ramp.stages.get(run.stage).map(|s| s.exposure) {
                Some(Exposure::Shadow { sample_rate }) => {
                    t.mode = Mode::Shadow;
                    set_share(&mut t, buckets(sample_rate));
                }
                Some(Exposure::Live { share }) => {
                    t.mode = Mode::Live;
                    set_share(&mut t, buckets(share));
                }
                None => {
                    t.mode = Mode::Off;
                    set_share(&mut t, 0);
                }
            }
        }
        State::Promoted { .. } => {
            if let Some(c) = t.candidates.first() {
                t.stable = c.variant.clone();
            }
            t.candidates.clear();
            t.mode = Mode::Off;
            t.stage = PROMOTED.to_owned();
        }
        State::RolledBack { .. } => {
            t.mode = Mode::Off;
            t.stage = ROLLED_BACK.to_owned();
            set_share(&mut t, 0);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::TimeZone;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    fn ramp() -> Ramp {
        Ramp::from_yaml(
            Path::new("r.yaml"),
            "stages:\n  - { shadow: 20 }\n  - { percent: 5 }\n  - { percent: 50 }\n",
        )
        .unwrap()
    }

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn rollout(state: &str, stage: u32, started: i64, updated: i64) -> Rollout {
        Rollout {
            id: Uuid::nil(),
            deployment: "d".into(),
            candidate: "c".into(),
            state: state.into(),
            stage_index: stage,
            stage_started_at: at(started),
            config_version: 1,
            created_at: at(0),
            updated_at: at(updated),
        }
    }

    fn tr(from: &str, to: &str, stage: u32, t: i64, kind: Option<&str>) -> Transition {
        Transition {
            id: t,
            rollout_id: Uuid::nil(),
            from_state: from.into(),
            to_state: to.into(),
            from_stage: stage,
            to_stage: stage,
            actor: "a".into(),
            reason: "r".into(),
            evidence: kind.map_or(serde_json::Value::Null, |k| json!({ "kind": k })),
            config_version: 1,
            at: at(t),
        }
    }

    #[test]
    fn paused_time_and_timeout_alert_are_read_back_from_the_log() {
        // Stage 1 entered at 100, paused 110–140, alert at 200, paused again since 300.
        let log = vec![
            tr(SHADOW, CANARY, 1, 100, None),
            tr(CANARY, PAUSED, 1, 110, None),
            tr(PAUSED, CANARY, 1, 140, None),
            tr(CANARY, CANARY, 1, 200, Some(KIND_STAGE_TIMEOUT)),
            tr(CANARY, PAUSED, 1, 300, None),
        ];
        let s = machine_state(&rollout(PAUSED, 1, 100, 300), &log);
        let State::Paused { run, since } = s else {
            panic!("{s:?}")
        };
        assert_eq!(since, at(300));
        assert_eq!(run.stage, 1);
        assert_eq!(run.entered_at, at(130), "30 s paused shift the start");
        assert!(run.timeout_alerted);
        // The same log one stage earlier (entries before the stage start are ignored).
        let s = machine_state(&rollout(CANARY, 2, 400, 400), &log);
        assert_eq!(
            s,
            State::Running(StageRun {
                stage: 2,
                entered_at: at(400),
                timeout_alerted: false
            })
        );
        assert_eq!(
            machine_state(&rollout(ROLLED_BACK, 2, 400, 500), &log),
            State::RolledBack { at: at(500) }
        );
    }

    #[test]
    fn traffic_follows_the_state() {
        let c = crate::config::Config::from_yaml(
            Path::new("c.yaml"),
            "providers: { p: { base_url: http://x/v1 } }\ndeployments:\n  - slug: d\n    stable: { provider: p, model: old }\n    candidates: [{ name: cand, provider: p, model: new }]\n",
            &|_| None,
        )
        .unwrap();
        let base = c.deployment("d").unwrap();
        let r = ramp();
        let run = |stage| StageRun {
            stage,
            entered_at: at(0),
            timeout_alerted: false,
        };
        let t = traffic_for(base, &r, &State::Running(run(0)));
        assert_eq!((t.mode, t.stage.as_str()), (Mode::Shadow, "shadow"));
        assert_eq!(t.candidates[0].buckets, 2000);
        let t = traffic_for(base, &r, &State::Running(run(1)));
        assert_eq!((t.mode, t.stage.as_str()), (Mode::Live, "canary-1"));
        assert_eq!(t.candidates[0].buckets, 500);
        let paused = State::Paused {
            run: run(2),
            since: at(5),
        };
        assert_eq!(traffic_for(base, &r, &paused).candidates[0].buckets, 5000);
        let t = traffic_for(base, &r, &State::RolledBack { at: at(9) });
        assert_eq!(t.mode, Mode::Off);
        assert_eq!(t.candidates[0].buckets, 0);
        let t = traffic_for(base, &r, &State::Promoted { at: at(9) });
        assert_eq!(t.stable.model, "new");
        assert!(t.candidates.is_empty());
        assert_eq!(state_name(&State::Running(run(0)), &r), SHADOW);
        assert_eq!(state_name(&State::Running(run(2)), &r), CANARY);
        // Awaiting approval keeps the stage's traffic and reads back from the store.
        let waiting = State::AwaitingApproval {
            run: run(1),
            since: at(0),
        };
        assert_eq!(traffic_for(base, &r, &waiting).candidates[0].buckets, 500);
        assert_eq!(state_name(&waiting, &r), AWAITING_APPROVAL);
        assert!(is_active(AWAITING_APPROVAL));
        assert_eq!(
            machine_state(&rollout(AWAITING_APPROVAL, 1, 0, 0), &[]),
            waiting
        );
    }
}
