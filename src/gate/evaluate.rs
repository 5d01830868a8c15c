//! `evaluate`: stage summaries in, a [`Decision`] with its evidence out.
//!
//! For each gate metric in each cohort: a confidence sequence (see `sequential`) at α split by
//! Bonferroni over the metric × cohort cells present, once at the rollback α and once at the
//! promotion α. Roll back when any cell's rollback sequence lies wholly on the bad side of its
//! rollback bound (−margin, or −`rollback_margin` when the metric sets one; the error ceiling;
//! the cost budget); promote when every cell's promotion
//! sequence lies wholly on the good side, no check blocks (sample-ratio mismatch, judge
//! abstentions) and the stage's minimum duration and judged pairs are met; otherwise hold.
//! An error rate or latency tail with paired requests (`MetricData::WithPairs`) is the
//! intersection of its two-sample and its paired sequence, each at half the cell's α. A latency
//! tail between two rungs (`MetricData::Between`) combines the two rungs' sequences, each at
//! half the α, with the weight that puts stable's share at 1 − q.
//! A cohort other than `all` with fewer than `cohort_min_units` units on a side is `deferred`
//! instead of inconclusive (or short of `min_samples`) while its estimate is within the bound:
//! it does not hold the stage, and its rollback sequence can still roll it back.
//! Pure and deterministic. Fails closed: missing or mismatched data never counts as good.

use super::policy::{
    Direction, GatePolicy, MetricData, MetricKind, MetricPolicy, StageContext, StageSummaries,
};
use super::sequential::{
    Count, Interval, JointRatio, Moments, SampleStats, UnitRatio, one_sample_cs, ratio_cs,
    srm_chi_square, two_sample_cs, unit_cs,
};
use super::{Action, Alert, AlertKind, Decision, Evidence, Method, Verdict};

/// The statistical gate. See the module header for the rule.
pub fn evaluate(policy: &GatePolicy, stage: &StageContext, summaries: &StageSummaries) -> Decision {
    let cells = (summaries.cohorts.len() * policy.metrics.len()).max(1) as f64;
    let alphas = Alphas {
        promote: policy.alpha_promote / cells,
        rollback: policy.alpha_rollback / cells,
    };
    let mut evidence = Vec::new();
    let mut alerts = Vec::new();
    if summaries.cohorts.is_empty() {
        for m in &policy.metrics {
            evidence.push(missing(
                &m.name,
                "all",
                &m.kind,
                alphas.promote,
                "no data yet",
            ));
        }
    }
    for (cohort, data) in &summaries.cohorts {
        for m in &policy.metrics {
            let e = match data.get(&m.name) {
                None => missing(&m.name, cohort, &m.kind, alphas.promote, "no data"),
                Some(d) => cell(policy, &alphas, m, cohort, d),
            };
            evidence.push(e);
        }
    }
    if let Some(e) = srm(policy, summaries) {
        if e.verdict == Verdict::Blocked {
            alerts.push(Alert {
                kind: AlertKind::SampleRatioMismatch,
                message: format!(
                    "sample-ratio mismatch: {} (p < {})",
                    e.note.clone().unwrap_or_default(),
                    policy.srm_alpha
                ),
            });
        }
        evidence.push(e);
    }
    evidence.extend(abstentions(policy, summaries));
    decide(stage, evidence, alerts)
}

struct Alphas {
    promote: f64,
    rollback: f64,
}

fn decide(stage: &StageContext, evidence: Vec<Evidence>, alerts: Vec<Alert>) -> Decision {
    if let Some(worst) = evidence.iter().find(|e| e.verdict == Verdict::Worse) {
        let reason = format!(
            "roll back: {} in cohort {} is worse than its bound {:.4}: {} (estimate {:.4}, interval {}, {})",
            worst.metric,
            worst.cohort,
            worst.bound,
            worst.method.describe(),
            worst.estimate.unwrap_or(f64::NAN),
            fmt_interval(worst.interval),
            worst.counts_text(),
        );
        return Decision {
            action: Action::Rollback,
            reason,
            evidence,
            alerts,
        };
    }
    let mut blockers: Vec<String> = evidence
        .iter()
        .filter(|e| {
            !matches!(
                e.verdict,
                Verdict::NonInferior | Verdict::Passed | Verdict::Deferred
            )
        })
        .map(|e| format!("{}/{}: {}", e.metric, e.cohort, e.verdict.as_str()))
        .collect();
    if stage.elapsed < stage.min_duration {
        blockers.push(format!(
            "stage ran {}s of its minimum {}s",
            stage.elapsed.as_secs(),
            stage.min_duration.as_secs()
        ));
    }
    if stage.judged_pairs < stage.min_judged_pairs {
        blockers.push(format!(
            "{} of {} judged pairs",
            stage.judged_pairs, stage.min_judged_pairs
        ));
    }
    if blockers.is_empty() {
        return Decision {
            action: Action::Promote,
            reason: format!(
                "promote: all {} checks show non-inferiority after {}s and {} judged pairs",
                evidence.len(),
                stage.elapsed.as_secs(),
                stage.judged_pairs
            ),
            evidence,
            alerts,
        };
    }
    let more = blockers.len().saturating_sub(4);
    blockers.truncate(4);
    let mut reason = format!("hold: {}", blockers.join("; "));
    if more > 0 {
        reason.push_str(&format!("; and {more} more"));
    }
    Decision {
        action: Action::Hold,
        reason,
        evidence,
        alerts,
    }
}

fn fmt_interval(iv: Option<(f64, f64)>) -> String {
    match iv {
        Some((lo, hi)) => format!("[{lo:.4}, {hi:.4}]"),
        None => "none".to_owned(),
    }
}

/// The good-side bound and direction of a metric.
fn bound_of(kind: &MetricKind) -> (f64, f64, Direction) {
    match *kind {
        MetricKind::Mean { direction, margin } => match direction {
            Direction::HigherIsBetter => (-margin, margin, direction),
            Direction::LowerIsBetter => (margin, margin, direction),
        },
        MetricKind::WinRate { margin } => (0.5 - margin, margin, Direction::HigherIsBetter),
        MetricKind::ErrorRate { margin, .. } => (margin, margin, Direction::LowerIsBetter),
        MetricKind::LatencyTail { quantile, margin } => {
            (1.0 - quantile + margin, margin, Direction::LowerIsBetter)
        }
        MetricKind::CostRatio { budget } => (budget, budget - 1.0, Direction::LowerIsBetter),
    }
}

/// The bound the rollback side is judged against: the promotion bound, moved to the metric's
/// `rollback_margin` when it has one (0: surely worse than stable at all).
fn rollback_bound_of(kind: &MetricKind, rollback_margin: Option<f64>) -> f64 {
    let (bound, _, _) = bound_of(kind);
    let Some(rm) = rollback_margin else {
        return bound;
    };
    match *kind {
        MetricKind::Mean {
            direction: Direction::HigherIsBetter,
            ..
        } => -rm,
        MetricKind::Mean {
            direction: Direction::LowerIsBetter,
            ..
        }
        | MetricKind::ErrorRate { .. } => rm,
        MetricKind::WinRate { .. } => 0.5 - rm,
        MetricKind::LatencyTail { quantile, .. } => 1.0 - quantile + rm,
        MetricKind::CostRatio { .. } => bound,
    }
}

fn missing(metric: &str, cohort: &str, kind: &MetricKind, alpha: f64, why: &str) -> Evidence {
    let (bound, margin, direction) = bound_of(kind);
    Evidence {
        metric: metric.to_owned(),
        cohort: cohort.to_owned(),
        estimate: None,
        interval: None,
        margin,
        bound,
        direction,
        candidate_n: 0,
        stable_n: 0,
        method: Method::None,
        unit: Method::None.unit_of_analysis(),
        units: None,
        alpha,
        verdict: Verdict::InsufficientData,
        note: Some(why.to_owned()),
    }
}

/// One metric in one cohort.
fn cell(
    policy: &GatePolicy,
    alphas: &Alphas,
    m: &MetricPolicy,
    cohort: &str,
    data: &MetricData,
) -> Evidence {
    let (metric, kind) = (m.name.as_str(), &m.kind);
    let (bound, _, direction) = bound_of(kind);
    let rollback_bound = rollback_bound_of(kind, m.rollback_margin);
    let mut e = missing(metric, cohort, kind, alphas.promote, "");
    e.note = None;
    let t = policy.target_n;
    // (method, interval at α, candidate n, stable n, units per side when over units)
    let Some(Cs {
        method,
        cs,
        n: (cn, sn),
        units,
    }) = cell_cs(kind, data, t, &mut e)
    else {
        e.verdict = Verdict::Invalid;
        e.note = Some("summary type does not fit the metric kind".to_owned());
        return e;
    };
    e.method = method;
    e.unit = method.unit_of_analysis();
    e.candidate_n = cn;
    e.stable_n = sn;
    e.units = units;
    let (Some(promote), Some(rollback)) = (cs(alphas.promote), cs(alphas.rollback)) else {
        e.note = Some(match units {
            Some(_) => "fewer than two units".to_owned(),
            None => "fewer than two observations".to_owned(),
        });
        return e;
    };
    e.estimate = Some(promote.estimate);
    e.interval = Some((promote.lo, promote.hi));
    let (least, what) = match units {
        Some((cu, su)) => (cu.min(su), "units"),
        None => (cn.min(sn), "observations"),
    };
    // A cohort too small to decide at this stage (fewer than `cohort_min_units` units on a
    // side) does not hold the stage while its estimate shows no harm; it can still roll back.
    let deferrable = cohort != ALL
        && units.is_some()
        && least < policy.cohort_min_units
        && match direction {
            Direction::HigherIsBetter => promote.estimate >= bound,
            Direction::LowerIsBetter => promote.estimate <= bound,
        };
    if least < policy.min_samples {
        e.note = Some(format!("fewer than {} {what}", policy.min_samples));
        if deferrable {
            defer(&mut e, policy);
        }
        return e;
    }
    let worse = |iv: &Interval| match direction {
        Direction::HigherIsBetter => iv.hi < rollback_bound,
        Direction::LowerIsBetter => iv.lo > rollback_bound,
    };
    let good = |iv: &Interval| match direction {
        Direction::HigherIsBetter => iv.lo > bound,
        Direction::LowerIsBetter => iv.hi < bound,
    };
    if worse(&rollback) {
        e.interval = Some((rollback.lo, rollback.hi));
        e.bound = rollback_bound;
        e.alpha = alphas.rollback;
        e.verdict = Verdict::Worse;
        return e;
    }
    e.verdict = if good(&promote) {
        Verdict::NonInferior
    } else {
        Verdict::Inconclusive
    };
    if e.verdict == Verdict::Inconclusive && deferrable {
        defer(&mut e, policy);
    }
    let data = match data {
        MetricData::WithPairs { unpaired, .. } => unpaired.as_ref(),
        d => d,
    };
    match (kind, data) {
        (MetricKind::ErrorRate { ceiling, .. }, MetricData::Proportions { candidate, .. }) => {
            ceiling_check(
                &mut e,
                candidate.stats(),
                None,
                Method::Ceiling,
                *ceiling,
                alphas,
                t,
            );
        }
        (
            MetricKind::ErrorRate { ceiling, .. },
            MetricData::UnitRates {
                candidate, units, ..
            },
        ) => {
            let s = units.candidate_stats(count_floor(candidate));
            let df = Some(df(units.candidate_units));
            ceiling_check(&mut e, s, df, Method::CeilingDelta, *ceiling, alphas, t);
        }
        _ => {}
    }
    e
}

/// The cohort every stage has: all of its traffic.
const ALL: &str = "all";

/// Marks a small cohort's undecided cell as not holding the stage (see
/// [`GatePolicy::cohort_min_units`]).
fn defer(e: &mut Evidence, policy: &GatePolicy) {
    e.verdict = Verdict::Deferred;
    let why = format!(
        "fewer than {} units on a side: does not hold the stage while its estimate is within the bound",
        policy.cohort_min_units
    );
    e.note = Some(match e.note.take() {
        Some(n) => format!("{n}; {why}"),
        None => why,
    });
}

/// The confidence sequence of one cell, with what it counts.
struct Cs<'a> {
    method: Method,
    cs: Box<dyn Fn(f64) -> Option<Interval> + 'a>,
    /// Requests (or pairs) per side.
    n: (u64, u64),
    /// Units per side, when the inference runs over units.
    units: Option<(u64, u64)>,
}

impl<'a> Cs<'a> {
    fn new(method: Method, n: (u64, u64), cs: impl Fn(f64) -> Option<Interval> + 'a) -> Self {
        Self {
            method,
            cs: Box::new(cs),
            n,
            units: None,
        }
    }

    fn over_units(mut self, c: &UnitRatio, s: &UnitRatio) -> Self {
        self.units = Some((c.units, s.units));
        self
    }

    fn over_joint_units(mut self, j: &JointRatio) -> Self {
        self.units = Some((j.candidate_units, j.stable_units));
        self
    }
}

/// The degrees of freedom of a statistic over `units` units: G − 1 (see
/// [`super::sequential::student_factor`]).
fn df(units: u64) -> f64 {
    units.saturating_sub(1) as f64
}

/// The degrees of freedom of a comparison of two sides' units: the smaller side's units − 1, a
/// lower bound of Welch–Satterthwaite's (conservative when the sides differ in size).
fn joint_df(j: &JointRatio) -> f64 {
    df(j.candidate_units.min(j.stable_units))
}

/// The request-level variance of a rate's estimate (shrunk as [`Count::stats`] shrinks it):
/// the floor of its unit-level variance.
fn count_floor(c: &Count) -> f64 {
    c.stats().map_or(f64::INFINITY, |s| s.var / s.n)
}

/// Picks the confidence sequence for a metric kind and its data; `None` when they do not fit.
fn cell_cs<'a>(
    kind: &MetricKind,
    data: &'a MetricData,
    t: f64,
    e: &mut Evidence,
) -> Option<Cs<'a>> {
    let two = |c: Option<SampleStats>, s: Option<SampleStats>| {
        move |a| match (c, s) {
            (Some(c), Some(s)) => Some(two_sample_cs(&c, &s, a, t)),
            _ => None,
        }
    };
    Some(match (kind, data) {
        (MetricKind::Mean { .. }, MetricData::Paired(d)) => {
            // Scores and check results lie in 0–1, so paired differences in −1…1.
            let s = d.stats_bounded(-1.0, 1.0);
            Cs::new(Method::PairedCs, (d.n, d.n), move |a| {
                s.map(|s| one_sample_cs(&s, a, t))
            })
        }
        (MetricKind::Mean { .. }, MetricData::PairedUnits { pairs, units }) => {
            let floor = pairs
                .stats_bounded(-1.0, 1.0)
                .map_or(f64::INFINITY, |s| s.var / s.n);
            let s = units.stats(floor);
            let df = df(units.units);
            Cs::new(Method::PairedDeltaCs, (pairs.n, pairs.n), move |a| {
                s.map(|s| unit_cs(&s, df, a, t))
            })
            .over_units(units, units)
        }
        (MetricKind::Mean { .. }, MetricData::TwoSample { candidate, stable }) => Cs::new(
            Method::TwoSampleCs,
            (candidate.n, stable.n),
            two(
                candidate.stats_bounded(0.0, 1.0),
                stable.stats_bounded(0.0, 1.0),
            ),
        ),
        (
            MetricKind::Mean { .. } | MetricKind::ErrorRate { .. },
            MetricData::Proportions { candidate, stable },
        ) => Cs::new(
            Method::ProportionCs,
            (candidate.n, stable.n),
            two(candidate.stats(), stable.stats()),
        ),
        (
            MetricKind::Mean { .. } | MetricKind::ErrorRate { .. },
            MetricData::UnitRates {
                candidate,
                stable,
                units,
            },
        ) => {
            let s = units.difference_stats(count_floor(candidate) + count_floor(stable));
            let df = joint_df(units);
            Cs::new(
                Method::ProportionDeltaCs,
                (candidate.n, stable.n),
                move |a| s.map(|s| unit_cs(&s, df, a, t)),
            )
            .over_joint_units(units)
        }
        (MetricKind::WinRate { .. }, MetricData::WinTieLoss { wins, ties, losses }) => {
            // Each pair scores 1, ½ or 0 for the candidate.
            let m = Moments {
                n: wins + ties + losses,
                sum: *wins as f64 + 0.5 * *ties as f64,
                sum_sq: *wins as f64 + 0.25 * *ties as f64,
            };
            let s = m.stats_bounded(0.0, 1.0);
            Cs::new(Method::WinRateCs, (m.n, m.n), move |a| {
                s.map(|s| one_sample_cs(&s, a, t))
            })
        }
        (
            MetricKind::LatencyTail { .. },
            MetricData::Exceedance {
                candidate_above,
                stable_quantile,
                candidate_quantile,
                candidate_units,
            },
        ) => {
            if let (Some(sq), Some(cq)) = (stable_quantile, candidate_quantile)
                && *sq > 0.0
            {
                e.note = Some(format!(
                    "quantile ratio candidate/stable {:.3} ({cq:.1} / {sq:.1})",
                    cq / sq
                ));
            }
            let c = *candidate_above;
            match candidate_units {
                Some(u) => {
                    let s = u.stats(count_floor(&c));
                    let df = df(u.units);
                    Cs::new(Method::ExceedanceDeltaCs, (c.n, c.n), move |a| {
                        s.map(|s| unit_cs(&s, df, a, t))
                    })
                    .over_units(u, u)
                }
                None => Cs::new(Method::ExceedanceCs, (c.n, c.n), move |a| {
                    c.stats().map(|s| one_sample_cs(&s, a, t))
                }),
            }
        }
        (
            MetricKind::LatencyTail { quantile, .. },
            MetricData::UnitTail {
                candidate_above,
                stable_above,
                threshold_ms,
                stable_quantile,
                candidate_quantile,
                units,
            },
        ) => {
            let rate = |c: &Count| c.rate().map_or("none".to_owned(), |r| format!("{r:.4}"));
            let mut note = format!(
                "threshold {threshold_ms:.1} ms: candidate share above {}, stable's {}",
                rate(candidate_above),
                rate(stable_above)
            );
            if let (Some(sq), Some(cq)) = (stable_quantile, candidate_quantile)
                && *sq > 0.0
            {
                note.push_str(&format!(
                    "; quantile ratio candidate/stable {:.3} ({cq:.1} / {sq:.1})",
                    cq / sq
                ));
            }
            e.note = Some(note);
            // The difference of shares, on the scale of the share above stable's quantile.
            let shift = 1.0 - quantile;
            let s =
                units.difference_stats(count_floor(candidate_above) + count_floor(stable_above));
            let df = joint_df(units);
            Cs::new(
                Method::ExceedanceDifferenceDeltaCs,
                (candidate_above.n, stable_above.n),
                move |a| s.map(|s| unit_cs(&s, df, a, t).shifted(shift)),
            )
            .over_joint_units(units)
        }
        (MetricKind::CostRatio { .. }, MetricData::Cost { candidate, stable }) => {
            let (c, s) = (candidate.stats(), stable.stats());
            Cs::new(Method::RatioCs, (candidate.n, stable.n), move |a| {
                match (c, s) {
                    (Some(c), Some(s)) => ratio_cs(&c, &s, a, t),
                    _ => None,
                }
            })
        }
        (
            MetricKind::CostRatio { .. },
            MetricData::UnitCost {
                candidate,
                stable,
                units,
            },
        ) => {
            // The request-level variance of the ratio is the floor (as `ratio_cs` has it).
            let floor = match (candidate.stats(), stable.stats()) {
                (Some(c), Some(s)) if s.mean > 0.0 => {
                    let f = c.mean / s.mean;
                    (c.var / c.n + f * f * s.var / s.n) / (s.mean * s.mean)
                }
                _ => f64::INFINITY,
            };
            let s = units.ratio_stats(floor);
            let df = joint_df(units);
            Cs::new(Method::RatioDeltaCs, (candidate.n, stable.n), move |a| {
                s.map(|s| unit_cs(&s, df, a, t))
            })
            .over_joint_units(units)
        }
        (
            MetricKind::LatencyTail { .. },
            MetricData::Between {
                lower,
                upper,
                upper_weight,
            },
        ) => return between(kind, lower, upper, *upper_weight, t, e),
        (
            MetricKind::ErrorRate { .. } | MetricKind::LatencyTail { .. },
            MetricData::WithPairs {
                unpaired,
                pairs,
                units,
            },
        ) => {
            return Some(with_pairs(
                kind,
                cell_cs(kind, unpaired, t, e)?,
                pairs,
                units,
                t,
                e,
            ));
        }
        _ => return None,
    })
}

/// A latency tail interpolated between the two rungs that bracket stable's quantile
/// (`MetricData::Between`): each rung's sequence at half the α, combined with weight `w` on the
/// upper one. Both cover at once with probability ≥ 1 − α (union bound), and when they do their
/// convex combination covers the interpolated difference for any `w`, so a weight read off the
/// data (stable's shares at the two rungs) keeps the guarantee. Fails closed: no sequence at one
/// rung is no sequence. The evidence's method, counts and units are the heavier rung's.
fn between<'a>(
    kind: &MetricKind,
    lower: &'a MetricData,
    upper: &'a MetricData,
    w: f64,
    t: f64,
    e: &mut Evidence,
) -> Option<Cs<'a>> {
    let lo = cell_cs(kind, lower, t, e)?;
    let lo_note = e.note.take();
    let hi = cell_cs(kind, upper, t, e)?;
    let hi_note = e.note.take();
    let w = if w.is_nan() { 0.5 } else { w.clamp(0.0, 1.0) };
    let side = |n: Option<String>| n.unwrap_or_else(|| "no data".to_owned());
    e.note = Some(format!(
        "interpolated between the rungs either side of stable's quantile, weight {w:.2} on the \
         upper one (where stable's interpolated share is 1 − q), each at α/2; lower: {}; upper: {}",
        side(lo_note),
        side(hi_note)
    ));
    let heavier = if w > 0.5 { &hi } else { &lo };
    let (method, n, units) = (heavier.method, heavier.n, heavier.units);
    let (a, b) = (lo.cs, hi.cs);
    Some(Cs {
        method,
        cs: Box::new(move |alpha| match (a(alpha / 2.0), b(alpha / 2.0)) {
            (Some(x), Some(y)) => Some(x.between(&y, w)),
            _ => None,
        }),
        n,
        units,
    })
}

/// "Pairs first": the two-sample sequence of an error rate or latency tail intersected with the
/// same metric's sequence on the paired requests (differences per pair summed per unit, delta
/// method), each at half the α. The paired comparison removes the between-unit variation (one
/// heavy tenant on one side no longer keeps the interval wide); the two-sample one uses every
/// request. Which one is narrower names the method, the counts and the units of the evidence.
/// The split is fixed by the data's shape (`WithPairs` whenever the stage samples pairs), never
/// by which sequence happens to be tighter, so the intersection keeps its 1 − α guarantee.
fn with_pairs<'a>(
    kind: &MetricKind,
    two: Cs<'a>,
    pairs: &'a Moments,
    units: &'a UnitRatio,
    t: f64,
    e: &mut Evidence,
) -> Cs<'a> {
    let floor = pairs
        .stats_bounded(-1.0, 1.0)
        .map_or(f64::INFINITY, |s| s.var / s.n);
    let ps = units.stats(floor);
    // A latency tail's paired difference is the candidate's excess over stable's own share on
    // the same prompts; the nominal 1 − q puts it on the share's scale.
    let shift = match *kind {
        MetricKind::LatencyTail { quantile, .. } => 1.0 - quantile,
        _ => 0.0,
    };
    let df = df(units.units);
    let paired = move |a: f64| ps.map(|s| unit_cs(&s, df, a, t).shifted(shift));
    let probe = 0.05 / 2.0;
    let width = |iv: Option<Interval>| iv.map_or(f64::INFINITY, |iv| iv.width());
    let (w_two, w_paired) = (width((two.cs)(probe)), width(paired(probe)));
    let paired_tighter = w_paired < w_two;
    let what = format!(
        "paired requests: {} pairs in {} units, width {}; two-sample width {}; intersected at α/2 each",
        pairs.n,
        units.units,
        fmt_width(w_paired),
        fmt_width(w_two)
    );
    e.note = Some(match e.note.take() {
        Some(n) => format!("{n}; {what}"),
        None => what,
    });
    let Cs {
        method,
        cs,
        n,
        units: two_units,
    } = two;
    let combined = move |a: f64| match (cs(a / 2.0), paired(a / 2.0)) {
        (Some(x), Some(y)) if paired_tighter => Some(y.intersect(&x)),
        (Some(x), Some(y)) => Some(x.intersect(&y)),
        (x, y) => x.or(y),
    };
    if paired_tighter {
        Cs::new(Method::PairedRequestsDeltaCs, (pairs.n, pairs.n), combined)
            .over_units(units, units)
    } else {
        Cs {
            method,
            cs: Box::new(combined),
            n,
            units: two_units,
        }
    }
}

fn fmt_width(w: f64) -> String {
    if w.is_finite() {
        format!("{w:.4}")
    } else {
        "none".to_owned()
    }
}

/// The error-rate ceiling: roll back when the candidate's own rate is surely above it; do not
/// promote while its observed rate is above it.
fn ceiling_check(
    e: &mut Evidence,
    stats: Option<SampleStats>,
    df: Option<f64>,
    method: Method,
    ceiling: f64,
    alphas: &Alphas,
    t: f64,
) {
    let Some(s) = stats else { return };
    let rb = match df {
        Some(df) => unit_cs(&s, df, alphas.rollback, t),
        None => one_sample_cs(&s, alphas.rollback, t),
    };
    if rb.lo > ceiling {
        e.verdict = Verdict::Worse;
        e.method = method;
        e.unit = method.unit_of_analysis();
        e.bound = ceiling;
        e.estimate = Some(rb.estimate);
        e.interval = Some((rb.lo, rb.hi));
        e.alpha = alphas.rollback;
        e.note = Some(format!("candidate error rate above the ceiling {ceiling}"));
    } else if s.mean > ceiling && matches!(e.verdict, Verdict::NonInferior | Verdict::Deferred) {
        e.verdict = Verdict::Inconclusive;
        e.note = Some(format!(
            "candidate error rate {:.4} above the ceiling {ceiling}",
            s.mean
        ));
    }
}

/// The sample-ratio check on units: the distinct units each variant served against the
/// configured shares (χ² goodness of fit at `srm_alpha`). The request split is reported beside
/// it for information only (a sticky heavy user legitimately moves it).
fn srm(policy: &GatePolicy, summaries: &StageSummaries) -> Option<Evidence> {
    let a = summaries.assignment.as_ref()?;
    let sides = [&a.candidate, &a.stable];
    let observed = sides.map(|v| v.units);
    let shares = sides.map(|v| v.share);
    let total: u64 = observed.iter().sum();
    let (stat, p) = srm_chi_square(&observed, &shares)?;
    let shown: Vec<String> = sides
        .iter()
        .map(|v| {
            format!(
                "{} {:.4} of units observed vs {:.4} configured",
                v.variant,
                v.units as f64 / total as f64,
                v.share
            )
        })
        .collect();
    let mut note = format!("{} (units: χ² = {stat:.2}, p = {p:.3e})", shown.join(", "));
    let requests = sides.map(|v| v.requests);
    if let Some((rstat, rp)) = srm_chi_square(&requests, &shares) {
        note.push_str(&format!(
            "; requests {} / {} (χ² = {rstat:.2}, p = {rp:.3e}; information only)",
            requests[0], requests[1]
        ));
    }
    Some(Evidence {
        metric: "sample_ratio".to_owned(),
        cohort: "all".to_owned(),
        estimate: Some(stat),
        interval: None,
        margin: 0.0,
        bound: policy.srm_alpha,
        direction: Direction::HigherIsBetter,
        candidate_n: a.candidate.requests,
        stable_n: a.stable.requests,
        method: Method::ChiSquareSrm,
        unit: Method::ChiSquareSrm.unit_of_analysis(),
        units: Some((a.candidate.units, a.stable.units)),
        alpha: policy.srm_alpha,
        verdict: if p < policy.srm_alpha {
            Verdict::Blocked
        } else {
            Verdict::Passed
        },
        note: Some(note),
    })
}

fn abstentions(policy: &GatePolicy, summaries: &StageSummaries) -> Vec<Evidence> {
    summaries
        .abstentions
        .iter()
        .map(|a| {
            let rate = Count::new(a.abstained, a.attempts).rate().unwrap_or(0.0);
            let blocked =
                a.attempts >= policy.abstention_min_count && rate > policy.max_abstention_rate;
            Evidence {
                metric: format!("judge_abstention:{}", a.variant),
                cohort: "all".to_owned(),
                estimate: Some(rate),
                interval: None,
                margin: 0.0,
                bound: policy.max_abstention_rate,
                direction: Direction::LowerIsBetter,
                candidate_n: a.abstained,
                stable_n: a.attempts,
                method: Method::AbstentionRate,
                unit: Method::AbstentionRate.unit_of_analysis(),
                units: None,
                alpha: 0.0,
                verdict: if blocked {
                    Verdict::Blocked
                } else {
                    Verdict::Passed
                },
                note: Some(format!(
                    "{} of {} judge attempts abstained",
                    a.abstained, a.attempts
                )),
            }
        })
        .collect()
}
