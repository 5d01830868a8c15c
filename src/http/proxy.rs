//! The OpenAI-compatible proxy handlers: read the body once, route, start the background call,
//! serve (with the live fallback), and set the canarist response headers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;
use tracing::Instrument;
use tracing::field::Empty;
use uuid::Uuid;

use crate::capture::{Endpoint, PairSlot, Purpose, Role};
use crate::config::{Deployment, Mode, Variant};
use crate::routing::{self, Draws, Target, UNIT_HEADER};
use crate::telemetry::{DeploymentLabels, RequestLabels, SkipLabels, traces};
use crate::upstream::ClientCredentials;
use crate::upstream::request::{self, ClientRequest};

use super::serve::{Served, passthrough, serve};
use super::side::{RequestCtx, Side};
use super::{
    ApiError, AppState, Gateway, HEADER_DEPLOYMENT, HEADER_REQUEST_ID, HEADER_STAGE,
    HEADER_VARIANT, mirror,
};

pub async fn chat_completions(
    State(gw): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(gw, Endpoint::ChatCompletions, headers, body).await
}

pub async fn completions(State(gw): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    handle(gw, Endpoint::Completions, headers, body).await
}

pub async fn embeddings(State(gw): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    handle(gw, Endpoint::Embeddings, headers, body).await
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

pub async fn metrics(State(gw): State<AppState>) -> Response {
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
        "Unknown request URL. canarist serves /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models.",
        "invalid_request_error",
        None,
        Some("unknown_url"),
    );
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
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
        } else {
            ApiError::BadRequest(request::RequestError::InvalidJson(
                "the body could not be read".to_owned(),
            ))
        }
    })
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn handle(gw: AppState, endpoint: Endpoint, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let request_id = Uuid::new_v4();
    // Fields are filled in once routing has decided; all of this is a no-op without a subscriber.
    let span = tracing::info_span!("proxy.request", otel.kind = "server", %request_id,
        endpoint = endpoint.path(), deployment = Empty, variant = Empty, stage = Empty,
        bucket = Empty, cohort = Empty, sticky = Empty, http.status_code = Empty);
    traces::adopt_client_parent(&span, &headers);
    gw.metrics.traces.remember(request_id, &span);
    let mut response = match route_and_serve(&gw, endpoint, &headers, body, request_id, started)
        .instrument(span.clone())
        .await
    {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    span.record("http.status_code", i64::from(response.status().as_u16()));
    if let Ok(v) = HeaderValue::from_str(&request_id.to_string()) {
        response.headers_mut().insert(HEADER_REQUEST_ID, v);
    }
    response
}

async fn route_and_serve(
    gw: &AppState,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: Body,
    request_id: Uuid,
    started: Instant,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, headers, gw.config.max_body_bytes).await?;
    let req = request::parse(endpoint, &bytes)?;
    let traffic = gw.traffic.load_full();
    let Some(routed) = traffic.by_model(&req.model) else {
        return passthrough(
            gw,
            &req.model,
            endpoint,
            bytes.to_vec(),
            req.stream,
            headers,
        )
        .await;
    };
    let dep = &routed.deployment;

    let tenant = gw
        .config
        .tenant_header
        .as_ref()
        .and_then(|h| header_str(headers, h.as_str()));
    let unit = routing::unit_key(
        header_str(headers, UNIT_HEADER),
        req.user.as_deref(),
        tenant,
    );
    let unit_bucket = unit.map(|(key, _)| routing::bucket(routed.seed, key));
    let labels = routing::cohort_labels(
        &dep.cohorts,
        |h| header_str(headers, h.as_str()),
        req.metadata.as_ref(),
    );
    let draws = Draws {
        unsticky_bucket: rand::random_range(0..routing::BUCKETS),
        pair_roll: rand::random_range(0..routing::BUCKETS),
    };
    let plan = routing::plan(dep, unit_bucket, draws, |i| {
        routing::eligible(&dep.cohorts, &labels, dep.candidates[i].buckets)
    });
    let policy = gw.capture_policy();
    let ctx = Arc::new(RequestCtx {
        request_id,
        at: chrono::Utc::now(),
        deployment: dep.slug.clone(),
        stage: dep.stage.clone(),
        config_version: traffic.version,
        endpoint,
        stream: req.stream,
        bucket: Some(plan.bucket),
        unit_key: unit.map(|(k, _)| k.to_owned()),
        sticky: plan.sticky,
        cohort: labels,
        keep_bodies: policy.body_sample_rate >= 1.0
            || rand::random::<f64>() < policy.body_sample_rate,
    });
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("deployment", dep.slug.as_str());
        span.record("stage", dep.stage.as_str());
        span.record("bucket", i64::from(plan.bucket));
        span.record("sticky", plan.sticky);
        span.record("cohort", cohort_text(&ctx.cohort).as_str());
    }

    let credentials = ClientCredentials::from_headers(headers);
    let pair = plan
        .mirror
        .filter(|_| mirror_allowed(gw, dep, endpoint))
        .map(|target| (target, PairSlot::new()));
    // The A/A arm's slot: stable-served requests that no mirror pairs already.
    let aa = (pair.is_none() && plan.serve == Target::Stable && aa_drawn(gw, dep, endpoint))
        .then(|| spawn_aa(gw, dep, &ctx, &req, &credentials));
    if let Some((target, slot)) = &pair {
        let variant = variant_of(dep, *target);
        let (side, body) = new_side(
            &ctx,
            variant,
            role_of(*target),
            Purpose::Mirrored,
            &req,
            Some(slot.clone()),
        );
        mirror::spawn(
            gw.clone(),
            side,
            body,
            endpoint,
            req.stream,
            dep.shadow_timeout,
            credentials.clone(),
        );
    }

    let serve_variant = variant_of(dep, plan.serve);
    let (side, body) = new_side(
        &ctx,
        serve_variant,
        role_of(plan.serve),
        Purpose::Served,
        &req,
        pair.as_ref().map(|(_, s)| s.clone()).or(aa),
    );
    let strip_usage = req.stream && !req.client_wants_usage;
    let mut upstream_wait = Duration::ZERO;
    let mut served_by = serve_variant.name.as_str();
    let mut response = match serve(
        gw,
        side,
        body,
        endpoint,
        req.stream,
        strip_usage,
        &credentials,
        &mut upstream_wait,
    )
    .await
    {
        Served::Ok(r) => r,
        Served::Failed {
            response,
            retryable,
        } => {
            let fallback =
                matches!(plan.serve, Target::Candidate(_)) && dep.fallback_to_stable && retryable;
            if fallback {
                gw.metrics
                    .fallbacks
                    .get_or_create(&DeploymentLabels {
                        deployment: dep.slug.clone(),
                    })
                    .inc();
                served_by = dep.stable.name.as_str();
                let (side, body) = new_side(
                    &ctx,
                    &dep.stable,
                    Role::Stable,
                    Purpose::Fallback,
                    &req,
                    None,
                );
                match serve(
                    gw,
                    side,
                    body,
                    endpoint,
                    req.stream,
                    strip_usage,
                    &credentials,
                    &mut upstream_wait,
                )
                .await
                {
                    Served::Ok(r) | Served::Failed { response: r, .. } => r,
                }
            } else {
                response
            }
        }
    };
    span.record("variant", served_by);
    let overhead = started.elapsed().saturating_sub(upstream_wait);
    gw.metrics.overhead.observe(overhead.as_secs_f64());
    gw.metrics
        .requests
        .get_or_create(&RequestLabels {
            deployment: dep.slug.clone(),
            variant: served_by.to_owned(),
            status_class: status_class(response.status()),
        })
        .inc();
    let h = response.headers_mut();
    for (name, value) in [
        (HEADER_DEPLOYMENT, &dep.slug),
        (HEADER_VARIANT, &served_by.to_owned()),
        (HEADER_STAGE, &dep.stage),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    Ok(response)
}

/// Cohort labels as one span field: `key=value` pairs joined by `,` (`all` when none).
fn cohort_text(labels: &std::collections::BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "all".to_owned();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

fn variant_of(dep: &Deployment, target: Target) -> &Variant {
    match target {
        Target::Stable => &dep.stable,
        Target::Candidate(i) => dep.candidates.get(i).map_or(&dep.stable, |c| &c.variant),
    }
}

fn role_of(target: Target) -> Role {
    match target {
        Target::Stable => Role::Stable,
        Target::Candidate(_) => Role::Candidate,
    }
}

fn new_side(
    ctx: &Arc<RequestCtx>,
    variant: &Variant,
    role: Role,
    purpose: Purpose,
    req: &ClientRequest<'_>,
    pair: Option<PairSlot>,
) -> (Side, Vec<u8>) {
    let body = req.body_for(variant);
    let side = Side {
        ctx: ctx.clone(),
        variant: variant.name.clone(),
        role,
        purpose,
        provider: variant.provider.clone(),
        upstream_model: variant.model.clone(),
        sent_body: ctx.keep_bodies.then(|| Arc::new(body.clone())),
        pair,
        started: Instant::now(),
    };
    (side, body)
}

/// Whether this stable-served request goes to the A/A arm: drawn at `aa_percent`, not an
/// embedding (nothing to judge), within the stage's spend cap. Any mode: the judge's noise floor
/// is worth knowing before a rollout starts.
fn aa_drawn(gw: &Gateway, dep: &Deployment, endpoint: Endpoint) -> bool {
    dep.aa_buckets > 0
        && endpoint != Endpoint::Embeddings
        && rand::random_range(0..routing::BUCKETS) < dep.aa_buckets
        && within_spend_cap(gw, dep)
}

/// Starts the A/A arm's second stable call in the background; the pair slot the served
/// stable side completes.
fn spawn_aa(
    gw: &AppState,
    dep: &Deployment,
    ctx: &Arc<RequestCtx>,
    req: &ClientRequest<'_>,
    credentials: &ClientCredentials,
) -> PairSlot {
    let slot = PairSlot::new();
    let again = Variant {
        name: crate::capture::AA_VARIANT.to_owned(),
        ..dep.stable.clone()
    };
    let (side, body) = new_side(
        ctx,
        &again,
        Role::Candidate,
        Purpose::Aa,
        req,
        Some(slot.clone()),
    );
    mirror::spawn(
        gw.clone(),
        side,
        body,
        ctx.endpoint,
        ctx.stream,
        dep.shadow_timeout,
        credentials.clone(),
    );
    slot
}

/// Whether this request may be mirrored: the endpoint is mirrored and the stage's spend cap
/// is not reached (counted and flagged when it is).
fn mirror_allowed(gw: &Gateway, dep: &Deployment, endpoint: Endpoint) -> bool {
    if dep.mode == Mode::Off || (endpoint == Endpoint::Embeddings && !dep.mirror_embeddings) {
        return false;
    }
    within_spend_cap(gw, dep)
}

/// Whether the stage's mirror spend cap is not reached (counted and flagged when it is).
fn within_spend_cap(gw: &Gateway, dep: &Deployment) -> bool {
    if gw.spend.get(&dep.slug, &dep.stage).reached(&dep.spend_cap) {
        let labels = DeploymentLabels {
            deployment: dep.slug.clone(),
        };
        gw.metrics.spend_cap_reached.get_or_create(&labels).set(1);
        gw.metrics
            .mirror_skipped
            .get_or_create(&SkipLabels {
                deployment: dep.slug.clone(),
                reason: "spend_cap",
            })
            .inc();
        return false;
    }
    true
}
