//! Synthetic traffic for `canarist simulate`: scenarios, the population of sticky users, the
//! per-tick stream of requests and the stream of judged pairs.
//!
//! Both streams are drawn from the run's seed and do not depend on what any gate decides: every
//! request carries both variants' potential outcomes (what stable would answer, what the
//! candidate would answer), and a gate's stage only chooses which of them it observes (a live
//! stage at share s shows the candidate's outcome for the users whose bucket is below s). The
//! judge is rate-limited, so judged pairs arrive at a steady rate whatever the stage, and all
//! gates of one run see exactly the same pairs.
//!
//! Model of one judged pair: the request's difficulty d ~ N(0, 0.7) plus the user's offset is
//! shared by both sides; each side's judge score is round(3.8 + d + shift + N(0, 0.6)) clamped
//! to the 1–5 scale; the judge abstains on 1% of sides; a pair whose side errored is not
//! judged. One request: each side errors at the user's rate (the candidate's raised in
//! `error_bump`); latency is log-normal around 800 ms × the user's factor (σ = 0.4 on the log
//! scale); cost is log-normal around $0.002 (σ = 0.3). 10% of users are `tier=enterprise`.
//!
//! Traffic (`--traffic`): `iid` — 10,000 users with equal volumes, every user errs at 2%, no
//! per-user latency or score effects; `clustered` — 10,000 users with Pareto(α = 1.5) request
//! volumes (capped at 500× the lightest), per-user error rates Beta(0.5, 24.5) (mean 2%), a
//! per-user latency factor exp(N(0, 0.3)) and score offset N(0, 0.5), and one tenant that sends
//! 20% of all requests at a 10% error rate.

use rand::RngExt;
use rand::distr::Distribution;
use rand_chacha::ChaCha8Rng;
use statrs::distribution::{Beta, Normal, Pareto};

/// How users and their requests are distributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrafficModel {
    /// Equal volumes, identical users.
    #[default]
    Iid,
    /// Heavy-tailed volumes, per-user propensities, one large tenant.
    Clustered,
}

impl TrafficModel {
    pub const ALL: [TrafficModel; 2] = [TrafficModel::Iid, TrafficModel::Clustered];

    pub fn name(self) -> &'static str {
        match self {
            TrafficModel::Iid => "iid",
            TrafficModel::Clustered => "clustered",
        }
    }

    pub fn parse(name: &str) -> Option<TrafficModel> {
        TrafficModel::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// The scenarios `canarist simulate` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Aa,
    SmallDrop,
    CohortRegression,
    ErrorBump,
    LatencyBump,
    LowTraffic,
    /// The candidate gets 10% more units than configured (mis-routing).
    Srm,
    /// The candidate's requests of one in five of its units never reach capture (dropped).
    SrmDrop,
}

impl Scenario {
    pub const ALL: [Scenario; 8] = [
        Scenario::Aa,
        Scenario::SmallDrop,
        Scenario::CohortRegression,
        Scenario::ErrorBump,
        Scenario::LatencyBump,
        Scenario::LowTraffic,
        Scenario::Srm,
        Scenario::SrmDrop,
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
            Scenario::SrmDrop => "srm_drop",
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
        self.regressed() || matches!(self, Scenario::Srm | Scenario::SrmDrop)
    }

    /// Judged pairs per 5-second tick.
    pub fn pairs_per_tick(self) -> usize {
        if self == Scenario::LowTraffic { 1 } else { 20 }
    }

    /// Requests per tick.
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

/// Users in every simulated population.
pub const USERS: usize = 10_000;

/// One sticky user.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct User {
    /// Where the user's key hashes to, in [0, 1): the candidate serves it when below the share.
    pub bucket: f64,
    pub enterprise: bool,
    pub error_rate: f64,
    pub latency_factor: f64,
    pub score_offset: f64,
    /// `srm_drop`: the candidate's requests of this user are never captured.
    pub dropped: bool,
}

/// One request's potential outcomes on both variants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Side {
    pub error: bool,
    pub latency_ms: f64,
    pub cost: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestDraw {
    pub user: u32,
    pub stable: Side,
    pub candidate: Side,
    /// Uniform in [0, 1): a shadow stage mirrors the request when below its sample rate.
    pub mirror_roll: f64,
}

/// One matched pair as the gates see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairDraw {
    pub user: u32,
    pub enterprise: bool,
    /// Judge scores on the 1–5 scale; `None` when that side errored or the judge abstained.
    pub stable_score: Option<f64>,
    pub candidate_score: Option<f64>,
    pub stable_error: bool,
    pub candidate_error: bool,
    pub stable_abstained: bool,
    pub candidate_abstained: bool,
}

/// Draws one scenario's population, requests and pairs.
pub struct Traffic {
    scenario: Scenario,
    unit: Normal,
    pub users: Vec<User>,
    /// Cumulative request weights, for drawing a request's user.
    cumulative: Vec<f64>,
}

impl Traffic {
    /// A population drawn from `rng` (a fresh one per run).
    pub fn new(scenario: Scenario, model: TrafficModel, rng: &mut ChaCha8Rng) -> Self {
        let unit = Normal::standard();
        let mut users = Vec::with_capacity(USERS);
        let mut weights = Vec::with_capacity(USERS);
        // Parameters are valid constants, so these cannot fail.
        let volume = Pareto::new(1.0, 1.5).ok();
        let propensity = Beta::new(0.5, 24.5).ok();
        for _ in 0..USERS {
            let mut u = User {
                bucket: rng.random::<f64>(),
                enterprise: rng.random_bool(0.10),
                error_rate: 0.02,
                latency_factor: 1.0,
                score_offset: 0.0,
                dropped: rng.random_bool(0.2),
            };
            let mut w = 1.0;
            if model == TrafficModel::Clustered {
                w = volume.map_or(1.0, |v| v.sample(rng).min(500.0));
                u.error_rate = propensity.map_or(0.02, |b| b.sample(rng));
                u.latency_factor = (0.3 * unit.sample(rng)).exp();
                u.score_offset = 0.5 * unit.sample(rng);
            }
            users.push(u);
            weights.push(w);
        }
        if model == TrafficModel::Clustered {
            // The big tenant: user 0 sends 20% of all requests at a 10% error rate.
            let others: f64 = weights[1..].iter().sum();
            weights[0] = others * 0.25;
            users[0].error_rate = 0.10;
            users[0].enterprise = false;
        }
        let mut cumulative = Vec::with_capacity(USERS);
        let mut acc = 0.0;
        for w in weights {
            acc += w;
            cumulative.push(acc);
        }
        Self {
            scenario,
            unit,
            users,
            cumulative,
        }
    }

    fn z(&self, rng: &mut ChaCha8Rng) -> f64 {
        self.unit.sample(rng)
    }

    fn draw_user(&self, rng: &mut ChaCha8Rng) -> u32 {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = rng.random::<f64>() * total;
        let i = self.cumulative.partition_point(|&c| c <= x);
        i.min(self.users.len() - 1) as u32
    }

    pub fn user(&self, id: u32) -> &User {
        &self.users[id as usize]
    }

    pub fn request(&self, rng: &mut ChaCha8Rng) -> RequestDraw {
        let id = self.draw_user(rng);
        let u = self.users[id as usize];
        let s = self.scenario;
        let cand_error_rate = if s == Scenario::ErrorBump {
            (u.error_rate + 0.13).min(1.0)
        } else {
            u.error_rate
        };
        let latency_factor = if s == Scenario::LatencyBump {
            1.35
        } else {
            1.0
        };
        let base = 800.0 * u.latency_factor;
        RequestDraw {
            user: id,
            stable: Side {
                error: rng.random_bool(u.error_rate),
                latency_ms: base * (0.4 * self.z(rng)).exp(),
                cost: 0.002 * (0.3 * self.z(rng)).exp(),
            },
            candidate: Side {
                error: rng.random_bool(cand_error_rate),
                latency_ms: base * latency_factor * (0.4 * self.z(rng)).exp(),
                cost: 0.002 * (0.3 * self.z(rng)).exp(),
            },
            mirror_roll: rng.random::<f64>(),
        }
    }

    pub fn pair(&self, rng: &mut ChaCha8Rng) -> PairDraw {
        let id = self.draw_user(rng);
        let u = self.users[id as usize];
        let s = self.scenario;
        let shift = match s {
            Scenario::SmallDrop => -0.3,
            Scenario::CohortRegression if u.enterprise => -1.0,
            _ => 0.0,
        };
        let cand_error_rate = if s == Scenario::ErrorBump {
            (u.error_rate + 0.13).min(1.0)
        } else {
            u.error_rate
        };
        let d = 0.7 * self.z(rng) + u.score_offset;
        let score =
            |noise: f64, shift: f64| (3.8 + d + shift + 0.6 * noise).round().clamp(1.0, 5.0);
        let stable_raw = score(self.z(rng), 0.0);
        let cand_raw = score(self.z(rng), shift);
        let stable_error = rng.random_bool(u.error_rate);
        let candidate_error = rng.random_bool(cand_error_rate);
        let stable_abstained = rng.random_bool(0.01);
        let candidate_abstained = rng.random_bool(0.01);
        let judged = !stable_error && !candidate_error;
        PairDraw {
            user: id,
            enterprise: u.enterprise,
            stable_score: (judged && !stable_abstained).then_some(stable_raw),
            candidate_score: (judged && !candidate_abstained).then_some(cand_raw),
            stable_error,
            candidate_error,
            stable_abstained: judged && stable_abstained,
            candidate_abstained: judged && candidate_abstained,
        }
    }
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
        for m in TrafficModel::ALL {
            assert_eq!(TrafficModel::parse(m.name()), Some(m));
        }
        let mut a = ChaCha8Rng::seed_from_u64(1);
        let mut b = ChaCha8Rng::seed_from_u64(1);
        let ta = Traffic::new(Scenario::Aa, TrafficModel::Clustered, &mut a);
        let tb = Traffic::new(Scenario::Aa, TrafficModel::Clustered, &mut b);
        for _ in 0..100 {
            assert_eq!(ta.pair(&mut a), tb.pair(&mut b));
            assert_eq!(ta.request(&mut a), tb.request(&mut b));
        }
    }

    #[test]
    fn small_drop_moves_the_mean_score_by_about_the_shift() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let t = Traffic::new(Scenario::SmallDrop, TrafficModel::Iid, &mut rng);
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
    }

    #[test]
    fn clustered_traffic_has_a_heavy_tenant_and_heavy_tailed_users() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let t = Traffic::new(Scenario::Aa, TrafficModel::Clustered, &mut rng);
        let mut per_user = vec![0u32; USERS];
        let draws = 50_000;
        for _ in 0..draws {
            per_user[t.request(&mut rng).user as usize] += 1;
        }
        let tenant = f64::from(per_user[0]) / draws as f64;
        assert!((0.18..0.22).contains(&tenant), "tenant share {tenant}");
        // The heaviest 1% of the other users send far more than 1% of their requests.
        let mut rest: Vec<u32> = per_user[1..].to_vec();
        rest.sort_unstable_by(|a, b| b.cmp(a));
        let top: u32 = rest[..USERS / 100].iter().sum();
        let all: u32 = rest.iter().sum();
        assert!(f64::from(top) / f64::from(all) > 0.08, "{top} of {all}");
        // iid: equal volumes.
        let t = Traffic::new(Scenario::Aa, TrafficModel::Iid, &mut rng);
        assert!(t.users.iter().all(|u| u.error_rate == 0.02));
    }
}
