//! The records the data plane captures: one [`Observation`] per side of a request, and a
//! [`Pair`] when the same request was answered by stable and by a candidate.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::JsonBody;

pub use crate::vocab::{Purpose, Role};

/// The API surface a request was made to: OpenAI's chat completions, completions, embeddings
/// and Responses API, or Anthropic's Messages API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    Messages,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
            Endpoint::Messages => "/messages",
        }
    }

    /// The OpenTelemetry GenAI `gen_ai.operation.name` of a call to this endpoint.
    pub fn genai_operation(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat",
            Endpoint::Completions => "text_completion",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses | Endpoint::Messages => "chat",
        }
    }

    /// Every endpoint, in a fixed order.
    pub const ALL: [Endpoint; 5] = [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Responses,
        Endpoint::Messages,
    ];
}

/// How a call ended, as far as blame goes. `None` on an [`Observation`] means success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The upstream could not be reached (connect error, DNS, TLS).
    Unreachable,
    /// The upstream did not answer (or finish) in time.
    Timeout,
    /// The upstream answered with a 4xx status.
    Upstream4xx,
    /// The upstream answered with a 5xx status.
    Upstream5xx,
    /// The upstream answered 2xx, but the body or stream was not valid OpenAI output.
    Malformed,
    /// The stream ended before its end marker (`[DONE]` or a finish reason).
    Truncated,
    /// The upstream's answer broke one of the `upstream_limits` (too large, too many events,
    /// tool calls or choices, an index out of bounds): refused, and counted against it.
    #[serde(rename = "upstream_invalid_response")]
    InvalidResponse,
    /// The client went away before the response was complete (the capture is partial).
    ClientDisconnected,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Unreachable => "unreachable",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Upstream4xx => "upstream_4xx",
            ErrorClass::Upstream5xx => "upstream_5xx",
            ErrorClass::Malformed => "malformed",
            ErrorClass::Truncated => "truncated",
            ErrorClass::InvalidResponse => "upstream_invalid_response",
            ErrorClass::ClientDisconnected => "client_disconnected",
        }
    }
}

/// Token usage as reported by the upstream (`usage` object), in one form for every API:
/// `prompt_tokens` are all input tokens, cached ones included (Anthropic's `input_tokens` +
/// `cache_creation_input_tokens` + `cache_read_input_tokens`; OpenAI's `prompt_tokens` or
/// `input_tokens`), of which `cache_creation_tokens` were written to and `cache_read_tokens`
/// read from the provider's prompt cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_creation_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_read_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One side of one request: what one variant did with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Unique per observation.
    pub id: Uuid,
    /// The gateway request id (`x-request-id`); both sides of a pair share it.
    pub request_id: Uuid,
    /// Set when this observation is one side of a matched pair.
    pub pair_id: Option<Uuid>,
    pub at: DateTime<Utc>,
    pub deployment: String,
    /// Variant name (`stable`, or the candidate's name).
    pub variant: String,
    pub role: Role,
    pub purpose: Purpose,
    /// The stage label the traffic config carried when the request was routed.
    pub stage: String,
    /// The traffic-config version the request was routed under.
    pub config_version: u64,
    pub endpoint: Endpoint,
    /// The upstream model actually called.
    pub upstream_model: String,
    pub stream: bool,
    /// 0..10000; `None` for unsticky requests.
    pub bucket: Option<u16>,
    pub unit_key: Option<String>,
    pub sticky: bool,
    /// Cohort labels (e.g. `tier=enterprise`), carried for per-cohort gating.
    pub cohort: BTreeMap<String, String>,
    /// HTTP status the upstream answered with; `None` when no response arrived.
    pub status: Option<u16>,
    pub error: Option<ErrorClass>,
    /// Short, non-sensitive detail about the error (never shown to clients).
    pub error_detail: Option<String>,
    /// Time to first token (first content chunk for streams; the full body otherwise).
    pub ttft_ms: Option<f64>,
    pub latency_ms: f64,
    pub usage: Option<Usage>,
    /// Cost in USD from the configured prices; `None` when the model has no price.
    pub cost_usd: Option<f64>,
    pub finish_reason: Option<String>,
    /// The assembled assistant answer (content, or concatenated text for completions).
    pub response_text: Option<String>,
    /// The request body as sent upstream (its bytes), when the capture policy keeps bodies.
    pub request_body: Option<JsonBody>,
    /// The full response as received (streams reassembled into the whole answer of their API),
    /// when kept.
    pub response_body: Option<JsonBody>,
}

impl Observation {
    pub fn is_success(&self) -> bool {
        self.error.is_none()
    }
}

/// Both sides of the same request: the unit the judge scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    pub id: Uuid,
    pub request_id: Uuid,
    pub deployment: String,
    pub stage: String,
    pub config_version: u64,
    pub cohort: BTreeMap<String, String>,
    pub stable: Observation,
    pub candidate: Observation,
}

/// What flows from the data plane to a sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CaptureEvent {
    Observation(Box<Observation>),
    Pair(Box<Pair>),
}

impl CaptureEvent {
    /// The event's own id (the observation's or the pair's).
    pub fn id(&self) -> Uuid {
        match self {
            CaptureEvent::Observation(o) => o.id,
            CaptureEvent::Pair(p) => p.id,
        }
    }

    /// The gateway request the event belongs to.
    pub fn request_id(&self) -> Uuid {
        match self {
            CaptureEvent::Observation(o) => o.request_id,
            CaptureEvent::Pair(p) => p.request_id,
        }
    }

    /// `observation` or `pair`.
    pub fn kind(&self) -> &'static str {
        match self {
            CaptureEvent::Observation(_) => "observation",
            CaptureEvent::Pair(_) => "pair",
        }
    }
}
