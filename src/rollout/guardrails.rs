//! The guardrail fast path: outcomes as they happen, a sliding window per deployment and stage,
//! and a rollback within moments of the outcome that trips it.
//!
//! The gateway offers every call's outcome (deployment, stage label, role, the hash of its unit
//! key, error or not) to an [`OutcomeSender`] with `try_send` on a bounded channel: a full
//! channel drops the outcome and counts it, so the request path never waits. One task per process feeds each deployment's
//! [`Guardrail`] (from `gate`) and, when it trips, calls [`actions::apply`] with a guardrail
//! event (actor `guardrail`), so the rollback is persisted, applied to traffic, alerted — then
//! reloads this gateway's traffic at once. A trip on a canary set through the admin API (no
//! rollout; guarded by the defaults unless the deployment configures guardrails) goes to
//! [`canary_guard`], which honours the canary's `auto_rollback`. The judge reports hard-check
//! failures (candidate failed where stable passed) through [`OutcomeSender::hard_failure`].
//! Owns: the channel, the windows, the trip → rollback wiring. Never: decides the trip rule
//! (the gate's `Guardrail` does). Fails open on overload (drops and counts outcomes); a trip
//! whose rollback cannot be persisted is logged and re-tried on the next outcome.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::actions::{self, RolloutCtx, RolloutError};
use super::alerts::Failing;
use super::canary_guard::{self, CanaryTrip};
use super::{Event, stored};
use crate::capture::{ErrorClass, Role};
use crate::gate::{Guardrail, GuardrailConfig, unit_hash};
use crate::routing::CANARY_STAGE;
use crate::telemetry::RolloutMetrics;

/// One thing the guardrails hear about.
#[derive(Debug, Clone)]
pub enum Signal {
    /// A call's outcome.
    Outcome {
        deployment: String,
        stage: String,
        role: Role,
        /// The [`unit_hash`] of the request's unit key (`None`: a unit of its own).
        unit: Option<u64>,
        error: bool,
        at: DateTime<Utc>,
    },
    /// A hard check failed on the candidate where stable passed.
    HardFailure {
        deployment: String,
        stage: String,
        at: DateTime<Utc>,
    },
}

/// The sending side, held by the gateway (and the judge). Cheap to clone; never waits.
#[derive(Clone, Debug)]
pub struct OutcomeSender {
    tx: mpsc::Sender<Signal>,
    dropped: Arc<AtomicU64>,
}

impl OutcomeSender {
    /// Offers a call's outcome, with its request's unit key; a client disconnect is not held
    /// against either side.
    pub fn outcome(
        &self,
        deployment: &str,
        stage: &str,
        role: Role,
        unit: Option<&str>,
        error: Option<ErrorClass>,
    ) {
        if error == Some(ErrorClass::ClientDisconnected) {
            return;
        }
        self.offer(Signal::Outcome {
            deployment: deployment.to_owned(),
            stage: stage.to_owned(),
            role,
            unit: unit.map(unit_hash),
            error: error.is_some(),
            at: Utc::now(),
        });
    }

    /// Reports a hard-check failure of the candidate (stable passed the same check on the pair).
    pub fn hard_failure(&self, deployment: &str, stage: &str) {
        self.offer(Signal::HardFailure {
            deployment: deployment.to_owned(),
            stage: stage.to_owned(),
            at: Utc::now(),
        });
    }

    fn offer(&self, signal: Signal) {
        if self.tx.try_send(signal).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Signals dropped because the channel was full (or the task gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The receiving side of the channel: what [`spawn`] reads.
pub type Signals = mpsc::Receiver<Signal>;

/// A bounded channel of signals. The sender goes to the gateway and the judge when they are
/// built; the receiver to [`spawn`].
pub fn channel(capacity: usize) -> (OutcomeSender, Signals) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        OutcomeSender {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        },
        rx,
    )
}

/// Starts the guardrail task reading `rx` (see [`channel`]); a rollback it makes swaps
/// `ctx.traffic` at once, and `metrics` count its trips.
pub fn spawn(
    ctx: RolloutCtx,
    metrics: Option<RolloutMetrics>,
    mut rx: Signals,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) {
    tracker.spawn(async move {
        let mut windows = Windows::default();
        loop {
            let signal = tokio::select! {
                () = cancel.cancelled() => break,
                s = rx.recv() => match s {
                    Some(s) => s,
                    None => break,
                },
            };
            let Some(trip) = windows.record(&ctx, signal) else {
                continue;
            };
            if let Some(m) = &metrics {
                m.guardrail_trips
                    .get_or_create(&crate::telemetry::GuardrailLabels {
                        deployment: trip.deployment.clone(),
                        kind: trip_kind(&trip.trip),
                    })
                    .inc();
            }
            let result = match trip_rollback(&ctx, &trip).await {
                // No rollout owns this traffic: an admin-API canary, or nothing to do.
                Err(RolloutError::NoRollout(_) | RolloutError::DeploymentNotFound(_)) => {
                    let metric = format!("guardrail.{}", trip_kind(&trip.trip));
                    canary_guard::on_trip(&ctx, &trip.deployment, &metric, &trip.trip)
                        .await
                        .map(|done| {
                            if done == CanaryTrip::RolledBack {
                                // The next canary of this deployment starts with a fresh window.
                                windows.forget(&trip.deployment);
                            }
                        })
                }
                other => other,
            };
            match result {
                Ok(()) => {}
                Err(RolloutError::NoRollout(_)) => {}
                Err(error @ RolloutError::Conflict(_)) if trip_was_canary(&trip) => {
                    windows.untrip(&trip.deployment, &trip.stage);
                    tracing::warn!(%error, deployment = %trip.deployment, "guardrail rollback raced a traffic change; retried on the next outcome");
                }
                Err(RolloutError::Conflict(_)) => {}
                Err(error) => {
                    // Not persisted: let the next outcome try again.
                    windows.untrip(&trip.deployment, &trip.stage);
                    tracing::error!(%error, deployment = %trip.deployment, "guardrail rollback failed");
                }
            }
        }
    });
}

struct Window {
    guardrail: Guardrail,
    tripped: bool,
}

/// One window per (deployment, stage label).
#[derive(Default)]
struct Windows {
    windows: BTreeMap<(String, String), Window>,
}

struct Tripped {
    deployment: String,
    stage: String,
    trip: crate::gate::Trip,
}

impl Windows {
    fn record(&mut self, ctx: &RolloutCtx, signal: Signal) -> Option<Tripped> {
        let (deployment, stage, at) = match &signal {
            Signal::Outcome {
                deployment,
                stage,
                at,
                ..
            }
            | Signal::HardFailure {
                deployment,
                stage,
                at,
            } => (deployment, stage, *at),
        };
        if matches!(
            stage.as_str(),
            stored::DRAFT | stored::PROMOTED | stored::ROLLED_BACK
        ) {
            return None;
        }
        // A canary set through the admin API is guarded by the defaults unless the deployment
        // configures its own guardrails.
        let cfg = ctx
            .config
            .guardrails_of(deployment)
            .cloned()
            .or_else(|| (stage == CANARY_STAGE).then(GuardrailConfig::default))?;
        // A new stage label means a new stage: forget the other windows of this deployment.
        self.windows
            .retain(|(d, s), _| d != deployment || s == stage);
        let w = self
            .windows
            .entry((deployment.clone(), stage.clone()))
            .or_insert_with(|| Window {
                guardrail: Guardrail::new(cfg),
                tripped: false,
            });
        match &signal {
            Signal::Outcome {
                role, unit, error, ..
            } => w.guardrail.record(at, *role, *unit, *error),
            Signal::HardFailure { .. } => w.guardrail.record_hard_failure(at),
        }
        if w.tripped {
            return None;
        }
        let trip = w.guardrail.check(at)?;
        w.tripped = true;
        Some(Tripped {
            deployment: deployment.clone(),
            stage: stage.clone(),
            trip,
        })
    }

    fn forget(&mut self, deployment: &str) {
        self.windows.retain(|(d, _), _| d != deployment);
    }

    fn untrip(&mut self, deployment: &str, stage: &str) {
        if let Some(w) = self
            .windows
            .get_mut(&(deployment.to_owned(), stage.to_owned()))
        {
            w.tripped = false;
        }
    }
}

/// Whether the trip was on an admin-API canary (its conflicts are retried; a rollout's are the
/// state machine refusing a rollback that already happened).
fn trip_was_canary(t: &Tripped) -> bool {
    t.stage == CANARY_STAGE
}

/// `hard_checks` when hard-check failures tripped the guardrail, else `error_rate`.
fn trip_kind(trip: &crate::gate::Trip) -> &'static str {
    if trip.hard_failures > 0 && trip.reason.contains("hard") {
        "hard_checks"
    } else {
        "error_rate"
    }
}

async fn trip_rollback(ctx: &RolloutCtx, t: &Tripped) -> Result<(), RolloutError> {
    tracing::warn!(deployment = %t.deployment, stage = %t.stage, reason = %t.trip.reason, "guardrail tripped");
    let metric = format!("guardrail.{}", trip_kind(&t.trip));
    let evidence = json!({
        "kind": "guardrail",
        "trip": t.trip,
        "failing": Failing {
            metric,
            cohort: "all".to_owned(),
            evidence: serde_json::to_value(&t.trip).unwrap_or_default(),
        },
    });
    let event = Event::Guardrail {
        reason: t.trip.reason.clone(),
    };
    actions::apply(ctx, &t.deployment, &event, evidence).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_channel_drops_and_counts() {
        let (tx, mut rx) = channel(2);
        for _ in 0..5 {
            tx.outcome(
                "d",
                "canary-1",
                Role::Candidate,
                Some("user-1"),
                Some(ErrorClass::Upstream5xx),
            );
        }
        tx.outcome(
            "d",
            "canary-1",
            Role::Candidate,
            None,
            Some(ErrorClass::ClientDisconnected),
        );
        assert_eq!(tx.dropped(), 3);
        assert!(matches!(
            rx.try_recv(),
            Ok(Signal::Outcome { error: true, .. })
        ));
    }
}
