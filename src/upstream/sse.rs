//! Server-sent events from OpenAI-compatible upstreams: splitting a byte stream into events and
//! assembling the chunks into the full answer (content, tool calls, finish reason, usage) for
//! capture. Pure: bytes in, events and an assembled response out.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use crate::capture::Usage;

/// Splits a byte stream into complete SSE events (each ending with a blank line).
#[derive(Debug, Default)]
pub struct EventSplitter {
    buf: BytesMut,
}

impl EventSplitter {
    /// Appends `chunk` and returns every event it completes, with its terminating blank line.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = find_event_end(&self.buf) {
            events.push(self.buf.split_to(end).freeze());
        }
        events
    }

    /// Whatever is left when the stream ends (an incomplete event), if anything.
    pub fn finish(&mut self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// Index just past the first blank line (`\n\n` or `\r\n\r\n`), if any.
fn find_event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' {
            if buf[i + 1] == b'\n' {
                return Some(i + 2);
            }
            if buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// The `data` of an event (lines joined with `\n`), or `None` for comment/empty events.
pub fn event_data(event: &[u8]) -> Option<Vec<u8>> {
    let mut data: Option<Vec<u8>> = None;
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            let d = data.get_or_insert_with(Vec::new);
            if !d.is_empty() {
                d.push(b'\n');
            }
            d.extend_from_slice(rest);
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
    index: u32,
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
    #[serde(default)]
    tool_calls: Vec<ToolCallDelta>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: usize,
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

#[derive(Deserialize)]
pub(crate) struct RawUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
}

impl From<RawUsage> for Usage {
    fn from(u: RawUsage) -> Self {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens.max(u.prompt_tokens + u.completion_tokens),
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

/// Rebuilds the full answer from a stream's chunks (choice 0).
#[derive(Debug, Default)]
pub struct StreamAssembler {
    id: Option<String>,
    model: Option<String>,
    created: Option<i64>,
    role: Option<String>,
    content: String,
    refusal: Option<String>,
    saw_content: bool,
    tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    pub done: bool,
    chat: bool,
}

impl StreamAssembler {
    pub fn new(chat: bool) -> Self {
        Self {
            chat,
            ..Self::default()
        }
    }

    /// Feeds one event's data; returns what kind of event it was.
    pub fn feed(&mut self, data: &[u8]) -> EventKind {
        let trimmed = data.trim_ascii();
        if trimmed == b"[DONE]" {
            self.done = true;
            return EventKind::Done;
        }
        let Ok(chunk) = serde_json::from_slice::<Chunk>(trimmed) else {
            return EventKind::Malformed;
        };
        self.id = self.id.take().or(chunk.id);
        self.model = self.model.take().or(chunk.model);
        self.created = self.created.or(chunk.created);
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        if chunk.choices.is_empty() {
            return if self.usage.is_some() {
                EventKind::UsageOnly
            } else {
                EventKind::Other
            };
        }
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
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
                for tc in delta.tool_calls {
                    self.saw_content = true;
                    if self.tool_calls.len() <= tc.index {
                        self.tool_calls.resize(tc.index + 1, ToolCall::default());
                    }
                    let call = &mut self.tool_calls[tc.index];
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
        EventKind::Chunk
    }

    /// Whether a token (content, refusal or tool call) has arrived yet.
    pub fn has_token(&self) -> bool {
        self.saw_content
    }

    /// The stream ended properly: `[DONE]` or a finish reason.
    pub fn complete(&self) -> bool {
        self.done || self.finish_reason.is_some()
    }

    pub fn text(&self) -> &str {
        &self.content
    }

    /// The answer as the non-streamed response object would have carried it.
    pub fn to_response(&self) -> serde_json::Value {
        use serde_json::json;
        let usage = self.usage.map(|u| {
            json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                   "total_tokens": u.total_tokens})
        });
        if !self.chat {
            return json!({
                "id": self.id, "object": "text_completion", "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "text": self.content, "finish_reason": self.finish_reason}],
                "usage": usage,
            });
        }
        let mut message = json!({"role": self.role.as_deref().unwrap_or("assistant"),
                                 "content": if self.content.is_empty() && !self.tool_calls.is_empty() { serde_json::Value::Null } else { json!(self.content) }});
        if let Some(r) = &self.refusal {
            message["refusal"] = json!(r);
        }
        if !self.tool_calls.is_empty() {
            message["tool_calls"] = self
                .tool_calls
                .iter()
                .map(|t| {
                    json!({"id": t.id, "type": if t.kind.is_empty() { "function" } else { &t.kind },
                                "function": {"name": t.name, "arguments": t.arguments}})
                })
                .collect();
        }
        json!({
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
            "usage": usage,
        })
    }
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
    fn splitter_handles_events_across_chunks() {
        let mut s = EventSplitter::default();
        assert!(s.push(b"data: {\"a\"").is_empty());
        let events = s.push(b":1}\n\ndata: [DONE]\n\n");
        assert_eq!(events.len(), 2);
        assert_eq!(event_data(&events[0]).unwrap(), b"{\"a\":1}");
        assert_eq!(event_data(&events[1]).unwrap(), b"[DONE]");
        assert_eq!(s.finish(), None);
        let crlf = s.push(b"data: x\r\n\r\n");
        assert_eq!(event_data(&crlf[0]).unwrap(), b"x");
    }

    #[test]
    fn assembler_rebuilds_content_tool_calls_and_usage() {
        let mut a = StreamAssembler::new(true);
        let feed = |a: &mut StreamAssembler, s: &str| a.feed(s.as_bytes());
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
