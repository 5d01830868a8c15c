//! The full stage reports of [`crate::report`] over HTTP: every stage of the deployment's latest
//! rollout as JSON (what the dashboard reads for the ramp curve and each stage's decision and
//! evidence), and one stage as the self-contained HTML page. Built with the deployment's own gate
//! policy and ramp from the config. Viewer role. Also `GET /v1/admin/whoami` (any valid key or
//! token: its actor id and role, so the dashboard knows which buttons to show).
//!
//! `POST …/reports/{index}/link` hands the dashboard a short-lived signed URL for one report
//! (`/reports/{slug}/{index}?exp&sig`, see `links`), which a browser opens without a key.
//!
//! Never: writes anything. Fails closed: a store error is a 500 (logged, not echoed); an unknown
//! rollout or stage is a 404.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{Principal, Role};
use super::{AdminError, AdminState};
use crate::report::{self, BuildOptions, ReportError};

/// Every stage report of the deployment's latest rollout, in stage order (the schema of
/// `docs/report-schema.md`, one object per stage).
#[derive(Debug, Serialize)]
pub struct StageReports {
    pub reports: Vec<report::StageReport>,
}

impl From<ReportError> for AdminError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::NoRollout(slug) => AdminError::NotFound {
                code: "rollout_not_found",
                param: Some("slug"),
                message: format!("deployment `{slug}` has no rollout"),
            },
            e @ ReportError::NoStage { .. } => AdminError::NotFound {
                code: "stage_not_found",
                param: Some("stage"),
                message: e.to_string(),
            },
            other => AdminError::Internal(format!("report: {other}")),
        }
    }
}

pub(super) fn options(admin: &AdminState, slug: &str) -> Result<BuildOptions, AdminError> {
    let table = admin.gateway.traffic.load();
    let Some(live) = table.by_slug(slug) else {
        return Err(AdminError::DeploymentNotFound(slug.to_owned()));
    };
    // The models as routed now, plus any candidate only the static config still names (one
    // an operator removed through the traffic API after its rollout).
    let mut models = report::Models::of(&live.deployment);
    if let Some(configured) = admin.gateway.config.deployment(slug) {
        for (name, model) in report::Models::of(configured).candidates {
            models.candidates.entry(name).or_insert(model);
        }
    }
    let settings = admin.gateway.config.rollouts.get(slug);
    Ok(BuildOptions {
        policy: settings.and_then(|s| s.gate.clone()),
        ramp: settings.map(|s| s.ramp.clone()),
        models: Some(models),
        // Relative: the gateway serving the report serves the dashboard too.
        links_base: Some(String::new()),
        ..BuildOptions::default()
    })
}

/// Every stage's report (JSON).
#[utoipa::path(
    get,
    path = "/v1/deployments/{slug}/reports",
    tag = "deployments",
    params(("slug" = String, Path, description = "The deployment's slug")),
    responses(
        (status = 200, description = "`{\"reports\": [StageReport…]}`, one per stage of the latest rollout (schema in docs/report-schema.md)"),
        (status = 404, description = "`deployment_not_found` or `rollout_not_found`", body = super::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn all(
    State(admin): State<AdminState>,
    principal: Principal,
    Path(slug): Path<String>,
) -> Result<axum::Json<StageReports>, AdminError> {
    principal.require(Role::Viewer)?;
    let opts = options(&admin, &slug)?;
    let reports = report::build_all(admin.store()?, &slug, &opts).await?;
    Ok(axum::Json(StageReports { reports }))
}

/// One stage's report as a self-contained HTML page.
#[utoipa::path(
    get,
    path = "/v1/deployments/{slug}/reports/{index}",
    tag = "deployments",
    params(
        ("slug" = String, Path, description = "The deployment's slug"),
        ("index" = String, Path, description = "The stage's index in the ramp (0 = first)"),
    ),
    responses(
        (status = 200, description = "The report (text/html, no external assets)", content_type = "text/html"),
        (status = 404, description = "`deployment_not_found`, `rollout_not_found` or `stage_not_found`", body = super::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn html(
    State(admin): State<AdminState>,
    principal: Principal,
    Path((slug, index)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    principal.require(Role::Viewer)?;
    let index = stage_index(&index)?;
    render(&admin, &slug, index).await
}

/// One stage's charts as SVG, rendered by the same code as its HTML report (`report::svg_*`),
/// so the dashboard and the report cannot draw different things. Each is one `<svg>` element
/// styled by classes (`/ui/chart.css`), with no script and every label escaped.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StageCharts {
    /// The ramp: every stage of the configured ramp, shadow as a hatched band at 0% served,
    /// "you are here" on the rollout's current stage.
    pub ramp: String,
    /// The gate's forest plot (every evidence row with an interval, at the gate's α);
    /// `null` when the stage has no decision or no interval.
    pub forest: Option<String>,
    /// Latency distributions per variant (successful requests, served and mirrored).
    pub latency: String,
    /// The gate's evidence over the stage: each cell's interval as data arrived, the
    /// decision's evidence last; `null` when nothing was recorded and no decision exists.
    pub history: Option<String>,
    /// The report's summary card, as data (the same text the report prints first).
    #[schema(value_type = Object)]
    pub summary: report::Summary,
}

/// One stage's charts and summary card.
#[utoipa::path(
    get,
    path = "/v1/deployments/{slug}/reports/{index}/charts",
    tag = "deployments",
    params(
        ("slug" = String, Path, description = "The deployment's slug"),
        ("index" = String, Path, description = "The stage's index in the ramp (0 = first)"),
    ),
    responses(
        (status = 200, description = "The charts (SVG markup) and the summary card", body = StageCharts),
        (status = 404, description = "`deployment_not_found`, `rollout_not_found` or `stage_not_found`", body = super::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn charts(
    State(admin): State<AdminState>,
    principal: Principal,
    Path((slug, index)): Path<(String, String)>,
) -> Result<axum::Json<StageCharts>, AdminError> {
    principal.require(Role::Viewer)?;
    let index = stage_index(&index)?;
    let opts = options(&admin, &slug)?;
    let built = report::build_with(admin.store()?, &slug, index, &opts).await?;
    Ok(axum::Json(StageCharts {
        ramp: report::ramp_chart(&built),
        forest: report::forest_chart(&built),
        latency: report::latency_chart(&built),
        history: report::history_chart(&built),
        summary: built.summary,
    }))
}

/// Parsed here so that a non-number is the same documented 404 as an unknown stage.
pub(super) fn stage_index(index: &str) -> Result<u32, AdminError> {
    index.parse().map_err(|_| AdminError::NotFound {
        code: "stage_not_found",
        param: Some("index"),
        message: format!("`{index}` is not a stage index (0 = the ramp's first stage)"),
    })
}

async fn render(admin: &AdminState, slug: &str, index: u32) -> Result<Response, AdminError> {
    let opts = options(admin, slug)?;
    let built = report::build_with(admin.store()?, slug, index, &opts).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        report::to_html(&built),
    )
        .into_response())
}

/// A short-lived link to one stage's report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportLink {
    /// `/reports/{slug}/{index}?exp=…&sig=…` (relative to this gateway).
    pub url: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// A signed link that opens one stage's HTML report without a key, for five minutes.
#[utoipa::path(
    post,
    path = "/v1/deployments/{slug}/reports/{index}/link",
    tag = "deployments",
    params(
        ("slug" = String, Path, description = "The deployment's slug"),
        ("index" = String, Path, description = "The stage's index in the ramp (0 = first)"),
    ),
    responses(
        (status = 200, description = "The link", body = ReportLink),
        (status = 404, description = "`deployment_not_found` or `stage_not_found`", body = super::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn link(
    State(admin): State<AdminState>,
    principal: Principal,
    Path((slug, index)): Path<(String, String)>,
) -> Result<axum::Json<ReportLink>, AdminError> {
    principal.require(Role::Viewer)?;
    options(&admin, &slug)?;
    let index = stage_index(&index)?;
    let now = chrono::Utc::now();
    let (url, exp) = admin.links.link(&slug, index, now.timestamp());
    Ok(axum::Json(ReportLink {
        url,
        expires_at: chrono::DateTime::from_timestamp(exp, 0).unwrap_or(now),
    }))
}

/// `GET /reports/{slug}/{index}?exp&sig`: the report a signed link names (no key: the signature
/// is the credential, for that report only, until `exp`).
pub async fn signed_html(
    State(admin): State<AdminState>,
    Path((slug, index)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Response, AdminError> {
    let invalid = || {
        AdminError::Unauthorized(
            "this report link is invalid or has expired; open the report again from the dashboard"
                .into(),
        )
    };
    let index: u32 = index.parse().map_err(|_| invalid())?;
    let exp: i64 = query
        .get("exp")
        .and_then(|e| e.parse().ok())
        .ok_or_else(invalid)?;
    let sig = query.get("sig").ok_or_else(invalid)?;
    let now = chrono::Utc::now().timestamp();
    if !admin.links.verify(&slug, index, exp, sig, now) {
        return Err(invalid());
    }
    render(&admin, &slug, index).await
}

/// The caller as the admin API sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WhoAmI {
    /// `key:<key id>` or `jwt:<subject>`.
    pub id: String,
    pub role: Role,
}

/// Who the bearer credential belongs to, and its role.
#[utoipa::path(
    get,
    path = "/v1/admin/whoami",
    tag = "keys",
    responses((status = 200, description = "The caller", body = WhoAmI)),
    security(("bearer" = []))
)]
pub async fn whoami(principal: Principal) -> axum::Json<WhoAmI> {
    axum::Json(WhoAmI {
        id: principal.id,
        role: principal.role,
    })
}
