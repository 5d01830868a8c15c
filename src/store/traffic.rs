//! Persisted traffic state: what the rollout controller and the admin API set for a deployment
//! (mode, stage label, candidates and shares), shared by every replica. Writing one bumps the
//! config version in the same transaction, so replicas watching the version re-read it.

use chrono::{DateTime, Utc};

use super::replicas::bump_in_tx;
use super::{Backend, Store, StoreError, to_u64, with_pool};
use crate::routing::TrafficState;

/// One deployment's stored traffic state.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTraffic {
    pub deployment: String,
    pub state: TrafficState,
    pub config_version: u64,
    pub actor: String,
    pub updated_at: DateTime<Utc>,
}

impl Store {
    /// Stores `state` for `deployment`, bumps the config version (notifying replicas) and
    /// returns the new version.
    pub async fn put_traffic(
        &self,
        deployment: &str,
        state: &TrafficState,
        actor: &str,
    ) -> Result<u64, StoreError> {
        let is_pg = matches!(self.backend, Backend::Postgres(_));
        let json = serde_json::to_string(state)
            .map_err(|e| StoreError::Invalid(format!("traffic state: {e}")))?;
        let now = Utc::now();
        let version = with_pool!(self, p => {
            let mut tx = p.begin().await?;
            let v = bump_in_tx!(tx, is_pg, Some(deployment));
            let sql = if is_pg {
                "INSERT INTO traffic_state (deployment, state, config_version, actor, updated_at) \
                 VALUES ($1, $2::jsonb, $3, $4, $5) ON CONFLICT (deployment) DO UPDATE SET \
                 state = excluded.state, config_version = excluded.config_version, \
                 actor = excluded.actor, updated_at = excluded.updated_at"
            } else {
                "INSERT INTO traffic_state (deployment, state, config_version, actor, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (deployment) DO UPDATE SET \
                 state = excluded.state, config_version = excluded.config_version, \
                 actor = excluded.actor, updated_at = excluded.updated_at"
            };
            sqlx::query(sql)
                .bind(deployment)
                .bind(&json)
                .bind(v)
                .bind(actor)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            v
        });
        Ok(to_u64(version))
    }

    /// Every stored traffic state.
    pub async fn traffic_states(&self) -> Result<Vec<StoredTraffic>, StoreError> {
        let is_pg = matches!(self.backend, Backend::Postgres(_));
        let sql = if is_pg {
            "SELECT deployment, state::text, config_version, actor, updated_at FROM traffic_state ORDER BY deployment"
        } else {
            "SELECT deployment, state, config_version, actor, updated_at FROM traffic_state ORDER BY deployment"
        };
        let rows: Vec<(String, String, i64, String, DateTime<Utc>)> = with_pool!(self, p => {
            sqlx::query_as(sql).fetch_all(p).await?
        });
        rows.into_iter()
            .map(|(deployment, state, v, actor, updated_at)| {
                let state = serde_json::from_str(&state).map_err(|e| StoreError::Corrupt {
                    what: "traffic_state",
                    detail: format!("{deployment}: {e}"),
                })?;
                Ok(StoredTraffic {
                    deployment,
                    state,
                    config_version: to_u64(v),
                    actor,
                    updated_at,
                })
            })
            .collect()
    }

    /// Removes a deployment's stored state (the config file's deployment applies again).
    pub async fn clear_traffic(&self, deployment: &str) -> Result<u64, StoreError> {
        let is_pg = matches!(self.backend, Backend::Postgres(_));
        let version = with_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM traffic_state WHERE deployment = $1")
                .bind(deployment)
                .execute(&mut *tx)
                .await?;
            let v = bump_in_tx!(tx, is_pg, Some(deployment));
            tx.commit().await?;
            v
        });
        Ok(to_u64(version))
    }
}
