//! The gate's evaluations over time (`gate_history`, migration 0006): one row per gate cell
//! (metric × cohort) per tick the controller chose to record, read back in time order for the
//! charts of the dashboard and the stage reports, and pruned by age.
//!
//! The store only writes and reads the rows: which ticks are recorded (the bound on how many) is
//! the controller's choice. A non-finite number (an interval unbounded for lack of data) is
//! stored as NULL and read back as `None`, on both backends alike.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError, to_u64, with_pool};

/// Rows per prune statement.
const CHUNK: i64 = 5000;

/// Rows one read returns at most (the controller writes a few hundred per cell and stage).
const READ_LIMIT: i64 = 50_000;

/// One evaluation of one gate cell.
#[derive(Debug, Clone, PartialEq)]
pub struct GatePoint {
    pub rollout_id: Uuid,
    pub deployment: String,
    pub stage_index: u32,
    pub metric: String,
    pub cohort: String,
    pub at: DateTime<Utc>,
    pub estimate: Option<f64>,
    /// `None`: unbounded on that side (too little data), or no interval at all.
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    pub bound: Option<f64>,
    pub alpha: Option<f64>,
    /// The gate's method and verdict, in their serde spellings (`paired_delta_cs`, `worse`).
    pub method: String,
    pub verdict: String,
    pub candidate_n: u64,
    pub stable_n: u64,
}

type Row = (
    Uuid,
    String,
    i32,
    String,
    String,
    DateTime<Utc>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    String,
    String,
    i64,
    i64,
);

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Appends evaluations (one transaction). Non-finite numbers are stored as NULL.
    pub async fn record_gate_points(&self, points: &[GatePoint]) -> Result<(), StoreError> {
        if points.is_empty() {
            return Ok(());
        }
        for p in points {
            if i32::try_from(p.stage_index).is_err() {
                return Err(StoreError::Invalid(format!(
                    "stage index {} too large",
                    p.stage_index
                )));
            }
        }
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for p in points {
                sqlx::query(
                    "INSERT INTO gate_history (rollout_id, deployment, stage_index, metric, \
                     cohort, at, estimate, lo, hi, bound, alpha, method, verdict, candidate_n, \
                     stable_n) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
                     $14, $15)",
                )
                .bind(p.rollout_id)
                .bind(&p.deployment)
                .bind(i32::try_from(p.stage_index).unwrap_or(i32::MAX))
                .bind(&p.metric)
                .bind(&p.cohort)
                .bind(p.at)
                .bind(finite(p.estimate))
                .bind(finite(p.lo))
                .bind(finite(p.hi))
                .bind(finite(p.bound))
                .bind(finite(p.alpha))
                .bind(&p.method)
                .bind(&p.verdict)
                .bind(to_i64(p.candidate_n))
                .bind(to_i64(p.stable_n))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// A stage's recorded evaluations, oldest first (in the order they were written).
    pub async fn gate_history(
        &self,
        rollout_id: Uuid,
        stage_index: u32,
    ) -> Result<Vec<GatePoint>, StoreError> {
        let Ok(stage) = i32::try_from(stage_index) else {
            return Ok(Vec::new());
        };
        let rows: Vec<Row> = with_pool!(self, p => {
            sqlx::query_as(
                "SELECT rollout_id, deployment, stage_index, metric, cohort, at, estimate, lo, \
                 hi, bound, alpha, method, verdict, candidate_n, stable_n FROM gate_history \
                 WHERE rollout_id = $1 AND stage_index = $2 ORDER BY id LIMIT $3",
            )
            .bind(rollout_id)
            .bind(stage)
            .bind(READ_LIMIT)
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| GatePoint {
                rollout_id: r.0,
                deployment: r.1,
                stage_index: u32::try_from(r.2).unwrap_or(0),
                metric: r.3,
                cohort: r.4,
                at: r.5,
                estimate: r.6,
                lo: r.7,
                hi: r.8,
                bound: r.9,
                alpha: r.10,
                method: r.11,
                verdict: r.12,
                candidate_n: to_u64(r.13),
                stable_n: to_u64(r.14),
            })
            .collect())
    }

    /// Deletes evaluations recorded before `before`, in bounded chunks; returns how many.
    pub async fn prune_gate_history(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            let n = with_pool!(self, p => {
                sqlx::query(
                    "DELETE FROM gate_history WHERE id IN (SELECT id FROM gate_history \
                     WHERE at < $1 ORDER BY id LIMIT $2)",
                )
                .bind(before)
                .bind(CHUNK)
                .execute(p)
                .await?
                .rows_affected()
            });
            deleted += n;
            if n < CHUNK as u64 {
                return Ok(deleted);
            }
        }
    }
}
