//! `http`: the axum application: the proxy routes (OpenAI's chat completions, completions,
//! embeddings and Responses API; Anthropic's Messages API and its count_tokens), `/metrics`,
//! `/healthz`, and the admin API ([`admin`]) and the dashboard at `/ui` (`ui`).
//!
//! Owns: request handling, the per-request span, response headers, the one error type
//! ([`ApiError`]) that becomes OpenAI-shaped JSON. Never: waits on capture, judging, storage or
//! the controller — background calls are detached tasks and captured events go through a
//! bounded channel. A shadow call never changes the client's response.

pub mod admin;
mod background;
mod bounds;
mod cross;
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
use axum::http::HeaderValue;
use axum::response::Response;
use axum::routing::{get, post};

pub use bounds::BodyReadTimeout;
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
/// the admin API. Errors on the Anthropic paths are in Anthropic's shape
/// ([`error::anthropic_errors`]), everywhere else in OpenAI's.
pub fn router(state: AppState) -> Router {
    let admin = std::sync::Arc::new(admin::Admin::new(state.clone()));
    let mut proxy = Router::new()
        .route("/v1/chat/completions", post(proxy::chat_completions))
        .route("/v1/completions", post(proxy::completions))
        .route("/v1/embeddings", post(proxy::embeddings))
        .route("/v1/responses", post(proxy::responses))
        .route("/v1/messages", post(proxy::messages))
        .route("/v1/messages/count_tokens", post(proxy::count_tokens))
        .route("/v1/models", get(proxy::models));
    if state.config.admin.proxy_keys_required {
        proxy = proxy.route_layer(axum::middleware::from_fn_with_state(
            admin.clone(),
            admin::require_client,
        ));
    }
    let bounded = axum::middleware::from_fn_with_state(state.clone(), bounds::bound_request);
    proxy
        .route("/healthz", get(|| async { "ok" }))
        .fallback(proxy::not_found)
        .with_state(state)
        .merge(admin::router(admin.clone()))
        .merge(
            Router::new()
                .route("/metrics", get(admin::metrics))
                .with_state(admin),
        )
        .merge(ui::router())
        .layer(bounded)
        .layer(axum::middleware::map_response(ensure_request_id))
        .layer(axum::middleware::from_fn(error::anthropic_errors))
        .layer(axum::middleware::map_response(security_headers))
}

/// The policy of every HTML page the gateway serves (the dashboard, stage reports): scripts
/// and styles only from the gateway itself, plus the report's one inline style by its hash;
/// no inline script at all; nothing may frame a page.
fn html_policy() -> HeaderValue {
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self' {}; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        crate::report::style_source()
    );
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
}

/// `Content-Security-Policy` (strict for HTML, nothing at all for anything else),
/// `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer` on every response.
async fn security_headers(mut response: Response) -> Response {
    use axum::http::header;
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let h = response.headers_mut();
    let policy = if html {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        html_policy()
    } else {
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'")
    };
    h.insert(header::CONTENT_SECURITY_POLICY, policy);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
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
