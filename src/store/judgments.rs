//! Writing judge output: judgments (LLM criteria) and check results (deterministic checks), each
//! tied to a pair and stamped with the rubric id, version and content hash.
//!
//! Conventions the aggregate queries rely on (see `aggregates`):
//! - a pointwise or reference judgment scores one side: `side` is set, `judge_order` is `single`;
//! - a pairwise criterion stores each order it ran (`judge_order` `ab` / `ba`, `winner` as that
//!   order saw it) and one `combined` row with the consolidated verdict (an inconsistent pair is a
//!   `tie`); only `combined` rows count as wins, ties and losses;
//! - an abstention has `abstain_reason` set and no score (never a made-up default).

use chrono::Utc;
use sqlx::{Postgres, QueryBuilder, Sqlite};
use uuid::Uuid;

use super::{Store, StoreError};
use crate::capture::Role;

/// `judge_order` of a pointwise or reference judgment.
pub const ORDER_SINGLE: &str = "single";
/// `judge_order` of the consolidated verdict of a pairwise criterion.
pub const ORDER_COMBINED: &str = "combined";

/// The outcome of a pairwise comparison, from the candidate's point of view when combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Stable,
    Candidate,
    Tie,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Stable => "stable",
            Verdict::Candidate => "candidate",
            Verdict::Tie => "tie",
        }
    }
}

/// One judgment to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJudgment {
    pub pair_id: Uuid,
    pub rubric_id: String,
    pub rubric_version: String,
    pub rubric_hash: String,
    pub criterion: String,
    /// `pointwise`, `pairwise` or `reference`.
    pub mode: String,
    pub judge_model: String,
    /// `single`, `ab`, `ba` or `combined` (see the module header).
    pub order: String,
    /// The side scored (pointwise and reference); `None` for pairwise rows.
    pub side: Option<Role>,
    pub score: Option<f64>,
    /// A named label when the scale has labels.
    pub label: Option<String>,
    /// Pairwise rows only.
    pub winner: Option<Verdict>,
    pub reasoning: Option<String>,
    /// Set for an abstention (then `score` and `winner` are `None`).
    pub abstain_reason: Option<String>,
    /// The request's trace id, so a score lands on the same trace as the routing decision.
    pub trace_id: Option<String>,
}

/// One deterministic check on one side of a pair.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCheckResult {
    pub pair_id: Uuid,
    pub rubric_id: String,
    pub rubric_version: String,
    pub rubric_hash: String,
    /// The check's name in the rubric.
    pub name: String,
    pub side: Role,
    pub passed: bool,
    /// Defaults to 1 when passed and 0 otherwise.
    pub score: Option<f64>,
    /// `hard` or `soft`.
    pub severity: String,
    pub detail: Option<String>,
}

macro_rules! insert_judgments {
    ($pool:expr, $db:ty, $rows:expr, $ids:expr, $now:expr) => {{
        let mut tx = $pool.begin().await?;
        for (chunk, ids) in
            $crate::store::statement_chunks(&$rows).zip($crate::store::statement_chunks(&$ids))
        {
            let mut qb = QueryBuilder::<$db>::new(
                "INSERT INTO judgments (id, pair_id, rubric_id, rubric_version, rubric_hash, name, \
                 mode, judge_model, judge_order, side, score, label, winner, reasoning, \
                 abstain_reason, trace_id, created_at) ",
            );
            qb.push_values(chunk.iter().zip(ids), |mut b, (j, id)| {
                b.push_bind(*id)
                    .push_bind(j.pair_id)
                    .push_bind(j.rubric_id.as_str())
                    .push_bind(j.rubric_version.as_str())
                    .push_bind(j.rubric_hash.as_str())
                    .push_bind(j.criterion.as_str())
                    .push_bind(j.mode.as_str())
                    .push_bind(j.judge_model.as_str())
                    .push_bind(j.order.as_str())
                    .push_bind(j.side.map(Role::as_str))
                    .push_bind(j.score)
                    .push_bind(j.label.as_deref())
                    .push_bind(j.winner.map(Verdict::as_str))
                    .push_bind(j.reasoning.as_deref())
                    .push_bind(j.abstain_reason.as_deref())
                    .push_bind(j.trace_id.as_deref())
                    .push_bind($now);
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }};
}

/// Inserts check rows on transaction `$tx` of database type `$db`; a row already stored (same
/// pair, rubric hash, check and side) is left as it is, so a retried write never duplicates one.
macro_rules! push_check_rows {
    ($tx:expr, $db:ty, $rows:expr, $now:expr) => {{
        let rows: &[NewCheckResult] = $rows;
        for chunk in $crate::store::statement_chunks(rows) {
            let mut qb = QueryBuilder::<$db>::new(
                "INSERT INTO check_results (pair_id, rubric_id, rubric_version, rubric_hash, name, \
                 side, passed, score, severity, detail, created_at) ",
            );
            qb.push_values(chunk, |mut b, c| {
                b.push_bind(c.pair_id)
                    .push_bind(c.rubric_id.as_str())
                    .push_bind(c.rubric_version.as_str())
                    .push_bind(c.rubric_hash.as_str())
                    .push_bind(c.name.as_str())
                    .push_bind(c.side.as_str())
                    .push_bind(c.passed)
                    .push_bind(c.score.unwrap_or(if c.passed { 1.0 } else { 0.0 }))
                    .push_bind(c.severity.as_str())
                    .push_bind(c.detail.as_deref())
                    .push_bind($now);
            });
            qb.push(" ON CONFLICT (pair_id, rubric_hash, name, side) DO NOTHING");
            qb.build().execute(&mut *$tx).await?;
        }
    }};
}
pub(super) use push_check_rows;

impl Store {
    /// Stores judgments in one transaction; returns their ids in order.
    pub async fn insert_judgments(&self, rows: &[NewJudgment]) -> Result<Vec<Uuid>, StoreError> {
        let ids: Vec<Uuid> = rows.iter().map(|_| Uuid::new_v4()).collect();
        if rows.is_empty() {
            return Ok(ids);
        }
        let now = Utc::now();
        match &self.backend {
            super::Backend::Sqlite(p) => insert_judgments!(p, Sqlite, rows, ids, now),
            super::Backend::Postgres(p) => insert_judgments!(p, Postgres, rows, ids, now),
        }
        Ok(ids)
    }

    /// Stores check results in one transaction (rows already stored are skipped).
    pub async fn insert_check_results(&self, rows: &[NewCheckResult]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        match &self.backend {
            super::Backend::Sqlite(p) => {
                let mut tx = p.begin().await?;
                push_check_rows!(tx, Sqlite, rows, now);
                tx.commit().await?;
            }
            super::Backend::Postgres(p) => {
                let mut tx = p.begin().await?;
                push_check_rows!(tx, Postgres, rows, now);
                tx.commit().await?;
            }
        }
        Ok(())
    }
}
