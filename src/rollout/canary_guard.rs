//! Guardrail trips on a canary set through the admin API (`POST /api/v1/gateway/canary`),
//! outside any rollout: no state machine owns that traffic, so the trip acts on the stored
//! traffic state directly, honouring the canary's `auto_rollback`.
//!
//! - `auto_rollback: true` (the default): the candidates' share goes to zero at once (mode
//!   `off`, stage `rolled_back`), through the traffic service (compare-and-set on the config
//!   version it read, audit entry `traffic.rollback` by `guardrail`, this process's table
//!   swapped at once); every other replica follows through the config-version watch. Alert
//!   `rolled_back`.
//! - `auto_rollback: false`: the traffic is left as it is; the trip is audited as
//!   `traffic.guardrail_tripped` and alerted (`guardrail_tripped`), once per tripped window.
//!
//! Owns: that decision and its writes. Never: decides whether to trip (`gate::Guardrail`).

use chrono::Utc;
use serde_json::json;

use super::actions::{RolloutCtx, RolloutError};
use super::alerts::{AlertEvent, AlertMessage, Failing};
use super::stored::ROLLED_BACK;
use super::traffic::Audit;
use crate::gate::Trip;
use crate::routing::{CANARY_STAGE, ops};
use crate::store::NewAuditEntry;

/// What a trip did to a canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryTrip {
    /// The deployment runs no API canary with candidate traffic: nothing to do.
    NotACanary,
    /// `auto_rollback` on: the candidates' traffic is now zero.
    RolledBack,
    /// `auto_rollback` off: recorded and alerted, traffic unchanged.
    Recorded,
}

/// Acts on a trip of `deployment`'s guardrail, `metric` naming what tripped it
/// (`guardrail.error_rate`, `guardrail.hard_checks`). A concurrent traffic change is a
/// [`RolloutError::Conflict`]: the caller lets the next outcome try again.
pub async fn on_trip(
    ctx: &RolloutCtx,
    deployment: &str,
    metric: &str,
    trip: &Trip,
) -> Result<CanaryTrip, RolloutError> {
    let Some((state, version)) = ctx.store.traffic_state(deployment).await? else {
        return Ok(CanaryTrip::NotACanary);
    };
    if state.stage != CANARY_STAGE || state.candidates.iter().all(|c| c.buckets == 0) {
        return Ok(CanaryTrip::NotACanary);
    }
    let candidate = state
        .candidates
        .iter()
        .map(|c| c.variant.model.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let evidence = json!({ "kind": "guardrail", "metric": metric, "trip": trip });
    let outcome = if state.auto_rollback {
        let next = ops::rolled_back(&state, ROLLED_BACK);
        let audit = Audit {
            action: "traffic.rollback",
            actor: "guardrail",
            detail: json!({ "reason": trip.reason, "evidence": evidence }),
        };
        if ctx
            .traffic_service()
            .compare_and_set(deployment, Some(version), &next, &audit)
            .await?
            .is_none()
        {
            return Err(RolloutError::Conflict(format!(
                "the traffic of `{deployment}` changed while its guardrail tripped"
            )));
        }
        tracing::warn!(%deployment, reason = %trip.reason, "guardrail tripped: canary rolled back");
        CanaryTrip::RolledBack
    } else {
        ctx.store
            .record_audit(&NewAuditEntry {
                deployment: Some(deployment),
                action: "traffic.guardrail_tripped",
                actor: "guardrail",
                detail: json!({ "reason": trip.reason, "auto_rollback": false, "evidence": evidence }),
            })
            .await?;
        tracing::warn!(%deployment, reason = %trip.reason, "guardrail tripped on a canary with auto_rollback off: traffic left as it is");
        CanaryTrip::Recorded
    };
    if let Some(target) = ctx.config.alerts_of(deployment) {
        let (event, now_state, reason) = match outcome {
            CanaryTrip::RolledBack => (
                AlertEvent::RolledBack,
                ROLLED_BACK,
                format!("guardrail tripped: {}", trip.reason),
            ),
            _ => (
                AlertEvent::GuardrailTripped,
                CANARY_STAGE,
                format!(
                    "guardrail tripped: {} (auto_rollback is off: traffic unchanged)",
                    trip.reason
                ),
            ),
        };
        ctx.alerts.send(
            target,
            AlertMessage {
                event,
                deployment: deployment.to_owned(),
                candidate,
                state: now_state.to_owned(),
                stage: 0,
                actor: "guardrail".to_owned(),
                reason,
                failing: Some(Failing {
                    metric: metric.to_owned(),
                    cohort: "all".to_owned(),
                    evidence: serde_json::to_value(trip).unwrap_or_default(),
                }),
                evidence,
                at: Utc::now(),
                links: ctx
                    .config
                    .public_url
                    .as_deref()
                    .map(|u| super::alerts::AlertLinks::new(u, deployment, None)),
            },
        );
    }
    Ok(outcome)
}
