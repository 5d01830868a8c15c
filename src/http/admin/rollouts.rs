//! Rollout control over HTTP: start a ramp, promote, roll back, pause, resume, approve (each with a
//! reason; the actor is the caller's key id or token subject), and the rollout's status with the
//! gate's current decision. The work is done by [`crate::rollout::actions`], which persists the
//! transition (with actor, reason and evidence) before it takes effect; this file only maps
//! HTTP to those calls and reloads the gateway's traffic so the next request sees the change.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Principal, Role};
use super::body::{JsonBody, bad_field};
use super::deployments::RolloutView;
use super::{AdminError, AdminState};
use crate::rollout::actions::{self, Actor, RolloutCtx, RolloutError};

impl From<RolloutError> for AdminError {
    fn from(e: RolloutError) -> Self {
        match e {
            RolloutError::DeploymentNotFound(slug) => AdminError::NotFound {
                code: "deployment_not_found",
                param: Some("slug"),
                message: format!("deployment `{slug}` not found or has no ramp configured"),
            },
            RolloutError::NoRollout(slug) => AdminError::NotFound {
                code: "rollout_not_found",
                param: Some("slug"),
                message: format!("deployment `{slug}` has no rollout in progress"),
            },
            RolloutError::Conflict(m) => AdminError::Conflict(m),
            RolloutError::Storage(e) => AdminError::Internal(format!("rollout storage: {e}")),
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ActionRequest {
    /// Why (recorded in the audit log with the actor). Not blank.
    #[schema(pattern = r"\S")]
    pub reason: String,
}

/// A rollout's status: the rollout, the gate's decision on the current stage as of now (with
/// its evidence), and live counts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RolloutStatusView {
    pub deployment: String,
    /// The latest rollout (active or not); null when none was ever started.
    pub rollout: Option<serde_json::Value>,
    /// The gate's decision with its evidence; null without an active rollout or a gate policy.
    pub decision: Option<serde_json::Value>,
    pub live: Vec<serde_json::Value>,
}

pub(super) fn ctx(admin: &AdminState) -> Result<RolloutCtx, AdminError> {
    Ok(RolloutCtx {
        store: admin.store()?.clone(),
        config: admin.gateway.config.clone(),
        alerts: admin.alerts.clone(),
        traffic: Some(admin.gateway.traffic.clone()),
    })
}

fn to_value<T: Serialize>(v: &T) -> Result<serde_json::Value, AdminError> {
    serde_json::to_value(v).map_err(|e| AdminError::Internal(format!("serialising status: {e}")))
}

#[derive(Clone, Copy)]
enum Action {
    Start,
    Promote,
    Rollback,
    Pause,
    Resume,
    Approve,
}

async fn act(
    admin: AdminState,
    principal: Principal,
    slug: String,
    req: ActionRequest,
    action: Action,
) -> Result<axum::Json<RolloutView>, AdminError> {
    principal.require(Role::Admin)?;
    if req.reason.trim().is_empty() {
        return Err(bad_field("reason", "must not be empty"));
    }
    let ctx = ctx(&admin)?;
    let actor = Actor::new(principal.id.clone());
    let reason = req.reason.as_str();
    let rollout = match action {
        Action::Start => actions::start(&ctx, &slug, &actor, reason).await?,
        Action::Promote => actions::promote(&ctx, &slug, &actor, reason).await?,
        Action::Rollback => actions::rollback(&ctx, &slug, &actor, reason).await?,
        Action::Pause => actions::pause(&ctx, &slug, &actor, reason).await?,
        Action::Resume => actions::resume(&ctx, &slug, &actor, reason).await?,
        Action::Approve => actions::approve(&ctx, &slug, &actor, reason).await?,
    };
    // The action swapped the table after a traffic change; this also follows a transition that
    // only bumped the config version.
    admin
        .gateway
        .traffic
        .reload_after_change(&slug, "a rollout action")
        .await;
    Ok(axum::Json(RolloutView::from(&rollout)))
}

macro_rules! action_handler {
    ($name:ident, $action:expr, $path:literal, $summary:literal) => {
        #[doc = $summary]
        #[utoipa::path(
            post,
            path = $path,
            tag = "rollouts",
            params(("slug" = String, Path, description = "The deployment's slug")),
            request_body = ActionRequest,
            responses(
                (status = 200, description = "The transition is persisted and in force", body = RolloutView),
                (status = 400, description = "The body fails the schema", body = super::ErrorResponse),
                (status = 404, description = "`deployment_not_found` (or no ramp configured) or `rollout_not_found`", body = super::ErrorResponse),
                (status = 409, description = "The state machine refused the action, or the rollout changed concurrently", body = super::ErrorResponse),
            ),
            security(("bearer" = []))
        )]
        pub async fn $name(
            State(admin): State<AdminState>,
            principal: Principal,
            Path(slug): Path<String>,
            JsonBody(req): JsonBody<ActionRequest>,
        ) -> Result<axum::Json<RolloutView>, AdminError> {
            act(admin, principal, slug, req, $action).await
        }
    };
}

action_handler!(
    start,
    Action::Start,
    "/v1/deployments/{slug}/rollout",
    "Start a ramp of the deployment's candidate."
);
action_handler!(
    promote,
    Action::Promote,
    "/v1/deployments/{slug}/rollout/promote",
    "Promote to the next stage."
);
action_handler!(
    rollback,
    Action::Rollback,
    "/v1/deployments/{slug}/rollout/rollback",
    "Roll back: candidate traffic to zero at once."
);
action_handler!(
    pause,
    Action::Pause,
    "/v1/deployments/{slug}/rollout/pause",
    "Pause the stage clock and gate decisions."
);
action_handler!(
    resume,
    Action::Resume,
    "/v1/deployments/{slug}/rollout/resume",
    "Resume a paused rollout."
);

action_handler!(
    approve,
    Action::Approve,
    "/v1/deployments/{slug}/rollout/approve",
    "Approve a stage awaiting approval (admin role; the audit log records who)."
);

/// The rollout's status and the gate's current decision.
#[utoipa::path(
    get,
    path = "/v1/deployments/{slug}/rollout",
    tag = "rollouts",
    params(("slug" = String, Path, description = "The deployment's slug")),
    responses(
        (status = 200, description = "Status", body = RolloutStatusView),
        (status = 404, description = "`deployment_not_found` (or no ramp configured)", body = super::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn status(
    State(admin): State<AdminState>,
    principal: Principal,
    Path(slug): Path<String>,
) -> Result<axum::Json<RolloutStatusView>, AdminError> {
    principal.require(Role::Viewer)?;
    let s = actions::status(&ctx(&admin)?, &slug).await?;
    Ok(axum::Json(RolloutStatusView {
        deployment: s.deployment,
        rollout: s.rollout.as_ref().map(to_value).transpose()?,
        decision: s.decision.as_ref().map(to_value).transpose()?,
        live: s.live.iter().map(to_value).collect::<Result<_, _>>()?,
    }))
}
