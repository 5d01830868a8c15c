//! Property tests that the stream reader (the `memchr` splitter, borrowed event data, the typed
//! borrowed assemblers) reads every stream as the reference does: the splitter searched byte by
//! byte, event data copied, the assemblers as they were in `sse_reference` — over random event
//! sequences of each API (odd types, absurd indices, escapes, cut JSON) and random chunkings.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::messages::Messages;
use super::responses::Responses;
use super::shape::WireShape;
use super::sse::{EventKind, LimitError, StreamAssembler, StreamReader};
use super::sse_fuzz::{ReferenceSplitter, chunked, limits};
use super::sse_reference as reference;
use crate::capture::Usage;
use crate::config::UpstreamLimits;

/// Everything a caller can read from an assembler.
#[derive(Debug, PartialEq)]
struct Observed {
    model: Option<String>,
    id: Option<String>,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    complete: bool,
    has_token: bool,
    text: String,
    assembled_bytes: usize,
    count: usize,
    error: Option<String>,
    response: Value,
}

fn observe(a: &StreamAssembler) -> Observed {
    Observed {
        model: a.model().map(str::to_owned),
        id: a.id().map(str::to_owned),
        usage: a.usage(),
        finish_reason: a.finish_reason(),
        complete: a.complete(),
        has_token: a.has_token(),
        text: a.text().to_owned(),
        assembled_bytes: a.assembled_bytes(),
        count: a.tool_call_count(),
        error: a.stream_error().map(str::to_owned),
        response: a.to_response(),
    }
}

/// A reference assembler.
trait Reference {
    fn feed(&mut self, data: &[u8]) -> Result<EventKind, LimitError>;
    fn observed(&self) -> Observed;
}

impl Reference for reference::ChatAssembler {
    fn feed(&mut self, data: &[u8]) -> Result<EventKind, LimitError> {
        reference::ChatAssembler::feed(self, data)
    }

    fn observed(&self) -> Observed {
        Observed {
            model: self.model().map(str::to_owned),
            id: self.id().map(str::to_owned),
            usage: self.usage,
            finish_reason: self.finish_reason(),
            complete: self.complete(),
            has_token: self.has_token(),
            text: self.text().to_owned(),
            assembled_bytes: self.assembled_bytes(),
            count: self.tool_call_count(),
            error: None,
            response: self.to_response(),
        }
    }
}

impl Reference for reference::ResponsesAssembler {
    fn feed(&mut self, data: &[u8]) -> Result<EventKind, LimitError> {
        reference::ResponsesAssembler::feed(self, data)
    }

    fn observed(&self) -> Observed {
        Observed {
            model: self.model().map(str::to_owned),
            id: self.id().map(str::to_owned),
            usage: self.usage(),
            finish_reason: self.finish_reason(),
            complete: self.complete(),
            has_token: self.has_token(),
            text: self.text().to_owned(),
            assembled_bytes: self.assembled_bytes(),
            count: self.item_count(),
            error: self.error().map(str::to_owned),
            response: self.to_response(),
        }
    }
}

impl Reference for reference::MessagesAssembler {
    fn feed(&mut self, data: &[u8]) -> Result<EventKind, LimitError> {
        reference::MessagesAssembler::feed(self, data)
    }

    fn observed(&self) -> Observed {
        Observed {
            model: self.model().map(str::to_owned),
            id: self.id().map(str::to_owned),
            usage: self.usage(),
            finish_reason: self.finish_reason(),
            complete: self.complete(),
            has_token: self.has_token(),
            text: self.text().to_owned(),
            assembled_bytes: self.assembled_bytes(),
            count: self.block_count(),
            error: self.error().map(str::to_owned),
            response: self.to_response(),
        }
    }
}

/// The data of an event as it was read: copied, lines joined with `\n`.
fn reference_event_data(event: &[u8]) -> Option<Vec<u8>> {
    let mut data: Option<Vec<u8>> = None;
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            let d = data.get_or_insert_with(Vec::new);
            if !d.is_empty() {
                d.push(b'\n');
            }
            d.extend_from_slice(rest);
        }
    }
    data
}

/// The stream reader as it was, over a reference assembler.
struct ReferenceReader<A> {
    splitter: ReferenceSplitter,
    assembler: A,
    limits: UpstreamLimits,
    received: usize,
    events: usize,
    malformed: bool,
}

impl<A: Reference> ReferenceReader<A> {
    fn new(assembler: A, limits: UpstreamLimits) -> Self {
        Self {
            splitter: ReferenceSplitter::new(limits.max_event_bytes),
            assembler,
            limits,
            received: 0,
            events: 0,
            malformed: false,
        }
    }

    fn push(&mut self, chunk: &[u8]) -> Result<Vec<(Bytes, EventKind)>, LimitError> {
        self.received = self.received.saturating_add(chunk.len());
        if self.received > self.limits.max_stream_bytes {
            return Err(LimitError::StreamTooLarge {
                limit: self.limits.max_stream_bytes,
            });
        }
        let mut out = Vec::new();
        for event in self.splitter.push(chunk)? {
            self.events += 1;
            if self.events > self.limits.max_stream_events {
                return Err(LimitError::TooManyEvents {
                    limit: self.limits.max_stream_events,
                });
            }
            let kind = match reference_event_data(&event) {
                Some(data) => self.assembler.feed(&data)?,
                None => EventKind::Other,
            };
            self.malformed |= kind == EventKind::Malformed;
            out.push((event, kind));
        }
        Ok(out)
    }
}

/// Reads `stream`, cut at `cuts`, with the reader and with the reference; they must agree after
/// every chunk, on the events, their kinds, the bound broken and everything assembled.
fn agree<A: Reference>(
    new: StreamAssembler,
    old: A,
    stream: &[u8],
    cuts: &[usize],
) -> Result<(), TestCaseError> {
    let l = limits();
    let mut n = StreamReader::with_assembler(new, l);
    let mut o = ReferenceReader::new(old, l);
    for c in chunked(stream, cuts) {
        let got = n.push(Bytes::from(c.clone()));
        prop_assert_eq!(&got, &o.push(&c));
        let seen = observe(n.assembler());
        prop_assert_eq!(&seen, &o.assembler.observed());
        prop_assert_eq!(n.malformed(), o.malformed);
        let written = n.assembler().to_response_bytes();
        let written: Option<Value> = serde_json::from_slice(&written).ok();
        prop_assert_eq!(written.as_ref(), Some(&seen.response));
        if got.is_err() {
            break;
        }
    }
    Ok(())
}

// ---- generators ----

/// Strings with escapes, non-ASCII and line breaks.
fn text() -> impl Strategy<Value = String> {
    "[a-z \\\\\"\u{e9}\u{1F600}\n\t/]{0,12}"
}

/// A value of the wrong type for almost any field.
fn odd() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(json!([])),
        Just(json!([1, "a"])),
        Just(json!({})),
        Just(json!({"a": {"b": [null]}})),
        Just(json!(1.5)),
    ]
    .boxed()
}

/// A field's value: absent, of its type (from `typed`), or odd.
fn field(typed: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        10 => Just(None),
        20 => typed.prop_map(Some),
        1 => odd().prop_map(Some),
    ]
    .boxed()
}

fn string() -> BoxedStrategy<Value> {
    text().prop_map(Value::from).boxed()
}

fn one_of(words: &'static [&'static str]) -> BoxedStrategy<Value> {
    proptest::sample::select(words)
        .prop_map(Value::from)
        .boxed()
}

/// Indices: mostly small, sometimes at or past the bounds, or absurd.
fn index() -> BoxedStrategy<Value> {
    prop_oneof![
        8 => (0u64..6).prop_map(Value::from),
        1 => proptest::sample::select(&[4u64, 8, 9, u32::MAX as u64, u64::MAX][..])
            .prop_map(Value::from),
        1 => proptest::sample::select(&["-1", "1e8", "18446744073709551616", "2.0"][..])
            .prop_map(|n| serde_json::from_str(n).unwrap_or(Value::Null)),
    ]
    .boxed()
}

/// An object of the fields that are present.
fn object(fields: Vec<(&'static str, BoxedStrategy<Option<Value>>)>) -> BoxedStrategy<Value> {
    let (keys, values): (Vec<_>, Vec<_>) = fields.into_iter().unzip();
    values
        .prop_map(move |values| {
            let map: Map<String, Value> = (keys.iter())
                .zip(values)
                .filter_map(|(k, v)| Some(((*k).to_owned(), v?)))
                .collect();
            Value::Object(map)
        })
        .boxed()
}

fn array(item: BoxedStrategy<Value>, n: usize) -> BoxedStrategy<Value> {
    proptest::collection::vec(item, 0..n)
        .prop_map(Value::Array)
        .boxed()
}

/// An event's data as an upstream might write it: the JSON, or (one in ten) the JSON cut short.
fn data(json: BoxedStrategy<Value>) -> BoxedStrategy<Vec<u8>> {
    (json, proptest::bool::weighted(0.1), any::<usize>())
        .prop_map(|(v, cut, at)| {
            let s = v.to_string();
            let s = if cut && !s.is_empty() {
                let at = at % s.len();
                let at = (0..=at).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
                &s[..at]
            } else {
                &s
            };
            s.as_bytes().to_vec()
        })
        .boxed()
}

/// Frames `data` as one event (optionally with an `event:` line and CRLF line ends).
fn frame(data: BoxedStrategy<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    (data, any::<bool>(), proptest::option::of("[a-z_.]{1,24}"))
        .prop_map(|(d, crlf, name)| {
            let nl: &[u8] = if crlf { b"\r\n" } else { b"\n" };
            let mut e = Vec::new();
            if let Some(name) = name {
                e.extend_from_slice(b"event: ");
                e.extend_from_slice(name.as_bytes());
                e.extend_from_slice(nl);
            }
            e.extend_from_slice(b"data: ");
            e.extend_from_slice(&d);
            e.extend_from_slice(nl);
            e.extend_from_slice(nl);
            e
        })
        .boxed()
}

/// Things any stream may hold besides its API's events.
fn noise() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        Just(b": keep-alive\n\n".to_vec()),
        Just(b"data: [DONE]\n\n".to_vec()),
        Just(b"data: {\"a\":1}\ndata: {\"b\":2}\n\n".to_vec()),
        Just(b"data: \xff\xfe\n\n".to_vec()),
        "[{}\\[\\]\":,a-z0-9]{0,40}".prop_map(|j| format!("data: {j}\n\n").into_bytes()),
    ]
    .boxed()
}

fn chat_chunk() -> BoxedStrategy<Value> {
    let function = object(vec![
        ("name", field(string())),
        ("arguments", field(string())),
    ]);
    let call = object(vec![
        ("index", field(index())),
        ("id", field(string())),
        ("type", field(one_of(&["function", "custom"]))),
        ("function", field(function)),
    ]);
    let delta = object(vec![
        ("role", field(one_of(&["assistant", "tool"]))),
        ("content", field(string())),
        ("refusal", field(string())),
        ("reasoning_content", field(string())),
        ("tool_calls", field(array(call, 3))),
    ]);
    let choice = object(vec![
        ("index", field(index())),
        ("delta", field(delta)),
        ("text", field(string())),
        (
            "finish_reason",
            field(one_of(&["stop", "length", "tool_calls"])),
        ),
        ("logprobs", field(Just(Value::Null).boxed())),
    ]);
    let usage = object(vec![
        ("prompt_tokens", field(index())),
        ("completion_tokens", field(index())),
        ("total_tokens", field(index())),
    ]);
    object(vec![
        ("id", field(string())),
        ("object", field(one_of(&["chat.completion.chunk"]))),
        ("created", field(index())),
        ("model", field(string())),
        ("choices", field(array(choice, 3))),
        ("usage", field(usage)),
    ])
}

fn chat_stream() -> impl Strategy<Value = Vec<u8>> {
    let event = prop_oneof![9 => frame(data(chat_chunk())), 1 => noise()];
    proptest::collection::vec(event, 0..24).prop_map(|e| e.concat())
}

fn response_item() -> BoxedStrategy<Value> {
    let part = object(vec![
        ("type", field(one_of(&["output_text", "refusal"]))),
        ("text", field(string())),
    ]);
    object(vec![
        (
            "type",
            field(one_of(&["message", "function_call", "reasoning"])),
        ),
        ("id", field(string())),
        ("role", field(one_of(&["assistant"]))),
        ("content", field(array(part, 3))),
        ("arguments", field(string())),
    ])
}

fn responses_event() -> BoxedStrategy<Value> {
    let usage = object(vec![
        ("input_tokens", field(index())),
        ("output_tokens", field(index())),
        ("total_tokens", field(index())),
    ]);
    let response = object(vec![
        ("id", field(string())),
        ("object", field(one_of(&["response"]))),
        ("model", field(string())),
        (
            "status",
            field(one_of(&[
                "in_progress",
                "completed",
                "incomplete",
                "failed",
            ])),
        ),
        ("output", field(array(response_item(), 3))),
        ("usage", field(usage)),
        ("error", field(object(vec![("code", field(string()))]))),
    ]);
    let kind = one_of(&[
        "response.created",
        "response.in_progress",
        "response.queued",
        "response.output_item.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.function_call_arguments.delta",
        "response.refusal.delta",
        "response.output_item.done",
        "response.completed",
        "response.incomplete",
        "response.failed",
        "error",
        "response.reasoning_summary_text.delta",
    ]);
    object(vec![
        ("type", field(kind)),
        ("sequence_number", field(index())),
        ("output_index", field(index())),
        ("content_index", field(index())),
        ("delta", field(string())),
        ("item", field(response_item())),
        ("response", field(response)),
        ("code", field(string())),
        ("message", field(string())),
    ])
}

fn responses_stream() -> impl Strategy<Value = Vec<u8>> {
    let odd = prop_oneof![
        Just(
            br#"data: {"type":"response.output_item.added","output_index":0,"item":{"type":"message","type":"function_call"}}

"#
            .to_vec()
        ),
        Just(b"data: {\"type\":\"response.output_item.added\",\"item\":7}\n\n".to_vec()),
    ];
    let event = prop_oneof![18 => frame(data(responses_event())), 2 => noise(), 1 => odd];
    proptest::collection::vec(event, 0..24).prop_map(|e| e.concat())
}

fn messages_event() -> BoxedStrategy<Value> {
    let usage = || {
        object(vec![
            ("input_tokens", field(index())),
            ("output_tokens", field(index())),
            ("cache_creation_input_tokens", field(index())),
            ("cache_read_input_tokens", field(index())),
        ])
    };
    let message = object(vec![
        ("id", field(string())),
        ("type", field(one_of(&["message"]))),
        ("role", field(one_of(&["assistant"]))),
        ("model", field(string())),
        ("content", field(Just(json!([])).boxed())),
        ("usage", field(usage())),
    ]);
    let block = object(vec![
        (
            "type",
            field(one_of(&["text", "tool_use", "thinking", "server_tool_use"])),
        ),
        ("text", field(string())),
        ("thinking", field(string())),
        ("id", field(string())),
        ("name", field(string())),
        ("input", field(Just(json!({})).boxed())),
    ]);
    let citation = object(vec![
        ("type", field(one_of(&["char_location"]))),
        ("cited_text", field(string())),
    ]);
    let delta = object(vec![
        (
            "type",
            field(one_of(&[
                "text_delta",
                "input_json_delta",
                "thinking_delta",
                "signature_delta",
                "citations_delta",
            ])),
        ),
        ("text", field(string())),
        ("partial_json", field(string())),
        ("thinking", field(string())),
        ("signature", field(string())),
        ("citation", field(citation)),
        (
            "stop_reason",
            field(one_of(&["end_turn", "tool_use", "max_tokens"])),
        ),
        ("stop_sequence", field(string())),
    ]);
    let kind = one_of(&[
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    ]);
    let error = object(vec![
        ("type", field(one_of(&["overloaded_error"]))),
        ("message", field(string())),
    ]);
    object(vec![
        ("type", field(kind)),
        ("message", field(message)),
        ("index", field(index())),
        ("content_block", field(block)),
        ("delta", field(delta)),
        ("usage", field(usage())),
        ("error", field(error)),
    ])
}

fn messages_stream() -> impl Strategy<Value = Vec<u8>> {
    let odd = prop_oneof![
        Just(
            br#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","text":"b"}}

"#
            .to_vec()
        ),
        Just(
            br#"data: {"type":"content_block_start","index":1,"content_block":{"type":"text","type":"tool_use"}}

"#
            .to_vec()
        ),
        Just(
            br#"data: {"type":"message_start","message":{"id":"a","model":"m","model":7,"usage":[1,2]}}

"#
            .to_vec()
        ),
    ];
    let event = prop_oneof![18 => frame(data(messages_event())), 2 => noise(), 1 => odd];
    proptest::collection::vec(event, 0..24).prop_map(|e| e.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_chat_stream_is_read_as_the_reference_reads_it(
        stream in chat_stream(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        chat in any::<bool>(),
    ) {
        agree(
            StreamAssembler::with_limits(chat, limits()),
            reference::ChatAssembler::with_limits(chat, limits()),
            &stream,
            &cuts,
        )?;
    }

    #[test]
    fn a_responses_stream_is_read_as_the_reference_reads_it(
        stream in responses_stream(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        agree(
            Responses.stream_assembler(limits()),
            reference::ResponsesAssembler::new(limits()),
            &stream,
            &cuts,
        )?;
    }

    #[test]
    fn a_messages_stream_is_read_as_the_reference_reads_it(
        stream in messages_stream(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        agree(
            Messages.stream_assembler(limits()),
            reference::MessagesAssembler::new(limits()),
            &stream,
            &cuts,
        )?;
    }
}

#[test]
fn escaped_strings_and_ids_arrive_whole() {
    let mut r = StreamReader::new(true, UpstreamLimits::default());
    let events = concat!(
        "data: {\"id\":\"c\\u00e9\",\"model\":\"m\\/1\",\"choices\":[{\"index\":0,",
        "\"delta\":{\"role\":\"assistant\",\"content\":\"a\\\"b\\n\"}}]}\n\n",
        "data: {\"id\":\"other\",\"model\":\"other\",\"choices\":[{\"index\":0,",
        "\"delta\":{\"content\":\"\u{1F600}\"},\"finish_reason\":\"stop\"}]}\n\n",
    );
    r.push(Bytes::from_static(events.as_bytes())).unwrap();
    let a = r.assembler();
    assert_eq!((a.id(), a.model()), (Some("cé"), Some("m/1")));
    assert_eq!(a.text(), "a\"b\n\u{1F600}");
    assert_eq!(a.finish_reason().as_deref(), Some("stop"));
}

/// The one place the reader differs from the reference: what is only stored is kept as it came
/// (`RawValue`), so a number beyond f64 or a lone surrogate inside it no longer makes its event
/// malformed (a `Value` cannot hold them; the rebuilt answer has `null` there).
#[test]
fn a_stored_item_is_checked_for_syntax_not_read_as_a_value() {
    for item in [
        &br#"{"type":"response.output_item.added","output_index":0,"item":{"n":1e400}}"#[..],
        br#"{"type":"response.output_item.added","output_index":0,"item":{"a":"\ud800"}}"#,
    ] {
        let mut new = Responses.stream_assembler(limits());
        let mut old = reference::ResponsesAssembler::new(limits());
        assert_eq!(new.feed(item), Ok(EventKind::Chunk));
        assert_eq!(old.feed(item), Ok(EventKind::Malformed));
        assert_eq!(new.to_response()["output"], json!([null]));
    }
    let block = br#"{"type":"content_block_start","index":0,"content_block":{"n":1e400}}"#;
    let mut new = Messages.stream_assembler(limits());
    let mut old = reference::MessagesAssembler::new(limits());
    assert_eq!(new.feed(block), Ok(EventKind::Chunk));
    assert_eq!(old.feed(block), Ok(EventKind::Malformed));
    // Invalid JSON and invalid UTF-8 are malformed for both.
    for data in [
        &br#"{"type":"response.output_item.added","item":{"a":}}"#[..],
        b"{\"type\":\"response.output_item.added\",\"item\":{\"a\":\"\xff\"}}",
    ] {
        let mut new = Responses.stream_assembler(limits());
        let mut old = reference::ResponsesAssembler::new(limits());
        assert_eq!(
            (new.feed(data), old.feed(data)),
            (Ok(EventKind::Malformed), Ok(EventKind::Malformed)),
            "{}",
            String::from_utf8_lossy(data)
        );
    }
}
