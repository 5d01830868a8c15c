//! Turns the store's [`StageSummary`] into the report's tables: per-variant traffic, errors,
//! latency, tokens and cost; pair counts; per-criterion and per-check comparisons with their
//! intervals; judge abstention rates; the sample-ratio check; Welch's t for the reference
//! section.
//!
//! Pure: no I/O. Rows come out in the summary's order (cohort `all` first, then by label),
//! which is deterministic, so the rendered reports are too.

use super::model::{
    AaReport, CheckStats, CriterionStats, PairCount, ReferenceRow, SampleRatio, StageMode,
    VariantStats, WinTieLoss,
};
use super::stats;
use crate::store::{CheckSummary, ScoreSummary, StageSummary, VariantSummary};
use crate::vocab::Role;

pub use crate::vocab::cohort_name;

/// Interval settings shared by every section.
#[derive(Debug, Clone, Copy)]
pub struct Intervals {
    pub alpha: f64,
    pub target_n: f64,
}

pub fn variants(summary: &StageSummary) -> Vec<VariantStats> {
    let mut rows: Vec<VariantStats> = summary
        .variants
        .iter()
        .map(|v| {
            let errors = v.error_count();
            let with_histogram = v.cohort.is_none();
            VariantStats {
                cohort: cohort_name(&v.cohort),
                variant: v.variant.clone(),
                role: v.role.as_str().to_owned(),
                requests: v.requests,
                units: v.units,
                served: v.served,
                served_units: v.served_units,
                errors,
                error_rate: stats::rate(errors, v.requests),
                errors_by_class: v.errors.clone(),
                latency_ms: stats::distribution(&v.latency, &v.latency_histogram, with_histogram),
                ttft_ms: stats::distribution(&v.ttft, &v.ttft_histogram, with_histogram),
                prompt_tokens_per_request: per_request(
                    v.prompt_tokens,
                    v.requests.saturating_sub(errors),
                ),
                completion_tokens_per_request: per_request(
                    v.completion_tokens,
                    v.requests.saturating_sub(errors),
                ),
                cost_per_request: v.cost.mean(),
                total_cost: v.cost.sum,
            }
        })
        .collect();
    // Cohort `all` first, then labels; stable before candidates within a cohort.
    rows.sort_by(|a, b| {
        (a.cohort != "all", &a.cohort, a.role != "stable", &a.variant).cmp(&(
            b.cohort != "all",
            &b.cohort,
            b.role != "stable",
            &b.variant,
        ))
    });
    rows
}

/// Per successful request (failed requests report no usage).
fn per_request(total: u64, requests: u64) -> Option<f64> {
    stats::rate(total, requests)
}

pub fn pairs(summary: &StageSummary) -> Vec<PairCount> {
    let mut rows: Vec<PairCount> = summary
        .pairs
        .iter()
        .map(|((cohort, candidate), &n)| PairCount {
            cohort: cohort_name(cohort),
            candidate: candidate.clone(),
            pairs: n,
        })
        .collect();
    rows.sort_by(|a, b| (a.cohort != "all", &a.cohort).cmp(&(b.cohort != "all", &b.cohort)));
    rows
}

/// A pairwise criterion has combined verdicts (or abstained ones) and no per-side scores.
pub fn is_pairwise(s: &ScoreSummary) -> bool {
    s.wins + s.ties + s.losses + s.pairwise_abstentions > 0
        && s.stable.count + s.candidate_scores.count == 0
}

fn attempts(s: &ScoreSummary) -> u64 {
    s.stable.count
        + s.candidate_scores.count
        + s.stable_abstentions
        + s.candidate_abstentions
        + s.wins
        + s.ties
        + s.losses
        + s.pairwise_abstentions
}

pub fn criteria(summary: &StageSummary, iv: Intervals) -> Vec<CriterionStats> {
    let mut rows: Vec<CriterionStats> = summary
        .scores
        .iter()
        .map(|s| {
            let pairwise = is_pairwise(s);
            let abstained = s.stable_abstentions + s.candidate_abstentions + s.pairwise_abstentions;
            CriterionStats {
                cohort: cohort_name(&s.cohort),
                candidate: s.candidate.clone(),
                rubric_id: s.rubric_id.clone(),
                rubric_hash: s.rubric_hash.clone(),
                criterion: s.criterion.clone(),
                stable_mean: s.stable.mean(),
                candidate_mean: s.candidate_scores.mean(),
                stable_n: s.stable.count,
                candidate_n: s.candidate_scores.count,
                difference: if pairwise {
                    None
                } else {
                    stats::difference(
                        &s.paired,
                        &s.candidate_scores,
                        &s.stable,
                        iv.alpha,
                        iv.target_n,
                    )
                },
                win_tie_loss: pairwise
                    .then(|| stats::win_tie_loss(s.wins, s.ties, s.losses, iv.alpha, iv.target_n)),
                abstentions: [
                    s.stable_abstentions,
                    s.candidate_abstentions,
                    s.pairwise_abstentions,
                ],
                abstention_rate: stats::rate(abstained, attempts(s)),
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.rubric_id, &a.criterion, a.cohort != "all", &a.cohort).cmp(&(
            &b.rubric_id,
            &b.criterion,
            b.cohort != "all",
            &b.cohort,
        ))
    });
    rows
}

pub fn checks(summary: &StageSummary, iv: Intervals) -> Vec<CheckStats> {
    let mut rows: Vec<CheckStats> = summary
        .checks
        .iter()
        .map(|c: &CheckSummary| CheckStats {
            cohort: cohort_name(&c.cohort),
            candidate: c.candidate.clone(),
            rubric_id: c.rubric_id.clone(),
            rubric_hash: c.rubric_hash.clone(),
            check: c.check.clone(),
            stable_pass_rate: stats::rate(c.stable_passed, c.stable.count),
            candidate_pass_rate: stats::rate(c.candidate_passed, c.candidate_scores.count),
            stable_n: c.stable.count,
            candidate_n: c.candidate_scores.count,
            difference: stats::difference(
                &c.paired,
                &c.candidate_scores,
                &c.stable,
                iv.alpha,
                iv.target_n,
            ),
            regressions: c.regressions,
            improvements: c.improvements,
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.rubric_id, &a.check, a.cohort != "all", &a.cohort).cmp(&(
            &b.rubric_id,
            &b.check,
            b.cohort != "all",
            &b.cohort,
        ))
    });
    rows
}

/// The A/A arm's pairs, criteria and checks (overall only: the noise floor is one figure).
pub fn aa(summary: &StageSummary, iv: Intervals) -> AaReport {
    let arm = StageSummary {
        scores: summary.aa.scores.clone(),
        checks: summary.aa.checks.clone(),
        ..StageSummary::default()
    };
    AaReport {
        pairs: summary.aa.pairs.get(&None).copied().unwrap_or(0),
        criteria: criteria(&arm, iv)
            .into_iter()
            .filter(|c| c.cohort == "all")
            .collect(),
        checks: checks(&arm, iv)
            .into_iter()
            .filter(|c| c.cohort == "all")
            .collect(),
    }
}

/// Abstentions over attempts per side (stable, candidate, pairwise), cohort `all`.
pub fn abstention_rates(summary: &StageSummary) -> [Option<f64>; 3] {
    let (mut abst, mut att) = ([0u64; 3], [0u64; 3]);
    for s in summary.scores.iter().filter(|s| s.cohort.is_none()) {
        abst[0] += s.stable_abstentions;
        att[0] += s.stable_abstentions + s.stable.count;
        abst[1] += s.candidate_abstentions;
        att[1] += s.candidate_abstentions + s.candidate_scores.count;
        abst[2] += s.pairwise_abstentions;
        att[2] += s.pairwise_abstentions + s.wins + s.ties + s.losses;
    }
    [0, 1, 2].map(|i| stats::rate(abst[i], att[i]))
}

/// Welch's t per pointwise criterion in cohort `all`; the Mann-Whitney fields are filled by the
/// builder, which fetches the samples.
pub fn welch_rows(summary: &StageSummary) -> Vec<(ReferenceRow, String)> {
    summary
        .scores
        .iter()
        .filter(|s| s.cohort.is_none() && !is_pairwise(s))
        .map(|s| {
            let w = stats::welch(&s.candidate_scores, &s.stable);
            (
                ReferenceRow {
                    rubric_id: s.rubric_id.clone(),
                    criterion: s.criterion.clone(),
                    welch_t: w.map(|w| w.0),
                    welch_df: w.map(|w| w.1),
                    welch_p: w.map(|w| w.2),
                    mann_whitney_u: None,
                    mann_whitney_p: None,
                    mann_whitney_n: (0, 0),
                    sampled: false,
                },
                s.rubric_hash.clone(),
            )
        })
        .collect()
}

/// Win/tie/loss of a criterion row, if pairwise (for renderers).
pub fn wtl_text(w: &WinTieLoss) -> String {
    format!("{}/{}/{}", w.wins, w.ties, w.losses)
}

/// The candidate's and stable's overall rows.
pub fn sides<'a>(
    variants: &'a [VariantSummary],
    candidate: &str,
) -> (Option<&'a VariantSummary>, Option<&'a VariantSummary>) {
    let c = variants
        .iter()
        .find(|v| v.cohort.is_none() && v.role == Role::Candidate && v.variant == candidate);
    let s = variants
        .iter()
        .find(|v| v.cohort.is_none() && v.role == Role::Stable);
    (c, s)
}

/// The sample-ratio check of a live stage: the distinct units each side served against the
/// configured candidate percentage (chi-square at `alpha`), with the served requests' own
/// chi-square beside it for information; not applicable to shadow stages or an unknown split.
pub fn sample_ratio(
    summary: &StageSummary,
    candidate: &str,
    mode: StageMode,
    configured: Option<f64>,
    alpha: f64,
) -> SampleRatio {
    let (c, s) = sides(&summary.variants, candidate);
    let served = |v: Option<&VariantSummary>| v.map_or(0, |v| v.served);
    let units = |v: Option<&VariantSummary>| v.map_or(0, |v| v.served_units);
    let share = configured.map(|p| p / 100.0);
    let mut out = SampleRatio {
        variants: vec![
            (candidate.to_owned(), units(c), share),
            (
                s.map_or_else(|| "stable".to_owned(), |s| s.variant.clone()),
                units(s),
                share.map(|x| 1.0 - x),
            ),
        ],
        requests: vec![served(c), served(s)],
        chi_square: None,
        p_value: None,
        request_chi_square: None,
        request_p_value: None,
        alpha,
        mismatch: None,
        note: String::new(),
    };
    out.note = match (mode, share) {
        (StageMode::Shadow, _) => {
            "not applicable: shadow stage (stable serves every client)".into()
        }
        (_, None) => "not applicable: configured split unknown (no ramp given)".into(),
        (_, Some(share)) if !(share > 0.0 && share < 1.0) => {
            "not applicable: the candidate serves everyone".into()
        }
        (_, Some(share)) => {
            if let Some((chi, p)) =
                stats::sample_ratio(&[served(c), served(s)], &[share, 1.0 - share])
            {
                out.request_chi_square = Some(chi);
                out.request_p_value = Some(p);
            }
            match stats::sample_ratio(&[units(c), units(s)], &[share, 1.0 - share]) {
                Some((chi, p)) => {
                    out.chi_square = Some(chi);
                    out.p_value = Some(p);
                    out.mismatch = Some(p < alpha);
                    if p < alpha {
                        "MISMATCH: the observed split differs from the configured one".to_owned()
                    } else {
                        "consistent with the configured split".to_owned()
                    }
                }
                None => "not applicable: no served units".into(),
            }
        }
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Moments, VariantSummary};

    #[test]
    fn criteria_split_pointwise_from_pairwise() {
        let mut point = ScoreSummary {
            criterion: "helpfulness".into(),
            ..ScoreSummary::default()
        };
        point.stable.add(4, 12.0, 38.0);
        point.candidate_scores.add(4, 10.0, 28.0);
        point.paired.add(4, -2.0, 2.0);
        point.candidate_abstentions = 1;
        let pair = ScoreSummary {
            criterion: "preference".into(),
            wins: 3,
            ties: 1,
            losses: 1,
            pairwise_abstentions: 1,
            ..ScoreSummary::default()
        };
        let summary = StageSummary {
            scores: vec![pair, point],
            ..StageSummary::default()
        };
        let rows = criteria(
            &summary,
            Intervals {
                alpha: 0.05,
                target_n: 1000.0,
            },
        );
        assert_eq!(rows[0].criterion, "helpfulness");
        let d = rows[0].difference.unwrap();
        assert_eq!(d.estimate, -0.5);
        assert!(rows[0].win_tie_loss.is_none());
        assert_eq!(rows[0].abstention_rate, Some(1.0 / 9.0));
        assert_eq!(rows[1].win_tie_loss.unwrap().win_rate, Some(0.7));
        assert!(rows[1].difference.is_none());
        assert_eq!(
            abstention_rates(&summary),
            [Some(0.0), Some(0.2), Some(1.0 / 6.0)]
        );
        assert_eq!(welch_rows(&summary).len(), 1);
    }

    #[test]
    fn variants_sort_stable_first_and_rate_errors() {
        let mut cand = VariantSummary {
            variant: "cand".into(),
            role: Role::Candidate,
            requests: 10,
            ..VariantSummary::default()
        };
        cand.errors.insert("timeout".into(), 2);
        cand.cost = Moments {
            count: 8,
            sum: 0.8,
            sum_sq: 0.08,
        };
        let stable = VariantSummary {
            variant: "stable".into(),
            role: Role::Stable,
            requests: 10,
            ..VariantSummary::default()
        };
        let rows = variants(&StageSummary {
            variants: vec![cand, stable],
            ..StageSummary::default()
        });
        assert_eq!(rows[0].role, "stable");
        assert_eq!(rows[1].error_rate, Some(0.2));
        assert!((rows[1].cost_per_request.unwrap() - 0.1).abs() < 1e-12);
    }
}
