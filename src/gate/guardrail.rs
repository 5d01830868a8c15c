//! Guardrails: the fast path that trips as outcomes arrive, without waiting for a gate tick.
//!
//! A ring of time buckets (linkerd2-proxy's windowed success rate, not an all-time average that
//! hides bursts) counts candidate and stable outcomes and hard-check failures over the last
//! `buckets × bucket` of time. It trips when hard checks failed on the candidate where stable
//! passed at least `hard_fail_limit` times in the window, or when, with at least `min_count`
//! candidate outcomes in the window, the candidate's error rate is above an absolute ceiling,
//! or above `multiplier ×` stable's rate (and above `relative_floor`, so that 1 error against 0
//! is no verdict) — *and* the window shows the candidate surely worse than stable.
//!
//! "Surely worse" is judged on the unit routing randomizes, not the request: a sticky unit's
//! requests are correlated (one tenant sending 20% of the traffic at its own error rate lands
//! wholly on one side), so treating them as independent draws makes the window's difference look
//! significant when it is one unit's propensity. Every outcome is also counted in one of
//! [`UNIT_GROUPS`] groups by a hash of its unit key (a request without one is a unit of its own,
//! spread round-robin), and the excess d = p_candidate − p_stable must exceed `error_z` of its
//! cluster-robust standard errors: the delete-one-group jackknife (CV3) over the non-empty
//! groups, Var = (G − 1)/G · Σ_g (d_(g) − d̄)² (MacKinnon, Nielsen & Webb, "Cluster-robust
//! inference: A guide to empirical practice", J. Econometrics 235 (2023), §3.3), never below the
//! request-level variance. Groups of hashed units are independent because units are, so the
//! jackknife over groups is valid for any number of units; a side a group deletion would empty
//! leaves the variance undefined and the window does not trip. Without `min_count` stable
//! outcomes, the ceiling rule asks the candidate's rate itself to be surely above the ceiling.
//! `error_z` 3 is measured with `canarist simulate --guardrail-z` (100 runs, seed 2024): A/A
//! false rollbacks 0% on iid and 3% on clustered traffic, none by the guardrail (the point rule
//! alone: 4% and 9%, all by the guardrail), and an error bump still rolled back in every run.
//!
//! The point rule is computed from running totals first; the jackknife runs only when it fires,
//! so recording and checking stay O(buckets) per outcome except on a would-be trip.
//!
//! Owns: the window and the trip rule. Never: reads clocks (time is passed in), acts on a trip.
//! Fails open on late data: an outcome older than the window is dropped and counted in `late`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::sequential::Count;
use crate::vocab::Role;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GuardrailConfig {
    #[schemars(with = "String")]
    #[serde(with = "humantime_serde", default = "default_bucket")]
    pub bucket: Duration,
    #[serde(default = "default_buckets")]
    pub buckets: usize,
    #[serde(default = "default_min_count")]
    pub min_count: u64,
    #[serde(default = "default_ceiling")]
    pub error_ceiling: f64,
    #[serde(default = "default_multiplier")]
    pub error_multiplier: f64,
    #[serde(default = "default_relative_floor")]
    pub relative_floor: f64,
    #[serde(default = "default_hard_fail_limit")]
    pub hard_fail_limit: u64,
    /// How many cluster-robust standard errors the candidate's excess error rate over stable
    /// must clear before an error-rate rule trips (0: the point rule alone).
    #[serde(default = "default_error_z")]
    pub error_z: f64,
}

pub fn default_bucket() -> Duration {
    Duration::from_secs(5)
}
pub fn default_buckets() -> usize {
    12
}
pub fn default_min_count() -> u64 {
    100
}
pub fn default_ceiling() -> f64 {
    0.10
}
pub fn default_multiplier() -> f64 {
    3.0
}
pub fn default_relative_floor() -> f64 {
    0.08
}
pub fn default_hard_fail_limit() -> u64 {
    10
}
pub fn default_error_z() -> f64 {
    3.0
}

impl Default for GuardrailConfig {
    fn default() -> Self {
        Self {
            bucket: default_bucket(),
            buckets: default_buckets(),
            min_count: default_min_count(),
            error_ceiling: default_ceiling(),
            error_multiplier: default_multiplier(),
            relative_floor: default_relative_floor(),
            hard_fail_limit: default_hard_fail_limit(),
            error_z: default_error_z(),
        }
    }
}

/// Groups of the cluster-robust variance: each outcome is counted in the group its unit key
/// hashes to.
pub const UNIT_GROUPS: usize = 64;

/// The hash of a unit key the guardrail groups outcomes by (see [`Guardrail::record`]).
pub fn unit_hash(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), 0x6775_6172_6472_6169)
}

/// The cluster-robust test behind an error-rate trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Excess {
    /// The candidate's error rate minus stable's (minus the ceiling without stable outcomes).
    pub estimate: f64,
    /// Its jackknife standard error over unit groups (never below the request-level one).
    pub standard_error: f64,
    /// The non-empty unit groups the jackknife ran over.
    pub groups: usize,
    /// Standard errors the estimate had to clear (`error_z`).
    pub z: f64,
    /// What one independent draw is: `unit`.
    pub unit: String,
    /// `jackknife_cv3`.
    pub method: String,
}

/// Why a guardrail tripped, with the window's counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trip {
    pub reason: String,
    pub candidate_errors: Count,
    pub stable_errors: Count,
    pub hard_failures: u64,
    /// The cluster-robust test of an error-rate trip (`None` for hard-check trips).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excess: Option<Excess>,
}

/// One side's outcomes in one time bucket: the total and the same counts by unit group.
#[derive(Debug, Clone, Copy)]
struct Side {
    total: Count,
    groups: [Count; UNIT_GROUPS],
}

impl Default for Side {
    fn default() -> Self {
        Self {
            total: Count::default(),
            groups: [Count::default(); UNIT_GROUPS],
        }
    }
}

impl Side {
    fn add(&mut self, other: &Side) {
        add(&mut self.total, other.total);
        for (g, o) in self.groups.iter_mut().zip(&other.groups) {
            add(g, *o);
        }
    }
}

fn add(a: &mut Count, b: Count) {
    a.n += b.n;
    a.hits += b.hits;
}

fn minus(a: Count, b: Count) -> Count {
    Count::new(a.hits - b.hits, a.n - b.n)
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which bucket of time this slot currently holds; `None` when never used.
    index: Option<i64>,
    candidate: Side,
    stable: Side,
    hard_failures: u64,
}

/// The window of recent outcomes for one candidate.
#[derive(Debug, Clone)]
pub struct Guardrail {
    cfg: GuardrailConfig,
    ring: Vec<Bucket>,
    /// Round-robin group of the next outcome without a unit key.
    next_solo: usize,
    /// Outcomes dropped because they were older than the window.
    pub late: u64,
}

impl Guardrail {
    pub fn new(cfg: GuardrailConfig) -> Self {
        let n = cfg.buckets.max(1);
        Self {
            cfg,
            ring: vec![Bucket::default(); n],
            next_solo: 0,
            late: 0,
        }
    }

    pub fn config(&self) -> &GuardrailConfig {
        &self.cfg
    }

    fn index_of(&self, at: DateTime<Utc>) -> i64 {
        let width = (self.cfg.bucket.as_millis().max(1)) as i64;
        at.timestamp_millis().div_euclid(width)
    }

    /// The slot for `at`, reset if it held an older bucket; `None` when `at` is too old.
    fn slot(&mut self, at: DateTime<Utc>) -> Option<&mut Bucket> {
        let idx = self.index_of(at);
        let len = self.ring.len() as i64;
        let newest = self.ring.iter().filter_map(|b| b.index).max();
        if let Some(newest) = newest
            && idx <= newest - len
        {
            self.late += 1;
            return None;
        }
        let slot = &mut self.ring[idx.rem_euclid(len) as usize];
        if slot.index != Some(idx) {
            *slot = Bucket {
                index: Some(idx),
                ..Bucket::default()
            };
        }
        Some(slot)
    }

    /// Records one request outcome of one side. `unit` is the [`unit_hash`] of the request's
    /// unit key (`None`: the request is a unit of its own).
    pub fn record(&mut self, at: DateTime<Utc>, role: Role, unit: Option<u64>, error: bool) {
        let group = match unit {
            Some(h) => (h % UNIT_GROUPS as u64) as usize,
            None => {
                self.next_solo = (self.next_solo + 1) % UNIT_GROUPS;
                self.next_solo
            }
        };
        if let Some(b) = self.slot(at) {
            let side = match role {
                Role::Candidate => &mut b.candidate,
                Role::Stable => &mut b.stable,
            };
            let one = Count::new(u64::from(error), 1);
            add(&mut side.total, one);
            add(&mut side.groups[group], one);
        }
    }

    /// Records a hard rubric check that failed on the candidate where stable passed.
    pub fn record_hard_failure(&mut self, at: DateTime<Utc>) {
        if let Some(b) = self.slot(at) {
            b.hard_failures += 1;
        }
    }

    /// The buckets inside the window ending at `now`.
    fn live(&self, now: DateTime<Utc>) -> impl Iterator<Item = &Bucket> {
        let cur = self.index_of(now);
        let len = self.ring.len() as i64;
        self.ring
            .iter()
            .filter(move |b| b.index.is_some_and(|i| i <= cur && i > cur - len))
    }

    /// Totals over the window ending at `now`: (candidate, stable, hard failures).
    pub fn window(&self, now: DateTime<Utc>) -> (Count, Count, u64) {
        let mut c = Count::default();
        let mut s = Count::default();
        let mut h = 0;
        for b in self.live(now) {
            add(&mut c, b.candidate.total);
            add(&mut s, b.stable.total);
            h += b.hard_failures;
        }
        (c, s, h)
    }

    /// Both sides' outcomes by unit group over the window ending at `now`.
    fn grouped(&self, now: DateTime<Utc>) -> (Side, Side) {
        let mut c = Side::default();
        let mut s = Side::default();
        for b in self.live(now) {
            c.add(&b.candidate);
            s.add(&b.stable);
        }
        (c, s)
    }

    /// The trip rule, evaluated on the window ending at `now`.
    pub fn check(&self, now: DateTime<Utc>) -> Option<Trip> {
        let (c, s, h) = self.window(now);
        let secs = self.cfg.bucket.as_secs_f64() * self.ring.len() as f64;
        if h >= self.cfg.hard_fail_limit {
            return Some(Trip {
                reason: format!(
                    "{h} hard-check failures on the candidate where stable passed in the last {secs}s (limit {})",
                    self.cfg.hard_fail_limit
                ),
                candidate_errors: c,
                stable_errors: s,
                hard_failures: h,
                excess: None,
            });
        }
        if c.n < self.cfg.min_count {
            return None;
        }
        let cr = c.hits as f64 / c.n as f64;
        let stable_rate = (s.n >= self.cfg.min_count).then(|| s.hits as f64 / s.n as f64);
        let rule = if cr > self.cfg.error_ceiling {
            format!(
                "candidate error rate {cr:.4} ({}/{}) in the last {secs}s is above the ceiling {}",
                c.hits, c.n, self.cfg.error_ceiling
            )
        } else if let Some(sr) = stable_rate
            && cr > self.cfg.relative_floor
            && cr > self.cfg.error_multiplier * sr
        {
            format!(
                "candidate error rate {cr:.4} in the last {secs}s is above {} × stable's {sr:.4}",
                self.cfg.error_multiplier
            )
        } else {
            return None;
        };
        let excess = self.excess(now, stable_rate.is_some())?;
        if excess.estimate - excess.z * excess.standard_error <= 0.0 {
            return None;
        }
        let against = if stable_rate.is_some() {
            "stable"
        } else {
            "the ceiling"
        };
        Some(Trip {
            reason: format!(
                "{rule}; its excess over {against}, {:.4}, is {:.1} standard errors (jackknife over {} unit groups; z {})",
                excess.estimate,
                excess.estimate / excess.standard_error,
                excess.groups,
                excess.z
            ),
            candidate_errors: c,
            stable_errors: s,
            hard_failures: h,
            excess: Some(excess),
        })
    }

    /// The excess of the candidate's error rate over stable's (`against_stable`) or over the
    /// ceiling, with its cluster-robust standard error; `None` when the jackknife is undefined
    /// (fewer than two groups, or a deletion that empties a side).
    fn excess(&self, now: DateTime<Utc>, against_stable: bool) -> Option<Excess> {
        let (c, s) = self.grouped(now);
        let ceiling = self.cfg.error_ceiling;
        let stat = |c: Count, s: Count| -> Option<f64> {
            let cr = c.rate()?;
            if against_stable {
                Some(cr - s.rate()?)
            } else {
                Some(cr - ceiling)
            }
        };
        let estimate = stat(c.total, s.total)?;
        let mut replicates = Vec::with_capacity(UNIT_GROUPS);
        for (cg, sg) in c.groups.iter().zip(&s.groups) {
            let used = cg.n + if against_stable { sg.n } else { 0 };
            if used > 0 {
                replicates.push(stat(minus(c.total, *cg), minus(s.total, *sg))?);
            }
        }
        let g = replicates.len();
        if g < 2 {
            return None;
        }
        let mean = replicates.iter().sum::<f64>() / g as f64;
        let ss: f64 = replicates.iter().map(|r| (r - mean).powi(2)).sum();
        let jackknife = (g as f64 - 1.0) / g as f64 * ss;
        let request_level = c.total.stats()?.var / c.total.n as f64
            + if against_stable {
                let st = s.total.stats()?;
                st.var / st.n
            } else {
                0.0
            };
        Some(Excess {
            estimate,
            standard_error: jackknife.max(request_level).sqrt(),
            groups: g,
            z: self.cfg.error_z,
            unit: "unit".to_owned(),
            method: "jackknife_cv3".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    /// The point rule alone (z 0), on small windows.
    fn cfg() -> GuardrailConfig {
        GuardrailConfig {
            min_count: 20,
            error_z: 0.0,
            ..GuardrailConfig::default()
        }
    }

    /// `n` outcomes of `role`, the first `errors` of them failed, each from a unit of its own.
    fn feed(g: &mut Guardrail, at: DateTime<Utc>, role: Role, n: u64, errors: u64) {
        for i in 0..n {
            g.record(at, role, None, i < errors);
        }
    }

    /// `n` outcomes of `role` from one unit, the first `errors` of them failed.
    fn feed_unit(g: &mut Guardrail, at: DateTime<Utc>, role: Role, unit: u64, n: u64, errors: u64) {
        for i in 0..n {
            g.record(at, role, Some(unit), i < errors);
        }
    }

    #[test]
    fn trips_on_the_absolute_ceiling_only_with_enough_outcomes() {
        let mut g = Guardrail::new(cfg());
        feed(&mut g, t(0), Role::Candidate, 10, 5);
        assert!(g.check(t(0)).is_none(), "10 outcomes are below min_count");
        feed(&mut g, t(1), Role::Candidate, 10, 0);
        let trip = g.check(t(1)).unwrap();
        assert!(trip.reason.contains("ceiling"), "{}", trip.reason);
        assert_eq!(trip.candidate_errors, Count::new(5, 20));
    }

    #[test]
    fn old_buckets_leave_the_window() {
        let mut g = Guardrail::new(cfg());
        feed(&mut g, t(0), Role::Candidate, 40, 20);
        assert!(g.check(t(0)).is_some());
        // 12 buckets × 5 s: at t = 60 s the bucket of t = 0 has left the window.
        assert!(g.check(t(59)).is_some());
        assert!(g.check(t(60)).is_none());
        // New outcomes reuse the slot and do not inherit its old counts.
        feed(&mut g, t(60), Role::Candidate, 40, 0);
        assert_eq!(g.window(t(60)).0, Count::new(0, 40));
        let (c, _) = g.grouped(t(60));
        assert_eq!(c.groups.iter().map(|g| g.hits).sum::<u64>(), 0);
        // An outcome older than the whole window is dropped and counted.
        g.record(t(0), Role::Candidate, None, true);
        assert_eq!(g.late, 1);
        assert_eq!(g.window(t(60)).0, Count::new(0, 40));
    }

    #[test]
    fn relative_rule_needs_the_floor_and_the_multiple() {
        let mut g = Guardrail::new(cfg());
        // Candidate 9% vs stable 2%: above 3× and above the 8% floor, below the 10% ceiling.
        feed(&mut g, t(0), Role::Candidate, 100, 9);
        feed(&mut g, t(0), Role::Stable, 100, 2);
        assert!(g.check(t(0)).unwrap().reason.contains("stable"));
        // Candidate 6% vs stable 1%: 6× stable but under the floor → no trip.
        let mut g = Guardrail::new(cfg());
        feed(&mut g, t(0), Role::Candidate, 100, 6);
        feed(&mut g, t(0), Role::Stable, 100, 1);
        assert!(g.check(t(0)).is_none());
        // Candidate 9% vs stable 4%: under 3× stable → no trip.
        let mut g = Guardrail::new(cfg());
        feed(&mut g, t(0), Role::Candidate, 100, 9);
        feed(&mut g, t(0), Role::Stable, 100, 4);
        assert!(g.check(t(0)).is_none());
    }

    #[test]
    fn hard_check_failures_trip_at_the_limit_within_the_window() {
        let mut g = Guardrail::new(cfg());
        for i in 0..9 {
            g.record_hard_failure(t(i * 5));
        }
        assert!(g.check(t(45)).is_none());
        g.record_hard_failure(t(50));
        let trip = g.check(t(50)).unwrap();
        assert!(trip.reason.contains("hard-check"));
        assert_eq!(trip.excess, None);
        // Spread over more than the window they do not add up.
        let mut g = Guardrail::new(cfg());
        for i in 0..10 {
            g.record_hard_failure(t(i * 10));
        }
        assert!(g.check(t(90)).is_none());
    }

    #[test]
    fn the_jackknife_over_unit_groups_matches_a_hand_computed_example() {
        // Two groups. Candidate: 20/100 errors in group 0, 0/100 in group 1; stable 10/100 in
        // each. d = 20/200 − 20/200 = 0. Deleting group 0: 0/100 − 10/100 = −0.1; deleting
        // group 1: 20/100 − 10/100 = 0.1. Var = (2 − 1)/2 · (0.1² + 0.1²) = 0.01, SE 0.1 —
        // far above the request-level 0.0303 (√(2 · 0.102 · 0.898 / 200), rates shrunk by ½).
        let mut g = Guardrail::new(GuardrailConfig::default());
        feed_unit(&mut g, t(0), Role::Candidate, 0, 100, 20);
        feed_unit(&mut g, t(0), Role::Candidate, 1, 100, 0);
        feed_unit(&mut g, t(0), Role::Stable, 0, 100, 10);
        feed_unit(&mut g, t(0), Role::Stable, 1, 100, 10);
        let e = g.excess(t(0), true).unwrap();
        assert!(e.estimate.abs() < 1e-12, "{e:?}");
        assert!((e.standard_error - 0.1).abs() < 1e-12, "{e:?}");
        assert_eq!(e.groups, 2);
        // With the errors spread evenly over the groups the jackknife is 0, and the
        // request-level variance is the floor: p = 20.5/201 on each side.
        let mut g = Guardrail::new(GuardrailConfig::default());
        for side in [Role::Candidate, Role::Stable] {
            feed_unit(&mut g, t(0), side, 0, 100, 10);
            feed_unit(&mut g, t(0), side, 1, 100, 10);
        }
        let e = g.excess(t(0), true).unwrap();
        let p: f64 = 20.5 / 201.0;
        let floor = (2.0 * p * (1.0 - p) / 200.0).sqrt();
        assert!((e.standard_error - floor).abs() < 1e-12, "{e:?} vs {floor}");
    }

    /// A window of 400 candidate outcomes at 9% errors (the relative rule fires: above 3 ×
    /// stable's 2% and the 8% floor) and 1,000 stable outcomes at 2%, from many units of one
    /// request each except `tenant`: 200 candidate outcomes (30 errors) from one unit.
    fn heavy_tenant_window(tenant: impl Fn(u64) -> Option<u64>) -> Guardrail {
        let mut g = Guardrail::new(GuardrailConfig::default());
        for i in 0..200 {
            g.record(t(0), Role::Candidate, tenant(i), i < 30);
        }
        for i in 0..200u64 {
            g.record(t(0), Role::Candidate, Some(1_000 + i), i < 6);
        }
        for i in 0..1000u64 {
            g.record(t(0), Role::Stable, Some(10_000 + i), i % 50 == 0);
        }
        g
    }

    #[test]
    fn one_heavy_unit_on_the_candidate_does_not_trip_what_as_many_units_would() {
        // The same 400 outcomes, once as 200 units of one request each (4.7 request-level
        // standard errors above stable: a trip) and once as one tenant's 200 requests (its
        // 15% error rate is one draw of a unit's propensity: no trip).
        let independent = heavy_tenant_window(|i| Some(100_000 + i));
        let trip = independent.check(t(0)).unwrap();
        let e = trip.excess.clone().unwrap();
        assert!(e.estimate / e.standard_error > 4.0, "{trip:?}");
        assert!(trip.reason.contains("stable"), "{}", trip.reason);
        let tenant = heavy_tenant_window(|_| Some(7));
        assert!(
            tenant.check(t(0)).is_none(),
            "{:?}",
            tenant.excess(t(0), true)
        );
        let e = tenant.excess(t(0), true).unwrap();
        assert!(e.estimate / e.standard_error < 2.0, "{e:?}");
        // With z 0 (the point rule alone) the tenant trips it, as it did before units.
        let mut point = heavy_tenant_window(|_| Some(7));
        point.cfg.error_z = 0.0;
        assert!(point.check(t(0)).is_some());
    }

    #[test]
    fn a_candidate_failing_a_fifth_of_calls_trips_at_min_count_whatever_its_units() {
        // 100 candidate outcomes at 20% over 10 units of 10 requests (2 errors each), stable
        // 500 outcomes at 2% over 50 units: the excess 0.18 clears 3 standard errors.
        let mut g = Guardrail::new(GuardrailConfig::default());
        for u in 0..10 {
            feed_unit(&mut g, t(0), Role::Candidate, u, 10, 2);
        }
        for u in 0..50 {
            feed_unit(
                &mut g,
                t(0),
                Role::Stable,
                100 + u,
                10,
                u64::from(u % 5 == 0),
            );
        }
        let trip = g.check(t(0)).unwrap();
        assert!(trip.reason.contains("ceiling"), "{}", trip.reason);
        assert!(trip.reason.contains("standard errors"), "{}", trip.reason);
        assert_eq!(trip.candidate_errors, Count::new(20, 100));
        let e = trip.excess.clone().unwrap();
        assert_eq!(
            (e.unit.as_str(), e.method.as_str()),
            ("unit", "jackknife_cv3")
        );
        // Without enough stable outcomes, the ceiling itself is the comparison: 20% is not yet
        // surely above 10% at 100 outcomes, and is at 400.
        let mut g = Guardrail::new(GuardrailConfig::default());
        for u in 0..10 {
            feed_unit(&mut g, t(0), Role::Candidate, u, 10, 2);
        }
        assert!(g.check(t(0)).is_none());
        for u in 10..40 {
            feed_unit(&mut g, t(0), Role::Candidate, u, 10, 2);
        }
        assert!(g.check(t(0)).unwrap().reason.contains("over the ceiling"));
    }
}
