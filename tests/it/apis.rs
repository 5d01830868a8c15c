//! The Responses API (`/v1/responses`) and Anthropic's Messages API (`/v1/messages`,
//! `/v1/messages/count_tokens`) through the real gateway, in front of the real mock upstream,
//! over real sockets: plain and streamed answers served and mirrored, the captured pairs (the
//! stored response in the API's own whole-answer form, text, finish reason, usage and cost),
//! the `previous_response_id` mirror skip and its counter, which headers reach which provider
//! (`x-api-key`, `anthropic-version`), `count_tokens`, and errors in each API's shape.

use std::path::Path;

use canarist::capture::{Endpoint, ErrorClass, Observation, Pair, Role};
use canarist::config::Config;
use canarist::mock::{MockConfig, MockServer, RecordedRequest};
use serde_json::{Value, json};

use crate::support::{Harness, metric_value};

const PROMPT: &str = "How do I change the credit card on file for my account?";
const OWN_KEY: &str = "sk-ant-provider-own";

/// Providers: `mock` and `mock-other` (OpenAI API, two accounts of the same mock), `claude`
/// (Anthropic API with its own key) and `claude-open` (Anthropic API, the client's key
/// forwarded). Deployments: `resp` (Responses, both variants on `mock`), `resp-cross` (the
/// candidate on `mock-other`), `claude` (Messages on `claude`), `claude-open`.
fn config(mock: &MockServer) -> Config {
    let url = mock.base_url();
    let yaml = format!(
        r#"
providers:
  mock: {{ base_url: "{url}", timeout: 5s }}
  mock-other: {{ base_url: "{url}", timeout: 5s }}
  claude: {{ base_url: "{url}", api: anthropic, api_key_env: CLAUDE_KEY, anthropic_version: "2023-06-01", timeout: 5s }}
  claude-open: {{ base_url: "{url}", api: anthropic, forward_client_auth: true, timeout: 5s }}
prices:
  mock-stable: {{ input_per_mtok: 1.0, output_per_mtok: 2.0, cache_read_per_mtok: 0.1 }}
  mock-candidate-good: {{ input_per_mtok: 3.0, output_per_mtok: 4.0 }}
capture:
  flush_interval: 10ms
  batch_size: 50
deployments:
  - slug: resp
    model: resp
    mode: shadow
    stable: {{ provider: mock, model: mock-stable }}
    candidates: [ {{ name: cand, provider: mock, model: mock-candidate-good, percent: 100 }} ]
  - slug: resp-cross
    model: resp-cross
    mode: shadow
    stable: {{ provider: mock, model: mock-stable }}
    candidates: [ {{ name: cand, provider: mock-other, model: mock-candidate-good, percent: 100 }} ]
  - slug: claude
    model: claude
    mode: shadow
    stable: {{ provider: claude, model: mock-stable, system_prompt: "You are ACME's support agent." }}
    candidates: [ {{ name: cand, provider: claude, model: mock-candidate-good, percent: 100 }} ]
  - slug: claude-open
    model: claude-open
    mode: off
    stable: {{ provider: claude-open, model: mock-stable }}
  - slug: claude-429
    model: claude-429
    mode: off
    stable: {{ provider: claude, model: mock-429 }}
  - slug: claude-tools
    model: claude-tools
    mode: shadow
    stable: {{ provider: claude, model: mock-tools }}
    candidates: [ {{ name: cand, provider: claude, model: mock-tools, percent: 100 }} ]
  - slug: claude-truncated
    model: claude-truncated
    mode: off
    stable: {{ provider: claude, model: mock-truncated }}
"#
    );
    Config::from_yaml(Path::new("apis.yaml"), &yaml, &|var| {
        (var == "CLAUDE_KEY").then(|| OWN_KEY.to_owned())
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn harness() -> Harness {
    let mock = MockServer::start(MockConfig::builtin().unwrap().with_seed(3))
        .await
        .unwrap();
    let config = config(&mock);
    Harness::with_config(mock, config).await
}

/// `(event name, data)` of every frame of an SSE body; each `event:` equals its data's `type`.
fn frames(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|frame| {
            let mut event = String::new();
            let mut data = String::new();
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

fn pair_of<'a>(pairs: &'a [Pair], response: &reqwest::Response) -> &'a Pair {
    let id = response.headers()["x-request-id"].to_str().unwrap();
    pairs
        .iter()
        .find(|p| p.request_id.to_string() == id)
        .unwrap_or_else(|| panic!("no pair for request {id}: {pairs:#?}"))
}

fn assert_priced(side: &Observation, input: f64, output: f64) {
    let u = side.usage.expect("usage captured");
    assert!(u.prompt_tokens > 0 && u.completion_tokens > 0, "{u:?}");
    let expected = (u.prompt_tokens as f64 * input + u.completion_tokens as f64 * output) / 1e6;
    let cost = side.cost_usd.expect("priced");
    assert!((cost - expected).abs() < 1e-12, "{cost} != {expected}");
}

fn requests_to(h: &Harness, path: &str, model: &str) -> Vec<RecordedRequest> {
    h.mock
        .requests()
        .into_iter()
        .filter(|r| r.path == path && r.model.as_deref() == Some(model))
        .collect()
}

#[tokio::test]
async fn responses_plain_and_streamed_are_served_mirrored_and_captured_in_their_own_form() {
    let h = harness().await;
    for (n, stream) in [false, true].into_iter().enumerate() {
        let body = json!({"model": "resp", "input": PROMPT, "instructions": "Be brief.",
                          "user": "u-1", "stream": stream, "store": false,
                          "include": ["reasoning.encrypted_content"]});
        let r = h.post("/v1/responses", &body, &[]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-canarist-variant"], "stable");
        let pairs = h.wait_pairs(n + 1).await;
        let pair = pair_of(&pairs, &r).clone();
        let served: Value = if stream {
            let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
            assert!(ct.starts_with("text/event-stream"), "{ct}");
            let events = frames(&r.text().await.unwrap());
            let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
            assert_eq!(types[0], "response.created");
            assert_eq!(*types.last().unwrap(), "response.completed");
            assert!(types.contains(&"response.output_text.delta"), "{types:?}");
            let seqs: Vec<u64> = events
                .iter()
                .map(|(_, d)| d["sequence_number"].as_u64().unwrap())
                .collect();
            assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
            let deltas: String = (events.iter())
                .filter(|(t, _)| t == "response.output_text.delta")
                .map(|(_, d)| d["delta"].as_str().unwrap())
                .collect();
            let completed = events.last().unwrap().1["response"].clone();
            assert_eq!(
                completed["output"][0]["content"][0]["text"],
                deltas.as_str()
            );
            completed
        } else {
            r.json().await.unwrap()
        };
        // The stored answer is the whole `response` object, streamed or not.
        assert_eq!(pair.stable.response_body.as_ref().unwrap().value(), served);
        for (side, role, (input, output)) in [
            (&pair.stable, Role::Stable, (1.0, 2.0)),
            (&pair.candidate, Role::Candidate, (3.0, 4.0)),
        ] {
            assert_eq!(side.role, role);
            assert_eq!(side.endpoint, Endpoint::Responses);
            assert_eq!(side.stream, stream);
            assert!(side.is_success(), "{side:?}");
            assert_eq!(side.finish_reason.as_deref(), Some("stop"));
            let stored = side.response_body.as_ref().unwrap().value();
            assert_eq!(stored["object"], "response");
            assert_eq!(stored["status"], "completed");
            let text = side.response_text.as_deref().unwrap();
            assert!(!text.is_empty());
            assert_eq!(stored["output"][0]["content"][0]["text"], text);
            assert_priced(side, input, output);
            assert!(side.ttft_ms.unwrap() <= side.latency_ms);
            // `store`, `include` pass through.
            let sent = side.request_body.as_ref().unwrap().value();
            assert_eq!(sent["store"], false);
            assert_eq!(sent["include"], json!(["reasoning.encrypted_content"]));
            assert_eq!(sent["instructions"], "Be brief.");
            assert!(sent.get("stream_options").is_none(), "{sent}");
        }
        assert_eq!(pair.stable.unit_key.as_deref(), Some("u-1"));
    }
    // The mock received both variants' models on /v1/responses, with no Anthropic header.
    for model in ["mock-stable", "mock-candidate-good"] {
        let seen = requests_to(&h, "/v1/responses", model);
        assert_eq!(seen.len(), 2, "{model}");
        assert!(seen.iter().all(|r| r.header("anthropic-version").is_none()));
    }
}

#[tokio::test]
async fn provider_held_state_is_mirrored_only_to_the_same_provider() {
    let h = harness().await;
    for (field, value) in [
        ("previous_response_id", json!("resp_earlier")),
        ("conversation", json!("conv_1")),
    ] {
        // The candidate is on another provider: it cannot resolve the state, so no mirror.
        let body = json!({"model": "resp-cross", "input": "And now?", field: value});
        let r = h.post("/v1/responses", &body, &[]).await;
        assert_eq!(r.status(), 200);
    }
    // Without the state, the same deployment is mirrored.
    let r = h
        .post(
            "/v1/responses",
            &json!({"model": "resp-cross", "input": PROMPT}),
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    // On one provider, the state resolves: mirrored.
    let body = json!({"model": "resp", "input": "And now?", "previous_response_id": "resp_x"});
    assert_eq!(h.post("/v1/responses", &body, &[]).await.status(), 200);
    let pairs = h.wait_pairs(2).await;
    let m = h.metrics().await;
    let skipped =
        r#"canarist_mirror_skipped_total{deployment="resp-cross",reason="provider_state"}"#;
    assert_eq!(metric_value(&m, skipped), 2.0, "{m}");
    // Three served, one mirrored (the request without state).
    let cross = |role: Role| {
        (h.observations().iter())
            .filter(|o| o.deployment == "resp-cross" && o.role == role)
            .count()
    };
    assert_eq!((cross(Role::Stable), cross(Role::Candidate)), (3, 1));
    assert_eq!(
        pairs
            .iter()
            .filter(|p| p.deployment == "resp-cross")
            .count(),
        1
    );
    let same = pairs.iter().find(|p| p.deployment == "resp").unwrap();
    let sent = same.candidate.request_body.as_ref().unwrap().value();
    assert_eq!(sent["previous_response_id"], "resp_x");
    // The mirrors to the other provider were never sent.
    let other = requests_to(&h, "/v1/responses", "mock-candidate-good");
    let with_state = (other.iter())
        .filter(|r| {
            r.body.get("previous_response_id").is_some() || r.body.get("conversation").is_some()
        })
        .count();
    assert_eq!(with_state, 1, "{other:#?}");
}

#[tokio::test]
async fn messages_plain_and_streamed_are_served_mirrored_and_captured_as_messages() {
    let h = harness().await;
    for (n, stream) in [false, true].into_iter().enumerate() {
        let body = json!({"model": "claude", "max_tokens": 256, "stream": stream,
                          "messages": [{"role": "user", "content": PROMPT}],
                          "metadata": {"user_id": "u-7"}});
        let r = h.post("/v1/messages", &body, &[]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-canarist-variant"], "stable");
        let pairs = h.wait_pairs(n + 1).await;
        let pair = pair_of(&pairs, &r).clone();
        let text = r.text().await.unwrap();
        if stream {
            let events = frames(&text);
            let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
            assert_eq!(&types[..2], ["message_start", "content_block_start"]);
            assert!(types.contains(&"ping"), "{types:?}");
            assert_eq!(
                &types[types.len() - 3..],
                ["content_block_stop", "message_delta", "message_stop"]
            );
            let deltas: String = (events.iter())
                .filter(|(t, _)| t == "content_block_delta")
                .map(|(_, d)| d["delta"]["text"].as_str().unwrap())
                .collect();
            assert_eq!(pair.stable.response_text.as_deref(), Some(deltas.as_str()));
        } else {
            let served: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(served["type"], "message");
            assert_eq!(pair.stable.response_body.as_ref().unwrap().value(), served);
        }
        for (side, (input, output)) in [(&pair.stable, (1.0, 2.0)), (&pair.candidate, (3.0, 4.0))] {
            assert_eq!(side.endpoint, Endpoint::Messages);
            assert!(side.is_success(), "{side:?}");
            assert_eq!(side.finish_reason.as_deref(), Some("stop"));
            let stored = side.response_body.as_ref().unwrap().value();
            assert_eq!(stored["type"], "message");
            assert_eq!(stored["role"], "assistant");
            assert_eq!(stored["stop_reason"], "end_turn");
            assert_eq!(stored["content"][0]["type"], "text");
            assert_eq!(
                stored["content"][0]["text"],
                side.response_text.as_deref().unwrap()
            );
            assert_eq!(stored["usage"]["cache_read_input_tokens"], 0);
            assert_priced(side, input, output);
            assert_eq!(side.unit_key.as_deref(), Some("u-7"));
        }
        // The stable variant's system prompt went in as `system`.
        let sent = pair.stable.request_body.as_ref().unwrap().value();
        assert_eq!(sent["system"], "You are ACME's support agent.");
        assert_eq!(sent["model"], "mock-stable");
    }
}

#[tokio::test]
async fn a_streamed_tool_call_is_assembled_like_the_plain_one() {
    let h = harness().await;
    let tools = json!([{"name": "lookup_order", "description": "Find an order",
        "input_schema": {"type": "object", "required": ["order_id"],
                         "properties": {"order_id": {"type": "string"}}}}]);
    let mut stored = Vec::new();
    for (n, stream) in [false, true].into_iter().enumerate() {
        let body = json!({"model": "claude-tools", "max_tokens": 64, "stream": stream, "tools": tools,
                          "tool_choice": {"type": "tool", "name": "lookup_order"},
                          "messages": [{"role": "user", "content": "Where is order 42?"}]});
        let r = h
            .post("/v1/messages", &body, &[("x-canarist-unit", "u-tool")])
            .await;
        assert_eq!(r.status(), 200);
        let pairs = h.wait_pairs(n + 1).await;
        let pair = pair_of(&pairs, &r).clone();
        let _ = r.text().await.unwrap();
        let side = &pair.stable;
        assert!(side.is_success(), "{side:?}");
        assert_eq!(side.finish_reason.as_deref(), Some("tool_calls"));
        let body = side.response_body.as_ref().unwrap().value();
        assert_eq!(body["content"][0]["type"], "tool_use");
        assert_eq!(body["content"][0]["name"], "lookup_order");
        stored.push(body["content"][0]["input"].clone());
    }
    assert!(stored[0]["order_id"].is_string(), "{}", stored[0]);
    assert_eq!(
        stored[0], stored[1],
        "the streamed tool input is assembled into JSON"
    );
}

#[tokio::test]
async fn anthropic_credentials_and_versions_reach_only_the_providers_that_take_them() {
    let h = harness().await;
    let body = |model: &str| {
        json!({"model": model, "max_tokens": 16,
               "messages": [{"role": "user", "content": PROMPT}], "metadata": {"user_id": model}})
    };
    let client = [
        ("x-api-key", "sk-ant-client"),
        ("authorization", "Bearer sk-client"),
        ("anthropic-version", "2023-01-01"),
        ("anthropic-beta", "prompt-caching-2024-07-31"),
    ];
    // Own key: the provider's key as x-api-key, never the client's; the client's version.
    assert_eq!(
        h.post("/v1/messages", &body("claude"), &client)
            .await
            .status(),
        200
    );
    // No client version: the configured one.
    let r = h
        .post(
            "/v1/messages",
            &body("claude"),
            &[("x-api-key", "cnr_not_forwarded")],
        )
        .await;
    assert_eq!(r.status(), 200);
    // Opted in: the client's own key; a canarist key never.
    assert_eq!(
        h.post("/v1/messages", &body("claude-open"), &client)
            .await
            .status(),
        200
    );
    let r = h
        .post(
            "/v1/messages",
            &body("claude-open"),
            &[
                ("x-api-key", "cnr_secret"),
                ("authorization", "Bearer cnr_secret"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    h.wait_observations(|o| o.len() >= 6).await;
    let seen: Vec<RecordedRequest> = (h.mock.requests().into_iter())
        .filter(|r| r.path == "/v1/messages")
        .collect();
    let of = |user: &str| -> Vec<&RecordedRequest> {
        seen.iter()
            .filter(|r| r.body["metadata"]["user_id"] == user)
            .collect()
    };
    let own = of("claude");
    assert_eq!(own.len(), 4, "two served and two mirrored");
    for r in &own {
        assert_eq!(r.header("x-api-key"), Some(OWN_KEY), "{r:?}");
        assert_eq!(r.header("authorization"), None, "{r:?}");
    }
    let versions: Vec<_> = own.iter().map(|r| r.header("anthropic-version")).collect();
    assert_eq!(
        versions
            .iter()
            .filter(|v| **v == Some("2023-01-01"))
            .count(),
        2
    );
    assert_eq!(
        versions
            .iter()
            .filter(|v| **v == Some("2023-06-01"))
            .count(),
        2
    );
    assert!(
        own.iter()
            .any(|r| r.header("anthropic-beta") == Some("prompt-caching-2024-07-31"))
    );
    let open = of("claude-open");
    assert_eq!(open.len(), 2);
    assert_eq!(open[0].header("x-api-key"), Some("sk-ant-client"));
    assert_eq!(open[0].header("authorization"), Some("Bearer sk-client"));
    assert_eq!(open[1].header("x-api-key"), None, "{:?}", open[1]);
    assert_eq!(open[1].header("authorization"), None);
    assert_eq!(open[1].header("anthropic-version"), Some("2023-06-01"));
    for r in &seen {
        assert!(
            r.headers.iter().all(|(_, v)| !v.contains("cnr_")),
            "a canarist key reached an upstream: {r:?}"
        );
    }
}

#[tokio::test]
async fn count_tokens_goes_to_the_stable_provider_with_its_model_and_is_not_captured() {
    let h = harness().await;
    let body = json!({"model": "claude", "messages": [{"role": "user", "content": PROMPT}]});
    let r = h.post("/v1/messages/count_tokens", &body, &[]).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["input_tokens"].as_u64().unwrap() > 0, "{v}");
    let seen = requests_to(&h, "/v1/messages/count_tokens", "mock-stable");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-api-key"), Some(OWN_KEY));
    assert_eq!(seen[0].body["system"], "You are ACME's support agent.");
    // Not a deployment and no default provider: Anthropic's 404.
    let r = h
        .post(
            "/v1/messages/count_tokens",
            &json!({"model": "nope", "messages": []}),
            &[],
        )
        .await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "not_found_error");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(h.observations().is_empty(), "{:?}", h.observations());
}

#[tokio::test]
async fn errors_on_the_messages_path_have_anthropics_shape() {
    let h = harness().await;
    let anthropic = |v: &Value, kind: &str| {
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
    };
    let cases = [
        (
            json!({"model": "unknown", "max_tokens": 1, "messages": []}),
            404,
            "not_found_error",
        ),
        (
            json!({"max_tokens": 1, "messages": []}),
            400,
            "invalid_request_error",
        ),
        (
            json!({"model": "claude", "max_tokens": 1}),
            400,
            "invalid_request_error",
        ),
        // A deployment on an OpenAI provider answers through Chat Completions, which has no
        // `top_k`: the field is named in Anthropic's shape.
        (
            json!({"model": "resp", "max_tokens": 1, "top_k": 3,
                   "messages": [{"role": "user", "content": "hi"}]}),
            400,
            "invalid_request_error",
        ),
        // The provider's own error passes as it came.
        (
            json!({"model": "claude-429", "max_tokens": 1,
                   "messages": [{"role": "user", "content": "hi"}]}),
            429,
            "rate_limit_error",
        ),
    ];
    for (body, status, kind) in cases {
        let r = h.post("/v1/messages", &body, &[]).await;
        assert_eq!(r.status(), status, "{body}");
        let v: Value = r.json().await.unwrap();
        anthropic(&v, kind);
    }
    let r = h
        .client
        .post(h.url("/v1/messages"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    anthropic(&v, "invalid_request_error");
    assert!(v["request_id"].is_string(), "{v}");
    // The Responses API keeps OpenAI's shape; an Anthropic deployment cannot answer it.
    let r = h
        .post(
            "/v1/responses",
            &json!({"model": "claude", "input": "hi"}),
            &[],
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unsupported_api", "{v}");
    assert_eq!(v["error"]["param"], "model");
}

#[tokio::test]
async fn a_truncated_messages_stream_is_captured_as_truncated() {
    let h = harness().await;
    let body = json!({"model": "claude-truncated", "max_tokens": 64, "stream": true,
                      "messages": [{"role": "user", "content": PROMPT}]});
    let r = h.post("/v1/messages", &body, &[]).await;
    assert_eq!(r.status(), 200);
    let _ = r.text().await;
    let obs = h.wait_observations(|o| !o.is_empty()).await;
    assert_eq!(obs[0].error, Some(ErrorClass::Truncated), "{:?}", obs[0]);
    assert!(
        obs[0]
            .error_detail
            .as_deref()
            .unwrap()
            .contains("message_stop")
    );
    // What was assembled is still a message.
    assert_eq!(
        obs[0].response_body.as_ref().unwrap().value()["type"],
        "message"
    );
}
