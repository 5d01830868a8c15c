//! What several gateway replicas on one Postgres share: the config version (bumped with
//! `NOTIFY canarist_config`, watched by [`ConfigWatcher`]) and controller leadership
//! ([`LeaderLock`], a session-level `pg_try_advisory_lock` held by a dedicated connection).
//!
//! On SQLite there is one process: the watcher only re-reads the version periodically and the
//! lock is always granted.

use std::time::Duration;

use chrono::Utc;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Backend, Store, StoreError, to_u64, with_pool};

/// The `LISTEN/NOTIFY` channel; the payload is the new version in decimal.
pub const CONFIG_CHANNEL: &str = "canarist_config";
/// Advisory-lock key of the rollout controller.
pub const CONTROLLER_LOCK_KEY: i64 = 0x6361_6e61_7269_7374; // "canarist"

/// Bumps the global version (and the deployment's, when given) inside transaction `$tx`;
/// on Postgres also queues the notification, which is delivered when `$tx` commits.
/// Evaluates to the new version (`i64`).
macro_rules! bump_in_tx {
    ($tx:expr, $is_pg:expr, $deployment:expr) => {{
        let now = chrono::Utc::now();
        let version: i64 = sqlx::query_scalar(
            "UPDATE config_state SET version = version + 1 WHERE id = 1 RETURNING version",
        )
        .fetch_one(&mut *$tx)
        .await?;
        if let Some(name) = $deployment {
            sqlx::query(
                "INSERT INTO deployments (name, config_version, created_at, updated_at) \
                 VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO UPDATE \
                 SET config_version = excluded.config_version, updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(version)
            .bind(now)
            .execute(&mut *$tx)
            .await?;
        }
        if $is_pg {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind($crate::store::CONFIG_CHANNEL)
                .bind(version.to_string())
                .execute(&mut *$tx)
                .await?;
        }
        version
    }};
}
pub(crate) use bump_in_tx;

impl Store {
    /// Increments the config version (and records it on `deployment`, when given) and tells every
    /// replica (`NOTIFY canarist_config, '<version>'` on Postgres). Returns the new version.
    pub async fn bump_config_version(&self, deployment: Option<&str>) -> Result<u64, StoreError> {
        let is_pg = matches!(self.backend, Backend::Postgres(_));
        let version = with_pool!(self, p => {
            let mut tx = p.begin().await?;
            let v = bump_in_tx!(tx, is_pg, deployment);
            tx.commit().await?;
            v
        });
        Ok(to_u64(version))
    }

    /// The current global config version.
    pub async fn config_version(&self) -> Result<u64, StoreError> {
        let v: i64 = with_pool!(self, p => {
            sqlx::query_scalar("SELECT version FROM config_state WHERE id = 1")
                .fetch_one(p)
                .await?
        });
        Ok(to_u64(v))
    }

    /// A deployment's config version; `None` when it was never recorded.
    pub async fn deployment_config_version(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let v: Option<i64> = with_pool!(self, p => {
            sqlx::query_scalar("SELECT config_version FROM deployments WHERE name = $1")
                .bind(name)
                .fetch_optional(p)
                .await?
        });
        Ok(v.map(to_u64))
    }
}

/// Yields each new config version: at once on a Postgres notification, and in any case within
/// `poll` (the periodic re-read is the safety net for a notification lost during a reconnect).
pub struct ConfigWatcher {
    store: Store,
    listener: Option<PgListener>,
    poll: Duration,
    last: u64,
}

impl ConfigWatcher {
    /// Starts watching from the current version.
    pub async fn new(store: &Store, poll: Duration) -> Result<Self, StoreError> {
        let listener = match &store.backend {
            Backend::Postgres(pool) => {
                // A pool of its own: the listener holds its connection for as long as it lives,
                // which must not keep `Store::close` waiting. It reconnects through this pool.
                let own = PgPoolOptions::new()
                    .max_connections(1)
                    .connect_lazy_with((*pool.connect_options()).clone());
                let mut listener = PgListener::connect_with(&own).await?;
                listener.listen(CONFIG_CHANNEL).await?;
                Some(listener)
            }
            Backend::Sqlite(_) => None,
        };
        let last = store.config_version().await?;
        Ok(Self {
            store: store.clone(),
            listener,
            poll,
            last,
        })
    }

    /// The last version seen.
    pub fn current(&self) -> u64 {
        self.last
    }

    /// Waits for a version newer than [`Self::current`] and returns it. Database errors during
    /// the periodic re-read are logged and retried, so this only returns with a new version.
    pub async fn changed(&mut self) -> u64 {
        loop {
            let notified = match self.listener.as_mut() {
                Some(listener) => tokio::select! {
                    n = listener.recv() => match n {
                        Ok(n) => n.payload().parse::<u64>().ok(),
                        Err(error) => {
                            // The listener reconnects on the next recv; do not spin meanwhile.
                            tracing::warn!(%error, "config listener failed");
                            tokio::time::sleep(self.poll).await;
                            None
                        }
                    },
                    () = tokio::time::sleep(self.poll) => None,
                },
                None => {
                    tokio::time::sleep(self.poll).await;
                    None
                }
            };
            let version = match notified {
                Some(v) => v,
                None => match self.store.config_version().await {
                    Ok(v) => v,
                    Err(error) => {
                        tracing::warn!(%error, "re-reading the config version failed");
                        continue;
                    }
                },
            };
            if version > self.last {
                self.last = version;
                return version;
            }
        }
    }
}

/// Leadership of the rollout controller. On Postgres: a session advisory lock held by a
/// dedicated connection (not a pooled one, which would keep the lock after it is returned); the
/// lock ends when the connection does, so a dead holder's lock is free at once. On SQLite: always
/// granted (one process).
pub struct LeaderLock {
    conn: Option<PgConnection>,
    key: i64,
}

impl LeaderLock {
    /// Tries once; `None` when another session holds the lock.
    pub async fn try_acquire(store: &Store, key: i64) -> Result<Option<Self>, StoreError> {
        let pool = match &store.backend {
            Backend::Sqlite(_) => return Ok(Some(Self { conn: None, key })),
            Backend::Postgres(pool) => pool,
        };
        let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut conn)
            .await?;
        if got {
            Ok(Some(Self {
                conn: Some(conn),
                key,
            }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    /// Whether the lock is still held (its connection still answers).
    pub async fn is_held(&mut self) -> bool {
        match self.conn.as_mut() {
            None => true,
            Some(conn) => conn.ping().await.is_ok(),
        }
    }

    /// Gives the lock up explicitly (dropping it also does, when the connection closes).
    pub async fn release(mut self) -> Result<(), StoreError> {
        if let Some(mut conn) = self.conn.take() {
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(self.key)
                .execute(&mut conn)
                .await?;
            conn.close().await?;
        }
        Ok(())
    }
}

/// A background task that keeps trying to become leader and tells whether this replica is.
#[derive(Clone)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
}

impl Leadership {
    /// Starts the task: try to acquire every `retry`; while leader, check the lock every `retry`.
    pub fn spawn(
        store: Store,
        key: i64,
        retry: Duration,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        let (tx, rx) = watch::channel(false);
        tracker.spawn(async move {
            while !cancel.is_cancelled() {
                match LeaderLock::try_acquire(&store, key).await {
                    Ok(Some(mut lock)) => {
                        tracing::info!(at = %Utc::now(), "became controller leader");
                        let _ = tx.send(true);
                        loop {
                            tokio::select! {
                                () = cancel.cancelled() => break,
                                () = tokio::time::sleep(retry) => {}
                            }
                            if !lock.is_held().await {
                                break;
                            }
                        }
                        let _ = tx.send(false);
                        if cancel.is_cancelled() {
                            let _ = lock.release().await;
                        } else {
                            tracing::warn!("lost controller leadership");
                        }
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "leader lock attempt failed"),
                }
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = tokio::time::sleep(retry) => {}
                }
            }
        });
        Self { rx }
    }

    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits until this replica leads (returns at once when it does).
    pub async fn wait_until_leader(&mut self) {
        let _ = self.rx.wait_for(|leader| *leader).await;
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }
}
