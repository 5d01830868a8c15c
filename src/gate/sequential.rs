//! Anytime-valid intervals and the fixed-sample tests the gate compares itself with.
//!
//! The gate re-checks its data every controller tick, so a fixed-sample interval would be
//! "peeked at" thousands of times and its error rate would grow far above α. Instead every
//! interval here is an **asymptotic confidence sequence** (AsympCS): Waudby-Smith, Arnold, Wu,
//! Howard & Ramdas, "Time-uniform central limit theory and asymptotic confidence sequences"
//! (arXiv:2103.06476, 2021; Annals of Statistics 2024), Theorem 2.2, the normal-mixture boundary
//! that GrowthBook's and TensorZero's sequential tests use. For n observations with estimated
//! standard deviation σ̂, the two-sided (1 − α) sequence is
//!
//! ```text
//!   mean ± σ̂ · sqrt( 2(nρ² + 1) / (n²ρ²) · ln( sqrt(nρ² + 1) / α ) )
//! ```
//!
//! which holds for all n simultaneously (asymptotically). ρ is a tuning parameter that makes the
//! sequence tightest near a target sample size N*: ρ² = (−2 ln α + ln(−2 ln α + 1)) / N*
//! (the paper's approximate optimum; GrowthBook's `sequential_rho`). The authors' R reference is
//! `std_conjmix_margin` in WannabeSmith/drconfseq. Two-sample differences use GrowthBook's
//! convention: N = n₁ + n₂ and σ̂ = sqrt(N · Var(Δ̂)).
//!
//! Unit-level (clustered) sequences, whose variance is estimated from G units, are
//! Studentized look by look (`unit_cs`, `student_factor`): the normal quantile implied at each
//! look is replaced by Student's t quantile at the same level with G − 1 degrees of freedom
//! (the smaller side's units − 1 for a two-sided comparison), the small-G correction of Cameron
//! & Miller, "A Practitioner's Guide to Cluster-Robust Inference" (J. Human Resources, 2015).
//!
//! Owns: sufficient statistics (`Moments`, `Count`), interval arithmetic, the chi-square
//! sample-ratio test and Welch's t-test (the latter only for the reference gate in `simulate`).
//! Never: reads clocks, stores anything, or decides (that is `evaluate`). Fails closed: too little
//! data gives `None`, which the gate treats as "not shown", never as "fine".

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF, StudentsT};

/// Sufficient statistics of a real-valued sample: count, sum and sum of squares. Storage can
/// compute them with `COUNT(x), SUM(x), SUM(x*x)`; two of them add up (`merge`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    pub n: u64,
    pub sum: f64,
    pub sum_sq: f64,
}

impl Moments {
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        self.sum += x;
        self.sum_sq += x * x;
    }

    pub fn merge(&mut self, other: &Moments) {
        self.n += other.n;
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
    }

    pub fn from_values(xs: &[f64]) -> Self {
        let mut m = Moments::default();
        for &x in xs {
            m.push(x);
        }
        m
    }

    /// Mean and unbiased variance; `None` below two observations.
    pub fn stats(&self) -> Option<SampleStats> {
        if self.n < 2 {
            return None;
        }
        let n = self.n as f64;
        let mean = self.sum / n;
        // Clamp: cancellation can make a tiny variance slightly negative.
        let var = ((self.sum_sq - n * mean * mean) / (n - 1.0)).max(0.0);
        Some(SampleStats { n, mean, var })
    }
}

impl Moments {
    /// Mean and a variance that never collapses to zero, for data known to lie in `[lo, hi]`
    /// (scores normalised to 0–1, their paired differences in −1…1, win/tie/loss as 1, ½, 0).
    /// The mean is the observed one; the variance is that of the sample with one pseudo-
    /// observation added, half at each end of the range — for 0/1 data exactly the shrinkage
    /// of [`Count::stats`]. Without it, eight identical paired differences (every pair scored the
    /// same, as a deterministic check at temperature 0 does) give a zero-width interval, and the
    /// gate would promote on the strength of eight pairs. `None` below two observations.
    pub fn stats_bounded(&self, lo: f64, hi: f64) -> Option<SampleStats> {
        if self.n < 2 {
            return None;
        }
        let n = self.n as f64;
        let pseudo_mean = (self.sum + 0.5 * (lo + hi)) / (n + 1.0);
        let pseudo_sq = (self.sum_sq + 0.5 * (lo * lo + hi * hi)) / (n + 1.0);
        let shrunk = (pseudo_sq - pseudo_mean * pseudo_mean).max(0.0);
        let plain = self.stats()?;
        Some(SampleStats {
            var: plain.var.max(shrunk),
            ..plain
        })
    }
}

/// A count of events among `n` trials (errors, check failures, requests above a quantile).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub hits: u64,
    pub n: u64,
}

impl Count {
    pub fn new(hits: u64, n: u64) -> Self {
        Self { hits, n }
    }

    pub fn rate(&self) -> Option<f64> {
        (self.n > 0).then(|| self.hits as f64 / self.n as f64)
    }

    /// Mean = observed rate; variance from the rate shrunk towards ½ by half an event
    /// ((k + ½)/(n + 1)), so that "no errors yet" does not give a zero-width interval.
    pub fn stats(&self) -> Option<SampleStats> {
        if self.n < 2 {
            return None;
        }
        let n = self.n as f64;
        let p = (self.hits as f64 + 0.5) / (n + 1.0);
        Some(SampleStats {
            n,
            mean: self.hits as f64 / n,
            var: p * (1.0 - p),
        })
    }
}

/// Per-unit sufficient statistics of a ratio metric Σx / Σy, where each unit (a sticky key: a
/// user or tenant) contributes its own sums x (errors, cost, paired differences, requests
/// above a threshold) and y (requests, pairs): the number of units K and Σx, Σy, Σx², Σy², Σxy
/// over units. Storage computes them with one `GROUP BY unit` inside an aggregate query; two of
/// them add up (`merge`) when their units are disjoint.
///
/// Units, not requests, are the independent draws: canarist randomizes units, and a unit's
/// requests share its propensities (a heavy user's error rate, latency and scores), so a
/// request-level variance understates the variance of the mean. The variance of the ratio is
/// the delta method's over units — Deng, Knoblich & Lu, "Applying the Delta Method in Metric
/// Analytics: A Practical Guide with Novel Ideas" (KDD 2018), §2.2 and Algorithm 1:
///
/// ```text
///   Var(X̄/Ȳ) ≈ (1/K) · ( σ²_x − 2R σ_xy + R² σ²_y ) / μ²_y,   R = X̄/Ȳ = Σx/Σy
/// ```
///
/// with σ² and σ_xy the unit-level sample (co)variances (K − 1 denominators) and μ_y = Ȳ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UnitRatio {
    pub units: u64,
    pub sum_x: f64,
    pub sum_y: f64,
    pub sum_xx: f64,
    pub sum_yy: f64,
    pub sum_xy: f64,
}

impl UnitRatio {
    /// Adds one unit with totals `x` and `y`.
    pub fn push(&mut self, x: f64, y: f64) {
        self.units += 1;
        self.sum_x += x;
        self.sum_y += y;
        self.sum_xx += x * x;
        self.sum_yy += y * y;
        self.sum_xy += x * y;
    }

    /// Adds disjoint units.
    pub fn merge(&mut self, other: &UnitRatio) {
        self.units += other.units;
        self.sum_x += other.sum_x;
        self.sum_y += other.sum_y;
        self.sum_xx += other.sum_xx;
        self.sum_yy += other.sum_yy;
        self.sum_xy += other.sum_xy;
    }

    /// Σx / Σy; `None` without any y.
    pub fn ratio(&self) -> Option<f64> {
        (self.sum_y > 0.0).then(|| self.sum_x / self.sum_y)
    }

    /// The delta-method variance of Σx/Σy over units (Deng, Knoblich & Lu 2018); `None` below
    /// two units or without any y.
    pub fn delta_variance(&self) -> Option<f64> {
        if self.units < 2 || self.sum_y <= 0.0 {
            return None;
        }
        let k = self.units as f64;
        let (mx, my) = (self.sum_x / k, self.sum_y / k);
        let r = self.sum_x / self.sum_y;
        let var_x = (self.sum_xx - k * mx * mx) / (k - 1.0);
        let var_y = (self.sum_yy - k * my * my) / (k - 1.0);
        let cov = (self.sum_xy - k * mx * my) / (k - 1.0);
        Some(((var_x - 2.0 * r * cov + r * r * var_y) / (my * my * k)).max(0.0))
    }

    /// The ratio as a sample over units, for the confidence sequences: n = K, mean = R and
    /// var = K · Var(R), so that `var / n` is the delta-method variance of the estimate.
    /// `floor` is a lower bound on Var(R) (the request-level variance of the same data, shrunk
    /// as [`Count::stats`] and [`Moments::stats_bounded`] shrink it), so that clustering can only
    /// widen an interval and a handful of identical units is never certainty.
    pub fn stats(&self, floor: f64) -> Option<SampleStats> {
        let var = self.delta_variance()?.max(floor);
        let k = self.units as f64;
        Some(SampleStats {
            n: k,
            mean: self.sum_x / self.sum_y,
            var: var * k,
        })
    }
}

/// Per-unit sums of two ratio metrics measured on the same units — the candidate's Σx_c/Σy_c
/// and stable's Σx_s/Σy_s — so that their difference (or ratio) gets a delta-method variance
/// that accounts for a unit appearing on both sides (a shadow stage mirrors stable's units to
/// the candidate; a live stage's pair sample sends candidate units to stable). Components are
/// ordered (x_c, y_c, x_s, y_s); `sums` holds their totals over units and `products` the ten
/// sums of pairwise products Σ v_i v_j (i ≤ j, row by row: 00, 01, 02, 03, 11, 12, 13, 22, 23,
/// 33). A unit seen on one side only has zeros on the other, so with disjoint units (a live
/// stage without pairs) the variance is the sum of the two sides' [`UnitRatio`] variances.
///
/// The variance is that of the linearized statistic (Deng, Knoblich & Lu, KDD 2018, §2.2 —
/// the delta method for a function of several means of i.i.d. units): for a smooth f of the
/// four means, Var f ≈ ∇fᵀ Σ ∇f / K, with Σ the units' sample covariance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct JointRatio {
    /// Units seen on either side.
    pub units: u64,
    /// Units with a y on the candidate's side and on stable's.
    pub candidate_units: u64,
    pub stable_units: u64,
    pub sums: [f64; 4],
    pub products: [f64; 10],
}

/// The index of Σ v_i v_j in [`JointRatio::products`] (i ≤ j).
fn product_index(i: usize, j: usize) -> usize {
    let (i, j) = if i <= j { (i, j) } else { (j, i) };
    // Rows of lengths 4, 3, 2, 1.
    [0, 4, 7, 9][i] + (j - i)
}

impl JointRatio {
    /// Adds one unit with totals (x_c, y_c, x_s, y_s).
    pub fn push(&mut self, v: [f64; 4]) {
        self.units += 1;
        self.candidate_units += u64::from(v[1] > 0.0);
        self.stable_units += u64::from(v[3] > 0.0);
        for i in 0..4 {
            self.sums[i] += v[i];
            for j in i..4 {
                self.products[product_index(i, j)] += v[i] * v[j];
            }
        }
    }

    /// Replaces one unit's totals `before` (all zero for a unit not seen yet) by `after`, so
    /// that the sums can be kept up to date as requests arrive.
    pub fn update(&mut self, before: [f64; 4], after: [f64; 4]) {
        let seen = |v: &[f64; 4]| v.iter().any(|&x| x != 0.0);
        if !seen(&before) && seen(&after) {
            self.units += 1;
        }
        self.candidate_units += u64::from(before[1] == 0.0 && after[1] > 0.0);
        self.stable_units += u64::from(before[3] == 0.0 && after[3] > 0.0);
        for i in 0..4 {
            self.sums[i] += after[i] - before[i];
            for j in i..4 {
                self.products[product_index(i, j)] += after[i] * after[j] - before[i] * before[j];
            }
        }
    }

    /// Σx_c/Σy_c and Σx_s/Σy_s; `None` when either side has no y.
    pub fn ratios(&self) -> Option<(f64, f64)> {
        let [xc, yc, xs, ys] = self.sums;
        (yc > 0.0 && ys > 0.0).then(|| (xc / yc, xs / ys))
    }

    /// wᵀ Σ w / K: the variance of the mean of the linear combination w·v over units.
    fn linear_variance(&self, w: [f64; 4]) -> Option<f64> {
        if self.units < 2 {
            return None;
        }
        let k = self.units as f64;
        let mean = self.sums.map(|s| s / k);
        let mut var = 0.0;
        for i in 0..4 {
            for j in 0..4 {
                let cov = (self.products[product_index(i, j)] - k * mean[i] * mean[j]) / (k - 1.0);
                var += w[i] * w[j] * cov;
            }
        }
        Some(var.max(0.0) / k)
    }

    /// The delta-method variance of R_c − R_s.
    pub fn difference_variance(&self) -> Option<f64> {
        let (rc, rs) = self.ratios()?;
        let k = self.units as f64;
        let (mc, ms) = (self.sums[1] / k, self.sums[3] / k);
        self.linear_variance([1.0 / mc, -rc / mc, -1.0 / ms, rs / ms])
    }

    /// The delta-method variance of R_c / R_s (`None` when R_s is not positive).
    pub fn ratio_variance(&self) -> Option<f64> {
        let (rc, rs) = self.ratios()?;
        if rs <= 0.0 {
            return None;
        }
        let k = self.units as f64;
        let (mc, ms) = (self.sums[1] / k, self.sums[3] / k);
        let f = rc / rs;
        self.linear_variance([1.0 / (mc * rs), -rc / (mc * rs), -f / (ms * rs), f / ms])
    }

    /// The candidate's own ratio R_c and its delta-method variance.
    pub fn candidate_variance(&self) -> Option<f64> {
        let (rc, _) = self.ratios()?;
        let mc = self.sums[1] / self.units as f64;
        self.linear_variance([1.0 / mc, -rc / mc, 0.0, 0.0])
    }

    fn as_stats(&self, mean: f64, var: f64, floor: f64) -> SampleStats {
        let k = self.units as f64;
        SampleStats {
            n: k,
            mean,
            var: var.max(floor) * k,
        }
    }

    /// R_c − R_s as a sample over units (n = K, var = K · Var), the variance never below
    /// `floor` (the request-level variance of the same estimate).
    pub fn difference_stats(&self, floor: f64) -> Option<SampleStats> {
        let (rc, rs) = self.ratios()?;
        Some(self.as_stats(rc - rs, self.difference_variance()?, floor))
    }

    /// R_c / R_s as a sample over units, the variance never below `floor`.
    pub fn ratio_stats(&self, floor: f64) -> Option<SampleStats> {
        let (rc, rs) = self.ratios()?;
        Some(self.as_stats(rc / rs, self.ratio_variance()?, floor))
    }

    /// R_c as a sample over units, the variance never below `floor`.
    pub fn candidate_stats(&self, floor: f64) -> Option<SampleStats> {
        let (rc, _) = self.ratios()?;
        Some(self.as_stats(rc, self.candidate_variance()?, floor))
    }
}

/// Mean and variance of one sample, however they were obtained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleStats {
    pub n: f64,
    pub mean: f64,
    pub var: f64,
}

/// A point estimate with a closed interval around it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub estimate: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    fn around(estimate: f64, half_width: f64) -> Self {
        Self {
            estimate,
            lo: estimate - half_width,
            hi: estimate + half_width,
        }
    }

    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }

    pub fn width(&self) -> f64 {
        self.hi - self.lo
    }

    /// The same interval moved by `by` (onto another scale of the same quantity).
    pub fn shifted(self, by: f64) -> Self {
        Self {
            estimate: self.estimate + by,
            lo: self.lo + by,
            hi: self.hi + by,
        }
    }

    /// The convex combination `(1 − w)·self + w·other` of two intervals for two quantities
    /// (bounds, estimate alike): when both cover their quantities it covers the same
    /// combination of them. `w` is clamped to 0–1.
    pub fn between(&self, other: &Interval, w: f64) -> Self {
        let w = if w.is_nan() { 0.5 } else { w.clamp(0.0, 1.0) };
        let mix = |a: f64, b: f64| (1.0 - w) * a + w * b;
        Self {
            estimate: mix(self.estimate, other.estimate),
            lo: mix(self.lo, other.lo),
            hi: mix(self.hi, other.hi),
        }
    }

    /// The intersection of two confidence sequences for the same quantity, each computed at
    /// α/2: by the union bound both cover at every n at once with probability ≥ 1 − α, so
    /// their intersection is a (1 − α) confidence sequence, at least as tight as the tighter
    /// of the two at α/2 (Howard, Ramdas, McAuliffe & Sekhon, "Time-uniform, nonparametric,
    /// nonasymptotic confidence sequences", Annals of Statistics 2021, §2: any countable
    /// family of confidence sequences can be combined this way). The estimate is `self`'s,
    /// kept inside; disjoint sequences (a rare event under the null) give `self`.
    pub fn intersect(self, other: &Interval) -> Self {
        let (lo, hi) = (self.lo.max(other.lo), self.hi.min(other.hi));
        if lo > hi {
            return self;
        }
        Self {
            estimate: self.estimate.clamp(lo, hi),
            lo,
            hi,
        }
    }
}

/// ρ that makes the sequence tightest near `target_n` samples (Waudby-Smith et al., eq. for the
/// approximately optimal ρ; GrowthBook `sequential_rho`).
pub fn rho_for_target(alpha: f64, target_n: f64) -> f64 {
    let l = -2.0 * alpha.ln();
    ((l + (l + 1.0).ln()) / target_n).sqrt()
}

/// Half-width of the two-sided (1 − α) asymptotic confidence sequence at `n` samples with
/// standard deviation `sd` (Waudby-Smith et al., Theorem 2.2).
pub fn cs_half_width(sd: f64, n: f64, alpha: f64, rho: f64) -> f64 {
    let r2 = rho * rho;
    let a = n * r2 + 1.0;
    sd * (2.0 * a / (n * n * r2) * (a.sqrt() / alpha).ln()).sqrt()
}

/// Confidence sequence for the mean of one sample (paired differences, a win rate, a rate).
pub fn one_sample_cs(x: &SampleStats, alpha: f64, target_n: f64) -> Interval {
    let rho = rho_for_target(alpha, target_n);
    Interval::around(x.mean, cs_half_width(x.var.sqrt(), x.n, alpha, rho))
}

/// The factor by which a normal-mixture half-width grows when its statistic is Studentized
/// with `df` degrees of freedom: the sequence's half-width at one look is a fixed-n Wald
/// interval `z_n · se` at the two-sided level p_n = 2(1 − Φ(z_n)); the factor is
/// t_{df}⁻¹(1 − p_n/2) / z_n, the Student quantile at the same level over the normal one
/// (≥ 1, → 1 as df grows). `z` is that look's z_n (half-width over standard error).
///
/// Why: a unit-level (clustered) interval estimates its variance from G units, and with few
/// units the Studentized statistic is far from normal — its reference distribution is close to
/// Student's t with G − 1 degrees of freedom, and normal critical values under-cover. Cameron &
/// Miller, "A Practitioner's Guide to Cluster-Robust Inference" (J. Human Resources 50(2),
/// 2015), §VI.B–C: with few clusters use t(G − 1) critical values (Stata's default; Bester,
/// Conley & Hansen, J. Econometrics 2011, show the Wald statistic is asymptotically t(G − 1)
/// for fixed G). Applied look by look to the asymptotic confidence sequence it keeps the
/// sequence's time-uniform guarantee (the factor only widens, and is 1 in the limit) and
/// restores its coverage at 10–30 units (`gate::sequential` tests). For a difference of two
/// sides' means, `df` is the smaller side's units − 1: a lower bound of the Welch–Satterthwaite
/// degrees of freedom, so the conservative choice.
pub fn student_factor(z: f64, df: f64) -> f64 {
    if df.is_nan() || df < 1.0 {
        return f64::INFINITY;
    }
    if !(z.is_finite() && z > 0.0) {
        return 1.0;
    }
    // The two-sided tail p_n; beyond z ≈ 37 it underflows and the factor is taken as 1 (no
    // sequence here gets near: z_n² is about ln(1/α²) plus a few).
    let tail = statrs::function::erf::erfc(z / std::f64::consts::SQRT_2);
    let Ok(t) = StudentsT::new(0.0, 1.0, df) else {
        return 1.0;
    };
    if tail <= 0.0 {
        return 1.0;
    }
    (-t.inverse_cdf(tail / 2.0) / z).max(1.0)
}

/// [`one_sample_cs`] for a mean over `units` independent units (a unit-level, clustered
/// statistic), Studentized with `df` degrees of freedom (see [`student_factor`]; callers pass
/// the units behind the variance − 1). `None`-free: too few units give an unbounded interval.
pub fn unit_cs(x: &SampleStats, df: f64, alpha: f64, target_n: f64) -> Interval {
    let plain = one_sample_cs(x, alpha, target_n);
    let hw = plain.hi - plain.estimate;
    let se = (x.var / x.n).sqrt();
    let factor = if se > 0.0 {
        student_factor(hw / se, df)
    } else if df >= 1.0 {
        1.0
    } else {
        f64::INFINITY
    };
    Interval::around(x.mean, hw * factor)
}

/// Confidence sequence for mean(candidate) − mean(stable) from two independent samples.
pub fn two_sample_cs(c: &SampleStats, s: &SampleStats, alpha: f64, target_n: f64) -> Interval {
    let n = c.n + s.n;
    let var_est = c.var / c.n + s.var / s.n;
    let rho = rho_for_target(alpha, target_n);
    Interval::around(
        c.mean - s.mean,
        cs_half_width((var_est * n).sqrt(), n, alpha, rho),
    )
}

/// Confidence sequence for mean(candidate) / mean(stable) by the delta method; `None` when the
/// stable mean is not positive.
pub fn ratio_cs(c: &SampleStats, s: &SampleStats, alpha: f64, target_n: f64) -> Option<Interval> {
    if s.mean <= 0.0 {
        return None;
    }
    let ratio = c.mean / s.mean;
    let n = c.n + s.n;
    let var_est = (c.var / c.n + ratio * ratio * s.var / s.n) / (s.mean * s.mean);
    let rho = rho_for_target(alpha, target_n);
    Some(Interval::around(
        ratio,
        cs_half_width((var_est * n).sqrt(), n, alpha, rho),
    ))
}

/// Sample-ratio mismatch: Pearson's chi-square goodness of fit of observed counts per variant
/// against configured shares (which must sum to 1). Returns (statistic, p-value); `None` when
/// there are fewer than two variants, no observations, or a non-positive share.
pub fn srm_chi_square(observed: &[u64], shares: &[f64]) -> Option<(f64, f64)> {
    if observed.len() < 2 || observed.len() != shares.len() || shares.iter().any(|&s| s <= 0.0) {
        return None;
    }
    let total: u64 = observed.iter().sum();
    if total == 0 {
        return None;
    }
    let total = total as f64;
    let stat: f64 = observed
        .iter()
        .zip(shares)
        .map(|(&o, &share)| {
            let e = total * share;
            (o as f64 - e).powi(2) / e
        })
        .sum();
    let dist = ChiSquared::new((observed.len() - 1) as f64).ok()?;
    Some((stat, 1.0 - dist.cdf(stat)))
}

/// Welch's unequal-variance t-test of mean(a) − mean(b).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welch {
    pub t: f64,
    pub df: f64,
    /// Two-sided p-value.
    pub p: f64,
}

pub fn welch(a: &SampleStats, b: &SampleStats) -> Option<Welch> {
    let va = a.var / a.n;
    let vb = b.var / b.n;
    let se2 = va + vb;
    if se2 <= 0.0 || a.n < 2.0 || b.n < 2.0 {
        return None;
    }
    let t = (a.mean - b.mean) / se2.sqrt();
    let df = se2 * se2 / (va * va / (a.n - 1.0) + vb * vb / (b.n - 1.0));
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    Some(Welch {
        t,
        df,
        p: 2.0 * (1.0 - dist.cdf(t.abs())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::distr::Distribution;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn moments_give_mean_and_unbiased_variance() {
        let s = Moments::from_values(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
            .stats()
            .unwrap();
        assert_eq!(s.mean, 5.0);
        // Sum of squared deviations is 32; unbiased variance 32 / 7.
        assert!(close(s.var, 32.0 / 7.0, 1e-12));
        assert!(Moments::from_values(&[1.0]).stats().is_none());
    }

    #[test]
    fn rho_and_half_width_match_hand_computation() {
        // α = 0.05, N* = 1000: −2 ln α = 5.991465; ln(6.991465) = 1.944691;
        // ρ² = 7.936156 / 1000.
        let rho = rho_for_target(0.05, 1000.0);
        assert!(close(rho * rho, 0.007_936_156, 1e-8));
        // n = 1000, σ = 2: nρ²+1 = 8.936156; 2·8.936156/(10⁶·0.007936156) = 0.002252 020;
        // ln(sqrt(8.936156)/0.05) = ln(59.78681) = 4.090784; product 0.009212 49; sqrt 0.095982;
        // × σ = 0.191964.
        let hw = cs_half_width(2.0, 1000.0, 0.05, rho);
        assert!(close(hw, 0.191_964, 2e-5), "{hw}");
        // Wider than the fixed-n 95% interval (1.96·2/√1000 = 0.12396), as it must be.
        assert!(hw > 0.124);
    }

    #[test]
    fn two_sample_interval_matches_hand_computation() {
        let c = SampleStats {
            n: 400.0,
            mean: 3.9,
            var: 1.0,
        };
        let s = SampleStats {
            n: 600.0,
            mean: 4.0,
            var: 1.44,
        };
        let iv = two_sample_cs(&c, &s, 0.05, 1000.0);
        // Var(Δ̂) = 1/400 + 1.44/600 = 0.0049; σ̂ = sqrt(0.0049·1000) = 2.213594;
        // half-width = 2.213594 · 0.095982 (the unit-σ width above) = 0.212465.
        assert!(close(iv.estimate, -0.1, 1e-12));
        assert!(close(iv.hi - iv.estimate, 0.212_465, 2e-5), "{iv:?}");
    }

    #[test]
    fn ratio_interval_is_centred_on_the_ratio() {
        let c = SampleStats {
            n: 500.0,
            mean: 0.012,
            var: 1e-5,
        };
        let s = SampleStats {
            n: 500.0,
            mean: 0.010,
            var: 1e-5,
        };
        let iv = ratio_cs(&c, &s, 0.05, 1000.0).unwrap();
        assert!(close(iv.estimate, 1.2, 1e-12));
        // Var = (1e-5/500 + 1.44·1e-5/500) / 1e-4 = 4.88e-4; σ̂ = sqrt(0.488) = 0.698570.
        assert!(close(iv.hi - iv.estimate, 0.698_570 * 0.095_982, 2e-5));
        let zero = SampleStats {
            n: 5.0,
            mean: 0.0,
            var: 0.0,
        };
        assert!(ratio_cs(&c, &zero, 0.05, 1000.0).is_none());
    }

    #[test]
    fn bounded_variance_never_collapses_and_matches_the_count_shrinkage_on_0_1_data() {
        // Eight paired differences of −1 (a check stable always passes, the candidate never).
        let all_worse = Moments::from_values(&[-1.0; 8]);
        assert_eq!(all_worse.stats().unwrap().var, 0.0);
        let s = all_worse.stats_bounded(-1.0, 1.0).unwrap();
        assert_eq!(s.mean, -1.0);
        // Pseudo-sample: mean −8/9, mean square 9/9 → variance 1 − 64/81 = 17/81.
        assert!(close(s.var, 17.0 / 81.0, 1e-12), "{s:?}");
        // On 0/1 data it is Count's variance: 3 hits in 20 → p̃ = 3.5/21.
        let mut m = Moments::default();
        for i in 0..20 {
            m.push(if i < 3 { 1.0 } else { 0.0 });
        }
        let p = 3.5 / 21.0;
        let c = Count::new(3, 20).stats().unwrap();
        let b = m.stats_bounded(0.0, 1.0).unwrap();
        assert!(
            close(c.var, p * (1.0 - p), 1e-12)
                && close(b.var, m.stats().unwrap().var.max(c.var), 1e-12)
        );
        // Spread-out data keeps its own (larger) variance.
        let wide = Moments::from_values(&[-1.0, 1.0, -1.0, 1.0]);
        assert_eq!(
            wide.stats_bounded(-1.0, 1.0).unwrap().var,
            wide.stats().unwrap().var
        );
    }

    #[test]
    fn count_variance_never_collapses_to_zero() {
        let s = Count::new(0, 100).stats().unwrap();
        assert_eq!(s.mean, 0.0);
        assert!(s.var > 0.0);
        assert_eq!(Count::new(3, 0).rate(), None);
    }

    #[test]
    fn srm_matches_statrs_reference() {
        // 5 300 vs 4 700 against 50/50: χ² = (300² + 300²) / 5000 = 36, df = 1.
        let (stat, p) = srm_chi_square(&[5300, 4700], &[0.5, 0.5]).unwrap();
        assert!(close(stat, 36.0, 1e-9));
        let reference = 1.0 - ChiSquared::new(1.0).unwrap().cdf(36.0);
        assert!(close(p, reference, 1e-15));
        // Published: P(χ²₁ > 36) ≈ 1.97e-9.
        assert!(p > 1.9e-9 && p < 2.0e-9, "{p}");
        // 3-way 80/10/10 with a small wobble: χ² = (10²/800 + 5²/100 + 5²/100) = 0.625, df = 2,
        // p = exp(−0.625/2) = 0.731616 (the χ²₂ survival function is exp(−x/2)).
        let (stat, p) = srm_chi_square(&[810, 95, 95], &[0.8, 0.1, 0.1]).unwrap();
        assert!(close(stat, 0.625, 1e-9));
        assert!(close(p, (-0.3125f64).exp(), 1e-9));
        assert!(srm_chi_square(&[0, 0], &[0.5, 0.5]).is_none());
        assert!(srm_chi_square(&[10], &[1.0]).is_none());
    }

    #[test]
    fn welch_matches_published_table() {
        // Equal n = 10 and variances 1 → df = 18 exactly. t_{0.975, 18} = 2.100922 (Student's t
        // table), so a mean difference of 2.100922·sqrt(0.2) has a two-sided p of 0.05.
        let a = SampleStats {
            n: 10.0,
            mean: 2.100_922 * 0.2f64.sqrt(),
            var: 1.0,
        };
        let b = SampleStats {
            n: 10.0,
            mean: 0.0,
            var: 1.0,
        };
        let w = welch(&a, &b).unwrap();
        assert!(close(w.df, 18.0, 1e-9));
        assert!(close(w.t, 2.100_922, 1e-9));
        assert!(close(w.p, 0.05, 1e-6), "{w:?}");
        // Unequal variances: n 5 & 10, var 4 & 1 → se² = 0.9, df = 0.81 / (0.64/4 + 0.01/9)
        // = 5.027 6 (Welch–Satterthwaite by hand).
        let a = SampleStats {
            n: 5.0,
            mean: 1.0,
            var: 4.0,
        };
        let b = SampleStats {
            n: 10.0,
            mean: 0.0,
            var: 1.0,
        };
        let w = welch(&a, &b).unwrap();
        assert!(close(w.df, 0.81 / (0.16 + 0.01 / 9.0), 1e-9));
        assert!(close(w.t, 1.0 / 0.9f64.sqrt(), 1e-12));
    }

    #[test]
    fn delta_method_variance_matches_hand_computation() {
        // Four units (x, y): (1, 2), (0, 1), (3, 4), (0, 3). K = 4, Σx = 4, Σy = 10, R = 0.4,
        // x̄ = 1, ȳ = 2.5; σ²_x = (10 − 4·1)/3 = 2, σ²_y = (30 − 4·6.25)/3 = 5/3,
        // σ_xy = (14 − 4·2.5)/3 = 4/3; Var(R) = (2 − 2·0.4·4/3 + 0.16·5/3) / (4 · 2.5²)
        // = 1.2 / 25 = 0.048. Check by linearization: residuals x − R·y are 0.2, −0.4, 1.4,
        // −1.2, whose sample variance is 3.6/3 = 1.2; 1.2 / (K ȳ²) = 0.048.
        let mut u = UnitRatio::default();
        for (x, y) in [(1.0, 2.0), (0.0, 1.0), (3.0, 4.0), (0.0, 3.0)] {
            u.push(x, y);
        }
        assert!(close(u.ratio().unwrap(), 0.4, 1e-12));
        assert!(close(u.delta_variance().unwrap(), 0.048, 1e-12));
        let s = u.stats(0.0).unwrap();
        assert_eq!((s.n, s.mean), (4.0, 0.4));
        assert!(close(s.var / s.n, 0.048, 1e-12));
        // The floor wins when it is larger; below two units there is nothing.
        assert!(close(u.stats(0.1).unwrap().var, 0.4, 1e-12));
        let mut one = UnitRatio::default();
        one.push(1.0, 3.0);
        assert!(one.delta_variance().is_none());
        // With one request per unit it is the request-level variance of a mean (n − 1).
        let mut flat = UnitRatio::default();
        for x in [1.0, 0.0, 0.0, 1.0, 0.0] {
            flat.push(x, 1.0);
        }
        let m = Moments::from_values(&[1.0, 0.0, 0.0, 1.0, 0.0])
            .stats()
            .unwrap();
        assert!(close(flat.delta_variance().unwrap(), m.var / m.n, 1e-12));
        // Merging disjoint units is pushing them.
        let mut a = UnitRatio::default();
        a.push(1.0, 2.0);
        a.push(0.0, 1.0);
        let mut b = UnitRatio::default();
        b.push(3.0, 4.0);
        b.push(0.0, 3.0);
        a.merge(&b);
        assert_eq!(a, u);
    }

    #[test]
    fn joint_delta_variance_matches_hand_computation_and_the_sides_when_disjoint() {
        // Disjoint units: two candidate units (1, 2), (0, 1) and two stable units (3, 4),
        // (0, 3). The joint variance of R_c − R_s over all K = 4 units is the variance of the
        // mean of d = (x_c − R_c y_c)/ȳ_c − (x_s − R_s y_s)/ȳ_s, with R_c = 1/3, ȳ_c = 3/4,
        // R_s = 3/7, ȳ_s = 7/4: d = (1 − 2/3)/0.75 = 4/9, (0 − 1/3)/0.75 = −4/9,
        // −(3 − 12/7)/1.75 = −36/49, −(0 − 9/7)/1.75 = 36/49. Σd = 0, Σd² = 2·16/81 + 2·1296/2401;
        // Var = Σd²/(K − 1)/K = (0.395062 + 1.079550)/12 = 0.122884.
        let mut j = JointRatio::default();
        for v in [
            [1.0, 2.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 3.0, 4.0],
            [0.0, 0.0, 0.0, 3.0],
        ] {
            j.push(v);
        }
        let expected = (2.0 * 16.0 / 81.0 + 2.0 * 1296.0 / 2401.0) / 12.0;
        assert!(close(j.difference_variance().unwrap(), expected, 1e-12));
        assert_eq!((j.candidate_units, j.stable_units), (2, 2));
        // The same units on both sides with identical totals: the difference has no variance
        // (every unit's d is 0), which is what pairing by unit buys.
        let mut same = JointRatio::default();
        for (x, y) in [(1.0, 2.0), (0.0, 1.0), (3.0, 4.0), (0.0, 3.0)] {
            same.push([x, y, x, y]);
        }
        assert!(close(same.difference_variance().unwrap(), 0.0, 1e-15));
        // The candidate's own ratio: the UnitRatio variance over its units (here all K).
        let mut u = UnitRatio::default();
        for (x, y) in [(1.0, 2.0), (0.0, 1.0), (3.0, 4.0), (0.0, 3.0)] {
            u.push(x, y);
        }
        assert!(close(
            same.candidate_variance().unwrap(),
            u.delta_variance().unwrap(),
            1e-12
        ));
        // Ratio R_c/R_s of identical sides is 1 with no variance.
        let s = same.ratio_stats(0.0).unwrap();
        assert!(close(s.mean, 1.0, 1e-12) && close(s.var, 0.0, 1e-12));
        assert!(close(same.difference_stats(0.01).unwrap().var, 0.04, 1e-12));
    }

    /// Clustered errors: units with Pareto volumes and Beta error propensities, two arms of the
    /// same population (A/A). The unit-level (delta-method) sequence on the difference of error
    /// rates covers 0 at every look in at least 95% of runs; the request-level one, which takes
    /// every request as independent, misses far more often.
    #[test]
    fn unit_level_sequence_covers_clustered_data_where_request_level_does_not() {
        use statrs::distribution::{Beta, Pareto};
        let alpha = 0.05;
        let (runs, units) = (200, 300);
        let volume = Pareto::new(1.0, 2.5).unwrap();
        let propensity = Beta::new(0.5, 9.5).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (mut unit_miss, mut request_miss) = (0, 0);
        for _ in 0..runs {
            let mut arms = [(UnitRatio::default(), Count::default()); 2];
            let (mut unit_out, mut request_out) = (false, false);
            for i in 1..=units {
                for (u, c) in &mut arms {
                    let n = (20.0 * volume.sample(&mut rng)).floor().min(2000.0);
                    let p = propensity.sample(&mut rng);
                    let e = (0..n as u64).filter(|_| rng.random_bool(p)).count() as f64;
                    u.push(e, n);
                    c.hits += e as u64;
                    c.n += n as u64;
                }
                if i < 20 || i % 5 != 0 {
                    continue;
                }
                let [(uc, cc), (us, cs)] = &arms;
                let floor = |c: &Count| c.stats().map_or(0.0, |s| s.var / s.n);
                let (a, b) = (uc.stats(floor(cc)).unwrap(), us.stats(floor(cs)).unwrap());
                unit_out |= !two_sample_cs(&a, &b, alpha, 200.0).contains(0.0);
                let (a, b) = (cc.stats().unwrap(), cs.stats().unwrap());
                request_out |= !two_sample_cs(&a, &b, alpha, 200.0).contains(0.0);
            }
            unit_miss += usize::from(unit_out);
            request_miss += usize::from(request_out);
        }
        let (unit_rate, request_rate) = (
            unit_miss as f64 / runs as f64,
            request_miss as f64 / runs as f64,
        );
        assert!(unit_rate <= 0.05, "unit-level miscoverage {unit_rate}");
        // Seed 11 gives 0.01 and 0.61.
        assert!(
            request_rate > 0.3,
            "request-level miscoverage {request_rate}"
        );
    }

    /// Miscoverage of unit-level A/A sequences over few clustered units, looked at 20 times as
    /// the units' requests arrive (units with Pareto(1.5) volumes of 10–500 requests and
    /// Beta(0.5, 24.5) error propensities, as `canarist simulate --traffic clustered` draws
    /// them): [paired plain, paired Studentized, two-sample plain, two-sample Studentized].
    /// *Paired*: `g` units whose requests are each answered by both variants, the differences
    /// e_c − e_s summed per unit (`PairedDeltaCs`). *Two-sample*: `g` candidate units against
    /// `4g` stable units, the difference of error rates over units (`ProportionDeltaCs`). The
    /// truth is 0 in both; ρ is tuned to the units the sequence ends with, the regime where
    /// the normal mixture is tightest and so most exposed to a poorly estimated variance.
    // Units are drawn one by one into each look's column, which reads clearest as an index.
    #[allow(clippy::needless_range_loop)]
    fn few_unit_miscoverage(g: usize, runs: usize, alpha: f64, seed: u64) -> [f64; 4] {
        use statrs::distribution::{Beta, Pareto};
        const LOOKS: usize = 20;
        let volume = Pareto::new(1.0, 1.5).unwrap();
        let propensity = Beta::new(0.5, 24.5).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let bern = |rng: &mut ChaCha8Rng, p: f64| f64::from(u8::from(rng.random_bool(p)));
        let mut miss = [0usize; 4];
        let units = 5 * g;
        for _ in 0..runs {
            // Per unit and look: (errors, requests) and, for the first g, (Σ d, pairs).
            let mut per_look = vec![vec![(0.0, 0.0, 0.0, 0.0); units]; LOOKS];
            for i in 0..units {
                let n = (10.0 * volume.sample(&mut rng)).floor().min(500.0) as usize;
                let p = propensity.sample(&mut rng);
                for _ in 0..n {
                    let look = &mut per_look[rng.random_range(0..LOOKS)][i];
                    let e = bern(&mut rng, p);
                    look.0 += e;
                    look.1 += 1.0;
                    let d = e - bern(&mut rng, p);
                    look.2 += d;
                    look.3 += d * d;
                }
            }
            let mut totals = vec![(0.0, 0.0, 0.0); units];
            let mut pairs = Moments::default();
            let mut out = [false; 4];
            for step in &per_look {
                let (mut paired, mut joint) = (UnitRatio::default(), JointRatio::default());
                let mut counts = [Count::default(); 2];
                for (i, (t, &(e, n, d, dd))) in totals.iter_mut().zip(step).enumerate() {
                    if i < g {
                        pairs.n += n as u64;
                        pairs.sum += d;
                        pairs.sum_sq += dd;
                    }
                    t.0 += e;
                    t.1 += n;
                    t.2 += d;
                    if t.1 == 0.0 {
                        continue;
                    }
                    let side = usize::from(i >= g);
                    counts[side].hits += t.0 as u64;
                    counts[side].n += t.1 as u64;
                    if side == 0 {
                        paired.push(t.2, t.1);
                        joint.push([t.0, t.1, 0.0, 0.0]);
                    } else {
                        joint.push([0.0, 0.0, t.0, t.1]);
                    }
                }
                if joint.candidate_units < 2 || joint.stable_units < 2 {
                    continue;
                }
                let floor = |c: &Count| c.stats().map_or(f64::INFINITY, |s| s.var / s.n);
                // The floors as `evaluate` has them: the request-level variances.
                let pair_floor = pairs
                    .stats_bounded(-1.0, 1.0)
                    .map_or(f64::INFINITY, |s| s.var / s.n);
                let (Some(a), Some(b)) = (
                    paired.stats(pair_floor),
                    joint.difference_stats(floor(&counts[0]) + floor(&counts[1])),
                ) else {
                    continue;
                };
                let df_paired = (paired.units - 1) as f64;
                let df_two = (joint.candidate_units.min(joint.stable_units) - 1) as f64;
                let ivs = [
                    one_sample_cs(&a, alpha, g as f64),
                    unit_cs(&a, df_paired, alpha, g as f64),
                    one_sample_cs(&b, alpha, units as f64),
                    unit_cs(&b, df_two, alpha, units as f64),
                ];
                for (o, iv) in out.iter_mut().zip(ivs) {
                    *o |= !iv.contains(0.0);
                }
            }
            for (m, o) in miss.iter_mut().zip(out) {
                *m += usize::from(o);
            }
        }
        miss.map(|m| m as f64 / runs as f64)
    }

    /// Small-G coverage: at 10, 20 and 30 clustered candidate units, the Studentized unit-level
    /// sequences cover the A/A difference at every look in at least 95% of 1 000 runs, for
    /// ρ tuned to the units they end with. Without the t(G − 1) quantiles the two-sample
    /// sequence falls short at 20 and 30 units (seed 31: 5.8%, 7.3%, 6.8% miscoverage plain;
    /// 0.3%, 3.3%, 3.6% Studentized). The paired sequence is conservative either way: its
    /// variance is floored by the request-level one (0.0–0.1%).
    #[test]
    fn few_units_studentized_sequences_cover_uniformly_over_looks() {
        for g in [10, 20, 30] {
            let [paired_plain, paired_t, two_plain, two_t] =
                few_unit_miscoverage(g, 1000, 0.05, 31);
            assert!(two_t <= 0.05, "{g} units: two-sample miscoverage {two_t}");
            assert!(paired_t <= 0.05, "{g} units: paired miscoverage {paired_t}");
            assert!(two_t <= two_plain && paired_t <= paired_plain);
            if g >= 20 {
                assert!(two_plain > 0.06, "{g} units: plain miscoverage {two_plain}");
            }
        }
    }

    #[test]
    fn student_factor_matches_t_tables_and_vanishes_with_many_units() {
        // Two-sided 5%: z = 1.959964, t_{0.975, 9} = 2.262157, t_{0.975, 29} = 2.045230.
        let z = 1.959_964;
        assert!(close(student_factor(z, 9.0) * z, 2.262_157, 1e-5));
        assert!(close(student_factor(z, 29.0) * z, 2.045_230, 1e-5));
        // Two-sided 0.1%: z = 3.290527, t_{0.9995, 9} = 4.780913.
        assert!(close(
            student_factor(3.290_527, 9.0) * 3.290_527,
            4.780_913,
            1e-4
        ));
        assert!(student_factor(z, 1e6) < 1.0 + 1e-5);
        assert_eq!(student_factor(z, 0.0), f64::INFINITY);
        // The Studentized sequence is the plain one, widened.
        let s = SampleStats {
            n: 20.0,
            mean: 0.1,
            var: 1.0,
        };
        let (plain, t) = (one_sample_cs(&s, 0.05, 20.0), unit_cs(&s, 19.0, 0.05, 20.0));
        assert_eq!(plain.estimate, t.estimate);
        assert!(t.lo < plain.lo && t.hi > plain.hi);
        assert!(unit_cs(&s, 0.0, 0.05, 20.0).width().is_infinite());
    }

    /// "Pairs first" on clustered A/A traffic: units with Pareto volumes and Beta error
    /// propensities, one heavy unit among them (2 000 requests at 10% errors), 20% of the units
    /// on the candidate, and a fifth of the candidate's requests answered by stable too (the
    /// live pair sample). Looking at every tenth unit once both sequences have 30 units (the
    /// gate's `min_samples`), the intersection of the two-sample (joint delta-method) sequence
    /// and the paired one, each at α/2, covers the true difference 0 at every look in at least
    /// 95% of runs (within Monte-Carlo error); and it is narrower at the end than the two-sample
    /// sequence alone at α, which the heavy unit keeps wide. (Below 30 candidate units the
    /// two-sample delta method itself under-covers with such a unit — 12–35% in a Python
    /// replica of this test — which is why the gate draws no verdict there.)
    #[test]
    fn paired_and_two_sample_intersection_covers_clustered_data_and_is_tighter() {
        use statrs::distribution::{Beta, Pareto};
        let alpha = 0.05;
        let (runs, units) = (200, 600);
        let volume = Pareto::new(1.0, 1.5).unwrap();
        let propensity = Beta::new(0.5, 24.5).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(23);
        let (mut miss, mut tighter) = (0, 0);
        let bern = |rng: &mut ChaCha8Rng, p: f64| f64::from(u8::from(rng.random_bool(p)));
        for _ in 0..runs {
            let (mut joint, mut paired, mut pairs) = (
                JointRatio::default(),
                UnitRatio::default(),
                Moments::default(),
            );
            let mut counts = [Count::default(); 2];
            let mut out = false;
            let mut last = None;
            for i in 1..=units {
                // The first unit sends as much as a hundred typical ones, at a 10% error rate.
                let (n, p) = if i == 1 {
                    (2000, 0.10)
                } else {
                    (
                        (10.0 * volume.sample(&mut rng)).floor().min(500.0) as u64,
                        propensity.sample(&mut rng),
                    )
                };
                let candidate = rng.random_bool(0.2);
                let (mut e, mut d, mut k) = (0.0, 0.0, 0.0);
                for _ in 0..n {
                    let err = bern(&mut rng, p);
                    e += err;
                    if candidate && rng.random_bool(0.2) {
                        let diff = err - bern(&mut rng, p);
                        d += diff;
                        k += 1.0;
                        pairs.push(diff);
                    }
                }
                let side = usize::from(!candidate);
                counts[side].hits += e as u64;
                counts[side].n += n;
                joint.push(if candidate {
                    [e, n as f64, 0.0, 0.0]
                } else {
                    [0.0, 0.0, e, n as f64]
                });
                if k > 0.0 {
                    paired.push(d, k);
                }
                if i % 10 != 0 || joint.candidate_units < 30 || paired.units < 30 {
                    continue;
                }
                let floor = |c: &Count| c.stats().map_or(f64::INFINITY, |s| s.var / s.n);
                let (Some(two), Some(pd)) = (
                    joint.difference_stats(floor(&counts[0]) + floor(&counts[1])),
                    pairs
                        .stats_bounded(-1.0, 1.0)
                        .and_then(|b| paired.stats(b.var / b.n)),
                ) else {
                    continue;
                };
                let a = one_sample_cs(&two, alpha / 2.0, 1000.0);
                let b = one_sample_cs(&pd, alpha / 2.0, 1000.0);
                let both = b.intersect(&a);
                out |= !both.contains(0.0);
                last = Some((both.width(), one_sample_cs(&two, alpha, 1000.0).width()));
            }
            miss += usize::from(out);
            if let Some((both, two)) = last {
                tighter += usize::from(both < two);
            }
        }
        let rate = miss as f64 / runs as f64;
        // α plus three Monte-Carlo standard errors: 0.05 + 3·sqrt(0.05·0.95/200) = 0.096.
        assert!(rate <= 0.096, "intersection miscoverage {rate}");
        assert!(
            tighter as f64 / runs as f64 > 0.8,
            "tighter in {tighter} of {runs}"
        );
    }

    /// The defining property: the true mean stays inside the sequence at *every* n up to N in at
    /// least 1 − α of runs (within Monte-Carlo error), although a fixed-n 95% interval checked
    /// at every n misses far more often.
    #[test]
    fn confidence_sequence_covers_uniformly_in_time() {
        let alpha = 0.05;
        let (runs, horizon) = (400, 2000);
        let normal = statrs::distribution::Normal::new(0.3, 1.5).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut cs_miss = 0;
        let mut naive_miss = 0;
        for _ in 0..runs {
            let mut m = Moments::default();
            let (mut cs_out, mut naive_out) = (false, false);
            for i in 1..=horizon {
                m.push(normal.sample(&mut rng));
                if i < 10 {
                    continue;
                }
                let s = m.stats().unwrap();
                if !one_sample_cs(&s, alpha, 500.0).contains(0.3) {
                    cs_out = true;
                }
                let hw = 1.959_964 * (s.var / s.n).sqrt();
                if (s.mean - 0.3).abs() > hw {
                    naive_out = true;
                }
            }
            cs_miss += usize::from(cs_out);
            naive_miss += usize::from(naive_out);
        }
        let rate = cs_miss as f64 / runs as f64;
        // α plus three Monte-Carlo standard errors: 0.05 + 3·sqrt(0.05·0.95/400) = 0.083.
        assert!(rate <= 0.083, "time-uniform miscoverage {rate}");
        assert!(naive_miss as f64 / runs as f64 > 0.25, "naive {naive_miss}");
    }
}
