//! Phase 3 of the request path: serve, with the live fallback. Calls the serving variant and
//! turns its answer into the client's response (streamed through the tee, or read whole); a
//! failed candidate is retried on stable when the deployment falls back. Also the child span of
//! every upstream call, and the passthrough of models that are no deployment.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;
use tracing::Instrument;
use tracing::field::Empty;

use crate::capture::{PairSlot, Purpose, Role};
use crate::routing::Target;
use crate::telemetry::DeploymentLabels;
use crate::upstream::request::ClientRequest;
use crate::upstream::translate::StreamTranslator;
use crate::upstream::{Call, ClientCredentials, UpstreamError, Upstreams, class_of_status};

use super::route::{RoutedRequest, role_of};
use super::side::{Outcome, Side};
use super::tee::TeeStream;
use super::{ApiError, AppState, mirror};

/// The child span of one upstream call (served, fallback or background).
/// Besides canarist's own fields it carries the OpenTelemetry GenAI client-span attributes
/// (`gen_ai.*`); `Side::finish` fills in the response's.
pub(super) fn upstream_span(side: &mut Side) -> tracing::Span {
    let span = tracing::info_span!("upstream.call", otel.kind = "client", variant = %side.variant,
        role = side.role.as_str(), purpose = ?side.purpose, provider = %side.provider,
        model = %side.upstream_model, http.status_code = Empty,
        gen_ai.operation.name = side.ctx.endpoint.genai_operation(),
        gen_ai.provider.name = side.upstream_shape().api().as_str(),
        gen_ai.request.model = %side.upstream_model, gen_ai.response.model = Empty,
        gen_ai.response.id = Empty, gen_ai.response.finish_reasons = Empty,
        gen_ai.usage.input_tokens = Empty, gen_ai.usage.output_tokens = Empty,
        error.type = Empty);
    side.span = span.clone();
    span
}

/// Phase 3's result: the client's response and who answered it.
pub(super) struct Answered {
    pub response: Response,
    /// Whose answer the client receives (stable after a fallback).
    pub served: Target,
    /// Time spent waiting on upstreams (all attempts), which is not the gateway's overhead.
    pub upstream_wait: Duration,
}

/// Serves the plan's variant; a retryable failure of a candidate is retried on stable when the
/// deployment falls back (counted; the failure still counts against the candidate).
pub(super) async fn serve_with_fallback(
    gw: &AppState,
    routed: &RoutedRequest,
    req: &ClientRequest<'_>,
    pair: Option<PairSlot>,
    credentials: &ClientCredentials,
) -> Answered {
    let target = routed.plan.serve;
    let purpose = (role_of(target), Purpose::Served);
    let (side, body) = match routed.side(gw, routed.variant(target), purpose, req, pair) {
        Ok(side) => side,
        // The route phase checked the translation already; this is not expected.
        Err(e) => {
            return Answered {
                response: e.into_response(),
                served: target,
                upstream_wait: Duration::ZERO,
            };
        }
    };
    let first = call(gw, side, body, req, credentials).await;
    let dep = routed.deployment();
    let fallback = match first.served {
        Served::Failed { retryable, .. } => {
            retryable && dep.fallback_to_stable && matches!(target, Target::Candidate(_))
        }
        Served::Ok(_) => false,
    };
    let stable = (Role::Stable, Purpose::Fallback);
    let second = fallback
        .then(|| routed.side(gw, &dep.stable, stable, req, None).ok())
        .flatten();
    let Some((side, body)) = second else {
        return Answered {
            response: first.served.into_response(),
            served: target,
            upstream_wait: first.upstream_wait,
        };
    };
    gw.metrics
        .fallbacks
        .get_or_create(&DeploymentLabels {
            deployment: dep.slug.clone(),
        })
        .inc();
    let second = call(gw, side, body, req, credentials).await;
    Answered {
        response: second.served.into_response(),
        served: Target::Stable,
        upstream_wait: first.upstream_wait + second.upstream_wait,
    }
}

/// How one call to a variant went, for the client.
enum Served {
    Ok(Response),
    Failed { response: Response, retryable: bool },
}

impl Served {
    fn into_response(self) -> Response {
        match self {
            Served::Ok(r) | Served::Failed { response: r, .. } => r,
        }
    }
}

/// One call to a variant and how long it waited on the upstream.
struct Attempt {
    served: Served,
    upstream_wait: Duration,
}

/// Calls the side's variant and turns its answer into a response for the client.
async fn call(
    gw: &AppState,
    side: Side,
    body: bytes::Bytes,
    req: &ClientRequest<'_>,
    credentials: &ClientCredentials,
) -> Attempt {
    let waited = Instant::now();
    let mut side = side;
    let span = upstream_span(&mut side);
    let (endpoint, stream) = (side.upstream_shape().endpoint(), side.ctx.stream);
    let sent = gw
        .upstreams
        .send(&side.provider, endpoint, body, stream, None, credentials)
        .instrument(span.clone())
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            let upstream_wait = waited.elapsed();
            let served = failed(gw, side, None, e);
            return Attempt {
                served,
                upstream_wait,
            };
        }
    };
    let status = response.status();
    span.record("http.status_code", i64::from(status.as_u16()));
    if stream && status.is_success() {
        let upstream_wait = waited.elapsed();
        return Attempt {
            served: Served::Ok(tee_response(gw, response, side, req)),
            upstream_wait,
        };
    }
    let timeout = gw
        .upstreams
        .provider(&side.provider)
        .map_or(crate::config::default_timeout(), |p| p.timeout);
    let max_body = gw.config.upstream_limits.max_body_bytes;
    let read = Upstreams::read_body(&side.provider, response, timeout, max_body)
        .instrument(span)
        .await;
    let upstream_wait = waited.elapsed();
    let served = match read {
        Ok(bytes) => answer_of_body(gw, side, status, bytes),
        Err(e) => failed(gw, side, Some(status.as_u16()), e),
    };
    Attempt {
        served,
        upstream_wait,
    }
}

/// Finishes a side whose call failed; the client's error response (Anthropic-shaped on the
/// Messages path, by `error::anthropic_errors`).
fn failed(gw: &AppState, side: Side, status: Option<u16>, e: UpstreamError) -> Served {
    let retryable = e.retryable();
    let response = ApiError::from_upstream(&e).into_response();
    side.finish(gw, Outcome::failed(status, e.class, e.detail));
    Served::Failed {
        response,
        retryable,
    }
}

/// The client's streamed response: the upstream's events through the tee (translated into
/// the client's API event by event when the variant speaks the other one).
fn tee_response(
    gw: &AppState,
    response: reqwest::Response,
    side: Side,
    req: &ClientRequest<'_>,
) -> Response {
    let limits = gw.config.upstream_limits;
    let assembler = side.upstream_shape().stream_assembler(limits);
    let translator = side.translation.map(|d| {
        let created = chrono::Utc::now().timestamp();
        StreamTranslator::new(d, req.client_wants_usage, created, limits.max_tool_calls)
    });
    let strip_usage = translator.is_none() && req.withhold_usage();
    let tee = TeeStream::new(response, side, gw.clone(), assembler, strip_usage);
    let tee = match translator {
        Some(t) => tee.translating(t),
        None => tee,
    };
    let mut r = Response::new(Body::from_stream(tee));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Finishes a side from its whole body; the client's response.
fn answer_of_body(gw: &AppState, side: Side, status: StatusCode, bytes: bytes::Bytes) -> Served {
    let outcome =
        mirror::outcome_of_body(&side, status.as_u16(), &bytes, &gw.config.upstream_limits);
    let error = outcome.error;
    let translation = side.translation;
    side.finish(gw, outcome);
    let bytes = match translation {
        Some(d) => super::cross::client_body(d, status.as_u16(), bytes),
        None => bytes,
    };
    match (error, class_of_status(status.as_u16())) {
        (None, _) => Served::Ok(json_response(status, bytes)),
        // A provider's own error passes through with its status and body when it is JSON.
        (_, Some(_)) if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() => {
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
    shape: &dyn crate::upstream::shape::WireShape,
    req: &ClientRequest<'_>,
    body: Vec<u8>,
    credentials: &ClientCredentials,
) -> Result<Response, ApiError> {
    let Some(provider) = gw.config.default_provider.as_deref() else {
        return Err(ApiError::ModelNotFound(req.model.clone()));
    };
    super::route::check_api(gw, shape, &req.model, provider)?;
    let call = Call {
        path: req.endpoint.path(),
        stream: req.stream,
        timeout: None,
    };
    relay(gw, provider, call, body, credentials).await
}

/// `/v1/messages/count_tokens`: to the provider of the deployment's stable variant, with its
/// model and system prompt (a count for the body stable would be sent), else unchanged to
/// `default_provider`, else 404. Nothing is captured.
pub(super) async fn count_tokens_for(
    gw: &AppState,
    req: &ClientRequest<'_>,
    body: Vec<u8>,
    credentials: &ClientCredentials,
) -> Result<Response, ApiError> {
    let shape = &crate::upstream::shape::Messages;
    let traffic = gw.traffic.load();
    let (provider, body) = match traffic.by_model(&req.model) {
        Some(routed) => {
            let stable = &routed.deployment.stable;
            (stable.provider.clone(), req.body_with_model(stable))
        }
        None => match gw.config.default_provider.as_deref() {
            Some(p) => (p.to_owned(), body),
            None => return Err(ApiError::ModelNotFound(req.model.clone())),
        },
    };
    super::route::check_api(gw, shape, &req.model, &provider)?;
    let call = Call {
        path: "/messages/count_tokens",
        stream: false,
        timeout: None,
    };
    relay(gw, &provider, call, body, credentials).await
}

/// Sends one call and relays the provider's answer as it comes: status, content type and
/// body, unchanged.
async fn relay(
    gw: &AppState,
    provider: &str,
    call: Call<'_>,
    body: Vec<u8>,
    credentials: &ClientCredentials,
) -> Result<Response, ApiError> {
    let response = gw
        .upstreams
        .send_to(provider, call, body, credentials)
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
