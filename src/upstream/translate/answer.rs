//! A whole (non-streamed) answer, and a provider's error body, in the client's API.
//!
//! Messages → Chat Completions: the text blocks joined are the message's `content`, `tool_use`
//! blocks its `tool_calls` (`input` serialized as `arguments`), `stop_reason` the
//! `finish_reason` ([`crate::upstream::messages::finish_reason`]), the usage `prompt_tokens`
//! (all input, cached included), `completion_tokens` and `prompt_tokens_details.cached_tokens`.
//! `thinking` blocks have no place in a chat message and stay in the captured answer only.
//!
//! Chat Completions → Messages: choice 0's `content` (and `refusal`) is a text block, its
//! `tool_calls` `tool_use` blocks (`arguments` parsed; arguments that are not JSON stay the
//! string that came), `finish_reason` the `stop_reason` ([`stop_reason`]), the usage
//! `input_tokens` (less the cached), `output_tokens` and `cache_read_input_tokens`.

use serde_json::{Value, json};

use super::Direction;
use crate::upstream::messages::finish_reason;

/// The upstream's whole answer (`upstream`, in the variant's API) in the client's API;
/// `created` is the chat completion's timestamp (seconds).
pub fn translate(direction: Direction, upstream: &Value, created: i64) -> Value {
    match direction {
        Direction::ChatToMessages => message_to_chat(upstream, created),
        Direction::MessagesToChat => chat_to_message(upstream),
    }
}

/// A Chat Completions `finish_reason` as a Messages `stop_reason`.
pub fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic's usage object as Chat Completions' (input includes the cached tokens).
pub fn chat_usage(usage: &Value) -> Value {
    let n = |k: &str| usage[k].as_u64().unwrap_or(0);
    let read = n("cache_read_input_tokens");
    let prompt = n("input_tokens")
        .saturating_add(n("cache_creation_input_tokens"))
        .saturating_add(read);
    let completion = n("output_tokens");
    json!({"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": prompt.saturating_add(completion),
           "prompt_tokens_details": {"cached_tokens": read}})
}

/// Chat Completions' usage object as Anthropic's.
pub fn messages_usage(usage: &Value) -> Value {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let prompt = n(&usage["prompt_tokens"]);
    let cached = n(&usage["prompt_tokens_details"]["cached_tokens"]).min(prompt);
    json!({"input_tokens": prompt - cached, "output_tokens": n(&usage["completion_tokens"]),
           "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached})
}

fn message_to_chat(message: &Value, created: i64) -> Value {
    let blocks = message["content"].as_array().map_or(&[][..], Vec::as_slice);
    let text: String = blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect();
    let calls: Vec<Value> = blocks
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| {
            json!({"id": b["id"], "type": "function",
                   "function": {"name": b["name"], "arguments": b["input"].to_string()}})
        })
        .collect();
    let mut out = json!({"role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) },
        "refusal": null});
    if !calls.is_empty() {
        out["tool_calls"] = Value::Array(calls);
    }
    let finish = message["stop_reason"].as_str().map(finish_reason);
    json!({
        "id": message["id"], "object": "chat.completion", "created": created,
        "model": message["model"],
        "choices": [{"index": 0, "message": out, "logprobs": null, "finish_reason": finish}],
        "usage": chat_usage(&message["usage"]),
    })
}

fn chat_to_message(completion: &Value) -> Value {
    let choice = &completion["choices"][0];
    let m = &choice["message"];
    let mut content = Vec::new();
    for key in ["content", "refusal"] {
        if let Some(t) = m[key].as_str().filter(|t| !t.is_empty()) {
            content.push(json!({"type": "text", "text": t}));
        }
    }
    for call in m["tool_calls"].as_array().map_or(&[][..], Vec::as_slice) {
        let args = call["function"]["arguments"].as_str().unwrap_or_default();
        let input = serde_json::from_str::<Value>(args)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| {
                if args.is_empty() {
                    json!({})
                } else {
                    json!(args)
                }
            });
        content.push(json!({"type": "tool_use", "id": call["id"],
            "name": call["function"]["name"], "input": input}));
    }
    let stop = choice["finish_reason"].as_str().map(stop_reason);
    json!({
        "id": completion["id"], "type": "message", "role": "assistant",
        "model": completion["model"], "content": content,
        "stop_reason": stop, "stop_sequence": null,
        "usage": messages_usage(&completion["usage"]),
    })
}

/// A provider's error body (`{"type": "error", "error": {"type", "message"}}` from Anthropic)
/// in the chat client's shape, `{"error": {"message", "type", "param", "code"}}`. A chat
/// provider's error for a Messages client is left as it is: the gateway's Anthropic error
/// middleware rewrites OpenAI-shaped errors on the Messages paths.
pub fn error(direction: Direction, upstream: &Value) -> Option<Value> {
    match direction {
        Direction::ChatToMessages => {
            let e = &upstream["error"];
            let message = e["message"].as_str()?;
            Some(json!({"error": {"message": message,
                "type": e["type"].as_str().unwrap_or("api_error"), "param": null, "code": null}}))
        }
        Direction::MessagesToChat => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Answer;

    #[test]
    fn a_message_with_text_and_a_tool_call_reads_as_a_chat_completion() {
        let message = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [{"type": "thinking", "thinking": "x", "signature": "s"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"id": "7"}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 4,
                      "cache_creation_input_tokens": 2}});
        let chat = translate(Direction::ChatToMessages, &message, 7);
        assert_eq!(chat["object"], "chat.completion");
        assert_eq!(chat["created"], 7);
        let m = &chat["choices"][0]["message"];
        assert_eq!(m["content"], "Let me check.");
        assert_eq!(m["tool_calls"][0]["id"], "toolu_1");
        assert_eq!(
            m["tool_calls"][0]["function"]["arguments"],
            "{\"id\":\"7\"}"
        );
        assert_eq!(chat["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            chat["usage"],
            json!({"prompt_tokens": 16, "completion_tokens": 5,
            "total_tokens": 21, "prompt_tokens_details": {"cached_tokens": 4}})
        );
        // The normalized answer is the same either way.
        let a = Answer::from_body(&message).unwrap();
        let b = Answer::from_body(&chat).unwrap();
        assert_eq!(a.outputs[0].text, b.outputs[0].text);
        assert_eq!(a.outputs[0].tool_calls, b.outputs[0].tool_calls);
    }

    #[test]
    fn a_chat_completion_reads_as_a_message() {
        let chat = json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt",
            "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant",
                "content": "Hi", "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "f", "arguments": "{\"a\":1}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{oops"}}]}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
                      "prompt_tokens_details": {"cached_tokens": 2}}});
        let m = translate(Direction::MessagesToChat, &chat, 0);
        assert_eq!(m["type"], "message");
        assert_eq!(m["content"][0], json!({"type": "text", "text": "Hi"}));
        assert_eq!(m["content"][1]["input"], json!({"a": 1}));
        assert_eq!(m["content"][2]["input"], "{oops");
        assert_eq!(m["stop_reason"], "max_tokens");
        assert_eq!(m["usage"]["input_tokens"], 10);
        assert_eq!(m["usage"]["cache_read_input_tokens"], 2);
        let a = Answer::from_body(&chat).unwrap();
        let b = Answer::from_body(&m).unwrap();
        assert_eq!(a.outputs[0].text, b.outputs[0].text);
        assert_eq!(a.outputs[0].tool_calls[0], b.outputs[0].tool_calls[0]);
    }

    #[test]
    fn an_anthropic_error_reads_as_an_openai_error() {
        let e =
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}});
        let out = error(Direction::ChatToMessages, &e).unwrap();
        assert_eq!(out["error"]["message"], "slow down");
        assert_eq!(out["error"]["type"], "rate_limit_error");
        assert_eq!(error(Direction::MessagesToChat, &e), None);
    }
}
