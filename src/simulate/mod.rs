//! The engine of `canarist simulate` (`cli::simulate` prints it): runs the real gate, guardrail and rollout state machine tick by tick on
//! synthetic traffic (seeded, reproducible), many times per scenario, next to two reference
//! gates on the same streams, and reports how often each rolled back, promoted or held, and
//! how fast it rolled back.
//!
//! Owns: the simulation's ramp and policy, the run loop and the report. Never: touches the
//! network, the store or real clocks (simulated time advances 5 s per tick).
//! Fails closed: an unknown scenario name is an error, not an empty table.

mod drivers;
mod traffic;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::gate::{Direction, GatePolicy, GuardrailConfig, MetricKind, MetricPolicy};
use crate::rollout::{Exposure, OnTimeout, Ramp, Stage};
use drivers::{Canarist, Driver, Final, MeanDrop, RunOutcome, WelchRolling};
pub use traffic::{Scenario, TrafficModel};

/// Seconds of simulated time per controller tick.
pub const TICK_SECS: i64 = 5;

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Runs per scenario.
    #[arg(long, default_value_t = 1000)]
    pub runs: usize,
    /// Print a JSON array (one object per scenario and gate) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Seed of the random streams (same seed, same table).
    #[arg(long, default_value_t = 2024)]
    pub seed: u64,
    /// Only these scenarios (comma-separated): aa, small_drop, cohort_regression, error_bump,
    /// latency_bump, low_traffic, srm, srm_drop.
    #[arg(long, value_delimiter = ',')]
    pub scenario: Vec<String>,
    /// Traffic models (comma-separated): `iid` (equal users) and/or `clustered` (Pareto user
    /// volumes, per-user propensities, one tenant with 20% of the requests).
    #[arg(long, value_delimiter = ',', default_value = "iid")]
    pub traffic: Vec<String>,
    /// The quality metric's rollback margin (`0`: roll back once the candidate is surely worse
    /// than stable; `0.15`, its promotion margin, is how canarist judged rollbacks before).
    #[arg(long, default_value_t = SIM_QUALITY_ROLLBACK_MARGIN)]
    pub rollback_margin: f64,
    /// The error guardrail's `error_z` for the per-unit gate: standard errors (jackknife over
    /// unit groups) the candidate's excess error rate must clear (`0`: the point rule alone).
    #[arg(long, default_value_t = crate::gate::guardrail::default_error_z())]
    pub guardrail_z: f64,
}

/// The simulation's quality rollback margin (see [`sim_policy`]).
pub const SIM_QUALITY_ROLLBACK_MARGIN: f64 = 0.0;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimulateError {
    #[error(
        "unknown scenario `{0}` (known: aa, small_drop, cohort_regression, error_bump, latency_bump, low_traffic, srm, srm_drop)"
    )]
    UnknownScenario(String),
    #[error("unknown traffic model `{0}` (known: iid, clustered)")]
    UnknownTraffic(String),
    #[error("--runs must be at least 1")]
    NoRuns,
    #[error("--rollback-margin must be a finite number ≥ 0")]
    BadRollbackMargin,
    #[error("--guardrail-z must be a finite number ≥ 0")]
    BadGuardrailZ,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub runs: usize,
    pub seed: u64,
    pub scenarios: Vec<Scenario>,
    pub traffic: Vec<TrafficModel>,
    /// The quality metric's rollback margin.
    pub rollback_margin: f64,
    /// The per-unit gate's guardrail `error_z`.
    pub guardrail_z: f64,
}

impl SimConfig {
    pub fn from_args(args: &SimulateArgs) -> Result<Self, SimulateError> {
        if args.runs == 0 {
            return Err(SimulateError::NoRuns);
        }
        if !(args.rollback_margin.is_finite() && args.rollback_margin >= 0.0) {
            return Err(SimulateError::BadRollbackMargin);
        }
        if !(args.guardrail_z.is_finite() && args.guardrail_z >= 0.0) {
            return Err(SimulateError::BadGuardrailZ);
        }
        let scenarios = if args.scenario.is_empty() {
            Scenario::ALL.to_vec()
        } else {
            args.scenario
                .iter()
                .map(|s| {
                    Scenario::parse(s.trim())
                        .ok_or_else(|| SimulateError::UnknownScenario(s.clone()))
                })
                .collect::<Result<_, _>>()?
        };
        let traffic = args
            .traffic
            .iter()
            .map(|t| {
                TrafficModel::parse(t.trim())
                    .ok_or_else(|| SimulateError::UnknownTraffic(t.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            runs: args.runs,
            seed: args.seed,
            scenarios,
            traffic: if traffic.is_empty() {
                vec![TrafficModel::Iid]
            } else {
                traffic
            },
            rollback_margin: args.rollback_margin,
            guardrail_z: args.guardrail_z,
        })
    }
}

/// One row of the report: one scenario under one gate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub scenario: String,
    /// The traffic model (`iid`, `clustered`).
    pub traffic: String,
    pub gate: String,
    pub runs: usize,
    pub rollback_rate: f64,
    pub promotion_rate: f64,
    pub held_rate: f64,
    /// Rollbacks where the candidate was not worse (`None` when it was).
    pub false_rollback_rate: Option<f64>,
    /// Promotions where promoting was wrong (`None` when it was right).
    pub false_promotion_rate: Option<f64>,
    /// Judged pairs seen at the rollback, over the runs that rolled back.
    pub median_detection_pairs: Option<f64>,
    pub p90_detection_pairs: Option<f64>,
    /// Simulated seconds to the rollback, over the runs that rolled back.
    pub median_detection_secs: Option<f64>,
    pub p90_detection_secs: Option<f64>,
    /// Simulated seconds to the final promotion, over the runs that were promoted.
    pub median_promotion_secs: Option<f64>,
    /// Runs in which some tick would have promoted but for the sample-ratio check.
    pub srm_blocked_rate: f64,
    /// Rollbacks caused by the guardrail (fast path) rather than the statistical gate.
    pub guardrail_rollbacks: usize,
    /// What caused the rollbacks → runs (`guardrail`, `metric/cohort`, or the reference rule).
    pub rollback_causes: BTreeMap<String, usize>,
    /// Final state → runs (`promoted`, `rolled_back`, `held_stage_<i>`).
    pub final_states: BTreeMap<String, usize>,
    /// What held the runs still held at the horizon → runs: each blocking check at the last
    /// tick (`metric/cohort:verdict`, e.g. `latency_p95/tier=enterprise:inconclusive`) and
    /// unmet stage minimums. A run held by two checks counts under both; the reference gates
    /// never record any.
    pub hold_blockers: BTreeMap<String, usize>,
}

pub const GATES: [&str; 4] = [
    "canarist",
    "canarist_requests",
    "welch_rolling",
    "mean_drop",
];

/// The ramp every simulated rollout follows: shadow 20% → 5% → 25% → 50%, each stage at least
/// 5 minutes and 500 judged pairs, at most 60 minutes, then hold and alert.
pub fn sim_ramp() -> Ramp {
    let stage = |exposure| Stage {
        exposure,
        min_duration: Duration::from_secs(300),
        min_judged_pairs: 500,
        max_duration: Duration::from_secs(3600),
        on_timeout: OnTimeout::HoldAndAlert,
        exclude_cohorts: Vec::new(),
        approval_required: false,
    };
    Ramp {
        stages: vec![
            stage(Exposure::Shadow { sample_rate: 0.2 }),
            stage(Exposure::Live { share: 0.05 }),
            stage(Exposure::Live { share: 0.25 }),
            stage(Exposure::Live { share: 0.5 }),
        ],
    }
}

/// The gate policy used by the simulation (and a sensible starting point). Quality promotes on
/// non-inferiority within 0.15 points and rolls back once the candidate is surely worse than
/// stable by more than `quality_rollback_margin` (0 by default: see `MetricPolicy::rollback_margin`).
pub fn sim_policy(quality_rollback_margin: f64) -> GatePolicy {
    GatePolicy::with_metrics(vec![
        MetricPolicy::new(
            "quality",
            MetricKind::Mean {
                direction: Direction::HigherIsBetter,
                margin: 0.15,
            },
        )
        .rollback_at(quality_rollback_margin),
        MetricPolicy {
            name: "errors".into(),
            kind: MetricKind::ErrorRate {
                margin: 0.03,
                ceiling: 0.10,
            },
            rollback_margin: None,
        },
        MetricPolicy {
            name: "latency_p95".into(),
            kind: MetricKind::LatencyTail {
                quantile: 0.95,
                margin: 0.05,
            },
            rollback_margin: None,
        },
        MetricPolicy {
            name: "cost".into(),
            kind: MetricKind::CostRatio { budget: 1.25 },
            rollback_margin: None,
        },
    ])
}

/// Ticks until the simulation stops waiting: every stage at its maximum duration.
fn horizon_ticks(ramp: &Ramp) -> i64 {
    ramp.stages
        .iter()
        .map(|s| s.max_duration.as_secs() as i64)
        .sum::<i64>()
        / TICK_SECS
}

/// One run of one scenario: all gates on the same streams. Returns one outcome per gate.
fn run_once(
    cfg: &SimConfig,
    scenario: Scenario,
    model: TrafficModel,
    index: u64,
) -> [RunOutcome; 4] {
    let ticks = horizon_ticks(&sim_ramp());
    run_until(cfg, scenario, model, index, ticks)
}

/// [`run_once`], stopped after `ticks` ticks at the latest.
fn run_until(
    cfg: &SimConfig,
    scenario: Scenario,
    model: TrafficModel,
    index: u64,
    ticks: i64,
) -> [RunOutcome; 4] {
    let seed = cfg.seed;
    let stream = ((model as u64) << 48) | ((scenario as u64) << 40) | index;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let mut requests_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    requests_rng.set_stream(stream);
    let start = DateTime::<Utc>::UNIX_EPOCH;
    let ramp = sim_ramp();
    let canarist = |units| {
        Canarist::new(
            ramp.clone(),
            sim_policy(cfg.rollback_margin),
            GuardrailConfig {
                error_z: if units { cfg.guardrail_z } else { 0.0 },
                ..GuardrailConfig::default()
            },
            scenario,
            units,
            start,
        )
    };
    let mut gates: [Box<dyn Driver>; 4] = [
        Box::new(canarist(true)),
        Box::new(canarist(false)),
        Box::new(WelchRolling::new(ramp.clone(), start)),
        Box::new(MeanDrop::new(ramp.clone(), start)),
    ];
    let traffic = traffic::Traffic::new(scenario, model, &mut rng);
    let mut now = start;
    for tick in 1..=ticks.min(horizon_ticks(&ramp)) {
        if gates.iter().all(|g| g.done()) {
            break;
        }
        now = start + chrono::Duration::seconds(tick * TICK_SECS);
        for _ in 0..scenario.requests_per_tick() {
            let r = traffic.request(&mut requests_rng);
            let user = traffic.user(r.user);
            for g in gates.iter_mut() {
                g.request(&r, user, now);
            }
        }
        for _ in 0..scenario.pairs_per_tick() {
            let pair = traffic.pair(&mut rng);
            for g in gates.iter_mut() {
                g.observe(&pair, now);
            }
        }
        for g in gates.iter_mut() {
            g.tick(now);
        }
    }
    gates.map(|g| g.outcome(now))
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[idx])
}

fn summarize(scenario: Scenario, model: TrafficModel, gate: &str, outcomes: &[RunOutcome]) -> Row {
    let runs = outcomes.len();
    let rate = |f: &dyn Fn(&RunOutcome) -> bool| {
        outcomes.iter().filter(|o| f(o)).count() as f64 / runs as f64
    };
    let rollback_rate = rate(&|o| o.end == Final::RolledBack);
    let promotion_rate = rate(&|o| o.end == Final::Promoted);
    let mut pairs: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.end == Final::RolledBack)
        .map(|o| o.pairs as f64)
        .collect();
    let mut secs: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.end == Final::RolledBack)
        .map(|o| o.secs)
        .collect();
    pairs.sort_by(f64::total_cmp);
    secs.sort_by(f64::total_cmp);
    let mut promo: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.end == Final::Promoted)
        .map(|o| o.secs)
        .collect();
    promo.sort_by(f64::total_cmp);
    let mut rollback_causes = BTreeMap::new();
    for cause in outcomes.iter().filter_map(|o| o.cause.as_ref()) {
        *rollback_causes.entry(cause.clone()).or_insert(0) += 1;
    }
    let mut hold_blockers = BTreeMap::new();
    for b in outcomes.iter().flat_map(|o| &o.blockers) {
        *hold_blockers.entry(b.clone()).or_insert(0) += 1;
    }
    let mut final_states = BTreeMap::new();
    for o in outcomes {
        let key = match o.end {
            Final::Promoted => "promoted".to_owned(),
            Final::RolledBack => "rolled_back".to_owned(),
            Final::Held(i) => format!("held_stage_{i}"),
        };
        *final_states.entry(key).or_insert(0) += 1;
    }
    Row {
        scenario: scenario.name().to_owned(),
        traffic: model.name().to_owned(),
        gate: gate.to_owned(),
        runs,
        rollback_rate,
        promotion_rate,
        held_rate: 1.0 - rollback_rate - promotion_rate,
        false_rollback_rate: (!scenario.regressed()).then_some(rollback_rate),
        false_promotion_rate: scenario.promotion_is_wrong().then_some(promotion_rate),
        median_detection_pairs: quantile(&pairs, 0.5),
        p90_detection_pairs: quantile(&pairs, 0.9),
        median_detection_secs: quantile(&secs, 0.5),
        p90_detection_secs: quantile(&secs, 0.9),
        median_promotion_secs: quantile(&promo, 0.5),
        rollback_causes,
        srm_blocked_rate: rate(&|o| o.srm_blocked),
        guardrail_rollbacks: outcomes.iter().filter(|o| o.by_guardrail).count(),
        final_states,
        hold_blockers,
    }
}

/// Runs the simulation: `runs` runs of each scenario, spread over the machine's cores.
pub fn simulate(cfg: &SimConfig) -> Vec<Row> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(1);
    let mut rows = Vec::new();
    for &model in &cfg.traffic {
        for &scenario in &cfg.scenarios {
            let chunks: Vec<Vec<[RunOutcome; 4]>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        s.spawn(move || {
                            (t..cfg.runs)
                                .step_by(threads)
                                .map(|i| run_once(cfg, scenario, model, i as u64))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles.into_iter().filter_map(|h| h.join().ok()).collect()
            });
            let all: Vec<[RunOutcome; 4]> = chunks.into_iter().flatten().collect();
            for (g, name) in GATES.iter().enumerate() {
                let outcomes: Vec<RunOutcome> = all.iter().map(|o| o[g].clone()).collect();
                rows.push(summarize(scenario, model, name, &outcomes));
            }
        }
    }
    rows
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn opt_pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), pct)
}

fn opt_num(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
}

fn opt_mins(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |v| format!("{:.1}m", v / 60.0))
}

/// The report as a fixed-width text table.
pub fn render_table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<18} {:<9} {:<17} {:>5} {:>8} {:>8} {:>7} {:>8} {:>8} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7}  {}\n",
        "scenario",
        "traffic",
        "gate",
        "runs",
        "rollback",
        "promote",
        "held",
        "false_rb",
        "false_pr",
        "srm_blk",
        "med_prs",
        "p90_prs",
        "med_t",
        "p90_t",
        "promo_t",
        "final states; rollback causes; held by (checks at the last tick of held runs)"
    );
    for r in rows {
        let mut states: Vec<String> = r
            .final_states
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !r.rollback_causes.is_empty() {
            let causes: Vec<String> = r
                .rollback_causes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            states.push(format!("; {}", causes.join(" ")));
        }
        if !r.hold_blockers.is_empty() {
            let held: Vec<String> = r
                .hold_blockers
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            states.push(format!("; held by {}", held.join(" ")));
        }
        out.push_str(&format!(
            "{:<18} {:<9} {:<17} {:>5} {:>8} {:>8} {:>7} {:>8} {:>8} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7}  {}\n",
            r.scenario,
            r.traffic,
            r.gate,
            r.runs,
            pct(r.rollback_rate),
            pct(r.promotion_rate),
            pct(r.held_rate),
            opt_pct(r.false_rollback_rate),
            opt_pct(r.false_promotion_rate),
            pct(r.srm_blocked_rate),
            opt_num(r.median_detection_pairs),
            opt_num(r.p90_detection_pairs),
            opt_mins(r.median_detection_secs),
            opt_mins(r.p90_detection_secs),
            opt_mins(r.median_promotion_secs),
            states.join(" "),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 30 simulated minutes: the shadow stage and the start of the 5% live stage (too short to
    /// promote it, so the runs end there, with or without a sample-ratio alert).
    const HALF_HOUR: i64 = 360;

    fn cfg(seed: u64) -> SimConfig {
        SimConfig {
            runs: 1,
            seed,
            scenarios: vec![],
            traffic: vec![],
            rollback_margin: SIM_QUALITY_ROLLBACK_MARGIN,
            guardrail_z: crate::gate::guardrail::default_error_z(),
        }
    }

    /// The sample-ratio check flags the dropped units and holds a live stage. (The per-unit
    /// gate may pass the 5% stage before the check has the units to fire — its small cohort
    /// no longer holds the stage, see `GatePolicy::cohort_min_units` — and is then held at 25%.)
    #[test]
    fn dropped_candidate_units_block_promotion_at_a_live_stage() {
        let [units, requests, ..] =
            run_until(&cfg(7), Scenario::SrmDrop, TrafficModel::Iid, 0, HALF_HOUR);
        for o in [&units, &requests] {
            assert!(o.srm_alert, "{o:?}");
            assert!(matches!(o.end, Final::Held(1 | 2)), "{o:?}");
            assert!(
                o.blockers.contains(&"sample_ratio/all:blocked".to_owned()),
                "{o:?}"
            );
        }
        assert_eq!(requests.end, Final::Held(1), "{requests:?}");
    }

    #[test]
    fn identical_variants_are_neither_rolled_back_nor_flagged_on_iid_traffic() {
        let [units, ..] = run_until(&cfg(7), Scenario::Aa, TrafficModel::Iid, 1, HALF_HOUR);
        assert!(!units.srm_alert, "{units:?}");
        assert_ne!(units.end, Final::RolledBack, "{units:?}");
        assert_ne!(units.end, Final::Held(0), "{units:?}");
    }

    #[test]
    fn a_held_run_names_what_held_it_and_the_table_counts_it() {
        // 30 ticks (150 s) end inside the shadow stage's 5-minute minimum.
        let [units, .., mean_drop] = run_until(&cfg(7), Scenario::Aa, TrafficModel::Iid, 0, 30);
        assert_eq!(units.end, Final::Held(0), "{units:?}");
        assert!(
            units.blockers.contains(&"min_duration".to_owned()),
            "{units:?}"
        );
        assert!(
            units
                .blockers
                .iter()
                .all(|b| b.starts_with("min_") || b.contains('/') && b.contains(':')),
            "{units:?}"
        );
        // The reference gates have no checks to name.
        assert!(mean_drop.blockers.is_empty(), "{mean_drop:?}");
        // Counted over held runs only, each check once per run.
        let held = |blockers: &[&str]| RunOutcome {
            end: Final::Held(1),
            pairs: 0,
            secs: 0.0,
            by_guardrail: false,
            cause: None,
            srm_blocked: false,
            srm_alert: false,
            blockers: blockers.iter().map(|b| (*b).to_owned()).collect(),
        };
        let promoted = RunOutcome {
            end: Final::Promoted,
            ..held(&[])
        };
        let row = summarize(
            Scenario::Aa,
            TrafficModel::Clustered,
            "canarist",
            &[
                held(&[
                    "latency_p95/tier=enterprise:inconclusive",
                    "errors/tier=enterprise:inconclusive",
                ]),
                held(&["latency_p95/tier=enterprise:inconclusive"]),
                promoted,
            ],
        );
        let counts: Vec<(&str, usize)> = row
            .hold_blockers
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            counts,
            vec![
                ("errors/tier=enterprise:inconclusive", 1),
                ("latency_p95/tier=enterprise:inconclusive", 2)
            ]
        );
        let table = render_table(&[row]);
        assert!(
            table.contains(
                "held by errors/tier=enterprise:inconclusive=1 latency_p95/tier=enterprise:inconclusive=2"
            ),
            "{table}"
        );
    }

    #[test]
    fn clustered_aa_is_not_blocked_by_units_but_by_requests() {
        let [units, requests, ..] =
            run_until(&cfg(7), Scenario::Aa, TrafficModel::Clustered, 0, HALF_HOUR);
        assert!(!units.srm_alert, "{units:?}");
        assert_ne!(units.end, Final::RolledBack, "{units:?}");
        assert!(requests.srm_alert, "{requests:?}");
    }
}
