//! Tool calls of the mock (profiles with `tool_calls: true`): when a request declares `tools`,
//! the answer calls one of them — the one `tool_choice` names, else the first — with arguments
//! built from the tool's JSON Schema, and a degraded answer's arguments break that schema.
//!
//! Owns: reading the declared tools and `tool_choice` of all three request shapes (Chat
//! Completions, Responses, Messages) and building the arguments. It reads them on its own,
//! not through the gateway's `capture::answer`, so that a bug on one side cannot hide one on
//! the other. Pure and deterministic: the same request gets the same call.
//!
//! Arguments valid against the schema: for each property the schema lists as `required` (every
//! listed property when none is required), its `const`, else its first `enum` value, else its
//! first `examples` value, else its `default`, else a value of its `type` within `minimum` and
//! `minLength` (strings: `"example"`; give `examples` for a `pattern` or `format`). Broken
//! arguments: the first required property left out; with none required, the first property of
//! the wrong type; with no properties, text that is not JSON.

use serde_json::{Map, Value, json};

use super::wire::Head;

/// The call an answer makes.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallPlan {
    pub name: String,
    /// The arguments as the JSON text the model "writes".
    pub arguments: String,
}

impl ToolCallPlan {
    /// The arguments as a JSON object (Anthropic's `input`); `{}` when they are not JSON.
    pub fn input(&self) -> Value {
        match serde_json::from_str::<Value>(&self.arguments) {
            Ok(v @ Value::Object(_)) => v,
            _ => json!({}),
        }
    }
}

/// The call to make for `body`, or `None` when it declares no tool (or `tool_choice` is
/// `none`). `broken`: arguments that break the tool's schema.
pub fn plan(body: &Map<String, Value>, broken: bool) -> Option<ToolCallPlan> {
    let tools = body.get("tools")?.as_array()?;
    let declared: Vec<(&str, Option<&Value>)> = tools
        .iter()
        .filter_map(|t| {
            let f = t.get("function").filter(|f| f.is_object()).unwrap_or(t);
            let name = f.get("name")?.as_str()?;
            let schema = f.get("parameters").or_else(|| f.get("input_schema"));
            Some((name, schema))
        })
        .collect();
    let wanted = match body.get("tool_choice") {
        Some(Value::String(s)) if s == "none" => return None,
        Some(Value::Object(c)) if c.get("type").and_then(Value::as_str) == Some("none") => {
            return None;
        }
        Some(Value::Object(c)) => c
            .get("function")
            .and_then(|f| f.get("name"))
            .or_else(|| c.get("name"))
            .and_then(Value::as_str),
        _ => None,
    };
    let (name, schema) = declared
        .iter()
        .find(|(n, _)| Some(*n) == wanted)
        .or_else(|| declared.first())?;
    let empty = json!({"type": "object"});
    let schema = schema.unwrap_or(&empty);
    let arguments = if broken {
        broken_arguments(schema)
    } else {
        valid_value(schema, 0).to_string()
    };
    Some(ToolCallPlan {
        name: (*name).to_owned(),
        arguments,
    })
}

/// Nesting deeper than this gets `null` (a schema may be recursive).
const MAX_DEPTH: usize = 8;

fn first_type(schema: &Value) -> Option<&str> {
    match schema.get("type")? {
        Value::String(t) => Some(t),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    }
}

/// A value valid against the common keywords of `schema`.
fn valid_value(schema: &Value, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    if let Some(v) = schema.get("const") {
        return v.clone();
    }
    let listed = ["enum", "examples"]
        .iter()
        .find_map(|k| schema.get(*k).and_then(Value::as_array)?.first().cloned());
    if let Some(v) = listed.or_else(|| schema.get("default").cloned()) {
        return v;
    }
    let number = |integer: bool| {
        let min = schema
            .get("minimum")
            .and_then(Value::as_f64)
            .or_else(|| {
                schema
                    .get("exclusiveMinimum")
                    .and_then(Value::as_f64)
                    .map(|m| m + 1.0)
            })
            .unwrap_or(1.0)
            .max(1.0);
        if integer {
            json!(min.ceil() as i64)
        } else {
            json!(min)
        }
    };
    let implied = if schema.get("properties").is_some() {
        Some("object")
    } else {
        None
    };
    match first_type(schema).or(implied) {
        Some("object") => Value::Object(object_value(schema, depth)),
        Some("array") => {
            let items = schema
                .get("items")
                .cloned()
                .unwrap_or(json!({"type": "string"}));
            json!([valid_value(&items, depth + 1)])
        }
        Some("integer") => number(true),
        Some("number") => number(false),
        Some("boolean") => json!(true),
        Some("null") => Value::Null,
        _ => {
            let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
            let mut s = String::from("example");
            while (s.len() as u64) < min {
                s.push('x');
            }
            json!(s)
        }
    }
}

/// The required properties (or, with none required, every property) with valid values.
fn object_value(schema: &Value, depth: usize) -> Map<String, Value> {
    let props = schema.get("properties").and_then(Value::as_object);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let names: Vec<&str> = if required.is_empty() {
        props
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default()
    } else {
        required
    };
    let any = json!({});
    names
        .into_iter()
        .map(|n| {
            let sub = props.and_then(|p| p.get(n)).unwrap_or(&any);
            (n.to_owned(), valid_value(sub, depth + 1))
        })
        .collect()
}

/// Arguments that break `schema` (see the module docs).
fn broken_arguments(schema: &Value) -> String {
    let mut args = object_value(schema, 0);
    let first_required = schema
        .get("required")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(Value::as_str);
    if let Some(name) = first_required {
        args.remove(name);
        return Value::Object(args).to_string();
    }
    if let Some((name, value)) = args.iter_mut().next() {
        let sub = schema.get("properties").and_then(|p| p.get(name.as_str()));
        *value = match sub.and_then(first_type) {
            Some("string") => json!(12345),
            _ => json!("not the declared type"),
        };
        return Value::Object(args).to_string();
    }
    "{\"arguments\": ".to_owned()
}

/// Pieces of at most this many characters make a streamed call's arguments.
const ARGUMENT_PIECE_CHARS: usize = 16;

/// The arguments of a streamed call, in pieces.
pub fn argument_pieces(arguments: &str) -> Vec<String> {
    let chars: Vec<char> = arguments.chars().collect();
    chars
        .chunks(ARGUMENT_PIECE_CHARS)
        .map(|c| c.iter().collect())
        .collect()
}

/// A Chat Completions answer that calls the tool: `content: null`, `finish_reason: tool_calls`.
pub fn chat_completion(head: &Head, call_id: &str, call: &ToolCallPlan, usage: Value) -> Value {
    json!({
        "id": head.id,
        "object": "chat.completion",
        "created": head.created,
        "model": head.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": null, "refusal": null, "annotations": [],
                "tool_calls": [{"id": call_id, "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments}}]},
            "logprobs": null,
            "finish_reason": "tool_calls",
        }],
        "usage": usage,
        "system_fingerprint": null,
    })
}

/// One chunk of a streamed chat tool call: the opening delta (id, name, no arguments yet) when
/// `opening`, else a piece of the arguments; `finish` ends the choice.
pub fn chat_chunk(
    head: &Head,
    call_id: &str,
    call: &ToolCallPlan,
    piece: Option<&str>,
    finish: bool,
) -> Value {
    let delta = match piece {
        None if !finish => json!({"role": "assistant", "content": null, "tool_calls": [
            {"index": 0, "id": call_id, "type": "function",
             "function": {"name": call.name, "arguments": ""}}]}),
        None => json!({}),
        Some(p) => json!({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}),
    };
    json!({
        "id": head.id,
        "object": "chat.completion.chunk",
        "created": head.created,
        "model": head.model,
        "system_fingerprint": null,
        "choices": [{"index": 0, "delta": delta, "logprobs": null,
            "finish_reason": if finish { json!("tool_calls") } else { Value::Null }}],
    })
}

/// A Responses API `function_call` output item.
pub fn function_call_item(head: &Head, call_id: &str, call: &ToolCallPlan) -> Value {
    json!({
        "type": "function_call",
        "id": format!("fc_{}", head.id),
        "call_id": call_id,
        "name": call.name,
        "arguments": call.arguments,
        "status": "completed",
    })
}

/// An Anthropic `tool_use` content block.
pub fn tool_use_block(call_id: &str, call: &ToolCallPlan) -> Value {
    json!({"type": "tool_use", "id": call_id, "name": call.name, "input": call.input()})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn order_tools() -> Value {
        json!([
            {"type": "function", "function": {"name": "lookup_order", "parameters": {
                "type": "object", "required": ["order_id"], "additionalProperties": false,
                "properties": {"order_id": {"type": "string", "pattern": "^[A-Z]-[0-9]+$",
                    "examples": ["A-1042"]}}}}},
            {"type": "function", "function": {"name": "issue_refund", "parameters": {
                "type": "object", "required": ["order_id", "amount", "currency", "items"],
                "properties": {"order_id": {"type": "string", "minLength": 9},
                    "amount": {"type": "number", "exclusiveMinimum": 0},
                    "currency": {"enum": ["USD", "EUR"]},
                    "items": {"type": "array", "items": {"type": "integer", "minimum": 3}},
                    "note": {"type": "string"}}}}}
        ])
    }

    #[test]
    fn the_chosen_tool_gets_arguments_valid_against_its_schema() {
        let tools = order_tools();
        let first = plan(&body(json!({"tools": tools})), false).unwrap();
        assert_eq!(first.name, "lookup_order");
        assert_eq!(first.arguments, r#"{"order_id":"A-1042"}"#);
        let chosen = json!({"type": "function", "function": {"name": "issue_refund"}});
        let refund = plan(&body(json!({"tools": tools, "tool_choice": chosen})), false).unwrap();
        assert_eq!(refund.name, "issue_refund");
        let args: Value = serde_json::from_str(&refund.arguments).unwrap();
        assert_eq!(
            args,
            json!({"order_id": "examplexx", "amount": 1.0, "currency": "USD", "items": [3]})
        );
        for (name, tools) in [("lookup_order", &tools[0]), ("issue_refund", &tools[1])] {
            let schema = &tools["function"]["parameters"];
            let v = jsonschema::validator_for(schema).unwrap();
            let choice = json!({"type": "function", "function": {"name": name}});
            let good = plan(
                &body(json!({"tools": order_tools(), "tool_choice": choice})),
                false,
            );
            let good: Value = serde_json::from_str(&good.unwrap().arguments).unwrap();
            assert!(v.is_valid(&good), "{name}: {good}");
            let bad = plan(
                &body(json!({"tools": order_tools(), "tool_choice": choice})),
                true,
            );
            let bad: Value = serde_json::from_str(&bad.unwrap().arguments).unwrap();
            assert!(!v.is_valid(&bad), "{name}: {bad}");
        }
    }

    #[test]
    fn every_request_shape_and_the_edge_cases() {
        // Responses and Messages tool declarations; Anthropic's named tool choice.
        let responses = json!({"tools": [{"type": "function", "name": "ping",
            "parameters": {"type": "object", "properties": {"host": {"type": "string"}}}}]});
        let p = plan(&body(responses.clone()), false).unwrap();
        assert_eq!(
            (p.name.as_str(), p.arguments.as_str()),
            ("ping", r#"{"host":"example"}"#)
        );
        // Nothing required: the first property gets the wrong type.
        assert_eq!(
            plan(&body(responses), true).unwrap().arguments,
            r#"{"host":12345}"#
        );
        let messages = json!({"tools": [{"name": "a", "input_schema": {"type": "object"}},
            {"name": "b", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "b"}});
        let p = plan(&body(messages), true).unwrap();
        assert_eq!(p.name, "b");
        assert!(
            serde_json::from_str::<Value>(&p.arguments).is_err(),
            "no properties: not JSON"
        );
        assert_eq!(p.input(), json!({}));
        assert_eq!(plan(&body(json!({"messages": []})), false), None);
        assert_eq!(
            plan(
                &body(json!({"tools": order_tools(), "tool_choice": "none"})),
                false
            ),
            None
        );
    }
}
