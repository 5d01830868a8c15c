//! Latency histograms with log-spaced buckets, so that quantiles can be read back from an
//! aggregate query (`GROUP BY latency_bucket`) instead of from every row.
//!
//! Bucket 0 holds values ≤ 1 ms; bucket `i ≥ 1` holds `(1.05^(i-1), 1.05^i]` ms. Every quantile is
//! therefore known to within 5% (relative), with at most [`MAX_BUCKET`] + 1 buckets per variant.
//! The bucket is computed in Rust when a row is written and stored beside the exact value.
//! Pure: no I/O.

use std::collections::BTreeMap;

/// Relative width of a bucket.
pub const GROWTH: f64 = 1.05;
/// Highest bucket (1.05^460 ms is about 5.6 × 10^9 ms, far beyond any timeout).
pub const MAX_BUCKET: u32 = 460;

/// Counts per bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyHistogram {
    pub counts: BTreeMap<u32, u64>,
}

impl LatencyHistogram {
    /// The bucket a value (in ms) falls in.
    pub fn bucket_of(ms: f64) -> u32 {
        if !ms.is_finite() || ms <= 1.0 {
            return if ms.is_nan() || ms <= 1.0 {
                0
            } else {
                MAX_BUCKET
            };
        }
        let i = (ms.ln() / GROWTH.ln()).ceil();
        if i >= f64::from(MAX_BUCKET) {
            MAX_BUCKET
        } else {
            // i is in 1..MAX_BUCKET here.
            i as u32
        }
    }

    /// The largest value (ms) bucket `bucket` holds.
    pub fn upper_bound(bucket: u32) -> f64 {
        GROWTH.powi(bucket.min(MAX_BUCKET) as i32)
    }

    /// The smallest value (ms, exclusive) bucket `bucket` holds; 0 for bucket 0.
    pub fn lower_bound(bucket: u32) -> f64 {
        if bucket == 0 {
            0.0
        } else {
            Self::upper_bound(bucket - 1)
        }
    }

    pub fn record(&mut self, ms: f64) {
        *self.counts.entry(Self::bucket_of(ms)).or_default() += 1;
    }

    pub fn add(&mut self, bucket: u32, count: u64) {
        *self.counts.entry(bucket).or_default() += count;
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The `q`-quantile (0–1), as the upper bound of the bucket it falls in (so never below the
    /// true value and at most 5% above it). `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (&bucket, &count) in &self.counts {
            seen += count;
            if seen >= rank {
                return Some(Self::upper_bound(bucket));
            }
        }
        self.counts
            .keys()
            .next_back()
            .map(|&b| Self::upper_bound(b))
    }

    /// Estimated number of values above `threshold_ms` (what the gate counts as "slower than
    /// stable's p95"): every value in higher buckets, plus the share of the threshold's own bucket
    /// above it, assuming values spread evenly within that bucket.
    pub fn estimate_above(&self, threshold_ms: f64) -> f64 {
        let b = Self::bucket_of(threshold_ms);
        let higher: u64 = self.counts.range(b + 1..).map(|(_, &c)| c).sum();
        let own = self.counts.get(&b).copied().unwrap_or(0) as f64;
        let (lo, hi) = (Self::lower_bound(b), Self::upper_bound(b));
        let share = if hi > lo {
            ((hi - threshold_ms) / (hi - lo)).clamp(0.0, 1.0)
        } else {
            0.0
        };
        higher as f64 + own * share
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (&b, &c) in &other.counts {
            self.add(b, c);
        }
    }

    /// Takes `other`'s counts out of this histogram (a sub-population of it), bucket by
    /// bucket, never below zero; emptied buckets are removed.
    pub fn subtract(&mut self, other: &LatencyHistogram) {
        for (b, c) in &other.counts {
            if let Some(own) = self.counts.get_mut(b) {
                *own = own.saturating_sub(*c);
                if *own == 0 {
                    self.counts.remove(b);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bracket_the_value() {
        for ms in [0.0, 0.5, 1.0, 1.01, 7.0, 100.0, 1234.5, 60_000.0] {
            let b = LatencyHistogram::bucket_of(ms);
            assert!(ms <= LatencyHistogram::upper_bound(b), "{ms}");
            assert!(ms > LatencyHistogram::lower_bound(b) || b == 0, "{ms}");
        }
        assert_eq!(LatencyHistogram::bucket_of(f64::INFINITY), MAX_BUCKET);
        assert_eq!(LatencyHistogram::bucket_of(f64::NAN), 0);
    }

    #[test]
    fn quantiles_within_five_percent() {
        let mut h = LatencyHistogram::default();
        for ms in 1..=1000 {
            h.record(f64::from(ms));
        }
        for (q, exact) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let est = h.quantile(q).unwrap();
            assert!(est >= exact && est <= exact * GROWTH, "q{q}: {est}");
        }
        // Exactly 50 values are above 950 ms; the estimate interpolates within one bucket.
        let above = h.estimate_above(950.0);
        assert!((48.0..=52.0).contains(&above), "{above}");
        assert_eq!(h.estimate_above(2000.0), 0.0);
        assert!((h.estimate_above(0.5) - 1000.0).abs() < 1.0);
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
    }
}
