//! Guardrails: the fast path that trips as outcomes arrive, without waiting for a gate tick.
//!
//! A ring of time buckets (linkerd2-proxy's windowed success rate, not an all-time average that
//! hides bursts) counts candidate and stable outcomes and hard-check failures over the last
//! `buckets × bucket` of time. It trips when, with at least `min_count` candidate outcomes in
//! the window, the candidate's error rate is above an absolute ceiling, or above
//! `multiplier ×` stable's rate (and above `relative_floor`, so that 1 error against 0 is no
//! verdict); or when hard checks failed on the candidate where stable passed at least
//! `hard_fail_limit` times in the window.
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
        }
    }
}

/// Why a guardrail tripped, with the window's counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trip {
    pub reason: String,
    pub candidate_errors: Count,
    pub stable_errors: Count,
    pub hard_failures: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which bucket of time this slot currently holds; `None` when never used.
    index: Option<i64>,
    candidate: Count,
    stable: Count,
    hard_failures: u64,
}

/// The window of recent outcomes for one candidate.
#[derive(Debug, Clone)]
pub struct Guardrail {
    cfg: GuardrailConfig,
    ring: Vec<Bucket>,
    /// Outcomes dropped because they were older than the window.
    pub late: u64,
}

impl Guardrail {
    pub fn new(cfg: GuardrailConfig) -> Self {
        let n = cfg.buckets.max(1);
        Self {
            cfg,
            ring: vec![Bucket::default(); n],
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

    /// Records one request outcome of one side.
    pub fn record(&mut self, at: DateTime<Utc>, role: Role, error: bool) {
        if let Some(b) = self.slot(at) {
            let c = match role {
                Role::Candidate => &mut b.candidate,
                Role::Stable => &mut b.stable,
            };
            c.n += 1;
            c.hits += u64::from(error);
        }
    }

    /// Records a hard rubric check that failed on the candidate where stable passed.
    pub fn record_hard_failure(&mut self, at: DateTime<Utc>) {
        if let Some(b) = self.slot(at) {
            b.hard_failures += 1;
        }
    }

    /// Totals over the window ending at `now`: (candidate, stable, hard failures).
    pub fn window(&self, now: DateTime<Utc>) -> (Count, Count, u64) {
        let cur = self.index_of(now);
        let len = self.ring.len() as i64;
        let mut c = Count::default();
        let mut s = Count::default();
        let mut h = 0;
        for b in &self.ring {
            if let Some(i) = b.index
                && i <= cur
                && i > cur - len
            {
                c.n += b.candidate.n;
                c.hits += b.candidate.hits;
                s.n += b.stable.n;
                s.hits += b.stable.hits;
                h += b.hard_failures;
            }
        }
        (c, s, h)
    }

    /// The trip rule, evaluated on the window ending at `now`.
    pub fn check(&self, now: DateTime<Utc>) -> Option<Trip> {
        let (c, s, h) = self.window(now);
        let trip = |reason: String| Trip {
            reason,
            candidate_errors: c,
            stable_errors: s,
            hard_failures: h,
        };
        let secs = self.cfg.bucket.as_secs_f64() * self.ring.len() as f64;
        if h >= self.cfg.hard_fail_limit {
            return Some(trip(format!(
                "{h} hard-check failures on the candidate where stable passed in the last {secs}s (limit {})",
                self.cfg.hard_fail_limit
            )));
        }
        if c.n < self.cfg.min_count {
            return None;
        }
        let cr = c.hits as f64 / c.n as f64;
        if cr > self.cfg.error_ceiling {
            return Some(trip(format!(
                "candidate error rate {cr:.4} ({}/{}) in the last {secs}s is above the ceiling {}",
                c.hits, c.n, self.cfg.error_ceiling
            )));
        }
        if s.n >= self.cfg.min_count {
            let sr = s.hits as f64 / s.n as f64;
            if cr > self.cfg.relative_floor && cr > self.cfg.error_multiplier * sr {
                return Some(trip(format!(
                    "candidate error rate {cr:.4} in the last {secs}s is above {} × stable's {sr:.4}",
                    self.cfg.error_multiplier
                )));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn cfg() -> GuardrailConfig {
        GuardrailConfig {
            min_count: 20,
            ..GuardrailConfig::default()
        }
    }

    fn feed(g: &mut Guardrail, at: DateTime<Utc>, role: Role, n: u64, errors: u64) {
        for i in 0..n {
            g.record(at, role, i < errors);
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
        // An outcome older than the whole window is dropped and counted.
        g.record(t(0), Role::Candidate, true);
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
        assert!(g.check(t(50)).unwrap().reason.contains("hard-check"));
        // Spread over more than the window they do not add up.
        let mut g = Guardrail::new(cfg());
        for i in 0..10 {
            g.record_hard_failure(t(i * 10));
        }
        assert!(g.check(t(90)).is_none());
    }
}
