//! The bounded channel between the request path and a [`Sink`], and the task that drains it
//! in batches bounded by size and by time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{CaptureEvent, Sink};

/// How the writer batches and retries.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Events the channel holds before new ones are dropped.
    pub queue_capacity: usize,
    /// A batch is written when it reaches this many events…
    pub batch_size: usize,
    /// …or when its oldest event has waited this long.
    pub flush_interval: Duration,
    /// Attempts per batch before it is dropped (and counted).
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, capped at 5 s.
    pub retry_backoff: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            batch_size: 500,
            flush_interval: Duration::from_millis(200),
            max_attempts: 8,
            retry_backoff: Duration::from_millis(100),
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
    /// Events dropped because their batch failed `max_attempts` times.
    pub dropped_write_failed: AtomicU64,
    /// Events written by the sink.
    pub written: AtomicU64,
    /// Failed write attempts (each retry counts).
    pub write_errors: AtomicU64,
}

impl CaptureStats {
    pub fn dropped(&self) -> u64 {
        self.dropped_full.load(Ordering::Relaxed)
            + self.dropped_write_failed.load(Ordering::Relaxed)
    }
}

/// The request path's handle: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Capture {
    tx: mpsc::Sender<CaptureEvent>,
    stats: Arc<CaptureStats>,
    capacity: usize,
}

impl Capture {
    /// Starts the writer task on `tracker`; it drains what is queued and stops when `cancel`
    /// fires and the channel is empty.
    pub fn start(
        sink: Arc<dyn Sink>,
        config: WriterConfig,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let stats = Arc::new(CaptureStats::default());
        let capacity = config.queue_capacity.max(1);
        tracker.spawn(run_writer(rx, sink, config, stats.clone(), cancel));
        Self {
            tx,
            stats,
            capacity,
        }
    }

    /// Queues an event; drops and counts it when the queue is full or closed.
    pub fn record(&self, event: CaptureEvent) {
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
}

async fn run_writer(
    mut rx: mpsc::Receiver<CaptureEvent>,
    sink: Arc<dyn Sink>,
    config: WriterConfig,
    stats: Arc<CaptureStats>,
    cancel: CancellationToken,
) {
    let batch_size = config.batch_size.max(1);
    let mut batch: Vec<CaptureEvent> = Vec::with_capacity(batch_size);
    loop {
        // Wait for the first event of a batch (or shutdown with an empty channel).
        let first = tokio::select! {
            biased;
            event = rx.recv() => event,
            () = cancel.cancelled() => {
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { break };
        batch.push(first);
        // Fill the batch from what is already queued; if it is not full, wait out the flush
        // interval once and take what arrived meanwhile. Two wake-ups per batch at most, instead
        // of one per event.
        drain(&mut rx, &mut batch, batch_size);
        if batch.len() < batch_size && !cancel.is_cancelled() {
            tokio::select! {
                () = tokio::time::sleep(config.flush_interval) => {}
                () = cancel.cancelled() => {}
            }
            drain(&mut rx, &mut batch, batch_size);
        }
        write_with_retry(sink.as_ref(), &batch, &config, &stats).await;
        batch.clear();
    }
}

/// Moves queued events into `batch` without waiting, up to `batch_size`.
fn drain(rx: &mut mpsc::Receiver<CaptureEvent>, batch: &mut Vec<CaptureEvent>, batch_size: usize) {
    while batch.len() < batch_size {
        match rx.try_recv() {
            Ok(event) => batch.push(event),
            Err(_) => break,
        }
    }
}

async fn write_with_retry(
    sink: &dyn Sink,
    batch: &[CaptureEvent],
    config: &WriterConfig,
    stats: &CaptureStats,
) {
    let mut backoff = config.retry_backoff;
    for attempt in 1..=config.max_attempts.max(1) {
        match sink.write_batch(batch).await {
            Ok(()) => {
                stats
                    .written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                return;
            }
            Err(error) => {
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, attempt, batch = batch.len(), "capture write failed");
                if attempt < config.max_attempts {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    stats
        .dropped_write_failed
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    tracing::error!(batch = batch.len(), "capture batch dropped after retries");
}

#[cfg(test)]
mod tests {
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

    fn event(i: u32) -> CaptureEvent {
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
}
