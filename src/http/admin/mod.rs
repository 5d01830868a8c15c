//! The admin API: seed-compatible traffic endpoints (`POST /api/v1/gateway/canary`,
//! `PATCH /v1/deployments/{slug}/traffic`), rollout control and reading, the progressive-delivery
//! hooks for Argo Rollouts and Flagger (`hooks`), API-key management,
//! and `GET /openapi.json` generated from the handlers below.
//!
//! Owns: authentication (API keys stored hashed, JWT), roles (viewer reads; admin and owner act;
//! only owner manages keys), per-caller rate limits, and the HTTP shape of every admin
//! operation. Never: decides rollout transitions (the rollout module does) or writes SQL (the
//! store does). Fails closed: an unauthenticated or under-privileged request changes nothing,
//! and a change that cannot be persisted (with its audit entry) does not take effect.

mod auth;
mod body;
mod canary;
mod deployments;
mod error;
mod history;
mod hooks;
mod jwt;
pub mod keys;
mod limit;
mod links;
mod openapi;
mod reports;
mod rollouts;
mod traffic;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, patch, post};

pub use auth::{KEY_PREFIX, Principal, Role, generate_key, hash_key};
pub use error::{AdminError, ErrorDetail, ErrorResponse};
pub use openapi::openapi;
pub use traffic::{Challenger, TrafficAction, TrafficRequest, TrafficResponse};

use super::AppState;
use limit::{FailureLimits, RateLimits};

/// The admin API's state: the gateway plus what only the admin API needs.
pub struct Admin {
    pub gateway: AppState,
    limits: RateLimits,
    /// Failed authentications per client address.
    failures: FailureLimits,
    /// Rollout alerts (disabled when built outside a Tokio runtime).
    alerts: crate::rollout::alerts::Alerts,
    /// For asking providers whether they serve a model.
    http: reqwest::Client,
    /// Signs the dashboard's short-lived report links.
    links: links::LinkSigner,
}

pub type AdminState = Arc<Admin>;

impl Admin {
    pub fn new(gateway: AppState) -> Self {
        let cfg = &gateway.config.admin;
        let limits = RateLimits::new(cfg.rate_limit_per_minute, cfg.rate_limit_burst);
        let failures = FailureLimits::new(cfg.auth_failures_per_minute, cfg.auth_failure_burst);
        let alerts = if tokio::runtime::Handle::try_current().is_ok() {
            crate::rollout::alerts::Alerts::spawn(crate::rollout::alerts::AlertOptions::default())
        } else {
            crate::rollout::alerts::Alerts::disabled()
        };
        let links = links::LinkSigner::new(cfg.link_secret.as_ref().map(|s| s.0.as_str()));
        Self {
            gateway,
            limits,
            failures,
            links,
            alerts,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    fn store(&self) -> Result<&crate::store::Store, AdminError> {
        self.gateway.store.as_ref().ok_or(AdminError::NoStore)
    }

    /// The first configured provider whose `GET /models/{model}` answers 2xx.
    async fn provider_serving(&self, model: &str) -> Option<String> {
        for p in self.gateway.config.providers.values() {
            let Ok(mut url) = reqwest::Url::parse(&format!("{}/models", p.base_url)) else {
                continue;
            };
            if let Ok(mut segments) = url.path_segments_mut() {
                segments.push(model);
            }
            let mut req = self.http.get(url);
            if let Some(key) = &p.api_key {
                req = req.bearer_auth(key);
            }
            if matches!(req.send().await, Ok(r) if r.status().is_success()) {
                return Some(p.name.clone());
            }
        }
        None
    }
}

/// The admin routes (they carry their own state, so the result merges into any router).
pub fn router(admin: AdminState) -> Router {
    Router::new()
        .route("/api/v1/gateway/canary", post(canary::start_canary))
        .route("/v1/deployments", get(deployments::list))
        .route("/v1/deployments/{slug}", get(deployments::status))
        .route(
            "/v1/deployments/{slug}/traffic",
            patch(traffic::patch_traffic),
        )
        .route("/v1/deployments/{slug}/audit", get(deployments::audit))
        .route(
            "/v1/deployments/{slug}/rollout",
            get(rollouts::status).post(rollouts::start),
        )
        .route(
            "/v1/deployments/{slug}/rollout/promote",
            post(rollouts::promote),
        )
        .route(
            "/v1/deployments/{slug}/rollout/rollback",
            post(rollouts::rollback),
        )
        .route(
            "/v1/deployments/{slug}/rollout/pause",
            post(rollouts::pause),
        )
        .route(
            "/v1/deployments/{slug}/rollout/resume",
            post(rollouts::resume),
        )
        .route(
            "/v1/deployments/{slug}/rollout/approve",
            post(rollouts::approve),
        )
        .route(
            "/v1/deployments/{slug}/stages/{stage}/report",
            get(deployments::stage_report),
        )
        .route("/v1/deployments/{slug}/reports", get(reports::all))
        .route("/v1/deployments/{slug}/reports/{index}", get(reports::html))
        .route(
            "/v1/deployments/{slug}/reports/{index}/charts",
            get(reports::charts),
        )
        .route(
            "/v1/deployments/{slug}/reports/{index}/history",
            get(history::history),
        )
        .route(
            "/v1/deployments/{slug}/reports/{index}/link",
            post(reports::link),
        )
        .route("/reports/{slug}/{index}", get(reports::signed_html))
        .route(
            "/v1/hooks/{slug}/verdict",
            get(hooks::verdict_get).post(hooks::verdict_post),
        )
        .route("/v1/hooks/{slug}/promote", post(hooks::promote))
        .route("/v1/hooks/{slug}/rollback", post(hooks::rollback))
        .route("/v1/admin/whoami", get(reports::whoami))
        .route("/v1/admin/keys", get(keys::list).post(keys::create))
        .route("/v1/admin/keys/{id}", delete(keys::revoke))
        .route("/openapi.json", get(openapi::serve))
        .with_state(admin)
}

/// Middleware state for the proxy routes when `admin.proxy_keys_required` is set.
pub use auth::require_client;

/// `GET /metrics`; with `metrics.require_key`, only for a key or token of role `viewer` or
/// above (401 without one, 403 below it).
pub async fn metrics(
    axum::extract::State(admin): axum::extract::State<AdminState>,
    parts: axum::http::request::Parts,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if admin.gateway.config.metrics.require_key
        && let Err(e) = auth::authenticate(&admin, &parts)
            .await
            .and_then(|p| p.require(Role::Viewer))
    {
        return e.into_response();
    }
    super::proxy::metrics(&admin.gateway)
}
