//! The proxy handlers (OpenAI's chat completions, completions, embeddings and Responses API,
//! Anthropic's Messages API) and the request path, in named phases (in the spirit
//! of pingora's `ProxyHttp`), each a function with a typed result:
//!
//! 1. **route** ([`super::route`]): parse with the surface's [`WireShape`], unit key, cohorts,
//!    plan, span → a `RoutedRequest` (or the passthrough, for a model that is no deployment);
//! 2. **start background calls** ([`super::background`]): the mirror (shadow, live pair sample)
//!    or the A/A arm → the pair slot the served side completes;
//! 3. **serve with fallback** ([`super::serve`]) → the client's response and who answered it;
//! 4. **finish** ([`finish`]): metrics and the canarist response headers.
//!
//! A handler only names its surface's shape; every surface runs the same phases.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;
use tracing::Instrument;
use tracing::field::Empty;
use uuid::Uuid;

use crate::telemetry::traces;
use crate::upstream::ClientCredentials;
use crate::upstream::request;
use crate::upstream::shape::{Messages, OpenAi, Responses, WireShape};

use super::route::{RoutedRequest, route};
use super::serve::{Answered, count_tokens_for, passthrough, serve_with_fallback};
use super::{
    ApiError, AppState, Gateway, HEADER_DEPLOYMENT, HEADER_REQUEST_ID, HEADER_STAGE,
    HEADER_VARIANT, background,
};

pub async fn chat_completions(
    State(gw): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(gw, &OpenAi::CHAT_COMPLETIONS, headers, body).await
}

pub async fn completions(State(gw): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    handle(gw, &OpenAi::COMPLETIONS, headers, body).await
}

pub async fn embeddings(State(gw): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    handle(gw, &OpenAi::EMBEDDINGS, headers, body).await
}

/// `POST /v1/responses`: OpenAI's Responses API.
pub async fn responses(State(gw): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    handle(gw, &Responses, headers, body).await
}

/// `POST /v1/messages`: Anthropic's Messages API.
pub async fn messages(State(gw): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    handle(gw, &Messages, headers, body).await
}

/// `POST /v1/messages/count_tokens`: passed to the provider of the deployment's stable variant
/// with its model (and system prompt), or unchanged to `default_provider`; not captured.
pub async fn count_tokens(State(gw): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let answer = async {
        let bytes = read_body(&gw, body, &headers).await?;
        let req = Messages.parse(&bytes)?;
        let credentials = ClientCredentials::from_headers(&headers);
        count_tokens_for(&gw, &req, bytes.to_vec(), &credentials).await
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/models`: the deployments, as OpenAI model objects.
pub async fn models(State(gw): State<AppState>) -> Response {
    let traffic = gw.traffic.load();
    let data: Vec<serde_json::Value> = traffic
        .iter()
        .map(|d| {
            serde_json::json!({"id": d.deployment.model, "object": "model", "created": 0,
                               "owned_by": "canarist"})
        })
        .collect();
    axum::Json(serde_json::json!({"object": "list", "data": data})).into_response()
}

/// `GET /metrics` (when `metrics.require_key`, the admin API checks the key first).
pub fn metrics(gw: &Gateway) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        gw.metrics.encode(),
    )
        .into_response()
}

pub async fn not_found() -> Response {
    let body = super::error_body(
        "Unknown request URL. canarist serves /v1/chat/completions, /v1/completions, \
         /v1/embeddings, /v1/responses, /v1/messages, /v1/messages/count_tokens and /v1/models.",
        "invalid_request_error",
        None,
        Some("unknown_url"),
    );
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// One proxied request: its span and request id around the phases.
async fn handle(
    gw: AppState,
    shape: &'static dyn WireShape,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let request_id = Uuid::new_v4();
    // Fields are filled in once routing has decided; all of this is a no-op without a subscriber.
    let span = tracing::info_span!("proxy.request", otel.kind = "server", %request_id,
        endpoint = shape.endpoint().path(), deployment = Empty, variant = Empty, stage = Empty,
        bucket = Empty, cohort = Empty, sticky = Empty, http.status_code = Empty,
        gen_ai.operation.name = shape.endpoint().genai_operation(),
        gen_ai.provider.name = shape.api().as_str(), gen_ai.request.model = Empty);
    traces::adopt_client_parent(&span, &headers);
    gw.metrics.traces.remember(request_id, &span);
    let mut response = phases(&gw, shape, &headers, body, request_id, started)
        .instrument(span.clone())
        .await
        .unwrap_or_else(IntoResponse::into_response);
    span.record("http.status_code", i64::from(response.status().as_u16()));
    let mut id = Uuid::encode_buffer();
    if let Ok(v) = HeaderValue::from_str(request_id.hyphenated().encode_lower(&mut id)) {
        response.headers_mut().insert(HEADER_REQUEST_ID, v);
    }
    response
}

/// The request path: read and parse, then the four phases in order.
async fn phases(
    gw: &AppState,
    shape: &'static dyn WireShape,
    headers: &HeaderMap,
    body: Body,
    request_id: Uuid,
    started: Instant,
) -> Result<Response, ApiError> {
    let bytes = read_body(gw, body, headers).await?;
    let req = shape.parse(&bytes)?;
    tracing::Span::current().record("gen_ai.request.model", req.model.as_str());
    let credentials = ClientCredentials::from_headers(headers);
    let Some(routed) = route(gw, shape, &req, headers, request_id)? else {
        return passthrough(gw, shape, &req, bytes.to_vec(), &credentials).await;
    };
    let background = background::start(gw, &routed, &req, &credentials);
    let answered = serve_with_fallback(gw, &routed, &req, background.pair, &credentials).await;
    Ok(finish(gw, &routed, answered, started))
}

/// Phase 4: the overhead and request metrics, the span's variant, the canarist headers.
fn finish(gw: &Gateway, routed: &RoutedRequest, answered: Answered, started: Instant) -> Response {
    let Answered {
        mut response,
        served,
        upstream_wait,
    } = answered;
    let dep = routed.deployment();
    let served_by = routed.variant(served).name.as_str();
    tracing::Span::current().record("variant", served_by);
    let overhead = started.elapsed().saturating_sub(upstream_wait);
    gw.metrics.overhead.observe(overhead.as_secs_f64());
    let handles = gw.metrics.variant(&dep.slug, served_by);
    (gw.metrics
        .requests_answered(&handles, status_class(response.status())))
    .inc();
    let h = response.headers_mut();
    for (name, value) in [
        (HEADER_DEPLOYMENT, dep.slug.as_str()),
        (HEADER_VARIANT, served_by),
        (HEADER_STAGE, dep.stage.as_str()),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    response
}

/// The whole request body, up to `max_body_bytes`, within `server.body_read_timeout` (the
/// deadline is on the body itself: `bounds`).
async fn read_body(
    gw: &Gateway,
    body: Body,
    headers: &HeaderMap,
) -> Result<bytes::Bytes, ApiError> {
    let limit = gw.config.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge { limit });
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::TooLarge { limit }
        } else if let Some(super::BodyReadTimeout(after)) = super::BodyReadTimeout::find(&e) {
            gw.metrics.http.body_timeouts.inc();
            ApiError::BodyTimeout(after)
        } else {
            ApiError::BadRequest(request::RequestError::InvalidJson(
                "the body could not be read".to_owned(),
            ))
        }
    })
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}
