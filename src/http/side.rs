//! One side of a request (a call to one variant) and how its outcome becomes an
//! [`Observation`]: metrics, spend accounting, the capture policy (`capture::policy`) and
//! capture in one place.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::time::Instant;
use uuid::Uuid;

use crate::capture::{
    CaptureEvent, Endpoint, ErrorClass, Observation, PairSlot, Purpose, Role, Usage, policy,
};
use crate::telemetry::{DeploymentLabels, MirrorLabels};
use crate::upstream::shape::WireShape;
use crate::upstream::translate::Direction;

use super::Gateway;

/// What every side of one request shares.
#[derive(Debug)]
pub struct RequestCtx {
    pub request_id: Uuid,
    pub at: DateTime<Utc>,
    pub deployment: String,
    pub stage: String,
    pub config_version: u64,
    pub endpoint: Endpoint,
    /// The API surface's wire shape (parse, body rewrite, answer extraction).
    pub shape: &'static dyn WireShape,
    pub stream: bool,
    pub bucket: Option<u16>,
    pub unit_key: Option<String>,
    pub sticky: bool,
    pub cohort: BTreeMap<String, String>,
    /// The capture policy sampled this request's bodies.
    pub keep_bodies: bool,
}

/// A call to one variant, waiting for its outcome.
pub struct Side {
    pub ctx: Arc<RequestCtx>,
    pub variant: String,
    pub role: Role,
    pub purpose: Purpose,
    pub provider: String,
    pub upstream_model: String,
    /// The body sent upstream (kept only when the request's bodies are kept).
    pub sent_body: Option<Bytes>,
    pub pair: Option<PairSlot>,
    /// The translation the call goes through when the variant's provider speaks the other API
    /// (`super::cross`); its answer is captured as that API returned it.
    pub translation: Option<Direction>,
    pub started: Instant,
    /// The call's `upstream.call` span (set when the call starts; kept open until the outcome
    /// is recorded on it, the end of a stream included).
    pub span: tracing::Span,
}

/// How a call ended.
#[derive(Debug, Default)]
pub struct Outcome {
    pub status: Option<u16>,
    pub error: Option<ErrorClass>,
    pub detail: Option<String>,
    pub ttft: Option<Duration>,
    pub usage: Option<Usage>,
    pub finish_reason: Option<String>,
    pub text: Option<String>,
    /// The answer's JSON as received (a stream's: assembled), when the bodies are kept.
    pub response_body: Option<Bytes>,
    /// Size of the response as received (bytes), for the capture size cap.
    pub response_len: usize,
    /// The answer's `model` and `id` (for the span's `gen_ai.response.*`).
    pub response_model: Option<String>,
    pub response_id: Option<String>,
}

impl Outcome {
    pub fn failed(status: Option<u16>, error: ErrorClass, detail: impl Into<String>) -> Self {
        Self {
            status,
            error: Some(error),
            detail: Some(detail.into()),
            ..Self::default()
        }
    }
}

impl Side {
    /// The wire shape of the API the variant's provider speaks.
    pub fn upstream_shape(&self) -> &'static dyn WireShape {
        self.translation
            .map_or(self.ctx.shape, Direction::upstream_shape)
    }
    /// The A/A arm's second stable call.
    pub fn is_aa(&self) -> bool {
        self.purpose == Purpose::Aa
    }

    /// Records the outcome: metrics, mirror spend, and the observation (and pair) into capture.
    pub fn finish(self, gw: &Gateway, outcome: Outcome) {
        self.record_span(&outcome);
        let latency = self.started.elapsed();
        let cost = self.report(gw, &outcome, latency);
        let ctx = &self.ctx;
        let mut observation = Observation {
            id: Uuid::new_v4(),
            request_id: ctx.request_id,
            pair_id: None,
            at: ctx.at,
            deployment: ctx.deployment.clone(),
            variant: self.variant,
            role: self.role,
            purpose: self.purpose,
            stage: ctx.stage.clone(),
            config_version: ctx.config_version,
            endpoint: ctx.endpoint,
            upstream_model: self.upstream_model,
            stream: ctx.stream,
            bucket: ctx.bucket,
            unit_key: ctx.unit_key.clone(),
            sticky: ctx.sticky,
            cohort: ctx.cohort.clone(),
            status: outcome.status,
            error: outcome.error,
            error_detail: outcome.detail,
            ttft_ms: outcome.ttft.map(|t| t.as_secs_f64() * 1e3),
            latency_ms: latency.as_secs_f64() * 1e3,
            usage: outcome.usage,
            cost_usd: cost,
            finish_reason: outcome.finish_reason,
            response_text: if ctx.keep_bodies { outcome.text } else { None },
            request_body: None,
            response_body: None,
        };
        // Every captured text goes through the one capture policy, here and only here.
        let raw = if ctx.keep_bodies {
            policy::RawBodies {
                sent: self.sent_body,
                response: outcome.response_body,
                response_len: outcome.response_len,
            }
        } else {
            policy::RawBodies::default()
        };
        policy::apply(gw.capture_policy(), &mut observation, raw);
        match &self.pair {
            Some(slot) => slot.complete(observation, &gw.capture),
            None => gw
                .capture
                .record(CaptureEvent::Observation(Box::new(observation))),
        }
    }

    /// The outcome on the call's span, as OpenTelemetry GenAI attributes (a no-op without a
    /// subscriber).
    fn record_span(&self, outcome: &Outcome) {
        let span = &self.span;
        if span.is_disabled() {
            return;
        }
        if let Some(u) = outcome.usage {
            let n = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
            span.record("gen_ai.usage.input_tokens", n(u.prompt_tokens));
            span.record("gen_ai.usage.output_tokens", n(u.completion_tokens));
        }
        if let Some(m) = &outcome.response_model {
            span.record("gen_ai.response.model", m.as_str());
        }
        if let Some(id) = &outcome.response_id {
            span.record("gen_ai.response.id", id.as_str());
        }
        if let Some(f) = &outcome.finish_reason {
            span.record("gen_ai.response.finish_reasons", f.as_str());
        }
        if let Some(e) = outcome.error {
            span.record("error.type", e.as_str());
        }
    }

    /// The outcome's guardrail report, duration and TTFT metrics, and mirror spend; its cost.
    fn report(&self, gw: &Gateway, outcome: &Outcome, latency: Duration) -> Option<f64> {
        let ctx = &self.ctx;
        // The A/A arm's second stable call is not the candidate's: the guardrails never see it.
        if let Some(guardrails) = gw.outcomes.as_ref().filter(|_| !self.is_aa()) {
            guardrails.outcome(
                &ctx.deployment,
                &ctx.stage,
                self.role,
                ctx.unit_key.as_deref(),
                outcome.error,
            );
        }
        let handles = gw.metrics.variant(&ctx.deployment, &self.variant);
        (gw.metrics.upstream_duration(&handles)).observe(latency.as_secs_f64());
        if let Some(t) = outcome.ttft {
            (gw.metrics.time_to_first_token(&handles)).observe(t.as_secs_f64());
        }
        let cost = outcome.usage.and_then(|u| {
            let cached = (u.cache_creation_tokens, u.cache_read_tokens);
            (gw.config.price(&self.upstream_model))
                .map(|p| p.cost_with_cache(u.prompt_tokens, u.completion_tokens, cached))
        });
        if self.purpose.is_background() {
            self.account_mirror(gw, outcome, cost);
        }
        cost
    }

    fn account_mirror(&self, gw: &Gateway, outcome: &Outcome, cost: Option<f64>) {
        let ctx = &self.ctx;
        let outcome_label = match outcome.error {
            None => "ok",
            Some(e) => e.as_str(),
        };
        gw.metrics
            .mirrored
            .get_or_create(&MirrorLabels {
                deployment: ctx.deployment.clone(),
                variant: self.variant.clone(),
                outcome: outcome_label,
            })
            .inc();
        let tokens = outcome.usage.map_or(0, |u| u.total_tokens);
        let usd = cost.unwrap_or(0.0);
        let spent = gw.spend.add(&ctx.deployment, &ctx.stage, tokens, usd);
        let dl = DeploymentLabels {
            deployment: ctx.deployment.clone(),
        };
        gw.metrics
            .mirror_spend_tokens
            .get_or_create(&dl)
            .inc_by(tokens);
        gw.metrics
            .mirror_spend_usd
            .get_or_create(&dl)
            .set(spent.usd);
    }
}
