//! Reading a whole (non-streamed) answer on the request path: text, finish reason, usage, the
//! answer's `model` and `id`, and the bounds on choices, tool calls, output items and content
//! blocks — in one typed pass over the bytes, without building a `serde_json::Value`.
//!
//! Each API has a small borrowed struct of the fields it reads (everything else is skipped);
//! strings that need no unescaping are borrowed. The typed read is strict — a field of an
//! unexpected type fails it — and an answer it cannot read goes through the `Value` readers of
//! the API (`sse::summary_of`, `responses::summary_of`, `messages::summary_of` and the
//! `check_body`s), which stay the reference: whenever the typed read succeeds it gives what they
//! give (`sse_fuzz` checks this on arbitrary bodies). The bytes themselves are what capture keeps.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::capture::Endpoint;
use crate::config::UpstreamLimits;

use super::sse::{self, LimitError, Summary};
use super::{messages, responses};

/// What the request path reads from a whole answer.
#[derive(Debug, Default, PartialEq)]
pub struct WholeAnswer {
    pub summary: Summary,
    /// The answer's `model` and `id` (for the span's `gen_ai.response.*`).
    pub model: Option<String>,
    pub id: Option<String>,
}

/// Why a whole answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The body is not JSON.
    NotJson,
    /// The answer broke one of the bounds.
    Beyond(LimitError),
}

/// The three whole-answer shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Chat completions, completions and embeddings.
    OpenAi,
    Responses,
    Messages,
}

impl Api {
    pub fn of(endpoint: Endpoint) -> Self {
        match endpoint {
            Endpoint::Responses => Api::Responses,
            Endpoint::Messages => Api::Messages,
            Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Embeddings => Api::OpenAi,
        }
    }
}

/// Reads `body`, an answer of `api`: the typed pass, else the `Value` readers.
pub fn read(api: Api, body: &[u8], limits: &UpstreamLimits) -> Result<WholeAnswer, BodyError> {
    // A struct would also read a JSON array positionally; only objects take the typed pass.
    if body.trim_ascii_start().first() == Some(&b'{')
        && let Some(read) = typed(api, body, limits)
    {
        return read;
    }
    by_value(api, body, limits)
}

/// The typed pass; `None` when the body is not in the shape it reads.
fn typed(api: Api, body: &[u8], limits: &UpstreamLimits) -> Option<Result<WholeAnswer, BodyError>> {
    Some(match api {
        Api::OpenAi => chat(serde_json::from_slice(body).ok()?, limits),
        Api::Responses => response(serde_json::from_slice(body).ok()?, limits),
        Api::Messages => message(serde_json::from_slice(body).ok()?, limits),
    })
}

/// The reference reading, through a `Value`.
pub fn by_value(api: Api, body: &[u8], limits: &UpstreamLimits) -> Result<WholeAnswer, BodyError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| BodyError::NotJson)?;
    let (checked, summary) = match api {
        Api::OpenAi => (sse::check_body(&value, limits), sse::summary_of(&value)),
        Api::Responses => (
            responses::check_body(&value, limits),
            responses::summary_of(&value),
        ),
        Api::Messages => (
            messages::check_body(&value, limits),
            messages::summary_of(&value),
        ),
    };
    checked.map_err(BodyError::Beyond)?;
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    Ok(WholeAnswer {
        summary,
        model: text("model"),
        id: text("id"),
    })
}

/// Parses `json` as `T`. Text that is valid UTF-8 (the usual case) is checked once, as a whole,
/// and parsed as a `str`, instead of string by string (serde_json validates each string it
/// reads or skips in bytes, a cost per string that dominates short ones); other bytes are parsed
/// as bytes, so that the result is the same either way.
pub(super) fn from_json<'a, T: Deserialize<'a>>(json: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(json) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(json),
    }
}

/// A string, borrowed from the body when it has no escapes.
#[derive(Debug)]
pub(super) struct Str<'a>(pub(super) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Any JSON value, and its string if it is one (what `Value::as_str` reads, without building
/// the value): other values are skipped.
#[derive(Debug, Default)]
pub(super) struct AnyStr<'a>(pub(super) Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for AnyStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(AnyStr(Some(Cow::Borrowed(s))))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(AnyStr(Some(Cow::Owned(s.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(AnyStr(Some(Cow::Owned(s))))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(AnyStr(None))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnyStr(None))
            }
        }
        d.deserialize_any(V)
    }
}

impl AnyStr<'_> {
    pub(super) fn as_str(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl Str<'_> {
    fn is(&self, s: &str) -> bool {
        self.0 == s
    }
}

fn is(s: &Option<Str<'_>>, want: &str) -> bool {
    s.as_ref().is_some_and(|s| s.is(want))
}

pub(super) fn owned(s: Option<Str<'_>>) -> Option<String> {
    s.map(|s| s.0.into_owned())
}

// ---- chat completions, completions, embeddings ----

#[derive(Deserialize)]
struct ChatBody<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    model: Option<Str<'a>>,
    #[serde(borrow)]
    choices: Option<Vec<ChatChoice<'a>>>,
    usage: Option<sse::RawUsage>,
}

#[derive(Deserialize)]
struct ChatChoice<'a> {
    #[serde(borrow)]
    message: Option<ChatMessage<'a>>,
    #[serde(borrow)]
    text: Option<Str<'a>>,
    #[serde(borrow)]
    finish_reason: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct ChatMessage<'a> {
    #[serde(borrow)]
    content: Option<Str<'a>>,
    tool_calls: Option<Vec<IgnoredAny>>,
}

fn chat(body: ChatBody<'_>, limits: &UpstreamLimits) -> Result<WholeAnswer, BodyError> {
    let mut summary = Summary {
        usage: body.usage.map(Into::into),
        ..Summary::default()
    };
    if let Some(choices) = body.choices {
        if choices.len() > limits.max_choices {
            return Err(BodyError::Beyond(LimitError::TooManyChoices {
                count: choices.len(),
                limit: limits.max_choices,
            }));
        }
        for choice in &choices {
            let calls = (choice.message.as_ref())
                .and_then(|m| m.tool_calls.as_ref())
                .map_or(0, Vec::len);
            if calls > limits.max_tool_calls {
                return Err(BodyError::Beyond(LimitError::TooManyToolCalls {
                    count: calls,
                    limit: limits.max_tool_calls,
                }));
            }
        }
        if let Some(first) = choices.into_iter().next() {
            let content = first.message.and_then(|m| m.content);
            summary.text = owned(content.or(first.text));
            summary.finish_reason = owned(first.finish_reason);
        }
    }
    Ok(WholeAnswer {
        summary,
        model: owned(body.model),
        id: owned(body.id),
    })
}

// ---- the Responses API ----

#[derive(Deserialize)]
struct ResponseBody<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    model: Option<Str<'a>>,
    #[serde(borrow)]
    status: Option<Str<'a>>,
    #[serde(borrow)]
    incomplete_details: Option<Incomplete<'a>>,
    #[serde(borrow)]
    output: Option<Vec<Item<'a>>>,
    usage: Option<responses::RawUsage>,
}

#[derive(Deserialize)]
struct Incomplete<'a> {
    #[serde(borrow)]
    reason: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    content: Option<Vec<Part<'a>>>,
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    text: Option<Str<'a>>,
}

fn response(body: ResponseBody<'_>, limits: &UpstreamLimits) -> Result<WholeAnswer, BodyError> {
    let items = body.output.as_deref();
    let count = items.map_or(0, <[Item<'_>]>::len);
    if count > limits.max_tool_calls {
        return Err(BodyError::Beyond(LimitError::TooManyItems {
            what: "output items",
            count,
            limit: limits.max_tool_calls,
        }));
    }
    let text = items.map(|items| {
        let mut text = String::new();
        for item in items.iter().filter(|i| is(&i.kind, "message")) {
            for part in item.content.iter().flatten() {
                if is(&part.kind, "output_text")
                    && let Some(t) = &part.text
                {
                    text.push_str(&t.0);
                }
            }
        }
        text
    });
    let calls = || items.is_some_and(|o| o.iter().any(|i| is(&i.kind, "function_call")));
    let incomplete = (body.incomplete_details.as_ref())
        .and_then(|d| d.reason.as_ref())
        .map(|r| &*r.0);
    let finish_reason =
        (body.status.as_ref()).and_then(|s| responses::finish_reason_of(&s.0, incomplete, calls));
    Ok(WholeAnswer {
        summary: Summary {
            text,
            finish_reason,
            usage: body.usage.map(responses::RawUsage::into_usage),
        },
        model: owned(body.model),
        id: owned(body.id),
    })
}

// ---- Anthropic Messages ----

#[derive(Deserialize)]
struct MessageBody<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    model: Option<Str<'a>>,
    #[serde(borrow)]
    content: Option<Vec<Block<'a>>>,
    #[serde(borrow)]
    stop_reason: Option<Str<'a>>,
    usage: Option<messages::RawUsage>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    text: Option<Str<'a>>,
}

fn message(body: MessageBody<'_>, limits: &UpstreamLimits) -> Result<WholeAnswer, BodyError> {
    let blocks = body.content.as_deref();
    let count = blocks.map_or(0, <[Block<'_>]>::len);
    if count > limits.max_tool_calls {
        return Err(BodyError::Beyond(LimitError::TooManyItems {
            what: "content blocks",
            count,
            limit: limits.max_tool_calls,
        }));
    }
    let text = blocks.map(|blocks| {
        (blocks.iter())
            .filter(|b| is(&b.kind, "text"))
            .filter_map(|b| b.text.as_ref())
            .map(|t| &*t.0)
            .collect::<String>()
    });
    Ok(WholeAnswer {
        summary: Summary {
            text,
            finish_reason: body.stop_reason.map(|r| messages::finish_reason(&r.0)),
            usage: body.usage.map(messages::RawUsage::to_usage),
        },
        model: owned(body.model),
        id: owned(body.id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn both(api: Api, body: &Value) -> Result<WholeAnswer, BodyError> {
        let bytes = body.to_string();
        let limits = UpstreamLimits::default();
        let typed = typed(api, bytes.as_bytes(), &limits).expect("the typed pass reads it");
        assert_eq!(typed, by_value(api, bytes.as_bytes(), &limits), "{body}");
        typed
    }

    #[test]
    fn the_typed_pass_reads_what_the_value_readers_read() {
        let chat = json!({"id": "c1", "model": "m", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant",
                "content": "line\none \"quoted\"", "tool_calls": [{"id": "t"}]},
                "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                      "prompt_tokens_details": {"cached_tokens": 1}}});
        let read = both(Api::OpenAi, &chat).unwrap();
        assert_eq!(read.summary.text.as_deref(), Some("line\none \"quoted\""));
        assert_eq!(read.model.as_deref(), Some("m"));
        let completion = json!({"choices": [{"text": "hi", "finish_reason": "length"}]});
        assert_eq!(
            both(Api::OpenAi, &completion)
                .unwrap()
                .summary
                .text
                .as_deref(),
            Some("hi")
        );
        let embeddings = json!({"object": "list", "data": [{"embedding": [0.1, -2e-3]}],
            "model": "e", "usage": {"prompt_tokens": 2, "total_tokens": 2}});
        assert_eq!(both(Api::OpenAi, &embeddings).unwrap().summary.text, None);
        let response = json!({"id": "r", "model": "m", "status": "incomplete",
            "incomplete_details": {"reason": "content_filter"},
            "output": [{"type": "reasoning", "summary": []},
                {"type": "message", "content": [{"type": "output_text", "text": "a",
                    "annotations": []}, {"type": "refusal", "refusal": "no"},
                    {"type": "output_text", "text": "b"}]},
                {"type": "function_call", "name": "f", "arguments": "{}"}],
            "usage": {"input_tokens": 5, "output_tokens": 1, "total_tokens": 6}});
        let read = both(Api::Responses, &response).unwrap();
        assert_eq!(read.summary.text.as_deref(), Some("ab"));
        assert_eq!(
            read.summary.finish_reason.as_deref(),
            Some("content_filter")
        );
        let message = json!({"id": "msg", "type": "message", "model": "claude",
            "content": [{"type": "text", "text": "x"}, {"type": "tool_use", "id": "t",
                "name": "f", "input": {"a": 1}}, {"type": "text", "text": "y"}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 2, "output_tokens": 3, "cache_read_input_tokens": 4}});
        let read = both(Api::Messages, &message).unwrap();
        assert_eq!(read.summary.text.as_deref(), Some("xy"));
        assert_eq!(read.summary.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(read.summary.usage.unwrap().prompt_tokens, 6);
    }

    #[test]
    fn bounds_and_odd_bodies() {
        let limits = UpstreamLimits {
            max_choices: 1,
            ..UpstreamLimits::default()
        };
        let two = br#"{"choices": [{"text": "a"}, {"text": "b"}]}"#;
        assert!(matches!(
            read(Api::OpenAi, two, &limits),
            Err(BodyError::Beyond(LimitError::TooManyChoices {
                count: 2,
                ..
            }))
        ));
        assert_eq!(
            read(Api::OpenAi, b"{\"a\":", &limits),
            Err(BodyError::NotJson)
        );
        // Shapes the typed pass does not take are read as before.
        for odd in [
            &br#"["x", "m", [], null]"#[..],
            br#"{"choices": [{"message": {"content": [{"type": "text"}]}, "text": "t"}]}"#,
            br#"{"model": 1, "id": "i", "usage": null}"#,
            br#"{"model": "a", "model": "b"}"#,
        ] {
            assert_eq!(
                read(Api::OpenAi, odd, &limits),
                by_value(Api::OpenAi, odd, &limits)
            );
        }
    }
}
