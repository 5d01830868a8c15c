//! [`Aggregates`]: what the gate, the guardrails' reports, status and reports need from captured
//! observations, summed in memory — per stage, cohort, variant and unit — so that a store can
//! add it to its aggregate tables as deltas instead of scanning rows.
//!
//! Owns: the cells (the keys the deltas add up under) and the arithmetic that keeps per-unit
//! moments incremental ([`joint_step`]: when a unit's totals go from `old` to `new`, the sums of
//! squares and cross-products over units change by `new_i·new_j − old_i·old_j`, so a tick reads
//! one row per cohort instead of one per unit).
//!
//! Never: does I/O, reads a clock or decides which stage an observation belongs to (the caller
//! passes the stage's `epoch`). Pure data: two `Aggregates` merged hold the same sums as one
//! that recorded both sets of observations.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::histogram::LatencyHistogram;
use super::tail::{RUNGS, rungs_below};
use super::{AA_VARIANT, ErrorClass, Observation, Purpose, Role};

/// The scope a delta adds up under: a deployment's stage label since one stage start. The epoch
/// is the start of the latest rollout stage of that name at or before the observation (the Unix
/// epoch when no rollout ever ran one), so that `epoch >= since` selects exactly the rows with
/// `at >= since` whenever `since` is a stage start.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StageKey {
    pub deployment: String,
    pub stage: String,
    pub epoch: DateTime<Utc>,
}

/// A cohort label `(key, value)`, or `("", "")` for the whole stage.
pub type CohortCell = (String, String);

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

type VariantKey = (StageKey, CohortCell, String, Option<ErrorClass>);
type TimingKey = (StageKey, CohortCell, String, Timing, u32);
type UnitVariantKey = (StageKey, CohortCell, String, String);
type VariantCellKey = (StageKey, CohortCell, String);
type UnitKey = (StageKey, CohortCell, String);
type CohortKey = (StageKey, CohortCell);

/// Deltas of every aggregate table, keyed by their cells.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregates {
    /// (stage, cohort, variant, error class).
    pub variants: HashMap<VariantKey, VariantDelta>,
    /// (stage, cohort, variant, timing, bucket) → successful requests.
    pub timings: HashMap<TimingKey, u64>,
    /// (stage, cohort, variant, unit key).
    pub unit_variants: HashMap<UnitVariantKey, UnitCounts>,
    /// (stage, cohort, variant): requests without a unit key.
    pub keyless_units: HashMap<VariantCellKey, KeylessUnits>,
    /// (stage, cohort, unit key): stable and candidate requests of keyed units.
    pub unit_sides: HashMap<UnitKey, SideSums>,
    /// (stage, cohort): the moments of units without a key (each a unit of its own).
    pub keyless_moments: HashMap<CohortKey, MomentsDelta>,
    /// Observations recorded.
    pub observations: u64,
}

impl Aggregates {
    pub fn is_empty(&self) -> bool {
        self.observations == 0
    }

    /// Adds one observation of the stage that started at `epoch`, to the whole stage and to
    /// each of its cohort labels.
    pub fn record(&mut self, o: &Observation, epoch: DateTime<Utc>) {
        self.observations += 1;
        let stage = StageKey {
            deployment: o.deployment.clone(),
            stage: o.stage.clone(),
            epoch,
        };
        let delta = variant_delta(o);
        let sides = side_sums(o);
        let served = u64::from(o.purpose == Purpose::Served);
        let overall = (String::new(), String::new());
        for cohort in std::iter::once(overall).chain(o.cohort.clone()) {
            self.variants
                .entry((stage.clone(), cohort.clone(), o.variant.clone(), o.error))
                .or_default()
                .merge(&delta);
            if o.error.is_none() {
                let timings = [
                    (Timing::Latency, Some(o.latency_ms)),
                    (Timing::Ttft, o.ttft_ms),
                ];
                for (timing, ms) in timings {
                    if let Some(ms) = ms {
                        let bucket = LatencyHistogram::bucket_of(ms);
                        let key = (
                            stage.clone(),
                            cohort.clone(),
                            o.variant.clone(),
                            timing,
                            bucket,
                        );
                        *self.timings.entry(key).or_default() += 1;
                    }
                }
            }
            match &o.unit_key {
                Some(unit) => {
                    let key = (
                        stage.clone(),
                        cohort.clone(),
                        o.variant.clone(),
                        unit.clone(),
                    );
                    let c = self.unit_variants.entry(key).or_default();
                    c.requests += 1;
                    c.served += served;
                    if let Some(sides) = &sides {
                        self.unit_sides
                            .entry((stage.clone(), cohort.clone(), unit.clone()))
                            .or_default()
                            .add(sides);
                    }
                }
                None => {
                    let key = (stage.clone(), cohort.clone(), o.variant.clone());
                    let k = self.keyless_units.entry(key).or_default();
                    k.units += 1;
                    k.served_units += served;
                    if let Some(sides) = &sides {
                        self.keyless_moments
                            .entry((stage.clone(), cohort))
                            .or_default()
                            .merge(&joint_step(&SideSums::default(), sides));
                    }
                }
            }
        }
    }

    /// Adds another set of deltas to these.
    pub fn merge(&mut self, other: Aggregates) {
        self.observations += other.observations;
        for (k, v) in other.variants {
            self.variants.entry(k).or_default().merge(&v);
        }
        for (k, v) in other.timings {
            *self.timings.entry(k).or_default() += v;
        }
        for (k, v) in other.unit_variants {
            let c = self.unit_variants.entry(k).or_default();
            c.requests += v.requests;
            c.served += v.served;
        }
        for (k, v) in other.keyless_units {
            let c = self.keyless_units.entry(k).or_default();
            c.units += v.units;
            c.served_units += v.served_units;
        }
        for (k, v) in other.unit_sides {
            self.unit_sides.entry(k).or_default().add(&v);
        }
        for (k, v) in other.keyless_moments {
            self.keyless_moments.entry(k).or_default().merge(&v);
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

/// The observation's contribution to its unit's side totals; `None` for the A/A arm.
fn side_sums(o: &Observation) -> Option<SideSums> {
    let offset = match o.role {
        Role::Candidate if o.variant == AA_VARIANT => return None,
        Role::Candidate => 0,
        Role::Stable => 2,
    };
    let mut s = SideSums::default();
    s.errors[offset] = f64::from(u8::from(o.error.is_some()));
    s.errors[offset + 1] = 1.0;
    s.cost[offset] = o.cost_usd.unwrap_or(0.0);
    s.cost[offset + 1] = f64::from(u8::from(o.cost_usd.is_some()));
    // Latency counts for successes only, as in the histograms.
    if o.error.is_none() {
        let side = offset / 2;
        s.tail.successes[side] = 1.0;
        for above in &mut s.tail.above[..rungs_below(LatencyHistogram::bucket_of(o.latency_ms))] {
            above[side] = 1.0;
        }
    }
    Some(s)
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
        let sides = agg.unit_sides.values().next().unwrap();
        assert_eq!(sides.tail.successes, [2.0, 1.0]);
        for r in 0..RUNGS {
            let t = rung_ms(r);
            let want_c = f64::from(u8::from(10.0 > t)) + f64::from(u8::from(500.0 > t));
            let want_s = f64::from(u8::from(4.0 > t));
            assert_eq!(sides.tail.above[r], [want_c, want_s], "rung {r} at {t} ms");
        }
    }
}
