//! The gateway's shared state: static config, the live traffic table behind an `ArcSwap`, the
//! upstream clients, the capture handle, metrics and the tracker of background tasks.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::task::TaskTracker;

use crate::capture::Capture;
use crate::config::{CaptureConfig, Config};
use crate::routing::TrafficTable;
use crate::telemetry::Metrics;
use crate::upstream::Upstreams;

use super::SpendTracker;

/// Everything a request needs, shared by all requests.
pub struct Gateway {
    pub config: Arc<Config>,
    /// The live traffic configuration; replaced atomically on every change.
    pub traffic: ArcSwap<TrafficTable>,
    pub upstreams: Upstreams,
    pub capture: Capture,
    pub metrics: Metrics,
    /// Background calls (mirrors); shutdown waits for them.
    pub tasks: TaskTracker,
    pub spend: SpendTracker,
    /// The database, when the gateway has one: traffic state is read from it.
    pub store: Option<crate::store::Store>,
    /// Where call outcomes go for the rollout guardrails (set once by whoever starts them).
    pub outcomes: std::sync::OnceLock<crate::rollout::guardrails::OutcomeSender>,
}

pub type AppState = Arc<Gateway>;

impl Gateway {
    /// Builds the gateway state. `capture` must already be started.
    pub fn new(
        config: Config,
        capture: Capture,
        tasks: TaskTracker,
        store: Option<crate::store::Store>,
    ) -> Result<Self, reqwest::Error> {
        let upstreams = Upstreams::new(config.providers.values())?;
        let traffic = TrafficTable::new(1, config.deployments.iter().cloned());
        let depth_handle = capture.clone();
        let metrics = Metrics::new(
            capture.stats().clone(),
            Arc::new(move || depth_handle.queue_depth()),
        );
        metrics.rollout.observe_traffic(&traffic, &config);
        Ok(Self {
            config: Arc::new(config),
            traffic: ArcSwap::from_pointee(traffic),
            upstreams,
            capture,
            metrics,
            tasks,
            spend: SpendTracker::default(),
            store,
            outcomes: std::sync::OnceLock::new(),
        })
    }

    pub fn capture_policy(&self) -> &CaptureConfig {
        &self.config.capture
    }

    /// Re-reads the stored traffic states and swaps in the resulting table. Without a store this
    /// does nothing.
    pub async fn reload_traffic(&self) -> Result<u64, crate::store::StoreError> {
        let Some(store) = &self.store else {
            return Ok(self.traffic.load().version);
        };
        let version = store.config_version().await?;
        let states = store.traffic_states().await?;
        let table = TrafficTable::overlaid(
            version.max(1),
            &self.config.deployments,
            states.iter().map(|s| (s.deployment.as_str(), &s.state)),
        );
        self.set_traffic(table);
        Ok(version)
    }

    /// Replaces the traffic table (one atomic store).
    pub fn set_traffic(&self, table: TrafficTable) {
        self.metrics.rollout.observe_traffic(&table, &self.config);
        self.traffic.store(Arc::new(table));
    }
}
