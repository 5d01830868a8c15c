//! `GET /v1/deployments/{slug}/reports/{index}/history`: the gate's recorded evaluations of one
//! stage of the deployment's latest rollout (the data of the charts over time, which the
//! `…/charts` endpoint serves drawn). Viewer role.
//!
//! Never: writes anything. Fails closed: a store error is a 500 (logged, not echoed); an unknown
//! deployment, rollout or stage is a 404.

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{Principal, Role};
use super::reports::{options, stage_index};
use super::{AdminError, AdminState};
use crate::report;

/// One evaluation of one gate cell (metric × cohort), as the controller recorded it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryPoint {
    pub metric: String,
    /// `all` or a cohort label such as `tier=enterprise`.
    pub cohort: String,
    pub at: DateTime<Utc>,
    pub estimate: Option<f64>,
    /// The interval the verdict rested on; `null` on a side where it was unbounded (too little
    /// data).
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    /// The threshold the interval was compared with.
    pub bound: Option<f64>,
    /// The gate's method, e.g. `paired_delta_cs`.
    pub method: String,
    /// The cell's verdict, e.g. `inconclusive`, `non_inferior`, `worse`.
    pub verdict: String,
    pub candidate_n: u64,
    pub stable_n: u64,
}

/// A stage's recorded gate evaluations, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GateHistory {
    pub deployment: String,
    pub rollout_id: String,
    pub stage: u32,
    /// The stage's label, e.g. `canary-1`.
    pub name: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Thinned by the controller: a cell when its evidence changed, at most once per
    /// max(5 s, the stage's age / 40), always on a verdict change and on the deciding tick.
    pub points: Vec<HistoryPoint>,
}

fn name_of<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One stage's recorded gate evaluations (the charts over time, as data).
#[utoipa::path(
    get,
    path = "/v1/deployments/{slug}/reports/{index}/history",
    tag = "deployments",
    params(
        ("slug" = String, Path, description = "The deployment's slug"),
        ("index" = String, Path, description = "The stage's index in the ramp (0 = first)"),
    ),
    responses(
        (status = 200, description = "The stage's recorded evaluations, oldest first", body = GateHistory),
        (status = 404, description = "`deployment_not_found`, `rollout_not_found` or `stage_not_found`", body = super::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn history(
    State(admin): State<AdminState>,
    principal: Principal,
    Path((slug, index)): Path<(String, String)>,
) -> Result<axum::Json<GateHistory>, AdminError> {
    principal.require(Role::Viewer)?;
    let index = stage_index(&index)?;
    options(&admin, &slug)?;
    let h = report::stage_history(admin.store()?, &slug, index).await?;
    Ok(axum::Json(GateHistory {
        deployment: slug,
        rollout_id: h.rollout_id.to_string(),
        stage: h.stage,
        name: h.name,
        started_at: h.started_at,
        ended_at: h.ended_at,
        points: h
            .points
            .into_iter()
            .map(|p| HistoryPoint {
                method: name_of(&p.method),
                verdict: p.verdict.as_str().to_owned(),
                metric: p.metric,
                cohort: p.cohort,
                at: p.at,
                estimate: p.estimate,
                lo: p.lo,
                hi: p.hi,
                bound: p.bound,
                candidate_n: p.candidate_n,
                stable_n: p.stable_n,
            })
            .collect(),
    }))
}
