//! Retention: a background task that deletes old observations, clears old bodies and deletes
//! old rows of the gate's history (`gate_history`).
//!
//! Bodies (request, response and answer text) usually matter for a shorter time than the numbers,
//! so they have their own age. Deletes go in bounded chunks so that a large backlog never holds
//! the (SQLite) write lock for long. Pairs, judgments and check results are kept: the stage
//! reports need them after the raw observations are gone. Fails open: an error is logged and the
//! next round tries again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Store, StoreError, with_pool};

/// Rows per delete or update statement.
const CHUNK: i64 = 5000;

#[derive(Debug, Clone)]
pub struct RetentionPolicy {
    /// Observations older than this are deleted (with their labels); `None` keeps them.
    pub observations: Option<Duration>,
    /// Bodies of observations older than this are set to NULL; `None` keeps them.
    pub bodies: Option<Duration>,
    /// The gate's recorded evaluations older than this are deleted; `None` keeps them.
    pub gate_history: Option<Duration>,
    /// How often the task runs.
    pub interval: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub observations_deleted: u64,
    pub bodies_cleared: u64,
    pub gate_points_deleted: u64,
}

fn cutoff(now: DateTime<Utc>, age: Duration) -> Result<DateTime<Utc>, StoreError> {
    let age = chrono::Duration::from_std(age)
        .map_err(|e| StoreError::Invalid(format!("retention age {age:?}: {e}")))?;
    Ok(now - age)
}

impl Store {
    /// One retention pass as of `now`: old observations first, then old bodies of the rest, then
    /// the gate's old evaluations.
    pub async fn prune(
        &self,
        policy: &RetentionPolicy,
        now: DateTime<Utc>,
    ) -> Result<PruneReport, StoreError> {
        let mut report = PruneReport::default();
        if let Some(age) = policy.observations {
            let before = cutoff(now, age)?;
            loop {
                let n = with_pool!(self, p => {
                    let mut tx = p.begin().await?;
                    // The same (ordered) chunk in both statements, in one transaction.
                    sqlx::query(
                        "DELETE FROM observation_labels WHERE observation_id IN (SELECT id FROM \
                         observations WHERE at < $1 ORDER BY at, id LIMIT $2)",
                    )
                    .bind(before)
                    .bind(CHUNK)
                    .execute(&mut *tx)
                    .await?;
                    let n = sqlx::query(
                        "DELETE FROM observations WHERE id IN (SELECT id FROM observations \
                         WHERE at < $1 ORDER BY at, id LIMIT $2)",
                    )
                    .bind(before)
                    .bind(CHUNK)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    tx.commit().await?;
                    n
                });
                report.observations_deleted += n;
                if n < CHUNK as u64 {
                    break;
                }
            }
            // The ids of flushes as old as the observations deleted: a flush replayed after
            // that long would only add what retention already let go.
            with_pool!(self, p => {
                sqlx::query("DELETE FROM agg_flushes WHERE at < $1")
                    .bind(before)
                    .execute(p)
                    .await?
                    .rows_affected()
            });
        }
        if let Some(age) = policy.bodies {
            let before = cutoff(now, age)?;
            loop {
                let n = with_pool!(self, p => {
                    sqlx::query(
                        "UPDATE observations SET request_body = NULL, response_body = NULL, \
                         response_text = NULL WHERE id IN (SELECT id FROM observations \
                         WHERE at < $1 AND (request_body IS NOT NULL OR response_body IS NOT NULL \
                         OR response_text IS NOT NULL) LIMIT $2)",
                    )
                    .bind(before)
                    .bind(CHUNK)
                    .execute(p)
                    .await?
                    .rows_affected()
                });
                report.bodies_cleared += n;
                if n < CHUNK as u64 {
                    break;
                }
            }
        }
        if let Some(age) = policy.gate_history {
            report.gate_points_deleted = self.prune_gate_history(cutoff(now, age)?).await?;
        }
        Ok(report)
    }

    /// Runs [`Store::prune`] every `policy.interval` until `cancel` fires.
    pub fn spawn_retention(
        &self,
        policy: RetentionPolicy,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) {
        let store = self.clone();
        tracker.spawn(async move {
            loop {
                match store.prune(&policy, Utc::now()).await {
                    Ok(r) if r != PruneReport::default() => {
                        tracing::info!(
                            deleted = r.observations_deleted,
                            bodies_cleared = r.bodies_cleared,
                            gate_points_deleted = r.gate_points_deleted,
                            "retention pass"
                        );
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "retention pass failed"),
                }
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(policy.interval) => {}
                }
            }
        });
    }
}
