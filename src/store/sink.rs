//! [`StoreSink`]: the capture sink that writes batches of observations and pairs to the store
//! (and, through [`Store::write_events_with`], the pairs' check results and judge jobs), and
//! reading them back. A batch is one transaction of multi-row inserts; every insert is
//! idempotent (`ON CONFLICT DO NOTHING` on the observation's, the pair's, the label's, the
//! check's and the job's key) so that a retried or replayed batch never duplicates a row. Text
//! and JSON are sanitized on the way in (`sanitize`: NUL becomes U+FFFD), the same on both
//! backends; an error the rows themselves cause becomes [`SinkError::Rejected`].
//!
//! A [`Flush`] adds its row-less observations to the aggregate tables only, in the same
//! transaction, and only when its id is new to `agg_flushes` (recorded there in that
//! transaction): a flush written twice adds them once. Its rows add, as every row does, only
//! when their insert added them.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use super::deltas::{epoch_of, read_epochs, write_deltas};
use super::judgments::{NewCheckResult, push_check_rows};
use super::sanitize;
use super::{Store, StoreError, to_i64, to_u64, with_pool};
use crate::capture::LatencyHistogram;
use crate::capture::{
    Aggregates, CaptureEvent, Endpoint, ErrorClass, Flush, FlushId, Observation, Pair, Purpose,
    Role, Sink, SinkError, Usage,
};

/// Observations summed between two yields to the runtime (about a millisecond of work).
const YIELD_EVERY: usize = 256;

/// The capture sink backed by the store. A Pair event writes the pair row (and its two sides, if
/// they are not written already) and enqueues a judge job for it.
#[derive(Debug, Clone)]
pub struct StoreSink {
    store: Store,
}

impl StoreSink {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl Sink for StoreSink {
    fn write_batch<'a>(
        &'a self,
        batch: &'a [CaptureEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.store
                .write_events(batch)
                .await
                .map_err(SinkError::from)
        })
    }

    fn aggregates(&self) -> bool {
        true
    }

    fn write_flush<'a>(&'a self, flush: &'a Flush) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.store
                .write_flush_with(flush, BatchExtras::default())
                .await
                .map_err(SinkError::from)
        })
    }
}

impl From<StoreError> for SinkError {
    /// A rejection when the database refused the rows themselves ([`sanitize::rejects_the_rows`]),
    /// so that the writer splits the batch instead of retrying it.
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::Database(e) if sanitize::rejects_the_rows(e) => {
                SinkError::Rejected(error.to_string())
            }
            _ => SinkError::Database(error.to_string()),
        }
    }
}

/// What a batch writes besides its events' own rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchExtras<'a> {
    /// Check results of the batch's pairs, written in the same transaction.
    pub checks: &'a [NewCheckResult],
    /// The pairs that get a judge job; `None`: every pair (when the writer knows no rubrics,
    /// the worker decides).
    pub judge_jobs: Option<&'a HashSet<Uuid>>,
}

/// A pair's own row (its sides are observation rows), sanitized.
struct PairRow<'a> {
    id: Uuid,
    request_id: Uuid,
    deployment: Cow<'a, str>,
    stage: Cow<'a, str>,
    config_version: u64,
    candidate: Cow<'a, str>,
    stable_id: Uuid,
    candidate_id: Uuid,
    cohort: Cow<'a, BTreeMap<String, String>>,
    /// Whether the pair gets a judge job.
    judge: bool,
}

/// The rows one batch turns into, sanitized (`sanitize`: no NUL anywhere).
struct Rows<'a> {
    observations: Vec<Cow<'a, Observation>>,
    /// Row-less observations, added to the aggregates only (when `flush` is new).
    counted: Vec<Cow<'a, Observation>>,
    flush: Option<FlushId>,
    pairs: Vec<PairRow<'a>>,
    checks: Cow<'a, [NewCheckResult]>,
    now: DateTime<Utc>,
}

impl<'a> Rows<'a> {
    fn new(batch: &'a [CaptureEvent], extras: BatchExtras<'a>) -> Self {
        let mut observations = Vec::with_capacity(batch.len());
        let mut pairs = Vec::new();
        for event in batch {
            match event {
                CaptureEvent::Observation(o) => observations.push(sanitize::observation(o)),
                CaptureEvent::Pair(p) => pairs.push(p.as_ref()),
            }
        }
        // A pair's sides are normally recorded on their own too; write those that are not in
        // this batch, so that a pair never points at an observation that was dropped.
        let mut ids: HashSet<Uuid> = observations.iter().map(|o| o.id).collect();
        for pair in &pairs {
            for side in [&pair.stable, &pair.candidate] {
                if ids.insert(side.id) {
                    observations.push(sanitize::observation(side));
                }
            }
        }
        let pairs = pairs
            .into_iter()
            .map(|p| PairRow {
                id: p.id,
                request_id: p.request_id,
                deployment: sanitize::text(&p.deployment),
                stage: sanitize::text(&p.stage),
                config_version: p.config_version,
                candidate: sanitize::text(&p.candidate.variant),
                stable_id: p.stable.id,
                candidate_id: p.candidate.id,
                cohort: sanitize::labels(&p.cohort),
                judge: extras.judge_jobs.is_none_or(|ids| ids.contains(&p.id)),
            })
            .collect();
        Self {
            observations,
            counted: Vec::new(),
            flush: None,
            pairs,
            checks: sanitize_checks(extras.checks),
            now: Utc::now(),
        }
    }

    /// The rows of `flush`, and its row-less observations.
    fn of_flush(flush: &'a Flush, extras: BatchExtras<'a>) -> Self {
        let mut rows = Self::new(&flush.rows, extras);
        rows.counted = flush.counted.iter().map(sanitize::observation).collect();
        rows.flush = flush.id;
        rows
    }

    fn observation_labels(&self) -> Vec<(Uuid, &str, &str)> {
        self.observations
            .iter()
            .flat_map(|o| o.cohort.iter().map(|(k, v)| (o.id, k.as_str(), v.as_str())))
            .collect()
    }

    fn pair_labels(&self) -> Vec<(Uuid, &str, &str)> {
        self.pairs
            .iter()
            .flat_map(|p| p.cohort.iter().map(|(k, v)| (p.id, k.as_str(), v.as_str())))
            .collect()
    }

    fn jobs(&self) -> Vec<&PairRow<'a>> {
        self.pairs.iter().filter(|p| p.judge).collect()
    }
}

/// Check rows with every NUL replaced (a check's detail may quote an answer).
fn sanitize_checks(checks: &[NewCheckResult]) -> Cow<'_, [NewCheckResult]> {
    let dirty = |c: &NewCheckResult| {
        [
            &c.rubric_id,
            &c.rubric_version,
            &c.rubric_hash,
            &c.name,
            &c.severity,
        ]
        .iter()
        .any(|s| s.contains('\0'))
            || c.detail.as_deref().is_some_and(|d| d.contains('\0'))
    };
    if !checks.iter().any(dirty) {
        return Cow::Borrowed(checks);
    }
    Cow::Owned(
        checks
            .iter()
            .map(|c| NewCheckResult {
                rubric_id: sanitize::text(&c.rubric_id).into_owned(),
                rubric_version: sanitize::text(&c.rubric_version).into_owned(),
                rubric_hash: sanitize::text(&c.rubric_hash).into_owned(),
                name: sanitize::text(&c.name).into_owned(),
                severity: sanitize::text(&c.severity).into_owned(),
                detail: c.detail.as_deref().map(|d| sanitize::text(d).into_owned()),
                ..c.clone()
            })
            .collect(),
    )
}

/// Writes `rows` in one transaction on pool `$pool` of database type `$db`.
macro_rules! write_rows {
    ($pool:expr, $db:ty, $rows:expr) => {{
        let rows: &Rows<'_> = $rows;
        let mut tx = $pool.begin().await?;
        // The observations this batch adds (a retried or replayed batch adds none twice): only
        // these add to the aggregates.
        let mut inserted: HashSet<Uuid> = HashSet::new();
        for chunk in $crate::store::statement_chunks(&rows.observations) {
            let mut qb = QueryBuilder::<$db>::new(
                "INSERT INTO observations (id, request_id, pair_id, at, deployment, variant, role, \
                 purpose, stage, config_version, endpoint, upstream_model, stream, bucket, unit_key, \
                 sticky, cohort, status, error_class, error_detail, ttft_ms, ttft_bucket, latency_ms, \
                 latency_bucket, prompt_tokens, completion_tokens, total_tokens, cost_usd, \
                 finish_reason, response_text, request_body, response_body) ",
            );
            qb.push_values(chunk, |mut b, o| {
                let usage = o.usage;
                b.push_bind(o.id)
                    .push_bind(o.request_id)
                    .push_bind(o.pair_id)
                    .push_bind(o.at)
                    .push_bind(o.deployment.as_str())
                    .push_bind(o.variant.as_str())
                    .push_bind(o.role.as_str())
                    .push_bind(Purpose::as_str(o.purpose))
                    .push_bind(o.stage.as_str())
                    .push_bind(to_i64(o.config_version))
                    .push_bind(endpoint_str(o.endpoint))
                    .push_bind(o.upstream_model.as_str())
                    .push_bind(o.stream)
                    .push_bind(o.bucket.map(i32::from))
                    .push_bind(o.unit_key.as_deref())
                    .push_bind(o.sticky)
                    .push_bind(Json(&o.cohort))
                    .push_bind(o.status.map(i32::from))
                    .push_bind(o.error.map(ErrorClass::as_str))
                    .push_bind(o.error_detail.as_deref())
                    .push_bind(o.ttft_ms)
                    .push_bind(o.ttft_ms.map(|t| LatencyHistogram::bucket_of(t) as i32))
                    .push_bind(o.latency_ms)
                    .push_bind(LatencyHistogram::bucket_of(o.latency_ms) as i32)
                    .push_bind(usage.map(|u| to_i64(u.prompt_tokens)))
                    .push_bind(usage.map(|u| to_i64(u.completion_tokens)))
                    .push_bind(usage.map(|u| to_i64(u.total_tokens)))
                    .push_bind(o.cost_usd)
                    .push_bind(o.finish_reason.as_deref())
                    .push_bind(o.response_text.as_deref())
                    .push_bind(o.request_body.as_ref().map(Json))
                    .push_bind(o.response_body.as_ref().map(Json));
            });
            qb.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
            for r in qb.build().fetch_all(&mut *tx).await? {
                inserted.insert(r.try_get::<Uuid, _>(0)?);
            }
        }
        for (table, labels) in [
            ("observation_labels (observation_id", rows.observation_labels()),
            ("pair_labels (pair_id", rows.pair_labels()),
        ] {
            for chunk in $crate::store::statement_chunks(&labels) {
                let mut qb = QueryBuilder::<$db>::new(format!("INSERT INTO {table}, key, value) "));
                qb.push_values(chunk, |mut b, (id, k, v)| {
                    b.push_bind(*id).push_bind(*k).push_bind(*v);
                });
                qb.push(" ON CONFLICT DO NOTHING");
                qb.build().execute(&mut *tx).await?;
            }
        }
        for chunk in $crate::store::statement_chunks(&rows.pairs) {
            let mut qb = QueryBuilder::<$db>::new(
                "INSERT INTO pairs (id, request_id, deployment, stage, config_version, candidate, \
                 stable_observation_id, candidate_observation_id, cohort, created_at) ",
            );
            qb.push_values(chunk, |mut b, p| {
                b.push_bind(p.id)
                    .push_bind(p.request_id)
                    .push_bind(p.deployment.as_ref())
                    .push_bind(p.stage.as_ref())
                    .push_bind(to_i64(p.config_version))
                    .push_bind(p.candidate.as_ref())
                    .push_bind(p.stable_id)
                    .push_bind(p.candidate_id)
                    .push_bind(Json(p.cohort.as_ref()))
                    .push_bind(rows.now);
            });
            qb.push(" ON CONFLICT (id) DO NOTHING");
            qb.build().execute(&mut *tx).await?;
        }
        push_check_rows!(tx, $db, &rows.checks, rows.now);
        for chunk in $crate::store::statement_chunks(&rows.jobs()) {
            let mut qb = QueryBuilder::<$db>::new(
                "INSERT INTO judge_jobs (pair_id, deployment, candidate, state, attempts, \
                 created_at, updated_at) ",
            );
            qb.push_values(chunk, |mut b, p| {
                b.push_bind(p.id)
                    .push_bind(p.deployment.as_ref())
                    .push_bind(p.candidate.as_ref())
                    .push_bind("queued")
                    .push_bind(0_i32)
                    .push_bind(rows.now)
                    .push_bind(rows.now);
            });
            qb.push(" ON CONFLICT (pair_id) DO NOTHING");
            qb.build().execute(&mut *tx).await?;
        }
        // The row-less observations add when the flush is new (its id recorded here, in the
        // transaction that adds them), or when the flush has no id.
        let add_counted = match (rows.flush, rows.counted.is_empty()) {
            (_, true) => false,
            (None, false) => true,
            (Some(id), false) => {
                let new: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO agg_flushes (writer_id, seq, observations, at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING seq",
                )
                .bind(id.writer)
                .bind(to_i64(id.seq))
                .bind(to_i64(rows.counted.len() as u64))
                .bind(rows.now)
                .fetch_optional(&mut *tx)
                .await?;
                new.is_some()
            }
        };
        if !inserted.is_empty() || add_counted {
            let new = || {
                let counted = rows.counted.iter().filter(|_| add_counted);
                rows.observations
                    .iter()
                    .filter(|o| inserted.contains(&o.id))
                    .chain(counted)
            };
            let stages: BTreeSet<(&str, &str)> = new()
                .map(|o| (o.deployment.as_str(), o.stage.as_str()))
                .collect();
            let epochs = read_epochs!(tx, stages);
            let mut agg = Aggregates::default();
            for (i, o) in new().enumerate() {
                agg.record(o, epoch_of(&epochs, o));
                if i % YIELD_EVERY == YIELD_EVERY - 1 {
                    // A flush of an aggregate interval holds thousands of observations: summed
                    // in one go, they would hold the runtime's thread (the request path's, on
                    // a gateway given one core) for tens of milliseconds.
                    tokio::task::yield_now().await;
                }
            }
            write_deltas!(tx, $db, &agg);
        }
        tx.commit().await?;
        Ok::<(), sqlx::Error>(())
    }};
}

/// Decodes an `observations` row (all columns, by name).
macro_rules! decode_observation {
    ($row:expr) => {{
        let row = $row;
        let corrupt = |detail: String| StoreError::Corrupt {
            what: "observation",
            detail,
        };
        let prompt: Option<i64> = row.try_get("prompt_tokens")?;
        let completion: Option<i64> = row.try_get("completion_tokens")?;
        let total: Option<i64> = row.try_get("total_tokens")?;
        let usage = prompt.map(|p| Usage {
            prompt_tokens: to_u64(p),
            completion_tokens: to_u64(completion.unwrap_or(0)),
            total_tokens: to_u64(total.unwrap_or(0)),
            ..Usage::default()
        });
        let role: String = row.try_get("role")?;
        let purpose: String = row.try_get("purpose")?;
        let endpoint: String = row.try_get("endpoint")?;
        let error: Option<String> = row.try_get("error_class")?;
        let bucket: Option<i32> = row.try_get("bucket")?;
        let status: Option<i32> = row.try_get("status")?;
        let cohort: Json<BTreeMap<String, String>> = row.try_get("cohort")?;
        // Read as raw JSON: the bytes stored (SQLite) or jsonb's text (Postgres), unparsed.
        type Raw = Json<Box<serde_json::value::RawValue>>;
        let request_body: Option<Raw> = row.try_get("request_body")?;
        let response_body: Option<Raw> = row.try_get("response_body")?;
        Observation {
            id: row.try_get("id")?,
            request_id: row.try_get("request_id")?,
            pair_id: row.try_get("pair_id")?,
            at: row.try_get("at")?,
            deployment: row.try_get("deployment")?,
            variant: row.try_get("variant")?,
            role: Role::parse(&role).ok_or_else(|| corrupt(format!("role `{role}`")))?,
            purpose: Purpose::parse(&purpose)
                .ok_or_else(|| corrupt(format!("purpose `{purpose}`")))?,
            stage: row.try_get("stage")?,
            config_version: to_u64(row.try_get("config_version")?),
            endpoint: parse_endpoint(&endpoint)
                .ok_or_else(|| corrupt(format!("endpoint `{endpoint}`")))?,
            upstream_model: row.try_get("upstream_model")?,
            stream: row.try_get("stream")?,
            bucket: bucket.and_then(|b| u16::try_from(b).ok()),
            unit_key: row.try_get("unit_key")?,
            sticky: row.try_get("sticky")?,
            cohort: cohort.0,
            status: status.and_then(|s| u16::try_from(s).ok()),
            error: match error {
                Some(e) => Some(
                    parse_error_class(&e).ok_or_else(|| corrupt(format!("error_class `{e}`")))?,
                ),
                None => None,
            },
            error_detail: row.try_get("error_detail")?,
            ttft_ms: row.try_get("ttft_ms")?,
            latency_ms: row.try_get("latency_ms")?,
            usage,
            cost_usd: row.try_get("cost_usd")?,
            finish_reason: row.try_get("finish_reason")?,
            response_text: row.try_get("response_text")?,
            request_body: request_body.map(|j| $crate::capture::JsonBody::from(j.0)),
            response_body: response_body.map(|j| $crate::capture::JsonBody::from(j.0)),
        }
    }};
}
pub(super) use decode_observation;

/// request id, deployment, stage, config version, stable and candidate ids, cohort.
type PairHead = (
    Uuid,
    String,
    String,
    i64,
    Uuid,
    Uuid,
    Json<BTreeMap<String, String>>,
);

impl Store {
    /// Writes a batch of capture events in one transaction, with a judge job for every pair.
    pub async fn write_events(&self, batch: &[CaptureEvent]) -> Result<(), StoreError> {
        self.write_events_with(batch, BatchExtras::default()).await
    }

    /// Writes a batch of capture events in one transaction, with the check results of its pairs
    /// and judge jobs for the pairs `extras` names.
    pub async fn write_events_with(
        &self,
        batch: &[CaptureEvent],
        extras: BatchExtras<'_>,
    ) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.write_rows(&Rows::new(batch, extras)).await
    }

    /// Writes a flush in one transaction: its events' rows as [`Store::write_events_with`]
    /// does, and its row-less observations into the aggregate tables once per flush id.
    pub async fn write_flush_with(
        &self,
        flush: &Flush,
        extras: BatchExtras<'_>,
    ) -> Result<(), StoreError> {
        if flush.is_empty() {
            return Ok(());
        }
        self.write_rows(&Rows::of_flush(flush, extras)).await
    }

    async fn write_rows(&self, rows: &Rows<'_>) -> Result<(), StoreError> {
        match &self.backend {
            super::Backend::Sqlite(p) => write_rows!(p, Sqlite, rows)?,
            super::Backend::Postgres(p) => write_rows!(p, Postgres, rows)?,
        }
        Ok(())
    }

    /// One observation by id.
    pub async fn observation(&self, id: Uuid) -> Result<Option<Observation>, StoreError> {
        with_pool!(self, p => {
            let row = sqlx::query("SELECT * FROM observations WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await?;
            match row {
                Some(row) => Ok(Some(decode_observation!(&row))),
                None => Ok(None),
            }
        })
    }

    /// A pair with both of its observations; `None` when the pair or a side is gone (retention).
    pub async fn pair(&self, id: Uuid) -> Result<Option<Pair>, StoreError> {
        let head: Option<PairHead> = with_pool!(self, p => {
            sqlx::query_as(
                "SELECT request_id, deployment, stage, config_version, stable_observation_id, \
                 candidate_observation_id, cohort FROM pairs WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(p)
            .await?
        });
        let Some((request_id, deployment, stage, version, stable_id, candidate_id, cohort)) = head
        else {
            return Ok(None);
        };
        let (Some(stable), Some(candidate)) = (
            self.observation(stable_id).await?,
            self.observation(candidate_id).await?,
        ) else {
            return Ok(None);
        };
        Ok(Some(Pair {
            id,
            request_id,
            deployment,
            stage,
            config_version: to_u64(version),
            cohort: cohort.0,
            stable,
            candidate,
        }))
    }

    /// Number of stored observations (all, or of one deployment).
    pub async fn count_observations(&self, deployment: Option<&str>) -> Result<u64, StoreError> {
        let n: i64 = with_pool!(self, p => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM observations WHERE ($1 = '' OR deployment = $1)",
            )
            .bind(deployment.unwrap_or(""))
            .fetch_one(p)
            .await?
        });
        Ok(to_u64(n))
    }
}

impl Store {
    /// Observations counted in the aggregate tables (all, or of one deployment): every stored
    /// observation, with a row of its own or without.
    pub async fn count_aggregated(&self, deployment: Option<&str>) -> Result<u64, StoreError> {
        let n: i64 = with_pool!(self, p => {
            sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(requests), 0) AS BIGINT) FROM agg_variants \
                 WHERE cohort_key = '' AND ($1 = '' OR deployment = $1)",
            )
            .bind(deployment.unwrap_or(""))
            .fetch_one(p)
            .await?
        });
        Ok(to_u64(n))
    }
}

fn endpoint_str(e: Endpoint) -> &'static str {
    match e {
        Endpoint::ChatCompletions => "chat_completions",
        Endpoint::Completions => "completions",
        Endpoint::Embeddings => "embeddings",
        Endpoint::Responses => "responses",
        Endpoint::Messages => "messages",
    }
}

pub(super) fn parse_endpoint(s: &str) -> Option<Endpoint> {
    Endpoint::ALL.into_iter().find(|e| endpoint_str(*e) == s)
}

pub(crate) fn parse_error_class(s: &str) -> Option<ErrorClass> {
    [
        ErrorClass::Unreachable,
        ErrorClass::Timeout,
        ErrorClass::Upstream4xx,
        ErrorClass::Upstream5xx,
        ErrorClass::Malformed,
        ErrorClass::Truncated,
        ErrorClass::InvalidResponse,
        ErrorClass::ClientDisconnected,
    ]
    .into_iter()
    .find(|e| e.as_str() == s)
}
