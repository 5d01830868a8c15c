//! Phase 1 of the request path: route. From the parsed body and the headers to a
//! [`RoutedRequest`]: the deployment, its unit key and bucket, cohort labels, the plan (who
//! serves, who is mirrored), the context every side shares, and the request span's fields.

use std::sync::Arc;

use axum::http::HeaderMap;
use bytes::Bytes;
use tokio::time::Instant;
use uuid::Uuid;

use crate::capture::{PairSlot, Purpose, Role};
use crate::config::{Cohorts, Deployment, LabelSource, Variant};
use crate::routing::{self, Draws, Plan, RoutedDeployment, Target, UNIT_HEADER, UnitSource};
use crate::upstream::request::ClientRequest;
use crate::upstream::shape::WireShape;

use super::side::{RequestCtx, Side};
use super::{ApiError, Gateway};

/// A request routed to a deployment: everything the later phases read.
pub(super) struct RoutedRequest {
    pub routed: Arc<RoutedDeployment>,
    pub plan: Plan,
    pub ctx: Arc<RequestCtx>,
}

/// Routes `req`, or `None` when its model is no deployment (the passthrough answers it). A unit
/// key or cohort label value above `routing.max_key_bytes` is a 400 naming its field.
pub(super) fn route(
    gw: &Gateway,
    shape: &'static dyn WireShape,
    req: &ClientRequest<'_>,
    headers: &HeaderMap,
    request_id: Uuid,
) -> Result<Option<RoutedRequest>, ApiError> {
    let traffic = gw.traffic.load();
    let Some(routed) = traffic.by_model(&req.model).cloned() else {
        return Ok(None);
    };
    let dep = &routed.deployment;
    let tenant = gw
        .config
        .tenant_header
        .as_ref()
        .and_then(|h| header_str(headers, h.as_str()));
    let unit = routing::unit_key(
        dep.unit_key_order(&gw.config.unit_key_from),
        &req.unit_fields(header_str(headers, UNIT_HEADER), tenant),
    );
    let labels = routing::cohort_labels(
        &dep.cohorts,
        |h| header_str(headers, h.as_str()),
        req.metadata.as_ref(),
    );
    check_lengths(gw, unit, &dep.cohorts, &labels)?;
    let draws = Draws {
        unsticky_bucket: rand::random_range(0..routing::BUCKETS),
        pair_roll: rand::random_range(0..routing::BUCKETS),
    };
    let unit_bucket = unit.map(|(key, _)| routing::bucket(routed.seed, key));
    let plan = routing::plan(dep, unit_bucket, draws, |i| {
        routing::eligible(&dep.cohorts, &labels, dep.candidates[i].buckets)
    });
    let serving = match plan.serve {
        Target::Stable => &dep.stable,
        Target::Candidate(i) => dep.candidates.get(i).map_or(&dep.stable, |c| &c.variant),
    };
    // The serving variant can answer: directly, or through a translation of this request.
    super::cross::check(gw, shape, req, serving)?;
    let body_rate = gw.capture_policy().body_sample_rate;
    let ctx = Arc::new(RequestCtx {
        request_id,
        at: chrono::Utc::now(),
        deployment: dep.slug.clone(),
        stage: dep.stage.clone(),
        config_version: traffic.version,
        endpoint: shape.endpoint(),
        shape,
        stream: req.stream,
        bucket: Some(plan.bucket),
        unit_key: unit.map(|(k, _)| k.to_owned()),
        sticky: plan.sticky,
        cohort: labels,
        keep_bodies: body_rate >= 1.0 || rand::random::<f64>() < body_rate,
    });
    record_span(&ctx, &plan);
    Ok(Some(RoutedRequest { routed, plan, ctx }))
}

/// Whether `provider` speaks the API of `shape` (`providers.*.api`): a 400 `unsupported_api`
/// naming the provider when it does not (an unknown provider is the upstream call's error).
pub(super) fn check_api(
    gw: &Gateway,
    shape: &dyn WireShape,
    model: &str,
    provider: &str,
) -> Result<(), ApiError> {
    match gw.upstreams.provider(provider) {
        Some(p) if p.api != shape.api() => Err(ApiError::UnsupportedApi {
            model: model.to_owned(),
            provider: provider.to_owned(),
            api: p.api.as_str(),
            path: shape.route(),
        }),
        _ => Ok(()),
    }
}

/// The unit key and every cohort label value within `routing.max_key_bytes`, or the field of
/// the first that is not (`x-canarist-unit`, a body field such as `user` or `metadata.user_id`,
/// the tenant header, `metadata.<key>` or a label's header).
fn check_lengths(
    gw: &Gateway,
    unit: Option<(&str, UnitSource)>,
    cohorts: &Cohorts,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let limit = gw.config.max_key_bytes;
    let too_long = |param: String| ApiError::TooLong { param, limit };
    if let Some((key, source)) = unit
        && key.len() > limit
    {
        return Err(too_long(match source {
            UnitSource::Header => UNIT_HEADER.to_owned(),
            UnitSource::Tenant => gw
                .config
                .tenant_header
                .as_ref()
                .map_or_else(|| "tenant".to_owned(), |h| h.as_str().to_owned()),
            body_field => body_field.as_str().to_owned(),
        }));
    }
    for (name, source) in &cohorts.labels {
        if labels.get(name).is_some_and(|v| v.len() > limit) {
            return Err(too_long(match source {
                LabelSource::Header(h) => h.as_str().to_owned(),
                LabelSource::Metadata(key) => format!("metadata.{key}"),
            }));
        }
    }
    Ok(())
}

/// Fills the request span's routing fields (a no-op without a subscriber).
fn record_span(ctx: &RequestCtx, plan: &Plan) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    span.record("deployment", ctx.deployment.as_str());
    span.record("stage", ctx.stage.as_str());
    span.record("bucket", i64::from(plan.bucket));
    span.record("sticky", plan.sticky);
    span.record("cohort", cohort_text(&ctx.cohort).as_str());
}

pub(super) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
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

impl RoutedRequest {
    pub fn deployment(&self) -> &Deployment {
        &self.routed.deployment
    }

    /// The variant a target names (stable when a candidate index is out of range).
    pub fn variant(&self, target: Target) -> &Variant {
        let dep = self.deployment();
        match target {
            Target::Stable => &dep.stable,
            Target::Candidate(i) => dep.candidates.get(i).map_or(&dep.stable, |c| &c.variant),
        }
    }

    /// A call to `variant` in `role` for `purpose`, with the body it is sent (translated when
    /// its provider speaks the other API; an error when the request cannot be).
    pub fn side(
        &self,
        gw: &Gateway,
        variant: &Variant,
        (role, purpose): (Role, Purpose),
        req: &ClientRequest<'_>,
        pair: Option<PairSlot>,
    ) -> Result<(Side, Bytes), ApiError> {
        let (translation, body) = super::cross::body_for(gw, self.ctx.shape, req, variant)?;
        // One buffer for the call and the capture: sharing it copies nothing.
        let body = Bytes::from(body);
        let side = Side {
            ctx: self.ctx.clone(),
            variant: variant.name.clone(),
            role,
            purpose,
            provider: variant.provider.clone(),
            upstream_model: variant.model.clone(),
            sent_body: self.ctx.keep_bodies.then(|| body.clone()),
            pair,
            translation,
            started: Instant::now(),
            span: tracing::Span::none(),
        };
        Ok((side, body))
    }
}

pub(super) fn role_of(target: Target) -> Role {
    match target {
        Target::Stable => Role::Stable,
        Target::Candidate(_) => Role::Candidate,
    }
}
