//! The admin audit log (changes made through the admin API that are not rollout transitions:
//! traffic edits, key management) and the compare-and-set write of a traffic state.
//!
//! [`Store::put_traffic_if`] is how the admin API serialises read-modify-write of one
//! deployment's traffic across replicas: the write only happens when the stored row still has
//! the config version the caller read, and the audit entry is written in the same transaction,
//! so a change and its audit entry are persisted together or not at all.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::replicas::bump_in_tx;
use super::{Backend, Store, StoreError, to_i64, to_u64, with_pool};
use crate::routing::TrafficState;

/// One entry of the admin audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub deployment: Option<String>,
    /// e.g. `traffic.add_challenger`, `key.create`.
    pub action: String,
    /// Key id or token subject.
    pub actor: String,
    pub detail: serde_json::Value,
    pub config_version: Option<u64>,
    pub at: DateTime<Utc>,
}

/// What to record with a change.
#[derive(Debug, Clone)]
pub struct NewAuditEntry<'a> {
    pub deployment: Option<&'a str>,
    pub action: &'a str,
    pub actor: &'a str,
    pub detail: serde_json::Value,
}

const INSERT_AUDIT: &str = "INSERT INTO admin_audit (deployment, action, actor, detail, \
     config_version, at) VALUES ($1, $2, $3, $4, $5, $6)";

impl Store {
    /// The stored traffic state of one deployment and the config version it was written under.
    pub async fn traffic_state(
        &self,
        deployment: &str,
    ) -> Result<Option<(TrafficState, u64)>, StoreError> {
        let is_pg = matches!(self.backend, Backend::Postgres(_));
        let sql = if is_pg {
            "SELECT state::text, config_version FROM traffic_state WHERE deployment = $1"
        } else {
            "SELECT state, config_version FROM traffic_state WHERE deployment = $1"
        };
        let row: Option<(String, i64)> = with_pool!(self, p => {
            sqlx::query_as(sql).bind(deployment).fetch_optional(p).await?
        });
        row.map(|(state, v)| {
            let state = serde_json::from_str(&state).map_err(|e| StoreError::Corrupt {
                what: "traffic_state",
                detail: format!("{deployment}: {e}"),
            })?;
            Ok((state, to_u64(v)))
        })
        .transpose()
    }

    /// Stores `state` for `deployment` only if its stored row still has config version
    /// `expected` (`None`: only if there is no stored row), bumps the config version and appends
    /// `audit`, all in one transaction. Returns the new version, or `None` (nothing written) when
    /// someone else changed the deployment first.
    pub async fn put_traffic_if(
        &self,
        deployment: &str,
        expected: Option<u64>,
        state: &TrafficState,
        audit: &NewAuditEntry<'_>,
    ) -> Result<Option<u64>, StoreError> {
        let is_pg = matches!(self.backend, Backend::Postgres(_));
        let json = serde_json::to_string(state)
            .map_err(|e| StoreError::Invalid(format!("traffic state: {e}")))?;
        let now = Utc::now();
        let cast = if is_pg { "::jsonb" } else { "" };
        let written = with_pool!(self, p => {
            let mut tx = p.begin().await?;
            // The bump comes first: it takes the write lock (SQLite) / the config_state row lock
            // (Postgres), so the check below sees every earlier committed change.
            let v = bump_in_tx!(tx, is_pg, Some(deployment));
            let n = match expected {
                Some(old) => {
                    let sql = format!(
                        "UPDATE traffic_state SET state = $1{cast}, config_version = $2, actor = $3, \
                         updated_at = $4 WHERE deployment = $5 AND config_version = $6"
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&json)
                        .bind(v)
                        .bind(audit.actor)
                        .bind(now)
                        .bind(deployment)
                        .bind(to_i64(old))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                }
                None => {
                    let sql = format!(
                        "INSERT INTO traffic_state (deployment, state, config_version, actor, \
                         updated_at) VALUES ($1, $2{cast}, $3, $4, $5) \
                         ON CONFLICT (deployment) DO NOTHING"
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(deployment)
                        .bind(&json)
                        .bind(v)
                        .bind(audit.actor)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                }
            };
            if n == 1 {
                sqlx::query(INSERT_AUDIT)
                    .bind(audit.deployment)
                    .bind(audit.action)
                    .bind(audit.actor)
                    .bind(Json(&audit.detail))
                    .bind(Some(v))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Some(v)
            } else {
                tx.rollback().await?;
                None
            }
        });
        Ok(written.map(to_u64))
    }

    /// Appends an audit entry for a change that has no config version (e.g. a key revoked).
    pub async fn record_audit(&self, audit: &NewAuditEntry<'_>) -> Result<(), StoreError> {
        with_pool!(self, p => {
            sqlx::query(INSERT_AUDIT)
                .bind(audit.deployment)
                .bind(audit.action)
                .bind(audit.actor)
                .bind(Json(&audit.detail))
                .bind(None::<i64>)
                .bind(Utc::now())
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// Audit entries, oldest first: of one deployment, or (with `None`) all of them.
    pub async fn admin_audit(
        &self,
        deployment: Option<&str>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        type Row = (
            i64,
            Option<String>,
            String,
            String,
            Json<serde_json::Value>,
            Option<i64>,
            DateTime<Utc>,
        );
        let rows: Vec<Row> = with_pool!(self, p => {
            sqlx::query_as(
                "SELECT id, deployment, action, actor, detail, config_version, at FROM admin_audit \
                 WHERE $1 IS NULL OR deployment = $1 ORDER BY id",
            )
            .bind(deployment)
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry {
                id: r.0,
                deployment: r.1,
                action: r.2,
                actor: r.3,
                detail: r.4.0,
                config_version: r.5.map(to_u64),
                at: r.6,
            })
            .collect())
    }
}
