//! [`Aggregates`]: what the gate, the guardrails' reports, status and reports need from captured
//! observations, summed in memory — per stage, cohort, variant and unit — so that a store can
//! add it to its aggregate tables as deltas instead of scanning rows.
//!
//! Owns: the cells (the keys the deltas add up under) and the arithmetic that keeps per-unit
//! moments incremental ([`joint_step`]: when a unit's totals go from `old` to `new`, the sums of
//! squares and cross-products over units change by `new_i·new_j − old_i·old_j`, so a tick reads
//! one row per cohort instead of one per unit).
//!
//! Recording an observation is the writer's cost per observation, so it allocates nothing for
//! cells it has seen (their strings are interned once per flush, `capture::cells`), computes
//! each histogram bucket once, and adds a success to one count of its unit's latency tail (the
//! rungs it was slower than, [`UnitDelta`]) rather than to each rung.
//!
//! Never: does I/O, reads a clock or decides which stage an observation belongs to (the caller
//! passes the stage's `epoch`). Pure data.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::cells::{Cells, Name, ScopeId};
use super::histogram::LatencyHistogram;
use super::tail::{RUNGS, rungs_below};
use super::{AA_VARIANT, ErrorClass, Observation, Purpose, Role};

/// Which duration a histogram counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timing {
    Latency,
    Ttft,
}

impl Timing {
    pub fn as_str(self) -> &'static str {
        match self {
            Timing::Latency => "latency",
            Timing::Ttft => "ttft",
        }
    }
}

/// Count, sum and sum of squares.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    pub n: u64,
    pub sum: f64,
    pub sum_sq: f64,
}

impl Sums {
    fn record(&mut self, v: f64) {
        self.n += 1;
        self.sum += v;
        self.sum_sq += v * v;
    }

    fn merge(&mut self, o: &Sums) {
        self.n += o.n;
        self.sum += o.sum;
        self.sum_sq += o.sum_sq;
    }
}

/// One variant's requests of one error class (`None`: success) in one stage and cohort.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VariantDelta {
    pub role: Role,
    pub requests: u64,
    /// Requests whose answer went to the client.
    pub served: u64,
    pub latency: Sums,
    pub ttft: Sums,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: Sums,
}

impl VariantDelta {
    fn merge(&mut self, o: &VariantDelta) {
        self.role = o.role;
        self.requests += o.requests;
        self.served += o.served;
        self.latency.merge(&o.latency);
        self.ttft.merge(&o.ttft);
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.cost.merge(&o.cost);
    }
}

/// One unit's requests to one variant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnitCounts {
    pub requests: u64,
    pub served: u64,
}

/// Requests without a unit key (each a unit of its own), per variant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeylessUnits {
    pub units: u64,
    pub served_units: u64,
}

/// One unit's totals per side (the candidates pooled, the A/A arm left out):
/// `errors` = (errors, requests) of the candidates then of stable; `cost` = (cost, requests
/// with a cost) likewise. The order is [`JointDelta`]'s (x_c, y_c, x_s, y_s).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SideSums {
    pub errors: [f64; 4],
    pub cost: [f64; 4],
    pub tail: TailSums,
}

/// One unit's successful requests per side (candidates, stable) and, per latency rung
/// (`capture::tail`), how many of them were slower than the rung.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TailSums {
    pub successes: [f64; 2],
    pub above: [[f64; 2]; RUNGS],
}

impl TailSums {
    /// Rung `r`'s per-unit vector in [`JointDelta`]'s order: (slower candidate requests,
    /// candidate successes, slower stable requests, stable successes).
    pub fn at(&self, r: usize) -> [f64; 4] {
        [
            self.above[r][0],
            self.successes[0],
            self.above[r][1],
            self.successes[1],
        ]
    }

    fn add(&mut self, o: &TailSums, sign: f64) {
        for side in 0..2 {
            self.successes[side] += sign * o.successes[side];
            for r in 0..RUNGS {
                self.above[r][side] += sign * o.above[r][side];
            }
        }
    }
}

impl SideSums {
    pub fn add(&mut self, o: &SideSums) {
        for i in 0..4 {
            self.errors[i] += o.errors[i];
            self.cost[i] += o.cost[i];
        }
        self.tail.add(&o.tail, 1.0);
    }

    /// `self − o` (the totals before a delta `o` was added).
    pub fn minus(&self, o: &SideSums) -> SideSums {
        let mut out = *self;
        for i in 0..4 {
            out.errors[i] -= o.errors[i];
            out.cost[i] -= o.cost[i];
        }
        out.tail.add(&o.tail, -1.0);
        out
    }

    fn has_requests(&self) -> bool {
        self.errors[1] > 0.0 || self.errors[3] > 0.0
    }
}

/// A change of the sums over units of one ratio metric's per-unit vector (x_c, y_c, x_s, y_s).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JointDelta {
    pub candidate_units: u64,
    pub stable_units: u64,
    pub sums: [f64; 4],
    /// v_i · v_j for i ≤ j, row by row (00, 01, 02, 03, 11, 12, 13, 22, 23, 33).
    pub products: [f64; 10],
}

impl JointDelta {
    fn step(old: &[f64; 4], new: &[f64; 4]) -> JointDelta {
        let mut d = JointDelta {
            candidate_units: u64::from(old[1] <= 0.0 && new[1] > 0.0),
            stable_units: u64::from(old[3] <= 0.0 && new[3] > 0.0),
            ..JointDelta::default()
        };
        let mut k = 0;
        for i in 0..4 {
            d.sums[i] = new[i] - old[i];
            for j in i..4 {
                d.products[k] = new[i] * new[j] - old[i] * old[j];
                k += 1;
            }
        }
        d
    }

    pub fn merge(&mut self, o: &JointDelta) {
        self.candidate_units += o.candidate_units;
        self.stable_units += o.stable_units;
        for (a, b) in self.sums.iter_mut().zip(o.sums) {
            *a += b;
        }
        for (a, b) in self.products.iter_mut().zip(o.products) {
            *a += b;
        }
    }
}

/// A change of the per-unit moments of one stage and cohort: units added, and the errors',
/// cost's and each latency rung's joint moments.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MomentsDelta {
    pub units: u64,
    pub errors: JointDelta,
    pub cost: JointDelta,
    /// Per rung: x = successful requests slower than the rung, y = successful requests.
    pub tail: [JointDelta; RUNGS],
}

impl MomentsDelta {
    pub fn merge(&mut self, o: &MomentsDelta) {
        self.units += o.units;
        self.errors.merge(&o.errors);
        self.cost.merge(&o.cost);
        for (a, b) in self.tail.iter_mut().zip(&o.tail) {
            a.merge(b);
        }
    }
}

/// How the sums over units change when one unit's totals go from `old` to `new` (`old` all
/// zero: the unit is new).
pub fn joint_step(old: &SideSums, new: &SideSums) -> MomentsDelta {
    MomentsDelta {
        units: u64::from(!old.has_requests() && new.has_requests()),
        errors: JointDelta::step(&old.errors, &new.errors),
        cost: JointDelta::step(&old.cost, &new.cost),
        tail: std::array::from_fn(|r| JointDelta::step(&old.tail.at(r), &new.tail.at(r))),
    }
}

/// One unit's delta per side, as a flush collects it: errors and cost as in [`SideSums`], and
/// its successes by how many rungs each was slower than (`by_rungs[k]`: slower than rungs
/// `0..k`), so that an observation adds to one count instead of to every rung below it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UnitDelta {
    pub errors: [f64; 4],
    pub cost: [f64; 4],
    pub successes: [f64; 2],
    pub by_rungs: [[f64; 2]; RUNGS + 1],
}

impl UnitDelta {
    fn record(&mut self, side: &SideObservation) {
        let o = side.offset;
        self.errors[o] += f64::from(u8::from(side.error));
        self.errors[o + 1] += 1.0;
        self.cost[o] += side.cost.unwrap_or(0.0);
        self.cost[o + 1] += f64::from(u8::from(side.cost.is_some()));
        if let Some(k) = side.rungs_below {
            self.successes[o / 2] += 1.0;
            self.by_rungs[k.min(RUNGS)][o / 2] += 1.0;
        }
    }

    /// The same delta as [`SideSums`]: per rung, the successes slower than it.
    pub fn sums(&self) -> SideSums {
        let mut tail = TailSums {
            successes: self.successes,
            ..TailSums::default()
        };
        // Slower than rung r: the successes slower than rungs 0..k for some k > r.
        let mut above = self.by_rungs[RUNGS];
        for r in (0..RUNGS).rev() {
            tail.above[r] = above;
            for (a, b) in above.iter_mut().zip(self.by_rungs[r]) {
                *a += b;
            }
        }
        SideSums {
            errors: self.errors,
            cost: self.cost,
            tail,
        }
    }
}

/// What one observation adds to its unit's side totals (the A/A arm adds none).
#[derive(Debug, Clone, Copy)]
struct SideObservation {
    /// 0: the candidates, 2: stable ([`JointDelta`]'s order).
    offset: usize,
    error: bool,
    cost: Option<f64>,
    /// For a success: how many rungs it was slower than.
    rungs_below: Option<usize>,
}

impl SideObservation {
    fn of(o: &Observation, latency_bucket: Option<u32>) -> Option<Self> {
        let offset = match o.role {
            Role::Candidate if o.variant == AA_VARIANT => return None,
            Role::Candidate => 0,
            Role::Stable => 2,
        };
        Some(Self {
            offset,
            error: o.error.is_some(),
            cost: o.cost_usd,
            // Latency counts for successes only, as in the histograms.
            rungs_below: latency_bucket.map(rungs_below),
        })
    }
}

/// (scope, variant, error class).
type VariantKey = (ScopeId, Name, Option<ErrorClass>);
/// (scope, variant, timing, bucket).
type TimingKey = (ScopeId, Name, Timing, u32);
/// (scope, variant, unit key).
type UnitVariantKey = (ScopeId, Name, Name);

/// Deltas of every aggregate table, keyed by their cells: a scope (stage and cohort cell) and the
/// variant's and unit's names, interned in [`Aggregates::cells`].
#[derive(Debug, Clone, Default)]
pub struct Aggregates {
    /// The strings and scopes the keys name.
    pub cells: Cells,
    /// (scope, variant, error class).
    pub variants: HashMap<VariantKey, VariantDelta>,
    /// (scope, variant, timing, bucket) → successful requests.
    pub timings: HashMap<TimingKey, u64>,
    /// (scope, variant, unit key).
    pub unit_variants: HashMap<UnitVariantKey, UnitCounts>,
    /// (scope, variant): requests without a unit key.
    pub keyless_units: HashMap<(ScopeId, Name), KeylessUnits>,
    /// (scope, unit key): stable and candidate requests of keyed units.
    pub unit_sides: HashMap<(ScopeId, Name), UnitDelta>,
    /// Per scope: the moments of units without a key (each a unit of its own).
    pub keyless_moments: HashMap<ScopeId, MomentsDelta>,
    /// Observations recorded.
    pub observations: u64,
}

/// One observation's contribution to each of its cells.
struct Contribution {
    variant: Name,
    unit: Option<Name>,
    error: Option<ErrorClass>,
    served: u64,
    delta: VariantDelta,
    /// Successes only: the latency's and the TTFT's histogram buckets.
    latency_bucket: Option<u32>,
    ttft_bucket: Option<u32>,
    side: Option<SideObservation>,
    /// A keyless observation's step of the moments (a unit of its own, from zero).
    keyless_step: Option<MomentsDelta>,
}

impl Aggregates {
    pub fn is_empty(&self) -> bool {
        self.observations == 0
    }

    /// Adds one observation of the stage that started at `epoch`, to the whole stage and to
    /// each of its cohort labels.
    pub fn record(&mut self, o: &Observation, epoch: DateTime<Utc>) {
        self.observations += 1;
        let cells = &mut self.cells;
        let deployment = cells.name(&o.deployment);
        let stage = cells.name(&o.stage);
        let whole = cells.name("");
        let latency_bucket = o
            .error
            .is_none()
            .then(|| LatencyHistogram::bucket_of(o.latency_ms));
        let side = SideObservation::of(o, latency_bucket);
        let unit = o.unit_key.as_deref().map(|u| cells.name(u));
        let keyless_step = match (unit, &side) {
            (None, Some(side)) => {
                let mut d = UnitDelta::default();
                d.record(side);
                Some(joint_step(&SideSums::default(), &d.sums()))
            }
            _ => None,
        };
        let c = Contribution {
            variant: cells.name(&o.variant),
            unit,
            error: o.error,
            served: u64::from(o.purpose == Purpose::Served),
            delta: variant_delta(o),
            latency_bucket,
            ttft_bucket: o
                .ttft_ms
                .filter(|_| o.error.is_none())
                .map(LatencyHistogram::bucket_of),
            side,
            keyless_step,
        };
        let scope = cells.scope(deployment, stage, epoch, whole, whole);
        self.add(scope, &c);
        for (key, value) in &o.cohort {
            let cells = &mut self.cells;
            let (key, value) = (cells.name(key), cells.name(value));
            let scope = cells.scope(deployment, stage, epoch, key, value);
            self.add(scope, &c);
        }
    }

    /// Adds an observation's contribution to the cells of one scope.
    fn add(&mut self, scope: ScopeId, c: &Contribution) {
        self.variants
            .entry((scope, c.variant, c.error))
            .or_default()
            .merge(&c.delta);
        let timings = [
            (Timing::Latency, c.latency_bucket),
            (Timing::Ttft, c.ttft_bucket),
        ];
        for (timing, bucket) in timings {
            if let Some(bucket) = bucket {
                *self
                    .timings
                    .entry((scope, c.variant, timing, bucket))
                    .or_default() += 1;
            }
        }
        match c.unit {
            Some(unit) => {
                let u = self
                    .unit_variants
                    .entry((scope, c.variant, unit))
                    .or_default();
                u.requests += 1;
                u.served += c.served;
                if let Some(side) = &c.side {
                    self.unit_sides
                        .entry((scope, unit))
                        .or_default()
                        .record(side);
                }
            }
            None => {
                let k = self.keyless_units.entry((scope, c.variant)).or_default();
                k.units += 1;
                k.served_units += c.served;
                if let Some(step) = &c.keyless_step {
                    self.keyless_moments.entry(scope).or_default().merge(step);
                }
            }
        }
    }
}

fn variant_delta(o: &Observation) -> VariantDelta {
    let mut d = VariantDelta {
        role: o.role,
        requests: 1,
        served: u64::from(o.purpose == Purpose::Served),
        ..VariantDelta::default()
    };
    d.latency.record(o.latency_ms);
    if let Some(t) = o.ttft_ms {
        d.ttft.record(t);
    }
    if let Some(u) = o.usage {
        d.prompt_tokens = u.prompt_tokens;
        d.completion_tokens = u.completion_tokens;
    }
    if let Some(c) = o.cost_usd {
        d.cost.record(c);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_moments_equal_the_moments_of_the_totals() {
        // A unit seen three times: the telescoped steps equal one step from zero to the total.
        let parts = [
            SideSums {
                errors: [1.0, 2.0, 0.0, 0.0],
                cost: [0.5, 2.0, 0.0, 0.0],
                tail: tail([1.0, 0.0], &[(0, [1.0, 0.0]), (3, [1.0, 0.0])]),
            },
            SideSums {
                errors: [0.0, 0.0, 1.0, 3.0],
                cost: [0.0, 0.0, 0.25, 3.0],
                tail: tail([0.0, 2.0], &[(0, [0.0, 2.0]), (3, [0.0, 1.0])]),
            },
            SideSums {
                errors: [0.0, 1.0, 0.0, 1.0],
                cost: [0.125, 1.0, 0.0, 1.0],
                tail: tail([1.0, 1.0], &[(0, [1.0, 1.0])]),
            },
        ];
        let mut total = SideSums::default();
        let mut stepped = MomentsDelta::default();
        for p in &parts {
            let mut new = total;
            new.add(p);
            stepped.merge(&joint_step(&total, &new));
            total = new;
        }
        let once = joint_step(&SideSums::default(), &total);
        assert_eq!(stepped.units, 1);
        assert_eq!(stepped.errors.candidate_units, 1);
        assert_eq!(stepped.errors.stable_units, 1);
        for (a, b) in stepped.errors.products.iter().zip(once.errors.products) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        for (a, b) in stepped.cost.products.iter().zip(once.cost.products) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        for (s, o) in stepped.tail.iter().zip(&once.tail) {
            for (a, b) in s.products.iter().zip(o.products) {
                assert!((a - b).abs() < 1e-12, "{a} vs {b}");
            }
            assert_eq!((s.sums, s.candidate_units), (o.sums, o.candidate_units));
        }
        // errors: (1, 3, 1, 4): x_c·y_s = 4, y_s² = 16.
        assert_eq!(once.errors.products[3], 4.0);
        assert_eq!(once.errors.products[9], 16.0);
        // rung 0: (2, 2, 3, 3); rung 3: (1, 2, 1, 3); rung 1: (0, 2, 0, 3).
        assert_eq!(once.tail[0].sums, [2.0, 2.0, 3.0, 3.0]);
        assert_eq!(once.tail[3].sums, [1.0, 2.0, 1.0, 3.0]);
        assert_eq!(once.tail[3].products[2], 1.0);
        assert_eq!(once.tail[1].sums, [0.0, 2.0, 0.0, 3.0]);
        assert_eq!(once.tail[1].products[9], 9.0);
    }

    fn tail(successes: [f64; 2], above: &[(usize, [f64; 2])]) -> TailSums {
        let mut t = TailSums {
            successes,
            ..TailSums::default()
        };
        for (r, a) in above {
            t.above[*r] = *a;
        }
        t
    }

    #[test]
    fn a_unit_delta_counts_each_success_above_the_rungs_below_its_bucket() {
        use crate::capture::tail::rung_bucket;
        // Below the first rung, on and around rung boundaries, and beyond the last rung.
        let latencies = [0.5, 1.0, 2.0, 50.0, 400.0, 121_000.0, 130_000.0, 1e9];
        let mut d = UnitDelta::default();
        for (i, ms) in latencies.iter().enumerate() {
            let bucket = LatencyHistogram::bucket_of(*ms);
            d.record(&SideObservation {
                offset: 2 * (i % 2),
                error: false,
                cost: None,
                rungs_below: Some(rungs_below(bucket)),
            });
        }
        let sums = d.sums();
        assert_eq!(sums.tail.successes, [4.0, 4.0]);
        for r in 0..RUNGS {
            let mut want = [0.0; 2];
            for (i, ms) in latencies.iter().enumerate() {
                if LatencyHistogram::bucket_of(*ms) > rung_bucket(r) {
                    want[i % 2] += 1.0;
                }
            }
            assert_eq!(sums.tail.above[r], want, "rung {r}");
        }
        assert_eq!(sums.errors, [0.0, 4.0, 0.0, 4.0]);
    }

    #[test]
    fn a_units_successes_count_above_every_rung_below_their_latency() {
        use crate::capture::tail::rung_ms;
        let mut agg = Aggregates::default();
        let crate::capture::CaptureEvent::Observation(base) =
            crate::capture::writer::tests::event(1)
        else {
            unreachable!()
        };
        let mut record = |role: Role, latency_ms: f64, error: Option<ErrorClass>| {
            let mut o = base.clone();
            o.role = role;
            o.variant = if role == Role::Stable {
                "stable"
            } else {
                "cand"
            }
            .into();
            o.unit_key = Some("user-1".into());
            o.latency_ms = latency_ms;
            o.error = error;
            agg.record(&o, DateTime::<Utc>::UNIX_EPOCH);
        };
        // Candidate: 10 ms and 500 ms succeed, a 900 ms error does not count; stable: 4 ms.
        record(Role::Candidate, 10.0, None);
        record(Role::Candidate, 500.0, None);
        record(Role::Candidate, 900.0, Some(ErrorClass::Timeout));
        record(Role::Stable, 4.0, None);
        let sides = agg.unit_sides.values().next().unwrap().sums();
        assert_eq!(sides.tail.successes, [2.0, 1.0]);
        for r in 0..RUNGS {
            let t = rung_ms(r);
            let want_c = f64::from(u8::from(10.0 > t)) + f64::from(u8::from(500.0 > t));
            let want_s = f64::from(u8::from(4.0 > t));
            assert_eq!(sides.tail.above[r], [want_c, want_s], "rung {r} at {t} ms");
        }
    }
}
