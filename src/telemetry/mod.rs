//! `telemetry`: Prometheus metrics (names defined here and only here) and their text encoding;
//! traces and their export (`traces`).
//!
//! Owns: the metric families and their documentation. Never: decides anything from a metric,
//! or knows another module's types — it is a leaf; others pass plain values in (the capture
//! pipeline's counters as [`CaptureCounts`], gate actions and stages as labels).
//! Fails open: a metric that cannot be encoded is skipped, the request path never waits on it.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

mod handles;
mod rollout;
pub mod traces;

pub use handles::VariantMetrics;
pub use rollout::{GateLabels, GuardrailLabels, RoleLabels, RolloutMetrics};

/// `gen_ai.provider.name` on the GenAI spans of the OpenAI surfaces: the conventions name the
/// provider by the API flavour as the instrumentation knows it ("based on the
/// instrumentation's best knowledge"), so it is `openai` for chat completions, completions,
/// embeddings and the Responses API and `anthropic` for the Messages API (the surface's
/// `providers.*.api`); `provider` (canarist's own field) names the configured provider and
/// `gen_ai.request.model` / `gen_ai.response.model` the actual model.
pub const GENAI_PROVIDER: &str = "openai";
pub use traces::{TraceIndex, TracingGuard};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub deployment: String,
    pub variant: String,
    pub status_class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VariantLabels {
    pub deployment: String,
    pub variant: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MirrorLabels {
    pub deployment: String,
    pub variant: String,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SkipLabels {
    pub deployment: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabels {
    pub deployment: String,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    ]
    .into_iter()
}

fn overhead_buckets() -> impl Iterator<Item = f64> {
    [
        0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05,
    ]
    .into_iter()
}

/// The capture pipeline's counters at one moment, read at every scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureCounts {
    /// Events waiting in the queue (a gauge).
    pub queue_depth: usize,
    /// Bytes waiting in the spool (a gauge).
    pub spool_bytes: u64,
    /// Events accepted but neither written, spooled nor dropped: in the queue or in the flush
    /// being filled or written — what a `kill -9` now would lose (a gauge).
    pub unflushed: u64,
    pub enqueued: u64,
    pub written: u64,
    /// Of the written events, observations stored without a row (added to the aggregates only).
    pub aggregated: u64,
    pub write_errors: u64,
    pub spooled: u64,
    pub replayed: u64,
    pub dropped_queue_full: u64,
    pub dropped_write_failed: u64,
    pub dropped_invalid_row: u64,
    pub dropped_spool_full: u64,
}

/// Reads the capture pipeline's counters (called at scrape time).
pub type CaptureProbe = Arc<dyn Fn() -> CaptureCounts + Send + Sync>;

/// Every metric the gateway exports.
pub struct Metrics {
    /// Behind a lock only so that collectors started later (the judge worker) can register.
    registry: std::sync::RwLock<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<VariantLabels, Histogram>,
    pub ttft: Family<VariantLabels, Histogram>,
    pub overhead: Histogram,
    pub mirrored: Family<MirrorLabels, Counter>,
    pub mirror_skipped: Family<SkipLabels, Counter>,
    pub mirror_spend_tokens: Family<DeploymentLabels, Counter>,
    pub mirror_spend_usd: Family<DeploymentLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub spend_cap_reached: Family<DeploymentLabels, Gauge>,
    pub fallbacks: Family<DeploymentLabels, Counter>,
    /// Guardrails, gate decisions, stage and percentage gauges, admin 429s, leadership.
    pub rollout: RolloutMetrics,
    /// What the `server:` bounds refused.
    pub http: HttpMetrics,
    /// Recent requests' span contexts, for the judge's span links.
    pub traces: TraceIndex,
    /// The request path's handles per deployment and variant (`handles`).
    handles: handles::Handles,
}

impl Metrics {
    pub fn new(capture: CaptureProbe) -> Self {
        let mut registry = Registry::with_prefix("canarist");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Proxied requests answered, by deployment, serving variant and status class",
            requests.clone(),
        );
        let request_duration = Family::<VariantLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register_with_unit(
            "upstream_duration",
            "Total time of each upstream call (served and mirrored), by variant",
            prometheus_client::registry::Unit::Seconds,
            request_duration.clone(),
        );
        let ttft = Family::<VariantLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register_with_unit(
            "time_to_first_token",
            "Time to the first token of each upstream call (whole body when not streamed)",
            prometheus_client::registry::Unit::Seconds,
            ttft.clone(),
        );
        let overhead = Histogram::new(overhead_buckets());
        registry.register_with_unit(
            "gateway_overhead",
            "Time the gateway adds before the response starts: request time minus time waiting on upstream",
            prometheus_client::registry::Unit::Seconds,
            overhead.clone(),
        );
        let mirrored = Family::<MirrorLabels, Counter>::default();
        registry.register(
            "mirrored_calls",
            "Background calls (shadow mirrors and live pair samples), by outcome",
            mirrored.clone(),
        );
        let mirror_skipped = Family::<SkipLabels, Counter>::default();
        registry.register(
            "mirror_skipped",
            "Mirrors not made, by reason (spend_cap, provider_state, api_mismatch, untranslatable, background)",
            mirror_skipped.clone(),
        );
        let mirror_spend_tokens = Family::<DeploymentLabels, Counter>::default();
        registry.register(
            "mirror_spend_tokens",
            "Tokens spent on background calls in the current stage",
            mirror_spend_tokens.clone(),
        );
        let mirror_spend_usd =
            Family::<DeploymentLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "mirror_spend_usd",
            "USD spent on background calls in the current stage (from configured prices)",
            mirror_spend_usd.clone(),
        );
        let spend_cap_reached = Family::<DeploymentLabels, Gauge>::default();
        registry.register(
            "mirror_spend_cap_reached",
            "1 when the stage's mirror spend cap is reached and mirroring has stopped",
            spend_cap_reached.clone(),
        );
        let fallbacks = Family::<DeploymentLabels, Counter>::default();
        registry.register(
            "fallbacks",
            "Live requests retried on stable after the candidate failed",
            fallbacks.clone(),
        );
        let rollout = RolloutMetrics::register(&mut registry);
        let http = HttpMetrics::register(&mut registry);
        registry.register_collector(Box::new(CaptureCollector { probe: capture }));
        Self {
            registry: std::sync::RwLock::new(registry),
            requests,
            request_duration,
            ttft,
            overhead,
            mirrored,
            mirror_skipped,
            mirror_spend_tokens,
            mirror_spend_usd,
            spend_cap_reached,
            fallbacks,
            rollout,
            http,
            traces: TraceIndex::default(),
            handles: handles::Handles::default(),
        }
    }

    /// Adds a collector read at scrape time (e.g. the judge worker's counters).
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
        registry.register_collector(collector);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.read().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// What the server's client bounds (`server:`) and the admin API's failed-authentication
/// limit refused.
#[derive(Debug, Clone, Default)]
pub struct HttpMetrics {
    /// Connections closed on accept because `server.max_connections` were open.
    pub connections_refused: Counter,
    /// Requests answered 503 because `server.max_requests_in_flight` were being answered.
    pub requests_shed: Counter,
    /// Requests answered 408 because their body took longer than `server.body_read_timeout`.
    pub body_timeouts: Counter,
}

impl HttpMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "http_connections_refused",
            "Client connections closed on accept because server.max_connections were open",
            m.connections_refused.clone(),
        );
        registry.register(
            "http_requests_shed",
            "Requests answered 503 because server.max_requests_in_flight were being answered",
            m.requests_shed.clone(),
        );
        registry.register(
            "http_body_timeouts",
            "Requests answered 408 because their body was not read within server.body_read_timeout",
            m.body_timeouts.clone(),
        );
        m
    }
}

/// Reads the capture pipeline's counters at scrape time.
struct CaptureCollector {
    probe: CaptureProbe,
}

impl std::fmt::Debug for CaptureCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureCollector").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

impl Collector for CaptureCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = (self.probe)();
        let depth = ConstGauge::new(i64::try_from(s.queue_depth).unwrap_or(i64::MAX));
        depth.encode(encoder.encode_descriptor(
            "capture_queue_depth",
            "Captured events waiting to be written",
            None,
            depth.metric_type(),
        )?)?;
        let spool = ConstGauge::new(i64::try_from(s.spool_bytes).unwrap_or(i64::MAX));
        spool.encode(encoder.encode_descriptor(
            "capture_spool_bytes",
            "Bytes of captured events waiting in the spool for the store",
            None,
            spool.metric_type(),
        )?)?;
        let unflushed = ConstGauge::new(i64::try_from(s.unflushed).unwrap_or(i64::MAX));
        unflushed.encode(encoder.encode_descriptor(
            "capture_unflushed",
            "Captured events accepted but not yet written or spooled (lost if the process is killed now)",
            None,
            unflushed.metric_type(),
        )?)?;
        let counters = [
            (
                "capture_enqueued",
                "Captured events accepted into the queue",
                s.enqueued,
            ),
            (
                "capture_written",
                "Captured events written by the sink",
                s.written,
            ),
            (
                "capture_aggregated",
                "Captured observations written without a row of their own (added to the aggregates only)",
                s.aggregated,
            ),
            (
                "capture_write_errors",
                "Failed capture write attempts",
                s.write_errors,
            ),
            (
                "capture_spooled",
                "Captured events spooled to disk while the sink was unavailable",
                s.spooled,
            ),
            (
                "capture_replayed",
                "Spooled events taken back out of the spool",
                s.replayed,
            ),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let mut dropped = encoder.encode_descriptor(
            "capture_dropped",
            "Captured events dropped, by reason (queue_full, write_failed, invalid_row, spool_full)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (reason, value) in [
            ("queue_full", s.dropped_queue_full),
            ("write_failed", s.dropped_write_failed),
            ("invalid_row", s.dropped_invalid_row),
            ("spool_full", s.dropped_spool_full),
        ] {
            let c = ConstCounter::new(value);
            c.encode(dropped.encode_family(&ReasonLabel { reason })?)?;
        }
        Ok(())
    }
}
