//! [`JsonBody`]: a captured JSON body kept as the bytes that were sent or received.
//!
//! The request path never parses a captured body into a `serde_json::Value` nor serializes one
//! again: the body sent upstream and the body the upstream answered are kept as they were
//! (`bytes::Bytes`, shared with the response the client gets, no copy), the capture policy runs
//! over the text once (`super::policy`), and the writer's sinks write the bytes verbatim (a
//! `RawValue` into the store's JSON column, the JSONL line, the spool). Readers off the request
//! path (rubric checks, judge prompts, reports) parse what they need when they need it
//! ([`JsonBody::value`], or a typed borrowed read of [`JsonBody::as_str`]).
//!
//! Invariant: the bytes are one valid JSON text. Every constructor either checks it or is given
//! bytes its caller has just parsed ([`JsonBody::parsed`]).

use std::fmt;

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// One JSON body, as its bytes. Two bodies are equal when they hold the same JSON (the same
/// bytes, or the same value written differently: Postgres' `jsonb` gives its own text back).
#[derive(Clone)]
pub struct JsonBody(Bytes);

impl PartialEq for JsonBody {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 || self.value() == other.value()
    }
}

impl JsonBody {
    /// `bytes` when they are one valid JSON text (checked without building a value).
    pub fn parse(bytes: impl Into<Bytes>) -> Option<Self> {
        let bytes = bytes.into();
        serde_json::from_slice::<IgnoredAny>(&bytes).ok()?;
        Some(Self(bytes))
    }

    /// Bytes the caller has already parsed as JSON (an upstream answer that was read, a body
    /// the gateway wrote). Checked in debug builds only.
    pub fn parsed(bytes: Bytes) -> Self {
        debug_assert!(
            serde_json::from_slice::<IgnoredAny>(&bytes).is_ok(),
            "JsonBody::parsed given bytes that are not JSON"
        );
        Self(bytes)
    }

    /// The body as a value (parsed now; for readers off the request path).
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_slice(&self.0).unwrap_or(serde_json::Value::Null)
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The body's text (valid UTF-8: it is JSON).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("null")
    }

    /// The body as a borrowed raw JSON value, which serializes verbatim.
    pub fn raw(&self) -> &RawValue {
        // Validity is the type's invariant; `null` only if it were broken.
        serde_json::from_str(self.as_str()).unwrap_or_else(|_| null_raw())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

fn null_raw() -> &'static RawValue {
    static NULL: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    NULL.get_or_init(|| RawValue::from_string("null".to_owned()).unwrap_or_default())
}

impl From<serde_json::Value> for JsonBody {
    fn from(value: serde_json::Value) -> Self {
        Self(Bytes::from(value.to_string()))
    }
}

impl From<Box<RawValue>> for JsonBody {
    fn from(raw: Box<RawValue>) -> Self {
        let text: Box<str> = raw.into();
        Self(Bytes::from(String::from(text)))
    }
}

impl fmt::Debug for JsonBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JsonBody").field(&self.as_str()).finish()
    }
}

impl fmt::Display for JsonBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Written verbatim (serde_json writes a `RawValue` as its text).
impl Serialize for JsonBody {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.raw().serialize(serializer)
    }
}

/// Read through a `serde_json::Value`, so that it works inside the internally tagged
/// `CaptureEvent` too (serde buffers those, and a `RawValue` cannot come out of the buffer); the
/// value's text is then serde_json's (keys in order, no whitespace). The store reads its JSON
/// columns as `RawValue`s instead, which keeps the bytes.
impl<'de> Deserialize<'de> for JsonBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::CaptureEvent;

    #[test]
    fn bytes_are_kept_and_written_verbatim() {
        let text = r#"{"z": 1,  "a": [true, null], "s": "\u00e9"}"#;
        let body = JsonBody::parse(text.as_bytes().to_vec()).unwrap();
        assert_eq!(body.as_str(), text);
        // Written as it came: key order, whitespace and escapes.
        let written = serde_json::to_string(&serde_json::json!({"k": 0})).unwrap();
        assert_eq!(written, r#"{"k":0}"#);
        let wrapped = serde_json::to_string(&vec![&body]).unwrap();
        assert_eq!(wrapped, format!("[{text}]"));
        assert_eq!(body.value()["s"], "é");
        assert!(JsonBody::parse(&b"{\"a\":"[..]).is_none());
        assert!(JsonBody::parse(&b"{} {}"[..]).is_none());
        let spaced =
            JsonBody::parse(r#"{"s": "\u00e9", "a": [true,null], "z": 1}"#.as_bytes().to_vec());
        assert_eq!(spaced.as_ref(), Some(&body));
        assert_ne!(JsonBody::parse(&b"[1]"[..]), JsonBody::parse(&b"[2]"[..]));
    }

    #[test]
    fn bodies_read_back_inside_a_tagged_event() {
        let o: crate::capture::Observation = serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::nil(), "request_id": uuid::Uuid::nil(), "pair_id": null,
            "at": "2026-01-01T00:00:00Z", "deployment": "d", "variant": "v", "role": "stable",
            "purpose": "served", "stage": "s", "config_version": 1,
            "endpoint": "chat_completions", "upstream_model": "m", "stream": false,
            "bucket": null, "unit_key": null, "sticky": false, "cohort": {}, "status": 200,
            "error": null, "error_detail": null, "ttft_ms": null, "latency_ms": 1.0,
            "usage": null, "cost_usd": null, "finish_reason": null, "response_text": null,
            "request_body": {"model": "m"}, "response_body": null,
        }))
        .unwrap();
        let event = CaptureEvent::Observation(Box::new(o));
        let line = serde_json::to_string(&event).unwrap();
        assert!(line.contains(r#""request_body":{"model":"m"}"#), "{line}");
        let back: CaptureEvent = serde_json::from_str(&line).unwrap();
        assert_eq!(back, event);
    }
}
