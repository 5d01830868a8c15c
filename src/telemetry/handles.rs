//! The request path's metric handles per deployment and variant, resolved once: a request
//! looks its variant up by `&str` in a read-mostly map and observes through the handles, instead
//! of building a label set (two `String`s) and hashing it in the family on every observation.
//!
//! A handle is made the first time its series is observed (`OnceLock`), from the same
//! [`Family`](prometheus_client::metrics::family::Family) the exposition reads, so `/metrics`
//! shows exactly the series it showed before: none that was never observed.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::{Metrics, RequestLabels, VariantLabels};

/// The status classes of `canarist_requests_total`, in the order of [`VariantMetrics`]'s
/// counters.
const STATUS_CLASSES: [&str; 4] = ["2xx", "4xx", "5xx", "other"];

/// One deployment × variant's series, each made when first observed.
#[derive(Debug)]
pub struct VariantMetrics {
    labels: VariantLabels,
    upstream_duration: OnceLock<Histogram>,
    ttft: OnceLock<Histogram>,
    requests: [OnceLock<Counter>; 4],
}

/// Every deployment's variants' handles.
#[derive(Debug, Default)]
pub struct Handles {
    by_deployment: RwLock<HashMap<String, HashMap<String, Arc<VariantMetrics>>>>,
}

impl Handles {
    fn get(&self, deployment: &str, variant: &str) -> Option<Arc<VariantMetrics>> {
        let map = self.by_deployment.read().unwrap_or_else(|p| p.into_inner());
        map.get(deployment)?.get(variant).cloned()
    }

    fn insert(&self, deployment: &str, variant: &str) -> Arc<VariantMetrics> {
        let mut map = self
            .by_deployment
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let variants = map.entry(deployment.to_owned()).or_default();
        (variants.entry(variant.to_owned()).or_insert_with(|| {
            Arc::new(VariantMetrics {
                labels: VariantLabels {
                    deployment: deployment.to_owned(),
                    variant: variant.to_owned(),
                },
                upstream_duration: OnceLock::new(),
                ttft: OnceLock::new(),
                requests: Default::default(),
            })
        }))
        .clone()
    }
}

impl Metrics {
    /// The handles of `deployment`'s `variant` (made on first use).
    pub fn variant(&self, deployment: &str, variant: &str) -> Arc<VariantMetrics> {
        match self.handles.get(deployment, variant) {
            Some(h) => h,
            None => self.handles.insert(deployment, variant),
        }
    }

    /// `canarist_upstream_duration_seconds` of `v`.
    pub fn upstream_duration<'v>(&self, v: &'v VariantMetrics) -> &'v Histogram {
        // The handle shares the family's metric (an `Arc` inside).
        v.upstream_duration
            .get_or_init(|| self.request_duration.get_or_create(&v.labels).clone())
    }

    /// `canarist_time_to_first_token_seconds` of `v`.
    pub fn time_to_first_token<'v>(&self, v: &'v VariantMetrics) -> &'v Histogram {
        v.ttft
            .get_or_init(|| self.ttft.get_or_create(&v.labels).clone())
    }

    /// `canarist_requests_total` of `v` for `status_class` (`2xx`, `4xx`, `5xx`, `other`).
    pub fn requests_answered<'v>(
        &self,
        v: &'v VariantMetrics,
        status_class: &'static str,
    ) -> &'v Counter {
        let i = STATUS_CLASSES
            .iter()
            .position(|c| *c == status_class)
            .unwrap_or(STATUS_CLASSES.len() - 1);
        v.requests[i].get_or_init(|| {
            self.requests
                .get_or_create(&RequestLabels {
                    deployment: v.labels.deployment.clone(),
                    variant: v.labels.variant.clone(),
                    status_class: STATUS_CLASSES[i],
                })
                .clone()
        })
    }
}
