//! Synthetic traffic for `canarist simulate`: scenarios and the per-tick stream of judged pairs.
//!
//! The stream does not depend on what any gate decides (the judge is rate-limited, so judged
//! pairs arrive at a steady rate whatever the stage), so all gates of one run see exactly the
//! same pairs. Only the request split depends on the stage; it is drawn from one shared normal
//! deviate per tick, so it is as comparable as it can be.
//!
//! Model of one pair: the request's difficulty d ~ N(0, 0.7) is shared by both sides; each
//! side's judge score is round(3.8 + d + shift + N(0, 0.6)) clamped to the 1–5 scale; each side
//! errors with its own rate (an errored pair is not judged); latency is log-normal around 800 ms
//! (σ = 0.4 on the log scale); cost is log-normal around $0.002 (σ = 0.3); the judge abstains
//! on 1% of sides. One cohort, `tier=enterprise`, carries 10% of traffic.

use rand::RngExt;
use rand::distr::Distribution;
use rand_chacha::ChaCha8Rng;
use statrs::distribution::Normal;

/// The scenarios `canarist simulate` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Aa,
    SmallDrop,
    CohortRegression,
    ErrorBump,
    LatencyBump,
    LowTraffic,
    Srm,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Aa,
        Scenario::SmallDrop,
        Scenario::CohortRegression,
        Scenario::ErrorBump,
        Scenario::LatencyBump,
        Scenario::LowTraffic,
        Scenario::Srm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Aa => "aa",
            Scenario::SmallDrop => "small_drop",
            Scenario::CohortRegression => "cohort_regression",
            Scenario::ErrorBump => "error_bump",
            Scenario::LatencyBump => "latency_bump",
            Scenario::LowTraffic => "low_traffic",
            Scenario::Srm => "srm",
        }
    }

    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the candidate is really worse (so a rollback is right and a promotion wrong).
    pub fn regressed(self) -> bool {
        matches!(
            self,
            Scenario::SmallDrop
                | Scenario::CohortRegression
                | Scenario::ErrorBump
                | Scenario::LatencyBump
        )
    }

    /// Whether a promotion would be wrong (a regression, or a broken traffic split).
    pub fn promotion_is_wrong(self) -> bool {
        self.regressed() || self == Scenario::Srm
    }

    /// Judged pairs per 5-second tick.
    pub fn pairs_per_tick(self) -> usize {
        if self == Scenario::LowTraffic { 1 } else { 20 }
    }

    /// Requests per tick (for the traffic-split check).
    pub fn requests_per_tick(self) -> u64 {
        if self == Scenario::LowTraffic {
            10
        } else {
            200
        }
    }

    /// The share the candidate really gets when `configured` is asked for.
    pub fn actual_share(self, configured: f64) -> f64 {
        if self == Scenario::Srm {
            (configured * 1.1).min(1.0)
        } else {
            configured
        }
    }
}

/// One matched pair as the gates see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairDraw {
    pub enterprise: bool,
    /// Judge scores on the 1–5 scale; `None` when that side errored or the judge abstained.
    pub stable_score: Option<f64>,
    pub candidate_score: Option<f64>,
    pub stable_error: bool,
    pub candidate_error: bool,
    pub stable_abstained: bool,
    pub candidate_abstained: bool,
    pub stable_latency_ms: f64,
    pub candidate_latency_ms: f64,
    pub stable_cost: f64,
    pub candidate_cost: f64,
}

/// Draws one scenario's pairs.
pub struct Traffic {
    scenario: Scenario,
    unit: Normal,
}

impl Traffic {
    pub fn new(scenario: Scenario) -> Self {
        let unit = Normal::standard();
        Self { scenario, unit }
    }

    fn z(&self, rng: &mut ChaCha8Rng) -> f64 {
        self.unit.sample(rng)
    }

    /// The shared deviate that sets this tick's request split.
    pub fn split_deviate(&self, rng: &mut ChaCha8Rng) -> f64 {
        self.z(rng)
    }

    pub fn pair(&self, rng: &mut ChaCha8Rng) -> PairDraw {
        let s = self.scenario;
        let enterprise = rng.random_bool(0.10);
        let shift = match s {
            Scenario::SmallDrop => -0.3,
            Scenario::CohortRegression if enterprise => -1.0,
            _ => 0.0,
        };
        let cand_error_rate = if s == Scenario::ErrorBump { 0.15 } else { 0.02 };
        let latency_factor = if s == Scenario::LatencyBump {
            1.35
        } else {
            1.0
        };
        let d = 0.7 * self.z(rng);
        let score =
            |noise: f64, shift: f64| (3.8 + d + shift + 0.6 * noise).round().clamp(1.0, 5.0);
        let stable_raw = score(self.z(rng), 0.0);
        let cand_raw = score(self.z(rng), shift);
        let stable_error = rng.random_bool(0.02);
        let candidate_error = rng.random_bool(cand_error_rate);
        let stable_abstained = rng.random_bool(0.01);
        let candidate_abstained = rng.random_bool(0.01);
        let judged = !stable_error && !candidate_error;
        PairDraw {
            enterprise,
            stable_score: (judged && !stable_abstained).then_some(stable_raw),
            candidate_score: (judged && !candidate_abstained).then_some(cand_raw),
            stable_error,
            candidate_error,
            stable_abstained: judged && stable_abstained,
            candidate_abstained: judged && candidate_abstained,
            stable_latency_ms: 800.0 * (0.4 * self.z(rng)).exp(),
            candidate_latency_ms: 800.0 * latency_factor * (0.4 * self.z(rng)).exp(),
            stable_cost: 0.002 * (0.3 * self.z(rng)).exp(),
            candidate_cost: 0.002 * (0.3 * self.z(rng)).exp(),
        }
    }
}

/// Candidate requests out of `requests` at share `share`, from the tick's shared deviate
/// (normal approximation to the binomial).
pub fn split(requests: u64, share: f64, z: f64) -> u64 {
    let n = requests as f64;
    let mean = n * share;
    let sd = (n * share * (1.0 - share)).sqrt();
    (mean + sd * z).round().clamp(0.0, n) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn scenario_names_round_trip_and_streams_are_reproducible() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::parse(s.name()), Some(s));
        }
        assert_eq!(Scenario::parse("nope"), None);
        let t = Traffic::new(Scenario::Aa);
        let mut a = ChaCha8Rng::seed_from_u64(1);
        let mut b = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..100 {
            assert_eq!(t.pair(&mut a), t.pair(&mut b));
        }
    }

    #[test]
    fn small_drop_moves_the_mean_score_by_about_the_shift() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let t = Traffic::new(Scenario::SmallDrop);
        let (mut sum, mut n) = (0.0, 0.0);
        for _ in 0..20_000 {
            let p = t.pair(&mut rng);
            if let (Some(s), Some(c)) = (p.stable_score, p.candidate_score) {
                sum += c - s;
                n += 1.0;
            }
        }
        let mean = sum / n;
        assert!(mean < -0.2 && mean > -0.35, "{mean}");
        assert_eq!(split(1000, 0.2, 0.0), 200);
        assert_eq!(split(10, 0.5, 100.0), 10);
    }
}
