//! Server-sent events from OpenAI-compatible upstreams: splitting a byte stream into events and
//! assembling the chunks into the full answer (content, tool calls, finish reason, usage) for
//! capture. Pure: bytes in, events and an assembled response out.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use crate::capture::Usage;
use crate::config::UpstreamLimits;

use super::messages::MessagesAssembler;
use super::responses::ResponsesAssembler;
use super::whole::{Str, from_json, owned};

/// An upstream's answer went beyond one of the `upstream_limits`: the answer is refused as
/// `upstream_invalid_response`, and nothing proportional to the offending value is allocated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("an SSE event is larger than upstream_limits.max_event_bytes ({limit} bytes)")]
    EventTooLarge { limit: usize },
    #[error("the stream is larger than upstream_limits.max_stream_bytes ({limit} bytes)")]
    StreamTooLarge { limit: usize },
    #[error("the stream has more than upstream_limits.max_stream_events ({limit}) events")]
    TooManyEvents { limit: usize },
    #[error("the body is larger than upstream_limits.max_body_bytes ({limit} bytes)")]
    BodyTooLarge { limit: usize },
    #[error("tool call index {index} is not below upstream_limits.max_tool_calls ({limit})")]
    ToolCallIndex { index: u64, limit: usize },
    #[error("choice index {index} is not below upstream_limits.max_choices ({limit})")]
    ChoiceIndex { index: u64, limit: usize },
    #[error(
        "the answer has {count} tool calls, more than upstream_limits.max_tool_calls ({limit})"
    )]
    TooManyToolCalls { count: usize, limit: usize },
    #[error("the answer has {count} choices, more than upstream_limits.max_choices ({limit})")]
    TooManyChoices { count: usize, limit: usize },
    /// A Responses output item's or a Messages content block's index (bounded like tool calls).
    #[error("{what} index {index} is not below upstream_limits.max_tool_calls ({limit})")]
    ItemIndex {
        what: &'static str,
        index: u64,
        limit: usize,
    },
    #[error("the answer has {count} {what}, more than upstream_limits.max_tool_calls ({limit})")]
    TooManyItems {
        what: &'static str,
        count: usize,
        limit: usize,
    },
}

/// A bound as a `u64`, to compare an upstream's index with.
pub(crate) fn wide(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Splits a byte stream into complete SSE events (each ending with a blank line). An event that
/// lies within one chunk is a slice of that chunk (no copy); only an event that spans chunks is
/// gathered in a buffer. Linear: each byte is searched once however the stream is chunked (the
/// search jumps from line end to line end with `memchr`), and an event may not grow past
/// `max_event` bytes.
#[derive(Debug)]
pub struct EventSplitter {
    /// The start of an event that did not end in its chunk; it holds no blank line.
    buf: BytesMut,
    max_event: usize,
    /// Bytes looked at by the search, in total (tests check that it stays linear).
    #[cfg(test)]
    pub(crate) work: usize,
}

impl Default for EventSplitter {
    fn default() -> Self {
        Self::new(UpstreamLimits::default().max_event_bytes)
    }
}

impl EventSplitter {
    pub fn new(max_event: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_event,
            #[cfg(test)]
            work: 0,
        }
    }

    /// Takes `chunk` and returns every event it completes, with its terminating blank line;
    /// an error once an event is longer than the bound.
    pub fn push(&mut self, mut chunk: Bytes) -> Result<Vec<Bytes>, LimitError> {
        let mut events = Vec::new();
        while let Some(event) = self.next_event(&mut chunk)? {
            events.push(event);
        }
        Ok(events)
    }

    /// Takes the next event that `rest` completes off its front; `None` once `rest` is used up
    /// (its incomplete event, if any, is then held). An error once an event is longer than the
    /// bound.
    pub fn next_event(&mut self, rest: &mut Bytes) -> Result<Option<Bytes>, LimitError> {
        if rest.is_empty() {
            return Ok(None);
        }
        if !self.buf.is_empty() {
            let Some(end) = self.pending_end(rest) else {
                return self.hold(rest);
            };
            if self.buf.len().saturating_add(end) > self.max_event {
                return Err(self.too_large());
            }
            self.buf.extend_from_slice(&rest[..end]);
            *rest = rest.slice(end..);
            return Ok(Some(self.buf.split().freeze()));
        }
        let found = find_event_end(rest);
        #[cfg(test)]
        {
            self.work += found.unwrap_or(rest.len());
        }
        let Some(end) = found else {
            return self.hold(rest);
        };
        if end > self.max_event {
            return Err(self.too_large());
        }
        Ok(Some(rest.split_to(end)))
    }

    /// Holds all of `rest`, the start of an event that does not end in it.
    fn hold(&mut self, rest: &mut Bytes) -> Result<Option<Bytes>, LimitError> {
        self.buf.extend_from_slice(rest);
        rest.clear();
        if self.buf.len() > self.max_event {
            return Err(self.too_large());
        }
        Ok(None)
    }

    /// Where in `chunk` the pending event ends: a blank line that starts in the last two bytes
    /// held (and ends in `chunk`), else the first one in `chunk`.
    fn pending_end(&mut self, chunk: &[u8]) -> Option<usize> {
        let tail = &self.buf[self.buf.len().saturating_sub(2)..];
        let mut window = [0u8; 5];
        let head = &chunk[..chunk.len().min(3)];
        window[..tail.len()].copy_from_slice(tail);
        window[tail.len()..tail.len() + head.len()].copy_from_slice(head);
        let window = &window[..tail.len() + head.len()];
        let across = (0..tail.len()).find_map(|i| blank_line_at(window, i).map(|n| i + n));
        #[cfg(test)]
        {
            self.work += window.len();
        }
        if let Some(end) = across {
            return Some(end - tail.len());
        }
        let found = find_event_end(chunk);
        #[cfg(test)]
        {
            self.work += found.unwrap_or(chunk.len());
        }
        found
    }

    fn too_large(&self) -> LimitError {
        LimitError::EventTooLarge {
            limit: self.max_event,
        }
    }

    /// Whatever is left when the stream ends (an incomplete event), if anything.
    pub fn finish(&mut self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }

    /// Bytes held for an event that is not complete yet.
    pub fn pending_len(&self) -> usize {
        self.buf.len()
    }
}

/// The length of the blank line (`\n\n` or `\n\r\n`) that starts at `i`, if one does.
fn blank_line_at(buf: &[u8], i: usize) -> Option<usize> {
    match buf.get(i..)? {
        [b'\n', b'\n', ..] => Some(2),
        [b'\n', b'\r', b'\n', ..] => Some(3),
        _ => None,
    }
}

/// Index just past the first blank line (`\n\n` or `\n\r\n`) of `buf`.
fn find_event_end(buf: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', buf).find_map(|i| blank_line_at(buf, i).map(|n| i + n))
}

/// The `data` of an event (lines joined with `\n`), or `None` for comment/empty events. The
/// usual event, one `data:` line, is borrowed from the event.
pub fn event_data(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut data: Option<Cow<'_, [u8]>> = None;
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', event).chain([event.len()]) {
        let line = &event[start..end];
        start = end + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            match &mut data {
                None => data = Some(Cow::Borrowed(rest)),
                Some(d) => {
                    let d = d.to_mut();
                    d.push(b'\n');
                    d.extend_from_slice(rest);
                }
            }
        }
    }
    data
}

/// What one event was, as far as forwarding goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A chunk with choices (content, tool calls, finish reason).
    Chunk,
    /// The usage-only chunk (`choices: []` with `usage`) that `include_usage` adds.
    UsageOnly,
    /// `data: [DONE]`.
    Done,
    /// Not an event with data (comments, keep-alives).
    Other,
    /// `data` that is not valid JSON.
    Malformed,
}

/// One chunk of a chat or completions stream, borrowed from the event's bytes (a string with
/// escapes is the only thing copied); unknown fields are skipped.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    model: Option<Str<'a>>,
    created: Option<i64>,
    #[serde(default, borrow)]
    choices: Vec<ChunkChoice<'a>>,
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default)]
    index: u64,
    #[serde(borrow)]
    delta: Option<Delta<'a>>,
    /// Legacy completions stream `text` instead of a delta.
    #[serde(borrow)]
    text: Option<Str<'a>>,
    #[serde(borrow)]
    finish_reason: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow)]
    content: Option<Str<'a>>,
    #[serde(borrow)]
    role: Option<Str<'a>>,
    #[serde(borrow)]
    refusal: Option<Str<'a>>,
    /// Reasoning text that some OpenAI-compatible servers stream (DeepSeek, vLLM, llama.cpp).
    #[serde(borrow)]
    reasoning_content: Option<Str<'a>>,
    #[serde(default, borrow)]
    tool_calls: Vec<ToolCallDelta<'a>>,
}

#[derive(Deserialize)]
struct ToolCallDelta<'a> {
    #[serde(default)]
    index: u64,
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    arguments: Option<Str<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct RawUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
pub(crate) struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl From<RawUsage> for Usage {
    fn from(u: RawUsage) -> Self {
        let cached = (u.prompt_tokens_details)
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0);
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: (u.total_tokens).max(u.prompt_tokens.saturating_add(u.completion_tokens)),
            cache_creation_tokens: 0,
            cache_read_tokens: cached.min(u.prompt_tokens),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct ToolCall {
    id: String,
    kind: String,
    name: String,
    arguments: String,
}

/// Rebuilds a streamed answer into the whole-answer JSON of its API: one assembler per wire
/// shape (chat completions and completions, the Responses API, Anthropic Messages), dispatched
/// by a `match` so that the chat path pays nothing for the others.
#[derive(Debug)]
// The chat assembler, the hot path, stays inline (no allocation per stream); the others are boxed.
#[allow(clippy::large_enum_variant)]
pub enum StreamAssembler {
    Chat(ChatAssembler),
    Responses(Box<ResponsesAssembler>),
    Messages(Box<MessagesAssembler>),
}

/// Calls the same method on whichever assembler it is.
macro_rules! each {
    ($self:expr, $a:ident => $e:expr) => {
        match $self {
            StreamAssembler::Chat($a) => $e,
            StreamAssembler::Responses($a) => $e,
            StreamAssembler::Messages($a) => $e,
        }
    };
}

impl StreamAssembler {
    /// A chat completions (`chat`) or completions assembler with the default limits.
    pub fn new(chat: bool) -> Self {
        Self::Chat(ChatAssembler::new(chat))
    }

    pub fn with_limits(chat: bool, limits: UpstreamLimits) -> Self {
        Self::Chat(ChatAssembler::with_limits(chat, limits))
    }

    /// Feeds one event's data; returns what kind of event it was, or the bound it broke (the
    /// event is then not applied).
    pub fn feed(&mut self, data: &[u8]) -> Result<EventKind, LimitError> {
        each!(self, a => a.feed(data))
    }

    pub fn model(&self) -> Option<&str> {
        each!(self, a => a.model())
    }

    pub fn id(&self) -> Option<&str> {
        each!(self, a => a.id())
    }

    pub fn usage(&self) -> Option<Usage> {
        match self {
            StreamAssembler::Chat(a) => a.usage,
            StreamAssembler::Responses(a) => a.usage(),
            StreamAssembler::Messages(a) => a.usage(),
        }
    }

    /// The finish reason, in chat completions' words for every API.
    pub fn finish_reason(&self) -> Option<String> {
        match self {
            StreamAssembler::Chat(a) => a.finish_reason(),
            StreamAssembler::Responses(a) => a.finish_reason(),
            StreamAssembler::Messages(a) => a.finish_reason(),
        }
    }

    /// The stream ended properly (its API's end marker arrived).
    pub fn complete(&self) -> bool {
        each!(self, a => a.complete())
    }

    /// What a complete stream ends with, for the detail of a truncated one.
    pub fn end_marker(&self) -> &'static str {
        match self {
            StreamAssembler::Chat(_) => "[DONE] or a finish reason",
            StreamAssembler::Responses(_) => "a response.completed, .incomplete or .failed event",
            StreamAssembler::Messages(_) => "message_stop",
        }
    }

    /// The error the stream itself carried (a Responses `error` event or `response.failed`,
    /// a Messages `error` event), if any.
    pub fn stream_error(&self) -> Option<&str> {
        match self {
            StreamAssembler::Chat(_) => None,
            StreamAssembler::Responses(a) => a.error(),
            StreamAssembler::Messages(a) => a.error(),
        }
    }

    /// Whether a token (content, refusal or tool call) has arrived yet.
    pub fn has_token(&self) -> bool {
        each!(self, a => a.has_token())
    }

    pub fn text(&self) -> &str {
        each!(self, a => a.text())
    }

    /// Bytes of answer assembled so far, for the bounds.
    pub fn assembled_bytes(&self) -> usize {
        each!(self, a => a.assembled_bytes())
    }

    /// Tool calls (chat) or output items / content blocks (Responses, Messages) held.
    pub fn tool_call_count(&self) -> usize {
        match self {
            StreamAssembler::Chat(a) => a.tool_call_count(),
            StreamAssembler::Responses(a) => a.item_count(),
            StreamAssembler::Messages(a) => a.block_count(),
        }
    }

    /// The answer as the non-streamed response of its API would have carried it.
    pub fn to_response(&self) -> serde_json::Value {
        each!(self, a => a.to_response())
    }

    /// [`Self::to_response`] as JSON bytes, written without building a value (chat and
    /// completions from their fields; a Responses stream's terminal `response`, which is kept
    /// as it came; a Messages message from its kept members and the assembled blocks).
    pub fn to_response_bytes(&self) -> Bytes {
        match self {
            StreamAssembler::Chat(a) => a.to_response_bytes(),
            StreamAssembler::Responses(a) => a.to_response_bytes(),
            StreamAssembler::Messages(a) => a.to_response_bytes(),
        }
    }

    /// The event that ends a client's stream the gateway refused, in the API's own shape: an
    /// OpenAI error object as `data:` (chat), a Responses `error` event, an Anthropic `error`
    /// event.
    pub fn error_event(&self, message: &str, code: &str) -> Bytes {
        match self {
            StreamAssembler::Chat(_) => {
                let body = serde_json::json!({"error": {"message": message,
                    "type": "upstream_error", "param": null, "code": code}});
                Bytes::from(format!("data: {body}\n\n"))
            }
            StreamAssembler::Responses(a) => a.error_event(message, code),
            StreamAssembler::Messages(_) => MessagesAssembler::error_event(message, "api_error"),
        }
    }
}

/// Rebuilds the full answer from a chat or completions stream's chunks, every choice (`n > 1`)
/// by its index. Choices and their tool calls are kept by index in maps: a choice index at or
/// beyond `max_choices` (or a tool-call index at or beyond `max_tool_calls`) refuses the chunk,
/// so nothing is ever sized from an upstream's number.
#[derive(Debug, Default)]
pub struct ChatAssembler {
    id: Option<String>,
    model: Option<String>,
    created: Option<i64>,
    choices: BTreeMap<u64, ChoiceState>,
    pub usage: Option<Usage>,
    pub done: bool,
    chat: bool,
    limits: UpstreamLimits,
}

/// Sets `to` to `s`, reusing its allocation.
fn replace(to: &mut String, s: &str) {
    to.clear();
    to.push_str(s);
}

/// One choice of a chat or completions stream, as assembled so far.
#[derive(Debug, Default)]
struct ChoiceState {
    role: Option<String>,
    content: String,
    refusal: Option<String>,
    reasoning: Option<String>,
    saw_content: bool,
    tool_calls: BTreeMap<u64, ToolCall>,
    finish_reason: Option<String>,
}

impl ChoiceState {
    fn apply(&mut self, choice: &ChunkChoice<'_>) {
        if let Some(text) = &choice.text {
            self.saw_content |= !text.0.is_empty();
            self.content.push_str(&text.0);
        }
        if let Some(delta) = &choice.delta {
            if self.role.is_none() {
                self.role = delta.role.as_ref().map(|r| String::from(&*r.0));
            }
            if let Some(c) = &delta.content {
                self.saw_content |= !c.0.is_empty();
                self.content.push_str(&c.0);
            }
            if let Some(r) = &delta.refusal {
                self.saw_content = true;
                self.refusal.get_or_insert_with(String::new).push_str(&r.0);
            }
            if let Some(r) = &delta.reasoning_content {
                self.reasoning
                    .get_or_insert_with(String::new)
                    .push_str(&r.0);
            }
            for tc in &delta.tool_calls {
                self.saw_content = true;
                let call = self.tool_calls.entry(tc.index).or_default();
                if let Some(id) = &tc.id {
                    replace(&mut call.id, &id.0);
                }
                if let Some(kind) = &tc.kind {
                    replace(&mut call.kind, &kind.0);
                }
                if let Some(f) = &tc.function {
                    if let Some(name) = &f.name {
                        call.name.push_str(&name.0);
                    }
                    if let Some(arguments) = &f.arguments {
                        call.arguments.push_str(&arguments.0);
                    }
                }
            }
        }
        if let Some(reason) = &choice.finish_reason {
            replace(self.finish_reason.get_or_insert_default(), &reason.0);
        }
    }

    fn assembled_bytes(&self) -> usize {
        let calls: usize = (self.tool_calls.values())
            .map(|t| t.id.len() + t.kind.len() + t.name.len() + t.arguments.len())
            .sum();
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        self.content.len()
            + calls
            + opt(&self.refusal)
            + opt(&self.reasoning)
            + opt(&self.role)
            + opt(&self.finish_reason)
    }

    /// The choice as a non-streamed chat completion carries it.
    fn to_chat_choice(&self, index: u64) -> serde_json::Value {
        use serde_json::json;
        let content = if self.content.is_empty() && !self.tool_calls.is_empty() {
            serde_json::Value::Null
        } else {
            json!(self.content)
        };
        let mut message =
            json!({"role": self.role.as_deref().unwrap_or("assistant"), "content": content});
        if let Some(r) = &self.refusal {
            message["refusal"] = json!(r);
        }
        if let Some(r) = &self.reasoning {
            message["reasoning_content"] = json!(r);
        }
        if !self.tool_calls.is_empty() {
            message["tool_calls"] = (self.tool_calls.values())
                .map(|t| {
                    let kind = if t.kind.is_empty() { "function" } else { &t.kind };
                    json!({"id": t.id, "type": kind, "function": {"name": t.name, "arguments": t.arguments}})
                })
                .collect();
        }
        json!({"index": index, "message": message, "finish_reason": self.finish_reason})
    }
}

impl ChatAssembler {
    /// The answer's `model`, as the stream's chunks named it.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The answer's `id`.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub fn new(chat: bool) -> Self {
        Self::with_limits(chat, UpstreamLimits::default())
    }

    pub fn with_limits(chat: bool, limits: UpstreamLimits) -> Self {
        Self {
            chat,
            limits,
            ..Self::default()
        }
    }

    /// The first choice (index 0, else the lowest index that arrived): the one whose text and
    /// finish reason stand for the answer in logs, metrics and the first-token clock.
    fn first(&self) -> Option<&ChoiceState> {
        self.choices.values().next()
    }

    /// The first choice's finish reason.
    pub fn finish_reason(&self) -> Option<String> {
        self.first().and_then(|c| c.finish_reason.clone())
    }

    /// Feeds one event's data; returns what kind of event it was, or the bound it broke (the
    /// chunk is then not applied).
    pub fn feed(&mut self, data: &[u8]) -> Result<EventKind, LimitError> {
        let trimmed = data.trim_ascii();
        if trimmed == b"[DONE]" {
            self.done = true;
            return Ok(EventKind::Done);
        }
        let Ok(chunk) = from_json::<Chunk<'_>>(trimmed) else {
            return Ok(EventKind::Malformed);
        };
        self.check(&chunk)?;
        // The stream's `id` and `model` are kept from the first chunk that names them.
        if self.id.is_none() {
            self.id = owned(chunk.id);
        }
        if self.model.is_none() {
            self.model = owned(chunk.model);
        }
        self.created = self.created.or(chunk.created);
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        if chunk.choices.is_empty() {
            return Ok(if self.usage.is_some() {
                EventKind::UsageOnly
            } else {
                EventKind::Other
            });
        }
        for choice in &chunk.choices {
            self.choices.entry(choice.index).or_default().apply(choice);
        }
        Ok(EventKind::Chunk)
    }

    /// Refuses a chunk whose choice or tool-call indices are beyond the bounds, before any of
    /// it is applied.
    fn check(&self, chunk: &Chunk<'_>) -> Result<(), LimitError> {
        let l = &self.limits;
        for choice in &chunk.choices {
            if choice.index >= wide(l.max_choices) {
                return Err(LimitError::ChoiceIndex {
                    index: choice.index,
                    limit: l.max_choices,
                });
            }
            let calls = choice.delta.as_ref().map_or(&[][..], |d| &d.tool_calls[..]);
            for tc in calls {
                if tc.index >= wide(l.max_tool_calls) {
                    return Err(LimitError::ToolCallIndex {
                        index: tc.index,
                        limit: l.max_tool_calls,
                    });
                }
            }
        }
        Ok(())
    }

    /// Bytes of answer assembled so far (every choice's content, refusal, tool calls; ids), for
    /// the bounds.
    pub fn assembled_bytes(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let choices: usize = self
            .choices
            .values()
            .map(ChoiceState::assembled_bytes)
            .sum();
        choices + opt(&self.id) + opt(&self.model)
    }

    /// How many tool calls the answer holds, over all its choices.
    pub fn tool_call_count(&self) -> usize {
        self.choices.values().map(|c| c.tool_calls.len()).sum()
    }

    /// Whether a token (content, refusal or tool call) has arrived yet, in any choice.
    pub fn has_token(&self) -> bool {
        self.choices.values().any(|c| c.saw_content)
    }

    /// The stream ended properly: `[DONE]`, or a finish reason on every choice that arrived.
    pub fn complete(&self) -> bool {
        self.done
            || (!self.choices.is_empty()
                && self.choices.values().all(|c| c.finish_reason.is_some()))
    }

    /// The first choice's text.
    pub fn text(&self) -> &str {
        self.first().map_or("", |c| c.content.as_str())
    }

    /// The answer as the non-streamed response object would have carried it, every choice in
    /// index order (a stream with no choice at all gives one empty choice, as before).
    pub fn to_response(&self) -> serde_json::Value {
        use serde_json::json;
        let usage = self.usage.map(|u| {
            json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                   "total_tokens": u.total_tokens})
        });
        let empty = ChoiceState::default();
        let choices: Vec<(u64, &ChoiceState)> = if self.choices.is_empty() {
            vec![(0, &empty)]
        } else {
            self.choices.iter().map(|(i, c)| (*i, c)).collect()
        };
        if !self.chat {
            let choices: Vec<serde_json::Value> = (choices.iter())
                .map(|(i, c)| json!({"index": i, "text": c.content, "finish_reason": c.finish_reason}))
                .collect();
            return json!({
                "id": self.id, "object": "text_completion", "created": self.created,
                "model": self.model, "choices": choices, "usage": usage,
            });
        }
        let choices: Vec<serde_json::Value> =
            choices.iter().map(|(i, c)| c.to_chat_choice(*i)).collect();
        json!({
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
            "choices": choices, "usage": usage,
        })
    }
}

/// The whole answer a chat or completions stream assembles into, written field by field (the
/// same JSON as [`ChatAssembler::to_response`], without a `Value`).
#[derive(serde::Serialize)]
struct WholeChat<'a> {
    id: Option<&'a str>,
    object: &'static str,
    created: Option<i64>,
    model: Option<&'a str>,
    choices: Vec<WholeChoice<'a>>,
    usage: Option<WholeUsage>,
}

#[derive(serde::Serialize)]
struct WholeChoice<'a> {
    index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<WholeMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    finish_reason: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct WholeMessage<'a> {
    role: &'a str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WholeToolCall<'a>>,
}

#[derive(serde::Serialize)]
struct WholeToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    function: WholeFunction<'a>,
}

#[derive(serde::Serialize)]
struct WholeFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(serde::Serialize)]
struct WholeUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

impl ChoiceState {
    fn to_whole(&self, index: u64, chat: bool) -> WholeChoice<'_> {
        let message = chat.then(|| WholeMessage {
            role: self.role.as_deref().unwrap_or("assistant"),
            content: (!self.content.is_empty() || self.tool_calls.is_empty())
                .then_some(self.content.as_str()),
            refusal: self.refusal.as_deref(),
            reasoning_content: self.reasoning.as_deref(),
            tool_calls: (self.tool_calls.values())
                .map(|t| WholeToolCall {
                    id: &t.id,
                    kind: if t.kind.is_empty() {
                        "function"
                    } else {
                        &t.kind
                    },
                    function: WholeFunction {
                        name: &t.name,
                        arguments: &t.arguments,
                    },
                })
                .collect(),
        });
        WholeChoice {
            index,
            message,
            text: (!chat).then_some(self.content.as_str()),
            finish_reason: self.finish_reason.as_deref(),
        }
    }
}

impl ChatAssembler {
    /// [`Self::to_response`] as bytes, written straight from the assembled fields.
    pub fn to_response_bytes(&self) -> Bytes {
        let empty = ChoiceState::default();
        let choices = if self.choices.is_empty() {
            vec![empty.to_whole(0, self.chat)]
        } else {
            (self.choices.iter())
                .map(|(i, c)| c.to_whole(*i, self.chat))
                .collect()
        };
        let whole = WholeChat {
            id: self.id.as_deref(),
            object: if self.chat {
                "chat.completion"
            } else {
                "text_completion"
            },
            created: self.created,
            model: self.model.as_deref(),
            choices,
            usage: self.usage.map(|u| WholeUsage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                total_tokens: u.total_tokens,
            }),
        };
        // Plain strings, numbers and options: serializing cannot fail.
        Bytes::from(serde_json::to_vec(&whole).unwrap_or_default())
    }
}

/// One upstream stream read under the bounds: splits it into events, assembles the answer and
/// counts events and bytes. Whatever the upstream sends, the memory it holds stays below
/// `max_stream_bytes` (the assembled answer) plus `max_event_bytes` (an incomplete event).
#[derive(Debug)]
pub struct StreamReader {
    splitter: EventSplitter,
    assembler: StreamAssembler,
    limits: UpstreamLimits,
    received: usize,
    events: usize,
    malformed: bool,
}

impl StreamReader {
    pub fn new(chat: bool, limits: UpstreamLimits) -> Self {
        Self::with_assembler(StreamAssembler::with_limits(chat, limits), limits)
    }

    /// A reader that assembles into `assembler` (made by the API surface's shape).
    pub fn with_assembler(assembler: StreamAssembler, limits: UpstreamLimits) -> Self {
        Self {
            splitter: EventSplitter::new(limits.max_event_bytes),
            assembler,
            limits,
            received: 0,
            events: 0,
            malformed: false,
        }
    }

    /// Takes the next chunk; returns the events it completes (slices of it where they lie
    /// within it) with their kinds, or the bound the stream broke (the stream must then be
    /// abandoned).
    pub fn push(&mut self, chunk: Bytes) -> Result<Vec<(Bytes, EventKind)>, LimitError> {
        self.received = self.received.saturating_add(chunk.len());
        if self.received > self.limits.max_stream_bytes {
            return Err(LimitError::StreamTooLarge {
                limit: self.limits.max_stream_bytes,
            });
        }
        let mut out = Vec::new();
        let mut rest = chunk;
        while let Some(event) = self.splitter.next_event(&mut rest)? {
            self.events += 1;
            if self.events > self.limits.max_stream_events {
                return Err(LimitError::TooManyEvents {
                    limit: self.limits.max_stream_events,
                });
            }
            let kind = match event_data(&event) {
                Some(data) => self.assembler.feed(&data)?,
                None => EventKind::Other,
            };
            self.malformed |= kind == EventKind::Malformed;
            out.push((event, kind));
        }
        Ok(out)
    }

    /// Whatever is left when the stream ends (an incomplete event), if anything.
    pub fn finish(&mut self) -> Option<Bytes> {
        self.splitter.finish()
    }

    pub fn assembler(&self) -> &StreamAssembler {
        &self.assembler
    }

    /// Some event's data was not JSON.
    pub fn malformed(&self) -> bool {
        self.malformed
    }

    /// Bytes received from the upstream.
    pub fn received(&self) -> usize {
        self.received
    }

    /// Events seen so far.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Bytes held for an event that is not complete yet.
    pub fn pending_len(&self) -> usize {
        self.splitter.pending_len()
    }
}

/// Refuses a full (non-streamed) answer with more choices or tool calls than the bounds allow.
pub fn check_body(value: &serde_json::Value, limits: &UpstreamLimits) -> Result<(), LimitError> {
    let Some(choices) = value.get("choices").and_then(serde_json::Value::as_array) else {
        return Ok(());
    };
    if choices.len() > limits.max_choices {
        return Err(LimitError::TooManyChoices {
            count: choices.len(),
            limit: limits.max_choices,
        });
    }
    for choice in choices {
        let calls = choice
            .get("message")
            .and_then(|m| m.get("tool_calls"))
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len);
        if calls > limits.max_tool_calls {
            return Err(LimitError::TooManyToolCalls {
                count: calls,
                limit: limits.max_tool_calls,
            });
        }
    }
    Ok(())
}

/// What capture needs from a non-streamed response body.
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    pub text: Option<String>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
}

/// Reads text, finish reason and usage from a full (non-streamed) response; `None` when the
/// body is not valid JSON.
pub fn summarize_body(body: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_slice(body).ok()
}

pub fn summary_of(value: &serde_json::Value) -> Summary {
    let choice = value.get("choices").and_then(|c| c.get(0));
    let text = choice.and_then(|c| {
        c.get("message")
            .and_then(|m| m.get("content"))
            .and_then(serde_json::Value::as_str)
            .or_else(|| c.get("text").and_then(serde_json::Value::as_str))
            .map(str::to_owned)
    });
    let finish_reason = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let usage = value
        .get("usage")
        .and_then(|u| serde_json::from_value::<RawUsage>(u.clone()).ok())
        .map(Usage::from);
    Summary {
        text,
        finish_reason,
        usage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_choice_of_a_stream_is_assembled_by_its_index() {
        // n = 2, the choices' chunks interleaved and out of order, a tool call on choice 1 and
        // streamed reasoning on choice 0.
        let mut a = ChatAssembler::new(true);
        for data in [
            r#"{"id":"c","model":"m","choices":[{"index":1,"delta":{"role":"assistant"}},{"index":0,"delta":{"role":"assistant","reasoning_content":"think"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"choices":[{"index":1,"delta":{"tool_calls":[{"index":0,"id":"t1","function":{"name":"lookup","arguments":"{\"id\":"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}"#,
        ] {
            assert_eq!(a.feed(data.as_bytes()), Ok(EventKind::Chunk));
        }
        assert!(!a.complete(), "choice 1 has not finished");
        assert_eq!(a.text(), "Hello");
        a.feed(br#"{"choices":[{"index":1,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"7}"}}]},"finish_reason":"tool_calls"}]}"#)
            .unwrap();
        assert!(a.complete(), "every choice has finished");
        assert_eq!(a.tool_call_count(), 1);
        let r = a.to_response();
        let choices = r["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 2);
        assert_eq!(choices[0]["index"], 0);
        assert_eq!(choices[0]["message"]["content"], "Hello");
        assert_eq!(choices[0]["message"]["reasoning_content"], "think");
        assert_eq!(choices[0]["finish_reason"], "stop");
        assert_eq!(choices[1]["index"], 1);
        assert_eq!(choices[1]["message"]["content"], serde_json::Value::Null);
        assert_eq!(
            choices[1]["message"]["tool_calls"][0]["function"]["name"],
            "lookup"
        );
        assert_eq!(
            choices[1]["message"]["tool_calls"][0]["function"]["arguments"],
            r#"{"id":7}"#
        );
        assert_eq!(choices[1]["finish_reason"], "tool_calls");
        // The stored body reads back as two outputs for the checks and the judge.
        let answer = crate::capture::Answer::from_body(&r).unwrap();
        assert_eq!(answer.outputs.len(), 2);
        assert_eq!(answer.outputs[0].reasoning.as_deref(), Some("think"));
        assert_eq!(answer.outputs[1].tool_calls[0].arguments, r#"{"id":7}"#);
    }

    #[test]
    fn a_completions_stream_keeps_every_choice() {
        let mut a = ChatAssembler::new(false);
        a.feed(br#"{"choices":[{"index":0,"text":"a"},{"index":1,"text":"b"}]}"#)
            .unwrap();
        a.feed(br#"{"choices":[{"index":1,"text":"c","finish_reason":"length"}]}"#)
            .unwrap();
        let r = a.to_response();
        assert_eq!(r["choices"][0]["text"], "a");
        assert_eq!(r["choices"][1]["text"], "bc");
        assert_eq!(r["choices"][1]["finish_reason"], "length");
        assert_eq!(a.text(), "a");
        assert!(!a.complete());
    }

    #[test]
    fn splitter_handles_events_across_chunks() {
        let mut s = EventSplitter::default();
        let push = |s: &mut EventSplitter, b: &'static [u8]| s.push(Bytes::from_static(b)).unwrap();
        assert!(push(&mut s, b"data: {\"a\"").is_empty());
        let events = push(&mut s, b":1}\n\ndata: [DONE]\n\n");
        assert_eq!(events.len(), 2);
        assert_eq!(event_data(&events[0]).as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(event_data(&events[1]).as_deref(), Some(&b"[DONE]"[..]));
        assert_eq!(s.finish(), None);
        let crlf = push(&mut s, b"data: x\r\n\r\n");
        assert_eq!(event_data(&crlf[0]).as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn assembler_rebuilds_content_tool_calls_and_usage() {
        let mut a = ChatAssembler::new(true);
        let feed = |a: &mut ChatAssembler, s: &str| a.feed(s.as_bytes()).unwrap();
        assert_eq!(
            feed(
                &mut a,
                r#"{"id":"c1","model":"m","created":1,"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#
            ),
            EventKind::Chunk
        );
        assert!(!a.has_token());
        feed(
            &mut a,
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
        );
        assert!(a.has_token());
        feed(
            &mut a,
            r#"{"choices":[{"index":0,"delta":{"content":"lo","tool_calls":[{"index":0,"id":"t","type":"function","function":{"name":"f","arguments":"{\"x\""}}]}}]}"#,
        );
        feed(
            &mut a,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"finish_reason":"tool_calls"}]}"#,
        );
        assert_eq!(
            feed(
                &mut a,
                r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#
            ),
            EventKind::UsageOnly
        );
        assert_eq!(feed(&mut a, "[DONE]"), EventKind::Done);
        assert_eq!(feed(&mut a, "{oops"), EventKind::Malformed);
        assert!(a.complete());
        let r = a.to_response();
        assert_eq!(r["choices"][0]["message"]["content"], "Hello");
        assert_eq!(
            r["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"x\":1}"
        );
        assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(r["usage"]["total_tokens"], 5);
        let written = a.to_response_bytes();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&written).unwrap(),
            r
        );
        let mut c = ChatAssembler::new(false);
        c.feed(br#"{"id":"x","choices":[{"index":0,"text":"hi","finish_reason":"stop"}]}"#)
            .unwrap();
        let written = c.to_response_bytes();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&written).unwrap(),
            c.to_response()
        );
    }

    #[test]
    fn summary_reads_chat_and_completion_bodies() {
        let chat = serde_json::json!({"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],
                                      "usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}});
        let s = summary_of(&chat);
        assert_eq!(s.text.as_deref(), Some("hi"));
        assert_eq!(s.usage.unwrap().total_tokens, 3);
        let legacy = serde_json::json!({"choices":[{"text":"yo","finish_reason":"length"}]});
        assert_eq!(summary_of(&legacy).finish_reason.as_deref(), Some("length"));
    }
}
