//! A client's request body in the other API's words.
//!
//! Chat Completions → Messages: `system`/`developer` messages become `system` (joined by a
//! blank line, in order), `tool` messages `tool_result` blocks of a user turn (consecutive turns
//! of one role are merged, as Anthropic requires), an assistant's `tool_calls` `tool_use` blocks
//! (their `arguments` must be a JSON object), `image_url` parts `image` blocks (a `data:` URL
//! as `base64`, any other URL as `url`; `detail` has no equivalent and is not sent),
//! `max_completion_tokens` (or `max_tokens`) `max_tokens` — [`DEFAULT_MAX_TOKENS`] when the
//! client sent neither, since Anthropic requires it (a variant's `params.max_tokens` wins) —,
//! `stop` `stop_sequences`, `tools` and `tool_choice` their Anthropic forms
//! (`parallel_tool_calls: false` is `disable_parallel_tool_use`), `user` (or
//! `safety_identifier`) `metadata.user_id`. `temperature` above 1 is refused (Anthropic's range
//! is 0–1).
//!
//! Messages → Chat Completions: `system` becomes the first message, `tool_result` blocks `tool`
//! messages (before the rest of their user turn; `is_error` has no equivalent), `tool_use`
//! blocks `tool_calls`, `image` blocks `image_url` parts, `max_tokens`
//! `max_completion_tokens`, `stop_sequences` `stop`, `metadata.user_id` `user`,
//! `disable_parallel_tool_use` `parallel_tool_calls: false`. `thinking` blocks of earlier
//! assistant turns are not sent (Chat Completions takes no reasoning back).
//!
//! Not sent, on purpose: `stream_options` (the gateway asks for usage itself), `metadata`'s
//! other keys and `prompt_cache_key` (canarist's cohort labels and unit key; Anthropic's
//! `metadata` takes only `user_id`), `cache_control` marks (prompt caching hints). Everything
//! else without an equivalent — `n` > 1, `logprobs`, `response_format` other than text, audio,
//! penalties, `seed`, `top_k`, `thinking`, server tools, … — is [`Untranslatable`].

use serde_json::{Map, Value, json};

use super::{Direction, Untranslatable};

/// `max_tokens` of a Messages request translated from a chat request that set no limit.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The client's body (`fields`, its top-level keys) in the other API's words.
pub fn translate(
    direction: Direction,
    fields: &Map<String, Value>,
) -> Result<Map<String, Value>, Untranslatable> {
    match direction {
        Direction::ChatToMessages => ChatToMessages.body(fields),
        Direction::MessagesToChat => MessagesToChat.body(fields),
    }
}

fn refuse<T>(
    direction: Direction,
    field: impl Into<String>,
    reason: &str,
) -> Result<T, Untranslatable> {
    Err(Untranslatable::new(direction, field, reason))
}

/// Whether a field's value asks for nothing (absent or `null`, `false`, `0`, `{}`, `[]`).
fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(_) => false,
    }
}

/// The text of a string or an array of text parts/blocks; `None` when a part is not text.
fn plain_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(|p| (p["type"] == "text").then(|| p["text"].as_str()).flatten())
            .collect::<Option<Vec<_>>>()
            .map(|t| t.join("\n")),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

struct ChatToMessages;

const C2M: Direction = Direction::ChatToMessages;

impl ChatToMessages {
    fn body(&self, fields: &Map<String, Value>) -> Result<Map<String, Value>, Untranslatable> {
        let mut out = Map::new();
        let mut max_tokens: Option<Value> = None;
        let mut tool_choice: Option<Value> = None;
        let mut serial = false;
        let mut user_id: Option<Value> = None;
        for (key, value) in fields {
            let k = key.as_str();
            match k {
                "model" | "stream" | "top_p" => {
                    out.insert(key.clone(), value.clone());
                }
                "messages" => {}
                "temperature" => {
                    if value.as_f64().is_some_and(|t| t > 1.0) {
                        return refuse(C2M, k, "Anthropic accepts a temperature from 0 to 1");
                    }
                    out.insert(key.clone(), value.clone());
                }
                "max_tokens" | "max_completion_tokens" if !value.is_null() => {
                    if value.as_u64().is_none() {
                        return refuse(C2M, k, "must be a positive integer");
                    }
                    if k == "max_completion_tokens" || max_tokens.is_none() {
                        max_tokens = Some(value.clone());
                    }
                }
                "stop" => match value {
                    Value::Null => {}
                    Value::String(s) => {
                        out.insert("stop_sequences".into(), json!([s]));
                    }
                    Value::Array(a) if a.iter().all(Value::is_string) => {
                        out.insert("stop_sequences".into(), value.clone());
                    }
                    _ => return refuse(C2M, k, "must be a string or an array of strings"),
                },
                "tools" if !value.is_null() => {
                    out.insert("tools".into(), self.tools(value)?);
                }
                "tool_choice" if !value.is_null() => tool_choice = Some(self.tool_choice(value)?),
                "parallel_tool_calls" => serial = value == &Value::Bool(false),
                "user" | "safety_identifier" if value.is_string() => {
                    if k == "user" || user_id.is_none() {
                        user_id = Some(value.clone());
                    }
                }
                "n" if value.is_null() || value.as_u64() == Some(1) => {}
                "n" => return refuse(C2M, k, "Anthropic answers one choice per request"),
                "response_format" if value.is_null() || value["type"] == "text" => {}
                "response_format" => {
                    return refuse(C2M, k, "structured output formats are not translated");
                }
                "modalities" if value.is_null() || value == &json!(["text"]) => {}
                "service_tier" if value.is_null() || value == "auto" || value == "default" => {}
                // Read by the gateway, or routing fields of canarist's own (see the module docs).
                "stream_options" | "metadata" | "prompt_cache_key" => {}
                "store" | "logprobs" | "top_logprobs" | "frequency_penalty"
                | "presence_penalty" | "logit_bias" | "seed"
                    if is_unset(value) => {}
                _ if value.is_null() => {}
                _ => return refuse(C2M, k, "it has no equivalent in Anthropic's Messages API"),
            }
        }
        let (system, messages) = self.messages(fields.get("messages"))?;
        if !system.is_empty() {
            out.insert("system".into(), Value::String(system.join("\n\n")));
        }
        out.insert("messages".into(), Value::Array(messages));
        out.insert(
            "max_tokens".into(),
            max_tokens.unwrap_or_else(|| json!(DEFAULT_MAX_TOKENS)),
        );
        if serial {
            let choice = tool_choice.get_or_insert_with(|| json!({"type": "auto"}));
            if choice["type"] != "none" {
                choice["disable_parallel_tool_use"] = Value::Bool(true);
            }
        }
        if let Some(choice) = tool_choice {
            out.insert("tool_choice".into(), choice);
        }
        if let Some(user) = user_id {
            out.insert("metadata".into(), json!({"user_id": user}));
        }
        Ok(out)
    }

    fn tools(&self, tools: &Value) -> Result<Value, Untranslatable> {
        let Some(list) = tools.as_array() else {
            return refuse(C2M, "tools", "must be an array");
        };
        let mut out = Vec::with_capacity(list.len());
        for (i, t) in list.iter().enumerate() {
            if t["type"] != "function" || !t["function"].is_object() {
                return refuse(
                    C2M,
                    format!("tools[{i}].type"),
                    "only function tools translate",
                );
            }
            let f = &t["function"];
            if f.get("strict").is_some_and(|s| !is_unset(s)) {
                return refuse(
                    C2M,
                    format!("tools[{i}].function.strict"),
                    "strict schemas are not translated",
                );
            }
            let mut tool = Map::new();
            tool.insert("name".into(), f["name"].clone());
            if let Some(d) = f.get("description").filter(|d| !d.is_null()) {
                tool.insert("description".into(), d.clone());
            }
            let schema = f
                .get("parameters")
                .filter(|p| !p.is_null())
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            tool.insert("input_schema".into(), schema);
            out.push(Value::Object(tool));
        }
        Ok(Value::Array(out))
    }

    fn tool_choice(&self, choice: &Value) -> Result<Value, Untranslatable> {
        Ok(match choice {
            Value::String(s) if s == "auto" => json!({"type": "auto"}),
            Value::String(s) if s == "none" => json!({"type": "none"}),
            Value::String(s) if s == "required" => json!({"type": "any"}),
            Value::Object(o) if o.get("type") == Some(&json!("function")) => {
                match choice["function"]["name"].as_str() {
                    Some(name) => json!({"type": "tool", "name": name}),
                    None => return refuse(C2M, "tool_choice.function.name", "is required"),
                }
            }
            _ => {
                return refuse(
                    C2M,
                    "tool_choice",
                    "only auto, none, required and a named function translate",
                );
            }
        })
    }

    /// The system texts and the turns, consecutive turns of one role merged.
    fn messages(&self, list: Option<&Value>) -> Result<(Vec<String>, Vec<Value>), Untranslatable> {
        let Some(list) = list.and_then(Value::as_array) else {
            return refuse(C2M, "messages", "must be an array");
        };
        let mut system = Vec::new();
        let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
        for (i, m) in list.iter().enumerate() {
            let at = |rest: &str| format!("messages[{i}]{rest}");
            let role = m["role"].as_str().unwrap_or_default();
            if let Some(obj) = m.as_object() {
                for (key, value) in obj {
                    let known = matches!(key.as_str(), "role" | "content")
                        || (role == "assistant"
                            && matches!(key.as_str(), "tool_calls" | "refusal"))
                        || (role == "tool" && key == "tool_call_id");
                    if !known && !is_unset(value) {
                        return refuse(
                            C2M,
                            at(&format!(".{key}")),
                            "it has no equivalent in Anthropic's Messages API",
                        );
                    }
                }
            }
            let (role, blocks) = match role {
                "system" | "developer" => {
                    let Some(text) = plain_text(&m["content"]) else {
                        return refuse(C2M, at(".content"), "a system message must be text");
                    };
                    system.push(text);
                    continue;
                }
                "user" => ("user", self.user_blocks(&m["content"], &at)?),
                "assistant" => ("assistant", self.assistant_blocks(m, &at)?),
                "tool" => {
                    let Some(text) = plain_text(&m["content"]) else {
                        return refuse(C2M, at(".content"), "a tool result must be text");
                    };
                    let block = json!({"type": "tool_result",
                        "tool_use_id": m["tool_call_id"], "content": text});
                    ("user", vec![block])
                }
                _ => {
                    return refuse(
                        C2M,
                        at(".role"),
                        "only system, developer, user, assistant and tool translate",
                    );
                }
            };
            match turns.last_mut() {
                Some((last, held)) if *last == role => held.extend(blocks),
                _ => turns.push((role, blocks)),
            }
        }
        let messages = turns
            .into_iter()
            .filter(|(_, blocks)| !blocks.is_empty())
            .map(|(role, blocks)| {
                let content = match blocks.as_slice() {
                    [one] if one["type"] == "text" => one["text"].clone(),
                    _ => Value::Array(blocks),
                };
                json!({"role": role, "content": content})
            })
            .collect();
        Ok((system, messages))
    }

    fn user_blocks(
        &self,
        content: &Value,
        at: &dyn Fn(&str) -> String,
    ) -> Result<Vec<Value>, Untranslatable> {
        let parts = match content {
            Value::String(s) => return Ok(text_block(s)),
            Value::Array(parts) => parts,
            _ => return refuse(C2M, at(".content"), "must be a string or an array of parts"),
        };
        let mut out = Vec::with_capacity(parts.len());
        for (j, p) in parts.iter().enumerate() {
            match p["type"].as_str() {
                Some("text") => out.extend(text_block(p["text"].as_str().unwrap_or_default())),
                Some("image_url") => {
                    let url = p["image_url"]["url"].as_str().unwrap_or_default();
                    out.push(image_block(url).ok_or_else(|| {
                        Untranslatable::new(
                            C2M,
                            at(&format!(".content[{j}].image_url.url")),
                            "a data: URL must be base64",
                        )
                    })?);
                }
                _ => {
                    return refuse(
                        C2M,
                        at(&format!(".content[{j}].type")),
                        "only text and image parts translate",
                    );
                }
            }
        }
        Ok(out)
    }

    fn assistant_blocks(
        &self,
        m: &Value,
        at: &dyn Fn(&str) -> String,
    ) -> Result<Vec<Value>, Untranslatable> {
        let mut out = Vec::new();
        match &m["content"] {
            Value::Null => {}
            Value::String(s) => out.extend(text_block(s)),
            Value::Array(parts) => {
                for (j, p) in parts.iter().enumerate() {
                    match p["type"].as_str() {
                        Some("text") => {
                            out.extend(text_block(p["text"].as_str().unwrap_or_default()))
                        }
                        Some("refusal") => {
                            out.extend(text_block(p["refusal"].as_str().unwrap_or_default()))
                        }
                        _ => {
                            return refuse(
                                C2M,
                                at(&format!(".content[{j}].type")),
                                "only text parts translate",
                            );
                        }
                    }
                }
            }
            _ => return refuse(C2M, at(".content"), "must be a string or an array of parts"),
        }
        if let Some(r) = m["refusal"].as_str() {
            out.extend(text_block(r));
        }
        let calls = match &m["tool_calls"] {
            Value::Null => &[][..],
            Value::Array(calls) => calls.as_slice(),
            _ => return refuse(C2M, at(".tool_calls"), "must be an array"),
        };
        for (j, call) in calls.iter().enumerate() {
            if call["type"] != "function" {
                return refuse(
                    C2M,
                    at(&format!(".tool_calls[{j}].type")),
                    "only function calls translate",
                );
            }
            let args = call["function"]["arguments"].as_str().unwrap_or("{}");
            let input: Value =
                match serde_json::from_str(if args.trim().is_empty() { "{}" } else { args }) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => {
                        return refuse(
                            C2M,
                            at(&format!(".tool_calls[{j}].function.arguments")),
                            "must be a JSON object",
                        );
                    }
                };
            out.push(json!({"type": "tool_use", "id": call["id"],
                "name": call["function"]["name"], "input": input}));
        }
        Ok(out)
    }
}

/// A text block, or none for empty text (Anthropic refuses empty text blocks).
fn text_block(text: &str) -> Vec<Value> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![json!({"type": "text", "text": text})]
    }
}

/// An Anthropic image block for a chat image URL: a `data:<type>;base64,<data>` URL as a
/// `base64` source, any other URL as a `url` source; `None` for a `data:` URL not in base64.
fn image_block(url: &str) -> Option<Value> {
    let Some(rest) = url.strip_prefix("data:") else {
        return Some(json!({"type": "image", "source": {"type": "url", "url": url}}));
    };
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some(json!({"type": "image", "source":
        {"type": "base64", "media_type": media_type, "data": data}}))
}

struct MessagesToChat;

const M2C: Direction = Direction::MessagesToChat;

impl MessagesToChat {
    fn body(&self, fields: &Map<String, Value>) -> Result<Map<String, Value>, Untranslatable> {
        let mut out = Map::new();
        let mut system: Option<String> = None;
        let mut tool_choice: Option<Value> = None;
        let mut serial = false;
        for (key, value) in fields {
            let k = key.as_str();
            match k {
                "model" | "stream" | "temperature" | "top_p" => {
                    out.insert(key.clone(), value.clone());
                }
                "messages" => {}
                "max_tokens" => {
                    out.insert("max_completion_tokens".into(), value.clone());
                }
                "system" => match plain_text(value) {
                    Some(text) if !text.is_empty() => system = Some(text),
                    Some(_) => {}
                    None => return refuse(M2C, k, "must be text (a string or text blocks)"),
                },
                "stop_sequences" if !value.is_null() => {
                    out.insert("stop".into(), value.clone());
                }
                "tools" if !value.is_null() => {
                    out.insert("tools".into(), self.tools(value)?);
                }
                "tool_choice" if !value.is_null() => {
                    serial = value["disable_parallel_tool_use"] == Value::Bool(true);
                    tool_choice = Some(self.tool_choice(value)?);
                }
                "metadata" => {
                    if let Some(user) = value.get("user_id").filter(|u| u.is_string()) {
                        out.insert("user".into(), user.clone());
                    }
                }
                "thinking" if value.is_null() || value["type"] == "disabled" => {}
                "service_tier" if value.is_null() || value == "auto" => {}
                _ if value.is_null() => {}
                _ => return refuse(M2C, k, "it has no equivalent in OpenAI's Chat Completions"),
            }
        }
        let mut messages = Vec::new();
        if let Some(s) = system {
            messages.push(json!({"role": "system", "content": s}));
        }
        self.messages(fields.get("messages"), &mut messages)?;
        out.insert("messages".into(), Value::Array(messages));
        let has_tools = out.get("tools").is_some_and(|t| !is_unset(t));
        if let Some(choice) = tool_choice {
            out.insert("tool_choice".into(), choice);
        }
        if serial && has_tools {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
        Ok(out)
    }

    fn tools(&self, tools: &Value) -> Result<Value, Untranslatable> {
        let Some(list) = tools.as_array() else {
            return refuse(M2C, "tools", "must be an array");
        };
        let mut out = Vec::with_capacity(list.len());
        for (i, t) in list.iter().enumerate() {
            if t.get("type")
                .is_some_and(|ty| !ty.is_null() && ty != "custom")
            {
                return refuse(
                    M2C,
                    format!("tools[{i}].type"),
                    "server tools do not translate, only custom tools",
                );
            }
            let mut f = Map::new();
            f.insert("name".into(), t["name"].clone());
            if let Some(d) = t.get("description").filter(|d| !d.is_null()) {
                f.insert("description".into(), d.clone());
            }
            if let Some(s) = t.get("input_schema").filter(|s| !s.is_null()) {
                f.insert("parameters".into(), s.clone());
            }
            out.push(json!({"type": "function", "function": f}));
        }
        Ok(Value::Array(out))
    }

    fn tool_choice(&self, choice: &Value) -> Result<Value, Untranslatable> {
        Ok(match choice["type"].as_str() {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": choice["name"]}}),
            _ => {
                return refuse(
                    M2C,
                    "tool_choice.type",
                    "only auto, any, none and tool translate",
                );
            }
        })
    }

    fn messages(&self, list: Option<&Value>, out: &mut Vec<Value>) -> Result<(), Untranslatable> {
        let Some(list) = list.and_then(Value::as_array) else {
            return refuse(M2C, "messages", "must be an array");
        };
        for (i, m) in list.iter().enumerate() {
            let at = |rest: &str| format!("messages[{i}]{rest}");
            match m["role"].as_str() {
                Some("user") => self.user(&m["content"], &at, out)?,
                Some("assistant") => out.push(self.assistant(&m["content"], &at)?),
                _ => return refuse(M2C, at(".role"), "only user and assistant turns exist"),
            }
        }
        Ok(())
    }

    /// A user turn: its tool results as `tool` messages, then the rest as one user message.
    fn user(
        &self,
        content: &Value,
        at: &dyn Fn(&str) -> String,
        out: &mut Vec<Value>,
    ) -> Result<(), Untranslatable> {
        let blocks = match content {
            Value::String(s) => {
                out.push(json!({"role": "user", "content": s}));
                return Ok(());
            }
            Value::Array(blocks) => blocks,
            _ => {
                return refuse(
                    M2C,
                    at(".content"),
                    "must be a string or an array of blocks",
                );
            }
        };
        let mut parts = Vec::new();
        for (j, b) in blocks.iter().enumerate() {
            let here = |rest: &str| at(&format!(".content[{j}]{rest}"));
            match b["type"].as_str() {
                Some("text") => parts.push(json!({"type": "text", "text": b["text"]})),
                Some("image") => parts.push(self.image(b, &here)?),
                Some("tool_result") => {
                    let Some(text) = plain_text(b.get("content").unwrap_or(&Value::Null)) else {
                        return refuse(M2C, here(".content"), "only text tool results translate");
                    };
                    out.push(
                        json!({"role": "tool", "tool_call_id": b["tool_use_id"], "content": text}),
                    );
                }
                _ => {
                    return refuse(
                        M2C,
                        here(".type"),
                        "only text, image and tool_result blocks translate",
                    );
                }
            }
        }
        match parts.as_slice() {
            [] => {}
            [one] if one["type"] == "text" => {
                out.push(json!({"role": "user", "content": one["text"]}));
            }
            _ => out.push(json!({"role": "user", "content": parts})),
        }
        Ok(())
    }

    fn image(&self, block: &Value, at: &dyn Fn(&str) -> String) -> Result<Value, Untranslatable> {
        let source = &block["source"];
        let url = match source["type"].as_str() {
            Some("base64") => format!(
                "data:{};base64,{}",
                source["media_type"].as_str().unwrap_or("image/png"),
                source["data"].as_str().unwrap_or_default()
            ),
            Some("url") => source["url"].as_str().unwrap_or_default().to_owned(),
            _ => {
                return refuse(
                    M2C,
                    at(".source.type"),
                    "only base64 and url images translate",
                );
            }
        };
        Ok(json!({"type": "image_url", "image_url": {"url": url}}))
    }

    fn assistant(
        &self,
        content: &Value,
        at: &dyn Fn(&str) -> String,
    ) -> Result<Value, Untranslatable> {
        let blocks = match content {
            Value::String(s) => return Ok(json!({"role": "assistant", "content": s})),
            Value::Array(blocks) => blocks,
            _ => {
                return refuse(
                    M2C,
                    at(".content"),
                    "must be a string or an array of blocks",
                );
            }
        };
        let mut text = String::new();
        let mut calls = Vec::new();
        for (j, b) in blocks.iter().enumerate() {
            match b["type"].as_str() {
                Some("text") => text.push_str(b["text"].as_str().unwrap_or_default()),
                Some("tool_use") => calls.push(json!({"id": b["id"], "type": "function",
                    "function": {"name": b["name"], "arguments": b["input"].to_string()}})),
                Some("thinking" | "redacted_thinking") => {}
                _ => {
                    return refuse(
                        M2C,
                        at(&format!(".content[{j}].type")),
                        "only text, tool_use and thinking blocks translate",
                    );
                }
            }
        }
        let mut message = json!({"role": "assistant",
            "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_chat_conversation_with_tools_and_images_becomes_a_messages_request() {
        let body = obj(json!({
        "model": "m", "temperature": 0.2, "top_p": 0.9, "stop": "END", "user": "u-1",
        "max_completion_tokens": 99, "stream": true, "stream_options": {"include_usage": true},
        "parallel_tool_calls": false, "tool_choice": "required",
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "d",
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}}}}],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://x/y.jpg", "detail": "low"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "lookup", "arguments": "{\"id\":\"7\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "found"},
            {"role": "user", "content": "thanks"}
        ]}));
        let out = translate(Direction::ChatToMessages, &body).unwrap();
        assert_eq!(out["system"], "Be brief.\n\nUse tools.");
        assert_eq!(out["max_tokens"], 99);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["metadata"], json!({"user_id": "u-1"}));
        assert_eq!(
            out["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        assert_eq!(
            out["tools"][0]["input_schema"]["properties"]["id"]["type"],
            "string"
        );
        assert!(out.get("stream_options").is_none() && out.get("user").is_none());
        let m = out["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3, "{m:#?}");
        assert_eq!(
            m[0]["content"][1]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "AAAA"})
        );
        assert_eq!(
            m[0]["content"][2]["source"],
            json!({"type": "url", "url": "https://x/y.jpg"})
        );
        assert_eq!(
            m[1]["content"][0],
            json!({"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"id": "7"}})
        );
        // The tool result and the next user text are one user turn, the result first.
        assert_eq!(
            m[2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "call_1", "content": "found"})
        );
        assert_eq!(
            m[2]["content"][1],
            json!({"type": "text", "text": "thanks"})
        );
    }

    #[test]
    fn a_chat_request_without_a_limit_gets_the_default_and_simple_turns_stay_strings() {
        let body = obj(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
        let out = translate(Direction::ChatToMessages, &body).unwrap();
        assert_eq!(out["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(out["messages"], json!([{"role": "user", "content": "hi"}]));
    }

    #[test]
    fn what_cannot_be_translated_names_its_field() {
        let hi = json!([{"role": "user", "content": "hi"}]);
        for (extra, field) in [
            (json!({"n": 2}), "n"),
            (json!({"logprobs": true}), "logprobs"),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {}}}),
                "response_format",
            ),
            (json!({"audio": {"voice": "x"}}), "audio"),
            (json!({"temperature": 1.5}), "temperature"),
            (json!({"frequency_penalty": 0.5}), "frequency_penalty"),
            (
                json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]}),
                "tools[0].type",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x", "name": "bob"}]}),
                "messages[0].name",
            ),
            (
                json!({"messages": [{"role": "assistant", "tool_calls": [{"type": "function",
                "function": {"name": "f", "arguments": "[1]"}}]}]}),
                "messages[0].tool_calls[0].function.arguments",
            ),
        ] {
            let mut body = obj(json!({"model": "m", "messages": hi}));
            body.extend(obj(extra));
            let e = translate(Direction::ChatToMessages, &body).unwrap_err();
            assert_eq!(e.field, field);
        }
        // Unset values of the same fields pass.
        let body = obj(
            json!({"model": "m", "messages": hi, "n": 1, "logprobs": false, "seed": null,
            "response_format": {"type": "text"}, "frequency_penalty": 0}),
        );
        assert!(translate(Direction::ChatToMessages, &body).is_ok());
    }

    #[test]
    fn a_messages_conversation_becomes_a_chat_request() {
        let body = obj(json!({
        "model": "m", "max_tokens": 50, "system": [{"type": "text", "text": "Be brief.",
            "cache_control": {"type": "ephemeral"}}],
        "stop_sequences": ["END"], "metadata": {"user_id": "u-2"},
        "tool_choice": {"type": "tool", "name": "lookup", "disable_parallel_tool_use": true},
        "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "BBBB"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"id": "7"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                "content": [{"type": "text", "text": "found"}]}, {"type": "text", "text": "so?"}]}
        ]}));
        let out = translate(Direction::MessagesToChat, &body).unwrap();
        assert_eq!(out["max_completion_tokens"], 50);
        assert_eq!(out["stop"], json!(["END"]));
        assert_eq!(out["user"], "u-2");
        assert_eq!(out["parallel_tool_calls"], false);
        assert_eq!(
            out["tool_choice"],
            json!({"type": "function", "function": {"name": "lookup"}})
        );
        assert_eq!(
            out["tools"][0],
            json!({"type": "function", "function":
            {"name": "lookup", "parameters": {"type": "object"}}})
        );
        let m = out["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(
            m[1]["content"][1]["image_url"]["url"],
            "data:image/jpeg;base64,BBBB"
        );
        assert_eq!(m[2]["content"], "Checking.");
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            "{\"id\":\"7\"}"
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "found"})
        );
        assert_eq!(m[4], json!({"role": "user", "content": "so?"}));
        for (extra, field) in [
            (json!({"top_k": 5}), "top_k"),
            (
                json!({"thinking": {"type": "enabled", "budget_tokens": 1024}}),
                "thinking",
            ),
            (
                json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                "tools[0].type",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "document"}]}]}),
                "messages[0].content[0].type",
            ),
        ] {
            let mut body = obj(json!({"model": "m", "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}]}));
            body.extend(obj(extra));
            assert_eq!(
                translate(Direction::MessagesToChat, &body)
                    .unwrap_err()
                    .field,
                field
            );
        }
    }
}
