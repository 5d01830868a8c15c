//! `http`: the axum application: the OpenAI-compatible proxy routes, `/metrics`, `/healthz`, and
//! the admin API ([`admin`]) and the dashboard at `/ui` (`ui`).
//!
//! Owns: request handling, the per-request span, response headers, the one error type
//! ([`ApiError`]) that becomes OpenAI-shaped JSON. Never: waits on capture, judging, storage or
//! the controller — background calls are detached tasks and captured events go through a
//! bounded channel. A shadow call never changes the client's response.

pub mod admin;
mod background;
mod error;
mod mirror;
mod proxy;
mod route;
mod serve;
mod server;
mod side;
mod spend;
mod state;
mod tee;
mod ui;

use axum::Router;
use axum::routing::{get, post};

pub use error::{ApiError, Blame, error_body};
pub use server::{drain_background, serve};
pub use spend::SpendTracker;
pub use state::{AppState, Gateway, GatewayParts};

/// Response header: the deployment that handled the request.
pub const HEADER_DEPLOYMENT: &str = "x-canarist-deployment";
/// Response header: the variant whose answer the client received.
pub const HEADER_VARIANT: &str = "x-canarist-variant";
/// Response header: the rollout stage the request was routed under.
pub const HEADER_STAGE: &str = "x-canarist-stage";
/// Response header: the gateway's request id (also on every captured observation).
pub const HEADER_REQUEST_ID: &str = "x-request-id";

/// The gateway's routes: the proxy (behind client keys when `admin.proxy_keys_required`) and
/// the admin API.
pub fn router(state: AppState) -> Router {
    let admin = std::sync::Arc::new(admin::Admin::new(state.clone()));
    let mut proxy = Router::new()
        .route("/v1/chat/completions", post(proxy::chat_completions))
        .route("/v1/completions", post(proxy::completions))
        .route("/v1/embeddings", post(proxy::embeddings))
        .route("/v1/models", get(proxy::models));
    if state.config.admin.proxy_keys_required {
        proxy = proxy.route_layer(axum::middleware::from_fn_with_state(
            admin.clone(),
            admin::require_client,
        ));
    }
    proxy
        .route("/metrics", get(proxy::metrics))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(proxy::not_found)
        .with_state(state)
        .merge(admin::router(admin))
        .merge(ui::router())
        .layer(axum::middleware::map_response(ensure_request_id))
}

/// Every response carries a request id; proxied ones already have the id their observations
/// were captured under.
async fn ensure_request_id(mut response: axum::response::Response) -> axum::response::Response {
    let missing = !response.headers().contains_key(HEADER_REQUEST_ID);
    if let Some(v) = missing
        .then(|| axum::http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).ok())
        .flatten()
    {
        response.headers_mut().insert(HEADER_REQUEST_ID, v);
    }
    response
}
