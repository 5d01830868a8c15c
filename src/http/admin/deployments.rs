//! Reading deployments: the list, one deployment's status (mode, stage, challengers, live
//! counts, the rollout and its latest decision with evidence), its audit log, and a stage's
//! report as JSON (from `Store::stage_summary`; the full report module renders more).
//! Every route here needs the viewer role.

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{Principal, Role};
use super::traffic::Challenger;
use super::{AdminError, AdminState};
use crate::routing::RoutedDeployment;
use crate::store::{StageSummary, SummaryScope};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VariantView {
    pub provider: String,
    pub model: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeploymentView {
    pub slug: String,
    /// The model clients send.
    pub model: String,
    /// `off`, `shadow` or `live`.
    pub mode: String,
    pub stage: String,
    pub stable: VariantView,
    pub challengers: Vec<Challenger>,
    /// The traffic config version in force on this replica.
    pub config_version: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeploymentList {
    pub deployments: Vec<DeploymentView>,
}

/// One audit-log entry of a rollout (a state-machine transition).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransitionView {
    pub rollout_id: uuid::Uuid,
    pub from_state: String,
    pub to_state: String,
    pub from_stage: u32,
    pub to_stage: u32,
    pub actor: String,
    pub reason: String,
    /// The decision's evidence (metric, cohort, estimate, interval, threshold, counts), if any.
    pub evidence: serde_json::Value,
    pub config_version: u64,
    pub at: DateTime<Utc>,
}

impl From<crate::store::Transition> for TransitionView {
    fn from(t: crate::store::Transition) -> Self {
        Self {
            rollout_id: t.rollout_id,
            from_state: t.from_state,
            to_state: t.to_state,
            from_stage: t.from_stage,
            to_stage: t.to_stage,
            actor: t.actor,
            reason: t.reason,
            evidence: t.evidence,
            config_version: t.config_version,
            at: t.at,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RolloutView {
    pub id: uuid::Uuid,
    pub candidate: String,
    pub state: String,
    pub stage_index: u32,
    pub stage_started_at: DateTime<Utc>,
    pub config_version: u64,
}

impl From<&crate::store::Rollout> for RolloutView {
    fn from(r: &crate::store::Rollout) -> Self {
        Self {
            id: r.id,
            candidate: r.candidate.clone(),
            state: r.state.clone(),
            stage_index: r.stage_index,
            stage_started_at: r.stage_started_at,
            config_version: r.config_version,
        }
    }
}

/// Requests, errors and latency of one variant in the current stage (all cohorts together).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VariantCounts {
    pub variant: String,
    /// `stable` or `candidate`.
    pub role: String,
    pub requests: u64,
    /// Distinct units (sticky keys) among the requests; a request without one is its own.
    pub units: u64,
    pub served: u64,
    /// Distinct units among the served requests (what the sample-ratio check counts).
    pub served_units: u64,
    pub errors: u64,
    pub mean_latency_ms: Option<f64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeploymentStatus {
    pub deployment: DeploymentView,
    /// The newest rollout of this deployment, if any.
    pub rollout: Option<RolloutView>,
    /// The latest transition of that rollout (its decision and evidence).
    pub latest_decision: Option<TransitionView>,
    /// Live counts of the current stage.
    pub live: Vec<VariantCounts>,
    pub pairs: u64,
}

/// The admin audit log of a deployment: rollout transitions and changes made through the API.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditLog {
    pub transitions: Vec<TransitionView>,
    pub changes: Vec<AuditView>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    /// e.g. `traffic.add_challenger`, `traffic.canary`.
    pub action: String,
    /// `key:<key id>` or `jwt:<subject>`.
    pub actor: String,
    pub detail: serde_json::Value,
    pub config_version: Option<u64>,
    pub at: DateTime<Utc>,
}

impl From<crate::store::AuditEntry> for AuditView {
    fn from(a: crate::store::AuditEntry) -> Self {
        Self {
            id: a.id,
            action: a.action,
            actor: a.actor,
            detail: a.detail,
            config_version: a.config_version,
            at: a.at,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScoreView {
    pub candidate: String,
    pub rubric_id: String,
    pub criterion: String,
    pub stable_mean: Option<f64>,
    pub candidate_mean: Option<f64>,
    /// Mean of candidate − stable over pairs.
    pub paired_mean_delta: Option<f64>,
    pub pairs: u64,
    pub wins: u64,
    pub ties: u64,
    pub losses: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StageReport {
    pub deployment: String,
    pub stage: String,
    pub variants: Vec<VariantCounts>,
    pub pairs: u64,
    pub scores: Vec<ScoreView>,
    /// The latest decision of the deployment's newest rollout.
    pub decision: Option<TransitionView>,
}

fn view(d: &RoutedDeployment, version: u64) -> DeploymentView {
    let d = &d.deployment;
    DeploymentView {
        slug: d.slug.clone(),
        model: d.model.clone(),
        mode: d.mode.as_str().to_owned(),
        stage: d.stage.clone(),
        stable: VariantView {
            provider: d.stable.provider.clone(),
            model: d.stable.model.clone(),
        },
        challengers: d
            .candidates
            .iter()
            .map(|c| Challenger {
                id: c.variant.name.clone(),
                model_id: c.variant.model.clone(),
                traffic_pct: f64::from(c.buckets) / 100.0,
                is_active: c.buckets > 0 && d.mode != crate::config::Mode::Off,
            })
            .collect(),
        config_version: version,
    }
}

fn find(admin: &AdminState, slug: &str) -> Result<DeploymentView, AdminError> {
    let table = admin.gateway.traffic.load();
    table
        .by_slug(slug)
        .map(|d| view(d, table.version))
        .ok_or_else(|| AdminError::DeploymentNotFound(slug.to_owned()))
}

fn counts(summary: &StageSummary) -> Vec<VariantCounts> {
    summary
        .variants
        .iter()
        .filter(|v| v.cohort.is_none())
        .map(|v| VariantCounts {
            variant: v.variant.clone(),
            role: v.role.as_str().to_owned(),
            requests: v.requests,
            units: v.units,
            served: v.served,
            served_units: v.served_units,
            errors: v.error_count(),
            mean_latency_ms: v.latency.mean(),
            prompt_tokens: v.prompt_tokens,
            completion_tokens: v.completion_tokens,
        })
        .collect()
}

fn pair_count(summary: &StageSummary) -> u64 {
    summary
        .pairs
        .iter()
        .filter(|((cohort, _), _)| cohort.is_none())
        .map(|(_, n)| *n)
        .sum()
}

/// The newest rollout of `slug` and its latest transition.
async fn latest(
    admin: &AdminState,
    slug: &str,
) -> Result<(Option<RolloutView>, Option<TransitionView>), AdminError> {
    let store = admin.store()?;
    let Some(rollout) = store.rollouts(slug).await?.into_iter().next() else {
        return Ok((None, None));
    };
    let last = store
        .transitions(rollout.id)
        .await?
        .pop()
        .map(TransitionView::from);
    Ok((Some(RolloutView::from(&rollout)), last))
}

/// List deployments.
#[utoipa::path(
    get,
    path = "/v1/deployments",
    tag = "deployments",
    responses((status = 200, description = "Every deployment as routed now", body = DeploymentList)),
    security(("bearer" = []))
)]
pub async fn list(
    State(admin): State<AdminState>,
    principal: Principal,
) -> Result<axum::Json<DeploymentList>, AdminError> {
    principal.require(Role::Viewer)?;
    let table = admin.gateway.traffic.load();
    Ok(axum::Json(DeploymentList {
        deployments: table.iter().map(|d| view(d, table.version)).collect(),
    }))
}

/// One deployment's status.
#[utoipa::path(
    get,
    path = "/v1/deployments/{slug}",
    tag = "deployments",
    params(("slug" = String, Path, description = "The deployment's slug")),
    responses(
        (status = 200, description = "Status", body = DeploymentStatus),
        (status = 404, description = "`deployment_not_found`", body = super::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn status(
    State(admin): State<AdminState>,
    principal: Principal,
    Path(slug): Path<String>,
) -> Result<axum::Json<DeploymentStatus>, AdminError> {
    principal.require(Role::Viewer)?;
    let deployment = find(&admin, &slug)?;
    let (rollout, latest_decision) = latest(&admin, &slug).await?;
    let summary = admin
        .store()?
        .stage_summary(SummaryScope::new(&slug, &deployment.stage))
        .await?;
    Ok(axum::Json(DeploymentStatus {
        deployment,
        rollout,
        latest_decision,
        live: counts(&summary),
        pairs: pair_count(&summary),
    }))
}

/// A deployment's audit log.
#[utoipa::path(
    get,
    path = "/v1/deployments/{slug}/audit",
    tag = "deployments",
    params(("slug" = String, Path, description = "The deployment's slug")),
    responses(
        (status = 200, description = "Oldest first", body = AuditLog),
        (status = 404, description = "`deployment_not_found`", body = super::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn audit(
    State(admin): State<AdminState>,
    principal: Principal,
    Path(slug): Path<String>,
) -> Result<axum::Json<AuditLog>, AdminError> {
    principal.require(Role::Viewer)?;
    find(&admin, &slug)?;
    let store = admin.store()?;
    let mut transitions = Vec::new();
    let mut rollouts = store.rollouts(&slug).await?;
    rollouts.reverse();
    for r in rollouts {
        transitions.extend(
            store
                .transitions(r.id)
                .await?
                .into_iter()
                .map(TransitionView::from),
        );
    }
    let changes = store
        .admin_audit(Some(&slug))
        .await?
        .into_iter()
        .map(AuditView::from)
        .collect();
    Ok(axum::Json(AuditLog {
        transitions,
        changes,
    }))
}

/// A stage's report (JSON).
#[utoipa::path(
    get,
    path = "/v1/deployments/{slug}/stages/{stage}/report",
    tag = "deployments",
    params(
        ("slug" = String, Path, description = "The deployment's slug"),
        ("stage" = String, Path, description = "The stage label, as on observations (e.g. `shadow`)"),
    ),
    responses(
        (status = 200, description = "The stage's counts, scores and latest decision", body = StageReport),
        (status = 404, description = "`deployment_not_found`", body = super::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn stage_report(
    State(admin): State<AdminState>,
    principal: Principal,
    Path((slug, stage)): Path<(String, String)>,
) -> Result<axum::Json<StageReport>, AdminError> {
    principal.require(Role::Viewer)?;
    find(&admin, &slug)?;
    let summary = admin
        .store()?
        .stage_summary(SummaryScope::new(&slug, &stage))
        .await?;
    let (_, decision) = latest(&admin, &slug).await?;
    let scores = summary
        .scores
        .iter()
        .filter(|s| s.cohort.is_none())
        .map(|s| ScoreView {
            candidate: s.candidate.clone(),
            rubric_id: s.rubric_id.clone(),
            criterion: s.criterion.clone(),
            stable_mean: s.stable.mean(),
            candidate_mean: s.candidate_scores.mean(),
            paired_mean_delta: s.paired.mean(),
            pairs: s.paired.count,
            wins: s.wins,
            ties: s.ties,
            losses: s.losses,
        })
        .collect();
    Ok(axum::Json(StageReport {
        deployment: slug,
        variants: counts(&summary),
        pairs: pair_count(&summary),
        stage,
        scores,
        decision,
    }))
}
