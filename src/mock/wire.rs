//! The OpenAI wire format as the mock speaks it: reading the fields of a request it needs, and
//! building response objects, stream chunks and errors exactly as the official API shapes them.
//!
//! Owns: JSON shapes only. Never: sleeps, logs or decides anything (see `answer`).
//! Errors are always the OpenAI shape `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::config::ErrorStatus;

/// An error answered to the client in the OpenAI shape.
#[derive(Debug, Clone, PartialEq)]
pub struct MockHttpError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
    pub retry_after_secs: Option<u64>,
}

impl MockHttpError {
    pub fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: None,
            retry_after_secs: None,
        }
    }

    pub fn missing(param: &'static str) -> Self {
        Self {
            code: Some("missing_required_parameter"),
            ..Self::invalid(
                format!("Missing required parameter: '{param}'."),
                Some(param),
            )
        }
    }

    pub fn model_not_found(model: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: Some("model_not_found"),
            ..Self::invalid(
                format!("The model `{model}` does not exist or you do not have access to it."),
                Some("model"),
            )
        }
    }

    pub fn not_found(path: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            ..Self::invalid(format!("Invalid URL ({path})"), None)
        }
    }

    /// The error a profile injects.
    pub fn injected(status: ErrorStatus, retry_after_secs: u64) -> Self {
        let base = Self::invalid("", None);
        match status {
            ErrorStatus::BadRequest400 => Self {
                message: "Invalid request (injected by canarist mock-upstream).".to_owned(),
                ..base
            },
            ErrorStatus::RateLimited429 => Self {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: format!(
                    "Rate limit reached for requests. Please try again in {retry_after_secs}s."
                ),
                kind: "requests",
                code: Some("rate_limit_exceeded"),
                retry_after_secs: Some(retry_after_secs),
                ..base
            },
            ErrorStatus::Internal500 => Self {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: "The server had an error while processing your request. Sorry about that!"
                    .to_owned(),
                kind: "server_error",
                ..base
            },
            ErrorStatus::Unavailable503 => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "The engine is currently overloaded, please try again later.".to_owned(),
                kind: "server_error",
                ..base
            },
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for MockHttpError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The request body as a JSON object; anything else is a 400.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, MockHttpError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(MockHttpError::invalid(
            "The request body must be a JSON object.",
            None,
        )),
        Err(e) => Err(MockHttpError::invalid(
            format!(
                "We could not parse the JSON body of your request. ({e}) (HINT: This likely means \
                 you aren't using your HTTP library correctly.)"
            ),
            None,
        )),
    }
}

/// The `model` field.
pub fn model(body: &Map<String, Value>) -> Result<&str, MockHttpError> {
    match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => Ok(m),
        None | Some(Value::Null) => Err(MockHttpError::missing("model")),
        Some(_) => Err(MockHttpError::invalid(
            "'model' must be a non-empty string.",
            Some("model"),
        )),
    }
}

/// `n` must be absent or 1.
pub fn check_n(body: &Map<String, Value>) -> Result<(), MockHttpError> {
    match body.get("n") {
        None | Some(Value::Null) => Ok(()),
        Some(v) if v.as_u64() == Some(1) => Ok(()),
        Some(v) => Err(MockHttpError::invalid(
            format!("canarist mock-upstream supports n=1 only, got n={v}."),
            Some("n"),
        )),
    }
}

/// `(stream, stream_options.include_usage)`.
pub fn stream_flags(body: &Map<String, Value>) -> (bool, bool) {
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    (stream, stream && usage)
}

/// The unit key: `x-canarist-unit`, else the `user` field.
pub fn unit<'a>(headers: &'a HeaderMap, body: &'a Map<String, Value>) -> Option<&'a str> {
    headers
        .get("x-canarist-unit")
        .and_then(|v| v.to_str().ok())
        .or_else(|| body.get("user").and_then(Value::as_str))
        .filter(|u| !u.is_empty())
}

/// Text of a message's `content`: a string, or the text parts of an array.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// `(last user message text, all messages' text)` of a chat request; a 400 when `messages` is
/// missing or not a non-empty array.
pub fn chat_prompt(body: &Map<String, Value>) -> Result<(String, String), MockHttpError> {
    let messages = match body.get("messages") {
        None | Some(Value::Null) => return Err(MockHttpError::missing("messages")),
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(_) => {
            return Err(MockHttpError::invalid(
                "'messages' must be a non-empty array.",
                Some("messages"),
            ));
        }
    };
    let texts: Vec<String> = messages
        .iter()
        .map(|m| m.get("content").map(content_text).unwrap_or_default())
        .collect();
    let last_user = messages
        .iter()
        .zip(&texts)
        .rev()
        .find(|(m, _)| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    Ok((last_user, texts.join("\n")))
}

/// A string or an array of strings under `field`; a 400 otherwise.
pub fn string_list(
    body: &Map<String, Value>,
    field: &'static str,
) -> Result<Vec<String>, MockHttpError> {
    match body.get(field) {
        None | Some(Value::Null) => Err(MockHttpError::missing(field)),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                MockHttpError::invalid(
                    format!("'{field}' must be a string or an array of strings."),
                    Some(field),
                )
            }),
        Some(_) => Err(MockHttpError::invalid(
            format!("'{field}' must be a string or a non-empty array of strings."),
            Some(field),
        )),
    }
}

pub fn usage(prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

/// Identity of one response: its id, model and creation time, shared by all its chunks.
#[derive(Debug, Clone)]
pub struct Head {
    pub id: String,
    pub model: String,
    pub created: u64,
}

/// A `chat.completion`.
pub fn chat_completion(head: &Head, content: &str, usage: Value) -> Value {
    json!({
        "id": head.id,
        "object": "chat.completion",
        "created": head.created,
        "model": head.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": usage,
        "system_fingerprint": null,
    })
}

/// A `chat.completion.chunk` with one choice. The first chunk also carries the role; chunks
/// carry `"usage": null` when the client asked for a usage chunk (as OpenAI does).
pub fn chat_chunk(
    head: &Head,
    piece: &str,
    first: bool,
    finish: Option<&str>,
    with_usage: bool,
) -> Value {
    let delta = if first {
        json!({"role": "assistant", "content": piece})
    } else {
        json!({"content": piece})
    };
    let mut chunk = json!({
        "id": head.id,
        "object": "chat.completion.chunk",
        "created": head.created,
        "model": head.model,
        "system_fingerprint": null,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    });
    if with_usage {
        chunk["usage"] = Value::Null;
    }
    chunk
}

/// The final usage chunk of a stream: no choices, only usage.
pub fn usage_chunk(head: &Head, object: &str, usage: Value) -> Value {
    json!({
        "id": head.id,
        "object": object,
        "created": head.created,
        "model": head.model,
        "system_fingerprint": null,
        "choices": [],
        "usage": usage,
    })
}

/// A legacy `text_completion` choice.
pub fn text_choice(index: usize, text: &str, finish: Option<&str>) -> Value {
    json!({"text": text, "index": index, "logprobs": null, "finish_reason": finish})
}

/// A legacy `text_completion` object (also the shape of its stream chunks).
pub fn text_completion(head: &Head, choices: Vec<Value>, usage: Option<Value>) -> Value {
    let mut v = json!({
        "id": head.id,
        "object": "text_completion",
        "created": head.created,
        "model": head.model,
        "choices": choices,
        "system_fingerprint": null,
    });
    if let Some(u) = usage {
        v["usage"] = u;
    }
    v
}

/// An SSE `data:` frame.
pub fn sse(data: &Value) -> bytes::Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"data: ");
    // Serializing a `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, data);
    out.extend_from_slice(b"\n\n");
    bytes::Bytes::from(out)
}

pub const SSE_DONE: &[u8] = b"data: [DONE]\n\n";

/// A frame whose data is not valid JSON (an object cut off in a string).
pub fn sse_malformed(head: &Head, object: &str) -> bytes::Bytes {
    bytes::Bytes::from(format!(
        "data: {{\"id\":\"{}\",\"object\":\"{object}\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"\n\n",
        head.id
    ))
}

/// The first half of `body`, cut at a char boundary: never valid JSON for an object.
pub fn cut_in_half(body: &str) -> String {
    let mut mid = body.len() / 2;
    while !body.is_char_boundary(mid) {
        mid -= 1;
    }
    body[..mid].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn prompt_and_flags() {
        let b = obj(json!({"model": "m", "messages": [
            {"role": "system", "content": "Be nice."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": "Hello"},
        ], "stream": true, "stream_options": {"include_usage": true}}));
        let (last, all) = chat_prompt(&b).unwrap();
        assert_eq!(last, "Hi\nthere");
        assert_eq!(all, "Be nice.\nHi\nthere\nHello");
        assert_eq!(stream_flags(&b), (true, true));
        let b = obj(json!({"stream_options": {"include_usage": true}}));
        assert_eq!(stream_flags(&b), (false, false));
    }

    #[test]
    fn request_errors_have_openai_shape() {
        let e = chat_prompt(&obj(json!({"model": "m"}))).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            e.body(),
            json!({"error": {"message": "Missing required parameter: 'messages'.",
                "type": "invalid_request_error", "param": "messages",
                "code": "missing_required_parameter"}})
        );
        assert_eq!(
            parse_object(b"{nope").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse_object(b"[1]").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert!(check_n(&obj(json!({"n": 2}))).is_err());
        assert!(check_n(&obj(json!({"n": 1}))).is_ok());
        assert_eq!(model(&obj(json!({}))).unwrap_err().param, Some("model"));
        let e = MockHttpError::injected(ErrorStatus::RateLimited429, 3);
        assert_eq!(e.retry_after_secs, Some(3));
        assert_eq!(e.body()["error"]["code"], "rate_limit_exceeded");
    }

    #[test]
    fn malformed_frames_are_not_json() {
        let head = Head {
            id: "x".into(),
            model: "m".into(),
            created: 1,
        };
        let f = sse_malformed(&head, "chat.completion.chunk");
        let data = std::str::from_utf8(&f)
            .unwrap()
            .strip_prefix("data: ")
            .unwrap();
        assert!(serde_json::from_str::<Value>(data.trim()).is_err());
        let body = chat_completion(&head, "héllo wörld", usage(1, 2)).to_string();
        assert!(serde_json::from_str::<Value>(&cut_in_half(&body)).is_err());
    }
}
