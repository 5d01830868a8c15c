//! `PATCH /v1/deployments/{slug}/traffic`: add, remove or re-weight a challenger, or switch
//! shadow mode, as scripts written for other gateways expect.
//!
//! This file maps the request to a pure traffic operation (`routing::ops`: the 50% cap, lane
//! widths, unknown challengers) and its errors to HTTP ([`apply`]); the traffic service
//! (`rollout::traffic`) runs it against the stored state with a compare-and-set on the
//! deployment's stored config version, retrying on a lost race (so two concurrent changes —
//! even on different replicas — can never leave total challenger traffic above 50%), audits it
//! with the caller and reloads the gateway's table so that the next proxied request sees it.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Principal, Role};
use super::body::{JsonBody, bad_field};
use super::{AdminError, AdminState};
use crate::rollout::traffic::{Audit, ChangeError, Current, TrafficService};
use crate::routing::ops::{self, TrafficChange, TrafficError};
use crate::routing::{CandidateState, TrafficState};
use crate::vocab::Mode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrafficAction {
    AddChallenger,
    RemoveChallenger,
    UpdateTraffic,
    ToggleShadow,
}

impl TrafficAction {
    fn as_str(self) -> &'static str {
        match self {
            TrafficAction::AddChallenger => "add_challenger",
            TrafficAction::RemoveChallenger => "remove_challenger",
            TrafficAction::UpdateTraffic => "update_traffic",
            TrafficAction::ToggleShadow => "toggle_shadow",
        }
    }
}

/// The body of `PATCH /v1/deployments/{slug}/traffic`. Which fields are needed depends on
/// `action`; a missing one is a 422 `invalid_traffic_config`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TrafficRequest {
    pub action: TrafficAction,
    /// `add_challenger`: the upstream model, optionally as `provider/model` (default: the
    /// stable variant's provider).
    #[serde(default)]
    pub model_id: Option<String>,
    /// `add_challenger` (1–50) and `update_traffic` (0–50): percent of units, 0.01 steps.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 100.0, multiple_of = 0.01)]
    pub traffic_pct: Option<f64>,
    /// `remove_challenger`, `update_traffic`: the challenger's id.
    #[serde(default)]
    pub challenger_id: Option<String>,
    /// `toggle_shadow`: true = challengers are scored silently, stable answers every request.
    #[serde(default)]
    pub shadow_mode: Option<bool>,
}

/// A challenger (candidate) of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Challenger {
    pub id: String,
    pub model_id: String,
    pub traffic_pct: f64,
    /// Whether it receives traffic (a non-zero share and the deployment not off).
    pub is_active: bool,
}

impl Challenger {
    pub fn of(c: &CandidateState, mode: Mode) -> Self {
        Self {
            id: c.variant.name.clone(),
            model_id: c.variant.model.clone(),
            traffic_pct: f64::from(c.buckets) / 100.0,
            is_active: c.buckets > 0 && mode != Mode::Off,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TrafficResponse {
    pub deployment_id: String,
    pub action: TrafficAction,
    /// The challenger the action concerned (for `toggle_shadow`, the first one, if any).
    pub challenger: Option<Challenger>,
    /// The config version of this change; it increases with every change.
    pub cache_version: u64,
}

fn invalid(param: &str, message: impl Into<String>) -> AdminError {
    AdminError::InvalidTraffic {
        param: Some(param.to_owned()),
        message: message.into(),
    }
}

fn required<'a, T>(
    value: &'a Option<T>,
    field: &str,
    action: TrafficAction,
) -> Result<&'a T, AdminError> {
    value.as_ref().ok_or_else(|| {
        invalid(
            field,
            format!("`{field}` is required for action `{}`", action.as_str()),
        )
    })
}

/// Percent → buckets; `None` when not on the 0.01 grid or outside 0–100.
pub fn percent_to_buckets(pct: f64) -> Option<u16> {
    let b = (pct * 100.0).round();
    ((0.0..=100.0).contains(&pct) && (pct * 100.0 - b).abs() < 1e-6).then_some(b as u16)
}

impl From<TrafficError> for AdminError {
    fn from(e: TrafficError) -> Self {
        match e {
            TrafficError::UnknownChallenger(_) => AdminError::NotFound {
                code: "challenger_not_found",
                param: Some("challenger_id"),
                message: e.to_string(),
            },
            TrafficError::AboveCap { .. } | TrafficError::WiderThanLane { .. } => {
                invalid("traffic_pct", e.to_string())
            }
        }
    }
}

impl From<ChangeError> for AdminError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Conflict { .. } => AdminError::Conflict(e.to_string()),
            ChangeError::Storage(e) => AdminError::from(e),
        }
    }
}

/// Applies `req` to `state`. `provider_of(model_id)` splits `provider/model` when the prefix is
/// a configured provider. Returns the new state and the challenger concerned.
pub fn apply(
    state: &TrafficState,
    req: &TrafficRequest,
    provider_of: &dyn Fn(&str) -> Option<(String, String)>,
) -> Result<(TrafficState, Option<Challenger>), AdminError> {
    let action = req.action;
    let pct_buckets = |lo: f64| -> Result<u16, AdminError> {
        let pct = *required(&req.traffic_pct, "traffic_pct", action)?;
        if !(lo..=50.0).contains(&pct) {
            return Err(invalid(
                "traffic_pct",
                format!(
                    "traffic_pct must be between {lo} and 50 for `{}`",
                    action.as_str()
                ),
            ));
        }
        percent_to_buckets(pct)
            .ok_or_else(|| invalid("traffic_pct", "traffic_pct must be a multiple of 0.01"))
    };
    let change = match action {
        TrafficAction::AddChallenger => {
            let model_id = required(&req.model_id, "model_id", action)?;
            if model_id.trim().is_empty() {
                return Err(invalid("model_id", "model_id must not be empty"));
            }
            let buckets = pct_buckets(1.0)?;
            let (provider, model) = provider_of(model_id)
                .unwrap_or_else(|| (state.stable.provider.clone(), model_id.clone()));
            TrafficChange::AddChallenger {
                model_id,
                provider,
                model,
                buckets,
            }
        }
        TrafficAction::RemoveChallenger => TrafficChange::RemoveChallenger {
            id: required(&req.challenger_id, "challenger_id", action)?,
        },
        TrafficAction::UpdateTraffic => {
            let id = required(&req.challenger_id, "challenger_id", action)?;
            // An unknown challenger is reported before a bad share.
            ops::challenger(state, id)?;
            TrafficChange::SetShare {
                id,
                buckets: pct_buckets(0.0)?,
            }
        }
        TrafficAction::ToggleShadow => {
            TrafficChange::SetShadow(*required(&req.shadow_mode, "shadow_mode", action)?)
        }
    };
    let (next, concerned) = ops::apply(state, &change)?;
    let challenger = match (&change, concerned) {
        (TrafficChange::RemoveChallenger { id }, _) => {
            let removed = &state.candidates[ops::challenger(state, id)?];
            Some(Challenger {
                is_active: false,
                traffic_pct: 0.0,
                ..Challenger::of(removed, next.mode)
            })
        }
        (_, Some(i)) => next.candidates.get(i).map(|c| Challenger::of(c, next.mode)),
        (_, None) => None,
    };
    Ok((next, challenger))
}

/// The traffic service of the admin API's gateway.
pub(super) fn service(admin: &super::Admin) -> Result<TrafficService, AdminError> {
    Ok(TrafficService::new(
        admin.store()?.clone(),
        admin.gateway.config.clone(),
        Some(admin.gateway.traffic.clone()),
    ))
}

/// Read-modify-write of one deployment's traffic through the traffic service: `change` maps
/// the current state (`None` when the deployment does not exist) to the new one, and is re-run
/// on the fresh state whenever another writer got there first. Audits and reloads.
pub(super) async fn commit<R>(
    admin: &super::Admin,
    slug: &str,
    action: &str,
    actor: &str,
    detail: &serde_json::Value,
    change: impl Fn(Option<&TrafficState>) -> Result<(TrafficState, R), AdminError>,
) -> Result<(u64, R), AdminError> {
    let audit = Audit {
        action,
        actor,
        detail: detail.clone(),
    };
    service(admin)?
        .change(slug, &audit, |cur: Option<&Current>| {
            change(cur.map(|c| &c.state))
        })
        .await
}

/// Change a deployment's challengers or shadow mode.
#[utoipa::path(
    patch,
    path = "/v1/deployments/{slug}/traffic",
    tag = "traffic",
    params(("slug" = String, Path, description = "The deployment's slug")),
    request_body = TrafficRequest,
    responses(
        (status = 200, description = "The change is in force", body = TrafficResponse),
        (status = 400, description = "The body fails the schema", body = super::ErrorResponse),
        (status = 404, description = "`deployment_not_found` or `challenger_not_found`", body = super::ErrorResponse),
        (status = 409, description = "Lost too many concurrent-update races", body = super::ErrorResponse),
        (status = 422, description = "`invalid_traffic_config`: total challenger traffic above 50% or a field the action needs is missing", body = super::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn patch_traffic(
    State(admin): State<AdminState>,
    principal: Principal,
    Path(slug): Path<String>,
    JsonBody(req): JsonBody<TrafficRequest>,
) -> Result<axum::Json<TrafficResponse>, AdminError> {
    principal.require(Role::Admin)?;
    if let Some(pct) = req.traffic_pct
        && !(0.0..=100.0).contains(&pct)
    {
        return Err(bad_field(
            "traffic_pct",
            "must be a number between 0 and 100",
        ));
    }
    let config = admin.gateway.config.clone();
    let provider_of = move |model_id: &str| {
        let (p, m) = model_id.split_once('/')?;
        config
            .providers
            .contains_key(p)
            .then(|| (p.to_owned(), m.to_owned()))
    };
    let detail = serde_json::json!({
        "action": req.action, "model_id": req.model_id, "traffic_pct": req.traffic_pct,
        "challenger_id": req.challenger_id, "shadow_mode": req.shadow_mode,
    });
    let action = format!("traffic.{}", req.action.as_str());
    let (cache_version, challenger) =
        commit(&admin, &slug, &action, &principal.id, &detail, |cur| {
            let cur = cur.ok_or_else(|| AdminError::DeploymentNotFound(slug.clone()))?;
            apply(cur, &req, &provider_of)
        })
        .await?;
    Ok(axum::Json(TrafficResponse {
        deployment_id: slug,
        action: req.action,
        challenger,
        cache_version,
    }))
}

#[cfg(test)]
mod tests;
