//! Rollout records, their stages and the audit log of transitions, plus deployment variants.
//!
//! A transition is written in the same transaction as the state change it describes, together
//! with the config-version bump (and, on Postgres, its `NOTIFY`): either all of it is persisted
//! or none. Updates are optimistic: the caller names the state and stage it expects, and a
//! concurrent change makes the update fail with [`StoreError::Invalid`] instead of overwriting.
//! The store does not know which transitions are legal; that is the controller's business.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::replicas::bump_in_tx;
use super::{Backend, Store, StoreError, to_u64, with_pool};

/// A rollout to create.
#[derive(Debug, Clone)]
pub struct NewRollout {
    pub deployment: String,
    pub candidate: String,
    /// Initial state, e.g. `draft` or `shadow`.
    pub state: String,
    pub stage_index: u32,
    /// Label of the initial stage (as on observations), e.g. `shadow`.
    pub stage_name: String,
    pub actor: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub id: Uuid,
    pub deployment: String,
    pub candidate: String,
    pub state: String,
    pub stage_index: u32,
    pub stage_started_at: DateTime<Utc>,
    /// The config version written with the last transition.
    pub config_version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A state change and why.
#[derive(Debug, Clone)]
pub struct RolloutUpdate {
    /// The state and stage the caller believes the rollout is in.
    pub expected_state: String,
    pub expected_stage: u32,
    pub state: String,
    pub stage_index: u32,
    /// Label of the stage entered (used when `stage_index` changes).
    pub stage_name: String,
    pub actor: String,
    pub reason: String,
    pub evidence: serde_json::Value,
}

/// One audit-log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub id: i64,
    pub rollout_id: Uuid,
    pub from_state: String,
    pub to_state: String,
    pub from_stage: u32,
    pub to_stage: u32,
    pub actor: String,
    pub reason: String,
    pub evidence: serde_json::Value,
    pub config_version: u64,
    pub at: DateTime<Utc>,
}

type RolloutRow = (
    Uuid,
    String,
    String,
    String,
    i32,
    DateTime<Utc>,
    i64,
    DateTime<Utc>,
    DateTime<Utc>,
);

const ROLLOUT_COLUMNS: &str = "SELECT id, deployment, candidate, state, stage_index, \
     stage_started_at, config_version, created_at, updated_at FROM rollouts";

fn rollout_from(r: RolloutRow) -> Rollout {
    Rollout {
        id: r.0,
        deployment: r.1,
        candidate: r.2,
        state: r.3,
        stage_index: u32::try_from(r.4).unwrap_or(0),
        stage_started_at: r.5,
        config_version: to_u64(r.6),
        created_at: r.7,
        updated_at: r.8,
    }
}

fn stage_i32(stage: u32) -> Result<i32, StoreError> {
    i32::try_from(stage).map_err(|_| StoreError::Invalid(format!("stage index {stage} too large")))
}

impl Store {
    /// Creates a rollout in its initial state, with its first stage and a transition from `""`.
    pub async fn create_rollout(&self, new: &NewRollout) -> Result<Rollout, StoreError> {
        let id = Uuid::new_v4();
        let now = Utc::now();
        let stage = stage_i32(new.stage_index)?;
        let is_pg = matches!(self.backend, Backend::Postgres(_));
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            let version = bump_in_tx!(tx, is_pg, Some(new.deployment.as_str()));
            sqlx::query(
                "INSERT INTO rollouts (id, deployment, candidate, state, stage_index, \
                 stage_started_at, config_version, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $6, $6)",
            )
            .bind(id)
            .bind(&new.deployment)
            .bind(&new.candidate)
            .bind(&new.state)
            .bind(stage)
            .bind(now)
            .bind(version)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO rollout_stages (rollout_id, stage_index, name, started_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(stage)
            .bind(&new.stage_name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO rollout_transitions (rollout_id, from_state, to_state, from_stage, \
                 to_stage, actor, reason, evidence, config_version, at) \
                 VALUES ($1, '', $2, $3, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id)
            .bind(&new.state)
            .bind(stage)
            .bind(&new.actor)
            .bind(&new.reason)
            .bind(Json(serde_json::Value::Null))
            .bind(version)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        self.rollout(id).await?.ok_or(StoreError::Corrupt {
            what: "rollout",
            detail: format!("{id} vanished after insert"),
        })
    }

    pub async fn rollout(&self, id: Uuid) -> Result<Option<Rollout>, StoreError> {
        let sql = format!("{ROLLOUT_COLUMNS} WHERE id = $1");
        let row: Option<RolloutRow> = with_pool!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(p).await?
        });
        Ok(row.map(rollout_from))
    }

    /// A deployment's rollouts, newest first.
    pub async fn rollouts(&self, deployment: &str) -> Result<Vec<Rollout>, StoreError> {
        let sql = format!("{ROLLOUT_COLUMNS} WHERE deployment = $1 ORDER BY created_at DESC");
        let rows: Vec<RolloutRow> = with_pool!(self, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(deployment).fetch_all(p).await?
        });
        Ok(rows.into_iter().map(rollout_from).collect())
    }

    /// Applies a state change and appends its transition, in one transaction that also bumps the
    /// config version. Fails (changing nothing) when the rollout is not in the expected state.
    pub async fn transition_rollout(
        &self,
        id: Uuid,
        update: &RolloutUpdate,
    ) -> Result<Rollout, StoreError> {
        let now = Utc::now();
        let from_stage = stage_i32(update.expected_stage)?;
        let to_stage = stage_i32(update.stage_index)?;
        let new_stage = from_stage != to_stage;
        let is_pg = matches!(self.backend, Backend::Postgres(_));
        let updated = with_pool!(self, p => {
            let mut tx = p.begin().await?;
            let deployment: Option<String> = sqlx::query_scalar(
                "SELECT deployment FROM rollouts WHERE id = $1 AND state = $2 AND stage_index = $3",
            )
            .bind(id)
            .bind(&update.expected_state)
            .bind(from_stage)
            .fetch_optional(&mut *tx)
            .await?;
            match deployment {
                None => false,
                Some(deployment) => {
                    let version = bump_in_tx!(tx, is_pg, Some(deployment.as_str()));
                    let n = sqlx::query(
                        "UPDATE rollouts SET state = $1, stage_index = $2, \
                         stage_started_at = CASE WHEN $3 THEN $4 ELSE stage_started_at END, \
                         config_version = $5, updated_at = $4 \
                         WHERE id = $6 AND state = $7 AND stage_index = $8",
                    )
                    .bind(&update.state)
                    .bind(to_stage)
                    .bind(new_stage)
                    .bind(now)
                    .bind(version)
                    .bind(id)
                    .bind(&update.expected_state)
                    .bind(from_stage)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n == 1 {
                        if new_stage {
                            sqlx::query(
                                "UPDATE rollout_stages SET ended_at = $1, outcome = $2 \
                                 WHERE rollout_id = $3 AND stage_index = $4",
                            )
                            .bind(now)
                            .bind(&update.state)
                            .bind(id)
                            .bind(from_stage)
                            .execute(&mut *tx)
                            .await?;
                            sqlx::query(
                                "INSERT INTO rollout_stages (rollout_id, stage_index, name, started_at) \
                                 VALUES ($1, $2, $3, $4) ON CONFLICT (rollout_id, stage_index) \
                                 DO UPDATE SET name = excluded.name, started_at = excluded.started_at, \
                                 ended_at = NULL, outcome = NULL",
                            )
                            .bind(id)
                            .bind(to_stage)
                            .bind(&update.stage_name)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        }
                        sqlx::query(
                            "INSERT INTO rollout_transitions (rollout_id, from_state, to_state, \
                             from_stage, to_stage, actor, reason, evidence, config_version, at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                        )
                        .bind(id)
                        .bind(&update.expected_state)
                        .bind(&update.state)
                        .bind(from_stage)
                        .bind(to_stage)
                        .bind(&update.actor)
                        .bind(&update.reason)
                        .bind(Json(&update.evidence))
                        .bind(version)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        tx.commit().await?;
                    }
                    n == 1
                }
            }
        });
        if !updated {
            return Err(StoreError::Invalid(format!(
                "rollout {id} is not in state `{}` stage {} (changed concurrently?)",
                update.expected_state, update.expected_stage
            )));
        }
        self.rollout(id).await?.ok_or(StoreError::Corrupt {
            what: "rollout",
            detail: format!("{id} vanished after update"),
        })
    }

    /// A rollout's audit log, oldest first.
    pub async fn transitions(&self, rollout_id: Uuid) -> Result<Vec<Transition>, StoreError> {
        type Row = (
            i64,
            String,
            String,
            i32,
            i32,
            String,
            String,
            Json<serde_json::Value>,
            i64,
            DateTime<Utc>,
        );
        let rows: Vec<Row> = with_pool!(self, p => {
            sqlx::query_as(
                "SELECT id, from_state, to_state, from_stage, to_stage, actor, reason, evidence, \
                 config_version, at FROM rollout_transitions WHERE rollout_id = $1 ORDER BY id",
            )
            .bind(rollout_id)
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| Transition {
                id: r.0,
                rollout_id,
                from_state: r.1,
                to_state: r.2,
                from_stage: u32::try_from(r.3).unwrap_or(0),
                to_stage: u32::try_from(r.4).unwrap_or(0),
                actor: r.5,
                reason: r.6,
                evidence: r.7.0,
                config_version: to_u64(r.8),
                at: r.9,
            })
            .collect())
    }

    /// Records a variant of a deployment (as configured under `config_version`).
    pub async fn upsert_variant(
        &self,
        deployment: &str,
        name: &str,
        role: crate::capture::Role,
        upstream_model: &str,
        percent: f64,
        config_version: u64,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO deployments (name, config_version, created_at, updated_at) \
                 VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO NOTHING",
            )
            .bind(deployment)
            .bind(super::to_i64(config_version))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO variants (deployment, name, role, upstream_model, percent, \
                 config_version, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (deployment, name) DO UPDATE SET role = excluded.role, \
                 upstream_model = excluded.upstream_model, percent = excluded.percent, \
                 config_version = excluded.config_version, updated_at = excluded.updated_at",
            )
            .bind(deployment)
            .bind(name)
            .bind(role.as_str())
            .bind(upstream_model)
            .bind(percent)
            .bind(super::to_i64(config_version))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// A deployment's variants: (name, role, upstream model, percent, config version).
    pub async fn variants(
        &self,
        deployment: &str,
    ) -> Result<Vec<(String, String, String, f64, u64)>, StoreError> {
        let rows: Vec<(String, String, String, f64, i64)> = with_pool!(self, p => {
            sqlx::query_as(
                "SELECT name, role, upstream_model, percent, config_version FROM variants \
                 WHERE deployment = $1 ORDER BY name",
            )
            .bind(deployment)
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(n, r, m, p, v)| (n, r, m, p, to_u64(v)))
            .collect())
    }
}
