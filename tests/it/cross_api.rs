//! A variant on the other API (issue 16 item 3) through the real gateway, in front of the real
//! mock's Chat Completions and Messages APIs, over real sockets: a Chat Completions client
//! served by a candidate on Anthropic's Messages API and a Messages client served by one on
//! Chat Completions, plain and streamed (each event translated as it comes); a tool call and
//! its result round-tripped across the two; a 400 naming the field that cannot be translated,
//! in the client's error shape; a shadow pair across the APIs, captured with both answers'
//! text and tool calls in their own forms; the mirror skips counted by reason.

use std::path::Path;

use canarist::capture::{Answer, Endpoint, Pair, Role};
use canarist::config::Config;
use canarist::mock::{MockConfig, MockServer, RecordedRequest};
use serde_json::{Value, json};

use crate::support::{Harness, metric_value};

const PROMPT: &str = "How do I change the credit card on file for my account?";
const KEY: &str = "sk-ant-cross";

fn config(mock: &MockServer) -> Config {
    let url = mock.base_url();
    let yaml = format!(
        r#"
providers:
  mock: {{ base_url: "{url}", timeout: 5s }}
  claude: {{ base_url: "{url}", api: anthropic, api_key_env: CLAUDE_KEY, timeout: 5s }}
prices:
  mock-stable: {{ input_per_mtok: 1.0, output_per_mtok: 2.0 }}
  mock-candidate-good: {{ input_per_mtok: 3.0, output_per_mtok: 4.0 }}
capture:
  flush_interval: 10ms
  batch_size: 50
deployments:
  - slug: to-claude
    mode: live
    stable: {{ provider: mock, model: mock-stable }}
    candidates: [ {{ name: claude, provider: claude, model: mock-candidate-good, percent: 100 }} ]
  - slug: to-chat
    mode: live
    stable: {{ provider: claude, model: mock-stable }}
    candidates: [ {{ name: gpt, provider: mock, model: mock-candidate-good, percent: 100 }} ]
  - slug: tools-to-claude
    mode: live
    stable: {{ provider: mock, model: mock-tools }}
    candidates: [ {{ name: claude, provider: claude, model: mock-tools, percent: 100 }} ]
  - slug: shadow-claude
    mode: shadow
    stable: {{ provider: mock, model: mock-tools }}
    candidates: [ {{ name: claude, provider: claude, model: mock-tools, percent: 100 }} ]
"#
    );
    Config::from_yaml(Path::new("cross.yaml"), &yaml, &|var| {
        (var == "CLAUDE_KEY").then(|| KEY.to_owned())
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn harness() -> Harness {
    let mock = MockServer::start(MockConfig::builtin().unwrap().with_seed(5))
        .await
        .unwrap();
    let config = config(&mock);
    Harness::with_config(mock, config).await
}

fn requests_to(h: &Harness, path: &str, model: &str) -> Vec<RecordedRequest> {
    (h.mock.requests().into_iter())
        .filter(|r| r.path == path && r.model.as_deref() == Some(model))
        .collect()
}

/// The `data` of every chat SSE frame, in order (`[DONE]` as the string).
fn chat_frames(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let data = f.strip_prefix("data: ").unwrap_or_else(|| panic!("{f}"));
            if data == "[DONE]" {
                json!("[DONE]")
            } else {
                serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {f}"))
            }
        })
        .collect()
}

/// `(event, data)` of every Anthropic SSE frame; each `event:` equals its data's `type`.
fn anthropic_frames(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|frame| {
            let (mut event, mut data) = (String::new(), String::new());
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            let data: Value =
                serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {frame}"));
            assert_eq!(data["type"], event.as_str(), "{frame}");
            (event, data)
        })
        .collect()
}

async fn observation_of(h: &Harness, r: &reqwest::Response) -> canarist::capture::Observation {
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let obs = h
        .wait_observations(|o| o.iter().any(|o| o.request_id.to_string() == id))
        .await;
    obs.into_iter()
        .find(|o| o.request_id.to_string() == id)
        .unwrap()
}

#[tokio::test]
async fn a_chat_client_is_served_by_a_candidate_on_the_messages_api_plain_and_streamed() {
    let h = harness().await;
    let body = json!({"model": "to-claude", "temperature": 0.3, "stop": ["\n\n\n"], "user": "u-1",
        "messages": [{"role": "system", "content": "You are ACME's support agent."},
                     {"role": "user", "content": PROMPT}]});
    let r = h.chat(&body, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-canarist-variant"], "claude");
    let obs = observation_of(&h, &r).await;
    let served: Value = r.json().await.unwrap();
    assert_eq!(served["object"], "chat.completion");
    let text = served["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.is_empty());
    assert_eq!(served["choices"][0]["finish_reason"], "stop");
    assert!(
        served["usage"]["prompt_tokens"].as_u64().unwrap() > 0,
        "{served}"
    );
    // What the Anthropic provider received: the Messages form, its key, a max_tokens.
    let seen = requests_to(&h, "/v1/messages", "mock-candidate-good");
    assert_eq!(seen.len(), 1);
    let sent = &seen[0].body;
    assert_eq!(sent["system"], "You are ACME's support agent.");
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": PROMPT}])
    );
    assert_eq!(sent["max_tokens"], 4096);
    assert_eq!(sent["stop_sequences"], json!(["\n\n\n"]));
    assert_eq!(sent["metadata"], json!({"user_id": "u-1"}));
    assert_eq!(seen[0].header("x-api-key"), Some(KEY));
    // Captured as the provider answered it, under the client's endpoint, priced.
    assert_eq!(obs.endpoint, Endpoint::ChatCompletions);
    assert_eq!(obs.role, Role::Candidate);
    assert_eq!(
        obs.response_body.as_ref().unwrap().value()["type"],
        "message"
    );
    assert_eq!(obs.response_text.as_deref(), Some(text));
    assert_eq!(obs.finish_reason.as_deref(), Some("stop"));
    assert!(obs.cost_usd.unwrap() > 0.0);

    for include_usage in [true, false] {
        let mut body = body.clone();
        body["stream"] = json!(true);
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        let r = h.chat(&body, &[]).await;
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let obs = observation_of(&h, &r).await;
        let frames = chat_frames(&r.text().await.unwrap());
        assert_eq!(frames.last().unwrap(), "[DONE]");
        let chunks = &frames[..frames.len() - 1];
        assert!(
            chunks
                .iter()
                .all(|c| c["object"] == "chat.completion.chunk"),
            "{chunks:#?}"
        );
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let content: String = (chunks.iter())
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(Some(content.as_str()), obs.response_text.as_deref());
        assert!(
            chunks
                .iter()
                .any(|c| c["choices"][0]["finish_reason"] == "stop")
        );
        let usage: Vec<&Value> = chunks.iter().filter(|c| c["usage"].is_object()).collect();
        if include_usage {
            assert_eq!(usage.len(), 1);
            assert_eq!(usage[0]["choices"], json!([]));
            assert!(usage[0]["usage"]["completion_tokens"].as_u64().unwrap() > 0);
        } else {
            assert!(usage.is_empty(), "{usage:?}");
        }
        assert!(obs.is_success(), "{obs:?}");
        assert_eq!(
            obs.response_body.as_ref().unwrap().value()["type"],
            "message"
        );
        assert!(obs.usage.unwrap().completion_tokens > 0);
    }
}

#[tokio::test]
async fn a_messages_client_is_served_by_a_candidate_on_chat_completions_plain_and_streamed() {
    let h = harness().await;
    let body = json!({"model": "to-chat", "max_tokens": 100, "system": "Be brief.",
        "metadata": {"user_id": "u-2"}, "messages": [{"role": "user", "content": PROMPT}]});
    let r = h.post("/v1/messages", &body, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-canarist-variant"], "gpt");
    let obs = observation_of(&h, &r).await;
    let served: Value = r.json().await.unwrap();
    assert_eq!(served["type"], "message");
    assert_eq!(served["role"], "assistant");
    assert_eq!(served["stop_reason"], "end_turn");
    assert_eq!(served["content"][0]["type"], "text");
    assert_eq!(
        served["content"][0]["text"].as_str(),
        obs.response_text.as_deref()
    );
    assert!(
        served["usage"]["input_tokens"].as_u64().unwrap() > 0,
        "{served}"
    );
    let seen = requests_to(&h, "/v1/chat/completions", "mock-candidate-good");
    let sent = &seen[0].body;
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        sent["messages"][1],
        json!({"role": "user", "content": PROMPT})
    );
    assert_eq!(sent["max_completion_tokens"], 100);
    assert_eq!(sent["user"], "u-2");
    assert_eq!(seen[0].header("x-api-key"), None);
    assert_eq!(obs.endpoint, Endpoint::Messages);
    assert_eq!(
        obs.response_body.as_ref().unwrap().value()["object"],
        "chat.completion"
    );

    let mut body = body.clone();
    body["stream"] = json!(true);
    let r = h.post("/v1/messages", &body, &[]).await;
    assert_eq!(r.status(), 200);
    let obs = observation_of(&h, &r).await;
    let events = anthropic_frames(&r.text().await.unwrap());
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        &types[..2],
        ["message_start", "content_block_start"],
        "{types:?}"
    );
    assert_eq!(
        &types[types.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let text: String = (events.iter())
        .filter(|(t, _)| t == "content_block_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(Some(text.as_str()), obs.response_text.as_deref());
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(
        delta["usage"]["output_tokens"].as_u64().unwrap() > 0,
        "{delta}"
    );
    assert!(
        delta["usage"]["input_tokens"].as_u64().unwrap() > 0,
        "{delta}"
    );
    assert!(obs.is_success(), "{obs:?}");
    // The chat stream was asked for its usage chunk.
    let sent = &requests_to(&h, "/v1/chat/completions", "mock-candidate-good")[1].body;
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
}

fn order_tools() -> Value {
    json!([{"type": "function", "function": {"name": "lookup_order", "description": "Find an order",
        "parameters": {"type": "object", "required": ["order_id"],
                       "properties": {"order_id": {"type": "string"}}}}}])
}

#[tokio::test]
async fn a_tool_call_and_its_result_round_trip_across_the_apis() {
    let h = harness().await;
    let ask = json!([{"role": "user", "content": "Where is order 42?"}]);
    let body = json!({"model": "tools-to-claude", "tools": order_tools(),
        "tool_choice": {"type": "function", "function": {"name": "lookup_order"}}, "messages": ask});
    let r = h.chat(&body, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-canarist-variant"], "claude");
    let served: Value = r.json().await.unwrap();
    let choice = &served["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{served}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "lookup_order");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["order_id"].is_string(), "{args}");
    let sent = &requests_to(&h, "/v1/messages", "mock-tools")[0].body;
    assert_eq!(sent["tools"][0]["name"], "lookup_order");
    assert_eq!(
        sent["tools"][0]["input_schema"]["required"],
        json!(["order_id"])
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "tool", "name": "lookup_order"})
    );

    // The next turn carries the call and its result back: tool_use and tool_result blocks.
    let id = call["id"].as_str().unwrap();
    let next = json!({"model": "tools-to-claude", "tools": order_tools(), "messages": [
        ask[0], choice["message"],
        {"role": "tool", "tool_call_id": id, "content": "Order 42 shipped yesterday."}]});
    assert_eq!(h.chat(&next, &[]).await.status(), 200);
    let sent = &requests_to(&h, "/v1/messages", "mock-tools")[1].body;
    let m = sent["messages"].as_array().unwrap();
    assert_eq!(m[1]["role"], "assistant");
    assert_eq!(m[1]["content"][0]["type"], "tool_use");
    assert_eq!(m[1]["content"][0]["id"], id);
    assert_eq!(m[1]["content"][0]["input"], args);
    assert_eq!(
        m[2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": id,
        "content": "Order 42 shipped yesterday."})
    );

    // Streamed: the tool call's deltas, first with its id and name, then its arguments.
    let mut body = body.clone();
    body["stream"] = json!(true);
    let r = h.chat(&body, &[]).await;
    let frames = chat_frames(&r.text().await.unwrap());
    let deltas: Vec<&Value> = (frames.iter())
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert!(
        deltas[0]["id"].as_str().is_some_and(|i| !i.is_empty()),
        "{deltas:?}"
    );
    assert_eq!(deltas[0]["function"]["name"], "lookup_order");
    let streamed: String = deltas
        .iter()
        .filter_map(|d| d["function"]["arguments"].as_str())
        .collect();
    let streamed: Value = serde_json::from_str(&streamed).unwrap();
    assert!(streamed["order_id"].is_string(), "{streamed}");
    assert!(
        frames
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls")
    );
}

#[tokio::test]
async fn what_cannot_be_translated_is_a_400_naming_the_field_in_the_clients_shape() {
    let h = harness().await;
    let hi = json!([{"role": "user", "content": "hi"}]);
    for (extra, field) in [
        (json!({"n": 2}), "n"),
        (json!({"logprobs": true}), "logprobs"),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}),
            "response_format",
        ),
        (json!({"modalities": ["text", "audio"]}), "modalities"),
    ] {
        let mut body = json!({"model": "to-claude", "messages": hi});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let r = h.chat(&body, &[]).await;
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "untranslatable_parameter", "{v}");
        assert_eq!(v["error"]["param"], field, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("`{field}`")),
            "{v}"
        );
    }
    // A Messages client: Anthropic's error shape, naming the field.
    let body = json!({"model": "to-chat", "max_tokens": 10, "top_k": 5, "messages": hi});
    let r = h.post("/v1/messages", &body, &[]).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("`top_k`"),
        "{v}"
    );
    // Nothing untranslatable reached an upstream.
    assert!(requests_to(&h, "/v1/messages", "mock-candidate-good").is_empty());
    assert!(requests_to(&h, "/v1/chat/completions", "mock-candidate-good").is_empty());
    // The Responses API is not translated: an Anthropic variant cannot answer it.
    let r = h
        .post(
            "/v1/responses",
            &json!({"model": "to-claude", "input": "hi"}),
            &[],
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unsupported_api", "{v}");
}

fn pair_of<'a>(pairs: &'a [Pair], response: &reqwest::Response) -> &'a Pair {
    let id = response.headers()["x-request-id"].to_str().unwrap();
    (pairs.iter())
        .find(|p| p.request_id.to_string() == id)
        .unwrap_or_else(|| panic!("no pair for request {id}: {pairs:#?}"))
}

#[tokio::test]
async fn a_shadow_pair_across_the_apis_holds_both_answers_text_and_tool_calls() {
    let h = harness().await;
    let plain =
        json!({"model": "shadow-claude", "messages": [{"role": "user", "content": PROMPT}]});
    let tools = json!({"model": "shadow-claude", "tools": order_tools(), "stream": true,
        "messages": [{"role": "user", "content": "Where is order 42?"}]});
    let r1 = h.chat(&plain, &[]).await;
    assert_eq!(r1.status(), 200);
    assert_eq!(r1.headers()["x-canarist-variant"], "stable");
    let r2 = h.chat(&tools, &[]).await;
    assert_eq!(r2.status(), 200);
    let pairs = h.wait_pairs(2).await;
    let text_pair = pair_of(&pairs, &r1).clone();
    let tool_pair = pair_of(&pairs, &r2).clone();
    let _ = (r1.text().await, r2.text().await);
    // Each side is stored in its provider's own form, under the client's endpoint.
    for pair in [&text_pair, &tool_pair] {
        assert!(
            pair.stable.is_success() && pair.candidate.is_success(),
            "{pair:#?}"
        );
        assert_eq!(pair.candidate.endpoint, Endpoint::ChatCompletions);
        assert_eq!(
            pair.stable.response_body.as_ref().unwrap().value()["object"],
            "chat.completion"
        );
        assert_eq!(
            pair.candidate.response_body.as_ref().unwrap().value()["type"],
            "message"
        );
        assert_eq!(
            pair.candidate.request_body.as_ref().unwrap().value()["max_tokens"],
            4096
        );
    }
    let answers = |p: &Pair| {
        (
            Answer::of(&p.stable).unwrap(),
            Answer::of(&p.candidate).unwrap(),
        )
    };
    let (s, c) = answers(&text_pair);
    assert!(!s.outputs[0].text.is_empty() && !c.outputs[0].text.is_empty());
    let (s, c) = answers(&tool_pair);
    let (sc, cc) = (&s.outputs[0].tool_calls, &c.outputs[0].tool_calls);
    assert_eq!((sc.len(), cc.len()), (1, 1), "{s:?} {c:?}");
    assert_eq!(sc[0].name, cc[0].name);
    for call in [&sc[0], &cc[0]] {
        let args: Value = serde_json::from_str(&call.arguments).unwrap();
        assert!(args["order_id"].is_string(), "{args}");
    }
    assert_eq!(
        tool_pair.candidate.finish_reason.as_deref(),
        Some("tool_calls")
    );

    // A conversation with a system prompt and a tool turn: the judge is shown the same turns
    // for both sides, read from the chat request and from the Messages one.
    let turns = json!({"model": "shadow-claude", "tools": order_tools(), "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where is order 42?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "lookup_order", "arguments": "{\"order_id\":\"42\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Shipped."},
        {"role": "user", "content": "When will it arrive?"}]});
    let r = h.chat(&turns, &[]).await;
    assert_eq!(r.status(), 200);
    let pairs = h.wait_pairs(3).await;
    let pair = pair_of(&pairs, &r);
    let sent = pair.candidate.request_body.as_ref().unwrap().value();
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
    let shown = canarist::rubric::conversation(pair).unwrap();
    assert_eq!(
        shown,
        "[system]\nBe brief.\n\n[user]\nWhere is order 42?\n\n[assistant]\n\n\n[tool]\nShipped.\n\n\
         [user]\nWhen will it arrive?"
    );

    // A request the mirror's API cannot take is served by stable and its mirror skipped.
    let r = h.chat(&json!({"model": "shadow-claude", "seed": 7, "messages": [{"role": "user", "content": "hi"}]}), &[]).await;
    assert_eq!(r.status(), 200);
    let m = h.metrics().await;
    let skipped =
        r#"canarist_mirror_skipped_total{deployment="shadow-claude",reason="untranslatable"}"#;
    assert_eq!(metric_value(&m, skipped), 1.0, "{m}");
    // A Responses request cannot be translated at all: no mirror, counted as api_mismatch.
    let r = h
        .post(
            "/v1/responses",
            &json!({"model": "shadow-claude", "input": "hi"}),
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    let m = h.metrics().await;
    let skipped =
        r#"canarist_mirror_skipped_total{deployment="shadow-claude",reason="api_mismatch"}"#;
    assert_eq!(metric_value(&m, skipped), 1.0, "{m}");
}
