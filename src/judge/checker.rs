//! [`Checker`]: the rubrics' deterministic checks, run where a pair is captured — in the store
//! sink's writer task, in the same transaction as the pair — on every pair a rubric applies to.
//!
//! Why here and not in the judge worker: checks cost microseconds and decide gate metrics and the
//! hard-check guardrail, while the LLM judge is slow, rate-limited and may be down. Tied to the
//! judge's job, a check result waited for the LLM criteria of its pair and was lost with the job
//! when the queue shed it or a rollback cancelled it; a gate on a check then starved behind a
//! saturated judge. Now only pairs in some rubric's judge sample get a judge job at all.
//!
//! Never: runs on the request path (the writer task is off it) or calls a model.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;

use crate::capture::{CaptureEvent, Flush, Pair, Sink, SinkError};
use crate::rubric::{Rubric, run_checks, select};
use crate::store::{BatchExtras, NewCheckResult, Store};

use super::rows;
use super::stats::JudgeStats;

/// Called with (deployment, stage) for every hard check that passed on stable and failed on
/// the candidate: the rollout guardrails count these.
#[derive(Clone)]
pub struct HardFailureHook(pub Arc<HardFailureFn>);

/// `(deployment, stage)`.
pub type HardFailureFn = dyn Fn(&str, &str) + Send + Sync;

impl std::fmt::Debug for HardFailureHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HardFailureHook")
    }
}

/// What checking one pair gave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checked {
    /// One row per check and side evaluated.
    pub rows: Vec<NewCheckResult>,
    /// Hard checks that passed on stable and failed on the candidate.
    pub hard_failures: usize,
    /// Whether some rubric's LLM criteria sample this pair (it needs a judge job).
    pub needs_judge: bool,
}

/// The rubrics' checks and where hard failures are reported.
#[derive(Debug)]
pub struct Checker {
    rubrics: Vec<Rubric>,
    stats: Arc<JudgeStats>,
    on_hard_failure: OnceLock<HardFailureHook>,
}

impl Checker {
    pub fn new(rubrics: Vec<Rubric>, stats: Arc<JudgeStats>) -> Self {
        Self {
            rubrics,
            stats,
            on_hard_failure: OnceLock::new(),
        }
    }

    /// Sets where hard-check failures are reported (once; later calls are ignored).
    pub fn on_hard_failure(&self, hook: HardFailureHook) {
        let _ = self.on_hard_failure.set(hook);
    }

    /// Runs the checks of every rubric that applies to `pair` (pure: reports nothing yet).
    pub fn check(&self, pair: &Pair) -> Checked {
        let mut out = Checked::default();
        for rubric in &self.rubrics {
            let s = select(rubric, pair);
            if !s.applies {
                continue;
            }
            let report = run_checks(rubric, pair);
            // The A/A arm's second answer is stable's: no candidate guardrail to feed.
            if pair.candidate.purpose != crate::vocab::Purpose::Aa {
                out.hard_failures += report.guardrails().count();
            }
            out.rows.extend(rows::check_rows(rubric, pair, &report));
            out.needs_judge |= s.judge_sampled;
        }
        out
    }

    /// Reports a pair's checks once they are stored: counts the rows and tells the guardrails
    /// of its hard failures.
    pub fn stored(&self, pair: &Pair, rows: usize, hard_failures: usize) {
        self.stats.check_results.fetch_add(rows as u64, Relaxed);
        if let Some(hook) = self.on_hard_failure.get() {
            for _ in 0..hard_failures {
                (hook.0)(&pair.deployment, &pair.stage);
            }
        }
    }
}

/// The capture sink of `serve` when rubrics are loaded: writes each batch to the store with its
/// pairs' check results in the same transaction, and a judge job only for the pairs in some
/// rubric's judge sample. Hard failures reach the guardrails once the batch is committed (a
/// batch the writer retries is checked again, and reported once).
#[derive(Debug, Clone)]
pub struct CheckingSink {
    store: Store,
    checker: Arc<Checker>,
}

impl CheckingSink {
    pub fn new(store: Store, checker: Arc<Checker>) -> Self {
        Self { store, checker }
    }
}

impl CheckingSink {
    /// Checks the pairs among `rows`, then writes `rows` (or the whole `flush`) with the check
    /// results and judge jobs in one transaction.
    async fn write(&self, rows: &[CaptureEvent], flush: Option<&Flush>) -> Result<(), SinkError> {
        let mut checks = Vec::new();
        let mut jobs = HashSet::new();
        // (pair, rows, hard failures), reported after the commit.
        let mut reports = Vec::new();
        for event in rows {
            let CaptureEvent::Pair(pair) = event else {
                continue;
            };
            let checked = self.checker.check(pair);
            if checked.needs_judge {
                jobs.insert(pair.id);
            }
            reports.push((pair.as_ref(), checked.rows.len(), checked.hard_failures));
            checks.extend(checked.rows);
        }
        let extras = BatchExtras {
            checks: &checks,
            judge_jobs: Some(&jobs),
        };
        match flush {
            Some(flush) => self.store.write_flush_with(flush, extras).await,
            None => self.store.write_events_with(rows, extras).await,
        }
        .map_err(SinkError::from)?;
        for (pair, rows, hard_failures) in reports {
            self.checker.stored(pair, rows, hard_failures);
        }
        Ok(())
    }
}

impl Sink for CheckingSink {
    fn write_batch<'a>(
        &'a self,
        batch: &'a [CaptureEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.write(batch, None))
    }

    fn aggregates(&self) -> bool {
        true
    }

    fn write_flush<'a>(&'a self, flush: &'a Flush) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.write(&flush.rows, Some(flush)))
    }
}
