//! The judge's request body on the wire, recorded by a small axum server: a chat judge sends
//! `max_tokens` and `temperature`; a reasoning model (`o3`, `gpt-5`, …) sends
//! `max_completion_tokens` and no `temperature`; a judge file can set either way explicitly.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use canarist::judge::{JudgeClient, Message};
use canarist::rubric::{JudgeModel, parse_rubric};
use serde_json::{Value, json};

type Recorded = Arc<Mutex<Vec<Value>>>;

/// A chat-completions endpoint that records each body and answers `{"score": 4}`.
async fn recording_upstream() -> (String, Recorded) {
    let recorded: Recorded = Arc::default();
    let app = axum::Router::new()
        .route(
            "/v1/chat/completions",
            post(|State(r): State<Recorded>, Json(body): Json<Value>| async move {
                r.lock().unwrap().push(body);
                Json(json!({
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "judge",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "{\"score\": 4}"}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
                }))
            }),
        )
        .with_state(recorded.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, recorded)
}

/// The judge of a rubric whose inline judge is `judge_yaml` (indented under `judge:`).
fn judge(base_url: &str, judge_yaml: &str) -> JudgeModel {
    let text = format!(
        "id: shape\nversion: 1.0.0\njudge:\n  base_url: {base_url}\n  api_key_env: CANARIST_TEST_JUDGE_KEY\n\
         {judge_yaml}criteria:\n  - id: helpful\n    mode: pointwise\n    question: Does it help?\n\
         \x20   scale: {{min: 1, max: 5, anchors: {{1: No., 5: Yes.}}}}\n"
    );
    let rubric = parse_rubric(std::path::Path::new("rubrics/shape.yaml"), &text)
        .unwrap_or_else(|e| panic!("{e}"));
    rubric.judging.unwrap().judges[0].clone()
}

async fn sent_body(base_url: &str, recorded: &Recorded, judge_yaml: &str) -> Value {
    let client = JudgeClient::new(
        &judge(base_url, judge_yaml),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let format = json!({"type": "json_schema", "json_schema": {"name": "verdict", "strict": true,
        "schema": {"type": "object", "properties": {"score": {"type": "integer"}},
                   "required": ["score"], "additionalProperties": false}}});
    let done = client
        .complete(
            &[Message::System("s".into()), Message::User("u".into())],
            &format,
        )
        .await
        .unwrap();
    assert_eq!(done.text, "{\"score\": 4}");
    recorded.lock().unwrap().pop().unwrap()
}

fn keys(body: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn chat_judges_send_max_tokens_and_temperature_reasoning_judges_neither() {
    let (url, recorded) = recording_upstream().await;

    let chat = sent_body(
        &url,
        &recorded,
        "  model: gpt-4o-mini\n  max_tokens: 300\n  seed: 7\n",
    )
    .await;
    assert_eq!(
        keys(&chat),
        [
            "max_tokens",
            "messages",
            "model",
            "response_format",
            "seed",
            "temperature"
        ]
    );
    assert_eq!(
        (chat["max_tokens"].as_u64(), chat["temperature"].as_f64()),
        (Some(300), Some(0.0))
    );

    for model in ["o3-mini", "o1", "o4-mini", "gpt-5", "openai/gpt-5-mini"] {
        let body = sent_body(
            &url,
            &recorded,
            &format!("  model: {model}\n  max_tokens: 2000\n"),
        )
        .await;
        assert_eq!(
            keys(&body),
            [
                "max_completion_tokens",
                "messages",
                "model",
                "response_format"
            ],
            "{model}"
        );
        assert_eq!(body["max_completion_tokens"], 2000, "{model}");
        assert_eq!(body["model"], model);
    }
}

#[tokio::test]
async fn a_judge_file_sets_the_token_field_and_temperature_explicitly() {
    let (url, recorded) = recording_upstream().await;

    // A reasoning-style server under another name.
    let body = sent_body(
        &url,
        &recorded,
        "  model: qwq-32b\n  token_limit_field: max_completion_tokens\n  temperature: null\n",
    )
    .await;
    assert_eq!(
        keys(&body),
        [
            "max_completion_tokens",
            "messages",
            "model",
            "response_format"
        ]
    );
    assert_eq!(body["max_completion_tokens"], 512, "the default limit");

    let body = sent_body(
        &url,
        &recorded,
        "  model: local\n  send_temperature: false\n",
    )
    .await;
    assert_eq!(
        keys(&body),
        ["max_tokens", "messages", "model", "response_format"]
    );

    // An `o3` behind a proxy that still wants the old field, with a temperature it accepts.
    let body = sent_body(
        &url,
        &recorded,
        "  model: o3\n  token_limit_field: max_tokens\n  temperature: 1\n",
    )
    .await;
    assert_eq!(
        keys(&body),
        [
            "max_tokens",
            "messages",
            "model",
            "response_format",
            "temperature"
        ]
    );
    assert_eq!(body["temperature"], 1.0);

    let err = parse_rubric(
        std::path::Path::new("rubrics/bad.yaml"),
        &format!(
            "id: bad\nversion: 1.0.0\njudge:\n  base_url: {url}\n  api_key_env: K\n  model: m\n\
             \x20 token_limit_field: max_output_tokens\ncriteria:\n  - id: c\n    mode: pointwise\n\
             \x20   question: q?\n    scale: {{min: 1, max: 5, anchors: {{1: a, 5: b}}}}\n"
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("judge.token_limit_field"), "{err}");
    assert!(
        err.contains("`max_output_tokens` is not one of max_tokens, max_completion_tokens"),
        "{err}"
    );
}
