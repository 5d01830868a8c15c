//! The mock upstream's Responses API and Anthropic Messages API on a real socket: the plain
//! bodies, the typed event streams (names, order, `sequence_number`, the text they add up to),
//! Anthropic's error shape, `count_tokens`, and the profiles (degraded answers, injected errors,
//! truncated streams). `scripts/e2e-python-apis.sh` runs the official SDKs against the same.
// Helpers outside `#[test]` functions unwrap too (clippy's test allowance only covers tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use canarist::mock::{MockConfig, MockServer, Profile};
use serde_json::{Value, json};

async fn start() -> MockServer {
    let config = MockConfig::builtin().unwrap().with_model(
        "mock-always-degraded",
        Profile {
            degraded_rate: 1.0,
            ..Profile::default()
        },
    );
    MockServer::start(config).await.unwrap()
}

fn entry() -> canarist::mock::DatasetEntry {
    MockConfig::builtin().unwrap().dataset.entries()[0].clone()
}

async fn post(server: &MockServer, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}{path}", server.addr))
        .header("x-canarist-unit", "unit-1")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// `(event name, data)` of every frame of a finished SSE body; each frame's `event:` line must
/// equal its data's `type`.
async fn events(response: reqwest::Response) -> Vec<(String, Value)> {
    assert_eq!(response.status(), 200);
    let ct = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let text = response.text().await.unwrap();
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|frame| {
            let mut lines = frame.lines();
            let event = lines
                .next()
                .unwrap()
                .strip_prefix("event: ")
                .unwrap()
                .to_owned();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            let data: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
            assert_eq!(data["type"], event.as_str(), "{frame}");
            (event, data)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for (name, _) in events {
        // Runs of deltas collapse to one name.
        if out.last() != Some(&name.as_str()) {
            out.push(name);
        }
    }
    out
}

fn responses_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "instructions": "Be brief.", "stream": stream, "input": [
        {"role": "user", "content": [{"type": "input_text", "text": entry().prompt}]}]})
}

fn messages_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 256, "stream": stream, "system": "Be brief.",
           "metadata": {"user_id": "u-1"},
           "messages": [{"role": "user", "content": entry().prompt}]})
}

#[tokio::test]
async fn responses_plain_and_streamed_carry_the_same_answer_in_the_official_shapes() {
    let server = start().await;
    let plain: Value = post(
        &server,
        "/v1/responses",
        &responses_body("mock-stable", false),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(plain["object"], "response");
    assert_eq!(plain["status"], "completed");
    assert_eq!(plain["model"], "mock-stable");
    assert_eq!(plain["instructions"], "Be brief.");
    let item = &plain["output"][0];
    assert_eq!(
        (item["type"].as_str(), item["role"].as_str()),
        (Some("message"), Some("assistant"))
    );
    assert_eq!(item["content"][0]["type"], "output_text");
    let text = item["content"][0]["text"].as_str().unwrap();
    assert!(text == entry().good || text == entry().degraded, "{text}");
    let usage = &plain["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap())
    );

    let streamed = events(
        post(
            &server,
            "/v1/responses",
            &responses_body("mock-stable", true),
        )
        .await,
    )
    .await;
    assert_eq!(
        names(&streamed),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (_, data)) in streamed.iter().enumerate() {
        assert_eq!(data["sequence_number"], i as u64, "{data}");
    }
    assert_eq!(streamed[0].1["response"]["status"], "in_progress");
    let deltas: String = streamed
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| {
            assert_eq!(
                (d["output_index"].as_u64(), d["content_index"].as_u64()),
                (Some(0), Some(0))
            );
            assert_eq!(d["item_id"], item["id"]);
            d["delta"].as_str().unwrap()
        })
        .collect();
    assert_eq!(deltas, text, "same unit and prompt: the same answer");
    let done = &streamed.last().unwrap().1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], text);
    assert_eq!(done["usage"], plain["usage"]);
}

#[tokio::test]
async fn messages_plain_and_streamed_carry_the_same_answer_in_the_official_shapes() {
    let server = start().await;
    let plain: Value = post(
        &server,
        "/v1/messages",
        &messages_body("mock-stable", false),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(plain["type"], "message");
    assert_eq!(plain["role"], "assistant");
    assert_eq!(plain["stop_reason"], "end_turn");
    assert!(plain["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(plain["content"][0]["type"], "text");
    let text = plain["content"][0]["text"].as_str().unwrap();
    assert!(text == entry().good || text == entry().degraded, "{text}");
    for key in [
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    ] {
        assert!(plain["usage"][key].is_u64(), "{key}");
    }

    let streamed =
        events(post(&server, "/v1/messages", &messages_body("mock-stable", true)).await).await;
    assert_eq!(
        names(&streamed),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let start = &streamed[0].1["message"];
    assert_eq!(start["content"], json!([]));
    assert_eq!(
        start["usage"]["input_tokens"],
        plain["usage"]["input_tokens"]
    );
    assert_eq!(
        streamed[1].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    let deltas: String = streamed
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(deltas, text);
    let delta = &streamed[streamed.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(
        delta["usage"]["output_tokens"],
        plain["usage"]["output_tokens"]
    );

    let counted: Value = post(
        &server,
        "/v1/messages/count_tokens",
        &messages_body("mock-stable", false),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        counted,
        json!({"input_tokens": plain["usage"]["input_tokens"]})
    );
    assert_eq!(
        server.request_count("mock-stable"),
        2,
        "count_tokens is no request of the model"
    );
}

#[tokio::test]
async fn messages_errors_are_anthropic_shaped_and_responses_errors_openai_shaped() {
    let server = start().await;
    let cases = [
        (
            messages_body("no-such-model", false),
            404,
            "not_found_error",
        ),
        (
            json!({"model": "mock-stable", "messages": [{"role": "user", "content": "hi"}]}),
            400,
            "invalid_request_error",
        ),
        (
            json!({"model": "mock-stable", "max_tokens": 8}),
            400,
            "invalid_request_error",
        ),
        (messages_body("mock-429", false), 429, "rate_limit_error"),
        (messages_body("mock-500", true), 500, "api_error"),
        (messages_body("mock-503", false), 503, "overloaded_error"),
    ];
    for (body, status, kind) in cases {
        let r = post(&server, "/v1/messages", &body).await;
        assert_eq!(r.status(), status, "{body}");
        if status == 429 {
            assert_eq!(r.headers()["retry-after"], "2");
        }
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["type"], "error", "{e}");
        assert_eq!(e["error"]["type"], kind, "{e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{e}"
        );
    }
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/messages", server.addr))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "invalid_request_error"
    );

    let r = post(
        &server,
        "/v1/responses",
        &responses_body("no-such-model", false),
    )
    .await;
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "model_not_found");
    let r = post(&server, "/v1/responses", &json!({"model": "mock-stable"})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["param"], "input");
}

#[tokio::test]
async fn the_profiles_apply_degraded_answers_and_truncated_streams() {
    let server = start().await;
    let r: Value = post(
        &server,
        "/v1/responses",
        &responses_body("mock-always-degraded", false),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        r["output"][0]["content"][0]["text"],
        entry().degraded.as_str()
    );
    let m: Value = post(
        &server,
        "/v1/messages",
        &messages_body("mock-always-degraded", false),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(m["content"][0]["text"], entry().degraded.as_str());

    let cut = events(
        post(
            &server,
            "/v1/responses",
            &responses_body("mock-truncated", true),
        )
        .await,
    )
    .await;
    let names = names(&cut);
    assert_eq!(
        names.last(),
        Some(&"response.output_text.delta"),
        "{names:?}"
    );
    let cut = events(
        post(
            &server,
            "/v1/messages",
            &messages_body("mock-truncated", true),
        )
        .await,
    )
    .await;
    let last = cut.last().unwrap().0.as_str();
    assert_eq!(last, "content_block_delta");

    // Malformed: the plain body is cut in half.
    let r = post(
        &server,
        "/v1/messages",
        &messages_body("mock-malformed", false),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(serde_json::from_str::<Value>(&r.text().await.unwrap()).is_err());
}

/// A tool whose arguments need an order id of a given form.
fn lookup_schema() -> Value {
    json!({"type": "object", "required": ["order_id"], "additionalProperties": false,
        "properties": {"order_id": {"type": "string", "pattern": "^[A-Z]-[0-9]+$",
            "examples": ["A-1042"]}}})
}

/// The mock's tool-call profiles in all three APIs, plain and streamed: `mock-tools` calls the
/// declared tool with arguments valid against its schema, `mock-tools-broken-refunds` breaks
/// the schema for `route=refunds` only; the whole answers read back through
/// `canarist::capture::Answer`, the streams add up to the same arguments.
#[tokio::test]
async fn tool_call_profiles_answer_every_api_with_schema_valid_or_broken_arguments() {
    use canarist::capture::Answer;
    let server = start().await;
    let validator = jsonschema::validator_for(&lookup_schema()).unwrap();
    let chat_tools = json!([{"type": "function",
        "function": {"name": "lookup_order", "parameters": lookup_schema()}}]);
    let responses_tools = json!([{"type": "function", "name": "lookup_order",
        "parameters": lookup_schema()}]);
    let messages_tools = json!([{"name": "lookup_order", "input_schema": lookup_schema()}]);
    for (model, route, valid) in [
        ("mock-tools", "refunds", true),
        ("mock-tools-broken-refunds", "orders", true),
        ("mock-tools-broken-refunds", "refunds", false),
    ] {
        let meta = json!({"route": route});
        let chat = json!({"model": model, "metadata": meta, "tools": chat_tools,
            "messages": [{"role": "user", "content": "Where is my order?"}]});
        let mut responses = responses_body(model, false);
        responses["tools"] = responses_tools.clone();
        responses["metadata"] = meta.clone();
        let mut messages = messages_body(model, false);
        messages["tools"] = messages_tools.clone();
        messages["metadata"] = meta.clone();
        for (path, body) in [
            ("/v1/chat/completions", &chat),
            ("/v1/responses", &responses),
            ("/v1/messages", &messages),
        ] {
            let whole: Value = post(&server, path, body).await.json().await.unwrap();
            let answer = Answer::from_body(&whole).unwrap_or_else(|| panic!("{whole}"));
            let calls: Vec<_> = answer.tool_calls().collect();
            assert_eq!(calls.len(), 1, "{path}: {whole}");
            assert_eq!(calls[0].name, "lookup_order");
            let args: Value = serde_json::from_str(&calls[0].arguments).unwrap();
            assert_eq!(
                validator.is_valid(&args),
                valid,
                "{model} {route} {path}: {args}"
            );
        }
        // Streamed: the argument pieces add up to the same arguments.
        let mut chat_stream = chat.clone();
        chat_stream["stream"] = json!(true);
        let text = post(&server, "/v1/chat/completions", &chat_stream)
            .await
            .text()
            .await
            .unwrap();
        let mut args = String::new();
        let mut finish = None;
        for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
            if data == "[DONE]" {
                continue;
            }
            let chunk: Value = serde_json::from_str(data).unwrap();
            let choice = &chunk["choices"][0];
            if let Some(piece) = choice["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            {
                args.push_str(piece);
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = Some(f.to_owned());
            }
        }
        assert_eq!(finish.as_deref(), Some("tool_calls"));
        let args: Value = serde_json::from_str(&args).unwrap();
        assert_eq!(
            validator.is_valid(&args),
            valid,
            "{model} {route} chat stream"
        );

        let mut stream = responses.clone();
        stream["stream"] = json!(true);
        let evs = events(post(&server, "/v1/responses", &stream).await).await;
        let deltas: String = evs
            .iter()
            .filter(|(n, _)| n == "response.function_call_arguments.delta")
            .map(|(_, d)| d["delta"].as_str().unwrap())
            .collect();
        let (_, done) = evs.last().unwrap();
        assert_eq!(done["type"], "response.completed");
        assert_eq!(done["response"]["output"][0]["arguments"], deltas.as_str());

        let mut stream = messages.clone();
        stream["stream"] = json!(true);
        let evs = events(post(&server, "/v1/messages", &stream).await).await;
        assert_eq!(evs[1].1["content_block"]["type"], "tool_use");
        let partial: String = evs
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap())
            .collect();
        let input: Value = serde_json::from_str(&partial).unwrap();
        assert_eq!(
            validator.is_valid(&input),
            valid,
            "{model} {route} messages stream"
        );
        let stop = evs.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(stop.1["delta"]["stop_reason"], "tool_use");
    }
    // Without `tools` the same profile answers text.
    let whole: Value = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "mock-tools",
        "messages": [{"role": "user", "content": entry().prompt}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        whole["choices"][0]["message"]["content"],
        entry().good.as_str()
    );
}
