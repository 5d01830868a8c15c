//! Bad input and upstream failures: each gets its status and an OpenAI-shaped error body.

use std::time::Duration;

use canarist::mock::{ErrorStatus, MockConfig, Profile};
use serde_json::{Value, json};

use crate::support::{Harness, chat_body};

const DEPLOYMENTS: &str = r#"
max_body_bytes: 2048
deployments:
  - slug: ok
    stable: { provider: mock, model: mock-stable }
  - slug: unreachable
    stable: { provider: dead, model: x }
  - slug: slow
    stable: { provider: slowmock, model: mock-hang }
  - slug: rejects
    stable: { provider: mock, model: bad-request }
  - slug: fails
    stable: { provider: mock, model: mock-500 }
  - slug: garbage
    stable: { provider: mock, model: mock-malformed }
"#;

async fn harness() -> Harness {
    let mock = MockConfig::builtin().unwrap().with_model(
        "bad-request",
        Profile {
            error_rate: 1.0,
            error_status: ErrorStatus::BadRequest400,
            ..Profile::default()
        },
    );
    let mock = canarist::mock::MockServer::start(mock).await.unwrap();
    let yaml = crate::support::config_yaml(&mock.base_url(), DEPLOYMENTS).replace(
        "  dead:",
        &format!(
            "  slowmock:\n    base_url: {}\n    timeout: 300ms\n  dead:",
            mock.base_url()
        ),
    );
    let config =
        canarist::config::Config::from_yaml(std::path::Path::new("t.yaml"), &yaml, &|_| None)
            .unwrap();
    Harness::with_config(mock, config).await
}

async fn expect_error(
    r: reqwest::Response,
    status: u16,
    code: Option<&str>,
    param: Option<&str>,
) -> Value {
    assert_eq!(r.status().as_u16(), status);
    assert!(r.headers().contains_key("x-request-id"));
    let body: Value = r.json().await.expect("error bodies are JSON");
    let err = &body["error"];
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(err["type"].is_string(), "{body}");
    if let Some(code) = code {
        assert_eq!(err["code"], code, "{body}");
    }
    if let Some(param) = param {
        assert_eq!(err["param"], param, "{body}");
    }
    body
}

#[tokio::test]
async fn bad_input_gets_a_specific_openai_error() {
    let h = harness().await;
    let raw = |body: &'static str| {
        h.client
            .post(h.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    expect_error(
        raw("{not json").await.unwrap(),
        400,
        Some("invalid_json"),
        None,
    )
    .await;
    expect_error(
        h.chat(&json!({"model": "ok"}), &[]).await,
        400,
        Some("missing_required_parameter"),
        Some("messages"),
    )
    .await;
    expect_error(
        h.chat(&json!({"messages": []}), &[]).await,
        400,
        Some("missing_required_parameter"),
        Some("model"),
    )
    .await;
    let big = chat_body("ok", &"x".repeat(4096));
    expect_error(
        h.chat(&big, &[]).await,
        413,
        Some("request_too_large"),
        None,
    )
    .await;
    let body = expect_error(
        h.chat(&chat_body("no-such-model", "hi"), &[]).await,
        404,
        Some("model_not_found"),
        Some("model"),
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-model")
    );
    expect_error(
        h.client.get(h.url("/v2/whatever")).send().await.unwrap(),
        404,
        Some("unknown_url"),
        None,
    )
    .await;
}

#[tokio::test]
async fn upstream_failures_map_to_gateway_statuses() {
    let h = harness().await;
    for (model, status, code) in [
        ("unreachable", 502, "upstream_unreachable"),
        ("slow", 504, "upstream_timeout"),
        ("garbage", 502, "upstream_invalid_response"),
    ] {
        let r = h.chat(&chat_body(model, "hi"), &[]).await;
        assert_eq!(r.headers()["x-canarist-deployment"], model);
        let body = expect_error(r, status, Some(code), None).await;
        // Nothing internal leaks: no addresses, no provider error chains.
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("127.0.0.1") && !message.contains("error sending"),
            "{message}"
        );
    }
    // Upstream errors pass through with their own status and body.
    for (model, status) in [("rejects", 400), ("fails", 500)] {
        let r = h.chat(&chat_body(model, "hi"), &[]).await;
        let direct = h
            .client
            .post(format!("{}/chat/completions", h.mock.base_url()))
            .json(&chat_body(
                if model == "rejects" {
                    "bad-request"
                } else {
                    "mock-500"
                },
                "hi",
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(direct.status().as_u16(), status);
        let direct: Value = direct.json().await.unwrap();
        let body = expect_error(r, status, None, None).await;
        assert_eq!(body, direct);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn unknown_models_go_to_the_default_provider_when_configured() {
    let mock = canarist::mock::MockServer::start(MockConfig::builtin().unwrap())
        .await
        .unwrap();
    let yaml = crate::support::config_yaml(&mock.base_url(), "default_provider: mock\n");
    let config =
        canarist::config::Config::from_yaml(std::path::Path::new("t.yaml"), &yaml, &|_| None)
            .unwrap();
    let h = Harness::with_config(mock, config).await;
    let r = h.chat(&chat_body("mock-stable", "hi"), &[]).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(h.mock.request_count("mock-stable"), 1);
}

#[tokio::test]
async fn oversized_unit_keys_and_cohort_labels_are_refused_naming_the_field() {
    let h = Harness::start(
        MockConfig::builtin().unwrap(),
        r#"
routing:
  max_key_bytes: 16
deployments:
  - slug: chat
    stable: { provider: mock, model: mock-stable }
    cohorts:
      labels:
        tier: { metadata: tier }
        region: { header: x-region }
"#,
    )
    .await;
    let long = "k".repeat(17);
    let fits = "k".repeat(16);
    let with = |key: &str, value: &str| {
        let mut body = chat_body("chat", "hi");
        match key {
            "user" => body["user"] = json!(value),
            "metadata.tier" => body["metadata"] = json!({"tier": value}),
            "metadata.user_id" => body["metadata"] = json!({"user_id": value}),
            "safety_identifier" | "prompt_cache_key" => body[key] = json!(value),
            _ => {}
        }
        body
    };
    for (field, header) in [
        ("user", None),
        ("metadata.tier", None),
        ("safety_identifier", None),
        ("prompt_cache_key", None),
        ("metadata.user_id", None),
        ("x-canarist-unit", Some("x-canarist-unit")),
        ("x-region", Some("x-region")),
    ] {
        let headers: Vec<(&str, &str)> = header.map(|h| (h, long.as_str())).into_iter().collect();
        let body = expect_error(
            h.chat(&with(field, &long), &headers).await,
            400,
            Some("string_above_max_length"),
            Some(field),
        )
        .await;
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("16"), "{message}");
        let headers: Vec<(&str, &str)> = header.map(|h| (h, fits.as_str())).into_iter().collect();
        let r = h.chat(&with(field, &fits), &headers).await;
        assert_eq!(r.status(), 200, "{field} at the cap is accepted");
    }
    let default =
        canarist::config::Config::from_yaml(std::path::Path::new("t.yaml"), "{}", &|_| None)
            .unwrap();
    assert_eq!(default.max_key_bytes, 256);
}
