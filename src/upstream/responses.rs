//! OpenAI's Responses API (`POST /responses`): its wire shape ([`Responses`]) and the assembly
//! of its typed event stream into the whole `response` object ([`ResponsesAssembler`]).
//!
//! A stream is `response.created`, `response.in_progress`, then per output item
//! `response.output_item.added`, its parts and deltas (`response.output_text.delta`,
//! `response.function_call_arguments.delta`, `response.refusal.delta`, …) and
//! `response.output_item.done`, and one terminal event: `response.completed`,
//! `response.incomplete` or `response.failed`, whose `response` is the whole answer as a
//! non-streamed call returns it. That object is what capture stores; when a stream stops
//! before it, the answer is rebuilt from the items and deltas seen. An `error` event carries
//! `code` and `message`. Every event carries a `sequence_number`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::capture::{Endpoint, Usage};
use crate::config::{UpstreamLimits, Variant};

use super::request::{self, ClientRequest, RequestError};
use super::shape::WireShape;
use super::sse::{EventKind, LimitError, StreamAssembler, Summary, wide};
use super::whole::{self, AnyStr, Str, WholeAnswer};

/// The Responses API surface, `/v1/responses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Responses;

impl WireShape for Responses {
    fn endpoint(&self) -> Endpoint {
        Endpoint::Responses
    }

    fn parse<'a>(&self, body: &'a [u8]) -> Result<ClientRequest<'a>, RequestError> {
        request::parse(Endpoint::Responses, body)
    }

    fn body_for(&self, request: &ClientRequest<'_>, variant: &Variant) -> Vec<u8> {
        request.body_for(variant)
    }

    fn stream_assembler(&self, limits: UpstreamLimits) -> StreamAssembler {
        StreamAssembler::Responses(Box::new(ResponsesAssembler::new(limits)))
    }

    fn has_text_answer(&self) -> bool {
        true
    }
}

/// Refuses a whole `response` with more output items than `limits` allow.
pub fn check_body(body: &Value, limits: &UpstreamLimits) -> Result<(), LimitError> {
    let count = body
        .get("output")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if count > limits.max_tool_calls {
        return Err(LimitError::TooManyItems {
            what: "output items",
            count,
            limit: limits.max_tool_calls,
        });
    }
    Ok(())
}

/// The text of a `response` object: every `output_text` part of its message items, in order
/// (what the SDKs call `output_text`).
fn output_text(response: &Value) -> Option<String> {
    let output = response.get("output")?.as_array()?;
    let mut text = String::new();
    for item in output.iter().filter(|i| i["type"] == "message") {
        for part in item["content"].as_array().into_iter().flatten() {
            if part["type"] == "output_text"
                && let Some(t) = part["text"].as_str()
            {
                text.push_str(t);
            }
        }
    }
    Some(text)
}

/// The finish reason of a `response` object, in chat completions' words so that the same
/// checks read every API: `stop` (`tool_calls` when it called a function), `length`
/// (`max_output_tokens`), `content_filter`, `failed`, `cancelled`; none while it is queued or
/// in progress (a `background` call).
fn finish_reason(response: &Value) -> Option<String> {
    let status = response.get("status")?.as_str()?;
    let calls = || {
        response["output"]
            .as_array()
            .is_some_and(|o| o.iter().any(|i| i["type"] == "function_call"))
    };
    let incomplete = response["incomplete_details"]["reason"].as_str();
    finish_reason_of(status, incomplete, calls)
}

/// The finish reason of a response of `status`, whose `incomplete_details.reason` is
/// `incomplete` and which `calls()` a function or not.
pub(super) fn finish_reason_of(
    status: &str,
    incomplete: Option<&str>,
    calls: impl FnOnce() -> bool,
) -> Option<String> {
    let reason = match status {
        "completed" => {
            if calls() {
                "tool_calls"
            } else {
                "stop"
            }
        }
        "incomplete" => match incomplete {
            Some("max_output_tokens") | None => "length",
            Some(other) => other,
        },
        "queued" | "in_progress" => return None,
        other => other,
    };
    Some(reason.to_owned())
}

#[derive(Deserialize, Default)]
pub(super) struct RawUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
}

#[derive(Deserialize, Default)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl RawUsage {
    pub(super) fn into_usage(self) -> Usage {
        let cached = (self.input_tokens_details)
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0);
        Usage {
            prompt_tokens: self.input_tokens,
            completion_tokens: self.output_tokens,
            total_tokens: (self.total_tokens)
                .max(self.input_tokens.saturating_add(self.output_tokens)),
            cache_creation_tokens: 0,
            cache_read_tokens: cached.min(self.input_tokens),
        }
    }
}

fn usage_of(response: &Value) -> Option<Usage> {
    let raw: RawUsage = serde_json::from_value(response.get("usage")?.clone()).ok()?;
    Some(raw.into_usage())
}

/// Text, finish reason and usage of a whole `response` object.
pub fn summary_of(response: &Value) -> Summary {
    Summary {
        text: output_text(response),
        finish_reason: finish_reason(response),
        usage: usage_of(response),
    }
}

/// What a `response` object of a stream says (model, id, usage, finish reason), read once.
fn read_response(raw: &RawValue) -> WholeAnswer {
    // The bounds on a whole answer are not the stream's (its events are bounded as they come).
    let unbounded = UpstreamLimits {
        max_tool_calls: usize::MAX,
        max_choices: usize::MAX,
        ..UpstreamLimits::default()
    };
    whole::read(whole::Api::Responses, raw.get().as_bytes(), &unbounded).unwrap_or_default()
}

/// One event of a Responses stream, as far as assembly needs it, borrowed from the event's
/// bytes; unknown fields are skipped.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
    sequence_number: Option<u64>,
    /// Kept as it came: the terminal event's is the whole answer capture stores.
    #[serde(borrow)]
    response: Option<&'a RawValue>,
    output_index: Option<u64>,
    /// Kept as it came (read only if the stream stops before its terminal event).
    #[serde(borrow)]
    item: Option<&'a RawValue>,
    #[serde(borrow)]
    delta: Option<AnyStr<'a>>,
    #[serde(borrow)]
    code: Option<AnyStr<'a>>,
    #[serde(borrow)]
    message: Option<AnyStr<'a>>,
}

/// The `type` of an output item, if it is an object with a string `type` (the last one, as a
/// `Value` reads duplicate keys).
fn item_type(item: &RawValue) -> Option<Cow<'_, str>> {
    struct Kind<'a>(Option<Cow<'a, str>>);
    impl<'de: 'a, 'a> Deserialize<'de> for Kind<'a> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Kind<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    let mut kind = None;
                    while let Some(key) = map.next_key::<Str<'de>>()? {
                        if key.0 == "type" {
                            kind = map.next_value::<AnyStr<'de>>()?.0;
                        } else {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                    Ok(Kind(kind))
                }
            }
            d.deserialize_map(V)
        }
    }
    let json = item.get();
    if !json.starts_with('{') {
        return None;
    }
    serde_json::from_str::<Kind<'_>>(json).ok()?.0
}

/// Rebuilds a streamed Responses answer. Output items are kept by `output_index` in a map; an
/// index at or beyond `max_tool_calls` refuses the event, so nothing is sized from an
/// upstream's number.
#[derive(Debug, Default)]
pub struct ResponsesAssembler {
    /// The `response` of `response.created` / `response.in_progress` (no output yet), and
    /// its `model` and `id`.
    started: Option<Box<RawValue>>,
    started_read: WholeAnswer,
    /// The `response` of the terminal event: the whole answer, as its bytes came, and what
    /// it says (read once, when it arrives).
    finished: Option<Box<RawValue>>,
    finished_read: WholeAnswer,
    /// Output items by index, as `response.output_item.added` / `.done` carried them.
    items: BTreeMap<u64, Box<RawValue>>,
    /// `output_text` deltas by output index.
    texts: BTreeMap<u64, String>,
    /// Every `output_text` delta, in order.
    text: String,
    saw_token: bool,
    /// An `error` event's code and message, or a `response.failed`'s error.
    error: Option<String>,
    /// The last `sequence_number` seen (an error event of ours follows it).
    sequence: Option<u64>,
    /// Bytes of event data held (the objects and items above), for the bounds.
    held: usize,
    limits: UpstreamLimits,
}

impl ResponsesAssembler {
    pub fn new(limits: UpstreamLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    pub fn feed(&mut self, data: &[u8]) -> Result<EventKind, LimitError> {
        let Ok(event) = whole::from_json::<Event<'_>>(data.trim_ascii()) else {
            return Ok(EventKind::Malformed);
        };
        if let Some(index) = event.output_index
            && index >= wide(self.limits.max_tool_calls)
        {
            return Err(LimitError::ItemIndex {
                what: "output item",
                index,
                limit: self.limits.max_tool_calls,
            });
        }
        self.sequence = event.sequence_number.or(self.sequence);
        let index = event.output_index.unwrap_or(0);
        let delta = event.delta.as_ref().and_then(AnyStr::as_str);
        let kind: &str = &event.kind.0;
        match kind {
            "response.created" | "response.in_progress" | "response.queued" => {
                if let Some(r) = event.response {
                    self.held = self.held.saturating_add(data.len());
                    self.started_read = read_response(r);
                    self.started = Some(r.to_owned());
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                if let Some(r) = event.response {
                    if kind == "response.failed" {
                        let failed: Value = serde_json::from_str(r.get()).unwrap_or_default();
                        let code = failed["error"]["code"].as_str().unwrap_or("failed");
                        self.error = Some(format!("response.failed: {code}"));
                    }
                    self.held = self.held.saturating_add(data.len());
                    self.finished_read = read_response(r);
                    self.finished = Some(r.to_owned());
                }
            }
            "response.output_item.added" | "response.output_item.done" => {
                if let Some(item) = event.item {
                    self.saw_token |= item_type(item).is_some_and(|t| t == "function_call");
                    self.held = self.held.saturating_add(data.len());
                    self.items.insert(index, item.to_owned());
                }
            }
            "response.output_text.delta" => {
                let d = delta.unwrap_or_default();
                self.saw_token |= !d.is_empty();
                self.texts.entry(index).or_default().push_str(d);
                self.text.push_str(d);
            }
            "response.refusal.delta" | "response.function_call_arguments.delta" => {
                self.saw_token = true;
            }
            "error" => {
                let text = |v: &Option<AnyStr<'_>>| {
                    v.as_ref()
                        .and_then(AnyStr::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                self.error = Some(format!(
                    "error event {}: {}",
                    text(&event.code),
                    text(&event.message)
                ));
            }
            _ => {}
        }
        Ok(EventKind::Chunk)
    }

    /// What the latest `response` object said (the terminal one's, else the started one's).
    fn latest(&self) -> &WholeAnswer {
        if self.finished.is_some() {
            &self.finished_read
        } else {
            &self.started_read
        }
    }

    pub fn model(&self) -> Option<&str> {
        self.latest().model.as_deref()
    }

    pub fn id(&self) -> Option<&str> {
        self.latest().id.as_deref()
    }

    pub fn usage(&self) -> Option<Usage> {
        self.finished_read.summary.usage
    }

    pub fn finish_reason(&self) -> Option<String> {
        self.finished_read.summary.finish_reason.clone()
    }

    /// The stream reached its terminal event.
    pub fn complete(&self) -> bool {
        self.finished.is_some()
    }

    pub fn has_token(&self) -> bool {
        self.saw_token
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn assembled_bytes(&self) -> usize {
        self.held.saturating_add(self.text.len())
    }

    pub fn item_count(&self) -> usize {
        self.items.len()
    }

    /// The whole `response` object: the terminal event's, or — for a stream that stopped
    /// before it — the started response with the items and text seen so far.
    pub fn to_response(&self) -> Value {
        if let Some(done) = &self.finished {
            return serde_json::from_str(done.get()).unwrap_or_default();
        }
        let mut response = (self.started.as_ref())
            .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({"object": "response"}));
        let mut output: Vec<Value> = Vec::with_capacity(self.items.len());
        let indices = self.items.keys().chain(self.texts.keys());
        let indices: std::collections::BTreeSet<u64> = indices.copied().collect();
        for index in indices {
            // An item that reads as no `Value` (a number beyond f64) stands as `null`.
            let mut item = (self.items.get(&index))
                .map(|raw| serde_json::from_str(raw.get()).unwrap_or_default())
                .unwrap_or_else(|| json!({"type": "message", "role": "assistant", "content": []}));
            // Text goes into an item without content; an item that is no object (only `null`
            // becomes one) is kept as it came.
            let empty = item["content"].as_array().is_none_or(Vec::is_empty)
                && (item.is_object() || item.is_null());
            if let Some(text) = self.texts.get(&index).filter(|_| empty) {
                item["content"] = json!([{"type": "output_text", "text": text, "annotations": []}]);
            }
            output.push(item);
        }
        response["status"] = json!("incomplete");
        response["output"] = Value::Array(output);
        response
    }

    /// [`Self::to_response`] as bytes: the terminal event's `response` exactly as it came.
    pub fn to_response_bytes(&self) -> Bytes {
        match &self.finished {
            Some(done) => Bytes::copy_from_slice(done.get().as_bytes()),
            None => Bytes::from(self.to_response().to_string()),
        }
    }

    /// An `error` event in the Responses stream's own shape, numbered after the last event.
    pub fn error_event(&self, message: &str, code: &str) -> Bytes {
        let data = json!({"type": "error", "code": code, "message": message, "param": null,
                          "sequence_number": self.sequence.map_or(0, |s| s.saturating_add(1))});
        Bytes::from(format!("event: error\ndata: {data}\n\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(a: &mut ResponsesAssembler, v: Value) -> EventKind {
        a.feed(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_stream_assembles_into_the_completed_response() {
        let mut a = ResponsesAssembler::new(UpstreamLimits::default());
        let started = json!({"id": "resp_1", "object": "response", "model": "m",
                             "status": "in_progress", "output": []});
        feed(
            &mut a,
            json!({"type": "response.created", "sequence_number": 0, "response": started}),
        );
        assert_eq!(a.id(), Some("resp_1"));
        assert!(!a.has_token() && !a.complete());
        for (i, d) in ["Hel", "lo"].iter().enumerate() {
            feed(
                &mut a,
                json!({"type": "response.output_text.delta", "sequence_number": i + 1,
                        "output_index": 0, "content_index": 0, "delta": d}),
            );
        }
        assert!(a.has_token());
        assert_eq!(a.text(), "Hello");
        // A stream cut here still has an answer.
        let partial = a.to_response();
        assert_eq!(output_text(&partial).as_deref(), Some("Hello"));
        assert_eq!(partial["status"], "incomplete");
        let done = json!({"id": "resp_1", "object": "response", "model": "m", "status": "completed",
            "output": [{"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": "Hello"}]}],
            "usage": {"input_tokens": 7, "input_tokens_details": {"cached_tokens": 3},
                      "output_tokens": 2, "total_tokens": 9}});
        feed(
            &mut a,
            json!({"type": "response.completed", "sequence_number": 3, "response": done.clone()}),
        );
        assert!(a.complete());
        assert_eq!(a.to_response(), done);
        assert_eq!(a.finish_reason().as_deref(), Some("stop"));
        let u = a.usage().unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (7, 2, 9)
        );
        assert_eq!(u.cache_read_tokens, 3);
        let err =
            String::from_utf8(a.error_event("bad", "upstream_invalid_response").to_vec()).unwrap();
        assert!(err.starts_with("event: error\ndata: "), "{err}");
        assert!(err.contains(r#""sequence_number":4"#), "{err}");
    }

    #[test]
    fn summaries_read_text_tool_calls_and_incomplete_answers() {
        let calls = json!({"status": "completed", "output": [
            {"type": "function_call", "name": "f", "arguments": "{}", "call_id": "c"}]});
        assert_eq!(
            summary_of(&calls).finish_reason.as_deref(),
            Some("tool_calls")
        );
        let cut = json!({"status": "incomplete",
                         "incomplete_details": {"reason": "max_output_tokens"}, "output": []});
        assert_eq!(summary_of(&cut).finish_reason.as_deref(), Some("length"));
        assert_eq!(summary_of(&json!({"status": "queued"})).finish_reason, None);
    }

    #[test]
    fn an_output_index_beyond_the_bound_is_refused() {
        let limits = UpstreamLimits {
            max_tool_calls: 4,
            ..UpstreamLimits::default()
        };
        let mut a = ResponsesAssembler::new(limits);
        let e = a.feed(br#"{"type":"response.output_text.delta","output_index":4,"delta":"x"}"#);
        assert!(matches!(e, Err(LimitError::ItemIndex { index: 4, .. })));
        let e = a.feed(br#"{"type":"response.output_text.delta","output_index":1e30,"delta":"x"}"#);
        assert_eq!(e, Ok(EventKind::Malformed));
    }
}
