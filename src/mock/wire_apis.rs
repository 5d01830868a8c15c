//! The wire shapes of the OpenAI Responses API and the Anthropic Messages API as the mock
//! speaks them: reading a request's prompt, building whole answers, the typed SSE events of
//! each (`event: <type>` and `data: <json>` per frame; Responses events carry
//! `sequence_number`), and Anthropic's error shape.
//!
//! Responses stream: `response.created`, `response.in_progress`, `response.output_item.added`,
//! `response.content_part.added`, `response.output_text.delta`…, `response.output_text.done`,
//! `response.content_part.done`, `response.output_item.done`, `response.completed`.
//! Messages stream: `message_start`, `content_block_start`, `ping`, `content_block_delta`
//! (`text_delta`)…, `content_block_stop`, `message_delta` (stop reason and usage),
//! `message_stop`.
//!
//! Owns: JSON shapes only. Never: sleeps, logs or decides anything (see `answer`).

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::tools::{self, ToolCallPlan};
use super::wire::{Head, MockHttpError, content_text};

/// Which of the two APIs a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Responses,
    Messages,
}

impl Api {
    pub fn path(self) -> &'static str {
        match self {
            Api::Responses => "/v1/responses",
            Api::Messages => "/v1/messages",
        }
    }

    pub fn id_prefix(self) -> &'static str {
        match self {
            Api::Responses => "resp",
            Api::Messages => "msg",
        }
    }

    /// `e` in this API's error shape.
    pub fn error(self, e: &MockHttpError) -> Response {
        match self {
            Api::Responses => e.clone().into_response(),
            Api::Messages => anthropic_error(e),
        }
    }
}

/// `e` as Anthropic shapes errors: `{"type": "error", "error": {"type", "message"}}`, with the
/// error type Anthropic uses for its status.
pub fn anthropic_error(e: &MockHttpError) -> Response {
    let kind = match e.status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    };
    let body = json!({"type": "error", "error": {"type": kind, "message": e.message}});
    let mut response = (e.status, axum::Json(body)).into_response();
    if let Some(secs) = e.retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The unit key the mock's draws use: `x-canarist-unit`, else `safety_identifier`, `user`,
/// `metadata.user_id`.
pub fn unit<'a>(headers: &'a HeaderMap, body: &'a Map<String, Value>) -> Option<&'a str> {
    headers
        .get("x-canarist-unit")
        .and_then(|v| v.to_str().ok())
        .or_else(|| body.get("safety_identifier").and_then(Value::as_str))
        .or_else(|| body.get("user").and_then(Value::as_str))
        .or_else(|| {
            body.get("metadata")
                .and_then(|m| m.get("user_id"))
                .and_then(Value::as_str)
        })
        .filter(|u| !u.is_empty())
}

/// `(last user text, all input text)` of a Responses request: `input` is a string or a list of
/// input items (messages whose `content` is a string or `input_text` parts); `instructions`
/// counts as input.
pub fn responses_prompt(body: &Map<String, Value>) -> Result<(String, String), MockHttpError> {
    let instructions = body
        .get("instructions")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (last_user, texts) = match body.get("input") {
        None | Some(Value::Null) => return Err(MockHttpError::missing("input")),
        Some(Value::String(s)) => (s.clone(), vec![s.clone()]),
        Some(Value::Array(items)) if !items.is_empty() => last_user_and_texts(items),
        Some(_) => {
            return Err(MockHttpError::invalid(
                "'input' must be a string or a non-empty array of input items.",
                Some("input"),
            ));
        }
    };
    Ok((last_user, join_all(instructions, &texts)))
}

/// `(last user text, all input text)` of a Messages request; `max_tokens` is required (as by
/// Anthropic) when `require_max_tokens`, and `system` (a string or text blocks) counts as input.
pub fn messages_prompt(
    body: &Map<String, Value>,
    require_max_tokens: bool,
) -> Result<(String, String), MockHttpError> {
    if require_max_tokens {
        match body.get("max_tokens") {
            Some(v) if v.as_u64().is_some_and(|n| n >= 1) => {}
            None | Some(Value::Null) => {
                return Err(MockHttpError::invalid(
                    "max_tokens: Field required",
                    Some("max_tokens"),
                ));
            }
            Some(_) => {
                return Err(MockHttpError::invalid(
                    "max_tokens: Input should be a positive integer",
                    Some("max_tokens"),
                ));
            }
        }
    }
    let messages = match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        None | Some(Value::Null) => {
            return Err(MockHttpError::invalid(
                "messages: Field required",
                Some("messages"),
            ));
        }
        Some(_) => {
            return Err(MockHttpError::invalid(
                "messages: Input should be a non-empty list",
                Some("messages"),
            ));
        }
    };
    let system = body.get("system").map(content_text).unwrap_or_default();
    let (last_user, texts) = last_user_and_texts(messages);
    Ok((last_user, join_all(&system, &texts)))
}

fn last_user_and_texts(items: &[Value]) -> (String, Vec<String>) {
    let texts: Vec<String> = items
        .iter()
        .map(|m| m.get("content").map(content_text).unwrap_or_default())
        .collect();
    let last_user = items
        .iter()
        .zip(&texts)
        .rev()
        .find(|(m, _)| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    (last_user, texts)
}

fn join_all(first: &str, rest: &[String]) -> String {
    let mut all = String::from(first);
    for t in rest {
        if !all.is_empty() {
            all.push('\n');
        }
        all.push_str(t);
    }
    all
}

pub fn responses_usage(input: u64, output: u64) -> Value {
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + output,
    })
}

fn item_id(head: &Head) -> String {
    format!("msg_{}", head.id.trim_start_matches("resp-"))
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// The assistant message output item; `text: None` is an item that has no content yet.
pub fn message_item(head: &Head, status: &str, text: Option<&str>) -> Value {
    let content: Vec<Value> = text.map(output_text).into_iter().collect();
    json!({
        "type": "message",
        "id": item_id(head),
        "status": status,
        "role": "assistant",
        "content": content,
    })
}

/// A Responses API `response` object, echoing the request's settings.
pub fn response_object(
    head: &Head,
    status: &str,
    output: Vec<Value>,
    usage: Option<Value>,
    request: &Map<String, Value>,
) -> Value {
    let echo = |key: &str| request.get(key).cloned().unwrap_or(Value::Null);
    json!({
        "id": head.id,
        "object": "response",
        "created_at": head.created,
        "status": status,
        "background": request.get("background").cloned().unwrap_or(json!(false)),
        "error": null,
        "incomplete_details": null,
        "instructions": echo("instructions"),
        "max_output_tokens": echo("max_output_tokens"),
        "metadata": request.get("metadata").cloned().unwrap_or(json!({})),
        "model": head.model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": echo("previous_response_id"),
        "reasoning": {"effort": null, "summary": null},
        "store": request.get("store").cloned().unwrap_or(json!(true)),
        "temperature": request.get("temperature").cloned().unwrap_or(json!(1.0)),
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": request.get("top_p").cloned().unwrap_or(json!(1.0)),
        "truncation": "disabled",
        "usage": usage,
        "user": echo("user"),
    })
}

fn anthropic_usage(input: u64, output: u64) -> Value {
    json!({
        "input_tokens": input,
        "output_tokens": output,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    })
}

/// An Anthropic `message` object: one text block, `end_turn`.
pub fn message_object(head: &Head, text: &str, input: u64, output: u64) -> Value {
    json!({
        "id": head.id.replacen("msg-", "msg_", 1),
        "type": "message",
        "role": "assistant",
        "model": head.model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": anthropic_usage(input, output),
    })
}

/// One typed SSE frame: `event: <type>` and its `data:` line.
pub fn typed_sse(kind: &str, data: &Value) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Serializing a `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The events of one streamed answer, in order: [`opening`](Self::opening), a
/// [`delta`](Self::delta) per piece of text, [`closing`](Self::closing). Responses events are
/// numbered by `sequence_number` from 0.
pub struct Events<'a> {
    api: Api,
    head: &'a Head,
    request: &'a Map<String, Value>,
    input_tokens: u64,
    seq: u64,
}

impl<'a> Events<'a> {
    pub fn new(
        api: Api,
        head: &'a Head,
        request: &'a Map<String, Value>,
        input_tokens: u64,
    ) -> Self {
        Self {
            api,
            head,
            request,
            input_tokens,
            seq: 0,
        }
    }

    /// A Responses event: `fields` plus `type` and the next `sequence_number`.
    fn event(&mut self, kind: &str, fields: Value) -> Bytes {
        let mut data = json!({"type": kind, "sequence_number": self.seq});
        self.seq += 1;
        if let (Some(obj), Value::Object(more)) = (data.as_object_mut(), fields) {
            obj.extend(more);
        }
        typed_sse(kind, &data)
    }

    fn anthropic(kind: &str, fields: Value) -> Bytes {
        let mut data = json!({"type": kind});
        if let (Some(obj), Value::Object(more)) = (data.as_object_mut(), fields) {
            obj.extend(more);
        }
        typed_sse(kind, &data)
    }

    fn text_at(&self) -> Value {
        json!({"item_id": item_id(self.head), "output_index": 0, "content_index": 0})
    }

    fn with_text_at(&self, more: Value) -> Value {
        let mut at = self.text_at();
        if let (Some(obj), Value::Object(more)) = (at.as_object_mut(), more) {
            obj.extend(more);
        }
        at
    }

    /// Everything before the first text delta.
    pub fn opening(&mut self) -> Vec<Bytes> {
        match self.api {
            Api::Responses => {
                let created = response_object(self.head, "in_progress", vec![], None, self.request);
                vec![
                    self.event("response.created", json!({"response": created.clone()})),
                    self.event("response.in_progress", json!({"response": created})),
                    self.event(
                        "response.output_item.added",
                        json!({"output_index": 0,
                               "item": message_item(self.head, "in_progress", None)}),
                    ),
                    self.event(
                        "response.content_part.added",
                        self.with_text_at(json!({"part": output_text("")})),
                    ),
                ]
            }
            Api::Messages => {
                let mut message = message_object(self.head, "", self.input_tokens, 1);
                message["content"] = json!([]);
                message["stop_reason"] = Value::Null;
                vec![
                    Self::anthropic("message_start", json!({"message": message})),
                    Self::anthropic(
                        "content_block_start",
                        json!({"index": 0, "content_block": {"type": "text", "text": ""}}),
                    ),
                    Self::anthropic("ping", json!({})),
                ]
            }
        }
    }

    /// One piece of the answer's text.
    pub fn delta(&mut self, piece: &str) -> Bytes {
        match self.api {
            Api::Responses => {
                let fields = self.with_text_at(json!({"delta": piece, "logprobs": []}));
                self.event("response.output_text.delta", fields)
            }
            Api::Messages => Self::anthropic(
                "content_block_delta",
                json!({"index": 0, "delta": {"type": "text_delta", "text": piece}}),
            ),
        }
    }

    /// A delta frame whose data is not valid JSON (an object cut off in a string).
    pub fn malformed_delta(&mut self) -> Bytes {
        let kind = match self.api {
            Api::Responses => "response.output_text.delta",
            Api::Messages => "content_block_delta",
        };
        self.seq += 1;
        Bytes::from(format!(
            "event: {kind}\ndata: {{\"type\":\"{kind}\",\"delta\":\"\n\n"
        ))
    }

    /// Everything before the first piece of a tool call's arguments.
    pub fn tool_opening(&mut self, call_id: &str, call: &ToolCallPlan) -> Vec<Bytes> {
        match self.api {
            Api::Responses => {
                let created = response_object(self.head, "in_progress", vec![], None, self.request);
                let mut item = tools::function_call_item(self.head, call_id, call);
                item["arguments"] = json!("");
                item["status"] = json!("in_progress");
                vec![
                    self.event("response.created", json!({"response": created.clone()})),
                    self.event("response.in_progress", json!({"response": created})),
                    self.event(
                        "response.output_item.added",
                        json!({"output_index": 0, "item": item}),
                    ),
                ]
            }
            Api::Messages => {
                let mut message = message_object(self.head, "", self.input_tokens, 1);
                message["content"] = json!([]);
                message["stop_reason"] = Value::Null;
                let mut block = tools::tool_use_block(call_id, call);
                block["input"] = json!({});
                vec![
                    Self::anthropic("message_start", json!({"message": message})),
                    Self::anthropic(
                        "content_block_start",
                        json!({"index": 0, "content_block": block}),
                    ),
                    Self::anthropic("ping", json!({})),
                ]
            }
        }
    }

    /// One piece of a tool call's arguments.
    pub fn tool_delta(&mut self, piece: &str) -> Bytes {
        match self.api {
            Api::Responses => {
                let item_id = format!("fc_{}", self.head.id);
                self.event(
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": 0, "delta": piece}),
                )
            }
            Api::Messages => Self::anthropic(
                "content_block_delta",
                json!({"index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}}),
            ),
        }
    }

    /// Everything after a tool call's last argument piece.
    pub fn tool_closing(
        &mut self,
        call_id: &str,
        call: &ToolCallPlan,
        (input, output): (u64, u64),
    ) -> Vec<Bytes> {
        match self.api {
            Api::Responses => {
                let item = tools::function_call_item(self.head, call_id, call);
                let done = response_object(
                    self.head,
                    "completed",
                    vec![item.clone()],
                    Some(responses_usage(input, output)),
                    self.request,
                );
                let item_id = format!("fc_{}", self.head.id);
                vec![
                    self.event(
                        "response.function_call_arguments.done",
                        json!({"item_id": item_id, "output_index": 0,
                               "arguments": call.arguments}),
                    ),
                    self.event(
                        "response.output_item.done",
                        json!({"output_index": 0, "item": item}),
                    ),
                    self.event("response.completed", json!({"response": done})),
                ]
            }
            Api::Messages => vec![
                Self::anthropic("content_block_stop", json!({"index": 0})),
                Self::anthropic(
                    "message_delta",
                    json!({"delta": {"stop_reason": "tool_use", "stop_sequence": null},
                           "usage": {"output_tokens": output}}),
                ),
                Self::anthropic("message_stop", json!({})),
            ],
        }
    }

    /// Everything after the last text delta; `usage` is `(input, output)` tokens.
    pub fn closing(&mut self, text: &str, (input, output): (u64, u64)) -> Vec<Bytes> {
        match self.api {
            Api::Responses => {
                let item = message_item(self.head, "completed", Some(text));
                let done = response_object(
                    self.head,
                    "completed",
                    vec![item.clone()],
                    Some(responses_usage(input, output)),
                    self.request,
                );
                vec![
                    self.event(
                        "response.output_text.done",
                        self.with_text_at(json!({"text": text, "logprobs": []})),
                    ),
                    self.event(
                        "response.content_part.done",
                        self.with_text_at(json!({"part": output_text(text)})),
                    ),
                    self.event(
                        "response.output_item.done",
                        json!({"output_index": 0, "item": item}),
                    ),
                    self.event("response.completed", json!({"response": done})),
                ]
            }
            Api::Messages => vec![
                Self::anthropic("content_block_stop", json!({"index": 0})),
                Self::anthropic(
                    "message_delta",
                    json!({"delta": {"stop_reason": "end_turn", "stop_sequence": null},
                           "usage": {"output_tokens": output}}),
                ),
                Self::anthropic("message_stop", json!({})),
            ],
        }
    }
}
