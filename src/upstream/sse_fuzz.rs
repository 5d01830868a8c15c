//! Property tests of what an upstream controls: random and adversarial SSE streams (random
//! chunking, huge indices, missing blank lines, giant events, invalid UTF-8, bogus JSON, huge
//! usage numbers) through the splitter and the assembler, and random JSON bodies through the
//! body checks. Nothing may panic, and nothing held may grow past the limits.

use bytes::Bytes;
use proptest::prelude::*;

use super::sse::{
    EventKind, EventSplitter, LimitError, StreamReader, check_body, summarize_body, summary_of,
};
use super::whole;
use crate::config::UpstreamLimits;

/// Small limits, so that the generated streams cross them often.
pub(super) fn limits() -> UpstreamLimits {
    UpstreamLimits {
        max_body_bytes: 64 * 1024,
        max_stream_bytes: 32 * 1024,
        max_event_bytes: 4 * 1024,
        max_stream_events: 64,
        max_tool_calls: 8,
        max_choices: 4,
    }
}

/// Indices an upstream might send: small, at the bounds, and absurd.
fn index() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..10).prop_map(|i| i.to_string()),
        Just(u64::MAX.to_string()),
        Just((1u64 << 60).to_string()),
        Just("100000000".to_owned()),
        Just("1e8".to_owned()),
        Just("-1".to_owned()),
        Just("18446744073709551616".to_owned()),
        any::<u64>().prop_map(|i| i.to_string()),
    ]
}

/// One event's data (or a whole raw event) from the menu of things upstreams get wrong.
fn event() -> impl Strategy<Value = Vec<u8>> {
    let text = "[a-z \\\\\"\u{e9}\u{1F600}]{0,40}";
    prop_oneof![
        text.prop_map(|t| {
            let c = serde_json::json!({"choices": [{"index": 0, "delta": {"content": t}}]});
            format!("data: {c}\n\n").into_bytes()
        }),
        (index(), index(), text).prop_map(|(ci, ti, args)| {
            let args = serde_json::Value::from(args);
            format!(
                "data: {{\"choices\":[{{\"index\":{ci},\"delta\":{{\"tool_calls\":[{{\"index\":{ti},\"id\":\"c\",\"function\":{{\"name\":\"f\",\"arguments\":{args}}}}}]}}}}]}}\n\n"
            )
            .into_bytes()
        }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(p, c, t)| {
            format!("data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{p},\"completion_tokens\":{c},\"total_tokens\":{t}}}}}\n\n")
                .into_bytes()
        }),
        Just(b"data: {\"choices\":[{\"index\":0,\"finish_reason\":\"stop\"}]}\n\n".to_vec()),
        Just(b"data: [DONE]\n\n".to_vec()),
        Just(b": keep-alive\n\n".to_vec()),
        // Bogus JSON, invalid UTF-8, CRLF framing, no blank line at all.
        "[{}\\[\\]\":,a-z0-9]{0,60}".prop_map(|j| format!("data: {j}\n\n").into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(|mut b| {
            b.splice(0..0, b"data: ".iter().copied());
            b.extend_from_slice(b"\r\n\r\n");
            b
        }),
        proptest::collection::vec(any::<u8>(), 0..300),
        // Giant events: past max_event_bytes, with and without their blank line.
        (1usize..3, any::<bool>()).prop_map(|(k, end)| {
            let mut b = b"data: ".to_vec();
            b.resize(k * 3000, b'x');
            if end {
                b.extend_from_slice(b"\n\n");
            }
            b
        }),
    ]
}

/// Cuts `bytes` at the given (sorted, deduplicated) points.
pub(super) fn chunked(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for p in points.into_iter().chain([bytes.len()]) {
        out.push(bytes[start..p].to_vec());
        start = p;
    }
    out
}

/// Feeds `chunks` to a reader and checks the bounds after every chunk.
fn read_bounded(chunks: &[Vec<u8>], chat: bool) -> Result<StreamReader, LimitError> {
    let l = limits();
    let mut reader = StreamReader::new(chat, l);
    for chunk in chunks {
        reader.push(Bytes::copy_from_slice(chunk))?;
        assert!(reader.received() <= l.max_stream_bytes);
        assert!(reader.pending_len() <= l.max_event_bytes);
        assert!(reader.events() <= l.max_stream_events);
        let a = reader.assembler();
        assert!(a.assembled_bytes() <= reader.received());
        assert!(a.tool_call_count() <= l.max_tool_calls);
        // Rendering the answer never panics either, and its bytes are the same JSON.
        let whole = a.to_response();
        let written = a.to_response_bytes();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&written).ok(),
            Some(whole)
        );
    }
    Ok(reader)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn adversarial_streams_never_panic_or_grow_past_the_limits(
        events in proptest::collection::vec(event(), 0..40),
        cuts in proptest::collection::vec(any::<usize>(), 0..30),
        chat in any::<bool>(),
    ) {
        let stream: Vec<u8> = events.concat();
        // Whether the stream is refused or read, the checks in `read_bounded` held throughout.
        let _ = read_bounded(&chunked(&stream, &cuts), chat);
    }

    #[test]
    fn random_bytes_never_panic_or_grow_past_the_limits(
        bytes in proptest::collection::vec(any::<u8>(), 0..20_000),
        cuts in proptest::collection::vec(any::<usize>(), 0..50),
    ) {
        let _ = read_bounded(&chunked(&bytes, &cuts), true);
    }

    #[test]
    fn chunking_never_changes_the_events(
        events in proptest::collection::vec(event(), 0..30),
        cuts in proptest::collection::vec(any::<usize>(), 0..30),
    ) {
        let stream: Vec<u8> = events.concat();
        let whole = EventSplitter::new(usize::MAX)
            .push(Bytes::from(stream.clone()))
            .map(|v| v.concat());
        let mut s = EventSplitter::new(usize::MAX);
        let mut pieces = Vec::new();
        for c in chunked(&stream, &cuts) {
            pieces.extend(s.push(c.into()).unwrap_or_default());
        }
        prop_assert_eq!(whole.unwrap_or_default(), pieces.concat());
    }

    /// The splitter cuts exactly where the byte-by-byte reference cuts, whatever the chunking,
    /// and refuses the same streams.
    #[test]
    fn the_splitter_cuts_where_the_reference_cuts(
        events in proptest::collection::vec(framing(), 0..30),
        cuts in proptest::collection::vec(any::<usize>(), 0..30),
        max_event in prop_oneof![Just(usize::MAX), 0usize..400],
    ) {
        let stream: Vec<u8> = events.concat();
        let mut s = EventSplitter::new(max_event);
        let mut r = ReferenceSplitter::new(max_event);
        for c in chunked(&stream, &cuts) {
            let got = s.push(Bytes::from(c.clone()));
            prop_assert_eq!(&got, &r.push(&c));
            if got.is_err() {
                // The stream is abandoned: what is left does not matter.
                return Ok(());
            }
            prop_assert_eq!(s.pending_len(), r.buf.len());
        }
        prop_assert_eq!(s.finish(), r.finish());
    }

    #[test]
    fn random_json_bodies_never_panic(body in json_value()) {
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        if let Some(v) = summarize_body(&bytes) {
            let l = limits();
            if check_body(&v, &l).is_ok() {
                let n = v.get("choices").and_then(|c| c.as_array()).map_or(0, Vec::len);
                prop_assert!(n <= l.max_choices);
            }
            let _ = summary_of(&v);
        }
    }

    /// The typed whole-answer pass reads what the `Value` readers read, for every API.
    #[test]
    fn the_typed_read_of_a_whole_answer_agrees_with_the_value_read(body in json_value()) {
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let l = limits();
        for api in [whole::Api::OpenAi, whole::Api::Responses, whole::Api::Messages] {
            prop_assert_eq!(whole::read(api, &bytes, &l), whole::by_value(api, &bytes, &l));
        }
    }
}

/// JSON values shaped like (and unlike) chat completions.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z\u{e9}]{0,12}".prop_map(Value::from),
    ];
    let any_json = leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let completion = (0usize..12, 0usize..20, any_json.clone()).prop_map(|(n, calls, usage)| {
        let call =
            json!({"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}});
        let choice = json!({"index": 0, "message": {"role": "assistant", "content": "x",
                            "tool_calls": vec![call; calls]}, "finish_reason": "stop"});
        json!({"choices": vec![choice; n], "usage": usage})
    });
    let kind = prop_oneof![
        Just(json!("message")),
        Just(json!("text")),
        Just(json!("output_text")),
        Just(json!("function_call")),
        Just(json!("tool_use")),
        Just(json!(7)),
    ];
    let part = (kind.clone(), any_json.clone(), "[a-z]{0,4}")
        .prop_map(|(kind, extra, text)| json!({"type": kind, "text": text, "x": extra}));
    let item = (kind, proptest::collection::vec(part.clone(), 0..4))
        .prop_map(|(kind, content)| json!({"type": kind, "content": content}));
    let status = prop_oneof![
        Just(json!("completed")),
        Just(json!("incomplete")),
        Just(json!("queued")),
        Just(json!(null)),
        Just(json!("failed"))
    ];
    let response = (
        proptest::collection::vec(item, 0..12),
        status,
        any_json.clone(),
        any_json.clone(),
    )
        .prop_map(|(output, status, usage, details)| {
            json!({"id": "r", "model": "m", "status": status, "output": output,
                   "usage": usage, "incomplete_details": details})
        });
    let message = (
        proptest::collection::vec(part, 0..12),
        any_json.clone(),
        any_json.clone(),
    )
        .prop_map(|(content, stop, usage)| {
            json!({"id": "m", "type": "message", "content": content, "stop_reason": stop,
                   "usage": usage})
        });
    prop_oneof![any_json, completion, response, message]
}

#[test]
fn a_huge_tool_call_index_is_refused_without_allocating() {
    for index in [u64::MAX, 1 << 60, 100_000_000, 8] {
        let mut r = StreamReader::new(true, limits());
        let event = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"tool_calls\":[{{\"index\":{index},\"function\":{{\"name\":\"f\"}}}}]}}}}]}}\n\n"
        );
        assert_eq!(
            r.push(event.clone().into()).unwrap_err(),
            LimitError::ToolCallIndex { index, limit: 8 }
        );
        assert_eq!(r.assembler().tool_call_count(), 0);
    }
    // Below the bound, sparse indices hold one entry each.
    let mut r = StreamReader::new(true, limits());
    for index in [7, 0] {
        let event = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"tool_calls\":[{{\"index\":{index},\"function\":{{\"name\":\"f{index}\"}}}}]}}}}]}}\n\n"
        );
        assert_eq!(r.push(event.clone().into()).unwrap()[0].1, EventKind::Chunk);
    }
    let calls = r.assembler().to_response()["choices"][0]["message"]["tool_calls"].clone();
    assert_eq!(calls.as_array().map(Vec::len), Some(2), "{calls}");
    assert_eq!(calls[0]["function"]["name"], "f0");
}

#[test]
fn a_choice_index_beyond_the_bound_is_refused() {
    let mut r = StreamReader::new(true, limits());
    let e = r.push(Bytes::from_static(
        b"data: {\"choices\":[{\"index\":4,\"delta\":{\"content\":\"x\"}}]}\n\n",
    ));
    assert_eq!(
        e.unwrap_err(),
        LimitError::ChoiceIndex { index: 4, limit: 4 }
    );
}

#[test]
fn usage_numbers_at_u64_max_do_not_overflow() {
    let mut r = StreamReader::new(true, limits());
    let max = u64::MAX;
    let event = format!(
        "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{max},\"completion_tokens\":{max}}}}}\n\n"
    );
    assert_eq!(
        r.push(event.clone().into()).unwrap()[0].1,
        EventKind::UsageOnly
    );
    assert_eq!(r.assembler().usage().map(|u| u.total_tokens), Some(max));
}

#[test]
fn stream_bytes_and_events_are_bounded() {
    let l = limits();
    let mut r = StreamReader::new(true, l);
    let keep_alive = b": k\n\n";
    let mut result = Ok(Vec::new());
    for _ in 0..=l.max_stream_events {
        result = r.push(Bytes::from_static(keep_alive));
        if result.is_err() {
            break;
        }
    }
    assert_eq!(
        result.unwrap_err(),
        LimitError::TooManyEvents {
            limit: l.max_stream_events
        }
    );
    let mut r = StreamReader::new(true, l);
    let content = format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n",
        "y".repeat(1000)
    );
    let mut result = Ok(Vec::new());
    for _ in 0..64 {
        result = r.push(content.clone().into());
        if result.is_err() {
            break;
        }
    }
    assert_eq!(
        result.unwrap_err(),
        LimitError::StreamTooLarge {
            limit: l.max_stream_bytes
        }
    );
    assert!(r.assembler().text().len() <= l.max_stream_bytes);
}

#[test]
fn a_long_event_without_a_blank_line_is_scanned_once() {
    // 1 MiB without a blank line, 16 bytes at a time: the search looks at each byte about once
    // (a rescan of the whole buffer per chunk would be ~32 GiB of work), then refuses the event.
    let mut s = EventSplitter::new(1024 * 1024);
    let chunk = [b'x'; 16];
    let mut pushed = 0;
    let refused = loop {
        pushed += chunk.len();
        if let Err(e) = s.push(Bytes::copy_from_slice(&chunk)) {
            break e;
        }
    };
    assert_eq!(refused, LimitError::EventTooLarge { limit: 1024 * 1024 });
    assert!(pushed > 1024 * 1024);
    assert!(
        s.work <= 2 * pushed,
        "scanned {} bytes for {pushed}",
        s.work
    );
}

/// Bytes around blank lines: every way a line end, a blank line or `\r` may fall.
fn framing() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\r\n".to_vec()),
        Just(b"\r\n\r\n".to_vec()),
        Just(b"data: ".to_vec()),
        "[a-z:{} ]{0,12}".prop_map(String::into_bytes),
        event(),
    ]
}

/// The splitter as it was (one buffer, searched byte by byte): what the `memchr` splitter,
/// which slices events out of their chunk, must agree with.
pub(super) struct ReferenceSplitter {
    pub(super) buf: Vec<u8>,
    scanned: usize,
    max_event: usize,
}

impl ReferenceSplitter {
    pub(super) fn new(max_event: usize) -> Self {
        Self {
            buf: Vec::new(),
            scanned: 0,
            max_event,
        }
    }

    pub(super) fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, LimitError> {
        let too_large = LimitError::EventTooLarge {
            limit: self.max_event,
        };
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = Self::find_event_end(&self.buf, self.scanned) {
            if end > self.max_event {
                return Err(too_large);
            }
            events.push(Bytes::from(self.buf.drain(..end).collect::<Vec<u8>>()));
            self.scanned = 0;
        }
        if self.buf.len() > self.max_event {
            return Err(too_large);
        }
        self.scanned = self.buf.len().saturating_sub(2);
        Ok(events)
    }

    fn find_event_end(buf: &[u8], from: usize) -> Option<usize> {
        let mut i = from;
        while i + 1 < buf.len() {
            if buf[i] == b'\n' {
                if buf[i + 1] == b'\n' {
                    return Some(i + 2);
                }
                if buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
                    return Some(i + 3);
                }
            }
            i += 1;
        }
        None
    }

    fn finish(&mut self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| Bytes::from(std::mem::take(&mut self.buf)))
    }
}

#[test]
fn an_event_within_one_chunk_is_a_slice_of_it() {
    let mut s = EventSplitter::default();
    let chunk = Bytes::from_static(b"data: a\n\ndata: b\n\ndata: c");
    let events = s.push(chunk.clone()).unwrap();
    assert_eq!(events, [&b"data: a\n\n"[..], &b"data: b\n\n"[..]]);
    for e in &events {
        let offset = e.as_ptr() as usize - chunk.as_ptr() as usize;
        assert!(offset < chunk.len(), "not a slice of the chunk");
    }
    // The event that spans chunks is gathered, the blank line split between them too.
    assert!(s.push(Bytes::from_static(b"\n")).unwrap().is_empty());
    let events = s.push(Bytes::from_static(b"\r\ndata: d\n\n")).unwrap();
    assert_eq!(events, [&b"data: c\n\r\n"[..], &b"data: d\n\n"[..]]);
    assert_eq!(
        super::sse::event_data(&events[0]).as_deref(),
        Some(&b"c"[..])
    );
    assert_eq!(s.pending_len(), 0);
}

#[test]
fn event_data_borrows_one_line_and_joins_several() {
    use std::borrow::Cow;
    let one = super::sse::event_data(b"event: x\r\ndata: {}\r\n\r\n");
    assert!(matches!(one, Some(Cow::Borrowed(b"{}"))), "{one:?}");
    let two = super::sse::event_data(b"data:a\ndata: b\n: c\n\n");
    assert_eq!(two.as_deref(), Some(&b"a\nb"[..]));
    assert_eq!(super::sse::event_data(b": keep-alive\n\n"), None);
}
