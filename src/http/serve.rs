//! Calling the serving variant and turning its answer into the client's response (streamed
//! through the tee, or read whole), the child span of every upstream call, and the passthrough
//! of models that are no deployment.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;
use tracing::Instrument;
use tracing::field::Empty;

use crate::capture::Endpoint;
use crate::upstream::{ClientCredentials, Upstreams, class_of_status};

use super::side::{Outcome, Side};
use super::tee::TeeStream;
use super::{ApiError, AppState, mirror};

/// The child span of one upstream call (served, fallback or background).
pub(super) fn upstream_span(side: &Side) -> tracing::Span {
    tracing::info_span!("upstream.call", otel.kind = "client", variant = %side.variant,
        role = side.role.as_str(), purpose = ?side.purpose, provider = %side.provider,
        model = %side.upstream_model, http.status_code = Empty)
}

pub(super) enum Served {
    Ok(Response),
    Failed { response: Response, retryable: bool },
}

/// Calls the serving variant and turns its answer into the client's response.
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve(
    gw: &AppState,
    side: Side,
    body: Vec<u8>,
    endpoint: Endpoint,
    stream: bool,
    strip_usage: bool,
    credentials: &ClientCredentials,
    upstream_wait: &mut Duration,
) -> Served {
    let waited = Instant::now();
    let provider = side.provider.clone();
    let span = upstream_span(&side);
    let sent = gw
        .upstreams
        .send(&provider, endpoint, body, stream, None, credentials)
        .instrument(span.clone())
        .await;
    if let Ok(r) = &sent {
        span.record("http.status_code", i64::from(r.status().as_u16()));
    }
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            *upstream_wait += waited.elapsed();
            let retryable = e.retryable();
            let client_error = ApiError::from_upstream(&e);
            side.finish(gw, Outcome::failed(None, e.class, e.detail));
            return Served::Failed {
                response: client_error.into_response(),
                retryable,
            };
        }
    };
    let status = response.status();
    if stream && status.is_success() {
        *upstream_wait += waited.elapsed();
        let tee = TeeStream::new(
            response,
            side,
            gw.clone(),
            endpoint == Endpoint::ChatCompletions,
            strip_usage,
        );
        let mut r = Response::new(Body::from_stream(tee));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Served::Ok(r);
    }
    let timeout = gw
        .upstreams
        .provider(&provider)
        .map_or(crate::config::default_timeout(), |p| p.timeout);
    let read = Upstreams::read_body(&provider, response, timeout)
        .instrument(span)
        .await;
    *upstream_wait += waited.elapsed();
    let bytes = match read {
        Ok(b) => b,
        Err(e) => {
            let retryable = e.retryable();
            let client_error = ApiError::from_upstream(&e);
            side.finish(
                gw,
                Outcome::failed(Some(status.as_u16()), e.class, e.detail),
            );
            return Served::Failed {
                response: client_error.into_response(),
                retryable,
            };
        }
    };
    let outcome = mirror::outcome_of_body(
        status.as_u16(),
        &bytes,
        side.ctx.keep_bodies,
        side.started.elapsed(),
    );
    let error = outcome.error;
    side.finish(gw, outcome);
    match (error, class_of_status(status.as_u16())) {
        (None, _) => Served::Ok(json_response(status, bytes)),
        // A provider's own error passes through with its status and body when it is JSON.
        (_, Some(_)) if serde_json::from_slice::<serde_json::Value>(&bytes).is_ok() => {
            Served::Failed {
                response: json_response(status, bytes),
                retryable: status.is_server_error(),
            }
        }
        _ => Served::Failed {
            response: ApiError::BadUpstream.into_response(),
            retryable: true,
        },
    }
}

fn json_response(status: StatusCode, bytes: bytes::Bytes) -> Response {
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A model that is no deployment: the configured default provider answers it unchanged, or 404.
pub(super) async fn passthrough(
    gw: &AppState,
    model: &str,
    endpoint: Endpoint,
    body: Vec<u8>,
    stream: bool,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let Some(provider) = gw.config.default_provider.as_deref() else {
        return Err(ApiError::ModelNotFound(model.to_owned()));
    };
    let response = gw
        .upstreams
        .send(
            provider,
            endpoint,
            body,
            stream,
            None,
            &ClientCredentials::from_headers(headers),
        )
        .await
        .map_err(|e| ApiError::from_upstream(&e))?;
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let mut r = Response::new(Body::from_stream(response.bytes_stream()));
    *r.status_mut() = status;
    if let Some(ct) = content_type {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(r)
}
