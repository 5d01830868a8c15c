//! The gateway's shared state: static config, the live traffic table, the upstream clients, the
//! capture handle, metrics, the guardrails' sender and the tracker of background tasks.

use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::capture::Capture;
use crate::config::{CaptureConfig, Config};
use crate::rollout::LiveTraffic;
use crate::rollout::guardrails::OutcomeSender;
use crate::telemetry::Metrics;
use crate::upstream::Upstreams;

use super::SpendTracker;

/// Everything a request needs, shared by all requests.
pub struct Gateway {
    pub config: Arc<Config>,
    /// The live traffic configuration; replaced atomically on every change.
    pub traffic: LiveTraffic,
    pub upstreams: Upstreams,
    pub capture: Capture,
    pub metrics: Metrics,
    /// Background calls (mirrors); shutdown waits for them.
    pub tasks: TaskTracker,
    pub spend: SpendTracker,
    /// The database, when the gateway has one (the admin API reads and writes through it).
    pub store: Option<crate::store::Store>,
    /// Where call outcomes go for the rollout guardrails (`None`: no guardrails run).
    pub outcomes: Option<OutcomeSender>,
    /// The places for requests in flight (`server.max_requests_in_flight`).
    pub in_flight: super::bounds::InFlight,
}

pub type AppState = Arc<Gateway>;

/// What [`Gateway::new`] is built from; every part is started by the caller
/// (`app::Runtime::start`), in that order.
pub struct GatewayParts {
    pub config: Arc<Config>,
    /// Started already (its writer drains into the sink).
    pub capture: Capture,
    pub metrics: Metrics,
    pub traffic: LiveTraffic,
    pub outcomes: Option<OutcomeSender>,
    pub store: Option<crate::store::Store>,
}

impl Gateway {
    /// Builds the gateway state (and the upstream clients).
    pub fn new(parts: GatewayParts) -> Result<Self, reqwest::Error> {
        let GatewayParts {
            config,
            capture,
            metrics,
            traffic,
            outcomes,
            store,
        } = parts;
        let upstreams = Upstreams::new(config.providers.values())?;
        Ok(Self {
            in_flight: super::bounds::InFlight::new(config.server.max_requests_in_flight),
            config,
            traffic,
            upstreams,
            capture,
            metrics,
            tasks: TaskTracker::new(),
            spend: SpendTracker::default(),
            store,
            outcomes,
        })
    }

    pub fn capture_policy(&self) -> &CaptureConfig {
        &self.config.capture
    }
}
