//! The one-time sum of the observations stored before the aggregate tables existed
//! (`migrations/*/0005_aggregates.sql` sets a marker; the first replica to connect after it
//! claims the marker and adds every stored observation, in the same transaction), so that a
//! stage running across the upgrade keeps its data. Another replica connecting meanwhile waits
//! on the marker row and then finds it gone.
//!
//! Never: runs twice (the marker is deleted in the transaction that adds the sums).

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::types::Json;
use uuid::Uuid;

use super::deltas::{epoch_of, read_epochs, write_deltas};
use super::sink::{decode_observation, parse_endpoint, parse_error_class};
use super::{Store, StoreError, to_i64, to_u64};
use crate::capture::{Aggregates, Observation, Purpose, Role, Usage};

/// Observations read per page.
const PAGE: i64 = 5000;

/// Claims the marker and, if it was there, sums every observation into the tables.
macro_rules! backfill {
    ($pool:expr, $db:ty) => {{
        let mut tx = $pool.begin().await?;
        let claimed: Option<i32> =
            sqlx::query_scalar("DELETE FROM agg_backfill WHERE id = 1 RETURNING id")
                .fetch_optional(&mut *tx)
                .await?;
        let mut n = 0_u64;
        if claimed.is_some() {
            let mut observations: Vec<Observation> = Vec::new();
            let mut after = Uuid::nil();
            loop {
                let rows =
                    sqlx::query("SELECT * FROM observations WHERE id > $1 ORDER BY id LIMIT $2")
                        .bind(after)
                        .bind(PAGE)
                        .fetch_all(&mut *tx)
                        .await?;
                for row in &rows {
                    let mut o: Observation = decode_observation!(row);
                    // Only the aggregated fields matter here.
                    o.request_body = None;
                    o.response_body = None;
                    o.response_text = None;
                    after = o.id;
                    observations.push(o);
                }
                if rows.len() < PAGE as usize {
                    break;
                }
            }
            let stages: std::collections::BTreeSet<(&str, &str)> = observations
                .iter()
                .map(|o| (o.deployment.as_str(), o.stage.as_str()))
                .collect();
            let epochs = read_epochs!(tx, stages);
            let mut agg = Aggregates::default();
            for o in &observations {
                agg.record(o, epoch_of(&epochs, o));
            }
            n = agg.observations;
            write_deltas!(tx, $db, &agg);
        }
        tx.commit().await?;
        n
    }};
}

impl Store {
    /// Sums the observations stored before the aggregate tables, once; returns how many.
    pub(super) async fn backfill_aggregates(&self) -> Result<u64, StoreError> {
        let n = match &self.backend {
            super::Backend::Sqlite(p) => backfill_sqlite(p).await?,
            super::Backend::Postgres(p) => backfill_postgres(p).await?,
        };
        if n > 0 {
            tracing::info!(
                observations = n,
                "stored observations summed into the aggregate tables"
            );
        }
        Ok(n)
    }
}

async fn backfill_sqlite(p: &sqlx::SqlitePool) -> Result<u64, StoreError> {
    Ok(backfill!(p, sqlx::Sqlite))
}

async fn backfill_postgres(p: &sqlx::PgPool) -> Result<u64, StoreError> {
    Ok(backfill!(p, sqlx::Postgres))
}
