//! The latency thresholds ("rungs") at which each unit's slow requests are counted, so that the
//! gate can compare the share of requests above stable's quantile *over units* (the unit of
//! randomization) without reading one row per unit on every tick.
//!
//! A threshold chosen from the data (stable's p95) moves as requests arrive, and the per-unit
//! sums of squares the delta method needs cannot be re-derived for a new threshold from sums
//! alone. So the writer keeps, per unit and side, how many successful requests were slower than
//! each of [`RUNGS`] fixed thresholds, and the sums over units of those counts (their squares
//! and cross-products) per rung; the gate then reads the rung nearest stable's quantile.
//!
//! The rungs are every [`STRIDE`]th boundary of the latency histogram's buckets
//! (`capture::histogram`): 1.05^12 ≈ 1.8 ms, 1.05^24 ≈ 3.2 ms, … up to 1.05^240 ≈ 121 s, each
//! about 1.8× the one before, so the rung the gate uses is within a factor √1.8 ≈ 1.34 of
//! stable's quantile (in log scale, the nearest one). A request is above a rung when its bucket
//! is above the rung's bucket: the same test the histograms make, exact on bucket boundaries.
//!
//! The gate compares the tail at the two rungs that bracket stable's quantile ([`bracket`]) and
//! interpolates between them (`gate::MetricData::Between`): at a single rung 1.8× from the
//! quantile stable's share above it is far from 1 − q (≈ 1% or ≈ 20% for log-normal
//! latencies), and an additive margin there is a different hypothesis.
//!
//! Pure: no I/O.

use super::histogram::LatencyHistogram;

/// How many rungs are kept.
pub const RUNGS: usize = 20;
/// Buckets between two rungs.
pub const STRIDE: u32 = 12;

/// The histogram bucket whose upper bound is rung `r`.
pub fn rung_bucket(r: usize) -> u32 {
    STRIDE * (r.min(RUNGS - 1) as u32 + 1)
}

/// Rung `r`'s threshold in ms.
pub fn rung_ms(r: usize) -> f64 {
    LatencyHistogram::upper_bound(rung_bucket(r))
}

/// How many rungs a request in histogram bucket `bucket` is slower than (rungs `0..n`).
pub fn rungs_below(bucket: u32) -> usize {
    ((bucket.saturating_sub(1) / STRIDE) as usize).min(RUNGS)
}

/// The rung nearest `ms` on a log scale (the lowest or highest rung when `ms` is outside the
/// ladder); `None` for a threshold that is not a positive number.
pub fn nearest_rung(ms: f64) -> Option<usize> {
    if !(ms.is_finite() && ms > 0.0) {
        return None;
    }
    (0..RUNGS).min_by(|&a, &b| {
        let d = |r: usize| (rung_ms(r).ln() - ms.ln()).abs();
        d(a).total_cmp(&d(b))
    })
}

/// The rungs either side of `ms`: the highest rung at or below it and the one above (`None`
/// when `ms` is at or above the top rung); rung 0 alone when `ms` is below the ladder. `None`
/// for a threshold that is not a positive number.
pub fn bracket(ms: f64) -> Option<(usize, Option<usize>)> {
    if !(ms.is_finite() && ms > 0.0) {
        return None;
    }
    if ms < rung_ms(0) {
        return Some((0, None));
    }
    let lower = (0..RUNGS).rev().find(|&r| rung_ms(r) <= ms).unwrap_or(0);
    Some((lower, (lower + 1 < RUNGS).then_some(lower + 1)))
}

/// The weight on the upper rung that puts stable's interpolated share above the two rungs at
/// `target` (1 − q): `(1 − w)·lower + w·upper = target`, with `lower` and `upper` stable's
/// shares above each rung, clamped to 0–1 (the quantile estimate and the rung counts come from
/// the same requests but round differently). Half-way when the two shares are equal (no
/// stable request between the rungs).
pub fn upper_weight(lower: f64, upper: f64, target: f64) -> f64 {
    let span = lower - upper;
    if !(span.is_finite() && span > 0.0) {
        return 0.5;
    }
    ((lower - target) / span).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_above_exactly_the_rungs_below_its_value() {
        for ms in [0.5, 1.0, 1.7, 1.8, 1.9, 50.0, 999.0, 1_000.0, 30_000.0, 1e9] {
            let n = rungs_below(LatencyHistogram::bucket_of(ms));
            for r in 0..RUNGS {
                // Above a rung iff the value exceeds its threshold (up to the bucket's 5%).
                let above = r < n;
                let threshold = rung_ms(r);
                if ms > threshold * 1.05 {
                    assert!(above, "{ms} ms should be above rung {r} ({threshold} ms)");
                }
                if ms <= threshold {
                    assert!(
                        !above,
                        "{ms} ms should not be above rung {r} ({threshold} ms)"
                    );
                }
            }
        }
        assert_eq!(rungs_below(0), 0);
        assert_eq!(rungs_below(rung_bucket(0)), 0);
        assert_eq!(rungs_below(rung_bucket(0) + 1), 1);
        assert_eq!(rungs_below(u32::MAX), RUNGS);
    }

    #[test]
    fn the_nearest_rung_is_within_the_ladders_half_step() {
        let half_step = 1.05f64.powi(STRIDE as i32).sqrt() * 1.000_001;
        for ms in [2.0, 10.0, 95.0, 250.0, 1_234.0, 8_000.0, 100_000.0] {
            let r = nearest_rung(ms).unwrap();
            let ratio = rung_ms(r) / ms;
            assert!(
                ratio <= half_step && ratio >= 1.0 / half_step,
                "{ms} → rung {r} at {}",
                rung_ms(r)
            );
        }
        assert_eq!(nearest_rung(0.01), Some(0));
        assert_eq!(nearest_rung(1e12), Some(RUNGS - 1));
        assert_eq!(nearest_rung(f64::NAN), None);
        assert_eq!(nearest_rung(0.0), None);
        assert!((rung_ms(0) - 1.05f64.powi(12)).abs() < 1e-9);
        assert!(rung_ms(RUNGS - 1) > 100_000.0 && rung_ms(RUNGS - 1) < 130_000.0);
    }

    #[test]
    fn a_quantile_is_bracketed_by_the_rungs_either_side() {
        for ms in [2.0, 10.0, 95.0, 1_540.0, 8_000.0, 100_000.0] {
            let (lo, hi) = bracket(ms).unwrap();
            let hi = hi.unwrap();
            assert_eq!(hi, lo + 1);
            assert!(
                rung_ms(lo) <= ms && ms < rung_ms(hi),
                "{ms} in rungs {lo}..{hi}"
            );
        }
        // Exactly on a rung: that rung is the lower one.
        assert_eq!(bracket(rung_ms(5)), Some((5, Some(6))));
        assert_eq!(bracket(0.5), Some((0, None)));
        assert_eq!(bracket(1e12), Some((RUNGS - 1, None)));
        assert_eq!(bracket(f64::NAN), None);
        assert_eq!(bracket(-1.0), None);
    }

    #[test]
    fn the_upper_weight_puts_stables_share_at_the_target() {
        // Stable: 19.5% above the lower rung, 1% above the upper one; 5% wanted.
        let w = upper_weight(0.195, 0.010, 0.05);
        assert!(((1.0 - w) * 0.195 + w * 0.010 - 0.05).abs() < 1e-12);
        assert!((w - 0.145 / 0.185).abs() < 1e-12);
        assert_eq!(upper_weight(0.04, 0.01, 0.05), 0.0);
        assert_eq!(upper_weight(0.20, 0.08, 0.05), 1.0);
        assert_eq!(upper_weight(0.05, 0.05, 0.05), 0.5);
        assert_eq!(upper_weight(f64::NAN, 0.05, 0.05), 0.5);
    }
}
