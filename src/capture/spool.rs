//! The capture spool: where the writer puts batches the sink cannot take (the store is
//! unreachable), and where it takes them back from, oldest first, once the sink answers again.
//!
//! Format: a directory of segments, one per spooled batch, named by a sequence number
//! (`00000000000000000042.jsonl`), each holding one or more [`Flush`]es as JSON lines: a
//! `{"kind":"flush","writer":…,"seq":…}` line with the flush's id (when it holds row-less
//! observations), then its rows as
//! [`CaptureEvent`]s (the same serde shape as the JSONL sink), then its row-less observations
//! (`"kind":"counted"`). Lines before any `flush` line (a segment of an older version) are one
//! flush without an id. A segment is written to `<name>.tmp`, fsync'd, renamed
//! into place, and the directory fsync'd before the writer goes on: a spooled batch survives a
//! kill -9 and a power loss, and a segment is either whole or absent (a `.tmp` left by a crash
//! was never acknowledged and is removed at the next start). A segment is deleted only after the
//! sink has stored all of it, so a crash in between replays it again: the store's writes are
//! idempotent on the event ids and, for row-less observations, on the flush id, which makes the
//! replay exactly-once in effect.
//!
//! Bounded: the segments' bytes never exceed `max_bytes`; what does not fit is refused (the
//! writer drops and counts it). One process at a time: the directory is locked (`lock`, an
//! advisory file lock) by the first writer that opens it.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{CaptureEvent, Flush, FlushId, Observation, Pair};

/// One spooled line, as read back.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Flush(FlushId),
    Counted(Box<Observation>),
    Observation(Box<Observation>),
    Pair(Box<Pair>),
}

/// The lines a spool writes besides [`CaptureEvent`]s.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum LineOut<'a> {
    Flush(&'a FlushId),
    Counted(&'a Observation),
}

/// The lines of `flushes`, each ending in a newline.
fn lines(flushes: &[Flush]) -> serde_json::Result<Vec<(bool, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut push = |event: bool, mut line: Vec<u8>| {
        line.push(b'\n');
        out.push((event, line));
    };
    for flush in flushes {
        // The id matters only to row-less observations (rows are idempotent on their own ids):
        // a flush of rows only is written without it, and read back into the flush before it.
        if let Some(id) = flush.id.as_ref().filter(|_| !flush.counted.is_empty()) {
            push(false, serde_json::to_vec(&LineOut::Flush(id))?);
        }
        for event in &flush.rows {
            push(true, serde_json::to_vec(event)?);
        }
        for o in &flush.counted {
            push(true, serde_json::to_vec(&LineOut::Counted(o))?);
        }
    }
    Ok(out)
}

/// Where the spool lives and how large it may grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Bytes of spooled events at most (the segments' sizes).
    pub max_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("capture spool {}: in use by another canarist process", dir.display())]
    Locked { dir: PathBuf },
    #[error("capture spool {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The oldest spooled batch, read back.
#[derive(Debug)]
pub(super) struct Segment {
    pub flushes: Vec<Flush>,
    /// Lines that could not be read back as an event.
    pub unreadable: usize,
}

/// The spool of one writer. Opened lazily: nothing touches the disk until a batch must be
/// spooled, or [`Spool::recover`] finds segments of an earlier run.
pub(super) struct Spool {
    config: SpoolConfig,
    open: Option<Open>,
}

struct Open {
    /// Held for the spool's life: the advisory lock on `<dir>/lock`.
    _lock: std::fs::File,
    /// (sequence number, bytes), oldest first.
    segments: VecDeque<(u64, u64)>,
    bytes: u64,
    next_seq: u64,
}

impl Spool {
    pub fn new(config: SpoolConfig) -> Self {
        Self { config, open: None }
    }

    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// At start: takes over the segments an earlier run left, if the directory exists.
    pub async fn recover(&mut self) -> Result<(), SpoolError> {
        let dir = self.config.dir.clone();
        let exists = blocking(dir.clone(), move || Ok(dir.is_dir())).await?;
        if exists {
            self.ensure_open().await?;
        }
        Ok(())
    }

    /// No segment waits.
    pub fn is_empty(&self) -> bool {
        self.open.as_ref().is_none_or(|o| o.segments.is_empty())
    }

    /// Bytes of the segments waiting.
    pub fn bytes(&self) -> u64 {
        self.open.as_ref().map_or(0, |o| o.bytes)
    }

    /// Spools the longest prefix of the events of `flushes` that fits under the cap, as one
    /// segment; returns how many events it holds (0: the spool is full).
    pub async fn append(&mut self, flushes: &[Flush]) -> Result<usize, SpoolError> {
        let max_bytes = self.config.max_bytes;
        let dir = self.config.dir.clone();
        let lines = lines(flushes).map_err(|e| SpoolError::Io {
            path: dir.clone(),
            source: std::io::Error::other(e),
        })?;
        let open = self.ensure_open().await?;
        let room = max_bytes.saturating_sub(open.bytes);
        let mut buf = Vec::new();
        let mut taken = 0;
        for (event, line) in lines {
            if (buf.len() + line.len()) as u64 > room {
                break;
            }
            buf.extend_from_slice(&line);
            taken += usize::from(event);
        }
        if taken == 0 {
            return Ok(0);
        }
        let seq = open.next_seq;
        let bytes = buf.len() as u64;
        let path = segment_path(&dir, seq);
        blocking(path.clone(), move || write_atomically(&path, &buf)).await?;
        open.next_seq += 1;
        open.segments.push_back((seq, bytes));
        open.bytes += bytes;
        Ok(taken)
    }

    /// Reads the oldest segment back.
    pub async fn front(&self) -> Result<Option<Segment>, SpoolError> {
        let Some(&(seq, _)) = self.open.as_ref().and_then(|o| o.segments.front()) else {
            return Ok(None);
        };
        let path = segment_path(&self.config.dir, seq);
        let text = blocking(path.clone(), move || std::fs::read(&path)).await?;
        let mut segment = Segment {
            flushes: Vec::new(),
            unreadable: 0,
        };
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let line = match serde_json::from_slice(line) {
                Ok(line) => line,
                Err(_) => {
                    segment.unreadable += 1;
                    continue;
                }
            };
            if let Line::Flush(id) = line {
                segment.flushes.push(Flush {
                    id: Some(id),
                    ..Flush::default()
                });
                continue;
            }
            if segment.flushes.is_empty() {
                segment.flushes.push(Flush::default());
            }
            if let Some(flush) = segment.flushes.last_mut() {
                match line {
                    Line::Flush(_) => {}
                    Line::Counted(o) => flush.counted.push(*o),
                    Line::Observation(o) => flush.rows.push(CaptureEvent::Observation(o)),
                    Line::Pair(p) => flush.rows.push(CaptureEvent::Pair(p)),
                }
            }
        }
        segment.flushes.retain(|f| !f.is_empty());
        Ok(Some(segment))
    }

    /// Deletes the oldest segment (its events are stored).
    pub async fn pop_front(&mut self) -> Result<(), SpoolError> {
        let dir = self.config.dir.clone();
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        let Some((seq, bytes)) = open.segments.pop_front() else {
            return Ok(());
        };
        open.bytes = open.bytes.saturating_sub(bytes);
        let path = segment_path(&dir, seq);
        blocking(path.clone(), move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
    }

    /// Replaces the oldest segment by `flushes` (what of it is not stored yet).
    pub async fn replace_front(&mut self, flushes: &[Flush]) -> Result<(), SpoolError> {
        let dir = self.config.dir.clone();
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        let Some(front) = open.segments.front_mut() else {
            return Ok(());
        };
        let buf: Vec<u8> = lines(flushes)
            .map_err(|e| SpoolError::Io {
                path: dir.clone(),
                source: std::io::Error::other(e),
            })?
            .into_iter()
            .flat_map(|(_, line)| line)
            .collect();
        let bytes = buf.len() as u64;
        let path = segment_path(&dir, front.0);
        blocking(path.clone(), move || write_atomically(&path, &buf)).await?;
        open.bytes = open.bytes.saturating_sub(front.1) + bytes;
        front.1 = bytes;
        Ok(())
    }

    async fn ensure_open(&mut self) -> Result<&mut Open, SpoolError> {
        if self.open.is_none() {
            let dir = self.config.dir.clone();
            let opened = tokio::task::spawn_blocking(move || open_dir(&dir))
                .await
                .map_err(|e| SpoolError::Io {
                    path: self.config.dir.clone(),
                    source: std::io::Error::other(e),
                })??;
            self.open = Some(opened);
        }
        match self.open.as_mut() {
            Some(open) => Ok(open),
            None => Err(SpoolError::Io {
                path: self.config.dir.clone(),
                source: std::io::Error::other("spool not open"),
            }),
        }
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.jsonl"))
}

/// Runs blocking file I/O off the async threads; errors name `path`.
async fn blocking<T: Send + 'static>(
    path: PathBuf,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, SpoolError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(SpoolError::Io { path, source }),
        Err(e) => Err(SpoolError::Io {
            path,
            source: std::io::Error::other(e),
        }),
    }
}

/// Creates and locks the directory, removes torn writes, and lists the segments.
fn open_dir(dir: &Path) -> Result<Open, SpoolError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SpoolError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let lock_path = dir.join("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(SpoolError::Locked {
                dir: dir.to_path_buf(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
    }
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".tmp") {
            std::fs::remove_file(&path).map_err(io(&path))?;
        } else if let Some(seq) = name
            .strip_suffix(".jsonl")
            .and_then(|s| s.parse::<u64>().ok())
        {
            let bytes = entry.metadata().map_err(io(&path))?.len();
            segments.push((seq, bytes));
        }
    }
    segments.sort_unstable();
    let next_seq = segments.last().map_or(1, |(seq, _)| seq + 1);
    Ok(Open {
        _lock: lock,
        bytes: segments.iter().map(|(_, b)| b).sum(),
        segments: segments.into(),
        next_seq,
    })
}

/// `path` holds `bytes` or is unchanged, and survives a power loss once this returns.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("jsonl.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::writer::tests::event;

    fn rows(events: &[CaptureEvent]) -> Vec<Flush> {
        vec![Flush::of_rows(events.to_vec())]
    }

    fn events(segment: &Segment) -> Vec<CaptureEvent> {
        segment
            .flushes
            .iter()
            .flat_map(|f| f.rows.iter().cloned())
            .collect()
    }

    fn config(dir: &Path, max_bytes: u64) -> SpoolConfig {
        SpoolConfig {
            dir: dir.join("spool"),
            max_bytes,
        }
    }

    #[tokio::test]
    async fn segments_come_back_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(config(dir.path(), 1 << 20));
        spool.recover().await.unwrap();
        assert!(spool.is_empty());
        assert!(!dir.path().join("spool").exists(), "opened lazily");
        assert_eq!(spool.append(&rows(&[event(1), event(2)])).await.unwrap(), 2);
        assert_eq!(spool.append(&rows(&[event(3)])).await.unwrap(), 1);
        let bytes = spool.bytes();
        // A torn write of a crashed run is not a segment.
        std::fs::write(
            dir.path().join("spool/00000000000000000009.jsonl.tmp"),
            b"{",
        )
        .unwrap();
        drop(spool);

        let mut spool = Spool::new(config(dir.path(), 1 << 20));
        spool.recover().await.unwrap();
        assert_eq!(spool.bytes(), bytes);
        let first = spool.front().await.unwrap().unwrap();
        assert_eq!(events(&first), vec![event(1), event(2)]);
        spool.replace_front(&rows(&[event(2)])).await.unwrap();
        assert_eq!(
            events(&spool.front().await.unwrap().unwrap()),
            vec![event(2)]
        );
        spool.pop_front().await.unwrap();
        assert_eq!(
            events(&spool.front().await.unwrap().unwrap()),
            vec![event(3)]
        );
        spool.pop_front().await.unwrap();
        assert!(spool.is_empty());
        assert_eq!(spool.bytes(), 0);
        assert!(spool.front().await.unwrap().is_none());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("spool"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec!["lock".to_string()]);
    }

    #[tokio::test]
    async fn the_cap_takes_a_prefix_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let line = serde_json::to_vec(&event(1)).unwrap().len() as u64 + 1;
        let mut spool = Spool::new(config(dir.path(), 3 * line));
        let batch: Vec<_> = (0..5).map(event).collect();
        assert_eq!(spool.append(&rows(&batch)).await.unwrap(), 3);
        assert_eq!(spool.append(&rows(&batch[3..])).await.unwrap(), 0);
        assert_eq!(spool.bytes(), 3 * line);
        assert!(spool.bytes() <= 3 * line);
    }

    #[tokio::test]
    async fn one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Spool::new(config(dir.path(), 1 << 20));
        a.append(&rows(&[event(1)])).await.unwrap();
        let mut b = Spool::new(config(dir.path(), 1 << 20));
        assert!(matches!(b.recover().await, Err(SpoolError::Locked { .. })));
        drop(a);
        b.recover().await.unwrap();
        assert_eq!(events(&b.front().await.unwrap().unwrap()), vec![event(1)]);
    }

    #[tokio::test]
    async fn unreadable_lines_are_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        std::fs::create_dir_all(&spool_dir).unwrap();
        let mut text = serde_json::to_vec(&event(1)).unwrap();
        text.extend_from_slice(b"\nnot json\n");
        std::fs::write(spool_dir.join("00000000000000000001.jsonl"), text).unwrap();
        let mut spool = Spool::new(config(dir.path(), 1 << 20));
        spool.recover().await.unwrap();
        let segment = spool.front().await.unwrap().unwrap();
        assert_eq!(events(&segment), vec![event(1)]);
        assert_eq!(segment.unreadable, 1);
    }

    #[tokio::test]
    async fn flushes_keep_their_ids_and_row_less_observations() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(config(dir.path(), 1 << 20));
        let counted = |i| match event(i) {
            CaptureEvent::Observation(o) => crate::capture::flush::lean(*o),
            CaptureEvent::Pair(_) => unreachable!(),
        };
        let id = |seq| FlushId {
            writer: uuid::Uuid::from_u128(7),
            seq,
        };
        let flushes = vec![
            Flush {
                id: Some(id(1)),
                rows: vec![event(1)],
                counted: vec![counted(2), counted(3)],
            },
            Flush {
                id: Some(id(2)),
                rows: vec![],
                counted: vec![counted(4)],
            },
        ];
        assert_eq!(spool.append(&flushes).await.unwrap(), 4);
        assert_eq!(spool.front().await.unwrap().unwrap().flushes, flushes);
        spool.replace_front(&flushes[1..]).await.unwrap();
        assert_eq!(spool.front().await.unwrap().unwrap().flushes, &flushes[1..]);
    }
}
