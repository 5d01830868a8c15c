//! Rollout and admin metrics: guardrail trips, gate decisions, the current stage and candidate
//! share per deployment (gauges set whenever the traffic table is replaced), admin calls refused
//! by the rate limit, and whether this replica leads the rollout controller.
//!
//! Owns: these metric names (documented in `docs/metrics.md`). Never: reads the store or decides.
//! Fails open: updating a metric never fails.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::DeploymentLabels;
use crate::config::{Config, Mode};
use crate::routing::TrafficTable;

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
            "controller_leader",
            "1 while this replica leads the rollout controller, else 0",
            m.controller_leader.clone(),
        );
        m
    }

    /// Sets the stage and percentage gauges of every deployment in `table`.
    pub fn observe_traffic(&self, table: &TrafficTable, config: &Config) {
        for routed in table.iter() {
            let d = &routed.deployment;
            let labels = DeploymentLabels {
                deployment: d.slug.clone(),
            };
            let index = config
                .rollouts
                .get(&d.slug)
                .and_then(|s| stage_index(&s.ramp, &d.stage))
                .map_or(-1, |i| i64::try_from(i).unwrap_or(i64::MAX));
            self.stage_index.get_or_create(&labels).set(index);
            let pct = d
                .candidates
                .iter()
                .map(|c| f64::from(c.buckets) / 100.0)
                .sum::<f64>();
            let (served, mirrored) = match d.mode {
                Mode::Live => (pct, 0.0),
                Mode::Shadow => (0.0, pct),
                Mode::Off => (0.0, 0.0),
            };
            self.candidate_served_percent
                .get_or_create(&labels)
                .set(served);
            self.candidate_mirrored_percent
                .get_or_create(&labels)
                .set(mirrored);
        }
    }
}

/// The ramp index of the stage labelled `label` (`shadow` is the first shadow stage,
/// `canary-N` is stage N), if the ramp has it.
pub fn stage_index(ramp: &crate::rollout::Ramp, label: &str) -> Option<usize> {
    (0..ramp.stages.len()).find(|&i| crate::rollout::stored::stage_label(ramp, i) == label)
}

/// The metric label of a gate action.
pub fn action_label(action: crate::gate::Action) -> &'static str {
    match action {
        crate::gate::Action::Promote => "promote",
        crate::gate::Action::Hold => "hold",
        crate::gate::Action::Rollback => "rollback",
    }
}
