//! The rollout state machine: `draft → shadow → canary(i) → promoted | rolled_back`, plus
//! `paused` and `awaiting_approval`. Pure: `step(ramp, state, event, now)` returns the [`Transition`] (with its reason
//! and whether to alert); the controller persists it before acting on it.
//!
//! Rules: gate `promote` advances one stage (past the last stage: promoted); gate `rollback`,
//! a guardrail trip or a manual rollback roll back from any live state, paused included (a
//! paused rollout still serves candidate traffic); `hold` and `tick` check the stage's maximum
//! duration (`hold_and_alert` alerts once and stays, `rollback` rolls back); pausing freezes
//! the stage clock (resume shifts the stage start by the paused time) and ignores gate
//! promotions. A stage with `approval: required` does not advance on the gate's `promote`: it
//! moves to `awaiting_approval` (alerting once) and stays there — gate decisions and ticks wait,
//! the stage keeps its traffic — until a person approves (`Manual::Approve`, or a manual
//! promote, both admin actions) or something rolls it back. Terminal states refuse every event.
//! Never: reads clocks or stores anything. Fails closed: an event that does not apply is
//! refused with a reason, never guessed at.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ramp::{Exposure, OnTimeout, Ramp};
use crate::gate::Action;

/// The stage a rollout is in and since when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRun {
    pub stage: usize,
    /// Stage start, shifted forward by any time spent paused.
    pub entered_at: DateTime<Utc>,
    /// The maximum-duration alert already fired for this stage.
    pub timeout_alerted: bool,
}

impl StageRun {
    fn new(stage: usize, now: DateTime<Utc>) -> Self {
        Self {
            stage,
            entered_at: now,
            timeout_alerted: false,
        }
    }

    /// Time in the stage, paused time excluded.
    pub fn elapsed(&self, now: DateTime<Utc>) -> Duration {
        (now - self.entered_at).to_std().unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    Draft,
    Running(StageRun),
    Paused {
        run: StageRun,
        since: DateTime<Utc>,
    },
    /// The gate said promote on a stage that needs a person's approval; waiting since `since`.
    AwaitingApproval {
        run: StageRun,
        since: DateTime<Utc>,
    },
    Promoted {
        at: DateTime<Utc>,
    },
    RolledBack {
        at: DateTime<Utc>,
    },
}

/// The state as people name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Draft,
    Shadow,
    Canary(usize),
    Paused(usize),
    AwaitingApproval(usize),
    Promoted,
    RolledBack,
}

impl State {
    pub fn phase(&self, ramp: &Ramp) -> Phase {
        match self {
            State::Draft => Phase::Draft,
            State::Running(run) => match ramp.stages.get(run.stage).map(|s| s.exposure) {
                Some(Exposure::Shadow { .. }) => Phase::Shadow,
                _ => Phase::Canary(run.stage),
            },
            State::Paused { run, .. } => Phase::Paused(run.stage),
            State::AwaitingApproval { run, .. } => Phase::AwaitingApproval(run.stage),
            State::Promoted { .. } => Phase::Promoted,
            State::RolledBack { .. } => Phase::RolledBack,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, State::Promoted { .. } | State::RolledBack { .. })
    }
}

/// Actions a person can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Manual {
    Promote,
    Rollback,
    Pause,
    Resume,
    /// Approve a stage awaiting approval (advances like a promotion).
    Approve,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Leave draft for the first stage.
    Start { actor: String },
    /// The statistical gate's decision at a controller tick.
    Gate { action: Action, reason: String },
    /// A guardrail tripped.
    Guardrail { reason: String },
    /// A controller tick without a gate decision (checks the maximum duration).
    Tick,
    Manual {
        action: Manual,
        actor: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The state changed (another stage, paused, terminal).
    Moved,
    /// Same stage (possibly with its timeout alert now recorded).
    Stayed,
    /// The event does not apply to this state.
    Refused,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub outcome: Outcome,
    /// Who caused it: `gate`, `guardrail`, `controller` or the person's name.
    pub actor: String,
    pub reason: String,
    /// Fire an alert (rollback, stage timeout).
    pub alert: bool,
}

/// One step of the state machine. See the module header for the rules.
pub fn step(ramp: &Ramp, state: &State, event: &Event, now: DateTime<Utc>) -> Transition {
    let t = |to: State, outcome: Outcome, actor: &str, reason: String, alert: bool| Transition {
        from: state.clone(),
        to,
        outcome,
        actor: actor.to_owned(),
        reason,
        alert,
    };
    let refuse =
        |actor: &str, reason: String| t(state.clone(), Outcome::Refused, actor, reason, false);
    let stay =
        |actor: &str, reason: String| t(state.clone(), Outcome::Stayed, actor, reason, false);
    let (actor, rollback_reason) = match event {
        Event::Gate {
            action: Action::Rollback,
            reason,
        } => ("gate", Some(reason.clone())),
        Event::Guardrail { reason } => ("guardrail", Some(format!("guardrail tripped: {reason}"))),
        Event::Manual {
            action: Manual::Rollback,
            actor,
            reason,
        } => (actor.as_str(), Some(format!("manual rollback: {reason}"))),
        Event::Start { actor } | Event::Manual { actor, .. } => (actor.as_str(), None),
        Event::Gate { .. } => ("gate", None),
        Event::Tick => ("controller", None),
    };
    match state {
        State::Promoted { .. } | State::RolledBack { .. } => {
            refuse(actor, "the rollout is over; start a new one".to_owned())
        }
        State::Draft => match event {
            Event::Start { .. }
            | Event::Manual {
                action: Manual::Promote,
                ..
            } => t(
                State::Running(StageRun::new(0, now)),
                Outcome::Moved,
                actor,
                "rollout started at stage 0".to_owned(),
                false,
            ),
            Event::Manual { action, .. } => {
                refuse(actor, format!("cannot {action:?} a draft").to_lowercase())
            }
            _ => stay(actor, "draft: nothing is running".to_owned()),
        },
        State::Running(run) | State::Paused { run, .. } | State::AwaitingApproval { run, .. }
            if rollback_reason.is_some() =>
        {
            t(
                State::RolledBack { at: now },
                Outcome::Moved,
                actor,
                format!(
                    "rolled back at stage {}: {}",
                    run.stage,
                    rollback_reason.unwrap_or_default()
                ),
                true,
            )
        }
        State::Running(run) => match event {
            Event::Gate {
                action: Action::Promote,
                reason,
            } if ramp
                .stages
                .get(run.stage)
                .is_some_and(|s| s.approval_required) =>
            {
                t(
                    State::AwaitingApproval {
                        run: run.clone(),
                        since: now,
                    },
                    Outcome::Moved,
                    actor,
                    format!(
                        "stage {} awaits approval: the gate says promote: {reason}",
                        run.stage
                    ),
                    true,
                )
            }
            Event::Gate {
                action: Action::Promote,
                reason,
            }
            | Event::Manual {
                action: Manual::Promote,
                reason,
                ..
            } => advance(ramp, state, run, now, actor, reason),
            Event::Manual {
                action: Manual::Approve,
                ..
            } => refuse(
                actor,
                format!("stage {} is not awaiting approval", run.stage),
            ),
            Event::Gate { reason, .. } => timeout(ramp, state, run, now, actor, reason),
            Event::Tick => timeout(ramp, state, run, now, actor, "no gate decision"),
            Event::Manual {
                action: Manual::Pause,
                reason,
                ..
            } => t(
                State::Paused {
                    run: run.clone(),
                    since: now,
                },
                Outcome::Moved,
                actor,
                format!("paused at stage {}: {reason}", run.stage),
                false,
            ),
            Event::Manual {
                action: Manual::Resume,
                ..
            } => refuse(actor, "not paused".to_owned()),
            Event::Start { .. } => refuse(actor, "already started".to_owned()),
            Event::Manual {
                action: Manual::Rollback,
                ..
            }
            | Event::Guardrail { .. } => {
                refuse(actor, "unreachable: rollbacks are handled above".to_owned())
            }
        },
        State::AwaitingApproval { run, .. } => match event {
            Event::Manual {
                action: Manual::Approve | Manual::Promote,
                reason,
                ..
            } => {
                let mut tr = advance(ramp, state, run, now, actor, reason);
                tr.reason = format!("approved by {actor}: {}", tr.reason);
                tr
            }
            Event::Manual { action, .. } => refuse(
                actor,
                format!(
                    "stage {} awaits approval: approve or roll back (not {action:?})",
                    run.stage
                )
                .to_lowercase(),
            ),
            Event::Start { .. } => refuse(actor, "already started".to_owned()),
            _ => stay(
                actor,
                format!("stage {} awaits approval: gate decisions wait", run.stage),
            ),
        },
        State::Paused { run, since } => match event {
            Event::Manual {
                action: Manual::Resume,
                reason,
                ..
            } => {
                let paused_for = now - *since;
                let resumed = StageRun {
                    entered_at: run.entered_at + paused_for,
                    ..run.clone()
                };
                t(
                    State::Running(resumed),
                    Outcome::Moved,
                    actor,
                    format!(
                        "resumed stage {} after {}s paused: {reason}",
                        run.stage,
                        paused_for.num_seconds()
                    ),
                    false,
                )
            }
            Event::Manual {
                action: Manual::Promote | Manual::Approve,
                ..
            } => refuse(actor, "paused: resume before promoting".to_owned()),
            Event::Manual {
                action: Manual::Pause,
                ..
            } => refuse(actor, "already paused".to_owned()),
            Event::Start { .. } => refuse(actor, "already started".to_owned()),
            _ => stay(
                actor,
                format!("paused at stage {}: gate decisions wait", run.stage),
            ),
        },
    }
}

/// The next stage (past the last one: promoted).
fn advance(
    ramp: &Ramp,
    state: &State,
    run: &StageRun,
    now: DateTime<Utc>,
    actor: &str,
    reason: &str,
) -> Transition {
    let (to, what) = if run.stage + 1 < ramp.stages.len() {
        (
            State::Running(StageRun::new(run.stage + 1, now)),
            format!("promoted to stage {}", run.stage + 1),
        )
    } else {
        (
            State::Promoted { at: now },
            "promoted past the last stage: the candidate is the new stable".to_owned(),
        )
    };
    Transition {
        from: state.clone(),
        to,
        outcome: Outcome::Moved,
        actor: actor.to_owned(),
        reason: format!("{what}: {reason}"),
        alert: false,
    }
}

/// A hold (or tick) in a running stage: stays, unless the stage ran past its maximum duration.
fn timeout(
    ramp: &Ramp,
    state: &State,
    run: &StageRun,
    now: DateTime<Utc>,
    actor: &str,
    why: &str,
) -> Transition {
    let mut tr = Transition {
        from: state.clone(),
        to: state.clone(),
        outcome: Outcome::Stayed,
        actor: actor.to_owned(),
        reason: format!("hold at stage {}: {why}", run.stage),
        alert: false,
    };
    let Some(stage) = ramp.stages.get(run.stage) else {
        tr.outcome = Outcome::Refused;
        tr.reason = format!("stage {} is not in the ramp", run.stage);
        return tr;
    };
    let elapsed = run.elapsed(now);
    if elapsed < stage.max_duration {
        return tr;
    }
    let over = format!(
        "stage {} reached its maximum duration ({}s) without a verdict",
        run.stage,
        stage.max_duration.as_secs()
    );
    match stage.on_timeout {
        OnTimeout::Rollback => {
            tr.to = State::RolledBack { at: now };
            tr.outcome = Outcome::Moved;
            tr.actor = "controller".to_owned();
            tr.reason = format!("rolled back: {over}");
            tr.alert = true;
        }
        OnTimeout::HoldAndAlert if !run.timeout_alerted => {
            tr.to = State::Running(StageRun {
                timeout_alerted: true,
                ..run.clone()
            });
            tr.actor = "controller".to_owned();
            tr.reason = format!("holding and alerting: {over}");
            tr.alert = true;
        }
        OnTimeout::HoldAndAlert => {}
    }
    tr
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::ramp::Stage;
    use std::path::Path;

    fn ramp() -> Ramp {
        let yaml = "stages:\n  - { shadow: 20, min_duration: 1m, max_duration: 10m }\n  - { percent: 5, min_duration: 1m, max_duration: 10m, on_timeout: rollback }\n  - { percent: 100, min_duration: 1m, max_duration: 10m }\n";
        Ramp::from_yaml(Path::new("t.yaml"), yaml).unwrap()
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn running(stage: usize, since: i64) -> State {
        State::Running(StageRun::new(stage, at(since)))
    }

    fn gate(action: Action) -> Event {
        Event::Gate {
            action,
            reason: "evidence".into(),
        }
    }

    fn manual(action: Manual) -> Event {
        Event::Manual {
            action,
            actor: "ana".into(),
            reason: "because".into(),
        }
    }

    fn trip() -> Event {
        Event::Guardrail {
            reason: "error rate 0.2".into(),
        }
    }

    #[test]
    fn draft_starts_by_start_or_manual_promote_and_refuses_the_rest() {
        let r = ramp();
        for ev in [
            Event::Start {
                actor: "ana".into(),
            },
            manual(Manual::Promote),
        ] {
            let tr = step(&r, &State::Draft, &ev, at(0));
            assert_eq!(tr.outcome, Outcome::Moved);
            assert_eq!(tr.to, running(0, 0));
            assert_eq!(tr.to.phase(&r), Phase::Shadow);
            assert_eq!(tr.actor, "ana");
        }
        for m in [Manual::Rollback, Manual::Pause, Manual::Resume] {
            let tr = step(&r, &State::Draft, &manual(m), at(0));
            assert_eq!(tr.outcome, Outcome::Refused, "{m:?}");
            assert_eq!(tr.to, State::Draft);
        }
        for ev in [
            gate(Action::Promote),
            gate(Action::Rollback),
            trip(),
            Event::Tick,
        ] {
            assert_eq!(step(&r, &State::Draft, &ev, at(0)).outcome, Outcome::Stayed);
        }
    }

    #[test]
    fn gate_promote_advances_stage_by_stage_then_promotes() {
        let r = ramp();
        let tr = step(&r, &running(0, 0), &gate(Action::Promote), at(100));
        assert_eq!(tr.to, running(1, 100));
        assert_eq!(tr.to.phase(&r), Phase::Canary(1));
        assert!(tr.reason.contains("promoted to stage 1: evidence"));
        assert_eq!(tr.actor, "gate");
        let tr = step(&r, &running(1, 0), &manual(Manual::Promote), at(100));
        assert_eq!(tr.to, running(2, 100));
        assert_eq!(tr.actor, "ana");
        let tr = step(&r, &running(2, 0), &gate(Action::Promote), at(100));
        assert_eq!(tr.to, State::Promoted { at: at(100) });
        assert!(tr.reason.contains("new stable"));
        assert!(!tr.alert);
    }

    #[test]
    fn rollbacks_from_running_and_paused_alert() {
        let r = ramp();
        let paused = State::Paused {
            run: StageRun::new(1, at(0)),
            since: at(50),
        };
        for state in [running(1, 0), paused] {
            for (ev, actor) in [
                (gate(Action::Rollback), "gate"),
                (trip(), "guardrail"),
                (manual(Manual::Rollback), "ana"),
            ] {
                let tr = step(&r, &state, &ev, at(60));
                assert_eq!(tr.to, State::RolledBack { at: at(60) });
                assert_eq!(tr.outcome, Outcome::Moved);
                assert!(tr.alert);
                assert_eq!(tr.actor, actor);
                assert!(
                    tr.reason.starts_with("rolled back at stage 1"),
                    "{}",
                    tr.reason
                );
            }
        }
    }

    #[test]
    fn hold_and_tick_stay_until_the_maximum_duration() {
        let r = ramp();
        for ev in [gate(Action::Hold), Event::Tick] {
            let tr = step(&r, &running(0, 0), &ev, at(599));
            assert_eq!((tr.outcome, tr.alert), (Outcome::Stayed, false));
            assert_eq!(tr.to, running(0, 0));
        }
        // Stage 0 holds and alerts once at 10 minutes.
        let tr = step(&r, &running(0, 0), &gate(Action::Hold), at(600));
        assert_eq!((tr.outcome, tr.alert), (Outcome::Stayed, true));
        assert!(tr.reason.contains("maximum duration"));
        let State::Running(run) = &tr.to else {
            panic!("{:?}", tr.to)
        };
        assert!(run.timeout_alerted);
        let again = step(&r, &tr.to, &Event::Tick, at(700));
        assert_eq!((again.outcome, again.alert), (Outcome::Stayed, false));
        // ... and a promotion still moves on afterwards.
        assert_eq!(
            step(&r, &tr.to, &gate(Action::Promote), at(800)).to,
            running(1, 800)
        );
        // Stage 1 rolls back on timeout.
        let tr = step(&r, &running(1, 0), &Event::Tick, at(600));
        assert_eq!(tr.to, State::RolledBack { at: at(600) });
        assert!(tr.alert);
        assert_eq!(tr.actor, "controller");
    }

    #[test]
    fn pause_freezes_the_stage_clock_and_resume_shifts_it() {
        let r = ramp();
        let tr = step(&r, &running(1, 0), &manual(Manual::Pause), at(100));
        let paused = tr.to.clone();
        assert_eq!(paused.phase(&r), Phase::Paused(1));
        for ev in [gate(Action::Promote), gate(Action::Hold), Event::Tick] {
            let tr = step(&r, &paused, &ev, at(5000));
            assert_eq!(tr.outcome, Outcome::Stayed, "{ev:?}");
            assert_eq!(tr.to, paused);
        }
        for m in [Manual::Promote, Manual::Pause] {
            assert_eq!(
                step(&r, &paused, &manual(m), at(200)).outcome,
                Outcome::Refused
            );
        }
        assert_eq!(
            step(&r, &paused, &Event::Start { actor: "x".into() }, at(200)).outcome,
            Outcome::Refused
        );
        // Paused for 1000 s: the stage started at 0 now counts as started at 1000.
        let tr = step(&r, &paused, &manual(Manual::Resume), at(1100));
        assert_eq!(tr.to, running(1, 1000));
        let State::Running(run) = &tr.to else {
            panic!()
        };
        assert_eq!(run.elapsed(at(1100)), Duration::from_secs(100));
        // Running refuses resume and start.
        assert_eq!(
            step(&r, &running(1, 0), &manual(Manual::Resume), at(1)).outcome,
            Outcome::Refused
        );
        assert_eq!(
            step(
                &r,
                &running(1, 0),
                &Event::Start { actor: "x".into() },
                at(1)
            )
            .outcome,
            Outcome::Refused
        );
    }

    fn approval_ramp() -> Ramp {
        let yaml = "stages:\n  - { shadow: 20, min_duration: 1m, max_duration: 10m }\n  - { percent: 5, min_duration: 1m, max_duration: 10m, approval: required }\n  - { percent: 100, min_duration: 1m, max_duration: 10m, approval: required }\n";
        Ramp::from_yaml(Path::new("t.yaml"), yaml).unwrap()
    }

    #[test]
    fn an_approval_stage_holds_on_the_gates_promote_until_approved() {
        let r = approval_ramp();
        // Stage 0 has no approval: the gate's promote advances as usual.
        let tr = step(&r, &running(0, 0), &gate(Action::Promote), at(10));
        assert_eq!(tr.to, running(1, 10));
        // Stage 1 needs approval: the gate's promote holds it, alerting once.
        let tr = step(&r, &running(1, 0), &gate(Action::Promote), at(100));
        let waiting = State::AwaitingApproval {
            run: StageRun::new(1, at(0)),
            since: at(100),
        };
        assert_eq!(
            (tr.to.clone(), tr.outcome, tr.alert),
            (waiting.clone(), Outcome::Moved, true)
        );
        assert_eq!(tr.to.phase(&r), Phase::AwaitingApproval(1));
        assert!(tr.reason.contains("awaits approval"), "{}", tr.reason);
        // Gate decisions and ticks wait (no second alert), even past the maximum duration.
        for ev in [gate(Action::Promote), gate(Action::Hold), Event::Tick] {
            let tr = step(&r, &waiting, &ev, at(5000));
            assert_eq!(
                (tr.outcome, tr.alert, &tr.to),
                (Outcome::Stayed, false, &waiting),
                "{ev:?}"
            );
        }
        // Pause, resume and start are refused; approval advances, recorded with the person.
        for m in [Manual::Pause, Manual::Resume] {
            assert_eq!(
                step(&r, &waiting, &manual(m), at(200)).outcome,
                Outcome::Refused
            );
        }
        let tr = step(&r, &waiting, &manual(Manual::Approve), at(300));
        assert_eq!(
            (tr.to, tr.outcome, tr.alert),
            (running(2, 300), Outcome::Moved, false)
        );
        assert_eq!(tr.actor, "ana");
        assert!(
            tr.reason
                .starts_with("approved by ana: promoted to stage 2"),
            "{}",
            tr.reason
        );
        // A manual promote by an admin is an approval too; the last stage approves to promoted.
        let last = State::AwaitingApproval {
            run: StageRun::new(2, at(0)),
            since: at(10),
        };
        let tr = step(&r, &last, &manual(Manual::Promote), at(20));
        assert_eq!(tr.to, State::Promoted { at: at(20) });
        // Rollbacks still apply while waiting (the candidate still serves the stage).
        for ev in [gate(Action::Rollback), trip(), manual(Manual::Rollback)] {
            let tr = step(&r, &waiting, &ev, at(400));
            assert_eq!((tr.to, tr.alert), (State::RolledBack { at: at(400) }, true));
        }
        // Approve applies only to a waiting stage.
        for state in [running(1, 0), State::Draft] {
            assert_eq!(
                step(&r, &state, &manual(Manual::Approve), at(1)).outcome,
                Outcome::Refused
            );
        }
        // A manual promote of a running approval stage needs no second approval.
        assert_eq!(
            step(&r, &running(1, 0), &manual(Manual::Promote), at(5)).to,
            running(2, 5)
        );
    }

    #[test]
    fn terminal_states_refuse_everything() {
        let r = ramp();
        for state in [
            State::Promoted { at: at(0) },
            State::RolledBack { at: at(0) },
        ] {
            assert!(state.is_terminal());
            for ev in [
                Event::Start { actor: "a".into() },
                gate(Action::Promote),
                gate(Action::Rollback),
                trip(),
                Event::Tick,
                manual(Manual::Promote),
                manual(Manual::Rollback),
                manual(Manual::Pause),
                manual(Manual::Resume),
            ] {
                let tr = step(&r, &state, &ev, at(10));
                assert_eq!(tr.outcome, Outcome::Refused);
                assert_eq!(tr.to, state);
            }
        }
    }

    #[test]
    fn a_stage_outside_the_ramp_is_refused_and_state_round_trips_as_json() {
        let r = Ramp {
            stages: vec![Stage {
                ..ramp().stages[0].clone()
            }],
        };
        let tr = step(&r, &running(5, 0), &Event::Tick, at(10));
        assert_eq!(tr.outcome, Outcome::Refused);
        let s = State::Paused {
            run: StageRun::new(2, at(0)),
            since: at(5),
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<State>(&json).unwrap(), s);
    }
}
