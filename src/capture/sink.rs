//! Where captured events end up. The database sink is in `store`; here are the two that need
//! no database: an in-memory sink for tests and a JSONL file sink.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::io::AsyncWriteExt;

use super::{CaptureEvent, Flush};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("writing capture file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The database failed (or could not be reached): retrying may succeed.
    #[error("capture database: {0}")]
    Database(String),
    /// The sink refused the batch's data: retrying the same rows fails the same way (a
    /// constraint or a value the database cannot hold). The writer splits the batch to find them.
    #[error("capture data rejected: {0}")]
    Rejected(String),
}

impl SinkError {
    /// Whether the error is about the data, not the sink's availability.
    pub fn is_rejection(&self) -> bool {
        matches!(self, SinkError::Rejected(_))
    }
}

/// A destination for batches of captured events. Implementations write the whole batch or
/// return an error: [`SinkError::Rejected`] when the data is at fault (the writer splits the
/// batch), any other when the sink is (the writer retries, then spools). A batch may be written
/// again (retried, or replayed from the spool after a crash): the store's writes are idempotent
/// on the events' ids (and row-less observations on the flush's id); the JSONL sink may then
/// repeat lines.
pub trait Sink: Send + Sync + 'static {
    fn write_batch<'a>(&'a self, batch: &'a [CaptureEvent])
    -> BoxFuture<'a, Result<(), SinkError>>;

    /// Whether the sink keeps aggregates, so that observations without a row of their own
    /// ([`Flush::counted`]) are enough for it. Only such a sink is given row-less observations;
    /// any other gets every event as a row.
    fn aggregates(&self) -> bool {
        false
    }

    /// Writes a flush: its rows, and (for a sink that aggregates) its row-less observations,
    /// once per flush id.
    fn write_flush<'a>(&'a self, flush: &'a Flush) -> BoxFuture<'a, Result<(), SinkError>> {
        self.write_batch(&flush.rows)
    }
}

/// Keeps every event in memory. For tests and `canarist demo`.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    events: Arc<Mutex<Vec<CaptureEvent>>>,
}

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of everything written so far.
    pub fn events(&self) -> Vec<CaptureEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl Sink for MemorySink {
    fn write_batch<'a>(
        &'a self,
        batch: &'a [CaptureEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if let Ok(mut events) = self.events.lock() {
                events.extend_from_slice(batch);
            }
            Ok(())
        })
    }
}

/// Appends one JSON object per line to a file (created if missing).
pub struct JsonlSink {
    path: PathBuf,
    file: tokio::sync::Mutex<Option<tokio::fs::File>>,
}

impl JsonlSink {
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            file: tokio::sync::Mutex::new(None),
        }
    }

    fn io_err(&self, source: std::io::Error) -> SinkError {
        SinkError::File {
            path: self.path.clone(),
            source,
        }
    }
}

impl Sink for JsonlSink {
    fn write_batch<'a>(
        &'a self,
        batch: &'a [CaptureEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let mut buf = Vec::with_capacity(batch.len() * 1024);
            for event in batch {
                serde_json::to_writer(&mut buf, event)
                    .map_err(|e| self.io_err(std::io::Error::other(e)))?;
                buf.push(b'\n');
            }
            let mut guard = self.file.lock().await;
            if guard.is_none() {
                if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    tokio::fs::create_dir_all(dir)
                        .await
                        .map_err(|e| self.io_err(e))?;
                }
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .await
                    .map_err(|e| self.io_err(e))?;
                *guard = Some(file);
            }
            if let Some(file) = guard.as_mut() {
                let result = async {
                    file.write_all(&buf).await?;
                    file.flush().await
                }
                .await;
                if let Err(e) = result {
                    // Reopen on the next batch: the file may have been rotated or removed.
                    *guard = None;
                    return Err(self.io_err(e));
                }
            }
            Ok(())
        })
    }
}
