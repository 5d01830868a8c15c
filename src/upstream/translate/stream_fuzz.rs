//! Property tests of the stream translators against what an upstream controls: random and
//! absurd events (huge and negative indices, indices that skip, deltas before their block,
//! events after the end, wrong types, giant numbers, bogus JSON, random bytes) in both
//! directions. Nothing may panic; every frame out is one whole SSE event whose data is JSON
//! (or `[DONE]`); what one event produces is bounded by its size; the state held stays within
//! `max_tool_calls` tool indices. And a well-formed stream reads back, through the client API's
//! own assembler, as the same text and tool calls as the upstream's.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::config::UpstreamLimits;
use crate::upstream::shape::{Messages, OpenAi, WireShape};
use crate::upstream::sse::{StreamReader, event_data};

const MAX_TOOLS: usize = 4;

fn index() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..6).prop_map(Value::from),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        Just(json!(1e300)),
        Just(json!("3")),
        Just(Value::Null),
    ]
}

fn text() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z \\\\\"{}\u{e9}\u{1F600}\n]{0,30}".prop_map(Value::from),
        Just(Value::Null),
        Just(json!(42)),
        Just(json!({"nested": true})),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        Just(json!(-5)),
        Just(json!(1.5)),
        Just(json!("12")),
    ]
}

/// One Anthropic event's data, well-formed or not.
fn anthropic_event() -> impl Strategy<Value = Vec<u8>> {
    let stop = prop_oneof![
        Just(json!("end_turn")),
        Just(json!("tool_use")),
        Just(json!("max_tokens")),
        Just(json!("pause_turn")),
        text()
    ];
    let blocks = prop_oneof![
        (text(), text(), number()).prop_map(|(id, model, n)| json!({"type": "message_start",
            "message": {"id": id, "model": model, "usage": {"input_tokens": n}}})),
        (index(), text()).prop_map(|(i, t)| json!({"type": "content_block_start", "index": i,
            "content_block": {"type": "text", "text": t}})),
        (index(), text(), text()).prop_map(|(i, id, name)| json!({"type": "content_block_start",
            "index": i, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}})),
        (index(), text()).prop_map(|(i, t)| json!({"type": "content_block_delta", "index": i,
            "delta": {"type": "text_delta", "text": t}})),
        (index(), text()).prop_map(|(i, t)| json!({"type": "content_block_delta", "index": i,
            "delta": {"type": "input_json_delta", "partial_json": t}})),
    ];
    let rest = prop_oneof![
        (index(), text()).prop_map(|(i, t)| json!({"type": "content_block_delta", "index": i,
            "delta": {"type": "thinking_delta", "thinking": t}})),
        index().prop_map(|i| json!({"type": "content_block_stop", "index": i})),
        (stop, number()).prop_map(|(r, n)| json!({"type": "message_delta",
            "delta": {"stop_reason": r}, "usage": {"output_tokens": n}})),
        Just(json!({"type": "message_stop"})),
        Just(json!({"type": "ping"})),
        text().prop_map(
            |m| json!({"type": "error", "error": {"type": "overloaded_error", "message": m}})
        ),
        Just(json!({"type": 7})),
    ];
    blocks
        .boxed()
        .prop_union(rest.boxed())
        .prop_map(|v| v.to_string().into_bytes())
        .boxed()
        .prop_union(garbage().boxed())
}

/// One chat chunk's data, well-formed or not.
fn chat_event() -> impl Strategy<Value = Vec<u8>> {
    let finish = prop_oneof![
        Just(json!("stop")),
        Just(json!("tool_calls")),
        Just(json!("length")),
        text()
    ];
    prop_oneof![
        (index(), text()).prop_map(|(i, t)| json!({"id": "c", "model": "m",
            "choices": [{"index": i, "delta": {"content": t}}]})),
        (index(), text(), text()).prop_map(|(i, id, args)| json!({"choices": [{"index": 0,
            "delta": {"tool_calls": [{"index": i, "id": id, "function": {"name": "f", "arguments": args}}]}}]})),
        (index(), text()).prop_map(|(i, args)| json!({"choices": [{"index": 0,
            "delta": {"tool_calls": [{"index": i, "function": {"arguments": args}}]}}]})),
        finish.prop_map(|f| json!({"choices": [{"index": 0, "delta": {}, "finish_reason": f}]})),
        (number(), number()).prop_map(|(p, c)| json!({"choices": [],
            "usage": {"prompt_tokens": p, "completion_tokens": c,
                      "prompt_tokens_details": {"cached_tokens": p}}})),
        Just(json!({"choices": "no"})),
        text().prop_map(|m| json!({"error": {"message": m}})),
    ]
    .prop_map(|v| v.to_string().into_bytes())
    .boxed()
    .prop_union(Just(b"[DONE]".to_vec()).boxed())
    .or(garbage().boxed())
}

fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[{}\\[\\]\":,a-z0-9]{0,60}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..100),
    ]
}

/// Every frame is one SSE event ending in a blank line, whose data is JSON or `[DONE]`.
fn check_frames(frames: &[bytes::Bytes]) {
    for f in frames {
        assert!(f.ends_with(b"\n\n"), "{f:?}");
        assert!(!f[..f.len() - 2].windows(2).any(|w| w == b"\n\n"), "{f:?}");
        let data = event_data(f).expect("a data line");
        if *data != b"[DONE]"[..] {
            serde_json::from_slice::<Value>(&data).expect("JSON data");
        }
    }
}

fn held_tools(t: &StreamTranslator) -> usize {
    match t {
        StreamTranslator::ToChat(t) => t.tools.len(),
        StreamTranslator::ToMessages(t) => t.tools.len(),
    }
}

fn run(direction: Direction, events: &[Vec<u8>]) {
    let mut t = StreamTranslator::new(direction, true, 0, MAX_TOOLS);
    for e in events {
        let out = t.event(e);
        check_frames(&out);
        let size: usize = out.iter().map(|f| f.len()).sum();
        // A few frames of fixed overhead, and each echoes the event's strings a bounded number of times.
        assert!(
            size <= 3 * e.len() + 2048,
            "{size} bytes out of {} in",
            e.len()
        );
        assert!(held_tools(&t) <= MAX_TOOLS);
    }
    check_frames(&t.finish());
    assert!(t.finish().is_empty(), "the end is sent once");
    check_frames(&[t.error_event("m", "c")]);
}

/// A well-formed answer: text pieces and tool calls whose argument pieces make a JSON object.
#[derive(Debug, Clone)]
enum Part {
    Text(Vec<String>),
    Tool(String, Vec<String>),
}

fn parts() -> impl Strategy<Value = Vec<Part>> {
    let piece = "[a-zA-Z \u{e9}]{1,8}";
    let part = prop_oneof![
        proptest::collection::vec(piece, 1..4).prop_map(Part::Text),
        ("[a-z]{1,6}", proptest::collection::vec(piece, 0..3)).prop_map(|(name, values)| {
            let args = json!({"q": values.concat()}).to_string();
            // Split the arguments into up to three pieces at char boundaries.
            let cut: Vec<usize> = args.char_indices().map(|(i, _)| i).collect();
            let (a, b) = (cut[cut.len() / 3], cut[2 * cut.len() / 3]);
            Part::Tool(
                name,
                vec![args[..a].into(), args[a..b].into(), args[b..].into()],
            )
        }),
    ];
    proptest::collection::vec(part, 0..5)
}

fn anthropic_stream(parts: &[Part]) -> Vec<Vec<u8>> {
    let mut out = vec![
        json!({"type": "message_start", "message": {"id": "msg", "type": "message", "model": "m",
        "usage": {"input_tokens": 3, "output_tokens": 1}}}),
    ];
    for (i, p) in parts.iter().enumerate() {
        match p {
            Part::Text(pieces) => {
                out.push(json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}));
                for t in pieces {
                    out.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": t}}));
                }
            }
            Part::Tool(name, pieces) => {
                out.push(
                    json!({"type": "content_block_start", "index": i, "content_block":
                    {"type": "tool_use", "id": format!("toolu_{i}"), "name": name, "input": {}}}),
                );
                for j in pieces {
                    out.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": j}}));
                }
            }
        }
        out.push(json!({"type": "content_block_stop", "index": i}));
    }
    out.push(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}}));
    out.push(json!({"type": "message_stop"}));
    out.into_iter()
        .map(|v| v.to_string().into_bytes())
        .collect()
}

fn chat_stream(parts: &[Part]) -> Vec<Vec<u8>> {
    let chunk =
        |delta: Value| json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta}]});
    let mut out = vec![chunk(json!({"role": "assistant"}))];
    let mut tool = 0;
    for p in parts {
        match p {
            Part::Text(pieces) => out.extend(pieces.iter().map(|t| chunk(json!({"content": t})))),
            Part::Tool(name, pieces) => {
                out.push(chunk(
                    json!({"tool_calls": [{"index": tool, "id": format!("call_{tool}"),
                    "type": "function", "function": {"name": name, "arguments": ""}}]}),
                ));
                for j in pieces {
                    out.push(chunk(
                        json!({"tool_calls": [{"index": tool, "function": {"arguments": j}}]}),
                    ));
                }
                tool += 1;
            }
        }
    }
    out.push(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}));
    out.push(json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}}));
    let mut out: Vec<Vec<u8>> = out
        .into_iter()
        .map(|v| v.to_string().into_bytes())
        .collect();
    out.push(b"[DONE]".to_vec());
    out
}

/// Text and `(name, arguments as JSON)` of the tool calls of a whole answer of any shape.
fn answer_of(body: &Value) -> (String, Vec<(String, Value)>) {
    let a = crate::capture::Answer::from_body(body).expect("an answer");
    let o = &a.outputs[0];
    let calls = (o.tool_calls.iter())
        .map(|c| {
            (
                c.name.clone(),
                serde_json::from_str(&c.arguments).unwrap_or(Value::Null),
            )
        })
        .collect();
    (o.text.clone(), calls)
}

/// The upstream's events through `reader` (its own API) and the translated client stream
/// through the client API's assembler: the two answers.
fn both(
    direction: Direction,
    events: &[Vec<u8>],
    upstream: &dyn WireShape,
    client: &dyn WireShape,
) -> (Value, Value) {
    let limits = UpstreamLimits::default();
    let mut up = StreamReader::with_assembler(upstream.stream_assembler(limits), limits);
    let mut down = StreamReader::with_assembler(client.stream_assembler(limits), limits);
    let mut t = StreamTranslator::new(direction, true, 0, 16);
    for e in events {
        let mut framed = b"data: ".to_vec();
        framed.extend_from_slice(e);
        framed.extend_from_slice(b"\n\n");
        up.push(framed.into()).unwrap();
        for f in t.event(e) {
            down.push(f).unwrap();
        }
    }
    for f in t.finish() {
        down.push(f).unwrap();
    }
    assert!(down.assembler().complete());
    assert!(!down.malformed());
    (up.assembler().to_response(), down.assembler().to_response())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn anthropic_events_never_panic_and_stay_bounded(events in proptest::collection::vec(anthropic_event(), 0..60)) {
        run(Direction::ChatToMessages, &events);
    }

    #[test]
    fn chat_chunks_never_panic_and_stay_bounded(events in proptest::collection::vec(chat_event(), 0..60)) {
        run(Direction::MessagesToChat, &events);
    }

    #[test]
    fn a_well_formed_anthropic_stream_reads_back_as_the_same_chat_answer(parts in parts()) {
        let (up, down) = both(Direction::ChatToMessages, &anthropic_stream(&parts), &Messages, &OpenAi::CHAT_COMPLETIONS);
        prop_assert_eq!(answer_of(&up), answer_of(&down));
    }

    #[test]
    fn a_well_formed_chat_stream_reads_back_as_the_same_message(parts in parts()) {
        let (up, down) = both(Direction::MessagesToChat, &chat_stream(&parts), &OpenAi::CHAT_COMPLETIONS, &Messages);
        prop_assert_eq!(answer_of(&up), answer_of(&down));
    }
}
