//! The stream assemblers as they were before they parsed borrowed, typed events: the reference
//! the property tests in `sse_fuzz` hold the assemblers to (same events in, same answer out).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::capture::Usage;
use crate::config::UpstreamLimits;

use super::messages::finish_reason;
use super::sse::{EventKind, LimitError, RawUsage, wide};
use super::whole::{self, WholeAnswer};

// ---- chat completions and completions ----

#[derive(Deserialize)]
struct Chunk {
    id: Option<String>,
    model: Option<String>,
    created: Option<i64>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u64,
    delta: Option<Delta>,
    /// Legacy completions stream `text` instead of a delta.
    text: Option<String>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
    role: Option<String>,
    refusal: Option<String>,
    /// Reasoning text that some OpenAI-compatible servers stream (DeepSeek, vLLM, llama.cpp).
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallDelta>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: u64,
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct ToolCall {
    id: String,
    kind: String,
    name: String,
    arguments: String,
}

/// Rebuilds the full answer from a chat or completions stream's chunks, every choice (`n > 1`)
/// by its index. Choices and their tool calls are kept by index in maps: a choice index at or
/// beyond `max_choices` (or a tool-call index at or beyond `max_tool_calls`) refuses the chunk,
/// so nothing is ever sized from an upstream's number.
#[derive(Debug, Default)]
pub(super) struct ChatAssembler {
    id: Option<String>,
    model: Option<String>,
    created: Option<i64>,
    choices: BTreeMap<u64, ChoiceState>,
    pub usage: Option<Usage>,
    pub done: bool,
    chat: bool,
    limits: UpstreamLimits,
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
    fn apply(&mut self, choice: ChunkChoice) {
        if let Some(text) = choice.text {
            self.saw_content |= !text.is_empty();
            self.content.push_str(&text);
        }
        if let Some(delta) = choice.delta {
            self.role = self.role.take().or(delta.role);
            if let Some(c) = delta.content {
                self.saw_content |= !c.is_empty();
                self.content.push_str(&c);
            }
            if let Some(r) = delta.refusal {
                self.saw_content = true;
                self.refusal.get_or_insert_with(String::new).push_str(&r);
            }
            if let Some(r) = delta.reasoning_content {
                self.reasoning.get_or_insert_with(String::new).push_str(&r);
            }
            for tc in delta.tool_calls {
                self.saw_content = true;
                let call = self.tool_calls.entry(tc.index).or_default();
                if let Some(id) = tc.id {
                    call.id = id;
                }
                if let Some(kind) = tc.kind {
                    call.kind = kind;
                }
                if let Some(f) = tc.function {
                    call.name.push_str(&f.name.unwrap_or_default());
                    call.arguments.push_str(&f.arguments.unwrap_or_default());
                }
            }
        }
        if choice.finish_reason.is_some() {
            self.finish_reason = choice.finish_reason;
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
    pub(super) fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The answer's `id`.
    pub(super) fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub(super) fn with_limits(chat: bool, limits: UpstreamLimits) -> Self {
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
    pub(super) fn finish_reason(&self) -> Option<String> {
        self.first().and_then(|c| c.finish_reason.clone())
    }

    /// Feeds one event's data; returns what kind of event it was, or the bound it broke (the
    /// chunk is then not applied).
    pub(super) fn feed(&mut self, data: &[u8]) -> Result<EventKind, LimitError> {
        let trimmed = data.trim_ascii();
        if trimmed == b"[DONE]" {
            self.done = true;
            return Ok(EventKind::Done);
        }
        let Ok(chunk) = serde_json::from_slice::<Chunk>(trimmed) else {
            return Ok(EventKind::Malformed);
        };
        self.check(&chunk)?;
        self.id = self.id.take().or(chunk.id);
        self.model = self.model.take().or(chunk.model);
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
        for choice in chunk.choices {
            self.choices.entry(choice.index).or_default().apply(choice);
        }
        Ok(EventKind::Chunk)
    }

    /// Refuses a chunk whose choice or tool-call indices are beyond the bounds, before any of
    /// it is applied.
    fn check(&self, chunk: &Chunk) -> Result<(), LimitError> {
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
    pub(super) fn assembled_bytes(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let choices: usize = self
            .choices
            .values()
            .map(ChoiceState::assembled_bytes)
            .sum();
        choices + opt(&self.id) + opt(&self.model)
    }

    /// How many tool calls the answer holds, over all its choices.
    pub(super) fn tool_call_count(&self) -> usize {
        self.choices.values().map(|c| c.tool_calls.len()).sum()
    }

    /// Whether a token (content, refusal or tool call) has arrived yet, in any choice.
    pub(super) fn has_token(&self) -> bool {
        self.choices.values().any(|c| c.saw_content)
    }

    /// The stream ended properly: `[DONE]`, or a finish reason on every choice that arrived.
    pub(super) fn complete(&self) -> bool {
        self.done
            || (!self.choices.is_empty()
                && self.choices.values().all(|c| c.finish_reason.is_some()))
    }

    /// The first choice's text.
    pub(super) fn text(&self) -> &str {
        self.first().map_or("", |c| c.content.as_str())
    }

    /// The answer as the non-streamed response object would have carried it, every choice in
    /// index order (a stream with no choice at all gives one empty choice, as before).
    pub(super) fn to_response(&self) -> serde_json::Value {
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

// ---- the Responses API ----

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

/// One event of a Responses stream, as far as assembly needs it.
#[derive(Deserialize)]
struct ResponsesEvent {
    #[serde(rename = "type")]
    kind: String,
    sequence_number: Option<u64>,
    /// Kept as it came: the terminal event's is the whole answer capture stores.
    response: Option<Box<RawValue>>,
    output_index: Option<u64>,
    item: Option<Value>,
    delta: Option<Value>,
    code: Option<Value>,
    message: Option<Value>,
}

/// Rebuilds a streamed Responses answer. Output items are kept by `output_index` in a map; an
/// index at or beyond `max_tool_calls` refuses the event, so nothing is sized from an
/// upstream's number.
#[derive(Debug, Default)]
pub(super) struct ResponsesAssembler {
    /// The `response` of `response.created` / `response.in_progress` (no output yet), and
    /// its `model` and `id`.
    started: Option<Box<RawValue>>,
    started_read: WholeAnswer,
    /// The `response` of the terminal event: the whole answer, as its bytes came, and what
    /// it says (read once, when it arrives).
    finished: Option<Box<RawValue>>,
    finished_read: WholeAnswer,
    /// Output items by index, as `response.output_item.added` / `.done` carried them.
    items: BTreeMap<u64, Value>,
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
    pub(super) fn new(limits: UpstreamLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    pub(super) fn feed(&mut self, data: &[u8]) -> Result<EventKind, LimitError> {
        let Ok(event) = serde_json::from_slice::<ResponsesEvent>(data.trim_ascii()) else {
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
        let delta = event.delta.as_ref().and_then(Value::as_str);
        match event.kind.as_str() {
            "response.created" | "response.in_progress" | "response.queued" => {
                if let Some(r) = event.response {
                    self.held = self.held.saturating_add(data.len());
                    self.started_read = read_response(&r);
                    self.started = Some(r);
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                if let Some(r) = event.response {
                    if event.kind == "response.failed" {
                        let failed: Value = serde_json::from_str(r.get()).unwrap_or_default();
                        let code = failed["error"]["code"].as_str().unwrap_or("failed");
                        self.error = Some(format!("response.failed: {code}"));
                    }
                    self.held = self.held.saturating_add(data.len());
                    self.finished_read = read_response(&r);
                    self.finished = Some(r);
                }
            }
            "response.output_item.added" | "response.output_item.done" => {
                if let Some(item) = event.item {
                    self.saw_token |= item["type"] == "function_call";
                    self.held = self.held.saturating_add(data.len());
                    self.items.insert(index, item);
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
                let text = |v: &Option<Value>| match v {
                    Some(Value::String(s)) => s.clone(),
                    _ => String::new(),
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

    pub(super) fn model(&self) -> Option<&str> {
        self.latest().model.as_deref()
    }

    pub(super) fn id(&self) -> Option<&str> {
        self.latest().id.as_deref()
    }

    pub(super) fn usage(&self) -> Option<Usage> {
        self.finished_read.summary.usage
    }

    pub(super) fn finish_reason(&self) -> Option<String> {
        self.finished_read.summary.finish_reason.clone()
    }

    /// The stream reached its terminal event.
    pub(super) fn complete(&self) -> bool {
        self.finished.is_some()
    }

    pub(super) fn has_token(&self) -> bool {
        self.saw_token
    }

    pub(super) fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    pub(super) fn text(&self) -> &str {
        &self.text
    }

    pub(super) fn assembled_bytes(&self) -> usize {
        self.held.saturating_add(self.text.len())
    }

    pub(super) fn item_count(&self) -> usize {
        self.items.len()
    }

    /// The whole `response` object: the terminal event's, or — for a stream that stopped
    /// before it — the started response with the items and text seen so far.
    pub(super) fn to_response(&self) -> Value {
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
            let mut item =
                self.items.get(&index).cloned().unwrap_or_else(
                    || json!({"type": "message", "role": "assistant", "content": []}),
                );
            // Guarded here as in the assembler: setting `content` on an item that is neither
            // an object nor `null` panicked.
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
}

// ---- Anthropic Messages ----

/// Anthropic's usage object; every field may be absent (a `message_delta` carries only what
/// changed, cumulatively).
#[derive(Deserialize, Default, Debug, Clone, Copy)]
struct AnthropicUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    fn merge(&mut self, newer: AnthropicUsage) {
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
    fn to_usage(self) -> Usage {
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

    fn to_json(self) -> Value {
        json!({
            "input_tokens": self.input_tokens.unwrap_or(0),
            "output_tokens": self.output_tokens.unwrap_or(0),
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
        })
    }
}

#[derive(Deserialize)]
struct MessagesEvent {
    #[serde(rename = "type")]
    kind: String,
    message: Option<Value>,
    index: Option<u64>,
    content_block: Option<Value>,
    delta: Option<Value>,
    usage: Option<AnthropicUsage>,
    error: Option<Value>,
}

/// One content block being assembled: its `content_block_start` object and its deltas.
#[derive(Debug, Default)]
struct Block {
    start: Value,
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
        let mut block = if self.start.is_object() {
            self.start.clone()
        } else {
            json!({"type": "text", "text": ""})
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

/// Rebuilds a streamed Messages answer. Content blocks are kept by `index` in a map; an index
/// at or beyond `max_tool_calls` refuses the event, so nothing is sized from an upstream's
/// number.
#[derive(Debug, Default)]
pub(super) struct MessagesAssembler {
    /// The `message` of `message_start`.
    message: Option<Value>,
    blocks: BTreeMap<u64, Block>,
    /// Every `text_delta`, in order.
    text: String,
    stop_reason: Option<String>,
    stop_sequence: Option<Value>,
    usage: Option<AnthropicUsage>,
    stopped: bool,
    saw_token: bool,
    error: Option<String>,
    /// Bytes of event data held besides the blocks' deltas.
    held: usize,
    limits: UpstreamLimits,
}

impl MessagesAssembler {
    pub(super) fn new(limits: UpstreamLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    pub(super) fn feed(&mut self, data: &[u8]) -> Result<EventKind, LimitError> {
        let Ok(event) = serde_json::from_slice::<MessagesEvent>(data.trim_ascii()) else {
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
        match event.kind.as_str() {
            "message_start" => {
                if let Some(message) = event.message {
                    self.held = self.held.saturating_add(data.len());
                    if let Some(u) = message
                        .get("usage")
                        .and_then(|u| serde_json::from_value::<AnthropicUsage>(u.clone()).ok())
                    {
                        self.usage.get_or_insert_default().merge(u);
                    }
                    self.message = Some(message);
                }
            }
            "content_block_start" => {
                let start = event.content_block.unwrap_or(Value::Null);
                self.saw_token |= matches!(start["type"].as_str(), Some("tool_use"));
                self.held = self.held.saturating_add(data.len());
                self.blocks.entry(index).or_default().start = start;
            }
            "content_block_delta" => {
                let delta = event.delta.unwrap_or(Value::Null);
                self.apply_delta(index, &delta);
            }
            "message_delta" => {
                let delta = event.delta.unwrap_or(Value::Null);
                if let Some(r) = delta["stop_reason"].as_str() {
                    self.stop_reason = Some(r.to_owned());
                }
                if let Some(s) = delta.get("stop_sequence") {
                    self.held = self.held.saturating_add(s.to_string().len());
                    self.stop_sequence = Some(s.clone());
                }
                if let Some(u) = event.usage {
                    self.usage.get_or_insert_default().merge(u);
                }
            }
            "message_stop" => self.stopped = true,
            "ping" => return Ok(EventKind::Other),
            "error" => {
                let e = event.error.unwrap_or(Value::Null);
                self.error = Some(format!(
                    "error event {}: {}",
                    e["type"].as_str().unwrap_or_default(),
                    e["message"].as_str().unwrap_or_default()
                ));
            }
            _ => {}
        }
        Ok(EventKind::Chunk)
    }

    fn apply_delta(&mut self, index: u64, delta: &Value) {
        let block = self.blocks.entry(index).or_default();
        let piece = |key: &str| delta[key].as_str().unwrap_or_default();
        match delta["type"].as_str() {
            Some("text_delta") => {
                let t = piece("text");
                self.saw_token |= !t.is_empty();
                block.text.push_str(t);
                self.text.push_str(t);
            }
            Some("input_json_delta") => {
                self.saw_token = true;
                block.json.push_str(piece("partial_json"));
            }
            Some("thinking_delta") => block.thinking.push_str(piece("thinking")),
            Some("signature_delta") => block.signature.push_str(piece("signature")),
            Some("citations_delta") => {
                if let Some(c) = delta.get("citation") {
                    self.held = self.held.saturating_add(c.to_string().len());
                    block.citations.push(c.clone());
                }
            }
            _ => {}
        }
    }

    pub(super) fn model(&self) -> Option<&str> {
        self.message.as_ref().and_then(|m| m["model"].as_str())
    }

    pub(super) fn id(&self) -> Option<&str> {
        self.message.as_ref().and_then(|m| m["id"].as_str())
    }

    pub(super) fn usage(&self) -> Option<Usage> {
        self.usage.map(AnthropicUsage::to_usage)
    }

    pub(super) fn finish_reason(&self) -> Option<String> {
        self.stop_reason.as_deref().map(finish_reason)
    }

    /// The stream reached `message_stop` (or at least its stop reason).
    pub(super) fn complete(&self) -> bool {
        self.stopped || self.stop_reason.is_some()
    }

    pub(super) fn has_token(&self) -> bool {
        self.saw_token
    }

    pub(super) fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    pub(super) fn text(&self) -> &str {
        &self.text
    }

    pub(super) fn assembled_bytes(&self) -> usize {
        // The text deltas are held twice (the block's and the whole text); each came once.
        let blocks: usize = self.blocks.values().map(Block::bytes).sum();
        self.held.saturating_add(blocks)
    }

    pub(super) fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// The whole `message` object, as a non-streamed call returns it.
    pub(super) fn to_response(&self) -> Value {
        let mut message = self
            .message
            .clone()
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
}
