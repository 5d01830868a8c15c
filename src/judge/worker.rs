//! The judge worker loop: bounds the queue, claims jobs from the store under a lease, loads each
//! pair, asks its LLM criteria ([`Judge::judge_criteria`]), stores the judgments, and completes
//! the job — or gives it back (`fail`: queued again until the store's `MAX_ATTEMPTS`) when the
//! judge stayed unreachable or the store failed. A job exists only for a pair in some rubric's
//! judge sample; the deterministic checks were stored with the pair ([`super::Checker`]), so
//! neither a shed job nor a judge outage costs a check result.
//!
//! Never: runs on the request path (jobs are enqueued by the capture sink; the request path never
//! waits on the judge). Fails open for the gateway (a judge outage only delays scores) and closed
//! for scores (nothing is recorded for a judgment that was not made, except an abstention).
//!
//! The queue is bounded: before every claim, queued jobs beyond `max_backlog` are dropped, newest
//! first, and counted (`canarist_judge_queue_dropped_total`). Rows are written before the job is
//! completed; if a lease expired in between (a judgment slower than the lease), the job may be
//! judged twice — set the lease well above the slowest judgment.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures::future::join_all;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{JudgeJob, Store, StoreError};

use super::engine::Judge;

/// How a worker claims and paces.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The lease owner's name (unique per worker).
    pub name: String,
    pub lease: Duration,
    /// Jobs in flight at once (`run`); jobs claimed per poll (`run_once`).
    pub batch: u32,
    /// Sleep between polls that found nothing.
    pub poll_interval: Duration,
    /// Queued jobs kept at most; `None`: unbounded.
    pub max_backlog: Option<u64>,
    /// At shutdown, how long the jobs in flight may take to finish; those still running then
    /// are abandoned and given back to the queue (another replica, or the next start, judges
    /// them).
    pub shutdown_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            name: format!("judge-{}", uuid::Uuid::new_v4()),
            lease: Duration::from_secs(60),
            batch: 8,
            poll_interval: Duration::from_secs(1),
            max_backlog: Some(100_000),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// What one poll did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Poll {
    pub dropped: u64,
    pub claimed: usize,
    pub done: usize,
    pub failed: usize,
}

/// One judge worker.
#[derive(Debug, Clone)]
pub struct Worker {
    store: Store,
    judge: Arc<Judge>,
    config: WorkerConfig,
}

impl Worker {
    pub fn new(store: Store, judge: Arc<Judge>, config: WorkerConfig) -> Self {
        Self {
            store,
            judge,
            config,
        }
    }

    /// One poll: bound the queue, claim a batch, judge it (all of it before returning).
    pub async fn run_once(&self) -> Result<Poll, StoreError> {
        let mut poll = Poll::default();
        let (dropped, jobs) = self.claim(self.config.batch).await?;
        poll.dropped = dropped;
        poll.claimed = jobs.len();
        for ok in join_all(jobs.iter().map(|j| self.process(j))).await {
            if ok {
                poll.done += 1;
            } else {
                poll.failed += 1;
            }
        }
        self.refresh_queue_depth().await?;
        Ok(poll)
    }

    /// Bounds the queue, then claims up to `n` jobs; (jobs dropped, jobs claimed).
    async fn claim(&self, n: u32) -> Result<(u64, Vec<JudgeJob>), StoreError> {
        let stats = self.judge.stats();
        let mut dropped = 0;
        if let Some(max) = self.config.max_backlog {
            dropped = self.store.shed_backlog(max).await?;
            if dropped > 0 {
                stats.queue_dropped.fetch_add(dropped, Relaxed);
                tracing::warn!(dropped, max, "judge queue full: newest jobs dropped");
            }
        }
        let jobs = self
            .store
            .claim(&self.config.name, n, self.config.lease)
            .await?;
        self.refresh_queue_depth().await?;
        Ok((dropped, jobs))
    }

    /// Sets the queue-depth gauge to the jobs queued now.
    async fn refresh_queue_depth(&self) -> Result<(), StoreError> {
        let queued = self
            .store
            .job_counts()
            .await?
            .into_iter()
            .find(|(s, _)| s == "queued")
            .map_or(0, |(_, n)| n);
        self.judge.stats().queue_depth.store(queued, Relaxed);
        Ok(())
    }

    /// Judges one job; `true` when it was completed.
    async fn process(&self, job: &JudgeJob) -> bool {
        let stats = self.judge.stats();
        let result = async {
            let Some(pair) = self.store.pair(job.pair_id).await? else {
                return Ok::<_, StoreError>(Err("the pair is not in the store".to_owned()));
            };
            match self.judge.judge_criteria(&pair).await {
                Ok(judgments) => {
                    self.store.insert_judgments(&judgments).await?;
                    stats.pairs_judged.fetch_add(1, Relaxed);
                    Ok(Ok(()))
                }
                Err(e) => Ok(Err(e.to_string())),
            }
        }
        .await;
        let error = match result {
            Ok(Ok(())) => {
                return match self.store.complete(job.id, &self.config.name).await {
                    Ok(true) => true,
                    Ok(false) => {
                        tracing::warn!(job = job.id, "judge job lease lost before completion");
                        false
                    }
                    Err(e) => {
                        tracing::warn!(job = job.id, error = %e, "cannot complete judge job");
                        false
                    }
                };
            }
            Ok(Err(message)) => message,
            Err(e) => e.to_string(),
        };
        stats.jobs_failed.fetch_add(1, Relaxed);
        tracing::warn!(job = job.id, pair_id = %job.pair_id, attempts = job.attempts, %error, "judge job failed; given back");
        if let Err(e) = self.store.fail(job.id, &self.config.name, &error).await {
            tracing::warn!(job = job.id, error = %e, "cannot give the judge job back; its lease will expire");
        }
        false
    }

    /// Judges until `cancel`, keeping up to `batch` jobs in flight: a free slot is filled at
    /// once while the queue has work (a slow judgment never holds back the jobs claimed with
    /// it), and the queue is polled every `poll_interval` while it is empty. On `cancel` the
    /// jobs in flight get `shutdown_grace` to finish; the rest are given back to the queue.
    pub async fn run(self, cancel: CancellationToken) {
        let slots = self.config.batch.max(1) as usize;
        let mut in_flight: JoinSet<bool> = JoinSet::new();
        // Task → job, for giving back what is still running at shutdown.
        let mut jobs_of: HashMap<tokio::task::Id, i64> = HashMap::new();
        loop {
            let free = slots - in_flight.len();
            let mut queue_empty = true;
            if free > 0 {
                match self.claim(free as u32).await {
                    Ok((_, jobs)) => {
                        queue_empty = jobs.len() < free;
                        for job in jobs {
                            let (worker, id) = (self.clone(), job.id);
                            let task = in_flight.spawn(async move { worker.process(&job).await });
                            jobs_of.insert(task.id(), id);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "judge worker poll failed"),
                }
            } else {
                queue_empty = false;
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(done) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                    match done {
                        Ok((task, _)) => {
                            jobs_of.remove(&task);
                        }
                        Err(e) => {
                            jobs_of.remove(&e.id());
                            tracing::warn!(error = %e, "judge job task failed");
                        }
                    }
                }
                () = tokio::time::sleep(self.config.poll_interval), if queue_empty => {}
            }
        }
        let drain = async {
            while let Some(done) = in_flight.join_next_with_id().await {
                let task = match done {
                    Ok((task, _)) => task,
                    Err(e) => e.id(),
                };
                jobs_of.remove(&task);
            }
        };
        if tokio::time::timeout(self.config.shutdown_grace, drain)
            .await
            .is_err()
        {
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
            tracing::warn!(
                jobs = jobs_of.len(),
                "judge jobs still running at shutdown were given back to the queue"
            );
            for job in jobs_of.into_values() {
                if let Err(e) = self.store.release(job, &self.config.name).await {
                    tracing::warn!(job, error = %e, "cannot give the judge job back; its lease will expire");
                }
            }
        }
    }
}

/// Starts `n` workers on `tracker`, named `<config.name>-<i>`.
pub fn spawn_workers(
    n: usize,
    store: &Store,
    judge: &Arc<Judge>,
    config: &WorkerConfig,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) {
    for i in 0..n.max(1) {
        let config = WorkerConfig {
            name: format!("{}-{i}", config.name),
            ..config.clone()
        };
        let worker = Worker::new(store.clone(), judge.clone(), config);
        tracker.spawn(worker.run(cancel.clone()));
    }
}
