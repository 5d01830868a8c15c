//! A streamed answer translated event by event: each upstream event's data in, the client's
//! events (whole SSE frames) out, as they come — nothing waits for the end of the stream but
//! what the client's API itself sends last (chat's usage chunk and `[DONE]`; Messages'
//! `message_delta`, which carries the stop reason with the final usage, and `message_stop`).
//!
//! Anthropic events → chat chunks ([`ToChat`]): `message_start` is the first chunk (`role`),
//! a `text_delta` a `content` delta, a `tool_use` block's start a tool call's first delta (id,
//! name) and its `input_json_delta`s its `arguments` deltas, `message_delta` the chunk with
//! the `finish_reason`, `message_stop` the usage chunk (only when the client asked for it with
//! `stream_options.include_usage`) and `data: [DONE]`; an `error` event an OpenAI error object.
//! `ping`, `thinking` and citation deltas have no chat form and are not forwarded.
//!
//! Chat chunks → Anthropic events ([`ToMessages`]): the first chunk opens `message_start`,
//! content deltas a `text` block's `text_delta`s, each new tool call index closes the open
//! block and opens a `tool_use` block whose `input_json_delta`s are its argument deltas; the
//! finish reason and usage are held until `[DONE]` (chat sends usage after the finish reason),
//! which closes the open block and sends `message_delta` and `message_stop`; an error object
//! is an Anthropic `error` event.
//!
//! Whatever the upstream sends, nothing panics and the state held is bounded: a few ids and
//! names (each at most one event's size) and at most `max_tool_calls` tool indices; an event
//! that is not JSON, or not of the expected form, produces nothing.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Direction;
use super::answer::{chat_usage, messages_usage, stop_reason};
use crate::upstream::messages::finish_reason;

/// One stream's translator, in the direction of the request it answers.
#[derive(Debug)]
pub enum StreamTranslator {
    ToChat(ToChat),
    ToMessages(ToMessages),
}

impl StreamTranslator {
    /// `wants_usage`: the chat client asked for the usage chunk; `created`: the chunks'
    /// timestamp; `max_tools`: the most tool calls kept (`upstream_limits.max_tool_calls`).
    pub fn new(direction: Direction, wants_usage: bool, created: i64, max_tools: usize) -> Self {
        match direction {
            Direction::ChatToMessages => Self::ToChat(ToChat {
                wants_usage,
                created,
                max_tools,
                ..ToChat::default()
            }),
            Direction::MessagesToChat => Self::ToMessages(ToMessages {
                max_tools,
                ..ToMessages::default()
            }),
        }
    }

    /// The client's frames for one upstream event's `data`.
    pub fn event(&mut self, data: &[u8]) -> Vec<Bytes> {
        let mut out = Vec::new();
        match self {
            Self::ToChat(t) => t.event(data, &mut out),
            Self::ToMessages(t) => t.event(data, &mut out),
        }
        out
    }

    /// The upstream's stream ended: the frames that end the client's stream, when the
    /// upstream had reached its answer's end without sending its last event; nothing for a
    /// stream already ended, or cut off before its stop reason.
    pub fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        match self {
            Self::ToChat(t) if !t.done && t.finish.is_some() => t.end(&mut out),
            Self::ToMessages(t) if !t.done && t.finish.is_some() => t.end(&mut out),
            _ => {}
        }
        out
    }

    /// An error event in the client's API: an OpenAI error object (chat), an Anthropic
    /// `error` event (Messages).
    pub fn error_event(&self, message: &str, code: &str) -> Bytes {
        match self {
            Self::ToChat(_) => chat_error(message, "upstream_error", Some(code)),
            Self::ToMessages(_) => anthropic_error(message, "api_error"),
        }
    }
}

fn chat_error(message: &str, kind: &str, code: Option<&str>) -> Bytes {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    Bytes::from(format!("data: {body}\n\n"))
}

fn anthropic_error(message: &str, kind: &str) -> Bytes {
    event_frame(&json!({"type": "error", "error": {"type": kind, "message": message}}))
}

/// An Anthropic SSE frame: `event: <type>` and the data.
fn event_frame(data: &Value) -> Bytes {
    let kind = data["type"].as_str().unwrap_or("message");
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

#[derive(Deserialize)]
struct AnthropicEvent {
    #[serde(rename = "type")]
    kind: String,
    message: Option<Value>,
    index: Option<u64>,
    content_block: Option<Value>,
    delta: Option<Value>,
    usage: Option<Value>,
    error: Option<Value>,
}

/// Anthropic events → chat completion chunks.
#[derive(Debug, Default)]
pub struct ToChat {
    wants_usage: bool,
    created: i64,
    max_tools: usize,
    id: Value,
    model: Value,
    /// Content block index → the chat tool call index of a `tool_use` block.
    tools: BTreeMap<u64, u64>,
    /// Anthropic's usage, merged from `message_start` and `message_delta`.
    usage: serde_json::Map<String, Value>,
    finish: Option<String>,
    done: bool,
}

impl ToChat {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        let body = json!({"id": self.id, "object": "chat.completion.chunk",
            "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        Bytes::from(format!("data: {body}\n\n"))
    }

    fn merge_usage(&mut self, usage: Option<&Value>) {
        if let Some(u) = usage.and_then(Value::as_object) {
            for (k, v) in u {
                if v.is_u64() {
                    self.usage.insert(k.clone(), v.clone());
                }
            }
        }
    }

    fn event(&mut self, data: &[u8], out: &mut Vec<Bytes>) {
        let Ok(e) = serde_json::from_slice::<AnthropicEvent>(data.trim_ascii()) else {
            return;
        };
        match e.kind.as_str() {
            "message_start" => {
                let m = e.message.unwrap_or(Value::Null);
                self.id = short(&m["id"]);
                self.model = short(&m["model"]);
                self.merge_usage(m.get("usage"));
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            "content_block_start" => {
                let block = e.content_block.unwrap_or(Value::Null);
                let index = e.index.unwrap_or(0);
                match block["type"].as_str() {
                    Some("text") => {
                        if let Some(t) = block["text"].as_str().filter(|t| !t.is_empty()) {
                            out.push(self.chunk(json!({"content": t}), None));
                        }
                    }
                    Some("tool_use") if self.tools.len() < self.max_tools => {
                        let n = self.tools.len() as u64;
                        let n = *self.tools.entry(index).or_insert(n);
                        let input = block.get("input").filter(|i| !empty(i));
                        let arguments = input.map_or_else(String::new, Value::to_string);
                        out.push(self.chunk(json!({"tool_calls": [{"index": n, "id": block["id"],
                            "type": "function", "function": {"name": block["name"], "arguments": arguments}}]}), None));
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = e.delta.unwrap_or(Value::Null);
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        if let Some(t) = delta["text"].as_str().filter(|t| !t.is_empty()) {
                            out.push(self.chunk(json!({"content": t}), None));
                        }
                    }
                    Some("input_json_delta") => {
                        let tool = self.tools.get(&e.index.unwrap_or(0)).copied();
                        if let (Some(n), Some(j)) = (tool, delta["partial_json"].as_str()) {
                            out.push(self.chunk(
                                json!({"tool_calls": [{"index": n,
                                "function": {"arguments": j}}]}),
                                None,
                            ));
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                self.merge_usage(e.usage.as_ref());
                if let Some(r) = e.delta.as_ref().and_then(|d| d["stop_reason"].as_str()) {
                    let f = finish_reason(r);
                    out.push(self.chunk(json!({}), Some(&f)));
                    self.finish = Some(f);
                }
            }
            "message_stop" if !self.done => self.end(out),
            "error" => {
                let err = e.error.unwrap_or(Value::Null);
                let message = err["message"]
                    .as_str()
                    .unwrap_or("the upstream stream failed");
                let kind = err["type"].as_str().unwrap_or("api_error");
                out.push(chat_error(message, kind, None));
            }
            _ => {}
        }
    }

    /// The usage chunk (when asked for) and `[DONE]`.
    fn end(&mut self, out: &mut Vec<Bytes>) {
        self.done = true;
        if self.wants_usage {
            let usage = chat_usage(&Value::Object(self.usage.clone()));
            let body = json!({"id": self.id, "object": "chat.completion.chunk",
                "created": self.created, "model": self.model, "choices": [], "usage": usage});
            out.push(Bytes::from(format!("data: {body}\n\n")));
        }
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    }
}

/// An id or model name as echoed in every frame: a string of at most 256 bytes (cut at a
/// character boundary), else `null`.
fn short(v: &Value) -> Value {
    let Some(s) = v.as_str() else {
        return Value::Null;
    };
    let mut end = s.len().min(256);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Value::String(s[..end].to_owned())
}

/// Whether a block's start `input` is empty (`{}`), as a streamed `tool_use` block's is.
fn empty(v: &Value) -> bool {
    v.is_null() || v.as_object().is_some_and(serde_json::Map::is_empty)
}

/// Chat completion chunks → Anthropic events.
#[derive(Debug, Default)]
pub struct ToMessages {
    max_tools: usize,
    started: bool,
    /// The open content block's index, and whether it is text.
    open: Option<(u64, bool)>,
    next_block: u64,
    /// Chat tool call index → content block index.
    tools: BTreeMap<u64, u64>,
    finish: Option<String>,
    usage: Option<Value>,
    done: bool,
}

impl ToMessages {
    fn event(&mut self, data: &[u8], out: &mut Vec<Bytes>) {
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            if !self.done {
                self.start(&Value::Null, out);
                self.end(out);
            }
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if let Some(err) = chunk.get("error").filter(|e| e.is_object()) {
            let message = err["message"]
                .as_str()
                .unwrap_or("the upstream stream failed");
            out.push(anthropic_error(message, "api_error"));
            return;
        }
        if self.done {
            return;
        }
        self.start(&chunk, out);
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        let Some(choice) = chunk["choices"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["index"].as_u64().unwrap_or(0) == 0))
        else {
            return;
        };
        let delta = &choice["delta"];
        for key in ["content", "refusal"] {
            if let Some(t) = delta[key].as_str().filter(|t| !t.is_empty()) {
                let index = self.block(true, out, |i| {
                    json!({"type": "content_block_start",
                    "index": i, "content_block": {"type": "text", "text": ""}})
                });
                out.push(event_frame(
                    &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": t}}),
                ));
            }
        }
        for call in delta["tool_calls"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
        {
            self.tool_delta(call, out);
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            self.finish = Some(f.to_owned());
        }
    }

    /// `message_start`, once, from the first chunk's id and model.
    fn start(&mut self, chunk: &Value, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(event_frame(&json!({"type": "message_start", "message": {
            "id": short(&chunk["id"]), "type": "message", "role": "assistant",
            "model": short(&chunk["model"]),
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0}}})));
    }

    /// The index of the open block of the kind asked for (`text`), opening one (closing the
    /// open block) when needed with the start event `start` makes.
    fn block(&mut self, text: bool, out: &mut Vec<Bytes>, start: impl Fn(u64) -> Value) -> u64 {
        if let Some((i, true)) = self.open.filter(|_| text) {
            return i;
        }
        self.close(out);
        let i = self.next_block;
        self.next_block += 1;
        self.open = Some((i, text));
        out.push(event_frame(&start(i)));
        i
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if let Some((i, _)) = self.open.take() {
            out.push(event_frame(
                &json!({"type": "content_block_stop", "index": i}),
            ));
        }
    }

    fn tool_delta(&mut self, call: &Value, out: &mut Vec<Bytes>) {
        let n = call["index"].as_u64().unwrap_or(0);
        let f = &call["function"];
        let index = match self.tools.get(&n) {
            Some(i) => *i,
            None if self.tools.len() < self.max_tools => {
                let id = call["id"]
                    .as_str()
                    .map_or_else(|| format!("toolu_{n}"), str::to_owned);
                let name = f["name"].as_str().unwrap_or_default().to_owned();
                let i = self.block(false, out, |i| {
                    json!({"type": "content_block_start",
                    "index": i, "content_block": {"type": "tool_use", "id": id, "name": name,
                    "input": {}}})
                });
                self.tools.insert(n, i);
                i
            }
            None => return,
        };
        if let Some(args) = f["arguments"].as_str().filter(|a| !a.is_empty()) {
            out.push(event_frame(
                &json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": args}}),
            ));
        }
    }

    /// Closes the open block and sends `message_delta` (stop reason, usage) and `message_stop`.
    fn end(&mut self, out: &mut Vec<Bytes>) {
        self.done = true;
        self.close(out);
        let stop = self.finish.as_deref().map(stop_reason);
        let usage = messages_usage(self.usage.as_ref().unwrap_or(&Value::Null));
        out.push(event_frame(&json!({"type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": usage})));
        out.push(event_frame(&json!({"type": "message_stop"})));
    }
}

#[cfg(test)]
#[path = "stream_fuzz.rs"]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamLimits;
    use crate::upstream::sse::{StreamReader, event_data};

    /// Feeds `events` (data) through a translator and reads the client's stream back with the
    /// client API's own assembler.
    fn round_trip(
        direction: Direction,
        events: &[Value],
        wants_usage: bool,
    ) -> (String, Vec<Bytes>, StreamReader) {
        let mut t = StreamTranslator::new(direction, wants_usage, 1, 8);
        let mut frames = Vec::new();
        for e in events {
            let data = if e == "[DONE]" {
                "[DONE]".to_owned()
            } else {
                e.to_string()
            };
            frames.extend(t.event(data.as_bytes()));
        }
        frames.extend(t.finish());
        let client = match direction {
            Direction::ChatToMessages => crate::upstream::shape::OpenAi::CHAT_COMPLETIONS
                .stream_assembler(UpstreamLimits::default()),
            Direction::MessagesToChat => {
                crate::upstream::shape::Messages.stream_assembler(UpstreamLimits::default())
            }
        };
        let mut reader = StreamReader::with_assembler(client, UpstreamLimits::default());
        let text: String = frames
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        reader.push(text.clone().into()).unwrap();
        (text, frames, reader)
    }

    use crate::upstream::shape::WireShape;

    #[test]
    fn an_anthropic_stream_reads_as_a_chat_stream_event_by_event() {
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude",
                "usage": {"input_tokens": 10, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block":
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"id\":"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "7}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
            json!({"type": "message_stop"}),
        ];
        let (text, frames, reader) = round_trip(Direction::ChatToMessages, &events, true);
        // One chunk per content event, then the finish chunk, the usage chunk and [DONE].
        assert_eq!(frames.len(), 1 + 2 + 1 + 2 + 1 + 1 + 1, "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"));
        let a = reader.assembler();
        assert!(a.complete());
        assert_eq!(a.text(), "Hello");
        assert_eq!(a.finish_reason().as_deref(), Some("tool_calls"));
        let u = a.usage().unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (10, 9));
        let r = a.to_response();
        let call = &r["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["id"], "toolu_1");
        assert_eq!(call["function"]["arguments"], "{\"id\":7}");
        // Without include_usage, no usage chunk.
        let (_, frames, _) = round_trip(Direction::ChatToMessages, &events, false);
        assert_eq!(frames.len(), 8);
    }

    #[test]
    fn a_chat_stream_reads_as_an_anthropic_stream() {
        let c = |delta: Value, finish: Value| {
            json!({"id": "chatcmpl-1", "model": "gpt",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        let events = [
            c(json!({"role": "assistant", "content": ""}), Value::Null),
            c(json!({"content": "Hel"}), Value::Null),
            c(json!({"content": "lo"}), Value::Null),
            c(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                "function": {"name": "lookup", "arguments": ""}}]}),
                Value::Null,
            ),
            c(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"id\":7}"}}]}),
                Value::Null,
            ),
            c(
                json!({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                "function": {"name": "other", "arguments": "{}"}}]}),
                Value::Null,
            ),
            c(json!({}), json!("tool_calls")),
            json!({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 12,
                "completion_tokens": 4, "total_tokens": 16}}),
            json!("[DONE]"),
        ];
        let (text, _, reader) = round_trip(Direction::MessagesToChat, &events, false);
        let a = reader.assembler();
        assert!(a.complete(), "{text}");
        assert_eq!(a.text(), "Hello");
        assert_eq!(a.finish_reason().as_deref(), Some("tool_calls"));
        let u = a.usage().unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (12, 4));
        let m = a.to_response();
        assert_eq!(m["content"][1]["input"], json!({"id": 7}));
        assert_eq!(m["content"][1]["id"], "call_1");
        assert_eq!(m["content"][2]["name"], "other");
        assert_eq!(m["stop_reason"], "tool_use");
        // Every content_block_start has its stop, in order.
        let kinds: Vec<String> = text
            .split("\n\n")
            .filter_map(|f| event_data(f.as_bytes()))
            .map(|d| {
                serde_json::from_slice::<Value>(&d).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(kinds.first().map(String::as_str), Some("message_start"));
        assert_eq!(&kinds[kinds.len() - 2..], ["message_delta", "message_stop"]);
        let starts = kinds.iter().filter(|k| *k == "content_block_start").count();
        let stops = kinds.iter().filter(|k| *k == "content_block_stop").count();
        assert_eq!((starts, stops), (3, 3));
    }

    #[test]
    fn errors_mid_stream_are_in_the_clients_shape_and_a_cut_stream_is_not_completed() {
        let mut t = StreamTranslator::new(Direction::ChatToMessages, false, 0, 8);
        let e = t.event(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        let body: Value = serde_json::from_slice(&event_data(&e[0]).unwrap()).unwrap();
        assert_eq!(body["error"]["message"], "Overloaded");
        assert_eq!(body["error"]["type"], "overloaded_error");
        assert!(
            t.finish().is_empty(),
            "no [DONE] for a stream that never finished"
        );
        let mut t = StreamTranslator::new(Direction::MessagesToChat, false, 0, 8);
        let e = t.event(br#"{"error":{"message":"boom","type":"server_error"}}"#);
        assert!(String::from_utf8_lossy(&e[0]).starts_with("event: error\n"));
        // A finish reason but no [DONE]: the end is sent when the upstream's stream ends.
        t.event(
            br#"{"id":"c","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}"#,
        );
        let end = t.finish();
        assert!(String::from_utf8_lossy(end.last().unwrap()).starts_with("event: message_stop"));
        assert!(t.finish().is_empty());
    }
}
