//! Anthropic's Messages API (`POST /messages`): its wire shape ([`Messages`]) and the assembly
//! of its event stream into the whole `message` object ([`MessagesAssembler`]).
//!
//! A stream is `message_start` (the message with empty `content` and the input usage), per
//! content block `content_block_start`, its `content_block_delta`s (`text_delta`,
//! `input_json_delta` of a `tool_use` block, `thinking_delta`, `signature_delta`,
//! `citations_delta`) and `content_block_stop`, then `message_delta` (`stop_reason`,
//! `stop_sequence` and the cumulative usage) and `message_stop`; `ping` may come anywhere and
//! `error` (`{"type": "error", "error": {"type", "message"}}`) ends a failed stream. Capture
//! stores the assembled message as a non-streamed call returns it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::capture::{Endpoint, Usage};
use crate::config::{ProviderApi, UpstreamLimits, Variant};

use super::request::{self, ClientRequest, RequestError};
use super::shape::WireShape;
use super::sse::{EventKind, LimitError, StreamAssembler, Summary, wide};
use super::whole::{AnyStr, Str, from_json};

/// The Messages API surface, `/v1/messages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Messages;

impl WireShape for Messages {
    fn endpoint(&self) -> Endpoint {
        Endpoint::Messages
    }

    fn api(&self) -> ProviderApi {
        ProviderApi::Anthropic
    }

    fn parse<'a>(&self, body: &'a [u8]) -> Result<ClientRequest<'a>, RequestError> {
        request::parse(Endpoint::Messages, body)
    }

    fn body_for(&self, request: &ClientRequest<'_>, variant: &Variant) -> Vec<u8> {
        request.body_for(variant)
    }

    fn stream_assembler(&self, limits: UpstreamLimits) -> StreamAssembler {
        StreamAssembler::Messages(Box::new(MessagesAssembler::new(limits)))
    }

    fn has_text_answer(&self) -> bool {
        true
    }
}

/// Refuses a whole `message` with more content blocks than `limits` allow.
pub fn check_body(body: &Value, limits: &UpstreamLimits) -> Result<(), LimitError> {
    let count = body
        .get("content")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if count > limits.max_tool_calls {
        return Err(LimitError::TooManyItems {
            what: "content blocks",
            count,
            limit: limits.max_tool_calls,
        });
    }
    Ok(())
}

/// A `stop_reason` in chat completions' words, so that the same checks read every API:
/// `end_turn` and `stop_sequence` are `stop`, `max_tokens` (and a full context window)
/// `length`, `tool_use` `tool_calls`, `refusal` `content_filter`; others (`pause_turn`) pass.
pub fn finish_reason(stop_reason: &str) -> String {
    match stop_reason {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => other,
    }
    .to_owned()
}

/// Anthropic's usage object; every field may be absent (a `message_delta` carries only what
/// changed, cumulatively).
#[derive(Deserialize, Default, Debug, Clone, Copy)]
pub(super) struct RawUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl RawUsage {
    fn merge(&mut self, newer: RawUsage) {
        self.input_tokens = newer.input_tokens.or(self.input_tokens);
        self.output_tokens = newer.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = newer
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = newer
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }

    /// In the one usage form: `input_tokens` excludes cached tokens at Anthropic, so all input
    /// is the sum of the three.
    pub(super) fn to_usage(self) -> Usage {
        let created = self.cache_creation_input_tokens.unwrap_or(0);
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let prompt = (self.input_tokens.unwrap_or(0))
            .saturating_add(created)
            .saturating_add(read);
        let completion = self.output_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            cache_creation_tokens: created,
            cache_read_tokens: read,
        }
    }

    /// [`Self::to_json`] as bytes.
    fn to_json_bytes(self) -> Vec<u8> {
        let opt = |v: Option<u64>| v.map_or_else(|| "null".to_owned(), |n| n.to_string());
        format!(
            "{{\"cache_creation_input_tokens\":{},\"cache_read_input_tokens\":{},\"input_tokens\":{},\"output_tokens\":{}}}",
            opt(self.cache_creation_input_tokens),
            opt(self.cache_read_input_tokens),
            self.input_tokens.unwrap_or(0),
            self.output_tokens.unwrap_or(0),
        )
        .into_bytes()
    }

    fn to_json(self) -> Value {
        json!({
            "input_tokens": self.input_tokens.unwrap_or(0),
            "output_tokens": self.output_tokens.unwrap_or(0),
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
        })
    }
}

fn usage_of(message: &Value) -> Option<Usage> {
    let raw: RawUsage = serde_json::from_value(message.get("usage")?.clone()).ok()?;
    Some(raw.to_usage())
}

/// Text, finish reason and usage of a whole `message` object: the text is every `text` block,
/// in order.
pub fn summary_of(message: &Value) -> Summary {
    let text = message.get("content").and_then(Value::as_array).map(|c| {
        c.iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<String>()
    });
    Summary {
        text,
        finish_reason: message["stop_reason"].as_str().map(finish_reason),
        usage: usage_of(message),
    }
}

/// One event of a Messages stream, borrowed from the event's bytes; unknown fields are skipped.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
    /// `message_start`'s message, kept as it came.
    #[serde(borrow)]
    message: Option<&'a RawValue>,
    index: Option<u64>,
    /// `content_block_start`'s block, kept as it came.
    #[serde(borrow)]
    content_block: Option<&'a RawValue>,
    #[serde(borrow)]
    delta: Option<Fields<'a>>,
    usage: Option<RawUsage>,
    #[serde(borrow)]
    error: Option<Fields<'a>>,
}

/// The members of an event's objects that assembly reads, read as a `Value` would read them:
/// a string member is its string (other values are skipped), the last of duplicate keys wins,
/// and a value that is no object has none.
#[derive(Default)]
struct Fields<'a> {
    kind: Option<Cow<'a, str>>,
    text: Option<Cow<'a, str>>,
    partial_json: Option<Cow<'a, str>>,
    thinking: Option<Cow<'a, str>>,
    signature: Option<Cow<'a, str>>,
    stop_reason: Option<Cow<'a, str>>,
    message: Option<Cow<'a, str>>,
    id: Option<Cow<'a, str>>,
    model: Option<Cow<'a, str>>,
    /// Members whose value is kept whatever it is (present as `null` too).
    stop_sequence: Option<&'a RawValue>,
    citation: Option<&'a RawValue>,
    usage: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut f = Fields::default();
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    let text = match &*key.0 {
                        "type" => &mut f.kind,
                        "text" => &mut f.text,
                        "partial_json" => &mut f.partial_json,
                        "thinking" => &mut f.thinking,
                        "signature" => &mut f.signature,
                        "stop_reason" => &mut f.stop_reason,
                        "message" => &mut f.message,
                        "id" => &mut f.id,
                        "model" => &mut f.model,
                        raw => {
                            let raw = match raw {
                                "stop_sequence" => &mut f.stop_sequence,
                                "citation" => &mut f.citation,
                                "usage" => &mut f.usage,
                                _ => {
                                    map.next_value::<IgnoredAny>()?;
                                    continue;
                                }
                            };
                            *raw = Some(map.next_value::<&'de RawValue>()?);
                            continue;
                        }
                    };
                    *text = map.next_value::<AnyStr<'de>>()?.0;
                }
                Ok(f)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Fields::default())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Fields::default())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Fields::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Fields::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Fields::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Fields::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Fields::default())
            }
        }
        d.deserialize_any(V)
    }
}

impl<'a> Fields<'a> {
    /// The members of a kept value (`Default` for one that is no object).
    fn of(raw: &'a RawValue) -> Self {
        serde_json::from_str(raw.get()).unwrap_or_default()
    }
}

fn piece<'s>(s: &'s Option<Cow<'_, str>>) -> &'s str {
    s.as_deref().unwrap_or_default()
}

/// A kept value as a `Value` (`null` for one that reads as none, a number beyond f64).
fn value_of(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or_default()
}

/// One content block being assembled: its `content_block_start` object and its deltas.
#[derive(Debug, Default)]
struct Block {
    /// The `content_block_start` object, as it came.
    start: Option<Box<RawValue>>,
    text: String,
    json: String,
    thinking: String,
    signature: String,
    citations: Vec<Value>,
}

impl Block {
    fn bytes(&self) -> usize {
        self.text.len() + self.json.len() + self.thinking.len() + self.signature.len()
    }

    /// The block as a non-streamed message holds it.
    fn to_json(&self) -> Value {
        let start = self.start.as_deref().map(value_of);
        let mut block = match start {
            Some(start) if start.is_object() => start,
            _ => json!({"type": "text", "text": ""}),
        };
        match block["type"].as_str() {
            Some("text") => {
                let start = block["text"].as_str().unwrap_or_default();
                block["text"] = json!(format!("{start}{}", self.text));
                if !self.citations.is_empty() {
                    block["citations"] = Value::Array(self.citations.clone());
                }
            }
            Some("tool_use" | "server_tool_use") if !self.json.is_empty() => {
                // Partial JSON that never became valid stays as the text that came.
                block["input"] = serde_json::from_str(&self.json)
                    .unwrap_or_else(|_| Value::String(self.json.clone()));
            }
            Some("thinking") => {
                let start = block["thinking"].as_str().unwrap_or_default();
                block["thinking"] = json!(format!("{start}{}", self.thinking));
                if !self.signature.is_empty() {
                    block["signature"] = json!(self.signature);
                }
            }
            _ => {}
        }
        block
    }
}

impl Block {
    /// [`Self::to_json`] written as bytes (see [`MessagesAssembler::to_response_bytes`]).
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut block = (self.start.as_deref())
            .and_then(members)
            .unwrap_or_else(|| {
                BTreeMap::from([
                    ("text".to_owned(), Member::Str("")),
                    ("type".to_owned(), Member::Str("text")),
                ])
            });
        let string_of = |block: &BTreeMap<String, Member<'_>>, key: &str| match block.get(key) {
            Some(Member::Raw(raw)) => serde_json::from_str::<String>(raw.get()).ok(),
            Some(Member::Str(s)) => Some((*s).to_owned()),
            _ => None,
        };
        let joined = |start: Option<String>, rest: &str| {
            let mut s = start.unwrap_or_default();
            s.push_str(rest);
            Member::Bytes(json_string(&s))
        };
        match string_of(&block, "type").as_deref() {
            Some("text") => {
                let text = joined(string_of(&block, "text"), &self.text);
                block.insert("text".to_owned(), text);
                if !self.citations.is_empty() {
                    let citations = Value::Array(self.citations.clone()).to_string();
                    block.insert(
                        "citations".to_owned(),
                        Member::Bytes(citations.into_bytes()),
                    );
                }
            }
            Some("tool_use" | "server_tool_use") if !self.json.is_empty() => {
                // Partial JSON that never became valid stays as the text that came.
                let input = serde_json::from_str::<Value>(&self.json)
                    .unwrap_or_else(|_| Value::String(self.json.clone()));
                block.insert(
                    "input".to_owned(),
                    Member::Bytes(input.to_string().into_bytes()),
                );
            }
            Some("thinking") => {
                let thinking = joined(string_of(&block, "thinking"), &self.thinking);
                block.insert("thinking".to_owned(), thinking);
                if !self.signature.is_empty() {
                    block.insert(
                        "signature".to_owned(),
                        Member::Bytes(json_string(&self.signature)),
                    );
                }
            }
            _ => {}
        }
        write_object(out, &block);
    }
}

/// One member's value in an object being written: as it came, a string, `null` or bytes.
enum Member<'a> {
    Raw(&'a RawValue),
    Str(&'a str),
    Null,
    Bytes(Vec<u8>),
}

/// A kept object's members as they came, keyed as a `Value` keys them (sorted, the last of
/// duplicate keys winning); `None` for a value that is no object.
fn members(raw: &RawValue) -> Option<BTreeMap<String, Member<'_>>> {
    let map: BTreeMap<String, &RawValue> = serde_json::from_str(raw.get()).ok()?;
    Some(map.into_iter().map(|(k, v)| (k, Member::Raw(v))).collect())
}

fn json_string(s: &str) -> Vec<u8> {
    // A string always serializes.
    serde_json::to_vec(s).unwrap_or_default()
}

fn write_object(out: &mut Vec<u8>, members: &BTreeMap<String, Member<'_>>) {
    out.push(b'{');
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&json_string(key));
        out.push(b':');
        match value {
            Member::Raw(raw) => out.extend_from_slice(raw.get().as_bytes()),
            Member::Str(s) => out.extend_from_slice(&json_string(s)),
            Member::Null => out.extend_from_slice(b"null"),
            Member::Bytes(b) => out.extend_from_slice(b),
        }
    }
    out.push(b'}');
}

/// Rebuilds a streamed Messages answer. Content blocks are kept by `index` in a map; an index
/// at or beyond `max_tool_calls` refuses the event, so nothing is sized from an upstream's
/// number.
#[derive(Debug, Default)]
pub struct MessagesAssembler {
    /// The `message` of `message_start`, as it came, and its `model` and `id`.
    message: Option<Box<RawValue>>,
    model: Option<String>,
    id: Option<String>,
    blocks: BTreeMap<u64, Block>,
    /// Every `text_delta`, in order.
    text: String,
    stop_reason: Option<String>,
    stop_sequence: Option<Value>,
    usage: Option<RawUsage>,
    stopped: bool,
    saw_token: bool,
    error: Option<String>,
    /// Bytes of event data held besides the blocks' deltas.
    held: usize,
    limits: UpstreamLimits,
}

impl MessagesAssembler {
    pub fn new(limits: UpstreamLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    pub fn feed(&mut self, data: &[u8]) -> Result<EventKind, LimitError> {
        let Ok(event) = from_json::<Event<'_>>(data.trim_ascii()) else {
            return Ok(EventKind::Malformed);
        };
        if let Some(index) = event.index
            && index >= wide(self.limits.max_tool_calls)
        {
            return Err(LimitError::ItemIndex {
                what: "content block",
                index,
                limit: self.limits.max_tool_calls,
            });
        }
        let index = event.index.unwrap_or(0);
        match &*event.kind.0 {
            "message_start" => {
                if let Some(message) = event.message {
                    self.held = self.held.saturating_add(data.len());
                    let head = Fields::of(message);
                    let usage = head
                        .usage
                        .map(|u| serde_json::from_str::<RawUsage>(u.get()));
                    if let Some(Ok(u)) = usage {
                        self.usage.get_or_insert_default().merge(u);
                    }
                    self.model = head.model.map(Cow::into_owned);
                    self.id = head.id.map(Cow::into_owned);
                    self.message = Some(message.to_owned());
                }
            }
            "content_block_start" => {
                let start = event.content_block;
                let kind = start.map(Fields::of).and_then(|f| f.kind);
                self.saw_token |= kind.is_some_and(|k| k == "tool_use");
                self.held = self.held.saturating_add(data.len());
                self.blocks.entry(index).or_default().start = start.map(RawValue::to_owned);
            }
            "content_block_delta" => {
                self.apply_delta(index, &event.delta.unwrap_or_default());
            }
            "message_delta" => {
                let delta = event.delta.unwrap_or_default();
                if let Some(r) = delta.stop_reason {
                    self.stop_reason = Some(r.into_owned());
                }
                if let Some(s) = delta.stop_sequence {
                    let s = value_of(s);
                    self.held = self.held.saturating_add(s.to_string().len());
                    self.stop_sequence = Some(s);
                }
                if let Some(u) = event.usage {
                    self.usage.get_or_insert_default().merge(u);
                }
            }
            "message_stop" => self.stopped = true,
            "ping" => return Ok(EventKind::Other),
            "error" => {
                let e = event.error.unwrap_or_default();
                self.error = Some(format!(
                    "error event {}: {}",
                    piece(&e.kind),
                    piece(&e.message)
                ));
            }
            _ => {}
        }
        Ok(EventKind::Chunk)
    }

    fn apply_delta(&mut self, index: u64, delta: &Fields<'_>) {
        let block = self.blocks.entry(index).or_default();
        match delta.kind.as_deref() {
            Some("text_delta") => {
                let t = piece(&delta.text);
                self.saw_token |= !t.is_empty();
                block.text.push_str(t);
                self.text.push_str(t);
            }
            Some("input_json_delta") => {
                self.saw_token = true;
                block.json.push_str(piece(&delta.partial_json));
            }
            Some("thinking_delta") => block.thinking.push_str(piece(&delta.thinking)),
            Some("signature_delta") => block.signature.push_str(piece(&delta.signature)),
            Some("citations_delta") => {
                if let Some(c) = delta.citation {
                    let c = value_of(c);
                    self.held = self.held.saturating_add(c.to_string().len());
                    block.citations.push(c);
                }
            }
            _ => {}
        }
    }

    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage.map(RawUsage::to_usage)
    }

    pub fn finish_reason(&self) -> Option<String> {
        self.stop_reason.as_deref().map(finish_reason)
    }

    /// The stream reached `message_stop` (or at least its stop reason).
    pub fn complete(&self) -> bool {
        self.stopped || self.stop_reason.is_some()
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
        // The text deltas are held twice (the block's and the whole text); each came once.
        let blocks: usize = self.blocks.values().map(Block::bytes).sum();
        self.held.saturating_add(blocks)
    }

    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// The whole `message` object, as a non-streamed call returns it.
    pub fn to_response(&self) -> Value {
        let mut message = (self.message.as_deref())
            .map(value_of)
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({"type": "message", "role": "assistant"}));
        message["content"] = self.blocks.values().map(Block::to_json).collect();
        message["stop_reason"] = json!(self.stop_reason);
        message["stop_sequence"] = self.stop_sequence.clone().unwrap_or(Value::Null);
        if let Some(u) = self.usage {
            message["usage"] = u.to_json();
        }
        message
    }

    /// [`Self::to_response`] as bytes, written from the kept objects' members without building
    /// a value: the `message_start` message's members as they came (the last of duplicate
    /// keys, as a `Value` reads them), with `content`, `stop_reason`, `stop_sequence` and
    /// `usage` written from the assembly. A member is copied as it came, so a number beyond
    /// f64 stays a number here where the value has `null`.
    pub fn to_response_bytes(&self) -> Bytes {
        let mut message = (self.message.as_deref())
            .and_then(members)
            .unwrap_or_else(|| {
                BTreeMap::from([
                    ("role".to_owned(), Member::Str("assistant")),
                    ("type".to_owned(), Member::Str("message")),
                ])
            });
        let mut content = b"[".to_vec();
        for (i, block) in self.blocks.values().enumerate() {
            if i > 0 {
                content.push(b',');
            }
            block.write_json(&mut content);
        }
        content.push(b']');
        message.insert("content".to_owned(), Member::Bytes(content));
        message.insert(
            "stop_reason".to_owned(),
            self.stop_reason
                .as_deref()
                .map_or(Member::Null, Member::Str),
        );
        message.insert(
            "stop_sequence".to_owned(),
            self.stop_sequence
                .as_ref()
                .map_or(Member::Null, |v| Member::Bytes(v.to_string().into_bytes())),
        );
        if let Some(u) = self.usage {
            message.insert("usage".to_owned(), Member::Bytes(u.to_json_bytes()));
        }
        let mut out = Vec::with_capacity(self.assembled_bytes() + 256);
        write_object(&mut out, &message);
        Bytes::from(out)
    }

    /// An `error` event in Anthropic's shape.
    pub fn error_event(message: &str, kind: &str) -> Bytes {
        let data = json!({"type": "error", "error": {"type": kind, "message": message}});
        Bytes::from(format!("event: error\ndata: {data}\n\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(a: &mut MessagesAssembler, v: Value) -> EventKind {
        a.feed(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_stream_with_text_and_a_tool_call_assembles_into_the_message() {
        let mut a = MessagesAssembler::new(UpstreamLimits::default());
        feed(
            &mut a,
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
                "role": "assistant", "model": "claude", "content": [], "stop_reason": null,
                "usage": {"input_tokens": 10, "output_tokens": 1,
                          "cache_creation_input_tokens": 4, "cache_read_input_tokens": 6}}}),
        );
        feed(
            &mut a,
            json!({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "text", "text": ""}}),
        );
        assert_eq!(feed(&mut a, json!({"type": "ping"})), EventKind::Other);
        assert!(!a.has_token());
        for t in ["Let me ", "check."] {
            feed(
                &mut a,
                json!({"type": "content_block_delta", "index": 0,
                            "delta": {"type": "text_delta", "text": t}}),
            );
        }
        assert!(a.has_token());
        feed(&mut a, json!({"type": "content_block_stop", "index": 0}));
        feed(
            &mut a,
            json!({"type": "content_block_start", "index": 1, "content_block":
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}}),
        );
        for j in ["{\"order\": ", "42}"] {
            feed(
                &mut a,
                json!({"type": "content_block_delta", "index": 1,
                            "delta": {"type": "input_json_delta", "partial_json": j}}),
            );
        }
        feed(&mut a, json!({"type": "content_block_stop", "index": 1}));
        assert!(!a.complete());
        feed(
            &mut a,
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use",
                "stop_sequence": null}, "usage": {"output_tokens": 25}}),
        );
        feed(&mut a, json!({"type": "message_stop"}));
        assert!(a.complete());
        let m = a.to_response();
        assert_eq!(m["id"], "msg_1");
        assert_eq!(
            m["content"][0],
            json!({"type": "text", "text": "Let me check."})
        );
        assert_eq!(m["content"][1]["input"], json!({"order": 42}));
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(m["usage"]["output_tokens"], 25);
        assert_eq!(a.finish_reason().as_deref(), Some("tool_calls"));
        let u = a.usage().unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (20, 25));
        assert_eq!((u.cache_creation_tokens, u.cache_read_tokens), (4, 6));
        // The assembled message reads like a non-streamed one.
        let s = summary_of(&m);
        assert_eq!(s.text.as_deref(), Some("Let me check."));
        assert_eq!(s.usage, Some(u));
        // Written as bytes, it is the same message.
        let written: Value = serde_json::from_slice(&a.to_response_bytes()).unwrap();
        assert_eq!(written, m);
    }

    /// The message written as bytes is the value `to_response` builds: thinking with its
    /// signature, citations, a start object with text already in it, duplicate keys (the last
    /// wins), a block start that is no object, a partial tool input that never became JSON.
    #[test]
    fn the_message_written_as_bytes_is_the_message_built_as_a_value() {
        let mut a = MessagesAssembler::new(UpstreamLimits::default());
        let events = [
            r#"{"type":"message_start","message":{"id":"a","id":"msg_2","type":"message","role":"assistant","model":"claude","content":[{"stale":true}],"extra":{"k":[1,2.5,"x"]}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"Hm"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":", \"quoted\"\n"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":"Start: ","text":"Said: "}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"caf\u00e9 \ud83d\ude00"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"citations_delta","citation":{"type":"char_location","cited_text":"x","start_char_index":0}}}"#,
            r#"{"type":"content_block_start","index":2,"content_block":"not an object"}"#,
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"text_delta","text":"!"}}"#,
            r#"{"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#,
            r#"{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{\"a\": [1"}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":"END"},"usage":{"output_tokens":7}}"#,
        ];
        for e in events {
            assert_eq!(a.feed(e.as_bytes()), Ok(EventKind::Chunk), "{e}");
        }
        let built = a.to_response();
        let written: Value = serde_json::from_slice(&a.to_response_bytes()).unwrap();
        assert_eq!(written, built);
        assert_eq!(written["id"], "msg_2");
        assert_eq!(written["content"][1]["text"], "Said: café 😀");
        assert_eq!(written["content"][2], json!({"type": "text", "text": "!"}));
        assert_eq!(written["content"][3]["input"], "{\"a\": [1");
        assert_eq!(written["usage"]["cache_read_input_tokens"], Value::Null);
        // Without message_start or any block: the bare message.
        let empty = MessagesAssembler::new(UpstreamLimits::default());
        let written: Value = serde_json::from_slice(&empty.to_response_bytes()).unwrap();
        assert_eq!(written, empty.to_response());
    }

    #[test]
    fn an_error_event_and_an_out_of_bound_index_are_seen() {
        let limits = UpstreamLimits {
            max_tool_calls: 2,
            ..UpstreamLimits::default()
        };
        let mut a = MessagesAssembler::new(limits);
        let e = a.feed(br#"{"type":"content_block_start","index":2,"content_block":{}}"#);
        assert!(matches!(e, Err(LimitError::ItemIndex { index: 2, .. })));
        feed(
            &mut a,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        );
        assert_eq!(a.error(), Some("error event overloaded_error: Overloaded"));
        assert!(!a.complete());
    }
}
