//! The normalized answer: one form for what a model answered, whichever API it spoke, so that
//! checks and the judge read every choice and every output item, not only the first choice's
//! `message.content`.
//!
//! Owns: [`Answer`] (its [`Output`]s: text, refusal, reasoning, [`ToolCall`]s with their
//! arguments, finish reason) built from the whole-answer JSON of each API shape — a Chat
//! Completions object (every choice; legacy completions' `text` too), a Responses API
//! `response` object (`message`/`output_text`, `refusal`, `function_call`, `reasoning` summary
//! items) and an Anthropic Message object (`text`, `tool_use`, `thinking` blocks) — and the
//! tools a request declared ([`declared_tools`]: their names and JSON Schemas, from any of the
//! three request shapes). Streams are assembled into these whole-answer forms before they are
//! captured (`upstream::sse`), so a streamed answer reads the same as a plain one.
//!
//! Derived, not stored: the form is a pure function of the observation's `response_body` (which
//! the capture policy already redacted and capped, and which retention prunes), falling back to
//! `response_text` when no body was kept. Storing it too would duplicate the captured text in a
//! column that redaction, sanitizing and retention would each have to learn about; deriving it
//! also gives pairs captured before this form existed their tool calls. Pure: no I/O; a body of
//! no known shape is `None`, never an error.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Observation;

/// Everything one side answered: one [`Output`] per choice (Chat Completions with `n > 1`), or
/// one for the whole answer (Responses, Messages).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub outputs: Vec<Output>,
}

/// One choice, or the whole answer of an API without choices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Output {
    /// The choice's index (0 for APIs without choices).
    pub index: u64,
    /// The text parts, in order, joined without a separator (as a client would show them).
    pub text: String,
    /// A refusal the provider marked as such (`message.refusal`, a `refusal` content part, or an
    /// Anthropic `stop_reason: refusal`).
    pub refusal: Option<String>,
    /// Reasoning the provider returned (`reasoning_content`, a Responses reasoning summary, an
    /// Anthropic `thinking` block), when it returned any.
    pub reasoning: Option<String>,
    /// The tool calls, in order.
    pub tool_calls: Vec<ToolCall>,
    /// `finish_reason` (chat), `stop_reason` (Messages), or `status` / the incomplete reason
    /// (Responses).
    pub finish_reason: Option<String>,
}

/// One call of a tool (a function) with its arguments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's call id (`id`, `call_id`), when given.
    pub id: Option<String>,
    pub name: String,
    /// The arguments as JSON text, exactly as the model wrote them (they may not parse:
    /// that is what the argument checks look at). Anthropic's `input` object is serialized.
    pub arguments: String,
}

/// A tool the request declared: its name and the JSON Schema of its arguments, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredTool<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub schema: Option<&'a Value>,
}

impl Answer {
    /// The answer of `obs`: from its response body when one was kept and has a known shape,
    /// else its captured text; `None` when neither was captured.
    pub fn of(obs: &Observation) -> Option<Answer> {
        let body = obs.response_body.as_ref().map(super::JsonBody::value);
        if let Some(answer) = body.as_ref().and_then(Answer::from_body) {
            return Some(answer);
        }
        let text = obs.response_text.as_ref()?;
        Some(Answer {
            outputs: vec![Output {
                text: text.clone(),
                finish_reason: obs.finish_reason.clone(),
                ..Output::default()
            }],
        })
    }

    /// The answer in a whole-answer JSON body of any of the three shapes; `None` when the body
    /// has none of them.
    pub fn from_body(body: &Value) -> Option<Answer> {
        if let Some(choices) = body.get("choices").and_then(Value::as_array) {
            return Some(Answer {
                outputs: choices.iter().enumerate().map(chat_choice).collect(),
            });
        }
        if let Some(items) = body.get("output").and_then(Value::as_array) {
            return Some(Answer {
                outputs: vec![responses_output(body, items)],
            });
        }
        if body.get("type").and_then(Value::as_str) == Some("message") {
            let blocks = body.get("content").and_then(Value::as_array)?;
            return Some(Answer {
                outputs: vec![anthropic_message(body, blocks)],
            });
        }
        None
    }

    /// Every tool call of every output, in order.
    pub fn tool_calls(&self) -> impl Iterator<Item = &ToolCall> {
        self.outputs.iter().flat_map(|o| o.tool_calls.iter())
    }

    /// Whether the answer holds nothing at all: no text, refusal or tool call in any output.
    pub fn is_empty(&self) -> bool {
        self.outputs
            .iter()
            .all(|o| o.text.trim().is_empty() && o.refusal.is_none() && o.tool_calls.is_empty())
    }

    /// Whether the answer is plain text: one output, no tool call, no refusal.
    pub fn is_plain_text(&self) -> bool {
        match self.outputs.as_slice() {
            [one] => one.tool_calls.is_empty() && one.refusal.is_none(),
            _ => false,
        }
    }
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn owned(v: &Value, key: &str) -> Option<String> {
    str_of(v, key).map(str::to_owned)
}

/// Arguments as JSON text: a string is taken as written, anything else is serialized.
fn arguments_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Joins the non-empty pieces with blank lines; `None` when there are none.
fn joined(pieces: Vec<String>) -> Option<String> {
    let pieces: Vec<String> = pieces.into_iter().filter(|p| !p.is_empty()).collect();
    (!pieces.is_empty()).then(|| pieces.join("\n\n"))
}

/// One Chat Completions choice (or a legacy completions choice, which has `text`).
fn chat_choice((i, choice): (usize, &Value)) -> Output {
    let index = choice
        .get("index")
        .and_then(Value::as_u64)
        .unwrap_or(i as u64);
    let finish_reason = owned(choice, "finish_reason");
    let Some(message) = choice.get("message") else {
        return Output {
            index,
            text: owned(choice, "text").unwrap_or_default(),
            finish_reason,
            ..Output::default()
        };
    };
    let (text, part_refusals) = chat_content(message.get("content"));
    let mut refusals: Vec<String> = owned(message, "refusal").into_iter().collect();
    refusals.extend(part_refusals);
    let reasoning = ["reasoning_content", "reasoning"]
        .iter()
        .find_map(|k| owned(message, k));
    let mut tool_calls: Vec<ToolCall> = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|c| {
                    let f = c.get("function").unwrap_or(c);
                    ToolCall {
                        id: owned(c, "id"),
                        name: owned(f, "name").unwrap_or_default(),
                        arguments: arguments_text(f.get("arguments")),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    // The deprecated single `function_call`.
    if let Some(f) = message.get("function_call").filter(|f| f.is_object()) {
        tool_calls.push(ToolCall {
            id: None,
            name: owned(f, "name").unwrap_or_default(),
            arguments: arguments_text(f.get("arguments")),
        });
    }
    Output {
        index,
        text,
        refusal: joined(refusals),
        reasoning,
        tool_calls,
        finish_reason,
    }
}

/// A chat message's `content`: a string, or a list of parts (`text`, `refusal`).
fn chat_content(content: Option<&Value>) -> (String, Vec<String>) {
    match content {
        Some(Value::String(s)) => (s.clone(), Vec::new()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            let mut refusals = Vec::new();
            for p in parts {
                if let Some(r) = owned(p, "refusal") {
                    refusals.push(r);
                } else if let Some(t) = str_of(p, "text") {
                    text.push_str(t);
                }
            }
            (text, refusals)
        }
        _ => (String::new(), Vec::new()),
    }
}

/// A Responses API `response` object's `output` items.
fn responses_output(body: &Value, items: &[Value]) -> Output {
    let mut out = Output::default();
    let (mut refusals, mut reasoning) = (Vec::new(), Vec::new());
    for item in items {
        match str_of(item, "type") {
            Some("message") => {
                for part in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match str_of(part, "type") {
                        Some("refusal") => refusals.extend(owned(part, "refusal")),
                        _ => out.text.push_str(str_of(part, "text").unwrap_or_default()),
                    }
                }
            }
            Some("function_call") | Some("custom_tool_call") => out.tool_calls.push(ToolCall {
                id: owned(item, "call_id").or_else(|| owned(item, "id")),
                name: owned(item, "name").unwrap_or_default(),
                arguments: arguments_text(item.get("arguments").or_else(|| item.get("input"))),
            }),
            Some("reasoning") => {
                let summary = item.get("summary").and_then(Value::as_array);
                reasoning.extend(
                    summary
                        .into_iter()
                        .flatten()
                        .filter_map(|s| owned(s, "text")),
                );
            }
            _ => {}
        }
    }
    out.refusal = joined(refusals);
    out.reasoning = joined(reasoning);
    out.finish_reason = body
        .get("incomplete_details")
        .and_then(|d| owned(d, "reason"))
        .or_else(|| owned(body, "status"));
    out
}

/// An Anthropic Message object's content blocks.
fn anthropic_message(body: &Value, blocks: &[Value]) -> Output {
    let mut out = Output::default();
    let mut reasoning = Vec::new();
    for block in blocks {
        match str_of(block, "type") {
            Some("text") => out.text.push_str(str_of(block, "text").unwrap_or_default()),
            Some("tool_use") => out.tool_calls.push(ToolCall {
                id: owned(block, "id"),
                name: owned(block, "name").unwrap_or_default(),
                arguments: arguments_text(block.get("input")),
            }),
            Some("thinking") => reasoning.extend(owned(block, "thinking")),
            _ => {}
        }
    }
    out.reasoning = joined(reasoning);
    out.finish_reason = owned(body, "stop_reason");
    if out.finish_reason.as_deref() == Some("refusal") {
        out.refusal = Some(std::mem::take(&mut out.text));
    }
    out
}

/// The tools a request body declared, in order, from any of the three request shapes: Chat
/// Completions (`{"type": "function", "function": {"name", "parameters"}}`), Responses
/// (`{"type": "function", "name", "parameters"}`) and Messages (`{"name", "input_schema"}`).
/// Tools without a name (built-in tools such as `web_search`) are left out.
pub fn declared_tools(request: &Value) -> Vec<DeclaredTool<'_>> {
    let Some(tools) = request.get("tools").and_then(Value::as_array) else {
        return Vec::new();
    };
    tools
        .iter()
        .filter_map(|t| {
            let f = t.get("function").filter(|f| f.is_object()).unwrap_or(t);
            let name = str_of(f, "name")?;
            let schema = f
                .get("parameters")
                .or_else(|| f.get("input_schema"))
                .filter(|s| !s.is_null());
            Some(DeclaredTool {
                name,
                description: str_of(f, "description"),
                schema,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: Some(format!("call_{name}")),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    #[test]
    fn chat_completions_keep_every_choice_tool_call_refusal_and_reasoning() {
        let body = json!({"object": "chat.completion", "choices": [
            {"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
             "content": null, "reasoning_content": "The user wants an order.",
             "tool_calls": [{"id": "call_lookup", "type": "function",
                "function": {"name": "lookup", "arguments": "{\"id\": \"A-1\"}"}}]}},
            {"index": 1, "finish_reason": "stop", "message": {"role": "assistant",
             "content": "Sure.", "refusal": null}},
            {"index": 2, "finish_reason": "stop", "message": {"role": "assistant",
             "content": [{"type": "refusal", "refusal": "I can't help with that."}]}}
        ]});
        let a = Answer::from_body(&body).unwrap();
        assert_eq!(a.outputs.len(), 3);
        assert_eq!(
            a.outputs[0].tool_calls,
            vec![call("lookup", "{\"id\": \"A-1\"}")]
        );
        assert_eq!(a.outputs[0].text, "");
        assert_eq!(
            a.outputs[0].reasoning.as_deref(),
            Some("The user wants an order.")
        );
        assert_eq!(a.outputs[0].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(
            (a.outputs[1].index, a.outputs[1].text.as_str()),
            (1, "Sure.")
        );
        assert_eq!(a.outputs[1].refusal, None);
        assert_eq!(
            a.outputs[2].refusal.as_deref(),
            Some("I can't help with that.")
        );
        assert!(!a.is_empty() && !a.is_plain_text());
        assert_eq!(a.tool_calls().count(), 1);
        // Legacy completions and the deprecated `function_call`.
        let legacy = json!({"choices": [{"text": "yo", "finish_reason": "length"}]});
        assert_eq!(Answer::from_body(&legacy).unwrap().outputs[0].text, "yo");
        let old = json!({"choices": [{"message": {"content": null,
            "function_call": {"name": "f", "arguments": "{}"}}}]});
        let calls: Vec<_> = Answer::from_body(&old)
            .unwrap()
            .tool_calls()
            .cloned()
            .collect();
        assert_eq!(
            (calls[0].name.as_str(), calls[0].arguments.as_str()),
            ("f", "{}")
        );
    }

    #[test]
    fn a_responses_object_reads_messages_function_calls_refusals_and_reasoning_summaries() {
        let body = json!({"object": "response", "status": "completed", "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [
                {"type": "summary_text", "text": "Look the order up."}]},
            {"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": "Checking", "annotations": []},
                {"type": "output_text", "text": " now."},
                {"type": "refusal", "refusal": "Not the card number."}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_lookup",
             "name": "lookup", "arguments": "{\"id\": \"A-1\"}"},
            {"type": "web_search_call", "id": "ws_1", "status": "completed"}
        ]});
        let a = Answer::from_body(&body).unwrap();
        let o = &a.outputs[0];
        assert_eq!(o.text, "Checking now.");
        assert_eq!(o.refusal.as_deref(), Some("Not the card number."));
        assert_eq!(o.reasoning.as_deref(), Some("Look the order up."));
        assert_eq!(o.tool_calls, vec![call("lookup", "{\"id\": \"A-1\"}")]);
        assert_eq!(o.finish_reason.as_deref(), Some("completed"));
        let cut = json!({"object": "response", "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"}, "output": []});
        let a = Answer::from_body(&cut).unwrap();
        assert_eq!(
            a.outputs[0].finish_reason.as_deref(),
            Some("max_output_tokens")
        );
        assert!(a.is_empty());
    }

    #[test]
    fn an_anthropic_message_reads_text_tool_use_and_thinking_blocks() {
        let body = json!({"type": "message", "role": "assistant", "stop_reason": "tool_use",
        "content": [
            {"type": "thinking", "thinking": "Need the order.", "signature": "x"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "call_lookup", "name": "lookup",
             "input": {"id": "A-1"}}
        ]});
        let o = &Answer::from_body(&body).unwrap().outputs[0];
        assert_eq!(o.text, "Let me check.");
        assert_eq!(o.reasoning.as_deref(), Some("Need the order."));
        assert_eq!(o.tool_calls, vec![call("lookup", "{\"id\":\"A-1\"}")]);
        assert_eq!(o.finish_reason.as_deref(), Some("tool_use"));
        let refused = json!({"type": "message", "stop_reason": "refusal",
            "content": [{"type": "text", "text": "No."}]});
        let o = &Answer::from_body(&refused).unwrap().outputs[0];
        assert_eq!((o.text.as_str(), o.refusal.as_deref()), ("", Some("No.")));
    }

    #[test]
    fn unknown_bodies_are_none_and_the_captured_text_is_the_fallback() {
        assert_eq!(Answer::from_body(&json!({"data": []})), None);
        assert_eq!(Answer::from_body(&json!({"type": "error"})), None);
        let mut obs: Observation = serde_json::from_value(json!({
            "id": uuid::Uuid::nil(), "request_id": uuid::Uuid::nil(), "pair_id": null,
            "at": "2026-01-01T00:00:00Z", "deployment": "d", "variant": "v", "role": "stable",
            "purpose": "served", "stage": "s", "config_version": 1,
            "endpoint": "chat_completions", "upstream_model": "m", "stream": false,
            "bucket": null, "unit_key": null, "sticky": false, "cohort": {}, "status": 200,
            "error": null, "error_detail": null, "ttft_ms": null, "latency_ms": 1.0,
            "usage": null, "cost_usd": null, "finish_reason": "stop",
            "response_text": "hello", "request_body": null, "response_body": null,
        }))
        .unwrap();
        let a = Answer::of(&obs).unwrap();
        assert!(a.is_plain_text());
        assert_eq!(a.outputs[0].text, "hello");
        assert_eq!(a.outputs[0].finish_reason.as_deref(), Some("stop"));
        obs.response_text = None;
        assert_eq!(Answer::of(&obs), None);
    }

    #[test]
    fn declared_tools_come_from_every_request_shape() {
        let schema = json!({"type": "object", "required": ["id"]});
        let chat = json!({"tools": [{"type": "function",
            "function": {"name": "lookup", "parameters": schema}}]});
        let responses = json!({"tools": [{"type": "function", "name": "lookup",
            "parameters": schema}, {"type": "web_search"}]});
        let messages = json!({"tools": [{"name": "lookup", "input_schema": schema},
            {"name": "ping"}]});
        for body in [&chat, &responses, &messages] {
            let tools = declared_tools(body);
            assert_eq!(
                tools[0],
                DeclaredTool {
                    name: "lookup",
                    description: None,
                    schema: Some(&schema)
                }
            );
        }
        assert_eq!(
            declared_tools(&responses).len(),
            1,
            "built-in tools have no name"
        );
        assert_eq!(declared_tools(&messages)[1].schema, None);
        assert!(declared_tools(&json!({"messages": []})).is_empty());
    }
}
