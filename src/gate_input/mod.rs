//! `gate_input`: the one converter from the store's stage summaries to the gate's input, used
//! by the controller, `rollout status`, the admin API and the reports alike (so a report's
//! recomputed decision is the controller's). Pure: no I/O, no clock.
//!
//! A stage's excluded cohorts leave the data before the gate sees it (their rows are dropped and
//! their stable traffic is taken out of the overall row; see [`decide`]).
//!
//! A gate metric is found in the stage summary by its kind and name:
//! - `error_rate`: errors / requests per side (every observation, served or mirrored), with the
//!   per-unit sums so that the gate's inference runs over units (delta method), and — once the
//!   stage has paired requests (shadow mirrors, live pair samples) — the paired requests' error
//!   differences per unit beside them (`MetricData::WithPairs`: the gate intersects both);
//! - `latency_tail`: per unit and side, the successful requests slower than each of the two
//!   latency rungs (`capture::tail`) either side of stable's `quantile` (estimated from the
//!   histograms), so that the gate compares the two sides' shares over units, interpolated
//!   between the rungs with the weight that puts stable's share at 1 − q
//!   (`MetricData::Between`; and, once the stage has paired requests both sides answered, at
//!   each rung the same prompts' "slower than the rung" differences per unit,
//!   `MetricData::WithPairs`); before both sides have successes there,
//!   and for a metric whose name contains `ttft` (time to first token, from its histograms), the
//!   candidate's requests above stable's quantile, per request;
//! - `cost_ratio`: cost-per-request moments per side, with their per-unit sums;
//! - `mean`: a judge criterion or a deterministic check of that name (`criterion`, or
//!   `rubric_id.criterion`) — paired differences (with their sums per unit) when pairs were
//!   judged, two-sample otherwise;
//! - `win_rate`: the criterion's pairwise win/tie/loss counts.
//!
//! Scores of different rubric versions are never pooled: when a criterion was judged under
//! several rubric hashes, the version with the most paired data is used. Cohorts are `all` and
//! `key=value` per label value. In live stages the distinct units each side served give the
//! sample-ratio check (stable `1 − share`, candidate `share`; the served requests ride along for
//! information). Never: computes a statistic itself.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::capture::tail::{bracket, nearest_rung, rung_ms, upper_weight};
use crate::gate::sequential::{Count, JointRatio, Moments as GateMoments, UnitRatio};
use crate::gate::{
    Abstentions, Assigned, Assignment, Decision, GatePolicy, MetricData, MetricKind, StageContext,
    StageSummaries, evaluate,
};
use crate::rollout::ramp::{Exposure, Stage};
use crate::store::{JointMoments, Moments, StageSummary, UnitMoments, VariantSummary};
use crate::vocab::{Cohort, Role, cohort_name};

fn moments(m: &Moments) -> GateMoments {
    GateMoments {
        n: m.count,
        sum: m.sum,
        sum_sq: m.sum_sq,
    }
}

fn unit_ratio(m: &UnitMoments) -> UnitRatio {
    UnitRatio {
        units: m.units,
        sum_x: m.sum_x,
        sum_y: m.sum_y,
        sum_xx: m.sum_xx,
        sum_yy: m.sum_yy,
        sum_xy: m.sum_xy,
    }
}

fn joint_ratio(m: &JointMoments) -> JointRatio {
    JointRatio {
        units: m.units,
        candidate_units: m.candidate_units,
        stable_units: m.stable_units,
        sums: m.sums,
        products: m.products,
    }
}

/// Candidate and stable summaries merged per cohort.
#[derive(Default)]
struct Sides {
    candidate: VariantSummary,
    stable: VariantSummary,
}

fn merge(into: &mut VariantSummary, v: &VariantSummary) {
    if into.variant.is_empty() {
        into.variant.clone_from(&v.variant);
    }
    into.requests += v.requests;
    into.served += v.served;
    for (class, n) in &v.errors {
        *into.errors.entry(class.clone()).or_default() += n;
    }
    into.latency
        .add(v.latency.count, v.latency.sum, v.latency.sum_sq);
    into.ttft.add(v.ttft.count, v.ttft.sum, v.ttft.sum_sq);
    into.latency_histogram.merge(&v.latency_histogram);
    into.ttft_histogram.merge(&v.ttft_histogram);
    into.cost.add(v.cost.count, v.cost.sum, v.cost.sum_sq);
    into.units += v.units;
    into.served_units += v.served_units;
}

/// Matches `name` against a criterion (`criterion` or `rubric_id.criterion`).
fn named(name: &str, rubric: &str, item: &str) -> bool {
    name == item || name.strip_prefix(rubric).and_then(|r| r.strip_prefix('.')) == Some(item)
}

/// The gate's view of one stage. Also returns the judged pairs (the most pairs any criterion
/// or check was scored on, overall).
pub fn summaries(
    policy: &GatePolicy,
    exposure: Exposure,
    summary: &StageSummary,
) -> (StageSummaries, u64) {
    let mut sides: BTreeMap<Cohort, Sides> = BTreeMap::new();
    for v in &summary.variants {
        let s = sides.entry(v.cohort.clone()).or_default();
        match v.role {
            Role::Candidate => merge(&mut s.candidate, v),
            Role::Stable => merge(&mut s.stable, v),
        }
    }
    let mut out = StageSummaries::default();
    // Pairs first: once the stage has paired requests (a shadow stage's mirrors, a live
    // stage's pair samples), every cohort's error rate is also compared on them.
    let paired_stage = summary
        .paired_outcomes
        .iter()
        .any(|p| p.cohort.is_none() && p.pairs.count > 0);
    let paired_tail_stage = summary
        .paired_outcomes
        .iter()
        .any(|p| p.cohort.is_none() && p.latency_tail[0].pairs.count > 0);
    for m in &policy.metrics {
        for (cohort, s) in &sides {
            let units = summary.units.iter().find(|u| u.cohort == *cohort);
            let data = match &m.kind {
                MetricKind::ErrorRate { .. } => {
                    let candidate = Count::new(s.candidate.error_count(), s.candidate.requests);
                    let stable = Count::new(s.stable.error_count(), s.stable.requests);
                    let joint = units.map(|u| &u.errors);
                    let unpaired = if let Some(j) = joint.filter(|j| usable(j)) {
                        MetricData::UnitRates {
                            candidate,
                            stable,
                            units: joint_ratio(j),
                        }
                    } else {
                        MetricData::Proportions { candidate, stable }
                    };
                    Some(if paired_stage {
                        with_paired_errors(unpaired, summary, cohort)
                    } else {
                        unpaired
                    })
                }
                MetricKind::LatencyTail { quantile, .. } => {
                    let (c, st) = if m.name.contains("ttft") {
                        (&s.candidate.ttft_histogram, &s.stable.ttft_histogram)
                    } else {
                        (&s.candidate.latency_histogram, &s.stable.latency_histogram)
                    };
                    let stable_q = st.quantile(*quantile);
                    let ttft = m.name.contains("ttft");
                    stable_q.map(|q| {
                        let candidate_quantile = c.quantile(*quantile);
                        // Over units at the two rungs that bracket stable's quantile, once both
                        // sides have successes there, interpolated where stable's share is
                        // 1 − q; the request-level share above stable's quantile otherwise (and
                        // for time to first token, kept per request).
                        let at_rung = |r: usize| {
                            units
                                .map(|u| &u.latency_tail[r])
                                .filter(|j| usable(j))
                                .map(|j| {
                                    let unpaired = MetricData::UnitTail {
                                        candidate_above: Count::new(
                                            j.sums[0] as u64,
                                            j.sums[1] as u64,
                                        ),
                                        stable_above: Count::new(
                                            j.sums[2] as u64,
                                            j.sums[3] as u64,
                                        ),
                                        threshold_ms: rung_ms(r),
                                        stable_quantile: Some(q),
                                        candidate_quantile,
                                        units: joint_ratio(j),
                                    };
                                    let stable_share = share(j.sums[2], j.sums[3]);
                                    // Pairs first: the same prompts' latencies at the same rung.
                                    let data = if paired_tail_stage {
                                        with_paired_tail(unpaired, summary, cohort, r)
                                    } else {
                                        unpaired
                                    };
                                    (data, stable_share)
                                })
                        };
                        let bracket = bracket(q).filter(|_| !ttft);
                        let lower = bracket.and_then(|(lo, _)| at_rung(lo));
                        let upper = bracket.and_then(|(_, hi)| hi.and_then(at_rung));
                        match (lower, upper) {
                            (Some((lower, sl)), Some((upper, su))) => MetricData::Between {
                                lower: Box::new(lower),
                                upper: Box::new(upper),
                                upper_weight: upper_weight(sl, su, 1.0 - quantile),
                            },
                            (Some((one, _)), None) | (None, Some((one, _))) => one,
                            (None, None) => {
                                let unpaired = MetricData::Exceedance {
                                    candidate_above: Count::new(
                                        c.estimate_above(q).round() as u64,
                                        c.total(),
                                    ),
                                    stable_quantile: Some(q),
                                    candidate_quantile,
                                    candidate_units: None,
                                };
                                match nearest_rung(q).filter(|_| !ttft) {
                                    Some(r) if paired_tail_stage => {
                                        with_paired_tail(unpaired, summary, cohort, r)
                                    }
                                    _ => unpaired,
                                }
                            }
                        }
                    })
                }
                MetricKind::CostRatio { .. } => {
                    let candidate = moments(&s.candidate.cost);
                    let stable = moments(&s.stable.cost);
                    let joint = units.map(|u| &u.cost);
                    Some(if let Some(j) = joint.filter(|j| usable(j)) {
                        MetricData::UnitCost {
                            candidate,
                            stable,
                            units: joint_ratio(j),
                        }
                    } else {
                        MetricData::Cost { candidate, stable }
                    })
                }
                MetricKind::Mean { .. } | MetricKind::WinRate { .. } => None,
            };
            if let Some(data) = data {
                insert(&mut out, cohort, &m.name, data);
            }
        }
        match &m.kind {
            MetricKind::Mean { .. } => {
                let mut best: BTreeMap<Cohort, (u64, MetricData)> = BTreeMap::new();
                let mut offer = |cohort: &Cohort,
                                 paired: &Moments,
                                 units: &UnitMoments,
                                 c: &Moments,
                                 s: &Moments| {
                    let data = if paired.count > 0 && units.units > 0 {
                        MetricData::PairedUnits {
                            pairs: moments(paired),
                            units: unit_ratio(units),
                        }
                    } else if paired.count > 0 {
                        MetricData::Paired(moments(paired))
                    } else {
                        MetricData::TwoSample {
                            candidate: moments(c),
                            stable: moments(s),
                        }
                    };
                    let weight = paired.count.max(c.count.min(s.count));
                    if best.get(cohort).is_none_or(|(w, _)| weight > *w) {
                        best.insert(cohort.clone(), (weight, data));
                    }
                };
                for sc in summary
                    .scores
                    .iter()
                    .filter(|sc| named(&m.name, &sc.rubric_id, &sc.criterion))
                {
                    offer(
                        &sc.cohort,
                        &sc.paired,
                        &sc.paired_units,
                        &sc.candidate_scores,
                        &sc.stable,
                    );
                }
                for ck in summary
                    .checks
                    .iter()
                    .filter(|ck| named(&m.name, &ck.rubric_id, &ck.check))
                {
                    offer(
                        &ck.cohort,
                        &ck.paired,
                        &ck.paired_units,
                        &ck.candidate_scores,
                        &ck.stable,
                    );
                }
                for (cohort, (_, data)) in best {
                    insert(&mut out, &cohort, &m.name, data);
                }
            }
            MetricKind::WinRate { .. } => {
                let mut best: BTreeMap<Cohort, (u64, MetricData)> = BTreeMap::new();
                for sc in summary
                    .scores
                    .iter()
                    .filter(|sc| named(&m.name, &sc.rubric_id, &sc.criterion))
                {
                    let n = sc.wins + sc.ties + sc.losses;
                    if n > 0 && best.get(&sc.cohort).is_none_or(|(w, _)| n > *w) {
                        let data = MetricData::WinTieLoss {
                            wins: sc.wins,
                            ties: sc.ties,
                            losses: sc.losses,
                        };
                        best.insert(sc.cohort.clone(), (n, data));
                    }
                }
                for (cohort, (_, data)) in best {
                    insert(&mut out, &cohort, &m.name, data);
                }
            }
            _ => {}
        }
    }
    if let (Exposure::Live { share }, Some(all)) = (exposure, sides.get(&None))
        && share < 1.0
    {
        // Units when the store counted them (a summary without unit keys counts requests).
        let counted = all.stable.served_units + all.candidate.served_units > 0;
        let units = |v: &VariantSummary| if counted { v.served_units } else { v.served };
        let side = |v: &VariantSummary, share: f64| Assigned {
            variant: v.variant.clone(),
            units: units(v),
            requests: v.served,
            share,
        };
        out.assignment = Some(Assignment {
            candidate: side(&all.candidate, share),
            stable: side(&all.stable, 1.0 - share),
        });
    }
    let mut abstained: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for sc in summary.scores.iter().filter(|sc| sc.cohort.is_none()) {
        let st = abstained.entry("stable").or_default();
        st.0 += sc.stable_abstentions;
        st.1 += sc.stable_abstentions + sc.stable.count;
        let c = abstained.entry("candidate").or_default();
        c.0 += sc.candidate_abstentions;
        c.1 += sc.candidate_abstentions + sc.candidate_scores.count;
    }
    out.abstentions = abstained
        .into_iter()
        .map(|(variant, (abstained, attempts))| Abstentions {
            variant: variant.to_owned(),
            abstained,
            attempts,
        })
        .collect();
    let judged = summary
        .scores
        .iter()
        .filter(|s| s.cohort.is_none())
        .map(|s| s.paired.count)
        .chain(
            summary
                .checks
                .iter()
                .filter(|c| c.cohort.is_none())
                .map(|c| c.paired.count),
        )
        .max()
        .unwrap_or(0);
    (out, judged)
}

/// An error rate's two-sample data with the cohort's paired error differences (candidates
/// pooled, as the two-sample side pools them).
fn with_paired_errors(unpaired: MetricData, summary: &StageSummary, cohort: &Cohort) -> MetricData {
    let (mut pairs, mut units) = (GateMoments::default(), UnitRatio::default());
    for p in summary
        .paired_outcomes
        .iter()
        .filter(|p| p.cohort == *cohort)
    {
        pairs.merge(&moments(&p.pairs));
        units.merge(&unit_ratio(&p.units));
    }
    MetricData::WithPairs {
        unpaired: Box::new(unpaired),
        pairs,
        units,
    }
}

/// A latency tail with the paired requests' differences at rung `rung` beside it (the pairs both
/// sides answered, every candidate's pooled).
fn with_paired_tail(
    unpaired: MetricData,
    summary: &StageSummary,
    cohort: &Cohort,
    rung: usize,
) -> MetricData {
    let (mut pairs, mut units) = (GateMoments::default(), UnitRatio::default());
    for p in summary
        .paired_outcomes
        .iter()
        .filter(|p| p.cohort == *cohort)
    {
        let t = &p.latency_tail[rung];
        pairs.merge(&moments(&t.pairs));
        units.merge(&unit_ratio(&t.units));
    }
    MetricData::WithPairs {
        unpaired: Box::new(unpaired),
        pairs,
        units,
    }
}

/// `above / total`, 0 without requests.
fn share(above: f64, total: f64) -> f64 {
    if total > 0.0 { above / total } else { 0.0 }
}

/// Per-unit data is used when both sides have units (a summary without unit keys falls back to
/// the request-level view).
fn usable(j: &JointMoments) -> bool {
    j.candidate_units > 0 && j.stable_units > 0
}

fn insert(out: &mut StageSummaries, cohort: &Cohort, metric: &str, data: MetricData) {
    out.cohorts
        .entry(cohort_name(cohort))
        .or_default()
        .insert(metric.to_owned(), data);
}

/// The summary of a stage that keeps `excluded` cohorts out of the candidate: their rows are
/// dropped (the candidate has no data there, so they could only block promotion), and their
/// stable requests, errors, served counts, latency and time-to-first-token (moments and
/// histograms), tokens and cost are taken out of the overall (`all`) stable row, so that the
/// overall error rate, latency tail, cost and the sample-ratio check compare the traffic the
/// candidate was eligible for. (An observation in two excluded cohorts of different labels is
/// taken out twice: the store aggregates one label at a time.)
fn without_cohorts(summary: &StageSummary, excluded: &[(String, String)]) -> StageSummary {
    let is_excluded = |c: &Cohort| c.as_ref().is_some_and(|kv| excluded.contains(kv));
    let mut out = StageSummary {
        variants: Vec::new(),
        pairs: summary
            .pairs
            .iter()
            .filter(|((c, _), _)| !is_excluded(c))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        scores: summary
            .scores
            .iter()
            .filter(|s| !is_excluded(&s.cohort))
            .cloned()
            .collect(),
        checks: summary
            .checks
            .iter()
            .filter(|s| !is_excluded(&s.cohort))
            .cloned()
            .collect(),
        aa: summary.aa.clone(),
        units: Vec::new(),
        paired_outcomes: summary
            .paired_outcomes
            .iter()
            .filter(|p| !is_excluded(&p.cohort))
            .cloned()
            .collect(),
    };
    // Units of excluded cohorts leave the overall comparison as their stable traffic does.
    let removed_units: Vec<_> = summary
        .units
        .iter()
        .filter(|u| is_excluded(&u.cohort))
        .collect();
    for u in summary.units.iter().filter(|u| !is_excluded(&u.cohort)) {
        let mut u = u.clone();
        if u.cohort.is_none() {
            for r in &removed_units {
                u.subtract(r);
            }
        }
        out.units.push(u);
    }
    let removed: Vec<&VariantSummary> = summary
        .variants
        .iter()
        .filter(|v| is_excluded(&v.cohort) && v.role == Role::Stable)
        .collect();
    for v in summary.variants.iter().filter(|v| !is_excluded(&v.cohort)) {
        let mut v = v.clone();
        if v.cohort.is_none() && v.role == Role::Stable {
            for r in removed.iter().filter(|r| r.variant == v.variant) {
                v.requests = v.requests.saturating_sub(r.requests);
                v.served = v.served.saturating_sub(r.served);
                for (class, n) in &r.errors {
                    if let Some(e) = v.errors.get_mut(class) {
                        *e = e.saturating_sub(*n);
                    }
                }
                v.latency.subtract(&r.latency);
                v.ttft.subtract(&r.ttft);
                v.latency_histogram.subtract(&r.latency_histogram);
                v.ttft_histogram.subtract(&r.ttft_histogram);
                v.prompt_tokens = v.prompt_tokens.saturating_sub(r.prompt_tokens);
                v.completion_tokens = v.completion_tokens.saturating_sub(r.completion_tokens);
                v.cost.subtract(&r.cost);
                v.units = v.units.saturating_sub(r.units);
                v.served_units = v.served_units.saturating_sub(r.served_units);
            }
        }
        out.variants.push(v);
    }
    out
}

/// Converts and evaluates: the gate's decision on one stage after `elapsed` (paused time
/// excluded).
pub fn decide(
    policy: &GatePolicy,
    stage: &Stage,
    elapsed: Duration,
    summary: &StageSummary,
) -> Decision {
    let eligible;
    let summary = if stage.exclude_cohorts.is_empty() {
        summary
    } else {
        eligible = without_cohorts(summary, &stage.exclude_cohorts);
        &eligible
    };
    let (data, judged_pairs) = summaries(policy, stage.exposure, summary);
    let ctx = StageContext {
        elapsed,
        judged_pairs,
        min_duration: stage.min_duration,
        min_judged_pairs: stage.min_judged_pairs,
    };
    evaluate(policy, &ctx, &data)
}

#[cfg(test)]
mod tests;
