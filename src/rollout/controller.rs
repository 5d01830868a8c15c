//! The rollout controller: on the leader replica only, every `controller.tick`, for each
//! deployment with a rollout in progress: read the current stage's aggregates from the store,
//! convert them (`crate::gate_input`), ask the gate, step the state machine with its decision, and
//! persist and apply the result (`actions::apply_expecting`).
//!
//! Leadership is the store's [`Leadership`] (a Postgres advisory lock; SQLite always leads), so
//! exactly one replica drives rollouts and another takes over when it dies. Everything the
//! controller knows lives in the store (the stage, its start, paused time, whether its timeout
//! alert fired), so a restarted or new leader resumes the same stage with the data accumulated
//! so far. A stage past its maximum duration without a verdict holds and alerts once (or rolls
//! back, per the ramp). Gate holds are not written to the audit log (they would flood it);
//! `actions::status` recomputes the current decision on demand. The evaluations go to the
//! store's `gate_history` instead, thinned by `history` (the charts over time); a failure to
//! write them is logged and changes nothing else (they are for display).
//! Owns: the loop and its leadership. Never: decides (the gate and the state machine do).
//! Fails closed: a tick that cannot read or persist changes nothing and is retried next tick.

use std::collections::BTreeSet;

use chrono::Utc;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::actions::{self, RolloutCtx, RolloutError};
use super::alerts::{AlertEvent, AlertMessage, Failing};
use super::history::HistoryRecorder;
use super::stored::{self, machine_state};
use super::{Event, State};
use crate::gate::{Action, Decision, Verdict};
use crate::gate_input;
use crate::store::{CONTROLLER_LOCK_KEY, Leadership, Rollout, SummaryScope};
use crate::telemetry::RolloutMetrics;

/// What one tick did for one deployment.
#[derive(Debug)]
pub struct TickOutcome {
    pub deployment: String,
    /// The gate's decision, when a gate policy exists and the rollout was running.
    pub decision: Option<Decision>,
    /// The rollout after the tick (`Err` when reading or persisting failed).
    pub result: Result<Rollout, RolloutError>,
}

/// The controller's memory between ticks (only what may be lost on restart: alert dedup).
pub struct Controller {
    ctx: RolloutCtx,
    metrics: Option<RolloutMetrics>,
    /// (rollout, stage) whose sample-ratio mismatch was already alerted.
    srm_alerted: BTreeSet<(Uuid, u32)>,
    /// What was last recorded in the gate's history, per deployment.
    history: HistoryRecorder,
}

impl Controller {
    /// `metrics`: this process's gate-decision counters, when it exports metrics. The traffic
    /// it reloads at once after a change is `ctx.traffic`.
    pub fn new(ctx: RolloutCtx, metrics: Option<RolloutMetrics>) -> Self {
        Self {
            ctx,
            metrics,
            srm_alerted: BTreeSet::new(),
            history: HistoryRecorder::default(),
        }
    }

    /// One pass over every deployment with a ramp.
    pub async fn tick(&mut self) -> Vec<TickOutcome> {
        let slugs: Vec<String> = self.ctx.config.rollouts.keys().cloned().collect();
        let mut out = Vec::new();
        for slug in slugs {
            match self.tick_deployment(&slug).await {
                Ok(None) => {}
                Ok(Some((decision, result))) => {
                    out.push(TickOutcome {
                        deployment: slug,
                        decision,
                        result,
                    });
                }
                Err(e) => out.push(TickOutcome {
                    deployment: slug,
                    decision: None,
                    result: Err(e),
                }),
            }
        }
        for o in &out {
            if let Err(error) = &o.result
                && !matches!(error, RolloutError::Conflict(_))
            {
                tracing::warn!(deployment = %o.deployment, %error, "controller tick failed");
            }
        }
        out
    }

    async fn tick_deployment(
        &mut self,
        slug: &str,
    ) -> Result<Option<(Option<Decision>, Result<Rollout, RolloutError>)>, RolloutError> {
        let ctx = self.ctx.clone();
        let ctx = &ctx;
        let Some(r) = actions::active_rollout(&ctx.store, slug).await? else {
            self.history.forget(slug);
            return Ok(None);
        };
        let log = ctx.store.transitions(r.id).await?;
        let run = match machine_state(&r, &log) {
            // Awaiting approval: the candidate still serves, so a rollback still applies (a
            // promote or hold stays). Paused: decisions wait. Draft: nothing runs yet.
            State::Running(run) | State::AwaitingApproval { run, .. } => run,
            _ => return Ok(None),
        };
        let (_, settings) = actions::settings(ctx, slug)?;
        let Some(stage) = settings.ramp.stages.get(run.stage) else {
            return Ok(None);
        };
        let now = Utc::now();
        let (event, evidence, decision) = match &settings.gate {
            None => (
                Event::Tick,
                json!({ "kind": "tick", "note": "no gate policy: promotion is manual" }),
                None,
            ),
            Some(policy) => {
                let label = stored::stage_label(&settings.ramp, run.stage);
                let summary = ctx
                    .store
                    .stage_summary(SummaryScope {
                        deployment: slug,
                        stage: &label,
                        since: r.stage_started_at,
                    })
                    .await?;
                let decision = gate_input::decide(policy, stage, run.elapsed(now), &summary);
                let failing = decision
                    .evidence
                    .iter()
                    .find(|e| e.verdict == Verdict::Worse)
                    .map(|e| Failing {
                        metric: e.metric.clone(),
                        cohort: e.cohort.clone(),
                        evidence: serde_json::to_value(e).unwrap_or_default(),
                    });
                let evidence = json!({
                    "kind": "gate",
                    "decision": decision,
                    "failing": failing,
                });
                let event = Event::Gate {
                    action: decision.action,
                    reason: decision.reason.clone(),
                };
                (event, evidence, Some(decision))
            }
        };
        if let Some(d) = &decision {
            self.srm_alert(&r, d);
            let points =
                self.history
                    .points(slug, (r.id, r.stage_index), r.stage_started_at, d, now);
            if let Err(error) = ctx.store.record_gate_points(&points).await {
                tracing::warn!(deployment = slug, %error, "gate history not recorded");
            }
            if let Some(m) = &self.metrics {
                m.gate_decisions
                    .get_or_create(&crate::telemetry::GateLabels {
                        deployment: slug.to_owned(),
                        action: super::metrics::action_label(d.action),
                    })
                    .inc();
            }
        }
        let result = actions::apply_expecting(ctx, slug, Some(&r), &event, evidence).await;
        if let (Some(d), Ok(after)) = (&decision, &result)
            && d.action != Action::Hold
        {
            tracing::info!(deployment = slug, action = ?d.action, state = %after.state, stage = after.stage_index, "gate decision applied");
        }
        Ok(Some((decision, result)))
    }

    fn srm_alert(&mut self, r: &Rollout, d: &Decision) {
        let Some(srm) = d.alerts.first() else {
            return;
        };
        if !self.srm_alerted.insert((r.id, r.stage_index)) {
            return;
        }
        let Some(target) = self
            .ctx
            .config
            .rollouts
            .get(&r.deployment)
            .and_then(|s| s.alerts.as_ref())
        else {
            return;
        };
        self.ctx.alerts.send(
            target,
            AlertMessage {
                event: AlertEvent::SampleRatioMismatch,
                deployment: r.deployment.clone(),
                candidate: r.candidate.clone(),
                state: r.state.clone(),
                stage: r.stage_index,
                actor: "gate".to_owned(),
                reason: srm.message.clone(),
                failing: None,
                evidence: serde_json::to_value(d).unwrap_or_default(),
                at: Utc::now(),
                links: self
                    .ctx
                    .config
                    .public_url
                    .as_deref()
                    .map(|u| super::alerts::AlertLinks::new(u, &r.deployment, Some(r.stage_index))),
            },
        );
    }
}

/// Handle on a running controller.
#[derive(Clone)]
pub struct ControllerHandle {
    leader: watch::Receiver<bool>,
}

impl ControllerHandle {
    /// Whether this replica currently leads (drives the rollouts).
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }
}

/// Starts leadership and the tick loop (ticks only while leader).
pub fn spawn(
    ctx: RolloutCtx,
    metrics: Option<RolloutMetrics>,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> ControllerHandle {
    let settings = ctx.config.controller;
    let leadership = Leadership::spawn(
        ctx.store.clone(),
        CONTROLLER_LOCK_KEY,
        settings.leader_retry,
        tracker,
        cancel.clone(),
    );
    let mut leader = leadership.subscribe();
    let handle = ControllerHandle {
        leader: leader.clone(),
    };
    let leader_gauge = metrics.as_ref().map(|m| m.controller_leader.clone());
    let mut controller = Controller::new(ctx, metrics);
    tracker.spawn(async move {
        let mut was_leader = false;
        let mut leadership_gone = false;
        let mut interval = tokio::time::interval(settings.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = interval.tick() => {}
                changed = leader.changed(), if !leadership_gone => {
                    leadership_gone = changed.is_err();
                }
            }
            let is_leader = *leader.borrow();
            if is_leader != was_leader {
                was_leader = is_leader;
                if let Some(g) = &leader_gauge {
                    g.set(i64::from(is_leader));
                }
                if is_leader {
                    tracing::info!(pid = std::process::id(), "rollout controller is leader");
                } else {
                    tracing::warn!(
                        pid = std::process::id(),
                        "rollout controller is no longer leader"
                    );
                }
            }
            if is_leader {
                controller.tick().await;
            }
        }
    });
    handle
}

/// Everything `canarist serve` runs for rollouts: the guardrail task fed by the gateway, the
/// controller (ticking while leader) and the alert sender. Started and stopped in two parts
/// (guardrails first, controller after the judge workers; stopped the other way round).
pub struct RolloutRuntime {
    pub ctx: RolloutCtx,
    metrics: Option<RolloutMetrics>,
    guardrails: (TaskTracker, CancellationToken),
    controller: Option<(ControllerHandle, TaskTracker, CancellationToken)>,
}

/// Outcomes the guardrail channel holds before it drops (and counts) new ones.
pub const OUTCOME_QUEUE: usize = 10_000;

impl RolloutRuntime {
    /// Starts the guardrail task on `signals` (when given), the receiving side of the channel
    /// whose sender the gateway and the judge are built with. Changes made here swap
    /// `ctx.traffic` at once.
    pub fn start(
        ctx: RolloutCtx,
        metrics: Option<RolloutMetrics>,
        signals: Option<super::guardrails::Signals>,
    ) -> RolloutRuntime {
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        if let Some(signals) = signals {
            super::guardrails::spawn(
                ctx.clone(),
                metrics.clone(),
                signals,
                &tracker,
                cancel.clone(),
            );
        }
        RolloutRuntime {
            ctx,
            metrics,
            guardrails: (tracker, cancel),
            controller: None,
        }
    }

    /// Starts the controller (leadership and the tick loop); a second call does nothing.
    pub fn start_controller(&mut self) -> ControllerHandle {
        if let Some((handle, _, _)) = &self.controller {
            return handle.clone();
        }
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let handle = spawn(
            self.ctx.clone(),
            self.metrics.clone(),
            &tracker,
            cancel.clone(),
        );
        self.controller = Some((handle.clone(), tracker, cancel));
        handle
    }

    /// The controller, when started.
    pub fn controller(&self) -> Option<&ControllerHandle> {
        self.controller.as_ref().map(|(h, _, _)| h)
    }

    /// Stops the controller (releasing the leader lock); the guardrails keep running.
    pub async fn stop_controller(&mut self) {
        if let Some((_, tracker, cancel)) = self.controller.take() {
            stop_tracked(tracker, cancel).await;
        }
    }

    /// Stops the controller and the guardrails, then lets queued alerts go out for a few
    /// seconds.
    pub async fn stop(mut self) {
        self.stop_controller().await;
        let (tracker, cancel) = self.guardrails;
        stop_tracked(tracker, cancel).await;
        self.ctx
            .alerts
            .drain(std::time::Duration::from_secs(5))
            .await;
    }
}

async fn stop_tracked(tracker: TaskTracker, cancel: CancellationToken) {
    cancel.cancel();
    tracker.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tracker.wait()).await;
}
