//! Rollout and admin metrics: guardrail trips, gate decisions, the current stage and candidate
//! share per deployment (gauges set whenever the traffic table is replaced), admin calls refused
//! by the rate limit, and whether this replica leads the rollout controller.
//!
//! Owns: these metric names (documented in `docs/metrics.md`). Never: reads the store or decides,
//! or knows rollout types: `rollout::metrics` turns a traffic table and a gate action into
//! these plain labels and values.
//! Fails open: updating a metric never fails.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::DeploymentLabels;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GuardrailLabels {
    pub deployment: String,
    /// `error_rate` or `hard_checks`.
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GateLabels {
    pub deployment: String,
    /// `promote`, `hold` or `rollback`.
    pub action: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub role: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The rollout controller's, guardrails' and admin API's metrics.
#[derive(Debug, Clone, Default)]
pub struct RolloutMetrics {
    pub guardrail_trips: Family<GuardrailLabels, Counter>,
    pub gate_decisions: Family<GateLabels, Counter>,
    pub stage_index: Family<DeploymentLabels, Gauge>,
    pub candidate_served_percent: Family<DeploymentLabels, FloatGauge>,
    pub candidate_mirrored_percent: Family<DeploymentLabels, FloatGauge>,
    pub admin_rate_limited: Family<RoleLabels, Counter>,
    /// Requests refused (429) because their client address failed to authenticate too often.
    pub auth_failures_limited: Counter,
    pub controller_leader: Gauge,
}

impl RolloutMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "guardrail_trips",
            "Guardrail trips (each rolls the stage back), by deployment and kind (error_rate, hard_checks)",
            m.guardrail_trips.clone(),
        );
        registry.register(
            "gate_decisions",
            "Gate decisions made by the controller's ticks, by deployment and action (promote, hold, rollback)",
            m.gate_decisions.clone(),
        );
        registry.register(
            "rollout_stage_index",
            "Index in the ramp of the stage the deployment's traffic is routed under; -1 outside a ramp stage",
            m.stage_index.clone(),
        );
        registry.register(
            "candidate_served_percent",
            "Percent of the deployment's units served by candidates (0 unless the mode is live)",
            m.candidate_served_percent.clone(),
        );
        registry.register(
            "candidate_mirrored_percent",
            "Percent of the deployment's units mirrored to candidates in the background (0 unless the mode is shadow)",
            m.candidate_mirrored_percent.clone(),
        );
        registry.register(
            "admin_rate_limited",
            "Admin API calls refused with 429 by the per-caller rate limit, by the caller's role",
            m.admin_rate_limited.clone(),
        );
        registry.register(
            "admin_auth_failures_limited",
            "Requests refused with 429 because their client address failed to authenticate more often than admin.auth_failures_per_minute allows",
            m.auth_failures_limited.clone(),
        );
        registry.register(
            "controller_leader",
            "1 while this replica leads the rollout controller, else 0",
            m.controller_leader.clone(),
        );
        m
    }
}
