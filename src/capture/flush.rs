//! [`Flush`]: what the writer hands a sink at once — the events stored as rows, and the
//! observations that are only added to the aggregate tables (row-less) — and [`RowPolicy`],
//! which decides between the two.
//!
//! Most traffic needs no row of its own: what the gate, the guardrails, status and reports read
//! from unjudged traffic are sums (counts, errors by class, latency and TTFT histograms, tokens,
//! cost per stage, cohort, variant and unit), which the store adds as deltas. A full row, with its
//! bodies, is kept only for what is read as a row: both sides of a matched pair (checked and
//! judged), a sample of the rest (`capture.row_sample_rate`), and errors, up to
//! `capture.error_rows_per_flush` per flush, so that there is something to show.
//!
//! A flush carries an id, the writer's (random, per process) and a sequence number, that the
//! store records in the flush's transaction: a flush written twice (a retry after an error whose
//! commit was lost, a spool replay) adds its row-less observations once. Rows are idempotent on
//! their own ids.
//!
//! Never: does I/O. Only sinks that aggregate ([`super::Sink::aggregates`]) are given row-less
//! observations; every other sink gets every event as before.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{CaptureEvent, Observation};

/// Which flush of which writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlushId {
    /// Random per writer (per process start).
    pub writer: Uuid,
    /// 1, 2, … in the order the writer made its flushes.
    pub seq: u64,
}

/// Events a sink writes in one go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flush {
    /// Assigned when the writer first tries to write the flush, kept through retries and the
    /// spool; `None` only for a batch spooled by an older version (all rows).
    pub id: Option<FlushId>,
    /// Events stored as rows (observations and pairs), in recorded order.
    pub rows: Vec<CaptureEvent>,
    /// Observations only added to the aggregates, their texts and bodies already dropped.
    pub counted: Vec<Observation>,
}

impl Flush {
    /// A flush of rows only.
    pub fn of_rows(rows: Vec<CaptureEvent>) -> Self {
        Self {
            id: None,
            rows,
            counted: Vec::new(),
        }
    }

    /// Events in the flush (rows and row-less observations).
    pub fn len(&self) -> usize {
        self.rows.len() + self.counted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.counted.is_empty()
    }

    /// Splits off the second half of the events (rows first, then row-less observations), for
    /// bisecting a flush the sink rejected; with two events or more, both halves hold some. Both
    /// lose the id: a rejected flush was not committed, each half is a new flush.
    pub fn split_half(&mut self) -> Flush {
        self.id = None;
        let keep = self.len() / 2;
        let (rows, counted) = if keep <= self.rows.len() {
            (self.rows.split_off(keep), std::mem::take(&mut self.counted))
        } else {
            (Vec::new(), self.counted.split_off(keep - self.rows.len()))
        };
        Flush {
            id: None,
            rows,
            counted,
        }
    }

    /// Moves `other`'s events behind this flush's.
    pub fn append(&mut self, other: Flush) {
        self.rows.extend(other.rows);
        self.counted.extend(other.counted);
    }
}

/// Which observations keep a row (`capture.row_sample_rate`, `capture.error_rows_per_flush`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowPolicy {
    /// Fraction (0–1) of the observations that are neither a pair's side nor a kept error which
    /// keep a row anyway (drawn from the observation's random id).
    pub sample_rate: f64,
    /// Failed observations that keep a row per flush, at most.
    pub error_rows_per_flush: usize,
}

impl Default for RowPolicy {
    fn default() -> Self {
        Self {
            sample_rate: 0.01,
            error_rows_per_flush: 20,
        }
    }
}

impl RowPolicy {
    /// Every observation keeps its row (as before row-less observations existed).
    pub const ALL_ROWS: RowPolicy = RowPolicy {
        sample_rate: 1.0,
        error_rows_per_flush: usize::MAX,
    };

    /// Whether `o` keeps a row; `errors` counts the error rows this flush kept so far.
    pub fn keeps_row(&self, o: &Observation, errors: &mut usize) -> bool {
        if o.pair_id.is_some() {
            return true;
        }
        if o.error.is_some() && *errors < self.error_rows_per_flush {
            *errors += 1;
            return true;
        }
        sampled(o.id, self.sample_rate)
    }

    /// Whether `o` surely ends row-less whatever the flush's error budget: not a pair's side,
    /// not an error, not in the row sample. Such an observation can shed its texts and bodies
    /// ([`lean`]) before it is queued, so that the capture queue holds a few hundred bytes per
    /// event instead of its bodies.
    pub fn surely_rowless(&self, o: &Observation) -> bool {
        o.pair_id.is_none() && o.error.is_none() && !sampled(o.id, self.sample_rate)
    }
}

/// Whether the id falls in the first `rate` of its random bits' range.
fn sampled(id: Uuid, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    // The low 62 bits of a v4 id are random (the two above them are the variant's).
    let (_, low) = id.as_u64_pair();
    let bits = low & ((1 << 62) - 1);
    (bits as f64) < rate * ((1_u64 << 62) as f64)
}

/// `o` without what only a row would keep: texts, bodies, error detail.
pub fn lean(mut o: Observation) -> Observation {
    o.response_text = None;
    o.request_body = None;
    o.response_body = None;
    o.error_detail = None;
    o.finish_reason = None;
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::writer::tests::event;

    fn obs(i: u32) -> Observation {
        match event(i) {
            CaptureEvent::Observation(o) => *o,
            CaptureEvent::Pair(_) => unreachable!(),
        }
    }

    #[test]
    fn pairs_errors_up_to_the_budget_and_the_sample_keep_rows() {
        let policy = RowPolicy {
            sample_rate: 0.0,
            error_rows_per_flush: 2,
        };
        let mut errors = 0;
        let plain = obs(1);
        assert!(!policy.keeps_row(&plain, &mut errors));
        let mut paired = obs(2);
        paired.pair_id = Some(Uuid::from_u128(9));
        assert!(policy.keeps_row(&paired, &mut errors));
        let mut failed = obs(3);
        failed.error = Some(crate::capture::ErrorClass::Timeout);
        assert!(policy.keeps_row(&failed, &mut errors));
        assert!(policy.keeps_row(&failed, &mut errors));
        assert!(!policy.keeps_row(&failed, &mut errors), "budget spent");
        assert!(RowPolicy::ALL_ROWS.keeps_row(&plain, &mut errors));
    }

    #[test]
    fn what_is_surely_rowless_never_keeps_a_row() {
        let policy = RowPolicy {
            sample_rate: 0.3,
            error_rows_per_flush: 2,
        };
        let mut failed = obs(3);
        failed.error = Some(crate::capture::ErrorClass::Timeout);
        assert!(!policy.surely_rowless(&failed), "an error may keep a row");
        let mut paired = obs(2);
        paired.pair_id = Some(Uuid::from_u128(9));
        assert!(!policy.surely_rowless(&paired));
        let mut rowless = 0;
        for _ in 0..2_000 {
            let mut o = obs(1);
            o.id = Uuid::new_v4();
            let mut errors = 0;
            if policy.surely_rowless(&o) {
                rowless += 1;
                assert!(!policy.keeps_row(&o, &mut errors), "{}", o.id);
            } else {
                assert!(policy.keeps_row(&o, &mut errors), "{}", o.id);
            }
        }
        // Binomial(2000, 0.7): sd ≈ 20; 6 sd either side.
        assert!((1_280..=1_520).contains(&rowless), "{rowless}");
    }

    #[test]
    fn the_sample_takes_its_share_of_random_ids() {
        let n = 20_000;
        let kept = (0..n).filter(|_| sampled(Uuid::new_v4(), 0.1)).count();
        // Binomial(20000, 0.1): sd ≈ 42; 6 sd either side.
        assert!((1_750..=2_250).contains(&kept), "{kept}");
    }
}
