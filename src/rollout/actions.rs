//! Rollout actions: start, promote, rollback, pause, resume, approve, status and the audit log — what
//! the CLI, the admin API, the controller and the guardrails call.
//!
//! Every action reads the deployment's active rollout, runs one step of the pure state machine,
//! persists the transition (actor, reason, evidence; compare-and-set on the state and stage it
//! read, in one transaction that bumps the config version) and only then applies it: the new
//! traffic state goes through the traffic service (`traffic::TrafficService::put`: stored, then
//! this process's table swapped; every other replica re-reads it on the version bump);
//! on rollback the candidate's share is zero at once, its pending judge jobs are cancelled and
//! the alert webhook fires. Owns: that order. Never: decides anything itself (the state machine
//! and the gate do). Fails closed: a transition that cannot be persisted does not take effect
//! and is returned as an error; a concurrent change is a [`RolloutError::Conflict`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::LiveTraffic;
use super::alerts::{AlertEvent, AlertLinks, AlertMessage, Alerts, Failing};
use super::machine::Outcome;
use super::stored::{self, machine_state, state_name, traffic_for};
use super::traffic::TrafficService;
use super::{Event, Manual, Transition as Step, step};
use crate::config::{Config, Deployment, RolloutSettings};
use crate::gate::Decision;
use crate::store::{NewRollout, Rollout, RolloutUpdate, Store, StoreError, SummaryScope};

/// Who acts: an API key id, a token subject, `cli`, `controller`, `gate`, `guardrail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
}

impl Actor {
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into() }
    }
}

/// What the actions need.
#[derive(Clone)]
pub struct RolloutCtx {
    pub store: Store,
    pub config: Arc<Config>,
    pub alerts: Alerts,
    /// This process's live traffic, when it serves requests: swapped right after a change is
    /// stored, so that its very next request already follows it. Other replicas follow within a
    /// second (config-version watch). `None` in the CLI.
    pub traffic: Option<LiveTraffic>,
}

impl RolloutCtx {
    /// The traffic service every traffic change goes through (swapping `traffic` after it).
    pub fn traffic_service(&self) -> TrafficService {
        TrafficService::new(
            self.store.clone(),
            self.config.clone(),
            self.traffic.clone(),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// No such deployment, or it has no `ramp` in the config (HTTP 404).
    #[error("deployment `{0}` not found or has no ramp configured")]
    DeploymentNotFound(String),
    /// The deployment has no rollout in progress (HTTP 404).
    #[error("deployment `{0}` has no rollout in progress")]
    NoRollout(String),
    /// The state machine refused the action, or the rollout changed concurrently (HTTP 409).
    #[error("refused: {0}")]
    Conflict(String),
    /// The database failed (HTTP 500); nothing took effect.
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
}

impl RolloutError {
    pub fn status_code(&self) -> u16 {
        match self {
            RolloutError::DeploymentNotFound(_) | RolloutError::NoRollout(_) => 404,
            RolloutError::Conflict(_) => 409,
            RolloutError::Storage(_) => 500,
        }
    }
}

/// Where a deployment's rollout stands.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutStatus {
    pub deployment: String,
    /// The latest rollout (active or not); `None` when none was ever started.
    pub rollout: Option<RolloutView>,
    /// The gate's decision on the current stage's data as of now (not persisted unless it moved
    /// the rollout), with its evidence. `None` without an active rollout or a gate policy.
    pub decision: Option<Decision>,
    /// Requests, errors and pairs per variant in the current stage.
    pub live: Vec<LiveCount>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RolloutView {
    pub id: String,
    pub candidate: String,
    pub state: String,
    pub stage: u32,
    pub stage_count: usize,
    pub stage_label: String,
    pub stage_started_at: DateTime<Utc>,
    /// Percent of units served (live) or mirrored (shadow) by the candidate in this state.
    pub candidate_percent: f64,
    pub mode: crate::vocab::Mode,
    pub config_version: u64,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LiveCount {
    pub variant: String,
    pub role: String,
    pub requests: u64,
    /// Distinct units (sticky keys) among the requests; a request without one is its own.
    pub units: u64,
    /// Requests this variant served, and the distinct units among them.
    pub served: u64,
    pub served_units: u64,
    pub errors: u64,
}

pub(super) fn settings<'a>(
    ctx: &'a RolloutCtx,
    deployment: &str,
) -> Result<(&'a Deployment, &'a RolloutSettings), RolloutError> {
    let not_found = || RolloutError::DeploymentNotFound(deployment.to_owned());
    let d = ctx.config.deployment(deployment).ok_or_else(not_found)?;
    let s = ctx.config.rollouts.get(deployment).ok_or_else(not_found)?;
    Ok((d, s))
}

/// The deployment's newest rollout if it is still in progress.
pub async fn active_rollout(
    store: &Store,
    deployment: &str,
) -> Result<Option<Rollout>, StoreError> {
    Ok(store
        .rollouts(deployment)
        .await?
        .into_iter()
        .next()
        .filter(|r| stored::is_active(&r.state)))
}

/// Starts a rollout of the deployment's candidate at the ramp's first stage.
pub async fn start(
    ctx: &RolloutCtx,
    deployment: &str,
    actor: &Actor,
    reason: &str,
) -> Result<Rollout, RolloutError> {
    let (d, s) = settings(ctx, deployment)?;
    if let Some(r) = active_rollout(&ctx.store, deployment).await? {
        return Err(RolloutError::Conflict(format!(
            "rollout {} of `{deployment}` is already {}",
            r.id, r.state
        )));
    }
    let candidate = d
        .candidates
        .first()
        .map(|c| c.variant.name.clone())
        .ok_or_else(|| RolloutError::DeploymentNotFound(deployment.to_owned()))?;
    ctx.store
        .create_rollout(&NewRollout {
            deployment: deployment.to_owned(),
            candidate,
            state: stored::DRAFT.to_owned(),
            stage_index: 0,
            stage_name: stored::stage_label(&s.ramp, 0),
            actor: actor.id.clone(),
            reason: reason.to_owned(),
        })
        .await?;
    let event = Event::Start {
        actor: actor.id.clone(),
    };
    apply(ctx, deployment, &event, json!({ "kind": "start" })).await
}

fn manual(action: Manual, actor: &Actor, reason: &str) -> Event {
    Event::Manual {
        action,
        actor: actor.id.clone(),
        reason: reason.to_owned(),
    }
}

/// Advances one stage (past the last stage: the candidate becomes the new stable).
pub async fn promote(
    ctx: &RolloutCtx,
    deployment: &str,
    actor: &Actor,
    reason: &str,
) -> Result<Rollout, RolloutError> {
    let event = manual(Manual::Promote, actor, reason);
    apply(ctx, deployment, &event, json!({ "kind": "manual" })).await
}

/// Rolls back: candidate traffic to zero, its judge jobs cancelled, the alert fired.
pub async fn rollback(
    ctx: &RolloutCtx,
    deployment: &str,
    actor: &Actor,
    reason: &str,
) -> Result<Rollout, RolloutError> {
    let event = manual(Manual::Rollback, actor, reason);
    apply(ctx, deployment, &event, json!({ "kind": "manual" })).await
}

/// Pauses the stage clock and gate decisions (the stage's traffic stays as it is).
pub async fn pause(
    ctx: &RolloutCtx,
    deployment: &str,
    actor: &Actor,
    reason: &str,
) -> Result<Rollout, RolloutError> {
    let event = manual(Manual::Pause, actor, reason);
    apply(ctx, deployment, &event, json!({ "kind": "manual" })).await
}

/// Approves a stage awaiting approval: it advances like a promotion, recorded with the actor.
pub async fn approve(
    ctx: &RolloutCtx,
    deployment: &str,
    actor: &Actor,
    reason: &str,
) -> Result<Rollout, RolloutError> {
    let event = manual(Manual::Approve, actor, reason);
    apply(ctx, deployment, &event, json!({ "kind": "approval" })).await
}

pub async fn resume(
    ctx: &RolloutCtx,
    deployment: &str,
    actor: &Actor,
    reason: &str,
) -> Result<Rollout, RolloutError> {
    let event = manual(Manual::Resume, actor, reason);
    apply(ctx, deployment, &event, json!({ "kind": "manual" })).await
}

/// The latest rollout, the gate's view of the current stage, and live counts.
pub async fn status(ctx: &RolloutCtx, deployment: &str) -> Result<RolloutStatus, RolloutError> {
    let (d, s) = settings(ctx, deployment)?;
    let latest = ctx.store.rollouts(deployment).await?.into_iter().next();
    let Some(r) = latest else {
        return Ok(RolloutStatus {
            deployment: deployment.to_owned(),
            rollout: None,
            decision: None,
            live: Vec::new(),
        });
    };
    let log = ctx.store.transitions(r.id).await?;
    let state = machine_state(&r, &log);
    let traffic = traffic_for(d, &s.ramp, &state);
    let label = stored::stage_label(&s.ramp, r.stage_index as usize);
    let summary = ctx
        .store
        .stage_summary(SummaryScope {
            deployment,
            stage: &label,
            since: r.stage_started_at,
        })
        .await?;
    let live = summary
        .variants
        .iter()
        .filter(|v| v.cohort.is_none())
        .map(|v| LiveCount {
            variant: v.variant.clone(),
            role: v.role.as_str().to_owned(),
            requests: v.requests,
            units: v.units,
            served: v.served,
            served_units: v.served_units,
            errors: v.error_count(),
        })
        .collect();
    let decision = match (&s.gate, stored::is_active(&r.state)) {
        (Some(policy), true) => {
            let stage = &s.ramp.stages[(r.stage_index as usize).min(s.ramp.stages.len() - 1)];
            let elapsed = match &state {
                super::State::Running(run)
                | super::State::Paused { run, .. }
                | super::State::AwaitingApproval { run, .. } => run.elapsed(Utc::now()),
                _ => std::time::Duration::ZERO,
            };
            Some(crate::gate_input::decide(policy, stage, elapsed, &summary))
        }
        _ => None,
    };
    Ok(RolloutStatus {
        deployment: deployment.to_owned(),
        rollout: Some(RolloutView {
            id: r.id.to_string(),
            candidate: r.candidate.clone(),
            state: r.state.clone(),
            stage: r.stage_index,
            stage_count: s.ramp.stages.len(),
            stage_label: label,
            stage_started_at: r.stage_started_at,
            candidate_percent: traffic
                .candidates
                .first()
                .map_or(0.0, |c| f64::from(c.buckets) / 100.0),
            mode: traffic.mode,
            config_version: r.config_version,
            updated_at: r.updated_at,
        }),
        decision,
        live,
    })
}

/// The audit log of the deployment's latest rollout, oldest first.
pub async fn audit_log(
    ctx: &RolloutCtx,
    deployment: &str,
) -> Result<Vec<crate::store::Transition>, RolloutError> {
    settings(ctx, deployment)?;
    let latest = ctx.store.rollouts(deployment).await?.into_iter().next();
    let r = latest.ok_or_else(|| RolloutError::NoRollout(deployment.to_owned()))?;
    Ok(ctx.store.transitions(r.id).await?)
}

/// Runs `event` against the deployment's active rollout: step, persist, then apply. Returns the
/// rollout as persisted (unchanged when the machine stayed without anything to record).
pub async fn apply(
    ctx: &RolloutCtx,
    deployment: &str,
    event: &Event,
    evidence: Value,
) -> Result<Rollout, RolloutError> {
    apply_expecting(ctx, deployment, None, event, evidence).await
}

/// Like [`apply`], but refuses (`Conflict`) unless the active rollout is still `expected`
/// (same id, state and stage): a gate decision on one stage is never applied to another.
/// The new traffic state is stored, then `ctx.traffic` swapped (before judge jobs are cancelled
/// and the alert is sent).
pub async fn apply_expecting(
    ctx: &RolloutCtx,
    deployment: &str,
    expected: Option<&Rollout>,
    event: &Event,
    evidence: Value,
) -> Result<Rollout, RolloutError> {
    let (d, s) = settings(ctx, deployment)?;
    let r = active_rollout(&ctx.store, deployment)
        .await?
        .ok_or_else(|| RolloutError::NoRollout(deployment.to_owned()))?;
    if let Some(e) = expected
        && (e.id != r.id || e.state != r.state || e.stage_index != r.stage_index)
    {
        return Err(RolloutError::Conflict(format!(
            "rollout {} moved to {} stage {} meanwhile",
            r.id, r.state, r.stage_index
        )));
    }
    let log = ctx.store.transitions(r.id).await?;
    let state = machine_state(&r, &log);
    let now = Utc::now();
    let t = step(&s.ramp, &state, event, now);
    let timeout_alert = t.outcome == Outcome::Stayed && t.alert;
    match t.outcome {
        Outcome::Refused => return Err(RolloutError::Conflict(t.reason)),
        Outcome::Stayed if !timeout_alert => return Ok(r),
        _ => {}
    }
    let mut evidence = evidence;
    if timeout_alert && let Some(obj) = evidence.as_object_mut() {
        // Recorded so that a restarted controller does not alert again (see `stored`).
        obj.insert("kind".into(), json!(stored::KIND_STAGE_TIMEOUT));
    }
    let to_stage = stored::stage_of(&t.to).unwrap_or(r.stage_index as usize);
    let update = RolloutUpdate {
        expected_state: r.state.clone(),
        expected_stage: r.stage_index,
        state: state_name(&t.to, &s.ramp).to_owned(),
        stage_index: u32::try_from(to_stage).unwrap_or(r.stage_index),
        stage_name: stored::stage_label(&s.ramp, to_stage),
        actor: t.actor.clone(),
        reason: t.reason.clone(),
        evidence: evidence.clone(),
    };
    // 1. Persist (fails closed: nothing below happens when this fails).
    let updated = persist(&ctx.store, r.id, &update)
        .await
        .map_err(|e| match e {
            StoreError::Invalid(msg) => RolloutError::Conflict(msg),
            other => RolloutError::Storage(other),
        })?;
    tracing::info!(
        deployment,
        from = %r.state,
        to = %updated.state,
        stage = updated.stage_index,
        actor = %t.actor,
        reason = %t.reason,
        "rollout transition"
    );
    // 2. Apply: the traffic every replica serves.
    if t.outcome == Outcome::Moved {
        let traffic = traffic_for(d, &s.ramp, &t.to);
        ctx.traffic_service()
            .put(deployment, &traffic, &t.actor)
            .await?;
    }
    // 3. Side effects of a rollback, then the alert.
    if matches!(t.to, super::State::RolledBack { .. }) {
        let cancelled = ctx
            .store
            .cancel_for_candidate(deployment, &r.candidate)
            .await?;
        tracing::info!(
            deployment,
            cancelled,
            "judge jobs of the candidate cancelled"
        );
    }
    if t.alert {
        alert(ctx, s, &updated, &t, &evidence);
    }
    Ok(updated)
}

/// `transition_rollout`, retried a few times when SQLite reports the file busy: its
/// transaction reads before it writes, and a capture batch committed in between makes SQLite
/// refuse the upgrade at once (`SQLITE_BUSY`, not covered by the busy timeout). Nothing was
/// written then, and the compare-and-set makes the retry safe.
async fn persist(
    store: &Store,
    id: uuid::Uuid,
    update: &RolloutUpdate,
) -> Result<Rollout, StoreError> {
    let mut backoff = std::time::Duration::from_millis(10);
    for _ in 0..6 {
        match store.transition_rollout(id, update).await {
            Err(StoreError::Database(e)) if is_busy(&e) => {
                tracing::debug!(error = %e, "rollout transition: database busy, retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            other => return other,
        }
    }
    store.transition_rollout(id, update).await
}

fn is_busy(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.code().is_some_and(|c| c == "5" || c == "517" || c == "6")
            || d.message().contains("database is locked")
    })
}

fn alert(ctx: &RolloutCtx, s: &RolloutSettings, r: &Rollout, t: &Step, evidence: &Value) {
    let Some(target) = &s.alerts else {
        return;
    };
    let event = match t.to {
        super::State::RolledBack { .. } => AlertEvent::RolledBack,
        super::State::AwaitingApproval { .. } => AlertEvent::AwaitingApproval,
        _ => AlertEvent::StageTimeout,
    };
    let failing = evidence
        .get("failing")
        .and_then(|f| serde_json::from_value::<Failing>(f.clone()).ok());
    ctx.alerts.send(
        target,
        AlertMessage {
            event,
            deployment: r.deployment.clone(),
            candidate: r.candidate.clone(),
            state: r.state.clone(),
            stage: r.stage_index,
            actor: t.actor.clone(),
            reason: t.reason.clone(),
            failing,
            evidence: evidence.clone(),
            at: Utc::now(),
            links: ctx
                .config
                .public_url
                .as_deref()
                .map(|u| AlertLinks::new(u, &r.deployment, Some(r.stage_index))),
        },
    );
}
