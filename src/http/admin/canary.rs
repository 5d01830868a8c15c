//! `POST /api/v1/gateway/canary`: start a live canary of `candidate_model` against the
//! deployment whose stable is `stable_model`, at `traffic_percent`, as scripts written for other
//! gateways expect. A model no deployment serves gets a deployment created for it (answering
//! clients that send that model) when one of the configured providers serves it.
//! The canary replaces the deployment's challengers (keeping the id, and so the bucket salt, of
//! a challenger that already runs the same model).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Principal, Role};
use super::body::{JsonBody, bad_field};
use super::traffic::{self, percent_to_buckets};
use super::{AdminError, AdminState};
use crate::routing::ops;

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CanaryRequest {
    /// The upstream model to canary (1–256 characters, no spaces or control characters).
    #[schema(pattern = r"^[^\s\u0000-\u001f\u007f]{1,256}$")]
    pub candidate_model: String,
    /// The stable model of the deployment (its upstream model or the alias clients send).
    #[schema(pattern = r"^[^\s\u0000-\u001f\u007f]{1,256}$")]
    pub stable_model: String,
    /// Percent of units served by the candidate, 0–100 in 0.01 steps.
    #[schema(minimum = 0.0, maximum = 100.0, multiple_of = 0.01)]
    pub traffic_percent: f64,
    /// When the deployment's guardrails trip (its configured `guardrails`, else the defaults:
    /// error rate above 10% over the last minute with at least 100 candidate calls, or 3× stable's
    /// rate): `true` takes the candidate's traffic away at once (audited as `traffic.rollback`
    /// by `guardrail`); `false` only records the trip (`traffic.guardrail_tripped`) and alerts.
    #[serde(default = "yes")]
    pub auto_rollback: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CanaryResponse {
    pub success: bool,
    pub deployment_id: String,
    pub challenger_id: String,
    /// The config version of this change.
    pub cache_version: u64,
}

fn model_name(field: &str, s: &str) -> Result<(), AdminError> {
    if s.is_empty()
        || s.chars().count() > 256
        || s.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad_field(
            field,
            "must be a model name (1–256 characters, no spaces)",
        ));
    }
    Ok(())
}

/// Start (or re-weight) a canary.
#[utoipa::path(
    post,
    path = "/api/v1/gateway/canary",
    tag = "traffic",
    request_body = CanaryRequest,
    responses(
        (status = 200, description = "The canary is in force", body = CanaryResponse),
        (status = 400, description = "The body fails the schema", body = super::ErrorResponse),
        (status = 404, description = "`model_not_found`: no configured provider serves the model", body = super::ErrorResponse),
        (status = 409, description = "Lost too many concurrent-update races", body = super::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn start_canary(
    State(admin): State<AdminState>,
    principal: Principal,
    JsonBody(req): JsonBody<CanaryRequest>,
) -> Result<axum::Json<CanaryResponse>, AdminError> {
    principal.require(Role::Admin)?;
    model_name("candidate_model", &req.candidate_model)?;
    model_name("stable_model", &req.stable_model)?;
    let buckets = percent_to_buckets(req.traffic_percent).ok_or_else(|| {
        bad_field(
            "traffic_percent",
            "must be a number between 0 and 100 in steps of 0.01",
        )
    })?;

    let existing = {
        let table = admin.gateway.traffic.load();
        let by_alias = table
            .by_model(&req.stable_model)
            .map(|d| d.deployment.slug.clone());
        by_alias.or_else(|| {
            table
                .iter()
                .find(|d| d.deployment.stable.model == req.stable_model)
                .map(|d| d.deployment.slug.clone())
        })
    };
    let not_served = |field: &'static str, model: &str| AdminError::NotFound {
        code: "model_not_found",
        param: Some(field),
        message: format!("no configured provider serves model `{model}`"),
    };
    let (slug, initial) = match existing {
        Some(slug) => (slug, None),
        None => {
            let provider = admin
                .provider_serving(&req.stable_model)
                .await
                .ok_or_else(|| not_served("stable_model", &req.stable_model))?;
            let state = ops::canary_base(&provider, &req.stable_model);
            (req.stable_model.clone(), Some(state))
        }
    };
    let candidate_provider = admin
        .provider_serving(&req.candidate_model)
        .await
        .ok_or_else(|| not_served("candidate_model", &req.candidate_model))?;

    let detail = serde_json::json!({
        "candidate_model": req.candidate_model, "stable_model": req.stable_model,
        "traffic_percent": req.traffic_percent, "auto_rollback": req.auto_rollback,
    });
    let (cache_version, challenger_id) = traffic::commit(
        &admin,
        &slug,
        "traffic.canary",
        &principal.id,
        &detail,
        |cur| {
            let base = cur
                .or(initial.as_ref())
                .ok_or_else(|| AdminError::DeploymentNotFound(slug.clone()))?;
            Ok(ops::canary(
                base,
                &candidate_provider,
                &req.candidate_model,
                buckets,
                req.auto_rollback,
            ))
        },
    )
    .await?;
    Ok(axum::Json(CanaryResponse {
        success: true,
        deployment_id: slug,
        challenger_id,
        cache_version,
    }))
}
