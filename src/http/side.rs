//! One side of a request (a call to one variant) and how its outcome becomes an
//! [`Observation`]: metrics, spend accounting, body policy and capture in one place.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use uuid::Uuid;

use crate::capture::{
    CaptureEvent, Endpoint, ErrorClass, Observation, PairSlot, Purpose, Role, Usage,
};
use crate::config::CaptureConfig;
use crate::telemetry::{DeploymentLabels, MirrorLabels, VariantLabels};

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
    pub shape: &'static dyn crate::upstream::shape::WireShape,
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
    pub sent_body: Option<Arc<Vec<u8>>>,
    pub pair: Option<PairSlot>,
    pub started: Instant,
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
    pub response_body: Option<serde_json::Value>,
    /// Size of the response as received (bytes), for the capture size cap.
    pub response_len: usize,
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
    /// The A/A arm's second stable call.
    pub fn is_aa(&self) -> bool {
        self.purpose == Purpose::Aa
    }

    /// Records the outcome: metrics, mirror spend, and the observation (and pair) into capture.
    pub fn finish(self, gw: &Gateway, outcome: Outcome) {
        let latency = self.started.elapsed();
        let cost = self.report(gw, &outcome, latency);
        let ctx = &self.ctx;
        let policy = gw.capture_policy();
        let request_body = if ctx.keep_bodies {
            self.sent_body.as_deref().and_then(|b| kept_body(policy, b))
        } else {
            None
        };
        let response_body = if ctx.keep_bodies {
            outcome
                .response_body
                .and_then(|v| kept_value(policy, v, outcome.response_len))
        } else {
            None
        };
        let observation = Observation {
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
            request_body,
            response_body,
        };
        match &self.pair {
            Some(slot) => slot.complete(observation, &gw.capture),
            None => gw
                .capture
                .record(CaptureEvent::Observation(Box::new(observation))),
        }
    }

    /// The outcome's guardrail report, duration and TTFT metrics, and mirror spend; its cost.
    fn report(&self, gw: &Gateway, outcome: &Outcome, latency: Duration) -> Option<f64> {
        let ctx = &self.ctx;
        // The A/A arm's second stable call is not the candidate's: the guardrails never see it.
        if let Some(guardrails) = gw.outcomes.as_ref().filter(|_| !self.is_aa()) {
            guardrails.outcome(&ctx.deployment, &ctx.stage, self.role, outcome.error);
        }
        let labels = VariantLabels {
            deployment: ctx.deployment.clone(),
            variant: self.variant.clone(),
        };
        gw.metrics
            .request_duration
            .get_or_create(&labels)
            .observe(latency.as_secs_f64());
        if let Some(t) = outcome.ttft {
            gw.metrics
                .ttft
                .get_or_create(&labels)
                .observe(t.as_secs_f64());
        }
        let cost = outcome.usage.and_then(|u| {
            gw.config
                .price(&self.upstream_model)
                .map(|p| p.cost(u.prompt_tokens, u.completion_tokens))
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

/// A parsed body as the capture policy keeps it; `len` is its size as received. Without
/// redaction rules the value is kept as it is (no second parse).
fn kept_value(
    policy: &CaptureConfig,
    value: serde_json::Value,
    len: usize,
) -> Option<serde_json::Value> {
    if len > policy.max_body_bytes {
        return None;
    }
    if policy.redact.is_empty() {
        return Some(value);
    }
    serde_json::to_vec(&value)
        .ok()
        .and_then(|b| kept_body(policy, &b))
}

/// A body as the capture policy keeps it: redacted, and only when small enough.
fn kept_body(policy: &CaptureConfig, bytes: &[u8]) -> Option<serde_json::Value> {
    if bytes.len() > policy.max_body_bytes {
        return None;
    }
    if policy.redact.is_empty() {
        return serde_json::from_slice(bytes).ok();
    }
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    for re in &policy.redact {
        if let std::borrow::Cow::Owned(replaced) = re.replace_all(&text, "[REDACTED]") {
            text = replaced;
        }
    }
    // A pattern that broke the JSON structure makes the body unusable: keep nothing.
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(redact: &[&str], max: usize) -> CaptureConfig {
        CaptureConfig {
            sink: crate::config::SinkKind::Memory,
            queue_capacity: 1,
            batch_size: 1,
            flush_interval: Duration::from_millis(1),
            body_sample_rate: 1.0,
            redact: redact
                .iter()
                .map(|r| regex::Regex::new(r).unwrap())
                .collect(),
            max_body_bytes: max,
            write_attempts: 1,
            retry_backoff: Duration::from_millis(1),
            spool: None,
        }
    }

    #[test]
    fn bodies_are_redacted_and_size_capped() {
        let body = br#"{"messages":[{"content":"mail me at a@b.com"}]}"#;
        let kept = kept_body(&policy(&[r"[\w.]+@[\w.]+"], 1024), body).unwrap();
        assert_eq!(kept["messages"][0]["content"], "mail me at [REDACTED]");
        assert!(kept_body(&policy(&[], 10), body).is_none());
        assert!(kept_body(&policy(&[r#"""#], 1024), body).is_none());
    }
}
