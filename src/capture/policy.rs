//! The one capture-text policy: what is kept of any captured text. [`keep_text`] is the single
//! function that decides it — `capture.redact` replaces every match with `[REDACTED]`, and
//! `capture.max_body_bytes` caps the size — and [`apply`] runs it over every text an
//! [`Observation`] carries (answer text, error detail, request and response bodies, tool-call
//! arguments inside them) where the observation is built, before it enters the capture queue.
//! Everything stored or exported (the store, the JSONL sink, the judge's prompts, the reports)
//! reads observations, so nothing reaches them around this policy.
//!
//! A body is JSON and cannot be cut: one larger than the cap is not kept at all, and one whose
//! redaction broke its JSON is not kept either. Plain text (the answer, the error detail) is
//! kept cut at the cap, on a character boundary; redaction sees the text up to
//! [`REDACTION_MARGIN`] bytes past the cap first, so that a match straddling the cap is removed
//! rather than cut in half. The work is bounded by the cap, not by what the upstream sent.

use std::borrow::Cow;

use bytes::Bytes;

use crate::config::CaptureConfig;

use super::{JsonBody, Observation};

/// What a redaction pattern's match becomes.
pub const REDACTED: &str = "[REDACTED]";

/// How far past the cap redaction looks, so that a match that begins before the cap and ends
/// after it is still replaced.
pub const REDACTION_MARGIN: usize = 4096;

/// Whether a text may be cut at the cap (plain text) or must be kept whole or not at all (JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Text,
    Json,
}

/// What is kept of `text` under `policy`: redacted and capped, or `None` (a JSON text over the
/// cap). The one place that decides.
pub fn keep_text<'t>(policy: &CaptureConfig, text: &'t str, shape: Shape) -> Option<Cow<'t, str>> {
    let cap = policy.max_body_bytes;
    if shape == Shape::Json && text.len() > cap {
        return None;
    }
    let seen = cut(text, cap.saturating_add(REDACTION_MARGIN));
    let mut kept = Cow::Borrowed(seen);
    for re in &policy.redact {
        if let Cow::Owned(replaced) = re.replace_all(&kept, REDACTED) {
            kept = Cow::Owned(replaced);
        }
    }
    Some(match kept {
        Cow::Borrowed(b) => Cow::Borrowed(cut(b, cap)),
        Cow::Owned(o) if o.len() <= cap => Cow::Owned(o),
        Cow::Owned(o) => Cow::Owned(cut(&o, cap).to_owned()),
    })
}

/// A JSON body (`bytes`, valid JSON: sent by the gateway or read from the upstream) as the
/// policy keeps it: the same bytes when no rule matched (no copy, no parse), the redacted text
/// when one did and it is still JSON, nothing when it is over the cap or redaction broke it.
pub fn keep_body(policy: &CaptureConfig, bytes: Bytes) -> Option<JsonBody> {
    if bytes.len() > policy.max_body_bytes {
        return None;
    }
    if policy.redact.is_empty() {
        return Some(JsonBody::parsed(bytes));
    }
    let text = String::from_utf8_lossy(&bytes);
    match keep_text(policy, &text, Shape::Json)? {
        // Nothing matched (and nothing was cut: the body is under the cap).
        Cow::Borrowed(_) if matches!(text, Cow::Borrowed(_)) => Some(JsonBody::parsed(bytes)),
        // A pattern that broke the JSON structure makes the body unusable: keep nothing.
        kept => JsonBody::parse(kept.into_owned()),
    }
}

/// The bodies of a call as they came, before the policy.
#[derive(Debug, Default)]
pub struct RawBodies {
    /// The request body as sent upstream.
    pub sent: Option<Bytes>,
    /// The response as received (streams: reassembled into the whole answer's JSON).
    pub response: Option<Bytes>,
    /// The response's size as received, in bytes (a stream's is larger than its answer's).
    pub response_len: usize,
}

/// Runs the policy over every text of `obs` and sets its bodies from `raw`. Called once, where
/// the observation is built, before it enters the capture queue.
pub fn apply(policy: &CaptureConfig, obs: &mut Observation, raw: RawBodies) {
    let plain =
        |t: Option<String>| t.and_then(|t| keep_text(policy, &t, Shape::Text).map(Cow::into_owned));
    obs.response_text = plain(obs.response_text.take());
    obs.error_detail = plain(obs.error_detail.take());
    obs.finish_reason = plain(obs.finish_reason.take());
    obs.request_body = raw.sent.and_then(|b| keep_body(policy, b));
    obs.response_body = (raw.response)
        .filter(|_| raw.response_len <= policy.max_body_bytes)
        .and_then(|b| keep_body(policy, b));
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    pub(crate) fn policy(redact: &[&str], max: usize) -> CaptureConfig {
        CaptureConfig {
            sink: crate::config::SinkKind::Memory,
            queue_capacity: 1,
            batch_size: 1,
            flush_interval: Duration::from_millis(1),
            body_sample_rate: 1.0,
            redact: redact
                .iter()
                .map(|r| regex::Regex::new(r).unwrap())
                .collect(),
            max_body_bytes: max,
            write_attempts: 1,
            retry_backoff: Duration::from_millis(1),
            spool: None,
            row_sample_rate: 1.0,
            error_rows_per_flush: 20,
            max_aggregated_per_flush: 1,
            aggregate_interval: Duration::from_millis(1),
        }
    }

    const EMAIL: &str = r"[\w.+-]+@[\w-]+\.[\w.]+";

    #[test]
    fn bodies_are_redacted_and_size_capped() {
        let body = Bytes::from_static(br#"{"messages":[{"content":"mail me at a@b.com"}]}"#);
        let kept = keep_body(&policy(&[EMAIL], 1024), body.clone()).unwrap();
        assert_eq!(
            kept.as_str(),
            r#"{"messages":[{"content":"mail me at [REDACTED]"}]}"#
        );
        assert!(keep_body(&policy(&[], 10), body.clone()).is_none());
        assert!(keep_body(&policy(&[r#"""#], 1024), body.clone()).is_none());
        // No rule matched: the very bytes, not a copy.
        let same = keep_body(&policy(&["nomatch"], 1024), body.clone()).unwrap();
        assert_eq!(same.as_bytes().as_ptr(), body.as_ptr());
        let same = keep_body(&policy(&[], 1024), body.clone()).unwrap();
        assert_eq!(same.as_bytes().as_ptr(), body.as_ptr());
    }

    #[test]
    fn text_is_redacted_then_cut_on_a_char_boundary() {
        let p = policy(&[EMAIL], 12);
        assert_eq!(
            keep_text(&p, "hi a@b.com!", Shape::Text).unwrap(),
            "hi [REDACTED"
        );
        // A match straddling the cap is removed, not cut in half.
        let p = policy(&[EMAIL], 8);
        let kept = keep_text(&p, "mail: alice@example.com", Shape::Text).unwrap();
        assert!(!kept.contains("alice"), "{kept}");
        assert!(kept.len() <= 8);
        // Multi-byte characters are never split.
        let kept = keep_text(&policy(&[], 5), "ééé", Shape::Text).unwrap();
        assert_eq!(kept, "éé");
        assert!(keep_text(&policy(&[], 5), "{\"a\":1}", Shape::Json).is_none());
    }

    #[test]
    fn apply_covers_every_text_of_an_observation() {
        let mut obs: Observation = serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::nil(), "request_id": uuid::Uuid::nil(), "pair_id": null,
            "at": "2026-01-01T00:00:00Z", "deployment": "d", "variant": "v", "role": "stable",
            "purpose": "served", "stage": "s", "config_version": 1,
            "endpoint": "chat_completions", "upstream_model": "m", "stream": false,
            "bucket": null, "unit_key": null, "sticky": false, "cohort": {}, "status": 200,
            "error": null, "error_detail": "x@y.org failed", "ttft_ms": null,
            "latency_ms": 1.0, "usage": null, "cost_usd": null, "finish_reason": "stop",
            "response_text": format!("write to x@y.org {}", "z".repeat(5000)),
            "request_body": null, "response_body": null,
        }))
        .unwrap();
        let sent = Bytes::from_static(br#"{"messages": [{"content": "I am x@y.org"}]}"#);
        let response = serde_json::json!({"choices": [{"message": {"content": "x@y.org",
            "tool_calls": [{"function": {"name": "mail", "arguments": "{\"to\":\"x@y.org\"}"}}]}}]});
        let raw = |response: &serde_json::Value| RawBodies {
            sent: Some(sent.clone()),
            response: Some(Bytes::from(response.to_string())),
            response_len: 200,
        };
        apply(&policy(&[EMAIL], 1024), &mut obs, raw(&response));
        let stored = serde_json::to_string(&obs).unwrap();
        assert!(!stored.contains("x@y.org"), "{stored}");
        assert_eq!(obs.response_text.as_ref().map(String::len), Some(1024));
        assert!(obs.request_body.is_some() && obs.response_body.is_some());
        // Bodies over the cap are not kept.
        apply(&policy(&[], 10), &mut obs, raw(&response));
        assert!(obs.request_body.is_none() && obs.response_body.is_none());
    }
}
