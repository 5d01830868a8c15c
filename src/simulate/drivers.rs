//! The gates `canarist simulate` compares, each driving its own copy of the real rollout state
//! machine over the same pairs: `canarist` (the real `gate::evaluate` plus the guardrail),
//! `welch_rolling` and `mean_drop` (the reference rules, which promote a stage as soon as its
//! minimum duration and pairs are met unless their rule fired).

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};

use super::traffic::{PairDraw, Scenario, split};
use crate::capture::Role;
use crate::gate::sequential::{Count, Moments, welch};
use crate::gate::{
    Abstentions, Action, Assignment, GatePolicy, Guardrail, GuardrailConfig, MetricData,
    StageContext, StageSummaries, Verdict, evaluate,
};
use crate::rollout::{Event, Exposure, Ramp, State, step};

/// How a run ended for one gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final {
    Promoted,
    RolledBack,
    /// Still in this stage when the simulation's horizon was reached.
    Held(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub end: Final,
    /// Judged pairs seen when the run ended (at the rollback, for a rollback).
    pub pairs: u64,
    pub secs: f64,
    pub by_guardrail: bool,
    /// What caused a rollback: `guardrail`, a `metric/cohort` cell, or the reference rule.
    pub cause: Option<String>,
}

/// The bookkeeping every gate shares: the state machine and its counters.
struct Lane {
    ramp: Ramp,
    state: State,
    stage_pairs: u64,
    total_pairs: u64,
    start: DateTime<Utc>,
    end: Option<RunOutcome>,
    /// Cause to record if the next event rolls back.
    cause: Option<String>,
}

impl Lane {
    fn new(ramp: Ramp, start: DateTime<Utc>) -> Self {
        let tr = step(
            &ramp,
            &State::Draft,
            &Event::Start {
                actor: "simulate".into(),
            },
            start,
        );
        Self {
            ramp,
            state: tr.to,
            stage_pairs: 0,
            total_pairs: 0,
            start,
            end: None,
            cause: None,
        }
    }

    fn stage(&self) -> Option<usize> {
        match &self.state {
            State::Running(run) | State::Paused { run, .. } => Some(run.stage),
            _ => None,
        }
    }

    fn configured_share(&self) -> f64 {
        let stage = self.stage().and_then(|i| self.ramp.stages.get(i));
        match stage.map(|s| s.exposure) {
            Some(Exposure::Shadow { sample_rate }) => sample_rate,
            Some(Exposure::Live { share }) => share,
            None => 0.0,
        }
    }

    fn context(&self, now: DateTime<Utc>) -> StageContext {
        let (elapsed, stage) = match &self.state {
            State::Running(run) => (run.elapsed(now), self.ramp.stages.get(run.stage)),
            _ => (Default::default(), None),
        };
        StageContext {
            elapsed,
            judged_pairs: self.stage_pairs,
            min_duration: stage.map(|s| s.min_duration).unwrap_or_default(),
            min_judged_pairs: stage.map(|s| s.min_judged_pairs).unwrap_or(u64::MAX),
        }
    }

    /// Applies an event; returns whether a new stage began (so stage data must be reset).
    fn apply(&mut self, event: Event, now: DateTime<Utc>) -> bool {
        let before = self.stage();
        let tr = step(&self.ramp, &self.state, &event, now);
        self.state = tr.to;
        let secs = (now - self.start).num_milliseconds() as f64 / 1000.0;
        let by_guardrail = matches!(event, Event::Guardrail { .. });
        let cause = self.cause.take();
        let outcome = |end| RunOutcome {
            end,
            pairs: self.total_pairs,
            secs,
            by_guardrail,
            cause: if end == Final::RolledBack {
                cause.clone()
            } else {
                None
            },
        };
        match self.state {
            State::Promoted { .. } => self.end = Some(outcome(Final::Promoted)),
            State::RolledBack { .. } => self.end = Some(outcome(Final::RolledBack)),
            _ => {}
        }
        let changed = self.stage() != before;
        if changed {
            self.stage_pairs = 0;
        }
        changed
    }

    fn outcome(&self, now: DateTime<Utc>) -> RunOutcome {
        self.end.clone().unwrap_or(RunOutcome {
            end: Final::Held(self.stage().unwrap_or(0)),
            pairs: self.total_pairs,
            secs: (now - self.start).num_milliseconds() as f64 / 1000.0,
            by_guardrail: false,
            cause: None,
        })
    }

    /// The reference gates' promotion rule: the stage's minimums are met.
    fn minimums_met(&self, now: DateTime<Utc>) -> bool {
        let c = self.context(now);
        c.elapsed >= c.min_duration && c.judged_pairs >= c.min_judged_pairs
    }
}

/// A gate under simulation.
pub trait Driver {
    fn observe(&mut self, pair: &PairDraw, now: DateTime<Utc>);
    /// One controller tick; `z` sets the tick's request split.
    fn tick(&mut self, now: DateTime<Utc>, z: f64);
    fn done(&self) -> bool;
    fn outcome(&self, now: DateTime<Utc>) -> RunOutcome;
}

fn judged(p: &PairDraw) -> Option<(f64, f64)> {
    Some((p.stable_score?, p.candidate_score?))
}

/// Log-spaced latency histogram (3% buckets), enough to find stable's quantile.
#[derive(Clone)]
struct LogHist {
    counts: Vec<u32>,
    n: u64,
}

const BUCKETS: usize = 400;
const STEP: f64 = 0.029_558_802_241_544_4; // ln(1.03)

impl LogHist {
    fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            n: 0,
        }
    }
    fn push(&mut self, ms: f64) {
        let b = (ms.max(1.0).ln() / STEP).floor() as usize;
        self.counts[b.min(BUCKETS - 1)] += 1;
        self.n += 1;
    }
    /// The bucket holding quantile `q`.
    fn quantile_bucket(&self, q: f64) -> Option<usize> {
        let target = (q * self.n as f64).ceil() as u64;
        let mut cum = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            cum += u64::from(c);
            if self.n > 0 && cum >= target {
                return Some(i);
            }
        }
        None
    }
    fn above(&self, bucket: usize) -> u64 {
        self.counts[bucket + 1..]
            .iter()
            .map(|&c| u64::from(c))
            .sum()
    }
    fn upper_edge(bucket: usize) -> f64 {
        ((bucket + 1) as f64 * STEP).exp()
    }
}

#[derive(Clone)]
struct CohortAcc {
    quality: Moments,
    errors: [Count; 2],
    latency: [LogHist; 2],
    cost: [Moments; 2],
}

impl CohortAcc {
    fn new() -> Self {
        Self {
            quality: Moments::default(),
            errors: [Count::default(); 2],
            latency: [LogHist::new(), LogHist::new()],
            cost: [Moments::default(); 2],
        }
    }

    fn push(&mut self, p: &PairDraw) {
        if let Some((s, c)) = judged(p) {
            self.quality.push(c - s);
        }
        let sides = [
            (p.candidate_error, p.candidate_latency_ms, p.candidate_cost),
            (p.stable_error, p.stable_latency_ms, p.stable_cost),
        ];
        for (i, (err, ms, cost)) in sides.into_iter().enumerate() {
            self.errors[i].n += 1;
            self.errors[i].hits += u64::from(err);
            if !err {
                self.latency[i].push(ms);
                self.cost[i].push(cost);
            }
        }
    }

    fn summary(&self) -> BTreeMap<String, MetricData> {
        let mut m = BTreeMap::new();
        m.insert("quality".to_owned(), MetricData::Paired(self.quality));
        m.insert(
            "errors".to_owned(),
            MetricData::Proportions {
                candidate: self.errors[0],
                stable: self.errors[1],
            },
        );
        let qb = self.latency[1].quantile_bucket(0.95);
        m.insert(
            "latency_p95".to_owned(),
            MetricData::Exceedance {
                candidate_above: Count::new(
                    qb.map_or(0, |b| self.latency[0].above(b)),
                    self.latency[0].n,
                ),
                stable_quantile: qb.map(LogHist::upper_edge),
                candidate_quantile: self.latency[0]
                    .quantile_bucket(0.95)
                    .map(LogHist::upper_edge),
            },
        );
        m.insert(
            "cost".to_owned(),
            MetricData::Cost {
                candidate: self.cost[0],
                stable: self.cost[1],
            },
        );
        m
    }
}

/// The real gate: `evaluate` every tick plus the guardrail on every outcome.
pub struct Canarist {
    lane: Lane,
    policy: GatePolicy,
    guardrail: Guardrail,
    scenario: Scenario,
    cohorts: [CohortAcc; 3],
    abstentions: [Abstentions; 2],
    assignment: [u64; 2],
}

const COHORTS: [&str; 3] = ["all", "tier=enterprise", "tier=standard"];

impl Canarist {
    pub fn new(
        ramp: Ramp,
        policy: GatePolicy,
        guardrail: GuardrailConfig,
        scenario: Scenario,
        start: DateTime<Utc>,
    ) -> Self {
        let mut c = Self {
            lane: Lane::new(ramp, start),
            policy,
            guardrail: Guardrail::new(guardrail),
            scenario,
            cohorts: [CohortAcc::new(), CohortAcc::new(), CohortAcc::new()],
            abstentions: [
                Abstentions {
                    variant: "candidate".into(),
                    abstained: 0,
                    attempts: 0,
                },
                Abstentions {
                    variant: "stable".into(),
                    abstained: 0,
                    attempts: 0,
                },
            ],
            assignment: [0, 0],
        };
        c.reset_stage();
        c
    }

    fn reset_stage(&mut self) {
        self.cohorts = [CohortAcc::new(), CohortAcc::new(), CohortAcc::new()];
        for a in &mut self.abstentions {
            a.abstained = 0;
            a.attempts = 0;
        }
        self.assignment = [0, 0];
    }

    fn summaries(&self) -> StageSummaries {
        let mut s = StageSummaries::default();
        for (name, acc) in COHORTS.iter().zip(&self.cohorts) {
            s.cohorts.insert((*name).to_owned(), acc.summary());
        }
        let share = self.lane.configured_share();
        if share > 0.0 && share < 1.0 {
            s.assignment = Some(Assignment {
                variants: vec![
                    ("candidate".into(), self.assignment[0], share),
                    ("stable".into(), self.assignment[1], 1.0 - share),
                ],
            });
        }
        s.abstentions = self.abstentions.to_vec();
        s
    }
}

impl Driver for Canarist {
    fn observe(&mut self, p: &PairDraw, now: DateTime<Utc>) {
        if self.done() {
            return;
        }
        self.guardrail
            .record(now, Role::Candidate, p.candidate_error);
        self.guardrail.record(now, Role::Stable, p.stable_error);
        self.cohorts[0].push(p);
        self.cohorts[if p.enterprise { 1 } else { 2 }].push(p);
        if !p.stable_error && !p.candidate_error {
            for (a, abst) in self
                .abstentions
                .iter_mut()
                .zip([p.candidate_abstained, p.stable_abstained])
            {
                a.attempts += 1;
                a.abstained += u64::from(abst);
            }
        }
        if judged(p).is_some() {
            self.lane.stage_pairs += 1;
            self.lane.total_pairs += 1;
        }
    }

    fn tick(&mut self, now: DateTime<Utc>, z: f64) {
        if self.done() {
            return;
        }
        let requests = self.scenario.requests_per_tick();
        let actual = self.scenario.actual_share(self.lane.configured_share());
        let cand = split(requests, actual, z);
        self.assignment[0] += cand;
        self.assignment[1] += requests - cand;
        let event = match self.guardrail.check(now) {
            Some(trip) => {
                self.lane.cause = Some("guardrail".to_owned());
                Event::Guardrail {
                    reason: trip.reason,
                }
            }
            None => {
                let d = evaluate(&self.policy, &self.lane.context(now), &self.summaries());
                self.lane.cause = d
                    .evidence
                    .iter()
                    .find(|e| e.verdict == Verdict::Worse)
                    .map(|e| format!("{}/{}", e.metric, e.cohort));
                Event::Gate {
                    action: d.action,
                    reason: d.reason,
                }
            }
        };
        if self.lane.apply(event, now) {
            self.reset_stage();
        }
    }

    fn done(&self) -> bool {
        self.lane.end.is_some()
    }

    fn outcome(&self, now: DateTime<Utc>) -> RunOutcome {
        self.lane.outcome(now)
    }
}

/// Welch's t-test at p < 0.05 over the last 200 judged pairs, checked every tick; rolls back
/// when the candidate is significantly lower.
pub struct WelchRolling {
    lane: Lane,
    window: VecDeque<(f64, f64)>,
    sums: [Moments; 2],
}

pub const WELCH_WINDOW: usize = 200;
/// The rolling Welch test starts once the window holds this many pairs.
pub const WELCH_MIN: usize = 20;

impl WelchRolling {
    pub fn new(ramp: Ramp, start: DateTime<Utc>) -> Self {
        Self {
            lane: Lane::new(ramp, start),
            window: VecDeque::with_capacity(WELCH_WINDOW + 1),
            sums: [Moments::default(); 2],
        }
    }
}

impl Driver for WelchRolling {
    fn observe(&mut self, p: &PairDraw, _now: DateTime<Utc>) {
        let Some((s, c)) = judged(p) else { return };
        if self.done() {
            return;
        }
        self.lane.stage_pairs += 1;
        self.lane.total_pairs += 1;
        self.window.push_back((s, c));
        self.sums[0].push(c);
        self.sums[1].push(s);
        if self.window.len() > WELCH_WINDOW
            && let Some((s, c)) = self.window.pop_front()
        {
            // Scores are small integers, so removing them from the sums is exact.
            for (m, x) in self.sums.iter_mut().zip([c, s]) {
                m.n -= 1;
                m.sum -= x;
                m.sum_sq -= x * x;
            }
        }
    }

    fn tick(&mut self, now: DateTime<Utc>, _z: f64) {
        if self.done() {
            return;
        }
        let fired = self.window.len() >= WELCH_MIN
            && matches!(
                (self.sums[0].stats(), self.sums[1].stats()),
                (Some(c), Some(s)) if welch(&c, &s).is_some_and(|w| w.p < 0.05 && w.t < 0.0)
            );
        let action = if fired {
            self.lane.cause = Some("welch_p<0.05".to_owned());
            Action::Rollback
        } else if self.lane.minimums_met(now) {
            Action::Promote
        } else {
            Action::Hold
        };
        self.lane.apply(
            Event::Gate {
                action,
                reason: "welch_rolling".into(),
            },
            now,
        );
    }

    fn done(&self) -> bool {
        self.lane.end.is_some()
    }

    fn outcome(&self, now: DateTime<Utc>) -> RunOutcome {
        self.lane.outcome(now)
    }
}

/// "Roll back when the mean drops by more than 5 points after 20 requests": scores are mapped
/// from the 1–5 scale to 0–100 ((s − 1) / 4 × 100, so 5 points = 0.2 on the 1–5 scale) and the
/// stage's cumulative means compared every tick once the stage has 20 judged pairs.
pub struct MeanDrop {
    lane: Lane,
    sums: [Moments; 2],
}

impl MeanDrop {
    pub fn new(ramp: Ramp, start: DateTime<Utc>) -> Self {
        Self {
            lane: Lane::new(ramp, start),
            sums: [Moments::default(); 2],
        }
    }
}

impl Driver for MeanDrop {
    fn observe(&mut self, p: &PairDraw, _now: DateTime<Utc>) {
        let Some((s, c)) = judged(p) else { return };
        if self.done() {
            return;
        }
        self.lane.stage_pairs += 1;
        self.lane.total_pairs += 1;
        self.sums[0].push((c - 1.0) * 25.0);
        self.sums[1].push((s - 1.0) * 25.0);
    }

    fn tick(&mut self, now: DateTime<Utc>, _z: f64) {
        if self.done() {
            return;
        }
        let (c, s) = (&self.sums[0], &self.sums[1]);
        let fired = c.n >= 20 && (s.sum / s.n as f64 - c.sum / c.n as f64) > 5.0;
        let action = if fired {
            self.lane.cause = Some("mean_drop>5".to_owned());
            Action::Rollback
        } else if self.lane.minimums_met(now) {
            Action::Promote
        } else {
            Action::Hold
        };
        if self.lane.apply(
            Event::Gate {
                action,
                reason: "mean_drop".into(),
            },
            now,
        ) {
            self.sums = [Moments::default(); 2];
        }
    }

    fn done(&self) -> bool {
        self.lane.end.is_some()
    }

    fn outcome(&self, now: DateTime<Utc>) -> RunOutcome {
        self.lane.outcome(now)
    }
}
