//! Statistics glue for the report: store moments → the gate's anytime-valid intervals
//! (`gate::sequential`), rates, latency distributions, the sample-ratio test, and the classic
//! fixed-sample tests printed for reference (Welch's t from `gate::sequential::welch`, which
//! uses statrs; Mann-Whitney U from `statrs::stats_tests`).
//!
//! Pure: no I/O. Never invents a number: too little data gives `None`.

use statrs::stats_tests::Alternative;
use statrs::stats_tests::mannwhitneyu::{MannWhitneyUMethod, mannwhitneyu};

use super::model::{Difference, DifferenceMethod, Distribution, WinTieLoss};
use crate::gate::sequential::{self, SampleStats};
use crate::store::{LatencyHistogram, Moments};

/// The store's moments as the gate's.
pub fn gate_moments(m: &Moments) -> sequential::Moments {
    sequential::Moments {
        n: m.count,
        sum: m.sum,
        sum_sq: m.sum_sq,
    }
}

fn stats(m: &Moments) -> Option<SampleStats> {
    gate_moments(m).stats()
}

/// `num / den`, `None` when `den` is 0.
pub fn rate(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// candidate − stable on matched pairs: the gate's one-sample confidence sequence on the
/// per-pair differences.
pub fn paired_difference(paired: &Moments, alpha: f64, target_n: f64) -> Option<Difference> {
    let s = stats(paired)?;
    let iv = sequential::one_sample_cs(&s, alpha, target_n);
    Some(Difference {
        estimate: iv.estimate,
        lo: iv.lo,
        hi: iv.hi,
        n: paired.count,
        method: DifferenceMethod::Paired,
    })
}

/// candidate − stable from two independent samples (when no pair has both scores).
pub fn two_sample_difference(
    candidate: &Moments,
    stable: &Moments,
    alpha: f64,
    target_n: f64,
) -> Option<Difference> {
    let (c, s) = (stats(candidate)?, stats(stable)?);
    let iv = sequential::two_sample_cs(&c, &s, alpha, target_n);
    Some(Difference {
        estimate: iv.estimate,
        lo: iv.lo,
        hi: iv.hi,
        n: candidate.count + stable.count,
        method: DifferenceMethod::TwoSample,
    })
}

/// Paired when at least two pairs have both scores, two-sample otherwise.
pub fn difference(
    paired: &Moments,
    candidate: &Moments,
    stable: &Moments,
    alpha: f64,
    target_n: f64,
) -> Option<Difference> {
    paired_difference(paired, alpha, target_n)
        .or_else(|| two_sample_difference(candidate, stable, alpha, target_n))
}

/// Win/tie/loss with the win rate (ties count half) and its confidence sequence — the same
/// scoring the gate's `win_rate` metric uses.
pub fn win_tie_loss(wins: u64, ties: u64, losses: u64, alpha: f64, target_n: f64) -> WinTieLoss {
    let m = sequential::Moments {
        n: wins + ties + losses,
        sum: wins as f64 + 0.5 * ties as f64,
        sum_sq: wins as f64 + 0.25 * ties as f64,
    };
    let interval = m
        .stats()
        .map(|s| sequential::one_sample_cs(&s, alpha, target_n))
        .map(|iv| (iv.lo, iv.hi));
    WinTieLoss {
        wins,
        ties,
        losses,
        win_rate: (m.n > 0).then(|| m.sum / m.n as f64),
        interval,
    }
}

/// Quantiles from the log-bucketed histogram, the mean from the exact moments.
pub fn distribution(m: &Moments, h: &LatencyHistogram, with_histogram: bool) -> Distribution {
    Distribution {
        count: m.count,
        mean: m.mean(),
        p50: h.quantile(0.50),
        p95: h.quantile(0.95),
        p99: h.quantile(0.99),
        histogram: if with_histogram {
            h.counts
                .iter()
                .map(|(&b, &c)| (LatencyHistogram::upper_bound(b), c))
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// Welch's t of candidate − stable: (t, df, two-sided p).
pub fn welch(candidate: &Moments, stable: &Moments) -> Option<(f64, f64, f64)> {
    let w = sequential::welch(&stats(candidate)?, &stats(stable)?)?;
    Some((w.t, w.df, w.p))
}

/// Mann-Whitney U of the candidate sample against the stable one: (U, two-sided p), with
/// statrs choosing exact or normal-approximation p-values (ties force the approximation).
/// Non-finite values are dropped first.
pub fn mann_whitney(candidate: &[f64], stable: &[f64]) -> Option<(f64, f64)> {
    let c: Vec<f64> = candidate
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    let s: Vec<f64> = stable.iter().copied().filter(|x| x.is_finite()).collect();
    if c.is_empty() || s.is_empty() {
        return None;
    }
    mannwhitneyu(&c, &s, MannWhitneyUMethod::Automatic, Alternative::TwoSided).ok()
}

/// Chi-square goodness of fit of served counts against configured shares: (χ², p).
pub fn sample_ratio(observed: &[u64], shares: &[f64]) -> Option<(f64, f64)> {
    sequential::srm_chi_square(observed, shares)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(xs: &[f64]) -> Moments {
        let mut m = Moments::default();
        for &x in xs {
            m.add(1, x, x * x);
        }
        m
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn paired_interval_is_the_gates_confidence_sequence() {
        // Differences 1, 0, 1, 0, … (n = 100): mean 0.5, sample variance 100/396 = 0.252525.
        let xs: Vec<f64> = (0..100).map(|i| f64::from(i % 2)).collect();
        let d = paired_difference(&moments(&xs), 0.05, 1000.0).unwrap();
        assert_eq!(d.method, DifferenceMethod::Paired);
        assert_eq!(d.n, 100);
        assert!(close(d.estimate, 0.5, 1e-12));
        // Half-width by hand: ρ² = (−2 ln α + ln(−2 ln α + 1)) / N*, then Theorem 2.2.
        let l = -2.0 * 0.05f64.ln();
        let r2 = (l + (l + 1.0).ln()) / 1000.0;
        let a = 100.0 * r2 + 1.0;
        let hw = (100.0f64 / 396.0).sqrt()
            * (2.0 * a / (100.0 * 100.0 * r2) * (a.sqrt() / 0.05).ln()).sqrt();
        assert!(close(d.hi - d.estimate, hw, 1e-12), "{d:?} vs {hw}");
        assert!(close(d.estimate - d.lo, hw, 1e-12));
        // Wider than the fixed-n 95% interval (1.96 σ/√n = 0.0985): it is valid at every n.
        assert!(hw > 1.96 * (100.0f64 / 396.0).sqrt() / 10.0);
    }

    #[test]
    fn falls_back_to_two_sample_and_needs_two_observations() {
        let c = moments(&[4.0, 5.0, 3.0]);
        let s = moments(&[2.0, 3.0]);
        let d = difference(&Moments::default(), &c, &s, 0.05, 1000.0).unwrap();
        assert_eq!(d.method, DifferenceMethod::TwoSample);
        assert!(close(d.estimate, 4.0 - 2.5, 1e-12));
        assert_eq!(d.n, 5);
        assert!(difference(&moments(&[1.0]), &moments(&[1.0]), &s, 0.05, 1e3).is_none());
    }

    #[test]
    fn win_rate_counts_ties_half() {
        let w = win_tie_loss(6, 2, 2, 0.05, 1000.0);
        assert_eq!(w.win_rate, Some(0.7));
        let (lo, hi) = w.interval.unwrap();
        assert!(lo < 0.7 && hi > 0.7);
        assert_eq!(win_tie_loss(0, 0, 0, 0.05, 1000.0).win_rate, None);
    }

    #[test]
    fn mann_whitney_matches_scipy() {
        // scipy.stats.mannwhitneyu documentation example: U = 17, exact two-sided p = 1/9.
        let male = [19.0, 22.0, 16.0, 29.0, 24.0];
        let female = [20.0, 11.0, 17.0, 12.0];
        let (u, p) = mann_whitney(&male, &female).unwrap();
        assert_eq!(u, 17.0);
        assert!(close(p, 1.0 / 9.0, 1e-12), "{p}");
        assert!(mann_whitney(&[f64::NAN], &female).is_none());
    }

    #[test]
    fn welch_matches_the_published_table() {
        // n = 10 each, variances 1, mean difference 2.100922·√0.2: t = 2.100922 at df 18 has
        // two-sided p = 0.05 (Student's t table).
        let shift = 2.100_922 * 0.2f64.sqrt();
        let base: Vec<f64> = (0..10)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 } * (0.9f64).sqrt())
            .collect();
        let c: Vec<f64> = base.iter().map(|x| x + shift).collect();
        let (t, df, p) = welch(&moments(&c), &moments(&base)).unwrap();
        assert!(close(df, 18.0, 1e-9));
        assert!(close(t, 2.100_922, 1e-9));
        assert!(close(p, 0.05, 1e-6), "{p}");
    }

    #[test]
    fn distribution_reads_quantiles_from_buckets() {
        let mut h = LatencyHistogram::default();
        let mut m = Moments::default();
        for ms in 1..=100 {
            h.record(f64::from(ms));
            m.add(1, f64::from(ms), f64::from(ms * ms));
        }
        let d = distribution(&m, &h, true);
        assert_eq!(d.count, 100);
        assert_eq!(d.mean, Some(50.5));
        let p95 = d.p95.unwrap();
        assert!((95.0..=95.0 * 1.05).contains(&p95), "{p95}");
        assert_eq!(d.histogram.iter().map(|(_, c)| c).sum::<u64>(), 100);
        assert!(distribution(&m, &h, false).histogram.is_empty());
        assert_eq!(rate(1, 0), None);
    }
}
