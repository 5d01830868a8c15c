//! The rollout side of the rollout metrics: what a traffic table and a gate action mean as the
//! plain labels and values of `telemetry::RolloutMetrics` (which knows no rollout types).
//!
//! Owns: the stage index and candidate percentages of a deployment, a gate action's label.
//! Never: defines a metric name (telemetry does). Fails open: setting a gauge never fails.

use crate::config::Config;
use crate::gate::Action;
use crate::routing::TrafficTable;
use crate::telemetry::{DeploymentLabels, RolloutMetrics};
use crate::vocab::Mode;

use super::ramp::Ramp;
use super::stored::stage_label;

/// Sets the stage and percentage gauges of every deployment in `table`.
pub fn observe_traffic(metrics: &RolloutMetrics, table: &TrafficTable, config: &Config) {
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
        metrics.stage_index.get_or_create(&labels).set(index);
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
        metrics
            .candidate_served_percent
            .get_or_create(&labels)
            .set(served);
        metrics
            .candidate_mirrored_percent
            .get_or_create(&labels)
            .set(mirrored);
    }
}

/// The ramp index of the stage labelled `label` (`shadow` is the first shadow stage,
/// `canary-N` is stage N), if the ramp has it.
pub fn stage_index(ramp: &Ramp, label: &str) -> Option<usize> {
    (0..ramp.stages.len()).find(|&i| stage_label(ramp, i) == label)
}

/// The metric label of a gate action.
pub fn action_label(action: Action) -> &'static str {
    match action {
        Action::Promote => "promote",
        Action::Hold => "hold",
        Action::Rollback => "rollback",
    }
}
