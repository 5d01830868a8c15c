//! [`JudgeStats`]: the judge's counters (atomics, updated on the worker's path) and
//! [`JudgeCollector`], which exports them on `/metrics` at scrape time (`canarist_judge_*`).
//!
//! Owns: the judge's metric names. Never: decides anything from a counter. Fails open: a metric
//! that cannot be encoded is skipped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The judge's counters. Cheap to update from many tasks.
#[derive(Debug, Default)]
pub struct JudgeStats {
    /// HTTP calls to judge endpoints (every attempt, repairs included).
    pub calls: AtomicU64,
    /// Calls answered 429 (rate limited).
    pub rate_limited: AtomicU64,
    /// Calls that failed with a timeout, connection error or 5xx.
    pub transient_errors: AtomicU64,
    /// Calls rejected for good (400, 401, 403, 404, insufficient_quota); never retried.
    pub permanent_errors: AtomicU64,
    /// Repair retries after an unparseable answer.
    pub repairs: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Calls that waited on a limit, by which one.
    pub waits_backoff: AtomicU64,
    pub waits_concurrency: AtomicU64,
    pub waits_rate: AtomicU64,
    /// Judgments with a verdict (one per criterion, target and judge).
    pub verdicts: AtomicU64,
    /// Check results written.
    pub check_results: AtomicU64,
    pub pairs_judged: AtomicU64,
    pub jobs_failed: AtomicU64,
    /// Jobs waiting in the store's queue at the last poll.
    pub queue_depth: AtomicU64,
    /// Queued jobs dropped because the backlog was over its bound (newest first).
    pub queue_dropped: AtomicU64,
    /// The adaptive in-flight limit of the last endpoint that changed it.
    pub concurrency_limit: AtomicU64,
    /// Tokens the judges reported.
    pub tokens: AtomicU64,
    /// USD spent on judge calls, in micro-dollars.
    pub spend_micro_usd: AtomicU64,
    abstentions: Mutex<BTreeMap<(String, String), u64>>,
}

impl JudgeStats {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts an abstention with its reason, on `variant` (`stable`, `candidate` or `pair`).
    pub fn abstained(&self, reason: &str, variant: &str) {
        let mut map = self.abstentions.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((reason.to_owned(), variant.to_owned()))
            .or_insert(0) += 1;
    }

    /// Abstentions by (reason, variant).
    pub fn abstentions(&self) -> BTreeMap<(String, String), u64> {
        self.abstentions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Total abstentions.
    pub fn abstention_count(&self) -> u64 {
        self.abstentions().values().sum()
    }

    pub fn add_spend(&self, usd: f64) {
        if usd.is_finite() && usd > 0.0 {
            self.spend_micro_usd
                .fetch_add((usd * 1e6).round() as u64, Relaxed);
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

/// Exports [`JudgeStats`] on `/metrics`.
#[derive(Debug)]
pub struct JudgeCollector {
    stats: Arc<JudgeStats>,
}

impl JudgeCollector {
    pub fn new(stats: Arc<JudgeStats>) -> Self {
        Self { stats }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WaitLabel {
    limit: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AbstainLabels {
    reason: String,
    variant: String,
}

impl Collector for JudgeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        let counters = [
            (
                "judge_calls",
                "HTTP calls to judge endpoints (every attempt)",
                &s.calls,
            ),
            (
                "judge_rate_limited",
                "Judge calls answered 429",
                &s.rate_limited,
            ),
            (
                "judge_transient_errors",
                "Judge calls failed by timeout, connection error or 5xx (retried)",
                &s.transient_errors,
            ),
            (
                "judge_permanent_errors",
                "Judge calls rejected for good (400, 401, insufficient_quota); not retried",
                &s.permanent_errors,
            ),
            (
                "judge_repairs",
                "Repair retries after an unparseable answer",
                &s.repairs,
            ),
            (
                "judge_cache_hits",
                "Judge answers served from the cache",
                &s.cache_hits,
            ),
            (
                "judge_cache_misses",
                "Judge questions not in the cache",
                &s.cache_misses,
            ),
            ("judge_verdicts", "Judgments with a verdict", &s.verdicts),
            (
                "judge_check_results",
                "Deterministic check results written",
                &s.check_results,
            ),
            ("judge_pairs", "Pairs judged", &s.pairs_judged),
            (
                "judge_jobs_failed",
                "Judge jobs given back after a failure",
                &s.jobs_failed,
            ),
            (
                "judge_queue_dropped",
                "Queued judge jobs dropped because the backlog was full (newest first)",
                &s.queue_dropped,
            ),
            ("judge_tokens", "Tokens the judges reported", &s.tokens),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(value.load(Relaxed));
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let gauges = [
            (
                "judge_queue_depth",
                "Judge jobs waiting in the queue",
                &s.queue_depth,
            ),
            (
                "judge_concurrency_limit",
                "The adaptive limit on judge calls in flight",
                &s.concurrency_limit,
            ),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(i64::try_from(value.load(Relaxed)).unwrap_or(i64::MAX));
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let spend = ConstGauge::new(s.spend_micro_usd.load(Relaxed) as f64 / 1e6);
        spend.encode(encoder.encode_descriptor(
            "judge_spend_usd",
            "USD spent on judge calls since start (from configured prices)",
            None,
            spend.metric_type(),
        )?)?;
        let mut waits = encoder.encode_descriptor(
            "judge_limiter_waits",
            "Judge calls that waited on a limit, by limit (backoff, concurrency, rate)",
            None,
            MetricType::Counter,
        )?;
        for (limit, value) in [
            ("backoff", &s.waits_backoff),
            ("concurrency", &s.waits_concurrency),
            ("rate", &s.waits_rate),
        ] {
            let c = ConstCounter::new(value.load(Relaxed));
            c.encode(waits.encode_family(&WaitLabel { limit })?)?;
        }
        let mut abstentions = encoder.encode_descriptor(
            "judge_abstentions",
            "Judgments not made, by reason code and variant judged",
            None,
            MetricType::Counter,
        )?;
        for ((reason, variant), n) in s.abstentions() {
            let c = ConstCounter::new(n);
            c.encode(abstentions.encode_family(&AbstainLabels { reason, variant })?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn exports_counters_and_abstentions_by_reason_and_variant() {
        let stats = JudgeStats::new();
        stats.calls.fetch_add(3, Relaxed);
        stats.abstained("not_json", "candidate");
        stats.abstained("not_json", "candidate");
        stats.abstained("spend_cap", "pair");
        stats.add_spend(0.25);
        let mut registry = Registry::with_prefix("canarist");
        registry.register_collector(Box::new(JudgeCollector::new(stats.clone())));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(out.contains("canarist_judge_calls_total 3"), "{out}");
        assert!(
            out.contains(
                "canarist_judge_abstentions_total{reason=\"not_json\",variant=\"candidate\"} 2"
            ),
            "{out}"
        );
        assert!(out.contains("canarist_judge_spend_usd 0.25"), "{out}");
        assert_eq!(stats.abstention_count(), 3);
    }
}
