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
        let deadline = tokio::time::sleep(config.flush_interval);
        tokio::pin!(deadline);
        while batch.len() < batch_size {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => batch.push(event),
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        write_with_retry(sink.as_ref(), &batch, &config, &stats).await;
        batch.clear();
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
