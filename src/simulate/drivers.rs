//! The gates `canarist simulate` compares, each driving its own copy of the real rollout state
//! machine over the same streams: `canarist` (the real `gate::evaluate` plus the guardrail, its
//! inference and sample-ratio check over units), `canarist_requests` (the same gate fed
//! request-level summaries, as canarist was before it analysed units), `welch_rolling` and
//! `mean_drop` (the reference rules on judged pairs, which promote a stage as soon as its
//! minimum duration and pairs are met unless their rule fired).

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};

use super::traffic::{PairDraw, RequestDraw, Scenario, Side, USERS, User};
use crate::capture::LatencyHistogram;
use crate::capture::Role;
use crate::capture::tail::{bracket, rung_ms, rungs_below, upper_weight};
use crate::gate::sequential::{Count, JointRatio, Moments, UnitRatio, welch};
use crate::gate::{
    Abstentions, Action, Assigned, Assignment, Evidence, GatePolicy, Guardrail, GuardrailConfig,
    MetricData, StageContext, StageSummaries, Verdict, evaluate,
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
    /// Some tick would have promoted but for the sample-ratio check.
    pub srm_blocked: bool,
    /// The sample-ratio check found a mismatch at some tick.
    pub srm_alert: bool,
    /// For a run still held at the horizon: what held it at the last tick — each check that
    /// held it (not non-inferior, passed or deferred), as `metric/cohort:verdict` (`sample_ratio/all:
    /// blocked`, `latency_p95/tier=enterprise:inconclusive`), and the stage's unmet minimums.
    pub blockers: Vec<String>,
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
            State::Running(run)
            | State::Paused { run, .. }
            | State::AwaitingApproval { run, .. } => Some(run.stage),
            _ => None,
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
            srm_blocked: false,
            srm_alert: false,
            blockers: Vec::new(),
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
            srm_blocked: false,
            srm_alert: false,
            blockers: Vec::new(),
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
    /// One request, its user and both variants' potential outcomes (the gate's stage decides
    /// which it observes). The reference gates read judged pairs only.
    fn request(&mut self, _r: &RequestDraw, _user: &User, _now: DateTime<Utc>) {}
    fn observe(&mut self, pair: &PairDraw, now: DateTime<Utc>);
    /// One controller tick.
    fn tick(&mut self, now: DateTime<Utc>);
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
    fn bucket(ms: f64) -> usize {
        ((ms.max(1.0).ln() / STEP).floor() as usize).min(BUCKETS - 1)
    }
    /// Counts `ms`; returns its bucket.
    fn push(&mut self, ms: f64) -> usize {
        let b = Self::bucket(ms);
        self.counts[b] += 1;
        self.n += 1;
        b
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

/// How many of the latency tail's rungs a success of `ms` is slower than (`capture::tail`).
fn rungs_of(ms: f64) -> u8 {
    rungs_below(LatencyHistogram::bucket_of(ms)) as u8
}

/// 1 when a success with `n` rungs below it is above rung `r`, else 0.
fn above(n: u8, r: usize) -> f64 {
    f64::from(u8::from(usize::from(n) > r))
}

/// The per-unit gate's latency tail at one rung (`capture::tail`): both sides' successes slower
/// than it per unit, and the paired requests' 1[L_c above] − 1[L_s above] per pair and per unit.
#[derive(Clone)]
struct RungTail {
    rung: usize,
    units: JointAcc,
    paired: Moments,
    paired_units: UnitAcc,
}

impl RungTail {
    fn new(rung: usize) -> Self {
        Self {
            rung,
            units: JointAcc::new(USERS),
            paired: Moments::default(),
            paired_units: UnitAcc::new(USERS),
        }
    }

    fn push_pair(&mut self, user: usize, rc: u8, rs: u8) {
        let d = above(rc, self.rung) - above(rs, self.rung);
        self.paired.push(d);
        self.paired_units.add(user, d, 1.0);
    }

    /// The gate's data at this rung, with its paired requests, and stable's share above it.
    fn data(
        &self,
        stable_quantile: Option<f64>,
        candidate_quantile: Option<f64>,
    ) -> (MetricData, f64) {
        let j = &self.units.ratio;
        let stable_share = if j.sums[3] > 0.0 {
            j.sums[2] / j.sums[3]
        } else {
            0.0
        };
        let data = MetricData::WithPairs {
            unpaired: Box::new(MetricData::UnitTail {
                candidate_above: Count::new(j.sums[0] as u64, j.sums[1] as u64),
                stable_above: Count::new(j.sums[2] as u64, j.sums[3] as u64),
                threshold_ms: rung_ms(self.rung),
                stable_quantile,
                candidate_quantile,
                units: *j,
            }),
            pairs: self.paired,
            units: self.paired_units.ratio,
        };
        (data, stable_share)
    }
}

/// One ratio metric on one side, accumulated per unit: each user's totals x and y and their
/// sums over units, kept up to date as requests arrive (so a tick reads them in O(1)).
#[derive(Clone)]
struct UnitAcc {
    x: Vec<f64>,
    y: Vec<f64>,
    ratio: UnitRatio,
}

impl UnitAcc {
    fn new(users: usize) -> Self {
        Self {
            x: vec![0.0; users],
            y: vec![0.0; users],
            ratio: UnitRatio::default(),
        }
    }

    /// Adds `dx`, `dy` (> 0) to unit `u`.
    fn add(&mut self, u: usize, dx: f64, dy: f64) {
        let (x0, y0) = (self.x[u], self.y[u]);
        let (x1, y1) = (x0 + dx, y0 + dy);
        let r = &mut self.ratio;
        if y0 == 0.0 {
            r.units += 1;
        }
        r.sum_x += dx;
        r.sum_y += dy;
        r.sum_xx += x1 * x1 - x0 * x0;
        r.sum_yy += y1 * y1 - y0 * y0;
        r.sum_xy += x1 * y1 - x0 * y0;
        self.x[u] = x1;
        self.y[u] = y1;
    }
}

/// A ratio metric on both sides per unit: each user's (x_c, y_c, x_s, y_s) and their sums.
#[derive(Clone)]
struct JointAcc {
    v: Vec<[f64; 4]>,
    ratio: JointRatio,
}

impl JointAcc {
    fn new(users: usize) -> Self {
        Self {
            v: vec![[0.0; 4]; users],
            ratio: JointRatio::default(),
        }
    }

    /// Adds `dx`, `dy` (> 0) to unit `u` on side `i` (0 candidate, 1 stable).
    fn add(&mut self, u: usize, i: usize, dx: f64, dy: f64) {
        let before = self.v[u];
        let mut after = before;
        after[2 * i] += dx;
        after[2 * i + 1] += dy;
        self.ratio.update(before, after);
        self.v[u] = after;
    }
}

/// Candidate (index 0) and stable (index 1) data of one cohort in the current stage.
#[derive(Clone)]
struct CohortAcc {
    quality: Moments,
    quality_units: UnitAcc,
    errors: [Count; 2],
    error_units: JointAcc,
    latency: [LogHist; 2],
    cost: [Moments; 2],
    cost_units: JointAcc,
    /// Whether the per-unit sums are kept (the request-level gate does without).
    units: bool,
    /// The per-unit gate's latency tail, as the writer and `gate_input` keep it: both sides'
    /// successes in the capture histogram's buckets (stable's quantile is read from them), each
    /// success's count of rungs below it per user and side (`capture::tail`), the users that
    /// have any, and the per-unit sums at the two rungs either side of stable's quantile.
    tail_hist: [Vec<u64>; 2],
    tail_rungs: [Vec<Vec<u8>>; 2],
    tail_users: Vec<u32>,
    bracket: Option<(usize, Option<usize>)>,
    tails: Vec<RungTail>,
    /// Paired requests (both variants on the same request): e_c − e_s per pair, and per unit.
    paired_errors: Moments,
    paired_error_units: UnitAcc,
    /// Paired requests without errors: both sides' rungs below per user (their differences at
    /// each rung are in `tails`).
    pair_rungs: Vec<Vec<(u8, u8)>>,
    pair_users: Vec<u32>,
}

impl CohortAcc {
    fn new(units: bool) -> Self {
        let n = if units { USERS } else { 0 };
        Self {
            quality: Moments::default(),
            quality_units: UnitAcc::new(n),
            errors: [Count::default(); 2],
            error_units: JointAcc::new(n),
            latency: [LogHist::new(), LogHist::new()],
            cost: [Moments::default(); 2],
            cost_units: JointAcc::new(n),
            units,
            tail_hist: [Vec::new(), Vec::new()],
            tail_rungs: [vec![Vec::new(); n], vec![Vec::new(); n]],
            tail_users: Vec::new(),
            bracket: None,
            tails: Vec::new(),
            paired_errors: Moments::default(),
            paired_error_units: UnitAcc::new(n),
            pair_rungs: vec![Vec::new(); n],
            pair_users: Vec::new(),
        }
    }

    /// One paired request: both variants answered the same prompt (a shadow mirror or a live
    /// pair sample). Only the per-unit gate keeps them.
    fn push_paired(&mut self, user: usize, c: &Side, s: &Side) {
        if !self.units {
            return;
        }
        let d = f64::from(u8::from(c.error)) - f64::from(u8::from(s.error));
        self.paired_errors.push(d);
        self.paired_error_units.add(user, d, 1.0);
        if c.error || s.error {
            return;
        }
        let (rc, rs) = (rungs_of(c.latency_ms), rungs_of(s.latency_ms));
        if self.pair_rungs[user].is_empty() {
            self.pair_users.push(user as u32);
        }
        self.pair_rungs[user].push((rc, rs));
        for t in &mut self.tails {
            t.push_pair(user, rc, rs);
        }
    }

    fn push_pair(&mut self, p: &PairDraw) {
        if let Some((s, c)) = judged(p) {
            self.quality.push(c - s);
            if self.units {
                self.quality_units.add(p.user as usize, c - s, 1.0);
            }
        }
    }

    /// One observed side of one request (`i`: 0 candidate, 1 stable).
    fn push_side(&mut self, i: usize, user: usize, side: &Side) {
        self.errors[i].n += 1;
        self.errors[i].hits += u64::from(side.error);
        if self.units {
            self.error_units
                .add(user, i, f64::from(u8::from(side.error)), 1.0);
        }
        if side.error {
            return;
        }
        self.latency[i].push(side.latency_ms);
        self.cost[i].push(side.cost);
        if !self.units {
            return;
        }
        self.cost_units.add(user, i, side.cost, 1.0);
        let h = &mut self.tail_hist[i];
        let b = LatencyHistogram::bucket_of(side.latency_ms) as usize;
        if h.len() <= b {
            h.resize(b + 1, 0);
        }
        h[b] += 1;
        let n = rungs_of(side.latency_ms);
        if self.tail_rungs[0][user].is_empty() && self.tail_rungs[1][user].is_empty() {
            self.tail_users.push(user as u32);
        }
        self.tail_rungs[i][user].push(n);
        for t in &mut self.tails {
            t.units.add(user, i, above(n, t.rung), 1.0);
        }
    }

    /// Stable's 95% quantile as `gate_input` reads it (from the capture histogram).
    fn stable_quantile(&self) -> Option<f64> {
        let mut h = LatencyHistogram::default();
        for (b, &c) in self.tail_hist[1].iter().enumerate() {
            if c > 0 {
                h.add(b as u32, c);
            }
        }
        h.quantile(0.95)
    }

    /// Recounts the per-unit tail sums when the rungs either side of stable's quantile moved.
    fn refresh_threshold(&mut self) {
        if !self.units {
            return;
        }
        let b = self.stable_quantile().and_then(bracket);
        if b == self.bracket {
            return;
        }
        self.bracket = b;
        self.tails = b
            .map(|(lo, hi)| std::iter::once(lo).chain(hi).map(RungTail::new).collect())
            .unwrap_or_default();
        for t in &mut self.tails {
            for &u in &self.tail_users {
                let u = u as usize;
                for i in 0..2 {
                    let rungs = &self.tail_rungs[i][u];
                    if !rungs.is_empty() {
                        let x: f64 = rungs.iter().map(|&n| above(n, t.rung)).sum();
                        t.units.add(u, i, x, rungs.len() as f64);
                    }
                }
            }
            for &u in &self.pair_users {
                for &(rc, rs) in &self.pair_rungs[u as usize] {
                    t.push_pair(u as usize, rc, rs);
                }
            }
        }
    }

    /// The gate's view: per unit (`units`) or per request (today's request-level gate).
    fn summary(&self, units: bool) -> BTreeMap<String, MetricData> {
        let mut m = BTreeMap::new();
        let quality = if units {
            MetricData::PairedUnits {
                pairs: self.quality,
                units: self.quality_units.ratio,
            }
        } else {
            MetricData::Paired(self.quality)
        };
        m.insert("quality".to_owned(), quality);
        let errors = if units {
            MetricData::WithPairs {
                unpaired: Box::new(MetricData::UnitRates {
                    candidate: self.errors[0],
                    stable: self.errors[1],
                    units: self.error_units.ratio,
                }),
                pairs: self.paired_errors,
                units: self.paired_error_units.ratio,
            }
        } else {
            MetricData::Proportions {
                candidate: self.errors[0],
                stable: self.errors[1],
            }
        };
        m.insert("errors".to_owned(), errors);
        let qb = self.latency[1].quantile_bucket(0.95);
        let candidate_quantile = self.latency[0]
            .quantile_bucket(0.95)
            .map(LogHist::upper_edge);
        let request_level = MetricData::Exceedance {
            candidate_above: Count::new(
                qb.map_or(0, |b| self.latency[0].above(b)),
                self.latency[0].n,
            ),
            stable_quantile: qb.map(LogHist::upper_edge),
            candidate_quantile,
            candidate_units: None,
        };
        // Over units at the two rungs either side of stable's quantile once both sides have
        // successes there (`gate_input`'s rule), interpolated where stable's share is 5%, with
        // the paired requests at each rung beside it.
        let usable =
            |t: &RungTail| t.units.ratio.candidate_units > 0 && t.units.ratio.stable_units > 0;
        let sq = self.stable_quantile();
        let latency = match self.tails.as_slice() {
            [lo, hi] if units && usable(lo) => {
                let (lower, sl) = lo.data(sq, candidate_quantile);
                let (upper, su) = hi.data(sq, candidate_quantile);
                MetricData::Between {
                    lower: Box::new(lower),
                    upper: Box::new(upper),
                    upper_weight: upper_weight(sl, su, 0.05),
                }
            }
            [one] if units && usable(one) => one.data(sq, candidate_quantile).0,
            _ => request_level,
        };
        m.insert("latency_p95".to_owned(), latency);
        let cost = if units {
            MetricData::UnitCost {
                candidate: self.cost[0],
                stable: self.cost[1],
                units: self.cost_units.ratio,
            }
        } else {
            MetricData::Cost {
                candidate: self.cost[0],
                stable: self.cost[1],
            }
        };
        m.insert("cost".to_owned(), cost);
        m
    }
}

/// The real gate: `evaluate` every tick plus the guardrail on every observed outcome. With
/// `units` (canarist today) its inference, sample-ratio check and guardrail run over units;
/// without, it is the request-level gate canarist had before (every request an independent
/// draw; its guardrail is given `error_z` 0, the point rule alone).
pub struct Canarist {
    lane: Lane,
    policy: GatePolicy,
    guardrail: Guardrail,
    scenario: Scenario,
    units: bool,
    cohorts: [CohortAcc; 3],
    abstentions: [Abstentions; 2],
    /// Served requests per side (candidate, stable) in the stage.
    served: [u64; 2],
    /// Whether each user was served by each side in the stage, and how many were.
    served_seen: [Vec<bool>; 2],
    served_units: [u64; 2],
    /// Some tick held only because of the sample-ratio check.
    srm_blocked: bool,
    /// Some tick's sample-ratio check found a mismatch.
    srm_alert: bool,
    /// What held the stage at the last tick (see [`RunOutcome::blockers`]).
    blockers: Vec<String>,
}

const COHORTS: [&str; 3] = ["all", "tier=enterprise", "tier=standard"];

/// Share of the candidate's live requests that stable answers too (`live.pair_sample_percent`
/// 20), for the per-unit gate (the request-level gate models canarist before pairs were used).
pub const LIVE_PAIR_SAMPLE: f64 = 0.2;

impl Canarist {
    pub fn new(
        ramp: Ramp,
        policy: GatePolicy,
        guardrail: GuardrailConfig,
        scenario: Scenario,
        units: bool,
        start: DateTime<Utc>,
    ) -> Self {
        let mut c = Self {
            lane: Lane::new(ramp, start),
            policy,
            guardrail: Guardrail::new(guardrail),
            scenario,
            units,
            cohorts: [
                CohortAcc::new(units),
                CohortAcc::new(units),
                CohortAcc::new(units),
            ],
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
            served: [0, 0],
            served_seen: [vec![false; USERS], vec![false; USERS]],
            served_units: [0, 0],
            srm_blocked: false,
            srm_alert: false,
            blockers: Vec::new(),
        };
        c.reset_stage();
        c
    }

    fn reset_stage(&mut self) {
        // A new stage label starts a new guardrail window, as in `rollout::guardrails`.
        self.guardrail = Guardrail::new(self.guardrail.config().clone());
        self.cohorts = [
            CohortAcc::new(self.units),
            CohortAcc::new(self.units),
            CohortAcc::new(self.units),
        ];
        for a in &mut self.abstentions {
            a.abstained = 0;
            a.attempts = 0;
        }
        self.served = [0, 0];
        self.served_seen = [vec![false; USERS], vec![false; USERS]];
        self.served_units = [0, 0];
    }

    fn live_share(&self) -> Option<f64> {
        let stage = self
            .lane
            .stage()
            .and_then(|i| self.lane.ramp.stages.get(i))?;
        match stage.exposure {
            Exposure::Live { share } => Some(share),
            Exposure::Shadow { .. } => None,
        }
    }

    fn summaries(&self) -> StageSummaries {
        let mut s = StageSummaries::default();
        for (name, acc) in COHORTS.iter().zip(&self.cohorts) {
            s.cohorts
                .insert((*name).to_owned(), acc.summary(self.units));
        }
        if let Some(share) = self.live_share().filter(|&s| s < 1.0) {
            let counted = if self.units {
                self.served_units
            } else {
                self.served
            };
            s.assignment = Some(Assignment {
                candidate: Assigned::new("candidate", counted[0], self.served[0], share),
                stable: Assigned::new("stable", counted[1], self.served[1], 1.0 - share),
            });
        }
        s.abstentions = self.abstentions.to_vec();
        s
    }

    fn observe_side(
        &mut self,
        i: usize,
        served: bool,
        r: &RequestDraw,
        user: &User,
        now: DateTime<Utc>,
    ) {
        let side = if i == 0 { &r.candidate } else { &r.stable };
        let role = if i == 0 {
            Role::Candidate
        } else {
            Role::Stable
        };
        // The user's index is its unit key: users are drawn independently, so grouping them by
        // index modulo the guardrail's groups is as good as by a hash.
        let unit = self.units.then_some(u64::from(r.user));
        self.guardrail.record(now, role, unit, side.error);
        let u = r.user as usize;
        self.cohorts[0].push_side(i, u, side);
        self.cohorts[if user.enterprise { 1 } else { 2 }].push_side(i, u, side);
        if served {
            self.served[i] += 1;
            if !self.served_seen[i][u] {
                self.served_seen[i][u] = true;
                self.served_units[i] += 1;
            }
        }
    }
}

impl Canarist {
    fn observe_pair(&mut self, r: &RequestDraw, user: &User) {
        let u = r.user as usize;
        let cohort = if user.enterprise { 1 } else { 2 };
        for i in [0, cohort] {
            self.cohorts[i].push_paired(u, &r.candidate, &r.stable);
        }
    }
}

impl Driver for Canarist {
    fn request(&mut self, r: &RequestDraw, user: &User, now: DateTime<Utc>) {
        if self.done() {
            return;
        }
        let stage = self.lane.stage().and_then(|i| self.lane.ramp.stages.get(i));
        match stage.map(|s| s.exposure) {
            Some(Exposure::Shadow { sample_rate }) => {
                self.observe_side(1, true, r, user, now);
                if r.mirror_roll < sample_rate {
                    self.observe_side(0, false, r, user, now);
                    self.observe_pair(r, user);
                }
            }
            Some(Exposure::Live { share }) => {
                if user.bucket < self.scenario.actual_share(share) {
                    let lost = self.scenario == Scenario::SrmDrop && user.dropped;
                    if !lost {
                        self.observe_side(0, true, r, user, now);
                        // The live pair sample: stable answers the same request too.
                        if self.units && r.mirror_roll < LIVE_PAIR_SAMPLE {
                            self.observe_side(1, false, r, user, now);
                            self.observe_pair(r, user);
                        }
                    }
                } else {
                    self.observe_side(1, true, r, user, now);
                }
            }
            None => {}
        }
    }

    fn observe(&mut self, p: &PairDraw, _now: DateTime<Utc>) {
        if self.done() {
            return;
        }
        self.cohorts[0].push_pair(p);
        self.cohorts[if p.enterprise { 1 } else { 2 }].push_pair(p);
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

    fn tick(&mut self, now: DateTime<Utc>) {
        if self.done() {
            return;
        }
        for c in &mut self.cohorts {
            c.refresh_threshold();
        }
        let event = match self.guardrail.check(now) {
            Some(trip) => {
                self.lane.cause = Some("guardrail".to_owned());
                Event::Guardrail {
                    reason: trip.reason,
                }
            }
            None => {
                let ctx = self.lane.context(now);
                let mut summaries = self.summaries();
                let d = evaluate(&self.policy, &ctx, &summaries);
                let srm = d
                    .evidence
                    .iter()
                    .any(|e| e.metric == "sample_ratio" && e.verdict == Verdict::Blocked);
                self.srm_alert |= srm;
                if srm && d.action == Action::Hold {
                    summaries.assignment = None;
                    let without = evaluate(&self.policy, &ctx, &summaries);
                    self.srm_blocked |= without.action == Action::Promote;
                }
                self.lane.cause = d
                    .evidence
                    .iter()
                    .find(|e| e.verdict == Verdict::Worse)
                    .map(|e| format!("{}/{}", e.metric, e.cohort));
                self.blockers = hold_blockers(&d.evidence, &ctx);
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
        let o = self.lane.outcome(now);
        RunOutcome {
            srm_blocked: self.srm_blocked,
            srm_alert: self.srm_alert,
            blockers: if matches!(o.end, Final::Held(_)) {
                self.blockers.clone()
            } else {
                Vec::new()
            },
            ..o
        }
    }
}

/// What keeps a stage from promoting: every check that is neither non-inferior, passed nor
/// deferred (`metric/cohort:verdict`), then the stage's unmet minimums (`min_duration`,
/// `min_judged_pairs`) — the same list `evaluate`'s hold reason is made of, untruncated.
fn hold_blockers(evidence: &[Evidence], ctx: &StageContext) -> Vec<String> {
    let mut out: Vec<String> = evidence
        .iter()
        .filter(|e| {
            !matches!(
                e.verdict,
                Verdict::NonInferior | Verdict::Passed | Verdict::Deferred
            )
        })
        .map(|e| format!("{}/{}:{}", e.metric, e.cohort, e.verdict.as_str()))
        .collect();
    if ctx.elapsed < ctx.min_duration {
        out.push("min_duration".to_owned());
    }
    if ctx.judged_pairs < ctx.min_judged_pairs {
        out.push("min_judged_pairs".to_owned());
    }
    out
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

    fn tick(&mut self, now: DateTime<Utc>) {
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

    fn tick(&mut self, now: DateTime<Utc>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn side(error: bool, latency_ms: f64) -> Side {
        Side {
            error,
            latency_ms,
            cost: 0.002,
        }
    }

    /// The per-unit gate's latency tail is the one `gate_input` builds from the store: both
    /// sides' successes counted per unit at the two rungs either side of stable's p95 (from the
    /// capture histogram), interpolated where stable's share is 5%, with the paired requests at
    /// each rung, and the counts recomputed when stable's quantile moves to other rungs.
    #[test]
    fn the_latency_tail_is_compared_over_both_sides_units_at_the_real_gates_rungs() {
        let mut acc = CohortAcc::new(true);
        // 40 users; stable answers 100 ms … 1,090 ms (p95 near 1,040 ms); the candidate is
        // 1.5× slower. Errors are left out of the tail.
        for u in 0..40usize {
            for k in 0..10 {
                let ms = 100.0 + 10.0 * (10 * u + k) as f64 / 4.0;
                acc.push_side(1, u, &side(false, ms));
                acc.push_side(0, u, &side(false, 1.5 * ms));
            }
            acc.push_side(0, u, &side(true, 1e6));
            acc.push_paired(u, &side(false, 1.5 * 300.0), &side(false, 300.0));
        }
        acc.refresh_threshold();
        let q = acc.stable_quantile().unwrap();
        let (lo, hi) = bracket(q).unwrap();
        let hi = hi.unwrap();
        let MetricData::Between {
            lower,
            upper,
            upper_weight: w,
        } = &acc.summary(true)["latency_p95"]
        else {
            panic!("not between two rungs");
        };
        // Counted as the writer counts: above the rung's histogram bucket.
        let bucket = |ms: f64| LatencyHistogram::bucket_of(ms);
        let count = |f: f64, r: usize| {
            let rb = crate::capture::tail::rung_bucket(r);
            (0..400)
                .filter(|&i| bucket(f * (100.0 + 10.0 * i as f64 / 4.0)) > rb)
                .count() as u64
        };
        let mut shares = Vec::new();
        for (data, r) in [(lower, lo), (upper, hi)] {
            let MetricData::WithPairs {
                unpaired,
                pairs,
                units: paired_units,
            } = data.as_ref()
            else {
                panic!("not paired: {data:?}");
            };
            let MetricData::UnitTail {
                candidate_above,
                stable_above,
                threshold_ms,
                units,
                ..
            } = unpaired.as_ref()
            else {
                panic!("not over units: {unpaired:?}");
            };
            assert_eq!(*threshold_ms, rung_ms(r));
            assert_eq!(*stable_above, Count::new(count(1.0, r), 400));
            assert_eq!(*candidate_above, Count::new(count(1.5, r), 400));
            assert_eq!((units.candidate_units, units.stable_units), (40, 40));
            assert_eq!(units.sums[0] as u64, count(1.5, r));
            // One pair per user, both answered, 450 ms against 300 ms.
            assert_eq!((pairs.n, paired_units.units), (40, 40));
            let d = (bucket(450.0) > crate::capture::tail::rung_bucket(r)) as u8 as f64
                - (bucket(300.0) > crate::capture::tail::rung_bucket(r)) as u8 as f64;
            assert_eq!(pairs.sum, 40.0 * d);
            shares.push(count(1.0, r) as f64 / 400.0);
        }
        // Stable's interpolated share is 5% (its shares bracket it).
        assert!(shares[0] >= 0.05 && shares[1] <= 0.05, "{shares:?}");
        assert!(((1.0 - w) * shares[0] + w * shares[1] - 0.05).abs() < 1e-9);
        // Stable's quantile moves up two rungs: every count is redone at the new rungs.
        for u in 0..40usize {
            for _ in 0..200 {
                acc.push_side(1, u, &side(false, 4.0 * q));
            }
        }
        acc.refresh_threshold();
        let (lo2, _) = bracket(acc.stable_quantile().unwrap()).unwrap();
        assert!(lo2 > lo, "{lo2} vs {lo}");
        let MetricData::Between { lower, .. } = &acc.summary(true)["latency_p95"] else {
            panic!("not between two rungs");
        };
        let MetricData::WithPairs { unpaired, .. } = lower.as_ref() else {
            panic!("not paired");
        };
        let MetricData::UnitTail {
            stable_above,
            threshold_ms,
            ..
        } = unpaired.as_ref()
        else {
            panic!("not over units");
        };
        assert_eq!(*threshold_ms, rung_ms(lo2));
        assert_eq!(stable_above.n, 400 + 8000);
        // Without the per-unit sums (the request-level gate) it is the request-level share.
        let plain = CohortAcc::new(false);
        assert!(matches!(
            plain.summary(false)["latency_p95"],
            MetricData::Exceedance { .. }
        ));
    }
}
