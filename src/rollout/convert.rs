//! Store aggregates → the gate's sufficient statistics. Pure.
//!
//! A gate metric is found in the stage summary by its kind and name:
//! - `error_rate`: errors / requests per side (every observation, served or mirrored);
//! - `latency_tail`: candidate requests above stable's `quantile`, estimated from the latency
//!   histograms (from the time-to-first-token histograms when the metric's name contains
//!   `ttft`);
//! - `cost_ratio`: cost-per-request moments per side;
//! - `mean`: a judge criterion or a deterministic check of that name (`criterion`, or
//!   `rubric_id.criterion`) — paired differences when pairs were judged, two-sample otherwise;
//! - `win_rate`: the criterion's pairwise win/tie/loss counts.
//!
//! Scores of different rubric versions are never pooled: when a criterion was judged under
//! several rubric hashes, the version with the most paired data is used. Cohorts are `all` and
//! `key=value` per label value. In live stages the served counts give the sample-ratio check
//! (stable `1 − share`, candidate `share`). Never: computes a statistic itself.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Exposure, Stage};
use crate::gate::sequential::{Count, Moments as GateMoments};
use crate::gate::{
    Abstentions, Assignment, Decision, GatePolicy, MetricData, MetricKind, StageContext,
    StageSummaries, evaluate,
};
use crate::store::{Moments, StageSummary, VariantSummary};

type Cohort = Option<(String, String)>;

/// `all` or `key=value`.
pub fn cohort_name(cohort: &Cohort) -> String {
    match cohort {
        None => "all".to_owned(),
        Some((k, v)) => format!("{k}={v}"),
    }
}

fn moments(m: &Moments) -> GateMoments {
    GateMoments {
        n: m.count,
        sum: m.sum,
        sum_sq: m.sum_sq,
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
        match v.role.as_str() {
            "candidate" => merge(&mut s.candidate, v),
            _ => merge(&mut s.stable, v),
        }
    }
    let mut out = StageSummaries::default();
    for m in &policy.metrics {
        for (cohort, s) in &sides {
            let data = match &m.kind {
                MetricKind::ErrorRate { .. } => Some(MetricData::Proportions {
                    candidate: Count::new(s.candidate.error_count(), s.candidate.requests),
                    stable: Count::new(s.stable.error_count(), s.stable.requests),
                }),
                MetricKind::LatencyTail { quantile, .. } => {
                    let (c, st) = if m.name.contains("ttft") {
                        (&s.candidate.ttft_histogram, &s.stable.ttft_histogram)
                    } else {
                        (&s.candidate.latency_histogram, &s.stable.latency_histogram)
                    };
                    let stable_q = st.quantile(*quantile);
                    stable_q.map(|q| MetricData::Exceedance {
                        candidate_above: Count::new(c.estimate_above(q).round() as u64, c.total()),
                        stable_quantile: Some(q),
                        candidate_quantile: c.quantile(*quantile),
                    })
                }
                MetricKind::CostRatio { .. } => Some(MetricData::Cost {
                    candidate: moments(&s.candidate.cost),
                    stable: moments(&s.stable.cost),
                }),
                MetricKind::Mean { .. } | MetricKind::WinRate { .. } => None,
            };
            if let Some(data) = data {
                insert(&mut out, cohort, &m.name, data);
            }
        }
        match &m.kind {
            MetricKind::Mean { .. } => {
                let mut best: BTreeMap<Cohort, (u64, MetricData)> = BTreeMap::new();
                let mut offer = |cohort: &Cohort, paired: &Moments, c: &Moments, s: &Moments| {
                    let data = if paired.count > 0 {
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
                    offer(&sc.cohort, &sc.paired, &sc.candidate_scores, &sc.stable);
                }
                for ck in summary
                    .checks
                    .iter()
                    .filter(|ck| named(&m.name, &ck.rubric_id, &ck.check))
                {
                    offer(&ck.cohort, &ck.paired, &ck.candidate_scores, &ck.stable);
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
        out.assignment = Some(Assignment {
            variants: vec![
                (all.stable.variant.clone(), all.stable.served, 1.0 - share),
                (all.candidate.variant.clone(), all.candidate.served, share),
            ],
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
    };
    let removed: Vec<&VariantSummary> = summary
        .variants
        .iter()
        .filter(|v| is_excluded(&v.cohort) && v.role != "candidate")
        .collect();
    for v in summary.variants.iter().filter(|v| !is_excluded(&v.cohort)) {
        let mut v = v.clone();
        if v.cohort.is_none() && v.role != "candidate" {
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
mod tests {
    use super::*;
    use crate::gate::{Action, Direction, MetricPolicy};
    use crate::rollout::OnTimeout;
    use crate::store::ScoreSummary;

    fn variant(cohort: Cohort, role: &str, requests: u64, errors: u64) -> VariantSummary {
        let mut v = VariantSummary {
            cohort,
            variant: role.to_owned(),
            role: role.to_owned(),
            requests,
            served: requests,
            ..VariantSummary::default()
        };
        if errors > 0 {
            v.errors.insert("upstream_5xx".into(), errors);
        }
        v
    }

    fn policy(metrics: Vec<MetricPolicy>) -> GatePolicy {
        GatePolicy::with_metrics(metrics)
    }

    fn metric(name: &str, kind: MetricKind) -> MetricPolicy {
        MetricPolicy {
            name: name.into(),
            kind,
        }
    }

    #[test]
    fn error_counts_per_role_and_cohort_and_srm_shares() {
        let tier = Some(("tier".to_owned(), "free".to_owned()));
        let summary = StageSummary {
            variants: vec![
                variant(None, "stable", 900, 9),
                variant(None, "candidate", 100, 30),
                variant(tier.clone(), "stable", 90, 1),
                variant(tier, "candidate", 10, 5),
            ],
            ..StageSummary::default()
        };
        let p = policy(vec![metric(
            "error_rate",
            MetricKind::ErrorRate {
                margin: 0.02,
                ceiling: 0.1,
            },
        )]);
        let (s, judged) = summaries(&p, Exposure::Live { share: 0.1 }, &summary);
        assert_eq!(judged, 0);
        assert_eq!(
            s.cohorts["all"]["error_rate"],
            MetricData::Proportions {
                candidate: Count::new(30, 100),
                stable: Count::new(9, 900)
            }
        );
        assert_eq!(
            s.cohorts["tier=free"]["error_rate"],
            MetricData::Proportions {
                candidate: Count::new(5, 10),
                stable: Count::new(1, 90)
            }
        );
        let a = s.assignment.unwrap();
        assert_eq!(a.variants[0], ("stable".into(), 900, 0.9));
        assert_eq!(a.variants[1], ("candidate".into(), 100, 0.1));
        // In shadow there is no served split to check.
        let (s, _) = summaries(&p, Exposure::Shadow { sample_rate: 0.2 }, &summary);
        assert!(s.assignment.is_none());
    }

    #[test]
    fn scores_prefer_pairs_and_never_pool_rubric_versions() {
        let m = |count, sum, sum_sq| Moments { count, sum, sum_sq };
        let old = ScoreSummary {
            rubric_id: "support".into(),
            rubric_hash: "h1".into(),
            criterion: "helpfulness".into(),
            paired: m(10, -1.0, 3.0),
            candidate_abstentions: 2,
            candidate_scores: m(10, 40.0, 170.0),
            ..ScoreSummary::default()
        };
        let new = ScoreSummary {
            rubric_hash: "h2".into(),
            paired: m(50, -5.0, 20.0),
            wins: 20,
            ties: 10,
            losses: 20,
            ..old.clone()
        };
        let summary = StageSummary {
            scores: vec![old, new],
            ..StageSummary::default()
        };
        let p = policy(vec![
            metric(
                "support.helpfulness",
                MetricKind::Mean {
                    direction: Direction::HigherIsBetter,
                    margin: 0.2,
                },
            ),
            metric("helpfulness", MetricKind::WinRate { margin: 0.05 }),
        ]);
        let (s, judged) = summaries(&p, Exposure::Shadow { sample_rate: 1.0 }, &summary);
        assert_eq!(judged, 50);
        assert_eq!(
            s.cohorts["all"]["support.helpfulness"],
            MetricData::Paired(GateMoments {
                n: 50,
                sum: -5.0,
                sum_sq: 20.0
            })
        );
        assert_eq!(
            s.cohorts["all"]["helpfulness"],
            MetricData::WinTieLoss {
                wins: 20,
                ties: 10,
                losses: 20
            }
        );
        let cand = s.abstentions.iter().find(|a| a.variant == "candidate");
        assert_eq!(cand.map(|a| (a.abstained, a.attempts)), Some((4, 24)));
    }

    #[test]
    fn latency_tail_counts_candidate_requests_above_stable_quantile() {
        let mut stable = variant(None, "stable", 100, 0);
        let mut cand = variant(None, "candidate", 100, 0);
        for i in 1..=100 {
            stable.latency_histogram.record(f64::from(i));
            cand.latency_histogram.record(f64::from(i) * 10.0);
        }
        let summary = StageSummary {
            variants: vec![stable.clone(), cand],
            ..StageSummary::default()
        };
        let p = policy(vec![metric(
            "latency_p95",
            MetricKind::LatencyTail {
                quantile: 0.95,
                margin: 0.05,
            },
        )]);
        let (s, _) = summaries(&p, Exposure::Shadow { sample_rate: 1.0 }, &summary);
        let MetricData::Exceedance {
            candidate_above,
            stable_quantile,
            ..
        } = &s.cohorts["all"]["latency_p95"]
        else {
            panic!("{s:?}")
        };
        let q = stable_quantile.unwrap();
        assert!((95.0..=100.0).contains(&q), "stable p95 {q}");
        // Candidate values 10·i above ~96 ms: i ≥ 10, i.e. 91 of 100.
        assert!(
            (90..=92).contains(&candidate_above.hits),
            "{candidate_above:?}"
        );
        assert_eq!(candidate_above.n, 100);

        // A candidate with 30% errors against 1% is rolled back by the real gate.
        let summary = StageSummary {
            variants: vec![
                variant(None, "stable", 1000, 10),
                variant(None, "candidate", 1000, 300),
            ],
            ..StageSummary::default()
        };
        let p = policy(vec![metric(
            "error_rate",
            MetricKind::ErrorRate {
                margin: 0.02,
                ceiling: 0.5,
            },
        )]);
        let stage = Stage {
            exposure: Exposure::Shadow { sample_rate: 1.0 },
            min_duration: Duration::ZERO,
            min_judged_pairs: 0,
            max_duration: Duration::from_secs(60),
            on_timeout: OnTimeout::HoldAndAlert,
            exclude_cohorts: Vec::new(),
        };
        let d = decide(&p, &stage, Duration::from_secs(1), &summary);
        assert_eq!(d.action, Action::Rollback, "{d:?}");
    }

    /// A stage at 10% that keeps `tier=enterprise` (20% of traffic) on stable: the candidate
    /// serves 10% of the other 80%. Counted over all traffic that is a sample-ratio mismatch
    /// (800 of 10,000 against 10%) that would block promotion forever, and the enterprise cohort,
    /// where the candidate has no data, would too. Over eligible traffic the split is right.
    #[test]
    fn excluded_cohorts_leave_the_gate_and_the_sample_ratio_check() {
        let enterprise = Some(("tier".to_owned(), "enterprise".to_owned()));
        let summary = StageSummary {
            variants: vec![
                variant(None, "stable", 9_200, 100),
                variant(None, "candidate", 800, 8),
                variant(enterprise.clone(), "stable", 2_000, 80),
            ],
            ..StageSummary::default()
        };
        let p = policy(vec![metric(
            "error_rate",
            MetricKind::ErrorRate {
                margin: 0.05,
                ceiling: 0.5,
            },
        )]);
        let mut stage = Stage {
            exposure: Exposure::Live { share: 0.1 },
            min_duration: Duration::ZERO,
            min_judged_pairs: 0,
            max_duration: Duration::from_secs(3600),
            on_timeout: OnTimeout::HoldAndAlert,
            exclude_cohorts: Vec::new(),
        };
        let blocked = |d: &Decision| {
            d.evidence
                .iter()
                .filter(|e| {
                    e.verdict != crate::gate::Verdict::NonInferior
                        && e.verdict != crate::gate::Verdict::Passed
                })
                .map(|e| format!("{}/{}", e.metric, e.cohort))
                .collect::<Vec<_>>()
        };
        let d = decide(&p, &stage, Duration::from_secs(1), &summary);
        let b = blocked(&d);
        assert!(b.contains(&"sample_ratio/all".to_owned()), "{b:?}");
        assert!(
            b.contains(&"error_rate/tier=enterprise".to_owned()),
            "{b:?}"
        );

        stage.exclude_cohorts = vec![("tier".into(), "enterprise".into())];
        let d = decide(&p, &stage, Duration::from_secs(1), &summary);
        assert_eq!(blocked(&d), Vec::<String>::new(), "{d:?}");
        assert_eq!(d.action, Action::Promote, "{}", d.reason);
        let eligible = without_cohorts(&summary, &stage.exclude_cohorts);
        assert_eq!(eligible.variants.len(), 2);
        let stable = &eligible.variants[0];
        assert_eq!(
            (stable.requests, stable.served, stable.error_count()),
            (7_200, 7_200, 20)
        );
    }

    /// Enterprise requests (kept on stable) are slow. A candidate slower than the stable traffic
    /// it replaces must not hide behind them: the latency tail compares eligible traffic.
    #[test]
    fn excluded_cohorts_leave_stable_latency_too() {
        let enterprise = Some(("tier".to_owned(), "enterprise".to_owned()));
        let timed = |cohort: &Cohort, role: &str, n: u64, ms: f64| {
            let mut v = variant(cohort.clone(), role, n, 0);
            for _ in 0..n {
                v.latency_histogram.record(ms);
            }
            v.latency.add(n, ms * n as f64, ms * ms * n as f64);
            v
        };
        // Stable: 8,000 eligible requests at 100 ms and 2,000 enterprise ones at 2 s; the
        // candidate: 900 requests at 300 ms (10% of eligible traffic).
        let mut stable = timed(&None, "stable", 8_000, 100.0);
        let slow = timed(&enterprise, "stable", 2_000, 2_000.0);
        stable.requests += slow.requests;
        stable.served += slow.served;
        stable.latency_histogram.merge(&slow.latency_histogram);
        stable
            .latency
            .add(slow.latency.count, slow.latency.sum, slow.latency.sum_sq);
        let summary = StageSummary {
            variants: vec![stable, timed(&None, "candidate", 900, 300.0), slow],
            ..StageSummary::default()
        };
        let p = policy(vec![metric(
            "latency_p90",
            MetricKind::LatencyTail {
                quantile: 0.9,
                margin: 0.05,
            },
        )]);
        let stage = Stage {
            exposure: Exposure::Live { share: 0.1 },
            min_duration: Duration::ZERO,
            min_judged_pairs: 0,
            max_duration: Duration::from_secs(3600),
            on_timeout: OnTimeout::HoldAndAlert,
            exclude_cohorts: vec![("tier".into(), "enterprise".into())],
        };
        let eligible = without_cohorts(&summary, &stage.exclude_cohorts);
        let stable = &eligible.variants[0];
        assert_eq!(stable.latency.count, 8_000);
        assert!((stable.latency.mean().unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(stable.latency_histogram.total(), 8_000);
        assert!(stable.latency_histogram.quantile(0.9).unwrap() < 200.0);
        let d = decide(&p, &stage, Duration::from_secs(1), &summary);
        assert_eq!(d.action, Action::Rollback, "{}", d.reason);
        assert!(d.reason.contains("latency_p90"), "{}", d.reason);
    }
}
