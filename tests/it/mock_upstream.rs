//! The mock upstream on a real socket: OpenAI wire format (plain and streamed), injected faults,
//! seeded determinism, dataset answer rates, stream pacing, and async-openai as a client.
// Helpers outside `#[test]` functions unwrap too (clippy's test allowance only covers tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use canarist::mock::{MockConfig, MockServer, Profile};
use futures::StreamExt;
use serde_json::{Value, json};

async fn start() -> MockServer {
    MockServer::start(MockConfig::builtin().unwrap())
        .await
        .unwrap()
}

fn dataset() -> std::sync::Arc<canarist::mock::Dataset> {
    MockConfig::builtin().unwrap().dataset
}

fn entry(i: usize) -> canarist::mock::DatasetEntry {
    dataset().entries()[i].clone()
}

fn chat_body(model: &str, prompt: &str) -> Value {
    json!({"model": model, "messages": [
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": prompt},
    ]})
}

async fn post(server: &MockServer, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", server.base_url()))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Reads SSE `data:` payloads one at a time from a streamed response.
struct Sse {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl Sse {
    fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200);
        let ct = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Self {
            body: response.bytes_stream().boxed(),
            buf: Vec::new(),
        }
    }

    /// The next event's data, or `None` at the end of the body.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = self.buf.drain(..pos + 2).collect();
                let text = String::from_utf8(event).unwrap();
                return Some(text.trim_end().strip_prefix("data: ").unwrap().to_owned());
            }
            match self.body.next().await {
                Some(chunk) => self.buf.extend_from_slice(&chunk.unwrap()),
                None => {
                    assert!(self.buf.is_empty(), "trailing bytes");
                    return None;
                }
            }
        }
    }

    async fn all(mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

/// Content of chat chunks, concatenated.
fn content(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[tokio::test]
async fn plain_chat_answers_from_the_dataset_with_usage() {
    let server = start().await;
    let entry = &entry(0);
    let resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .header("x-canarist-unit", "unit-1")
        .json(&chat_body("mock-fast", &entry.prompt))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "mock-fast");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], entry.good.as_str());
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let u = &v["usage"];
    let words = entry.good.split_whitespace().count() as f64;
    assert_eq!(u["completion_tokens"], (words * 1.3).round() as u64);
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );

    assert_eq!(server.request_count("mock-fast"), 1);
    assert_eq!(server.completed_count("mock-fast"), 1);
    let log = server.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].path, "/v1/chat/completions");
    assert_eq!(log[0].model.as_deref(), Some("mock-fast"));
    assert_eq!(log[0].header("X-Canarist-Unit"), Some("unit-1"));
    assert_eq!(log[0].body["messages"][1]["content"], entry.prompt.as_str());
    // The same log over HTTP.
    let root = server.base_url().trim_end_matches("/v1").to_owned();
    let over_http: Value = reqwest::get(format!("{root}/_mock/requests"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http[0]["model"], "mock-fast");
}

#[tokio::test]
async fn streamed_chat_has_usage_chunk_only_when_asked() {
    let server = start().await;
    let entry = &entry(1);
    for include_usage in [false, true] {
        let mut body = chat_body("mock-fast", &entry.prompt);
        body["stream"] = json!(true);
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        let events = Sse::new(post(&server, "/chat/completions", &body).await)
            .all()
            .await;
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert!(
            chunks
                .iter()
                .all(|c| c["object"] == "chat.completion.chunk")
        );
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(content(&chunks), entry.good);
        let (usage_chunks, content_chunks): (Vec<&Value>, Vec<&Value>) = chunks
            .iter()
            .partition(|c| c["choices"].as_array().unwrap().is_empty());
        assert!(
            content_chunks.len() > 3,
            "answer streamed in several chunks"
        );
        // finish_reason only on the last content chunk.
        let finishes: Vec<&Value> = content_chunks
            .iter()
            .map(|c| &c["choices"][0]["finish_reason"])
            .collect();
        assert_eq!(finishes.last().unwrap().as_str(), Some("stop"));
        assert!(finishes[..finishes.len() - 1].iter().all(|f| f.is_null()));
        if include_usage {
            assert_eq!(usage_chunks.len(), 1);
            assert!(std::ptr::eq(usage_chunks[0], &chunks[chunks.len() - 1]));
            let u = &usage_chunks[0]["usage"];
            assert!(u["completion_tokens"].as_u64().unwrap() > 0);
            assert!(content_chunks.iter().all(|c| c["usage"].is_null()));
        } else {
            assert!(usage_chunks.is_empty());
            assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        }
    }
}

#[tokio::test]
async fn injected_errors_and_bad_requests_have_openai_shape() {
    let server = start().await;
    let check = |v: &Value, kind: &str| {
        let e = &v["error"];
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert_eq!(e["type"], kind, "{v}");
        assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
    };
    let r = post(&server, "/chat/completions", &chat_body("mock-500", "hi")).await;
    assert_eq!(r.status(), 500);
    check(&r.json().await.unwrap(), "server_error");

    let r = post(&server, "/chat/completions", &chat_body("mock-429", "hi")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    let v: Value = r.json().await.unwrap();
    check(&v, "requests");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");

    let r = post(&server, "/chat/completions", &chat_body("gpt-nope", "hi")).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");

    let r = reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    check(&r.json().await.unwrap(), "invalid_request_error");

    let r = post(&server, "/chat/completions", &json!({"model": "mock-fast"})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["param"],
        "messages"
    );

    let mut body = chat_body("mock-fast", "hi");
    body["n"] = json!(2);
    let r = post(&server, "/chat/completions", &body).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["param"], "n");
}

#[tokio::test]
async fn truncated_and_malformed_models_misbehave_as_described() {
    let server = start().await;
    let entry = &entry(2);
    let mut body = chat_body("mock-truncated", &entry.prompt);
    body["stream"] = json!(true);
    let events = Sse::new(post(&server, "/chat/completions", &body).await)
        .all()
        .await;
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e != "[DONE]"));
    let chunks: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );
    let got = content(&chunks);
    assert!(!got.is_empty() && got.len() < entry.good.len());
    assert!(entry.good.starts_with(&got));

    // Plain: 200 with a body that is not JSON.
    let r = post(
        &server,
        "/chat/completions",
        &chat_body("mock-malformed", &entry.prompt),
    )
    .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.starts_with('{'));
    assert!(serde_json::from_str::<Value>(&text).is_err());
    // Streamed: one chunk is not JSON, the stream still ends with [DONE].
    let mut body = chat_body("mock-malformed", &entry.prompt);
    body["stream"] = json!(true);
    let events = Sse::new(post(&server, "/chat/completions", &body).await)
        .all()
        .await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let bad = events[..events.len() - 1]
        .iter()
        .filter(|e| serde_json::from_str::<Value>(e).is_err())
        .count();
    assert_eq!(bad, 1);
}

#[tokio::test]
async fn hanging_model_never_answers() {
    let server = start().await;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client
        .post(format!("{}/chat/completions", server.base_url()))
        .json(&chat_body("mock-hang", "hello"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(server.request_count("mock-hang"), 1);
    assert_eq!(server.completed_count("mock-hang"), 0);
    server.shutdown().await;
}

/// The answers of a fixed sequence of requests to `model`.
async fn answers(server: &MockServer, model: &str, units: bool) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for (i, entry) in dataset().entries().iter().enumerate() {
        let mut req = client
            .post(format!("{}/chat/completions", server.base_url()))
            .json(&chat_body(model, &entry.prompt));
        if units {
            req = req.header("x-canarist-unit", format!("user-{i}"));
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        out.push(
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    out
}

#[tokio::test]
async fn same_seed_gives_same_answers() {
    let config = || {
        MockConfig::builtin().unwrap().with_model(
            "coin",
            Profile {
                degraded_rate: 0.5,
                ..Default::default()
            },
        )
    };
    let a = MockServer::start(config().with_seed(42)).await.unwrap();
    let b = MockServer::start(config().with_seed(42)).await.unwrap();
    let c = MockServer::start(config().with_seed(43)).await.unwrap();
    for units in [false, true] {
        let (ra, rb, rc) = (
            answers(&a, "coin", units).await,
            answers(&b, "coin", units).await,
            answers(&c, "coin", units).await,
        );
        assert_eq!(ra, rb);
        assert_ne!(ra, rc, "another seed draws differently");
    }
    // With unit keys the answer does not depend on how many requests came before.
    assert_eq!(
        answers(&a, "coin", true).await,
        answers(&b, "coin", true).await
    );
}

#[tokio::test]
async fn degraded_rates_follow_the_profiles() {
    // The fixture's quality knobs without their latency, so that 800 requests stay quick.
    let builtin = MockConfig::builtin().unwrap();
    let mut config = builtin.clone();
    for (name, profile) in &builtin.models {
        config.models.insert(
            name.clone(),
            Profile {
                latency: Default::default(),
                ..profile.clone()
            },
        );
    }
    let server = MockServer::start(config).await.unwrap();
    let data = dataset();
    let client = reqwest::Client::new();
    for model in ["mock-stable", "mock-candidate-bad"] {
        let p = builtin.models[model].degraded_rate;
        let n = 400;
        let mut degraded = 0u64;
        for i in 0..n {
            let entry = &data.entries()[i % data.len()];
            let v: Value = client
                .post(format!("{}/chat/completions", server.base_url()))
                .header("x-canarist-unit", format!("u{i}"))
                .json(&chat_body(model, &entry.prompt))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let text = v["choices"][0]["message"]["content"].as_str().unwrap();
            if text == entry.degraded {
                degraded += 1;
            } else {
                assert_eq!(text, entry.good);
            }
        }
        // Binomial 99.9% bound.
        let (n, k) = (n as f64, degraded as f64);
        let bound = 3.29 * (n * p * (1.0 - p)).sqrt();
        assert!((k - n * p).abs() <= bound, "{model}: {k} of {n}, p {p}");
    }
}

#[tokio::test]
async fn streams_are_paced_not_buffered() {
    let config = MockConfig::builtin().unwrap().with_model(
        "held",
        Profile {
            hold_after_first_chunk: true,
            ..Default::default()
        },
    );
    let server = MockServer::start(config).await.unwrap();
    let mut body = chat_body("held", "Tell me something long enough for several chunks.");
    body["stream"] = json!(true);
    let mut sse = Sse::new(post(&server, "/chat/completions", &body).await);
    let first: Value = serde_json::from_str(&sse.next().await.unwrap()).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    // The client holds the first chunk while the mock has not sent the rest.
    assert_eq!(server.completed_count("held"), 0);
    server.release_streams(1);
    let rest = sse.all().await;
    assert_eq!(rest.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(server.completed_count("held"), 1);

    // The slow-stream model from the fixture: the first chunk arrives long before the end.
    let mut body = chat_body("mock-slow-stream", "Tell me something long enough.");
    body["stream"] = json!(true);
    let mut sse = Sse::new(post(&server, "/chat/completions", &body).await);
    assert!(sse.next().await.is_some());
    assert_eq!(server.completed_count("mock-slow-stream"), 0);
}

#[tokio::test]
async fn legacy_completions_plain_and_streamed() {
    let server = start().await;
    let data = dataset();
    let (a, b) = (&data.entries()[0], &data.entries()[5]);
    let body = json!({"model": "mock-fast", "prompt": [a.prompt, b.prompt]});
    let v: Value = post(&server, "/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], a.good.as_str());
    assert_eq!(v["choices"][1]["text"], b.good.as_str());
    assert_eq!(v["choices"][1]["index"], 1);
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let body = json!({"model": "mock-fast", "prompt": a.prompt, "stream": true,
        "stream_options": {"include_usage": true}});
    let events = Sse::new(post(&server, "/completions", &body).await)
        .all()
        .await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, a.good);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert!(last["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn embeddings_are_deterministic_in_float_and_base64() {
    use base64::Engine;
    let server = start().await;
    let body = json!({"model": "mock-fast", "input": ["hello", "world"]});
    let v: Value = post(&server, "/embeddings", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    let floats: Vec<f32> = v["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(floats.len(), 8);
    assert_eq!(floats, canarist::mock::answer::embedding("hello", 8));
    assert_ne!(v["data"][0]["embedding"], v["data"][1]["embedding"]);

    let body = json!({"model": "mock-fast", "input": "hello", "encoding_format": "base64",
        "dimensions": 16});
    let v: Value = post(&server, "/embeddings", &body)
        .await
        .json()
        .await
        .unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(decoded, canarist::mock::answer::embedding("hello", 16));
}

#[tokio::test]
async fn models_lists_configured_models() {
    let config = MockConfig::builtin()
        .unwrap()
        .with_model("custom", Profile::default());
    let server = MockServer::start(config).await.unwrap();
    let v: Value = reqwest::get(format!("{}/models", server.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"custom") && ids.contains(&"mock-stable"),
        "{ids:?}"
    );
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["object"] == "model")
    );
}

#[tokio::test]
async fn async_openai_parses_plain_and_streamed_responses() {
    use async_openai::config::OpenAIConfig;
    use async_openai::types::chat::{
        ChatCompletionRequestUserMessage, ChatCompletionStreamOptions,
        CreateChatCompletionRequestArgs,
    };
    let server = start().await;
    let entry = &entry(4);
    let client = async_openai::Client::with_config(
        OpenAIConfig::new()
            .with_api_base(server.base_url())
            .with_api_key("test"),
    );
    let request = CreateChatCompletionRequestArgs::default()
        .model("mock-stable")
        .messages([ChatCompletionRequestUserMessage::from(entry.prompt.as_str()).into()])
        .user("unit-7")
        .build()
        .unwrap();
    let resp = client.chat().create(request.clone()).await.unwrap();
    let text = resp.choices[0].message.content.clone().unwrap();
    assert!(text == entry.good || text == entry.degraded);
    assert!(resp.usage.unwrap().total_tokens > 0);

    let mut request = request;
    request.stream_options = Some(ChatCompletionStreamOptions {
        include_usage: Some(true),
        include_obfuscation: None,
    });
    let mut stream = client.chat().create_stream(request).await.unwrap();
    let (mut streamed, mut usage) = (String::new(), None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if let Some(c) = chunk.choices.first() {
            streamed.push_str(c.delta.content.as_deref().unwrap_or(""));
        }
        usage = usage.or(chunk.usage);
    }
    // Same unit (`user`), same prompt, same seed: the same answer as the plain request.
    assert_eq!(streamed, text);
    assert!(usage.unwrap().completion_tokens > 0);
}

#[tokio::test]
async fn profile_files_with_unknown_fields_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles.yaml");
    std::fs::write(
        &profiles,
        "models:\n  m:\n    hang: true\n    colour: red\n",
    )
    .unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(&data, "").unwrap();
    let err = MockConfig::from_files(&profiles, &data)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("profiles.yaml") && err.contains("models.m.colour"),
        "{err}"
    );
}
