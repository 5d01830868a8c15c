//! The gate's inputs: the policy (what gates, with which margins and α) and the stage's
//! summaries as sufficient statistics, so that storage can compute them with aggregate SQL
//! (`COUNT`, `SUM(x)`, `SUM(x*x)`, `SUM(CASE …)`) without shipping raw observations.
//!
//! Owns: the policy and summary types and the policy's validation. Never: computes statistics.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::sequential::{Count, JointRatio, Moments, UnitRatio};
use crate::vocab::Problem;

/// Which way a metric is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    HigherIsBetter,
    LowerIsBetter,
}

/// What a gate metric measures and how it is tested. Margins are absolute, in the metric's
/// units (score points, a rate, a win probability); `budget` is a ratio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MetricKind {
    /// A judge criterion or check-pass rate: candidate − stable, paired when pairs exist.
    Mean { direction: Direction, margin: f64 },
    /// Pairwise judge verdicts: the candidate's win rate (ties half) against ½.
    WinRate { margin: f64 },
    /// Error rate, candidate − stable, plus an absolute ceiling on the candidate's rate.
    ErrorRate { margin: f64, ceiling: f64 },
    /// The share of candidate requests above stable's `quantile` (e.g. 0.95) against its
    /// nominal `1 − quantile`.
    LatencyTail { quantile: f64, margin: f64 },
    /// Cost per request, candidate / stable, against a budget (e.g. 1.2).
    CostRatio { budget: f64 },
}

/// One gate metric. (Unknown fields are rejected by `MetricKind`: serde cannot combine
/// `deny_unknown_fields` with `flatten` on this struct.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MetricPolicy {
    /// The key of this metric in the summaries (e.g. `helpfulness`, `error_rate`, `latency_p95`).
    pub name: String,
    #[serde(flatten)]
    pub kind: MetricKind,
    /// The margin the rollback is judged against, in the metric's units (default: `margin`).
    /// Promotion always needs non-inferiority within `margin`; a rollback needs the candidate
    /// to be surely worse than stable by more than `rollback_margin`. `0` rolls back as soon as
    /// the candidate is surely worse than stable at all — far sooner for a real drop (the
    /// distance to the bound is the whole drop, not the drop minus the margin), at the price
    /// that a candidate slightly worse than stable but within `margin` may be rolled back
    /// instead of promoted. Its guarantee: P(rollback | candidate not worse than stable by
    /// more than `rollback_margin`) ≤ `alpha_rollback`. Not for `cost_ratio` (its budget is
    /// the bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_margin: Option<f64>,
}

impl MetricPolicy {
    /// A metric whose rollback uses its own margin.
    pub fn new(name: impl Into<String>, kind: MetricKind) -> Self {
        Self {
            name: name.into(),
            kind,
            rollback_margin: None,
        }
    }

    /// This metric with its rollback judged against `margin` (see `rollback_margin`).
    pub fn rollback_at(mut self, margin: f64) -> Self {
        self.rollback_margin = Some(margin);
        self
    }
}

/// The statistical gate's policy for one deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatePolicy {
    pub metrics: Vec<MetricPolicy>,
    /// Overall error rate of a wrong promotion, split over metrics × cohorts (Bonferroni).
    #[serde(default = "default_alpha")]
    pub alpha_promote: f64,
    /// Overall error rate of a wrong rollback, split over metrics × cohorts (Bonferroni).
    #[serde(default = "default_alpha")]
    pub alpha_rollback: f64,
    /// Sample size near which the confidence sequences are tightest (tunes ρ).
    #[serde(default = "default_target_n")]
    pub target_n: f64,
    /// Below this many observations in a cell (metric × cohort) no verdict is drawn.
    #[serde(default = "default_min_samples")]
    pub min_samples: u64,
    /// A cohort other than `all` with fewer than this many units on a side (in a cell whose
    /// inference runs over units) does not hold the stage while its estimate is on the good
    /// side of the bound: at a small share a small cohort may never have the units to show
    /// non-inferiority within the margin. Its rollback sequence still rolls back a surely
    /// worse candidate, `all` must still show non-inferiority, and once the cohort has these
    /// many units (a later, larger stage) it gates promotion like any other. `0`: every cohort
    /// gates promotion from `min_samples` units.
    #[serde(default = "default_cohort_min_units")]
    pub cohort_min_units: u64,
    /// Significance of the sample-ratio-mismatch chi-square test (strict on purpose).
    #[serde(default = "default_srm_alpha")]
    pub srm_alpha: f64,
    /// A variant whose judge abstains more often than this blocks promotion.
    #[serde(default = "default_max_abstention")]
    pub max_abstention_rate: f64,
    /// Abstention rates are judged from this many judge attempts on.
    #[serde(default = "default_min_samples")]
    pub abstention_min_count: u64,
}

pub fn default_alpha() -> f64 {
    0.05
}
pub fn default_target_n() -> f64 {
    1000.0
}
pub fn default_min_samples() -> u64 {
    30
}
pub fn default_cohort_min_units() -> u64 {
    100
}
pub fn default_srm_alpha() -> f64 {
    0.001
}
pub fn default_max_abstention() -> f64 {
    0.10
}

impl GatePolicy {
    /// A policy with the given metrics and every other field at its default.
    pub fn with_metrics(metrics: Vec<MetricPolicy>) -> Self {
        Self {
            metrics,
            alpha_promote: default_alpha(),
            alpha_rollback: default_alpha(),
            target_n: default_target_n(),
            min_samples: default_min_samples(),
            cohort_min_units: default_cohort_min_units(),
            srm_alpha: default_srm_alpha(),
            max_abstention_rate: default_max_abstention(),
            abstention_min_count: default_min_samples(),
        }
    }

    /// Every problem in the policy, each naming its field under `prefix` (e.g. `gate`).
    pub fn validate(&self, prefix: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |field: String, message: &str| {
            out.push(Problem {
                field,
                message: message.to_owned(),
            })
        };
        let unit = |x: f64| x > 0.0 && x < 1.0;
        if !unit(self.alpha_promote) {
            bad(format!("{prefix}.alpha_promote"), "must be in (0, 1)");
        }
        if !unit(self.alpha_rollback) {
            bad(format!("{prefix}.alpha_rollback"), "must be in (0, 1)");
        }
        if !unit(self.srm_alpha) {
            bad(format!("{prefix}.srm_alpha"), "must be in (0, 1)");
        }
        if self.target_n.is_nan() || self.target_n < 1.0 {
            bad(format!("{prefix}.target_n"), "must be at least 1");
        }
        if self.min_samples < 2 {
            bad(format!("{prefix}.min_samples"), "must be at least 2");
        }
        if !unit(self.max_abstention_rate) {
            bad(format!("{prefix}.max_abstention_rate"), "must be in (0, 1)");
        }
        if self.metrics.is_empty() {
            bad(
                format!("{prefix}.metrics"),
                "at least one gate metric is needed",
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, m) in self.metrics.iter().enumerate() {
            let f = |name: &str| format!("{prefix}.metrics[{i}].{name}");
            if m.name.trim().is_empty() {
                bad(f("name"), "must not be empty");
            } else if !seen.insert(m.name.as_str()) {
                bad(f("name"), "duplicate metric name");
            }
            let nonneg = |x: f64| x.is_finite() && x >= 0.0;
            match &m.kind {
                MetricKind::Mean { margin, .. } | MetricKind::WinRate { margin } => {
                    if !nonneg(*margin) {
                        bad(f("margin"), "must be a finite number ≥ 0");
                    }
                }
                MetricKind::ErrorRate { margin, ceiling } => {
                    if !nonneg(*margin) {
                        bad(f("margin"), "must be a finite number ≥ 0");
                    }
                    if !unit(*ceiling) {
                        bad(f("ceiling"), "must be in (0, 1)");
                    }
                }
                MetricKind::LatencyTail { quantile, margin } => {
                    if !unit(*quantile) {
                        bad(f("quantile"), "must be in (0, 1), e.g. 0.95");
                    }
                    if !nonneg(*margin) {
                        bad(f("margin"), "must be a finite number ≥ 0");
                    }
                }
                MetricKind::CostRatio { budget } => {
                    if !(budget.is_finite() && *budget > 0.0) {
                        bad(f("budget"), "must be a ratio > 0, e.g. 1.2");
                    }
                    if m.rollback_margin.is_some() {
                        bad(
                            f("rollback_margin"),
                            "does not apply to cost_ratio (its budget is the rollback bound)",
                        );
                    }
                }
            }
            if let Some(rm) = m.rollback_margin
                && !(rm.is_finite() && rm >= 0.0)
            {
                bad(f("rollback_margin"), "must be a finite number ≥ 0");
            }
        }
        out
    }
}

/// Where the stage stands, passed in by the controller (no clocks inside the gate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageContext {
    /// Time spent in the stage so far (paused time excluded).
    pub elapsed: Duration,
    /// Judged pairs collected in the stage so far.
    pub judged_pairs: u64,
    pub min_duration: Duration,
    pub min_judged_pairs: u64,
}

/// One metric's sufficient statistics in one cohort.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetricData {
    /// Matched pairs: moments of candidate − stable.
    Paired(Moments),
    /// Unmatched observations: moments per side.
    TwoSample { candidate: Moments, stable: Moments },
    /// Event counts per side (errors, check passes).
    Proportions { candidate: Count, stable: Count },
    /// Candidate requests above stable's quantile, with the two quantiles for the ratio report,
    /// and per candidate unit (x = requests above, y = requests) when the units are known.
    Exceedance {
        candidate_above: Count,
        stable_quantile: Option<f64>,
        candidate_quantile: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        candidate_units: Option<UnitRatio>,
    },
    /// Successful requests slower than a latency threshold near stable's quantile (the nearest
    /// rung of `capture::tail`), per side, with the same per unit and side (x = slower
    /// requests, y = successful requests): the difference of the two sides' shares over units.
    UnitTail {
        candidate_above: Count,
        stable_above: Count,
        threshold_ms: f64,
        stable_quantile: Option<f64>,
        candidate_quantile: Option<f64>,
        units: JointRatio,
    },
    /// A latency tail compared at the two rungs of `capture::tail` that bracket stable's
    /// quantile (`lower` and `upper`: each a `UnitTail`, or a `WithPairs` of one with the paired
    /// requests at that rung), interpolated with weight `upper_weight` on the upper rung, the
    /// weight that puts stable's interpolated share above them at 1 − q. The margin then
    /// applies where stable's share is 1 − q, as at the quantile itself, whichever rung is
    /// nearer. Each rung's sequence runs at half the α: by the union bound both cover at once,
    /// and then so does every convex combination of them, whatever the weight.
    Between {
        lower: Box<MetricData>,
        upper: Box<MetricData>,
        upper_weight: f64,
    },
    /// Pairwise judge verdicts from the candidate's point of view.
    WinTieLoss { wins: u64, ties: u64, losses: u64 },
    /// Cost per request, per side.
    Cost { candidate: Moments, stable: Moments },
    /// Event counts per side (errors per request) with the same events per unit and side
    /// (x = events, y = requests of the unit): the gate's inference runs over units.
    UnitRates {
        candidate: Count,
        stable: Count,
        units: JointRatio,
    },
    /// Cost per request per side with the same per unit and side (x = cost, y = requests with
    /// a cost).
    UnitCost {
        candidate: Moments,
        stable: Moments,
        units: JointRatio,
    },
    /// Matched pairs (candidate − stable) with the differences summed per unit (x = Σ
    /// differences, y = pairs of the unit).
    PairedUnits { pairs: Moments, units: UnitRatio },
    /// A two-sample `error_rate` or `latency_tail` (`unpaired`) and the same metric on the
    /// paired requests — shadow pairs and live pair samples, the same prompt sent to both
    /// variants — as per-pair differences candidate − stable summed per unit (x = Σ
    /// differences, y = pairs of the unit). An error rate's difference is e_c − e_s; a latency
    /// tail's is 1[L_c > q] − 1[L_s > q], with q stable's quantile. The gate intersects the two
    /// sequences at half the α each (the tighter one decides; the evidence names it).
    WithPairs {
        unpaired: Box<MetricData>,
        pairs: Moments,
        units: UnitRatio,
    },
}

/// Observed units of the candidate and of stable against their configured shares (for the SRM
/// check).
///
/// canarist assigns units (sticky keys), not requests, so the check counts the distinct units
/// each variant served in the stage (a request without a unit key is a unit of its own). The
/// requests served are kept beside them for information only: with sticky units, a heavy user
/// moves the request split far more than a per-request multinomial allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub candidate: Assigned,
    pub stable: Assigned,
}

/// One variant's side of an [`Assignment`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assigned {
    pub variant: String,
    /// Distinct units served in the stage.
    pub units: u64,
    /// Requests served in the stage (information only).
    pub requests: u64,
    /// The configured share, in (0, 1); the two shares sum to 1.
    pub share: f64,
}

impl Assigned {
    pub fn new(variant: &str, units: u64, requests: u64, share: f64) -> Self {
        Self {
            variant: variant.to_owned(),
            units,
            requests,
            share,
        }
    }
}

/// Judge attempts and abstentions for one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Abstentions {
    pub variant: String,
    pub abstained: u64,
    pub attempts: u64,
}

/// Everything the gate looks at for one stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageSummaries {
    /// Cohort name (`all`, or a label such as `tier=enterprise`) → metric name → data.
    pub cohorts: BTreeMap<String, BTreeMap<String, MetricData>>,
    pub assignment: Option<Assignment>,
    pub abstentions: Vec<Abstentions>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_yaml_parses_and_validation_names_fields() {
        let yaml = r#"
metrics:
  - { name: helpfulness, kind: mean, direction: higher_is_better, margin: 0.15 }
  - { name: errors, kind: error_rate, margin: 0.02, ceiling: 1.5 }
  - { name: helpfulness, kind: cost_ratio, budget: -1 }
alpha_promote: 0.05
"#;
        let p: GatePolicy = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(p.alpha_rollback, 0.05);
        assert_eq!(p.min_samples, 30);
        let fields: Vec<String> = p.validate("gate").into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            vec![
                "gate.metrics[1].ceiling",
                "gate.metrics[2].name",
                "gate.metrics[2].budget"
            ]
        );
        let unknown = "metrics: []\nalpha: 0.1\n";
        assert!(serde_yaml_ng::from_str::<GatePolicy>(unknown).is_err());
    }
}
