//! Reads that only the stage reports need: a rollout's stages, the worst candidate answers
//! (lowest judge scores, failed hard checks) with every judgment of their pair, bounded samples of
//! per-observation scores (for the rank test printed "for reference"), the judge's position
//! consistency on pairwise criteria, and the number of judged pairs.
//!
//! Never: summarises in Rust what SQL can count, or returns an unbounded number of rows (every
//! row-level read takes a limit). Fails closed: a database error is returned, never replaced by
//! an empty answer.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::aggregates::SummaryScope;
use super::{Store, StoreError, to_i64, to_u64, with_pool};
use crate::capture::Role;

/// One stage of a rollout as recorded by the controller.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutStage {
    pub index: u32,
    /// The stage label observations and pairs carry.
    pub name: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The state the rollout moved to when the stage ended (e.g. `canary`, `rolled_back`).
    pub outcome: Option<String>,
}

/// A candidate judgment with one of the lowest scores of the stage.
#[derive(Debug, Clone, PartialEq)]
pub struct LowScore {
    pub pair_id: Uuid,
    pub rubric_id: String,
    pub criterion: String,
    pub candidate_score: f64,
    /// Stable's score on the same pair, criterion and judge model, when there is one.
    pub stable_score: Option<f64>,
}

/// A hard check the candidate failed.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedCheck {
    pub pair_id: Uuid,
    pub rubric_id: String,
    pub check: String,
    pub detail: Option<String>,
    /// Whether stable passed the same check on the same pair.
    pub stable_passed: Option<bool>,
}

/// One stored judgment of a pair, as a report shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgmentRow {
    pub criterion: String,
    pub mode: String,
    pub judge_model: String,
    pub order: String,
    pub side: Option<String>,
    pub score: Option<f64>,
    pub winner: Option<String>,
    pub reasoning: Option<String>,
    pub abstain_reason: Option<String>,
}

/// How often the two orders of a pairwise criterion agreed.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionConsistency {
    pub candidate: String,
    pub rubric_id: String,
    pub criterion: String,
    pub consistent: u64,
    pub inconsistent: u64,
}

const PAIR_SCOPE: &str = "p.deployment = $1 AND p.stage = $2 AND p.created_at >= $3";

impl Store {
    /// A rollout's stages, by index.
    pub async fn rollout_stages(&self, rollout_id: Uuid) -> Result<Vec<RolloutStage>, StoreError> {
        type Row = (
            i32,
            String,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            Option<String>,
        );
        let rows: Vec<Row> = with_pool!(self, p => {
            sqlx::query_as(
                "SELECT stage_index, name, started_at, ended_at, outcome FROM rollout_stages \
                 WHERE rollout_id = $1 ORDER BY stage_index",
            )
            .bind(rollout_id)
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| RolloutStage {
                index: u32::try_from(r.0).unwrap_or(0),
                name: r.1,
                started_at: r.2,
                ended_at: r.3,
                outcome: r.4,
            })
            .collect())
    }

    /// Pairs in scope with at least one judgment or check result.
    pub async fn judged_pairs(&self, scope: SummaryScope<'_>) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT COUNT(*) FROM pairs p WHERE {PAIR_SCOPE} AND (\
             EXISTS (SELECT 1 FROM judgments j WHERE j.pair_id = p.id) OR \
             EXISTS (SELECT 1 FROM check_results c WHERE c.pair_id = p.id))"
        );
        let n: i64 = with_pool!(self, p => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(scope.deployment)
                .bind(scope.stage)
                .bind(scope.since)
                .fetch_one(p)
                .await?
        });
        Ok(to_u64(n))
    }

    /// The `limit` candidate judgments with the lowest scores (ties: the largest drop from
    /// stable first, then by pair id, so the choice is deterministic).
    pub async fn lowest_candidate_scores(
        &self,
        scope: SummaryScope<'_>,
        limit: u32,
    ) -> Result<Vec<LowScore>, StoreError> {
        let sql = format!(
            "SELECT j.pair_id, j.rubric_id, j.name, j.score, s.score FROM judgments j \
             JOIN pairs p ON p.id = j.pair_id \
             LEFT JOIN judgments s ON s.pair_id = j.pair_id AND s.rubric_hash = j.rubric_hash \
             AND s.name = j.name AND s.judge_model = j.judge_model AND s.side = 'stable' \
             WHERE {PAIR_SCOPE} AND j.side = 'candidate' AND j.score IS NOT NULL \
             ORDER BY j.score, j.score - COALESCE(s.score, j.score), j.pair_id, j.name LIMIT $4"
        );
        type Row = (Uuid, String, String, f64, Option<f64>);
        let rows: Vec<Row> = with_pool!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(scope.deployment)
                .bind(scope.stage)
                .bind(scope.since)
                .bind(i64::from(limit))
                .fetch_all(p)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| LowScore {
                pair_id: r.0,
                rubric_id: r.1,
                criterion: r.2,
                candidate_score: r.3,
                stable_score: r.4,
            })
            .collect())
    }

    /// Up to `limit` hard checks the candidate failed (regressions, where stable passed, first).
    pub async fn failed_hard_checks(
        &self,
        scope: SummaryScope<'_>,
        limit: u32,
    ) -> Result<Vec<FailedCheck>, StoreError> {
        let sql = format!(
            "SELECT c.pair_id, c.rubric_id, c.name, c.detail, s.passed FROM check_results c \
             JOIN pairs p ON p.id = c.pair_id \
             LEFT JOIN check_results s ON s.pair_id = c.pair_id \
             AND s.rubric_hash = c.rubric_hash AND s.name = c.name AND s.side = 'stable' \
             WHERE {PAIR_SCOPE} AND c.side = 'candidate' AND c.severity = 'hard' \
             AND NOT c.passed \
             ORDER BY CASE WHEN s.passed THEN 0 ELSE 1 END, c.pair_id, c.name LIMIT $4"
        );
        type Row = (Uuid, String, String, Option<String>, Option<bool>);
        let rows: Vec<Row> = with_pool!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(scope.deployment)
                .bind(scope.stage)
                .bind(scope.since)
                .bind(i64::from(limit))
                .fetch_all(p)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| FailedCheck {
                pair_id: r.0,
                rubric_id: r.1,
                check: r.2,
                detail: r.3,
                stable_passed: r.4,
            })
            .collect())
    }

    /// Every judgment of one pair, ordered by criterion, order and side.
    pub async fn pair_judgments(&self, pair_id: Uuid) -> Result<Vec<JudgmentRow>, StoreError> {
        type Row = (
            String,
            String,
            String,
            String,
            Option<String>,
            Option<f64>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = with_pool!(self, p => {
            sqlx::query_as(
                "SELECT name, mode, judge_model, judge_order, side, score, winner, reasoning, \
                 abstain_reason FROM judgments WHERE pair_id = $1 \
                 ORDER BY name, judge_order, side, judge_model",
            )
            .bind(pair_id)
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| JudgmentRow {
                criterion: r.0,
                mode: r.1,
                judge_model: r.2,
                order: r.3,
                side: r.4,
                score: r.5,
                winner: r.6,
                reasoning: r.7,
                abstain_reason: r.8,
            })
            .collect())
    }

    /// At most `limit` scores of one side for one candidate's criterion (rubric hash), in
    /// pair-id order: a bounded sample for tests that need every value, such as Mann-Whitney U.
    pub async fn score_sample(
        &self,
        scope: SummaryScope<'_>,
        candidate: &str,
        rubric_hash: &str,
        criterion: &str,
        side: Role,
        limit: u32,
    ) -> Result<Vec<f64>, StoreError> {
        let sql = format!(
            "SELECT j.score FROM judgments j JOIN pairs p ON p.id = j.pair_id \
             WHERE {PAIR_SCOPE} AND j.rubric_hash = $4 AND j.name = $5 AND j.side = $6 \
             AND j.score IS NOT NULL AND p.candidate = $8 ORDER BY j.pair_id, j.judge_model LIMIT $7"
        );
        let rows: Vec<f64> = with_pool!(self, p => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(scope.deployment)
                .bind(scope.stage)
                .bind(scope.since)
                .bind(rubric_hash)
                .bind(criterion)
                .bind(side.as_str())
                .bind(to_i64(u64::from(limit)))
                .bind(candidate)
                .fetch_all(p)
                .await?
        });
        Ok(rows)
    }

    /// Per pairwise criterion: pairs whose `ab` and `ba` verdicts (both stored from the
    /// candidate's point of view) agreed, and those that did not. Abstained orders are left out.
    pub async fn position_consistency(
        &self,
        scope: SummaryScope<'_>,
    ) -> Result<Vec<PositionConsistency>, StoreError> {
        let sql = format!(
            "SELECT p.candidate, a.rubric_id, a.name, \
             CAST(SUM(CASE WHEN a.winner = b.winner THEN 1 ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN a.winner <> b.winner THEN 1 ELSE 0 END) AS BIGINT) \
             FROM judgments a JOIN judgments b ON b.pair_id = a.pair_id \
             AND b.rubric_hash = a.rubric_hash AND b.name = a.name \
             AND b.judge_model = a.judge_model AND b.judge_order = 'ba' AND b.winner IS NOT NULL \
             JOIN pairs p ON p.id = a.pair_id \
             WHERE {PAIR_SCOPE} AND a.judge_order = 'ab' AND a.winner IS NOT NULL \
             GROUP BY p.candidate, a.rubric_id, a.name ORDER BY p.candidate, a.rubric_id, a.name"
        );
        type Row = (String, String, String, i64, i64);
        let rows: Vec<Row> = with_pool!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(scope.deployment)
                .bind(scope.stage)
                .bind(scope.since)
                .fetch_all(p)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| PositionConsistency {
                candidate: r.0,
                rubric_id: r.1,
                criterion: r.2,
                consistent: to_u64(r.3),
                inconsistent: to_u64(r.4),
            })
            .collect())
    }
}
