//! `capture`: the records the data plane produces and the bounded pipe that carries them away.
//!
//! Owns: [`Observation`], [`Pair`], the [`JsonBody`] of a captured request or response (its
//! bytes, as sent and received), the normalized [`Answer`] of an observation (every choice,
//! output item and tool call of any of the three APIs; `answer`), the [`Capture`] handle the
//! request path uses, the batch writer task, and the simple sinks (in-memory, JSONL). The
//! database sink lives in `store`.
//!
//! Never: blocks the request path. [`Capture::record`] is a `try_send` into a bounded channel;
//! when the channel is full the event is dropped and counted (`canarist_capture_dropped_total`).
//! A sink that fails is retried with backoff; a batch it still cannot take is spooled to disk
//! and replayed in order when the sink is back; a row the sink rejects is split out of its batch
//! and dropped alone. Nothing accepted is lost without being counted. Fails open: the gateway
//! keeps serving whatever happens to capture.

pub mod aggregate;
pub mod answer;
mod body;
pub mod cells;
mod flush;
mod histogram;
mod observation;
mod pairing;
pub mod policy;
mod sink;
mod spool;
pub mod tail;
mod writer;

pub use aggregate::Aggregates;
pub use answer::{Answer, DeclaredTool, Output, ToolCall, declared_tools};
pub use body::JsonBody;
pub use flush::{Flush, FlushId, RowPolicy};
pub use histogram::LatencyHistogram;
pub use observation::{
    CaptureEvent, Endpoint, ErrorClass, Observation, Pair, Purpose, Role, Usage,
};
pub use pairing::PairSlot;

pub use crate::vocab::AA_VARIANT;
pub use sink::{JsonlSink, MemorySink, Sink, SinkError};
pub use spool::{SpoolConfig, SpoolError};
pub use writer::{Capture, CaptureStats, WriterConfig};
