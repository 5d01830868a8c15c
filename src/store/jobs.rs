//! The judge-job queue: one job per matched pair, claimed under a lease.
//!
//! A job is `queued` → `running` (claimed: lease owner and expiry set) → `done` | `failed` |
//! `cancelled`. A `running` job whose lease has expired can be claimed again by any worker, so a
//! dead worker's jobs are picked up after the lease. Completion is conditional on still owning the
//! lease, so a job is never completed twice: when a lease was taken over, the old owner's
//! `complete` returns `false` and its result must be discarded.
//!
//! Claiming is one statement: on Postgres the candidates are locked with `FOR UPDATE SKIP LOCKED`
//! (workers never wait on each other's rows); on SQLite an `UPDATE … RETURNING` runs under the
//! database's single write lock, which is atomic by itself.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Backend, Store, StoreError, to_u64, with_pool};

/// Attempts after which a failing job is marked `failed` instead of being queued again.
pub const MAX_ATTEMPTS: i32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeJob {
    pub id: i64,
    pub pair_id: Uuid,
    pub deployment: String,
    pub candidate: String,
    /// Including this claim.
    pub attempts: u32,
    pub lease_expires_at: DateTime<Utc>,
}

const CLAIM_SQLITE: &str = "UPDATE judge_jobs SET state = 'running', lease_owner = $1, \
     lease_expires_at = $2, attempts = attempts + 1, updated_at = $3 \
     WHERE id IN (SELECT id FROM judge_jobs \
        WHERE state = 'queued' OR (state = 'running' AND lease_expires_at < $3) \
        ORDER BY id LIMIT $4) \
     RETURNING id, pair_id, deployment, candidate, attempts, lease_expires_at";

const CLAIM_POSTGRES: &str = "WITH picked AS (SELECT id FROM judge_jobs \
        WHERE state = 'queued' OR (state = 'running' AND lease_expires_at < $3) \
        ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) \
     UPDATE judge_jobs j SET state = 'running', lease_owner = $1, lease_expires_at = $2, \
        attempts = j.attempts + 1, updated_at = $3 \
     FROM picked WHERE j.id = picked.id \
     RETURNING j.id, j.pair_id, j.deployment, j.candidate, j.attempts, j.lease_expires_at";

type JobRow = (i64, Uuid, String, String, i32, DateTime<Utc>);

impl Store {
    /// Queues a judge job for `pair_id` (a no-op when it already has one). The capture sink does
    /// this for every pair it writes; this is for pairs made elsewhere (replay, A/A arm).
    pub async fn enqueue_judge_job(
        &self,
        pair_id: Uuid,
        deployment: &str,
        candidate: &str,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let n = with_pool!(self, p => {
            sqlx::query(
                "INSERT INTO judge_jobs (pair_id, deployment, candidate, state, attempts, \
                 created_at, updated_at) VALUES ($1, $2, $3, 'queued', 0, $4, $4) \
                 ON CONFLICT (pair_id) DO NOTHING",
            )
            .bind(pair_id)
            .bind(deployment)
            .bind(candidate)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Claims up to `max` jobs (oldest first) for `worker`, each leased for `lease`. Jobs whose
    /// lease expired are claimable again.
    pub async fn claim(
        &self,
        worker: &str,
        max: u32,
        lease: Duration,
    ) -> Result<Vec<JudgeJob>, StoreError> {
        let now = Utc::now();
        let expires = now
            + chrono::Duration::from_std(lease)
                .map_err(|e| StoreError::Invalid(format!("lease {lease:?}: {e}")))?;
        let sql = match self.backend {
            Backend::Sqlite(_) => CLAIM_SQLITE,
            Backend::Postgres(_) => CLAIM_POSTGRES,
        };
        let rows: Vec<JobRow> = with_pool!(self, p => {
            sqlx::query_as(sql)
                .bind(worker)
                .bind(expires)
                .bind(now)
                .bind(i64::from(max))
                .fetch_all(p)
                .await?
        });
        let mut jobs: Vec<JudgeJob> = rows
            .into_iter()
            .map(
                |(id, pair_id, deployment, candidate, attempts, lease_expires_at)| JudgeJob {
                    id,
                    pair_id,
                    deployment,
                    candidate,
                    attempts: u32::try_from(attempts).unwrap_or(0),
                    lease_expires_at,
                },
            )
            .collect();
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    /// Marks a job done. Returns `false` (and changes nothing) when `worker` no longer holds its
    /// lease — the job was reclaimed, cancelled or already completed.
    pub async fn complete(&self, job_id: i64, worker: &str) -> Result<bool, StoreError> {
        let n = with_pool!(self, p => {
            sqlx::query(
                "UPDATE judge_jobs SET state = 'done', lease_expires_at = NULL, updated_at = $3 \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
            )
            .bind(job_id)
            .bind(worker)
            .bind(Utc::now())
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Gives a job back after a failure: queued again, or `failed` after [`MAX_ATTEMPTS`].
    /// Returns `false` when `worker` no longer holds the lease.
    pub async fn fail(&self, job_id: i64, worker: &str, error: &str) -> Result<bool, StoreError> {
        let n = with_pool!(self, p => {
            sqlx::query(
                "UPDATE judge_jobs SET \
                   state = CASE WHEN attempts >= $4 THEN 'failed' ELSE 'queued' END, \
                   lease_owner = NULL, lease_expires_at = NULL, last_error = $3, updated_at = $5 \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
            )
            .bind(job_id)
            .bind(worker)
            .bind(error)
            .bind(MAX_ATTEMPTS)
            .bind(Utc::now())
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Gives a job back unfinished, e.g. at shutdown: queued again at once and its attempt not
    /// counted. Returns `false` when `worker` no longer holds the lease.
    pub async fn release(&self, job_id: i64, worker: &str) -> Result<bool, StoreError> {
        let n = with_pool!(self, p => {
            sqlx::query(
                "UPDATE judge_jobs SET state = 'queued', lease_owner = NULL, \
                   lease_expires_at = NULL, attempts = attempts - 1, updated_at = $3 \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
            )
            .bind(job_id)
            .bind(worker)
            .bind(Utc::now())
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Cancels every pending (queued or running) job of a candidate, e.g. on rollback.
    /// Returns how many were cancelled.
    pub async fn cancel_for_candidate(
        &self,
        deployment: &str,
        candidate: &str,
    ) -> Result<u64, StoreError> {
        Ok(with_pool!(self, p => {
            sqlx::query(
                "UPDATE judge_jobs SET state = 'cancelled', lease_owner = NULL, \
                 lease_expires_at = NULL, updated_at = $3 \
                 WHERE deployment = $1 AND candidate = $2 AND state IN ('queued', 'running')",
            )
            .bind(deployment)
            .bind(candidate)
            .bind(Utc::now())
            .execute(p)
            .await?
            .rows_affected()
        }))
    }

    /// Jobs per state (for `/metrics` and tests).
    pub async fn job_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = with_pool!(self, p => {
            sqlx::query_as("SELECT state, COUNT(*) FROM judge_jobs GROUP BY state ORDER BY state")
                .fetch_all(p)
                .await?
        });
        Ok(rows.into_iter().map(|(s, n)| (s, to_u64(n))).collect())
    }
}

impl Store {
    /// Bounds the queue: when more than `max_queued` jobs are queued, the newest ones beyond the
    /// bound are cancelled (`last_error = 'queue_full'`). Returns how many were dropped.
    pub async fn shed_backlog(&self, max_queued: u64) -> Result<u64, StoreError> {
        let queued: i64 = with_pool!(self, p => {
            sqlx::query_scalar("SELECT COUNT(*) FROM judge_jobs WHERE state = 'queued'")
                .fetch_one(p)
                .await?
        });
        let excess = to_u64(queued).saturating_sub(max_queued);
        if excess == 0 {
            return Ok(0);
        }
        Ok(with_pool!(self, p => {
            sqlx::query(
                "UPDATE judge_jobs SET state = 'cancelled', last_error = 'queue_full', \
                 updated_at = $2 WHERE id IN (SELECT id FROM judge_jobs WHERE state = 'queued' \
                 ORDER BY id DESC LIMIT $1)",
            )
            .bind(i64::try_from(excess).unwrap_or(i64::MAX))
            .bind(Utc::now())
            .execute(p)
            .await?
            .rows_affected()
        }))
    }
}
