//! The store's [`StageSummary`] → the gate's [`StageSummaries`], driven by the policy: each
//! policy metric says what it needs (a criterion or check by name, error rates, a latency tail,
//! cost), so the report can re-run `gate::evaluate` when no decision was recorded for a stage.
//!
//! Mapping, per cohort (`all` and each `key=value`):
//! - `mean` named after a criterion → paired differences when pairs exist, else two-sample
//!   moments; named after a check → paired check scores (pass = 1), else pass counts;
//! - `win_rate` named after a pairwise criterion → its win/tie/loss;
//! - `error_rate` → errors over requests per side; `latency_tail` → candidate requests above
//!   stable's quantile (estimated from the histograms); `cost_ratio` → cost moments per side.
//!
//! When several rubric versions (hashes) carry the same name, the one with the most scores is
//! used (versions are never pooled). Pure. Fails closed: a metric with no data is left out of
//! its cohort, which the gate reports as insufficient data.

use std::collections::BTreeMap;

use super::sections::{cohort_name, is_pairwise};
use super::stats::gate_moments;
use crate::gate::sequential::Count;
use crate::gate::{Abstentions, Assignment, GatePolicy, MetricData, MetricKind, StageSummaries};
use crate::store::{CheckSummary, Cohort, ScoreSummary, StageSummary, VariantSummary};

/// The gate's view of one stage of `candidate`. `configured_share` is the candidate's live
/// share (for the sample-ratio check); `None` for shadow stages or an unknown split.
pub fn summaries(
    policy: &GatePolicy,
    summary: &StageSummary,
    candidate: &str,
    configured_share: Option<f64>,
) -> StageSummaries {
    let mut cohorts: BTreeMap<String, BTreeMap<String, MetricData>> = BTreeMap::new();
    let mut names: Vec<Cohort> = summary.variants.iter().map(|v| v.cohort.clone()).collect();
    names.extend(summary.scores.iter().map(|s| s.cohort.clone()));
    names.extend(summary.checks.iter().map(|c| c.cohort.clone()));
    names.sort();
    names.dedup();
    for cohort in &names {
        let mut data = BTreeMap::new();
        for m in &policy.metrics {
            if let Some(d) = metric(&m.name, &m.kind, summary, cohort, candidate) {
                data.insert(m.name.clone(), d);
            }
        }
        cohorts.insert(cohort_name(cohort), data);
    }
    let overall = |role: &str| {
        summary.variants.iter().find(|v| {
            v.cohort.is_none() && v.role == role && (role == "stable" || v.variant == candidate)
        })
    };
    let assignment = match (configured_share, overall("candidate"), overall("stable")) {
        (Some(share), Some(c), Some(s)) if share > 0.0 && share < 1.0 => Some(Assignment {
            variants: vec![
                (c.variant.clone(), c.served, share),
                (s.variant.clone(), s.served, 1.0 - share),
            ],
        }),
        _ => None,
    };
    let mut abstentions = [("stable", 0u64, 0u64), (candidate, 0u64, 0u64)];
    for s in summary
        .scores
        .iter()
        .filter(|s| s.cohort.is_none() && s.candidate == candidate)
    {
        abstentions[0].1 += s.stable_abstentions;
        abstentions[0].2 += s.stable_abstentions + s.stable.count;
        abstentions[1].1 += s.candidate_abstentions + s.pairwise_abstentions;
        abstentions[1].2 += s.candidate_abstentions
            + s.candidate_scores.count
            + s.pairwise_abstentions
            + s.wins
            + s.ties
            + s.losses;
    }
    StageSummaries {
        cohorts,
        assignment,
        abstentions: abstentions
            .iter()
            .filter(|a| a.2 > 0)
            .map(|&(v, abstained, attempts)| Abstentions {
                variant: v.to_owned(),
                abstained,
                attempts,
            })
            .collect(),
    }
}

fn metric(
    name: &str,
    kind: &MetricKind,
    summary: &StageSummary,
    cohort: &Cohort,
    candidate: &str,
) -> Option<MetricData> {
    let variant = |role: &str| -> Option<&VariantSummary> {
        summary.variants.iter().find(|v| {
            &v.cohort == cohort && v.role == role && (role == "stable" || v.variant == candidate)
        })
    };
    let score = || -> Option<&ScoreSummary> {
        summary
            .scores
            .iter()
            .filter(|s| &s.cohort == cohort && s.candidate == candidate && s.criterion == name)
            .max_by_key(|s| {
                (
                    s.stable.count + s.candidate_scores.count + s.wins + s.ties + s.losses,
                    s.rubric_hash.clone(),
                )
            })
    };
    let check = || -> Option<&CheckSummary> {
        summary
            .checks
            .iter()
            .filter(|c| &c.cohort == cohort && c.candidate == candidate && c.check == name)
            .max_by_key(|c| {
                (
                    c.stable.count + c.candidate_scores.count,
                    c.rubric_hash.clone(),
                )
            })
    };
    match kind {
        MetricKind::Mean { .. } => {
            if let Some(s) = score().filter(|s| !is_pairwise(s)) {
                Some(if s.paired.count > 0 {
                    MetricData::Paired(gate_moments(&s.paired))
                } else {
                    MetricData::TwoSample {
                        candidate: gate_moments(&s.candidate_scores),
                        stable: gate_moments(&s.stable),
                    }
                })
            } else {
                check().map(|c| {
                    if c.paired.count > 0 {
                        MetricData::Paired(gate_moments(&c.paired))
                    } else {
                        MetricData::Proportions {
                            candidate: Count::new(c.candidate_passed, c.candidate_scores.count),
                            stable: Count::new(c.stable_passed, c.stable.count),
                        }
                    }
                })
            }
        }
        MetricKind::WinRate { .. } => {
            score()
                .filter(|s| is_pairwise(s))
                .map(|s| MetricData::WinTieLoss {
                    wins: s.wins,
                    ties: s.ties,
                    losses: s.losses,
                })
        }
        MetricKind::ErrorRate { .. } => {
            let (c, s) = (variant("candidate")?, variant("stable")?);
            Some(MetricData::Proportions {
                candidate: Count::new(c.error_count(), c.requests),
                stable: Count::new(s.error_count(), s.requests),
            })
        }
        MetricKind::LatencyTail { quantile, .. } => {
            let (c, s) = (variant("candidate")?, variant("stable")?);
            let stable_q = s.latency_histogram.quantile(*quantile)?;
            let above = c
                .latency_histogram
                .estimate_above(stable_q)
                .round()
                .max(0.0) as u64;
            Some(MetricData::Exceedance {
                candidate_above: Count::new(above, c.latency_histogram.total()),
                stable_quantile: Some(stable_q),
                candidate_quantile: c.latency_histogram.quantile(*quantile),
            })
        }
        MetricKind::CostRatio { .. } => {
            let (c, s) = (variant("candidate")?, variant("stable")?);
            Some(MetricData::Cost {
                candidate: gate_moments(&c.cost),
                stable: gate_moments(&s.cost),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{Direction, MetricPolicy};
    use crate::store::Moments;

    #[test]
    fn policy_metrics_pick_their_data() {
        let mut helpful = ScoreSummary {
            candidate: "cand".into(),
            criterion: "helpfulness".into(),
            ..ScoreSummary::default()
        };
        helpful.paired = Moments {
            count: 3,
            sum: -1.0,
            sum_sq: 1.0,
        };
        let stable = VariantSummary {
            variant: "stable".into(),
            role: "stable".into(),
            requests: 100,
            served: 90,
            ..VariantSummary::default()
        };
        let mut cand = VariantSummary {
            variant: "cand".into(),
            role: "candidate".into(),
            requests: 10,
            served: 10,
            ..VariantSummary::default()
        };
        cand.errors.insert("timeout".into(), 1);
        let summary = StageSummary {
            variants: vec![stable, cand],
            scores: vec![helpful],
            ..StageSummary::default()
        };
        let policy = GatePolicy::with_metrics(vec![
            MetricPolicy {
                name: "helpfulness".into(),
                kind: MetricKind::Mean {
                    direction: Direction::HigherIsBetter,
                    margin: 0.2,
                },
            },
            MetricPolicy {
                name: "errors".into(),
                kind: MetricKind::ErrorRate {
                    margin: 0.02,
                    ceiling: 0.1,
                },
            },
            MetricPolicy {
                name: "missing".into(),
                kind: MetricKind::WinRate { margin: 0.05 },
            },
        ]);
        let s = summaries(&policy, &summary, "cand", Some(0.1));
        let all = &s.cohorts["all"];
        assert_eq!(
            all["helpfulness"],
            MetricData::Paired(crate::gate::sequential::Moments {
                n: 3,
                sum: -1.0,
                sum_sq: 1.0
            })
        );
        assert_eq!(
            all["errors"],
            MetricData::Proportions {
                candidate: Count::new(1, 10),
                stable: Count::new(0, 100)
            }
        );
        assert!(!all.contains_key("missing"));
        let a = s.assignment.unwrap();
        assert_eq!(a.variants[0], ("cand".to_owned(), 10, 0.1));
        assert!(
            summaries(&policy, &summary, "cand", None)
                .assignment
                .is_none()
        );
    }
}
