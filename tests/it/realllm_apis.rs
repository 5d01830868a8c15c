//! The Responses API and Anthropic's Messages API against a real model server: llama.cpp
//! (`/work/shared/realllm`, SmolLM2-135M-Instruct) serves `/v1/responses` and `/v1/messages`
//! itself, and canarist is put in front of it on both, plain and streamed, the captured answer
//! text and usage checked against what the client received. Then a chat client with the
//! candidate on llama.cpp's Messages API (a translation, issue 16 item 3), served and shadowed.
//! `scripts/e2e-realllm.sh` starts the server and passes its URL in
//! `CANARIST_REALLLM_STABLE_URL`; ignored by default, and without the variable it passes with a
//! message.

use std::path::Path;

use canarist::capture::{Endpoint, Observation};
use canarist::config::Config;
use canarist::mock::{MockConfig, MockServer};
use serde_json::{Value, json};

use crate::support::Harness;

const PROMPT: &str = "Name one colour of the sky. Answer in one short sentence.";

fn base_url() -> Option<String> {
    let url = std::env::var("CANARIST_REALLLM_STABLE_URL").ok()?;
    let url = url.trim().trim_end_matches('/');
    (!url.is_empty()).then(|| {
        if url.ends_with("/v1") {
            url.to_owned()
        } else {
            format!("{url}/v1")
        }
    })
}

async fn harness(url: &str) -> Harness {
    let yaml = format!(
        r#"
providers:
  llama: {{ base_url: "{url}", timeout: 120s }}
  llama-anthropic: {{ base_url: "{url}", api: anthropic, timeout: 120s }}
capture:
  flush_interval: 20ms
deployments:
  - {{ slug: real-resp, mode: off, stable: {{ provider: llama, model: smollm2 }} }}
  - {{ slug: real-claude, mode: off, stable: {{ provider: llama-anthropic, model: smollm2 }} }}
  - slug: real-cross
    mode: shadow
    shadow: {{ timeout: 120s }}
    stable: {{ provider: llama, model: smollm2 }}
    candidates: [ {{ name: via-messages, provider: llama-anthropic, model: smollm2, percent: 100 }} ]
"#
    );
    let config = Config::from_yaml(Path::new("realllm-apis.yaml"), &yaml, &|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    // The harness wants a mock; nothing is routed to it.
    let mock = MockServer::start(MockConfig::builtin().unwrap())
        .await
        .unwrap();
    Harness::with_config(mock, config).await
}

async fn observation(h: &Harness, r: &reqwest::Response) -> Observation {
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let obs = h
        .wait_observations(|o| o.iter().any(|o| o.request_id.to_string() == id))
        .await;
    obs.into_iter()
        .find(|o| o.request_id.to_string() == id)
        .unwrap()
}

/// The data of every SSE frame that has JSON data.
fn events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|f| f.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

fn assert_captured(obs: &Observation, text: &str, endpoint: Endpoint) {
    assert!(obs.is_success(), "{obs:?}");
    assert_eq!(obs.endpoint, endpoint);
    assert!(!text.trim().is_empty(), "the model said nothing");
    assert_eq!(obs.response_text.as_deref(), Some(text), "{obs:?}");
    let u = obs.usage.expect("usage captured");
    assert!(u.prompt_tokens > 0 && u.completion_tokens > 0, "{u:?}");
}

#[tokio::test]
#[ignore = "needs a real model server: scripts/e2e-realllm.sh"]
async fn apis_realllm_responses_and_messages_in_front_of_llama_cpp() {
    let Some(url) = base_url() else {
        eprintln!(
            "apis_realllm: CANARIST_REALLLM_STABLE_URL is not set; skipped (run scripts/e2e-realllm.sh)"
        );
        return;
    };
    let h = harness(&url).await;
    let limit = 24;

    // Responses, plain: `output_text` of the message item.
    let body = json!({"model": "real-resp", "input": PROMPT, "max_output_tokens": limit, "temperature": 0});
    let r = h.post("/v1/responses", &body, &[]).await;
    assert_eq!(r.status(), 200);
    let obs = observation(&h, &r).await;
    let v: Value = r.json().await.unwrap();
    let text: String = (v["output"].as_array().unwrap().iter())
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .filter_map(|c| c["text"].as_str())
        .collect();
    assert_captured(&obs, &text, Endpoint::Responses);
    assert_eq!(
        obs.usage.unwrap().prompt_tokens,
        v["usage"]["input_tokens"].as_u64().unwrap()
    );

    // Responses, streamed: the deltas are the captured text; usage from response.completed.
    let mut body = body.clone();
    body["stream"] = json!(true);
    let r = h.post("/v1/responses", &body, &[]).await;
    assert_eq!(r.status(), 200);
    let obs = observation(&h, &r).await;
    let ev = events(&r.text().await.unwrap());
    let text: String = (ev.iter())
        .filter(|e| e["type"] == "response.output_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert!(
        ev.iter().any(|e| e["type"] == "response.completed"),
        "{ev:?}"
    );
    assert_captured(&obs, &text, Endpoint::Responses);

    // Messages, plain and streamed.
    let body = json!({"model": "real-claude", "max_tokens": limit, "temperature": 0,
        "messages": [{"role": "user", "content": PROMPT}]});
    let r = h.post("/v1/messages", &body, &[]).await;
    assert_eq!(r.status(), 200);
    let obs = observation(&h, &r).await;
    let v: Value = r.json().await.unwrap();
    let text: String = (v["content"].as_array().unwrap().iter())
        .filter_map(|b| b["text"].as_str())
        .collect();
    assert_captured(&obs, &text, Endpoint::Messages);
    assert_eq!(
        obs.usage.unwrap().completion_tokens,
        v["usage"]["output_tokens"].as_u64().unwrap()
    );
    let mut body = body.clone();
    body["stream"] = json!(true);
    let r = h.post("/v1/messages", &body, &[]).await;
    assert_eq!(r.status(), 200);
    let obs = observation(&h, &r).await;
    let ev = events(&r.text().await.unwrap());
    let text: String = (ev.iter())
        .filter(|e| e["type"] == "content_block_delta")
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert!(ev.iter().any(|e| e["type"] == "message_stop"), "{ev:?}");
    assert_captured(&obs, &text, Endpoint::Messages);

    // A chat client, its candidate on llama.cpp's Messages API: a shadow pair of one model
    // through the two APIs, streamed to the client.
    let body = json!({"model": "real-cross", "max_tokens": limit, "temperature": 0, "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": PROMPT}]});
    let r = h.chat(&body, &[]).await;
    assert_eq!(r.status(), 200);
    let _ = r.text().await.unwrap();
    let pairs = h.wait_pairs(1).await;
    let pair = &pairs[0];
    for side in [&pair.stable, &pair.candidate] {
        assert!(side.is_success(), "{side:?}");
        assert!(
            side.response_text
                .as_deref()
                .is_some_and(|t| !t.trim().is_empty()),
            "{side:?}"
        );
        assert!(side.usage.unwrap().completion_tokens > 0);
    }
    assert_eq!(
        pair.candidate.response_body.as_ref().unwrap().value()["type"],
        "message"
    );
    assert_eq!(
        pair.candidate.request_body.as_ref().unwrap().value()["max_tokens"],
        limit
    );
}
