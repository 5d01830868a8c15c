use super::*;
use crate::gate::{Action, Direction, MetricPolicy};
use crate::rollout::ramp::OnTimeout;
use crate::store::{Moments, ScoreSummary, UnitComparison, UnitMoments};

fn variant(cohort: Cohort, role: &str, requests: u64, errors: u64) -> VariantSummary {
    let mut v = VariantSummary {
        cohort,
        variant: role.to_owned(),
        role: Role::parse(role).unwrap(),
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
    MetricPolicy::new(name, kind)
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
    assert_eq!(a.stable, Assigned::new("stable", 900, 900, 0.9));
    assert_eq!(a.candidate, Assigned::new("candidate", 100, 100, 0.1));
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
        approval_required: false,
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
        approval_required: false,
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
        approval_required: false,
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

/// The unit sample-ratio check end to end: the store's counts of served units per variant →
/// `gate_input::decide` → the gate's χ² evidence, against statrs' χ²₁ survival function and the
/// published tail values. A heavy user on the candidate moves the request split far from the
/// share (χ² on requests in the thousands) and only shows in the note.
#[test]
fn unit_sample_ratio_chain_matches_statrs_chi_square_on_known_counts() {
    use statrs::distribution::{ChiSquared, ContinuousCDF};
    let chi1 = ChiSquared::new(1.0).unwrap();
    let p = policy(vec![metric(
        "error_rate",
        MetricKind::ErrorRate {
            margin: 0.05,
            ceiling: 0.5,
        },
    )]);
    let stage = Stage {
        exposure: Exposure::Live { share: 0.1 },
        min_duration: Duration::ZERO,
        min_judged_pairs: 0,
        max_duration: Duration::from_secs(3600),
        on_timeout: OnTimeout::HoldAndAlert,
        exclude_cohorts: Vec::new(),
        approval_required: false,
    };
    // (stable units, candidate units, χ² by hand, published P(χ²₁ > χ²), verdict)
    let cases = [
        // Exactly 90/10 over 5 000 units.
        (4_500, 500, 0.0, 1.0, crate::gate::Verdict::Passed),
        // 60 units short: 60²/4500 + 60²/500 = 0.8 + 7.2 = 8; P = 0.004678 (> 0.001).
        (4_440, 560, 8.0, 0.004_678, crate::gate::Verdict::Passed),
        // 120 short: 3.2 + 28.8 = 32; P = 1.542e-8 = 2Φ(−√32).
        (4_620, 380, 32.0, 1.542e-8, crate::gate::Verdict::Blocked),
    ];
    for (stable_units, candidate_units, chi2, published, verdict) in cases {
        let mut stable = variant(None, "stable", 40_000, 0);
        stable.served_units = stable_units;
        stable.units = stable_units;
        // One heavy user: the candidate serves 20% of the requests with 10% of the units.
        let mut candidate = variant(None, "candidate", 10_000, 0);
        candidate.served_units = candidate_units;
        candidate.units = candidate_units;
        let summary = StageSummary {
            variants: vec![stable, candidate],
            ..StageSummary::default()
        };
        let d = decide(&p, &stage, Duration::from_secs(1), &summary);
        let e = d
            .evidence
            .iter()
            .find(|e| e.metric == "sample_ratio")
            .unwrap();
        let stat = e.estimate.unwrap();
        assert!((stat - chi2).abs() < 1e-9, "{stat} vs {chi2}");
        let reference = 1.0 - chi1.cdf(chi2);
        assert!(
            (reference - published).abs() <= 1e-3 * published.max(1e-6),
            "statrs {reference} vs published {published}"
        );
        let shown = e.note.as_deref().unwrap();
        assert!(shown.contains(&format!("p = {reference:.3e}")), "{shown}");
        assert_eq!(e.verdict, verdict, "{shown}");
        // Each variant's own counts, the candidate's first (the store lists stable first).
        assert_eq!(e.units, Some((candidate_units, stable_units)), "{e:?}");
        assert_eq!((e.candidate_n, e.stable_n), (10_000, 40_000), "{e:?}");
        assert!(shown.starts_with("candidate "), "{shown}");
        // Requests 40 000 / 10 000 against 90/10: χ² = 5000²/45000 + 5000²/5000 = 5555.56.
        assert!(shown.contains("χ² = 5555.56"), "{shown}");
        assert_eq!(
            d.alerts
                .iter()
                .any(|a| a.kind == crate::gate::AlertKind::SampleRatioMismatch),
            verdict == crate::gate::Verdict::Blocked
        );
    }
}

#[test]
fn latency_tail_over_units_is_interpolated_between_the_rungs_either_side_of_stables_quantile() {
    use crate::capture::tail::{RUNGS, bracket, rung_ms};
    let mut stable = variant(None, "stable", 100, 0);
    let mut cand = variant(None, "candidate", 100, 0);
    for i in 1..=100 {
        stable.latency_histogram.record(f64::from(i) * 10.0);
        stable.ttft_histogram.record(f64::from(i));
        cand.latency_histogram.record(f64::from(i) * 12.0);
        cand.ttft_histogram.record(f64::from(i));
    }
    // Stable's p95 is ~950 ms: between the rungs ≈ 620 ms (1.05^132) and ≈ 1,100 ms (1.05^144).
    let q = stable.latency_histogram.quantile(0.95).unwrap();
    let (lo, hi) = bracket(q).unwrap();
    let hi = hi.unwrap();
    assert!(rung_ms(lo) <= q && q < rung_ms(hi), "{q}");
    let mut units = UnitComparison {
        cohort: None,
        ..UnitComparison::default()
    };
    units.errors.units = 40;
    let mut tail = [JointMoments::default(); RUNGS];
    // Stable's share: 8% above the lower rung, 2% above the upper one.
    for (r, c, s) in [(lo, 20.0, 8.0), (hi, 8.0, 2.0)] {
        tail[r] = JointMoments {
            units: 40,
            candidate_units: 10,
            stable_units: 30,
            sums: [c, 100.0, s, 100.0],
            products: [c + 2.0, 80.0, 0.0, 0.0, 1000.0, 0.0, 0.0, s, 3.0 * s, 340.0],
        };
    }
    units.latency_tail = tail;
    let summary = StageSummary {
        variants: vec![stable, cand],
        units: vec![units],
        ..StageSummary::default()
    };
    let p = policy(vec![
        metric(
            "latency_p95",
            MetricKind::LatencyTail {
                quantile: 0.95,
                margin: 0.05,
            },
        ),
        metric(
            "ttft_p95",
            MetricKind::LatencyTail {
                quantile: 0.95,
                margin: 0.05,
            },
        ),
    ]);
    let (s, _) = summaries(&p, Exposure::Live { share: 0.25 }, &summary);
    let MetricData::Between {
        lower,
        upper,
        upper_weight,
    } = &s.cohorts["all"]["latency_p95"]
    else {
        panic!("{s:?}")
    };
    // (1 − w)·8% + w·2% = 5%.
    assert!((upper_weight - 0.5).abs() < 1e-12, "{upper_weight}");
    for (data, r, c, st) in [(lower, lo, 20, 8), (upper, hi, 8, 2)] {
        let MetricData::UnitTail {
            candidate_above,
            stable_above,
            threshold_ms,
            stable_quantile,
            units,
            ..
        } = data.as_ref()
        else {
            panic!("{data:?}")
        };
        assert_eq!(*candidate_above, Count::new(c, 100));
        assert_eq!(*stable_above, Count::new(st, 100));
        assert_eq!(*threshold_ms, rung_ms(r));
        assert_eq!(*stable_quantile, Some(q));
        assert_eq!((units.candidate_units, units.stable_units), (10, 30));
    }
    // Time to first token keeps the request-level share.
    assert!(
        matches!(s.cohorts["all"]["ttft_p95"], MetricData::Exceedance { .. }),
        "{s:?}"
    );
    // Once the stage has paired requests both sides answered: each rung's paired differences
    // beside its comparison over units (pairs first); ttft stays request-level.
    let mut paired = summary.clone();
    let mut outcomes = crate::store::PairedOutcomes {
        candidate: "candidate".into(),
        ..Default::default()
    };
    for (r, sum) in [(lo, 3.0), (hi, 2.0)] {
        outcomes.latency_tail[r] = crate::store::PairedTail {
            pairs: Moments {
                count: 30,
                sum,
                sum_sq: 4.0,
            },
            units: UnitMoments {
                units: 12,
                sum_x: sum,
                sum_y: 30.0,
                sum_xx: 2.0,
                sum_yy: 90.0,
                sum_xy: 5.0,
            },
        };
    }
    outcomes.latency_tail[0].pairs.count = 30;
    paired.paired_outcomes = vec![outcomes];
    let (s, _) = summaries(&p, Exposure::Live { share: 0.25 }, &paired);
    let MetricData::Between { lower, upper, .. } = &s.cohorts["all"]["latency_p95"] else {
        panic!("{s:?}")
    };
    for (data, sum) in [(lower, 3.0), (upper, 2.0)] {
        let MetricData::WithPairs {
            unpaired,
            pairs,
            units,
        } = data.as_ref()
        else {
            panic!("{data:?}")
        };
        assert!(matches!(**unpaired, MetricData::UnitTail { .. }), "{s:?}");
        assert_eq!((pairs.n, pairs.sum, units.units), (30, sum, 12));
    }
    assert!(
        matches!(s.cohorts["all"]["ttft_p95"], MetricData::Exceedance { .. }),
        "{s:?}"
    );
    // Without slow-request counts on both sides at the rung: the request-level share.
    let mut empty = summary.clone();
    empty.units[0].latency_tail = [JointMoments::default(); RUNGS];
    let (s, _) = summaries(&p, Exposure::Live { share: 0.25 }, &empty);
    assert!(
        matches!(
            s.cohorts["all"]["latency_p95"],
            MetricData::Exceedance { .. }
        ),
        "{s:?}"
    );
}
