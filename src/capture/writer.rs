//! The bounded channel between the request path and a [`Sink`], and the task that drains it
//! in batches bounded by size and by time.
//!
//! What becomes of a batch:
//! - written by the sink; or
//! - when the sink rejects its data (a deterministic error, [`SinkError::is_rejection`]: the same
//!   rows fail the same way however often they are retried), split in halves until every refused
//!   event is alone: those are dropped and counted (`invalid_row`, logged with their request id),
//!   the rest is written; or
//! - when the sink is unavailable (any other error) after `max_attempts`, spooled to disk
//!   ([`SpoolConfig`]) and replayed, oldest first, once the sink answers again. While the spool
//!   holds anything, new batches go behind it, so that events reach the sink in the order they
//!   were recorded. Only when there is no spool, or it is full, are such events dropped and
//!   counted (`write_failed`, `spool_full`).
//!
//! A batch is a [`Flush`]. For a sink that keeps aggregates ([`Sink::aggregates`], the store),
//! the writer sorts each observation as it takes it off the channel: a row ([`RowPolicy`]: a
//! pair's side, an error within the flush's budget, the row sample) or a row-less observation
//! that the store only adds to its aggregate tables, texts and bodies dropped. Row-less
//! observations do not count towards `batch_size` (rows do), and they wait for their own,
//! longer interval (`aggregate_interval`): a flush written sooner for its rows leaves them for a
//! later one. Up to `max_counted` of them go in one flush. The store's cost of a row-less
//! observation is mostly the per-unit rows it adds to (a unit seen twice in one flush is one row
//! upserted, not two), and real traffic is sticky and heavy-tailed: the longer a flush collects,
//! the fewer unit rows per observation. Each flush carries the writer's id and a sequence number ([`FlushId`]), kept
//! through retries, splits' halves (new ids: a rejected flush was not committed) and the spool,
//! so that the store adds a flush once however often it is written.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::flush::lean;
use super::spool::{Spool, SpoolConfig, SpoolError};
use super::{CaptureEvent, Flush, FlushId, RowPolicy, Sink, SinkError};
use crate::telemetry::CaptureCounts;

/// Events taken off the channel between two yields to the runtime.
const DRAIN_YIELD_EVERY: usize = 512;

/// The longest wait between two write attempts or two tries to replay the spool.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How the writer batches, retries and spools.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Events the channel holds before new ones are dropped.
    pub queue_capacity: usize,
    /// A batch is written when it reaches this many events…
    pub batch_size: usize,
    /// …or when its oldest event has waited this long.
    pub flush_interval: Duration,
    /// Attempts per batch before it goes to the spool (without a spool: is dropped and counted).
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, capped at 5 s. Also the first delay between two
    /// tries to replay the spool (doubling the same way while the sink stays unavailable).
    pub retry_backoff: Duration,
    /// Where batches wait while the sink is unavailable; `None`: they are dropped and counted.
    pub spool: Option<SpoolConfig>,
    /// Which observations keep a row, for a sink that aggregates (any other gets every event).
    pub rows: RowPolicy,
    /// Row-less observations in one flush, at most (a flush is written when it holds this many).
    pub max_counted: usize,
    /// How long row-less observations collect before a flush carries them (about: the writer
    /// looks every `flush_interval`). Flushes written sooner for their rows leave them waiting.
    pub aggregate_interval: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            batch_size: 500,
            flush_interval: Duration::from_millis(200),
            max_attempts: 3,
            retry_backoff: Duration::from_millis(100),
            spool: None,
            rows: RowPolicy::default(),
            max_counted: 20_000,
            aggregate_interval: Duration::from_secs(1),
        }
    }
}

/// Counters shared between the request path, the writer and `/metrics`.
#[derive(Debug, Default)]
pub struct CaptureStats {
    /// Events accepted into the channel.
    pub enqueued: AtomicU64,
    /// Events dropped because the channel was full.
    pub dropped_full: AtomicU64,
    /// Events dropped because the sink was unavailable and no spool could take them (none is
    /// configured, or writing to it failed).
    pub dropped_write_failed: AtomicU64,
    /// Events the sink rejected on their own (or spooled lines that could not be read back).
    pub dropped_invalid_row: AtomicU64,
    /// Events dropped because the sink was unavailable and the spool was full.
    pub dropped_spool_full: AtomicU64,
    /// Events written by the sink (rows and row-less observations).
    pub written: AtomicU64,
    /// Of those, observations written without a row (added to the sink's aggregates only).
    pub aggregated: AtomicU64,
    /// Failed write attempts (each retry counts).
    pub write_errors: AtomicU64,
    /// Events written to the spool.
    pub spooled: AtomicU64,
    /// Spooled events taken back out of the spool (stored, or dropped as invalid rows).
    pub replayed: AtomicU64,
    /// Bytes waiting in the spool (a gauge).
    pub spool_bytes: AtomicU64,
}

impl CaptureStats {
    pub fn dropped(&self) -> u64 {
        self.dropped_full.load(Ordering::Relaxed)
            + self.dropped_write_failed.load(Ordering::Relaxed)
            + self.dropped_invalid_row.load(Ordering::Relaxed)
            + self.dropped_spool_full.load(Ordering::Relaxed)
    }
}

/// The request path's handle: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Capture {
    tx: mpsc::Sender<CaptureEvent>,
    /// The row policy when the sink aggregates: observations that surely end row-less are made
    /// lean before they are queued.
    rows: Option<RowPolicy>,
    stats: Arc<CaptureStats>,
    capacity: usize,
}

impl Capture {
    /// Starts the writer task on `tracker`; it first takes over what an earlier run left in the
    /// spool, drains what is queued and stops when `cancel` fires and the channel is empty (what
    /// the spool still holds then is replayed at the next start).
    pub fn start(
        sink: Arc<dyn Sink>,
        config: WriterConfig,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let stats = Arc::new(CaptureStats::default());
        let capacity = config.queue_capacity.max(1);
        let writer = Writer::new(sink, config, stats.clone());
        let rows = writer.rows;
        tracker.spawn(writer.run(rx, cancel));
        Self {
            tx,
            rows,
            stats,
            capacity,
        }
    }

    /// Queues an event; drops and counts it when the queue is full or closed.
    pub fn record(&self, event: CaptureEvent) {
        let event = match (event, &self.rows) {
            (CaptureEvent::Observation(o), Some(rows)) if rows.surely_rowless(&o) => {
                CaptureEvent::Observation(Box::new(super::flush::lean(*o)))
            }
            (event, _) => event,
        };
        match self.tx.try_send(event) {
            Ok(()) => {
                self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.dropped_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn stats(&self) -> &Arc<CaptureStats> {
        &self.stats
    }

    /// Events waiting in the channel.
    pub fn queue_depth(&self) -> usize {
        self.capacity - self.tx.capacity()
    }

    /// The counters and the queue depth now, as the metrics read them at a scrape.
    pub fn counts(&self) -> CaptureCounts {
        let s = &self.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        // Each accepted event ends written, spooled or dropped; a replayed one (from this run's
        // spool or an earlier run's) is counted again as written or dropped, and as replayed.
        let settled = (load(&s.written)
            + load(&s.spooled)
            + load(&s.dropped_write_failed)
            + load(&s.dropped_invalid_row)
            + load(&s.dropped_spool_full))
        .saturating_sub(load(&s.replayed));
        CaptureCounts {
            unflushed: load(&s.enqueued).saturating_sub(settled),
            queue_depth: self.queue_depth(),
            spool_bytes: load(&s.spool_bytes),
            enqueued: load(&s.enqueued),
            written: load(&s.written),
            aggregated: load(&s.aggregated),
            write_errors: load(&s.write_errors),
            spooled: load(&s.spooled),
            replayed: load(&s.replayed),
            dropped_queue_full: load(&s.dropped_full),
            dropped_write_failed: load(&s.dropped_write_failed),
            dropped_invalid_row: load(&s.dropped_invalid_row),
            dropped_spool_full: load(&s.dropped_spool_full),
        }
    }
}

/// How one write of a part of a batch ended.
enum Outcome {
    Written,
    /// The sink refused the data: the same rows would fail again.
    Rejected(SinkError),
    /// The sink could not be reached (or failed otherwise) on every attempt.
    Unavailable,
}

/// The flush being filled, how many error rows it kept so far, and since when its row-less
/// observations have been collecting.
#[derive(Default)]
struct Filling {
    flush: Flush,
    error_rows: usize,
    counted_since: Option<Instant>,
}

impl Filling {
    /// All of it: rows and row-less observations.
    fn take(&mut self) -> Flush {
        self.error_rows = 0;
        self.counted_since = None;
        std::mem::take(&mut self.flush)
    }

    /// The rows only; the row-less observations keep collecting.
    fn take_rows(&mut self) -> Flush {
        self.error_rows = 0;
        Flush::of_rows(std::mem::take(&mut self.flush.rows))
    }

    /// Whether the row-less observations have collected for `interval`.
    fn counted_due(&self, interval: Duration) -> bool {
        self.counted_since
            .is_some_and(|since| since.elapsed() >= interval)
    }
}

/// The writer task's state.
struct Writer {
    sink: Arc<dyn Sink>,
    /// The row policy, when the sink aggregates.
    rows: Option<RowPolicy>,
    /// This writer's id in every [`FlushId`], and the next sequence number.
    id: uuid::Uuid,
    next_seq: u64,
    config: WriterConfig,
    stats: Arc<CaptureStats>,
    spool: Option<Spool>,
    /// When to try the spool's oldest segment next (while it holds any).
    replay_at: Instant,
    replay_backoff: Duration,
}

impl Writer {
    fn new(sink: Arc<dyn Sink>, config: WriterConfig, stats: Arc<CaptureStats>) -> Self {
        let spool = config.spool.clone().map(Spool::new);
        Self {
            rows: sink.aggregates().then_some(config.rows),
            id: uuid::Uuid::new_v4(),
            next_seq: 1,
            sink,
            replay_backoff: config.retry_backoff,
            config,
            stats,
            spool,
            replay_at: Instant::now(),
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<CaptureEvent>, cancel: CancellationToken) {
        self.recover().await;
        let mut batch = Filling::default();
        loop {
            if self.backlog() && !cancel.is_cancelled() && Instant::now() >= self.replay_at {
                // The sink may be back: replay the oldest segment. New events wait in memory
                // meanwhile, up to a batch; a full batch goes behind the backlog.
                self.replay_one().await;
                self.drain(&mut rx, &mut batch).await;
                if self.full(&batch) {
                    self.handle(batch.take()).await;
                }
                continue;
            }
            if batch.flush.is_empty() {
                // Wait for the first event of a batch (or the next replay, or shutdown with an
                // empty channel).
                let replay_at = self.replay_at;
                let replay_due = self.backlog() && !cancel.is_cancelled();
                let first = tokio::select! {
                    biased;
                    event = rx.recv() => event,
                    () = tokio::time::sleep_until(replay_at), if replay_due => continue,
                    () = cancel.cancelled() => {
                        rx.close();
                        rx.recv().await
                    }
                };
                let Some(first) = first else { break };
                self.admit(first, &mut batch);
            }
            // Fill the batch from what is already queued; if it is not full, wait out the flush
            // interval and take what arrived meanwhile: one wake-up per flush interval at most,
            // instead of one per event. Row-less observations alone wait on, interval after
            // interval, until they are due.
            self.drain(&mut rx, &mut batch).await;
            while !self.full(&batch) && !cancel.is_cancelled() {
                tokio::select! {
                    () = tokio::time::sleep(self.config.flush_interval) => {}
                    () = cancel.cancelled() => {}
                }
                self.drain(&mut rx, &mut batch).await;
                if !batch.flush.rows.is_empty() || self.counted_due(&batch) {
                    break;
                }
            }
            // A flush written for its rows (the interval, or `batch_size` of them) leaves the
            // row-less observations collecting unless they are due or fill a flush themselves.
            let counted_full = batch.flush.counted.len() >= self.config.max_counted.max(1);
            let flush = if cancel.is_cancelled() || counted_full || self.counted_due(&batch) {
                batch.take()
            } else {
                batch.take_rows()
            };
            self.handle(flush).await;
        }
        if !self.backlog() {
            return;
        }
        if let Some(spool) = &self.spool {
            tracing::warn!(
                dir = %spool.dir().display(),
                bytes = spool.bytes(),
                "capture spool not empty at shutdown; it is replayed at the next start"
            );
        }
    }

    /// Puts `event` in the flush being filled: as a row, or (for a sink that aggregates, when
    /// the row policy does not keep it) as a row-less observation.
    fn admit(&self, event: CaptureEvent, batch: &mut Filling) {
        match (event, &self.rows) {
            (CaptureEvent::Observation(o), Some(policy))
                if !policy.keeps_row(&o, &mut batch.error_rows) =>
            {
                batch.counted_since.get_or_insert_with(Instant::now);
                batch.flush.counted.push(lean(*o));
            }
            (event, _) => batch.flush.rows.push(event),
        }
    }

    /// Whether the flush being filled is full: `batch_size` rows or `max_counted` row-less
    /// observations.
    fn full(&self, batch: &Filling) -> bool {
        batch.flush.rows.len() >= self.config.batch_size.max(1)
            || batch.flush.counted.len() >= self.config.max_counted.max(1)
    }

    /// Whether the flush being filled holds row-less observations that have waited out
    /// `aggregate_interval`.
    fn counted_due(&self, batch: &Filling) -> bool {
        batch.counted_due(self.config.aggregate_interval)
    }

    /// Moves queued events into `batch` without waiting for more, until it is full; yields to
    /// the runtime every [`DRAIN_YIELD_EVERY`] events, so that draining a queue of thousands
    /// does not hold the thread the request path runs on.
    async fn drain(&self, rx: &mut mpsc::Receiver<CaptureEvent>, batch: &mut Filling) {
        let mut taken = 0_usize;
        while !self.full(batch) {
            match rx.try_recv() {
                Ok(event) => self.admit(event, batch),
                Err(_) => break,
            }
            taken += 1;
            if taken.is_multiple_of(DRAIN_YIELD_EVERY) {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Gives `flush` its id if it has none yet.
    fn stamp(&mut self, flush: &mut Flush) {
        if flush.id.is_none() {
            flush.id = Some(FlushId {
                writer: self.id,
                seq: self.next_seq,
            });
            self.next_seq += 1;
        }
    }

    fn backlog(&self) -> bool {
        self.spool.as_ref().is_some_and(|s| !s.is_empty())
    }

    /// Takes over the spool of an earlier run.
    async fn recover(&mut self) {
        let Some(spool) = self.spool.as_mut() else {
            return;
        };
        match spool.recover().await {
            Ok(()) if !spool.is_empty() => {
                tracing::info!(
                    dir = %spool.dir().display(),
                    bytes = spool.bytes(),
                    "replaying the capture spool of an earlier run"
                );
            }
            Ok(()) => {}
            Err(error) => {
                tracing::error!(%error, "capture spool unavailable: events the sink cannot take will be dropped");
                self.spool = None;
            }
        }
        self.update_gauge();
    }

    /// A new batch: written, or spooled behind the backlog.
    async fn handle(&mut self, mut batch: Flush) {
        if batch.is_empty() {
            return;
        }
        self.stamp(&mut batch);
        if self.backlog() {
            self.spool_flushes(vec![batch]).await;
            return;
        }
        if let Err(rest) = self.deliver(vec![batch], self.config.max_attempts).await {
            self.spool_flushes(rest).await;
        }
    }

    /// Writes `flushes` in order, splitting what the sink rejects down to single events (dropped
    /// and counted); returns, in order, the flushes not written because the sink is unavailable
    /// (each keeps its id: it may have been committed without the writer hearing of it).
    async fn deliver(&mut self, flushes: Vec<Flush>, attempts: u32) -> Result<(), Vec<Flush>> {
        let mut parts = VecDeque::from(flushes);
        while let Some(mut part) = parts.pop_front() {
            self.stamp(&mut part);
            match self.write(&part, attempts).await {
                Outcome::Written => {
                    self.stats
                        .written
                        .fetch_add(part.len() as u64, Ordering::Relaxed);
                    self.stats
                        .aggregated
                        .fetch_add(part.counted.len() as u64, Ordering::Relaxed);
                }
                Outcome::Rejected(error) if part.len() > 1 => {
                    tracing::debug!(%error, events = part.len(), "capture batch rejected; splitting it");
                    let back = part.split_half();
                    parts.push_front(back);
                    parts.push_front(part);
                }
                Outcome::Rejected(error) => {
                    self.stats
                        .dropped_invalid_row
                        .fetch_add(part.len() as u64, Ordering::Relaxed);
                    for event in &part.rows {
                        tracing::error!(
                            request_id = %event.request_id(),
                            event = event.kind(),
                            id = %event.id(),
                            %error,
                            "capture event rejected by the sink; dropped"
                        );
                    }
                    for o in &part.counted {
                        tracing::error!(
                            request_id = %o.request_id,
                            event = "counted",
                            id = %o.id,
                            %error,
                            "capture event rejected by the sink; dropped"
                        );
                    }
                }
                Outcome::Unavailable => {
                    let mut rest = vec![part];
                    rest.extend(parts);
                    return Err(rest);
                }
            }
        }
        Ok(())
    }

    async fn write(&self, part: &Flush, attempts: u32) -> Outcome {
        let attempts = attempts.max(1);
        let mut backoff = self.config.retry_backoff;
        for attempt in 1..=attempts {
            match self.sink.write_flush(part).await {
                Ok(()) => return Outcome::Written,
                Err(error) if error.is_rejection() => {
                    self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Rejected(error);
                }
                Err(error) => {
                    self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, attempt, batch = part.len(), "capture write failed");
                    if attempt < attempts {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
        Outcome::Unavailable
    }

    /// Puts events the sink could not take into the spool; what it cannot hold is dropped and
    /// counted.
    async fn spool_flushes(&mut self, flushes: Vec<Flush>) {
        let n = flushes.iter().map(|f| f.len() as u64).sum::<u64>();
        let Some(spool) = self.spool.as_mut() else {
            self.stats
                .dropped_write_failed
                .fetch_add(n, Ordering::Relaxed);
            tracing::error!(
                events = n,
                "capture sink unavailable and no spool: events dropped"
            );
            return;
        };
        let was_empty = spool.is_empty();
        match spool.append(&flushes).await {
            Ok(taken) => {
                let taken = taken as u64;
                self.stats.spooled.fetch_add(taken, Ordering::Relaxed);
                if taken < n {
                    self.stats
                        .dropped_spool_full
                        .fetch_add(n - taken, Ordering::Relaxed);
                    tracing::error!(
                        events = n - taken,
                        bytes = spool.bytes(),
                        "capture spool full: events dropped"
                    );
                }
                if was_empty && taken > 0 {
                    tracing::warn!(
                        dir = %spool.dir().display(),
                        "capture sink unavailable: spooling to disk until it is back"
                    );
                    self.replay_backoff = self.config.retry_backoff;
                    self.defer_replay();
                }
            }
            Err(error) => {
                self.stats
                    .dropped_write_failed
                    .fetch_add(n, Ordering::Relaxed);
                tracing::error!(%error, events = n, "capture spool write failed: events dropped");
                if matches!(error, SpoolError::Locked { .. }) {
                    self.spool = None;
                }
            }
        }
        self.update_gauge();
    }

    /// Tries to hand the spool's oldest segment to the sink (one attempt).
    async fn replay_one(&mut self) {
        let Some(spool) = self.spool.as_mut() else {
            return;
        };
        let segment = match spool.front().await {
            Ok(Some(segment)) => segment,
            Ok(None) => return,
            Err(error) => {
                // Not readable: skip it rather than stop the spool for good.
                tracing::error!(%error, "spooled capture batch unreadable; skipped");
                if let Err(error) = spool.pop_front().await {
                    tracing::error!(%error, "cannot remove a spooled capture batch");
                }
                self.update_gauge();
                return;
            }
        };
        let unreadable = segment.unreadable;
        if unreadable > 0 {
            let n = unreadable as u64;
            self.stats
                .dropped_invalid_row
                .fetch_add(n, Ordering::Relaxed);
            self.stats.replayed.fetch_add(n, Ordering::Relaxed);
            tracing::error!(lines = n, "spooled capture lines unreadable; dropped");
        }
        let n = segment.flushes.iter().map(|f| f.len() as u64).sum::<u64>();
        let result = self.deliver(segment.flushes, 1).await;
        let Some(spool) = self.spool.as_mut() else {
            return;
        };
        match result {
            Ok(()) => {
                self.stats.replayed.fetch_add(n, Ordering::Relaxed);
                if let Err(error) = spool.pop_front().await {
                    // Left on disk, it is replayed again at the next start: harmless, the
                    // sink's writes are idempotent.
                    tracing::error!(%error, "cannot remove a replayed capture batch");
                }
                if spool.is_empty() {
                    tracing::info!("capture spool replayed; writing directly again");
                }
                self.replay_backoff = self.config.retry_backoff;
                self.replay_at = Instant::now();
            }
            Err(rest) => {
                let left = rest.iter().map(|f| f.len() as u64).sum::<u64>();
                self.stats.replayed.fetch_add(n - left, Ordering::Relaxed);
                let changed = left < n || unreadable > 0;
                if changed && let Err(error) = spool.replace_front(&rest).await {
                    tracing::error!(%error, "cannot rewrite a spooled capture batch; it is replayed whole");
                }
                self.defer_replay();
            }
        }
        self.update_gauge();
    }

    fn defer_replay(&mut self) {
        self.replay_at = Instant::now() + self.replay_backoff;
        self.replay_backoff = (self.replay_backoff * 2).min(MAX_BACKOFF);
    }

    fn update_gauge(&self) {
        let bytes = self.spool.as_ref().map_or(0, Spool::bytes);
        self.stats.spool_bytes.store(bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use futures::future::BoxFuture;

    use super::*;
    use crate::capture::{MemorySink, SinkError};

    /// A sink that never finishes a write until told to, then fails `failures` times.
    struct Gate {
        open: tokio::sync::Semaphore,
        failures: AtomicU64,
        inner: MemorySink,
    }

    impl Sink for Gate {
        fn write_batch<'a>(
            &'a self,
            batch: &'a [CaptureEvent],
        ) -> BoxFuture<'a, Result<(), SinkError>> {
            Box::pin(async move {
                let _permit = self.open.acquire().await;
                if self.failures.load(Ordering::SeqCst) > 0 {
                    self.failures.fetch_sub(1, Ordering::SeqCst);
                    return Err(SinkError::Database("down".into()));
                }
                self.inner.write_batch(batch).await
            })
        }
    }

    pub(crate) fn event(i: u32) -> CaptureEvent {
        let o: crate::capture::Observation = serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::from_u128(u128::from(i)), "request_id": uuid::Uuid::nil(), "pair_id": null,
            "at": "2026-01-01T00:00:00Z", "deployment": "d", "variant": "stable", "role": "stable",
            "purpose": "served", "stage": "s", "config_version": 1, "endpoint": "chat_completions",
            "upstream_model": "m", "stream": false, "bucket": 1, "unit_key": null, "sticky": false,
            "cohort": {}, "status": 200, "error": null, "error_detail": null, "ttft_ms": 1.0,
            "latency_ms": 2.0, "usage": null, "cost_usd": null, "finish_reason": "stop",
            "response_text": null, "request_body": null, "response_body": null
        }))
        .unwrap();
        CaptureEvent::Observation(Box::new(o))
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_blocking() {
        let gate = Arc::new(Gate {
            open: tokio::sync::Semaphore::new(0),
            failures: AtomicU64::new(0),
            inner: MemorySink::new(),
        });
        let tracker = TaskTracker::new();
        let config = WriterConfig {
            queue_capacity: 10,
            batch_size: 5,
            flush_interval: Duration::from_millis(1),
            ..WriterConfig::default()
        };
        let capture = Capture::start(gate.clone(), config, &tracker, CancellationToken::new());
        // The writer takes one batch (≤5) and blocks on the sink; the channel holds 10 more.
        for i in 0..100 {
            capture.record(event(i));
        }
        let stats = capture.stats();
        assert_eq!(
            stats.enqueued.load(Ordering::Relaxed) + stats.dropped_full.load(Ordering::Relaxed),
            100
        );
        assert!(
            stats.dropped_full.load(Ordering::Relaxed) >= 85,
            "{stats:?}"
        );
        gate.open.add_permits(1_000);
        for _ in 0..200 {
            if stats.written.load(Ordering::Relaxed) == stats.enqueued.load(Ordering::Relaxed) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            stats.written.load(Ordering::Relaxed),
            stats.enqueued.load(Ordering::Relaxed)
        );
        assert_eq!(
            gate.inner.events().len() as u64,
            stats.written.load(Ordering::Relaxed)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failed_writes_are_retried_then_dropped_and_counted() {
        let gate = Arc::new(Gate {
            open: tokio::sync::Semaphore::new(1_000),
            failures: AtomicU64::new(3),
            inner: MemorySink::new(),
        });
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let config = WriterConfig {
            batch_size: 2,
            max_attempts: 2,
            ..WriterConfig::default()
        };
        let capture = Capture::start(gate.clone(), config, &tracker, cancel.clone());
        for i in 0..2 {
            capture.record(event(i)); // batch 1: fails twice → dropped
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        for i in 2..4 {
            capture.record(event(i)); // batch 2: fails once, then written
        }
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
        let stats = capture.stats();
        assert_eq!(stats.dropped_write_failed.load(Ordering::Relaxed), 2);
        assert_eq!(stats.written.load(Ordering::Relaxed), 2);
        assert_eq!(stats.write_errors.load(Ordering::Relaxed), 3);
        assert_eq!(stats.dropped(), 2);
    }

    /// A sink that is down while `down` is set, rejects any batch holding event `poison`, and
    /// records what it writes (in order) and how many writes it was asked for.
    struct Flaky {
        down: std::sync::atomic::AtomicBool,
        poison: Vec<uuid::Uuid>,
        calls: AtomicU64,
        inner: MemorySink,
    }

    impl Flaky {
        fn new(down: bool, poison: &[u32]) -> Arc<Self> {
            Arc::new(Self {
                down: down.into(),
                poison: poison
                    .iter()
                    .map(|&i| uuid::Uuid::from_u128(u128::from(i)))
                    .collect(),
                calls: AtomicU64::new(0),
                inner: MemorySink::new(),
            })
        }

        fn ids(&self) -> Vec<u128> {
            self.inner
                .events()
                .iter()
                .map(|e| e.id().as_u128())
                .collect()
        }
    }

    impl Sink for Flaky {
        fn write_batch<'a>(
            &'a self,
            batch: &'a [CaptureEvent],
        ) -> BoxFuture<'a, Result<(), SinkError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                if self.down.load(Ordering::SeqCst) {
                    return Err(SinkError::Database("connection refused".into()));
                }
                if batch.iter().any(|e| self.poison.contains(&e.id())) {
                    return Err(SinkError::Rejected("violates a constraint".into()));
                }
                self.inner.write_batch(batch).await
            })
        }
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..1_000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn quick(spool: Option<SpoolConfig>) -> WriterConfig {
        WriterConfig {
            batch_size: 4,
            flush_interval: Duration::from_millis(1),
            max_attempts: 2,
            retry_backoff: Duration::from_millis(1),
            spool,
            ..WriterConfig::default()
        }
    }

    fn spool_in(dir: &std::path::Path, max_bytes: u64) -> Option<SpoolConfig> {
        Some(SpoolConfig {
            dir: dir.join("spool"),
            max_bytes,
        })
    }

    #[tokio::test]
    async fn a_rejected_event_is_split_out_and_dropped_alone() {
        let sink = Flaky::new(false, &[13, 30]);
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let config = WriterConfig {
            batch_size: 32,
            flush_interval: Duration::from_millis(50),
            ..quick(None)
        };
        let capture = Capture::start(sink.clone(), config, &tracker, cancel.clone());
        for i in 0..32 {
            capture.record(event(i));
        }
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
        let stats = capture.stats();
        assert_eq!(stats.dropped_invalid_row.load(Ordering::Relaxed), 2);
        assert_eq!(stats.written.load(Ordering::Relaxed), 30);
        let expected: Vec<u128> = (0..32).filter(|i| ![13, 30].contains(i)).collect();
        assert_eq!(sink.ids(), expected, "the innocent events, in order");
        // Bisection, not one write per event: two bad events in 32 cost about 2·log2(32).
        assert!(sink.calls.load(Ordering::SeqCst) <= 20, "{:?}", sink.calls);
    }

    #[tokio::test]
    async fn an_unavailable_sink_is_spooled_and_replayed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Flaky::new(true, &[]);
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let capture = Capture::start(
            sink.clone(),
            quick(spool_in(dir.path(), 1 << 20)),
            &tracker,
            cancel.clone(),
        );
        let stats = capture.stats().clone();
        for i in 0..20 {
            capture.record(event(i));
        }
        until("everything spooled", || {
            stats.spooled.load(Ordering::Relaxed) == 20
        })
        .await;
        assert!(stats.spool_bytes.load(Ordering::Relaxed) > 0);
        // New events while the spool holds some go behind it, even with the sink back.
        for i in 20..30 {
            capture.record(event(i));
        }
        sink.down.store(false, Ordering::SeqCst);
        for i in 30..40 {
            capture.record(event(i));
        }
        until("everything written", || {
            stats.written.load(Ordering::Relaxed) == 40
        })
        .await;
        assert_eq!(sink.ids(), (0..40).collect::<Vec<_>>(), "recorded order");
        assert_eq!(stats.dropped(), 0);
        until("the spool drained", || {
            stats.spool_bytes.load(Ordering::Relaxed) == 0
        })
        .await;
        assert_eq!(
            stats.replayed.load(Ordering::Relaxed),
            stats.spooled.load(Ordering::Relaxed)
        );
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    }

    #[tokio::test]
    async fn beyond_the_spool_cap_events_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let line = serde_json::to_vec(&event(0)).unwrap().len() as u64 + 1;
        let sink = Flaky::new(true, &[]);
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let capture = Capture::start(
            sink.clone(),
            quick(spool_in(dir.path(), 6 * line)),
            &tracker,
            cancel.clone(),
        );
        let stats = capture.stats().clone();
        for i in 0..10 {
            capture.record(event(i));
        }
        until("spooled or dropped", || {
            stats.spooled.load(Ordering::Relaxed) + stats.dropped_spool_full.load(Ordering::Relaxed)
                == 10
        })
        .await;
        assert_eq!(stats.spooled.load(Ordering::Relaxed), 6);
        assert_eq!(stats.dropped_spool_full.load(Ordering::Relaxed), 4);
        sink.down.store(false, Ordering::SeqCst);
        until("the spool replayed", || {
            stats.written.load(Ordering::Relaxed) == 6
        })
        .await;
        assert_eq!(sink.ids(), (0..6).collect::<Vec<_>>());
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    }

    #[tokio::test]
    async fn the_next_start_replays_what_the_last_run_spooled() {
        let dir = tempfile::tempdir().unwrap();
        let down = Flaky::new(true, &[]);
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let first = Capture::start(
            down.clone(),
            quick(spool_in(dir.path(), 1 << 20)),
            &tracker,
            cancel.clone(),
        );
        for i in 0..10 {
            first.record(event(i));
        }
        // Shutdown with the sink down: what is queued goes to the spool too.
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
        assert_eq!(first.stats().spooled.load(Ordering::Relaxed), 10);
        assert!(down.ids().is_empty());

        let up = Flaky::new(false, &[]);
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let second = Capture::start(
            up.clone(),
            quick(spool_in(dir.path(), 1 << 20)),
            &tracker,
            cancel.clone(),
        );
        second.record(event(10));
        let stats = second.stats().clone();
        until("the old spool replayed", || {
            stats.written.load(Ordering::Relaxed) == 11
        })
        .await;
        assert_eq!(up.ids(), (0..11).collect::<Vec<_>>());
        assert_eq!(stats.replayed.load(Ordering::Relaxed), 10);
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    }

    /// An aggregating sink that records each flush it is given: (rows, row-less observations).
    #[derive(Default)]
    struct Flushes {
        seen: std::sync::Mutex<Vec<(usize, usize)>>,
    }

    impl Flushes {
        fn seen(&self) -> Vec<(usize, usize)> {
            self.seen.lock().unwrap().clone()
        }
    }

    impl Sink for Flushes {
        fn write_batch<'a>(
            &'a self,
            _batch: &'a [CaptureEvent],
        ) -> BoxFuture<'a, Result<(), SinkError>> {
            Box::pin(async { Ok(()) })
        }

        fn aggregates(&self) -> bool {
            true
        }

        fn write_flush<'a>(&'a self, flush: &'a Flush) -> BoxFuture<'a, Result<(), SinkError>> {
            self.seen
                .lock()
                .unwrap()
                .push((flush.rows.len(), flush.counted.len()));
            Box::pin(async { Ok(()) })
        }
    }

    fn paired(i: u32) -> CaptureEvent {
        match event(i) {
            CaptureEvent::Observation(mut o) => {
                o.pair_id = Some(uuid::Uuid::from_u128(u128::from(i)));
                CaptureEvent::Observation(o)
            }
            pair => pair,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn row_less_observations_wait_for_the_aggregate_interval_and_rows_do_not() {
        let sink = Arc::new(Flushes::default());
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let config = WriterConfig {
            flush_interval: Duration::from_millis(100),
            aggregate_interval: Duration::from_secs(1),
            rows: RowPolicy {
                sample_rate: 0.0,
                error_rows_per_flush: 20,
            },
            ..WriterConfig::default()
        };
        let capture = Capture::start(sink.clone(), config, &tracker, cancel.clone());
        for i in 0..3 {
            capture.record(event(i));
        }
        capture.record(paired(3));
        tokio::time::sleep(Duration::from_millis(150)).await;
        // The pair's side went at the flush interval; the row-less three stay behind.
        assert_eq!(sink.seen(), [(1, 0)]);

        tokio::time::sleep(Duration::from_millis(300)).await;
        for i in 4..6 {
            capture.record(event(i));
        }
        capture.record(paired(6));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(sink.seen(), [(1, 0), (1, 0)]);

        // A second after the first of them, all five row-less observations go in one flush.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(sink.seen(), [(1, 0), (1, 0), (0, 5)]);

        // At shutdown what is collecting goes at once.
        capture.record(event(7));
        tokio::task::yield_now().await;
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
        assert_eq!(sink.seen(), [(1, 0), (1, 0), (0, 5), (0, 1)]);
        assert_eq!(capture.stats().aggregated.load(Ordering::Relaxed), 6);
        assert_eq!(capture.stats().written.load(Ordering::Relaxed), 8);
    }
}
