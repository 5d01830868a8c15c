//! Unit tests of `evaluate`: each rule of the decision, on hand-built summaries.

use std::collections::BTreeMap;
use std::time::Duration;

use super::sequential::{Count, Moments, UnitRatio, one_sample_cs, two_sample_cs, unit_cs};
use super::*;

fn policy() -> GatePolicy {
    GatePolicy::with_metrics(vec![
        MetricPolicy {
            name: "quality".into(),
            kind: MetricKind::Mean {
                direction: Direction::HigherIsBetter,
                margin: 0.15,
            },
            rollback_margin: None,
        },
        MetricPolicy {
            name: "errors".into(),
            kind: MetricKind::ErrorRate {
                margin: 0.03,
                ceiling: 0.10,
            },
            rollback_margin: None,
        },
    ])
}

fn ready() -> StageContext {
    StageContext {
        elapsed: Duration::from_secs(600),
        judged_pairs: 5000,
        min_duration: Duration::from_secs(300),
        min_judged_pairs: 500,
    }
}

/// Paired differences with the given mean and a standard deviation of exactly 1 (n even).
fn paired(n: u64, mean: f64) -> MetricData {
    let xs: Vec<f64> = (0..n)
        .map(|i| mean + if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    MetricData::Paired(Moments::from_values(&xs))
}

fn errors(c: u64, s: u64, n: u64) -> MetricData {
    MetricData::Proportions {
        candidate: Count::new(c, n),
        stable: Count::new(s, n),
    }
}

fn summaries(cohorts: &[(&str, MetricData, MetricData)]) -> StageSummaries {
    let mut s = StageSummaries::default();
    for (name, q, e) in cohorts {
        let mut m = BTreeMap::new();
        m.insert("quality".to_owned(), q.clone());
        m.insert("errors".to_owned(), e.clone());
        s.cohorts.insert((*name).to_owned(), m);
    }
    s
}

#[test]
fn promotes_when_every_cell_is_non_inferior_and_the_stage_is_ready() {
    let s = summaries(&[
        ("all", paired(4000, 0.0), errors(80, 80, 4000)),
        ("tier=enterprise", paired(2000, 0.0), errors(40, 40, 2000)),
    ]);
    let d = evaluate(&policy(), &ready(), &s);
    assert_eq!(d.action, Action::Promote, "{}", d.reason);
    assert_eq!(d.evidence.len(), 4);
    assert!(d.evidence.iter().all(|e| e.verdict == Verdict::NonInferior));
    // The same data in a stage that is too young holds, and says why.
    let young = StageContext {
        elapsed: Duration::from_secs(100),
        ..ready()
    };
    let d = evaluate(&policy(), &young, &s);
    assert_eq!(d.action, Action::Hold);
    assert!(d.reason.contains("minimum 300s"), "{}", d.reason);
    let few = StageContext {
        judged_pairs: 10,
        ..ready()
    };
    assert!(evaluate(&policy(), &few, &s).reason.contains("10 of 500"));
}

#[test]
fn evidence_interval_is_the_bonferroni_split_sequence() {
    let s = summaries(&[
        ("all", paired(1000, -0.05), errors(20, 20, 1000)),
        ("tier=x", paired(100, 0.0), errors(2, 2, 100)),
    ]);
    let p = policy();
    let d = evaluate(&p, &ready(), &s);
    let e = &d.evidence[0]; // cohort "all" first, metrics in policy order
    assert_eq!((e.metric.as_str(), e.cohort.as_str()), ("quality", "all"));
    assert!((e.alpha - 0.05 / 4.0).abs() < 1e-15);
    let MetricData::Paired(m) = paired(1000, -0.05) else {
        unreachable!()
    };
    let iv = one_sample_cs(&m.stats().unwrap(), 0.05 / 4.0, 1000.0);
    assert_eq!(e.interval, Some((iv.lo, iv.hi)));
    assert_eq!(e.bound, -0.15);
    assert_eq!(e.method, Method::PairedCs);
    // Error rates: two-sample on the smoothed rates.
    let e = &d.evidence[1];
    assert_eq!(e.metric, "errors");
    let c = Count::new(20, 1000).stats().unwrap();
    let iv = two_sample_cs(&c, &c, 0.05 / 4.0, 1000.0);
    assert_eq!(e.interval, Some((iv.lo, iv.hi)));
}

#[test]
fn a_regression_in_one_cohort_rolls_back_although_the_mean_is_fine() {
    let s = summaries(&[
        ("all", paired(4000, -0.1), errors(80, 80, 4000)),
        ("tier=enterprise", paired(400, -1.0), errors(8, 8, 400)),
        ("tier=standard", paired(3600, 0.0), errors(72, 72, 3600)),
    ]);
    let d = evaluate(&policy(), &ready(), &s);
    assert_eq!(d.action, Action::Rollback, "{}", d.reason);
    assert!(
        d.reason.contains("quality in cohort tier=enterprise"),
        "{}",
        d.reason
    );
    let worst = d
        .evidence
        .iter()
        .find(|e| e.verdict == Verdict::Worse)
        .unwrap();
    assert!(worst.interval.unwrap().1 < -0.15);
    // The overall cell on its own would not roll back.
    let all = d
        .evidence
        .iter()
        .find(|e| e.cohort == "all" && e.metric == "quality")
        .unwrap();
    assert_ne!(all.verdict, Verdict::Worse);
}

#[test]
fn error_ceiling_rolls_back_and_small_cells_draw_no_verdict() {
    let s = summaries(&[("all", paired(2000, 0.0), errors(400, 380, 2000))]);
    let d = evaluate(&policy(), &ready(), &s);
    assert_eq!(d.action, Action::Rollback, "{}", d.reason);
    let e = d
        .evidence
        .iter()
        .find(|e| e.verdict == Verdict::Worse)
        .unwrap();
    assert_eq!(e.method, Method::Ceiling);
    // Below min_samples even a terrible cell only holds.
    let s = summaries(&[("all", paired(20, -3.0), errors(10, 0, 20))]);
    let d = evaluate(&policy(), &ready(), &s);
    assert_eq!(d.action, Action::Hold);
    assert!(
        d.evidence
            .iter()
            .all(|e| e.verdict == Verdict::InsufficientData)
    );
}

#[test]
fn missing_or_mismatched_data_blocks_promotion() {
    let mut s = summaries(&[("all", paired(4000, 0.0), errors(80, 80, 4000))]);
    s.cohorts.get_mut("all").unwrap().remove("errors");
    let d = evaluate(&policy(), &ready(), &s);
    assert_eq!(d.action, Action::Hold);
    assert!(
        d.reason.contains("errors/all: insufficient_data"),
        "{}",
        d.reason
    );
    let s = summaries(&[(
        "all",
        errors(1, 1, 4000),
        MetricData::WinTieLoss {
            wins: 1,
            ties: 1,
            losses: 1,
        },
    )]);
    let d = evaluate(&policy(), &ready(), &s);
    assert_eq!(d.action, Action::Hold);
    assert!(d.evidence.iter().any(|e| e.verdict == Verdict::Invalid));
    // No cohorts at all: nothing is shown, so nothing is promoted.
    let d = evaluate(&policy(), &ready(), &StageSummaries::default());
    assert_eq!(d.action, Action::Hold);
    assert_eq!(d.evidence.len(), 2);
}

#[test]
fn sample_ratio_mismatch_blocks_promotion_and_alerts() {
    let mut s = summaries(&[("all", paired(4000, 0.0), errors(80, 80, 4000))]);
    s.assignment = Some(Assignment {
        candidate: Assigned::new("candidate", 1150, 1150, 0.1),
        stable: Assigned::new("stable", 8850, 8850, 0.9),
    });
    let d = evaluate(&policy(), &ready(), &s);
    assert_eq!(d.action, Action::Hold, "{}", d.reason);
    assert_eq!(d.alerts.len(), 1);
    assert_eq!(d.alerts[0].kind, AlertKind::SampleRatioMismatch);
    // 1 020 / 8 980 is within chance at α = 0.001 (χ² = 0.444).
    s.assignment = Some(Assignment {
        candidate: Assigned::new("candidate", 1020, 1020, 0.1),
        stable: Assigned::new("stable", 8980, 8980, 0.9),
    });
    let d = evaluate(&policy(), &ready(), &s);
    assert_eq!(d.action, Action::Promote, "{}", d.reason);
    assert!(d.alerts.is_empty());
}

#[test]
fn judge_abstentions_above_threshold_block_promotion() {
    let mut s = summaries(&[("all", paired(4000, 0.0), errors(80, 80, 4000))]);
    s.abstentions = vec![
        Abstentions {
            variant: "stable".into(),
            abstained: 10,
            attempts: 1000,
        },
        Abstentions {
            variant: "candidate".into(),
            abstained: 150,
            attempts: 1000,
        },
    ];
    let d = evaluate(&policy(), &ready(), &s);
    assert_eq!(d.action, Action::Hold);
    assert!(
        d.reason.contains("judge_abstention:candidate"),
        "{}",
        d.reason
    );
}

#[test]
fn latency_tail_cost_and_win_rate_cells() {
    let p = GatePolicy::with_metrics(vec![
        MetricPolicy {
            name: "latency_p95".into(),
            kind: MetricKind::LatencyTail {
                quantile: 0.95,
                margin: 0.05,
            },
            rollback_margin: None,
        },
        MetricPolicy {
            name: "cost".into(),
            kind: MetricKind::CostRatio { budget: 1.2 },
            rollback_margin: None,
        },
        MetricPolicy {
            name: "pref".into(),
            kind: MetricKind::WinRate { margin: 0.05 },
            rollback_margin: None,
        },
    ]);
    let cost = |c: f64| {
        let xs: Vec<f64> = (0..2000)
            .map(|i| c * (1.0 + 0.1 * ((i % 3) as f64 - 1.0)))
            .collect();
        Moments::from_values(&xs)
    };
    let cohort = |above: u64, cand_cost: f64, wins: u64, losses: u64| {
        let mut m = BTreeMap::new();
        m.insert(
            "latency_p95".to_owned(),
            MetricData::Exceedance {
                candidate_above: Count::new(above, 2000),
                stable_quantile: Some(800.0),
                candidate_quantile: Some(1000.0),
                candidate_units: None,
            },
        );
        m.insert(
            "cost".to_owned(),
            MetricData::Cost {
                candidate: cost(cand_cost),
                stable: cost(0.01),
            },
        );
        m.insert(
            "pref".to_owned(),
            MetricData::WinTieLoss {
                wins,
                ties: 2000 - wins - losses,
                losses,
            },
        );
        let mut s = StageSummaries::default();
        s.cohorts.insert("all".to_owned(), m);
        s
    };
    let d = evaluate(&p, &ready(), &cohort(100, 0.01, 700, 700));
    assert_eq!(d.action, Action::Promote, "{}", d.reason);
    let lat = d
        .evidence
        .iter()
        .find(|e| e.metric == "latency_p95")
        .unwrap();
    assert!(lat.note.as_deref().unwrap().contains("1.250"));
    // 20% of candidate requests above stable's p95 against a bound of 10%.
    let d = evaluate(&p, &ready(), &cohort(400, 0.01, 700, 700));
    assert_eq!(d.action, Action::Rollback);
    assert!(d.reason.contains("latency_p95"));
    // Cost 1.5× stable against a budget of 1.2.
    let d = evaluate(&p, &ready(), &cohort(100, 0.015, 700, 700));
    assert_eq!(d.action, Action::Rollback);
    assert!(d.reason.contains("cost"), "{}", d.reason);
    // Win rate 0.35 against a bound of 0.45.
    let d = evaluate(&p, &ready(), &cohort(100, 0.01, 400, 1000));
    assert_eq!(d.action, Action::Rollback);
    assert!(d.reason.contains("pref"), "{}", d.reason);
}

/// A rollback margin of 0 rolls back a candidate that is surely worse than stable, although not
/// surely worse than the promotion margin; without it the same data holds.
#[test]
fn rollback_margin_moves_only_the_rollback_bound() {
    let s = summaries(&[("all", paired(1000, -0.22), errors(20, 20, 1000))]);
    let d = evaluate(&policy(), &ready(), &s);
    assert_eq!(d.action, Action::Hold, "{}", d.reason);
    let mut p = policy();
    p.metrics[0].rollback_margin = Some(0.0);
    let d = evaluate(&p, &ready(), &s);
    assert_eq!(d.action, Action::Rollback, "{}", d.reason);
    let e = &d.evidence[0];
    assert_eq!((e.verdict, e.bound, e.margin), (Verdict::Worse, 0.0, 0.15));
    let (lo, hi) = e.interval.unwrap();
    assert!(hi < 0.0 && hi > -0.15 && lo < -0.22, "{lo} {hi}");
    // Promotion still needs non-inferiority within the margin.
    let s = summaries(&[("all", paired(4000, -0.05), errors(80, 80, 4000))]);
    assert_eq!(evaluate(&p, &ready(), &s).action, Action::Promote);
    // Not for cost ratios; never negative.
    let bad = GatePolicy::with_metrics(vec![
        MetricPolicy::new("cost", MetricKind::CostRatio { budget: 1.2 }).rollback_at(0.0),
        MetricPolicy::new("q", MetricKind::WinRate { margin: 0.1 }).rollback_at(-1.0),
    ]);
    let fields: Vec<String> = bad.validate("gate").into_iter().map(|p| p.field).collect();
    assert_eq!(
        fields,
        [
            "gate.metrics[0].rollback_margin",
            "gate.metrics[1].rollback_margin"
        ]
    );
}

/// Pairs first: an error rate with paired requests is the intersection of the two-sample and
/// the paired sequences at α/2 each, and the evidence names the tighter one.
#[test]
fn paired_requests_are_intersected_with_the_two_sample_comparison() {
    // 4 000 pairs, one per unit: 40 where only the candidate failed, 40 where only stable did.
    let (mut pairs, mut units) = (Moments::default(), UnitRatio::default());
    for i in 0..4000 {
        let d = match i % 100 {
            0 => 1.0,
            1 => -1.0,
            _ => 0.0,
        };
        pairs.push(d);
        units.push(d, 1.0);
    }
    let with_pairs = |unpaired: MetricData| MetricData::WithPairs {
        unpaired: Box::new(unpaired),
        pairs,
        units,
    };
    let s = summaries(&[("all", paired(4000, 0.0), with_pairs(errors(80, 80, 4000)))]);
    let d = evaluate(&policy(), &ready(), &s);
    let e = &d.evidence[1];
    assert_eq!(e.metric, "errors");
    assert_eq!(e.method, Method::PairedRequestsDeltaCs, "{e:?}");
    assert_eq!(e.unit, AnalysisUnit::Unit);
    assert_eq!(e.units, Some((4000, 4000)));
    let a = e.alpha / 2.0;
    let two = two_sample_cs(
        &Count::new(80, 4000).stats().unwrap(),
        &Count::new(80, 4000).stats().unwrap(),
        a,
        1000.0,
    );
    let floor = pairs.stats_bounded(-1.0, 1.0).unwrap();
    // Studentized with the 4 000 units − 1 degrees of freedom.
    let pd = unit_cs(
        &units.stats(floor.var / floor.n).unwrap(),
        3999.0,
        a,
        1000.0,
    );
    assert!(pd.width() < two.width());
    let both = pd.intersect(&two);
    assert_eq!(e.interval, Some((both.lo, both.hi)));
    assert!(
        e.note
            .as_deref()
            .unwrap()
            .contains("4000 pairs in 4000 units"),
        "{e:?}"
    );
    assert_eq!(d.action, Action::Promote, "{}", d.reason);
    // A handful of pairs: the two-sample sequence is tighter and names the method, at α/2.
    let (mut few, mut few_units) = (Moments::default(), UnitRatio::default());
    for d in [0.0, 1.0, -1.0, 0.0] {
        few.push(d);
        few_units.push(d, 1.0);
    }
    let s = summaries(&[(
        "all",
        paired(4000, 0.0),
        MetricData::WithPairs {
            unpaired: Box::new(errors(80, 80, 4000)),
            pairs: few,
            units: few_units,
        },
    )]);
    let e = &evaluate(&policy(), &ready(), &s).evidence[1];
    assert_eq!(e.method, Method::ProportionCs, "{e:?}");
    let (lo, hi) = e.interval.unwrap();
    assert!((hi - lo - two.width()).abs() < 1e-12, "{e:?}");
}

/// A latency tail over units: clustered A/A traffic in a 10% live stage — 1,500 units with
/// Pareto(5, 1.2) volumes (capped at 5,000), each with its own propensity to be slower than the
/// threshold (Beta(0.25, 4.75), mean 5%: some users send long prompts) — looked at every 50
/// units once 300 have arrived. Comparing the
/// two sides' shares over units (`UnitTail`, both sides' variance by the delta method) wrongly
/// rolls back in at most 5% of runs; the request-level share against stable's nominal 5%
/// (`Exceedance`, the gate's only latency comparison before per-unit tails were stored) does so
/// far more often, because one slow heavy user on the candidate looks like a regression. And a
/// candidate that makes every unit's requests 10 points more likely to be slow (15% above
/// stable's p95 instead of 5%) is rolled back over units.
#[test]
fn a_latency_tail_over_units_holds_its_false_rollback_rate_on_clustered_traffic() {
    use rand::distr::Distribution;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use statrs::distribution::{Beta, Pareto};

    let p = GatePolicy::with_metrics(vec![MetricPolicy {
        name: "latency_p95".into(),
        kind: MetricKind::LatencyTail {
            quantile: 0.95,
            margin: 0.01,
        },
        rollback_margin: None,
    }]);
    let volume = Pareto::new(5.0, 1.2).unwrap();
    let propensity = Beta::new(0.25, 4.75).unwrap();
    let run = |rng: &mut ChaCha8Rng, slower: f64| -> (bool, bool) {
        let (mut units, mut cand, mut stab) = (
            super::sequential::JointRatio::default(),
            Count::default(),
            Count::default(),
        );
        let (mut unit_worse, mut request_worse) = (false, false);
        for i in 1..=1500 {
            let n = volume.sample(rng).floor().min(5000.0) as u64;
            let on_candidate = rng.random_bool(0.1);
            let q = propensity.sample(rng) + if on_candidate { slower } else { 0.0 };
            let above = (0..n).filter(|_| rng.random_bool(q.min(1.0))).count() as u64;
            let (x, y) = (above as f64, n as f64);
            if on_candidate {
                units.push([x, y, 0.0, 0.0]);
                cand = Count::new(cand.hits + above, cand.n + n);
            } else {
                units.push([0.0, 0.0, x, y]);
                stab = Count::new(stab.hits + above, stab.n + n);
            }
            if i < 300 || i % 50 != 0 {
                continue;
            }
            let verdict = |data: MetricData| {
                let mut s = StageSummaries::default();
                s.cohorts.insert(
                    "all".to_owned(),
                    BTreeMap::from([("latency_p95".to_owned(), data)]),
                );
                let d = evaluate(&p, &ready(), &s);
                (d.evidence[0].verdict, d.evidence[0].method)
            };
            let (v, method) = verdict(MetricData::UnitTail {
                candidate_above: cand,
                stable_above: stab,
                threshold_ms: 900.0,
                stable_quantile: Some(900.0),
                candidate_quantile: None,
                units,
            });
            assert_eq!(method, Method::ExceedanceDifferenceDeltaCs);
            unit_worse |= v == Verdict::Worse;
            let (v, _) = verdict(MetricData::Exceedance {
                candidate_above: cand,
                stable_quantile: Some(900.0),
                candidate_quantile: None,
                candidate_units: None,
            });
            request_worse |= v == Verdict::Worse;
        }
        (unit_worse, request_worse)
    };
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let runs = 200;
    let (mut unit, mut request) = (0, 0);
    for _ in 0..runs {
        let (u, r) = run(&mut rng, 0.0);
        unit += usize::from(u);
        request += usize::from(r);
    }
    let rate = |k: usize| k as f64 / runs as f64;
    // Seed 14: 1.5% over units, 16.5% per request.
    assert!(
        rate(unit) <= 0.05,
        "over units: {} false rollbacks",
        rate(unit)
    );
    assert!(
        rate(request) >= 0.15,
        "per request: {} false rollbacks",
        rate(request)
    );
    // Seed 14: 49 of 50 (and 24 of 50 at +5 points, where the heavy users keep it wide).
    let slow = (0..50).filter(|_| run(&mut rng, 0.10).0).count();
    assert!(
        slow >= 45,
        "a tail 10 points heavier rolled back in {slow}/50 runs"
    );
}

/// A latency tail between the two rungs either side of stable's quantile (`Between`) keeps the
/// margin where stable's share is 1 − q. Log-normal latencies (σ 0.4 within a user, 0.15
/// between users; stable's p95 ≈ 1,540 ms, nearest the rung above it, where stable's share is
/// ≈ 1%), Pareto(5, 1.2) volumes, 6,000 users at a 10% live stage, a 5-point margin: a 1.35×
/// slower candidate is ≈ 5 points worse at that rung alone — inside the margin, so the nearest
/// rung never rolls it back — and ≈ 9 points worse between the rungs, where it is rolled back.
/// An identical candidate is not.
#[test]
fn a_slower_candidate_is_rolled_back_between_the_rungs_where_the_nearest_rung_misses_it() {
    use super::sequential::JointRatio;
    use rand::distr::Distribution;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use statrs::distribution::{Normal, Pareto};

    let p = GatePolicy::with_metrics(vec![MetricPolicy {
        name: "latency_p95".into(),
        kind: MetricKind::LatencyTail {
            quantile: 0.95,
            margin: 0.05,
        },
        rollback_margin: None,
    }]);
    let volume = Pareto::new(5.0, 1.2).unwrap();
    let (between_users, within_user) = (0.15f64, 0.4f64);
    let user_scale = Normal::new(0.0, between_users).unwrap();
    let jitter = Normal::new(0.0, within_user).unwrap();
    let median = 762.0;
    let stable_q = median * (1.645 * within_user.hypot(between_users)).exp();
    // The rungs of `capture::tail` either side (every 12th boundary of 5% buckets): 1.05^144
    // ≈ 1,126 ms and 1.05^156 ≈ 2,020 ms.
    let rung_ms = |r: usize| 1.05f64.powi(12 * (r as i32 + 1));
    let (lo, hi) = (11, 12);
    assert!(
        rung_ms(lo) <= stable_q && stable_q < rung_ms(hi),
        "{stable_q} ms"
    );
    // The case of the weakness: the nearest rung is the one above the quantile.
    assert!(
        stable_q / rung_ms(lo) > rung_ms(hi) / stable_q,
        "{stable_q} ms"
    );
    let verdict = |data: MetricData| {
        let mut s = StageSummaries::default();
        s.cohorts.insert(
            "all".to_owned(),
            BTreeMap::from([("latency_p95".to_owned(), data)]),
        );
        evaluate(&p, &ready(), &s).evidence.remove(0)
    };
    let run = |rng: &mut ChaCha8Rng, slower: f64| {
        let mut at = [JointRatio::default(); 2];
        for _ in 0..6000 {
            let n = volume.sample(rng).floor().min(500.0) as usize;
            let candidate = rng.random_bool(0.1);
            let scale =
                median * user_scale.sample(rng).exp() * if candidate { slower } else { 1.0 };
            let mut x = [0.0; 2];
            for _ in 0..n {
                let ms = scale * jitter.sample(rng).exp();
                for (k, r) in [lo, hi].into_iter().enumerate() {
                    x[k] += f64::from(u8::from(ms > rung_ms(r)));
                }
            }
            for (k, j) in at.iter_mut().enumerate() {
                j.push(if candidate {
                    [x[k], n as f64, 0.0, 0.0]
                } else {
                    [0.0, 0.0, x[k], n as f64]
                });
            }
        }
        let tail = |j: &JointRatio, r: usize| MetricData::UnitTail {
            candidate_above: Count::new(j.sums[0] as u64, j.sums[1] as u64),
            stable_above: Count::new(j.sums[2] as u64, j.sums[3] as u64),
            threshold_ms: rung_ms(r),
            stable_quantile: Some(stable_q),
            candidate_quantile: None,
            units: *j,
        };
        // Stable's interpolated share at 5%: (1 − w)·lower + w·upper = 0.05.
        let share = |j: &JointRatio| j.sums[2] / j.sums[3];
        let w = (share(&at[0]) - 0.05) / (share(&at[0]) - share(&at[1]));
        let between = verdict(MetricData::Between {
            lower: Box::new(tail(&at[0], lo)),
            upper: Box::new(tail(&at[1], hi)),
            upper_weight: w,
        });
        (between, verdict(tail(&at[1], hi)), w)
    };
    let mut rng = ChaCha8Rng::seed_from_u64(1435);
    let runs = 20;
    let (mut between, mut nearest) = (0, 0);
    for _ in 0..runs {
        let (b, n, w) = run(&mut rng, 1.35);
        between += usize::from(b.verdict == Verdict::Worse);
        nearest += usize::from(n.verdict == Verdict::Worse);
        assert!(w > 0.5, "weight {w}: the quantile is nearer the upper rung");
        assert_eq!(b.method, Method::ExceedanceDifferenceDeltaCs);
        let note = b.note.as_deref().unwrap();
        assert!(note.contains("interpolated between the rungs"), "{note}");
        assert!(
            note.contains(&format!("threshold {:.1} ms", rung_ms(lo))),
            "{note}"
        );
        // On the quantile's scale: stable's interpolated share is 1 − q.
        let est = b.estimate.unwrap();
        assert!(est > 0.10 && est < 0.20, "{est}");
    }
    assert_eq!(
        nearest, 0,
        "the nearest rung alone rolled back {nearest}/{runs}"
    );
    assert!(
        between >= 18,
        "between the rungs: rolled back {between}/{runs}"
    );
    let false_rollbacks = (0..runs)
        .filter(|_| run(&mut rng, 1.0).0.verdict == Verdict::Worse)
        .count();
    assert_eq!(
        false_rollbacks, 0,
        "A/A rolled back {false_rollbacks}/{runs}"
    );
}

/// The evidence of a latency tail over units names its threshold, the two shares and the
/// quantile ratio, and its estimate is 1 − q plus the difference of the shares.
#[test]
fn a_unit_tail_reports_its_threshold_and_the_difference_on_the_quantile_scale() {
    let p = GatePolicy::with_metrics(vec![MetricPolicy {
        name: "latency_p95".into(),
        kind: MetricKind::LatencyTail {
            quantile: 0.95,
            margin: 0.02,
        },
        rollback_margin: None,
    }]);
    let mut units = super::sequential::JointRatio::default();
    for i in 0..400u32 {
        // Candidate units: 8% slow; stable's: 5%.
        if i % 4 == 0 {
            units.push([f64::from(u8::from(i % 25 < 2)) * 2.0, 25.0, 0.0, 0.0]);
        }
        units.push([0.0, 0.0, f64::from(u8::from(i % 20 == 0)) * 25.0, 25.0]);
    }
    let (cand, stab) = (
        Count::new(units.sums[0] as u64, units.sums[1] as u64),
        Count::new(units.sums[2] as u64, units.sums[3] as u64),
    );
    let mut s = StageSummaries::default();
    s.cohorts.insert(
        "all".to_owned(),
        BTreeMap::from([(
            "latency_p95".to_owned(),
            MetricData::UnitTail {
                candidate_above: cand,
                stable_above: stab,
                threshold_ms: 1046.7,
                stable_quantile: Some(1000.0),
                candidate_quantile: Some(1200.0),
                units,
            },
        )]),
    );
    let e = &evaluate(&p, &ready(), &s).evidence[0];
    assert_eq!(e.method, Method::ExceedanceDifferenceDeltaCs);
    assert_eq!(e.unit, AnalysisUnit::Unit);
    let (rc, rs) = units.ratios().unwrap();
    let want = 0.05 + rc - rs;
    assert!((e.estimate.unwrap() - want).abs() < 1e-12, "{e:?}");
    let (lo, hi) = e.interval.unwrap();
    assert!(lo < want && want < hi, "{e:?}");
    let note = e.note.as_deref().unwrap();
    assert!(note.contains("threshold 1046.7 ms"), "{note}");
    assert!(
        note.contains("quantile ratio candidate/stable 1.200"),
        "{note}"
    );
    assert_eq!(e.units, Some((100, 400)), "{e:?}");
}

/// Paired differences over `units` units of 8 pairs each, with the given mean per pair and a
/// spread of ±`spread` between units (and ±1 within a unit).
fn paired_units(units: u64, mean: f64, spread: f64) -> MetricData {
    let (mut pairs, mut per_unit) = (Moments::default(), UnitRatio::default());
    for i in 0..units {
        let m = mean + if i % 2 == 0 { spread } else { -spread };
        for j in 0..8 {
            pairs.push(m + if j % 2 == 0 { 1.0 } else { -1.0 });
        }
        per_unit.push(8.0 * m, 8.0);
    }
    MetricData::PairedUnits {
        pairs,
        units: per_unit,
    }
}

/// A cohort with fewer than `cohort_min_units` units, whose quality cell cannot show
/// non-inferiority within the margin, does not hold the stage while its estimate is within
/// the bound; it holds when the estimate is beyond it, it still rolls back when surely worse,
/// and with `cohort_min_units: 0` it holds as before.
#[test]
fn a_cohort_too_small_to_decide_is_deferred_but_can_still_roll_back() {
    let small = |mean| {
        summaries(&[
            ("all", paired_units(2000, 0.0, 0.2), errors(80, 80, 4000)),
            (
                "tier=enterprise",
                paired_units(60, mean, 1.0),
                errors(2, 2, 500),
            ),
        ])
    };
    let p = policy();
    assert_eq!(p.cohort_min_units, 100);
    let d = evaluate(&p, &ready(), &small(0.0));
    assert_eq!(d.action, Action::Promote, "{}", d.reason);
    let e = &d.evidence[2];
    assert_eq!(
        (e.metric.as_str(), e.cohort.as_str()),
        ("quality", "tier=enterprise")
    );
    assert_eq!(e.verdict, Verdict::Deferred, "{e:?}");
    assert_eq!(e.units, Some((60, 60)));
    let (lo, _) = e.interval.unwrap();
    assert!(
        lo < e.bound,
        "the cell could not have shown non-inferiority: {e:?}"
    );
    assert!(
        e.note.as_deref().unwrap().contains("fewer than 100 units"),
        "{e:?}"
    );
    // The estimate beyond the bound (−0.15) holds the stage.
    let d = evaluate(&p, &ready(), &small(-0.2));
    assert_eq!(d.action, Action::Hold, "{}", d.reason);
    assert_eq!(d.evidence[2].verdict, Verdict::Inconclusive);
    // Surely worse: rolled back by the small cohort.
    let d = evaluate(&p, &ready(), &small(-1.5));
    assert_eq!(d.action, Action::Rollback, "{}", d.reason);
    assert_eq!(d.evidence[2].verdict, Verdict::Worse);
    // Every cohort gating from `min_samples` units: it holds.
    let strict = GatePolicy {
        cohort_min_units: 0,
        ..policy()
    };
    let d = evaluate(&strict, &ready(), &small(0.0));
    assert_eq!(d.action, Action::Hold, "{}", d.reason);
    assert_eq!(d.evidence[2].verdict, Verdict::Inconclusive);
    // `all` is never deferred, however few its units.
    let tiny = summaries(&[("all", paired_units(60, 0.0, 1.0), errors(2, 2, 500))]);
    let d = evaluate(&p, &ready(), &tiny);
    assert_eq!(d.action, Action::Hold, "{}", d.reason);
    assert_eq!(d.evidence[0].verdict, Verdict::Inconclusive);
}
