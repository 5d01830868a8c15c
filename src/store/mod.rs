//! `store`: durable storage with sqlx — SQLite by default (one file, WAL), Postgres for several
//! gateway replicas.
//!
//! Owns: the connection pools, the migrations (`migrations/sqlite`, `migrations/postgres`: the
//! same tables and columns, only the types differ), and plain reads and writes of every record:
//! observations and pairs ([`StoreSink`]), judge jobs ([`Store::claim`] …), judgments and check
//! results, rollouts and their audit log, deployments and variants, config versions with
//! `LISTEN/NOTIFY` ([`ConfigWatcher`]), controller leadership ([`LeaderLock`]), API keys,
//! the gate's evaluations over time ([`Store::gate_history`]),
//! retention, and the aggregate read queries the gate and reports use ([`Store::stage_summary`]).
//!
//! Never: holds business logic (no gate decisions, no state-machine rules), loads every row to
//! summarise, or writes a body the capture policy stripped (it writes what the Observation carries).
//!
//! Fails: closed for the controller's writes (a rollout transition that cannot be persisted is an
//! error and does not take effect); open for capture — [`StoreSink`] returns
//! `SinkError::Database` when the database fails (the capture writer retries, then spools the
//! batch to disk and replays it when the database is back) and `SinkError::Rejected` when the
//! rows do (the writer splits the batch and drops only those rows), and the request path never
//! waits. The pools reconnect by themselves when the database comes back. Captured text is
//! sanitized on the way in (NUL becomes U+FFFD, in columns, labels and JSON alike).
//!
//! Crash safety (kill -9): every batch is one transaction, so the database is never left with half
//! a batch. What is lost at most is what had been neither committed nor spooled: the batch being
//! written plus the events still queued in the capture channel (`capture.queue_capacity`, 10,000
//! by default). Spooled batches are fsync'd and replayed at the next start.
//! Claimed judge jobs of a killed worker are reclaimed after their lease expires. SQLite runs in
//! WAL mode with `synchronous = NORMAL`: a power loss (not a process kill) may also lose the last
//! committed transactions, never corrupt the file.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::SqliteSynchronous;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

mod aggregates;
mod audit;
mod backfill;
mod deltas;
mod gate_history;

mod jobs;
mod judgments;
mod keys;
mod paired;
mod replicas;
mod report_reads;
mod retention;
mod rollouts;
mod rollups;
mod sanitize;
mod sink;
mod sqlite_alloc;
mod traffic;
mod units;

pub use crate::capture::LatencyHistogram;
pub use aggregates::{
    AaSummary, CheckSummary, Cohort, JointMoments, Moments, ScoreSummary, StageSummary,
    SummaryScope, UnitComparison, UnitMoments, VariantSummary,
};
pub use audit::{AuditEntry, NewAuditEntry};
pub use gate_history::GatePoint;
pub use jobs::{JobState, JudgeJob, MAX_ATTEMPTS};
pub use judgments::{NewCheckResult, NewJudgment, ORDER_COMBINED, ORDER_SINGLE, Verdict};
pub use keys::ApiKey;
pub use paired::{PairedOutcomes, PairedTail};
pub use replicas::{CONFIG_CHANNEL, CONTROLLER_LOCK_KEY, ConfigWatcher, LeaderLock, Leadership};
pub use report_reads::{FailedCheck, JudgmentRow, LowScore, PositionConsistency, RolloutStage};
pub use retention::{PruneReport, RetentionPolicy};
pub use rollouts::{NewRollout, Rollout, RolloutUpdate, Transition};
pub use sink::{BatchExtras, StoreSink};
pub use traffic::StoredTraffic;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage url `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored {what} is not valid: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("{0}")]
    Invalid(String),
}

/// How to connect. The defaults suit the gateway; tests shorten the timeouts.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Postgres' pool size.
    pub max_connections: u32,
    /// SQLite's pool size. SQLite writes one transaction at a time, and each connection holds
    /// its own page cache and prepared statements (a pool rotates the writer across all of
    /// them). At 128 client connections with shadow on (`benches/compare.sh`'s load, one run
    /// each), 8 connections with SQLite's default 2 MB page cache held 65 MB of mimalloc's heap
    /// and a 93 MB peak RSS, 2 connections of 512 KiB 45 MB and 78 MB, at the same throughput;
    /// 4 of 512 KiB leave room for the controller, judge and API reads beside the writer.
    pub sqlite_max_connections: u32,
    /// SQLite's page cache per connection, in KiB.
    pub sqlite_cache_kib: u32,
    /// How long a query waits for a free (or re-established) connection before it fails.
    pub acquire_timeout: Duration,
    /// SQLite only: how long a writer waits for the file lock before it fails.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            sqlite_max_connections: 4,
            sqlite_cache_kib: 512,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The handle every module uses: cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) backend: Backend,
}

/// Runs `$body` with `$p` bound to the concrete pool of either backend. The body is compiled once
/// per backend, so portable SQL is written once.
macro_rules! with_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite($p) => $body,
            $crate::store::Backend::Postgres($p) => $body,
        }
    };
}
pub(crate) use with_pool;

impl Store {
    /// Connects with default options and runs the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// Connects (`sqlite://path.db`, created if missing; `sqlite::memory:`; `postgres://…`) and
    /// runs the migrations.
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let store = Self::connect_no_migrate(url, options).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without running migrations.
    pub async fn connect_no_migrate(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let bad = |reason: String| StoreError::BadUrl {
            url: redact_url(url),
            reason,
        };
        if url.starts_with("sqlite:") {
            sqlite_alloc::install();
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(|e| bad(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(options.busy_timeout)
                .foreign_keys(true)
                // Negative: a size in KiB rather than in pages (SQLite's default is 2,000 KiB).
                .pragma("cache_size", format!("-{}", options.sqlite_cache_kib));
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let mut pool = SqlitePoolOptions::new()
                .max_connections(options.sqlite_max_connections.max(1))
                .acquire_timeout(options.acquire_timeout);
            if in_memory {
                // An in-memory database lives as long as one connection does: keep one forever.
                pool = pool
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None);
            }
            let pool = pool.connect_with(connect).await?;
            Ok(Self {
                backend: Backend::Sqlite(pool),
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let connect = PgConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?;
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await?;
            Ok(Self {
                backend: Backend::Postgres(pool),
            })
        } else {
            Err(bad(
                "expected `sqlite://…`, `sqlite::memory:` or `postgres://…`".into(),
            ))
        }
    }

    /// Applies pending migrations; a no-op when the schema is current.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await?,
            Backend::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
        }
        self.backfill_aggregates().await?;
        Ok(())
    }

    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Sqlite(_) => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// The Postgres pool, for code that needs Postgres-only features.
    pub fn pg_pool(&self) -> Option<&PgPool> {
        match &self.backend {
            Backend::Postgres(p) => Some(p),
            Backend::Sqlite(_) => None,
        }
    }

    /// Closes every connection (waits for queries in flight).
    pub async fn close(&self) {
        with_pool!(self, p => p.close().await)
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// Rows per multi-row statement, at most (at 56 columns, the widest, 1,792 bind parameters:
/// far below SQLite's 32,766 and Postgres' 65,535).
pub(crate) const MAX_STATEMENT_ROWS: usize = 32;

/// `rows` in the chunks the writer's multi-row statements take: `MAX_STATEMENT_ROWS` at a time,
/// then the rest in descending powers of two, so that a table is only ever written with six
/// statement texts (1, 2, 4, 8, 16 or 32 rows), each prepared once per connection and kept in
/// sqlx's statement cache. A statement's text varies with its row count, and SQLite parses and
/// plans a new text at every execution: with chunks of up to 800 rows prepared per execution,
/// parsing (`sqlite3Prepare`) was 27% of the writer's instructions, as much as the upserts
/// themselves (`benches/capture_path.rs`, flushes of 1,600, under callgrind); keeping every
/// row count in the cache instead held the gateway's peak RSS at 145–173 MB.
pub(crate) fn statement_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() >= MAX_STATEMENT_ROWS {
            MAX_STATEMENT_ROWS
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// `canarist migrate`: runs the migrations against the configured database and exits.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn statements_take_powers_of_two_of_rows_in_order() {
        let mut texts = std::collections::BTreeSet::new();
        for len in 0..200_usize {
            let rows: Vec<usize> = (0..len).collect();
            let chunks: Vec<&[usize]> = statement_chunks(&rows).collect();
            // Every row once, in order.
            assert_eq!(chunks.concat(), rows);
            for c in &chunks {
                assert!(c.len().is_power_of_two() && c.len() <= MAX_STATEMENT_ROWS);
                texts.insert(c.len());
            }
            // Full chunks, then at most one chunk per bit of the rest, largest first.
            let rest = len % MAX_STATEMENT_ROWS;
            assert_eq!(
                chunks.len(),
                len / MAX_STATEMENT_ROWS + rest.count_ones() as usize,
                "{len}"
            );
            assert!(chunks.windows(2).all(|w| w[0].len() >= w[1].len()));
        }
        assert_eq!(texts.into_iter().collect::<Vec<_>>(), [1, 2, 4, 8, 16, 32]);
    }
}
