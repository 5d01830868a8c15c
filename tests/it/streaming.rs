//! Streaming: chunks reach the client as the upstream sends them, usage is captured whether or
//! not the client asked for it, and a client that leaves does not break the other side's capture.

use std::time::Duration;

use canarist::capture::{ErrorClass, Role};
use canarist::mock::{MockConfig, Profile};
use serde_json::json;

use crate::support::{Harness, chat_body};

const SHADOW: &str = r#"
deployments:
  - slug: s
    model: s
    mode: shadow
    stable: { provider: mock, model: held }
    candidates: [ { name: cand, provider: mock, model: mock-candidate-good, percent: 100 } ]
"#;

fn held_mock() -> MockConfig {
    MockConfig::builtin().unwrap().with_model(
        "held",
        Profile {
            hold_after_first_chunk: true,
            ..Profile::default()
        },
    )
}

#[tokio::test]
async fn the_first_chunk_arrives_before_the_upstream_sends_the_last() {
    let h = Harness::start(held_mock(), SHADOW).await;
    let mut body = chat_body("s", "Tell me about your refund policy.");
    body["stream"] = json!(true);
    let mut r = h.chat(&body, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let first = tokio::time::timeout(Duration::from_secs(5), r.chunk())
        .await
        .expect("first chunk is forwarded while the upstream is still holding the rest")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    // The upstream has not finished its stream: it is waiting for our release.
    assert_eq!(h.mock.completed_count("held"), 0);
    h.mock.release_streams(1);
    let mut rest = Vec::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    let rest = String::from_utf8(rest).unwrap();
    assert!(rest.trim_end().ends_with("data: [DONE]"), "{rest}");
    assert_eq!(h.mock.completed_count("held"), 1);
}

#[tokio::test]
async fn usage_is_captured_but_only_shown_when_asked_for() {
    let h = Harness::start(
        MockConfig::builtin().unwrap(),
        &SHADOW.replace("model: held", "model: mock-stable"),
    )
    .await;
    for asks in [false, true] {
        let mut body = chat_body("s", "What are your opening hours?");
        body["stream"] = json!(true);
        if asks {
            body["stream_options"] = json!({"include_usage": true});
        }
        let text = h.chat(&body, &[]).await.text().await.unwrap();
        let usage_chunks = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .filter(|v| {
                v["choices"].as_array().is_some_and(|c| c.is_empty()) && v["usage"].is_object()
            })
            .count();
        assert_eq!(usage_chunks, usize::from(asks), "asks={asks}: {text}");
        // Upstream always got the usage request.
        let sent = h.mock.requests();
        let last = sent
            .iter()
            .rev()
            .find(|r| r.model.as_deref() == Some("mock-stable"))
            .unwrap();
        assert_eq!(last.body["stream_options"]["include_usage"], true);
    }
    let obs = h.wait_observations(|o| o.len() >= 4).await;
    assert!(
        obs.iter()
            .all(|o| o.usage.is_some_and(|u| u.total_tokens > 0)),
        "{obs:?}"
    );
}

#[tokio::test]
async fn a_client_leaving_mid_stream_does_not_break_the_mirror_capture() {
    let h = Harness::start(held_mock(), SHADOW).await;
    let mut body = chat_body("s", "Cancel my subscription please.");
    body["stream"] = json!(true);
    let mut r = h.chat(&body, &[]).await;
    let _first = r.chunk().await.unwrap().unwrap();
    drop(r); // the client goes away while stable is held
    let obs = h
        .wait_observations(|o| {
            o.iter().any(|o| o.role == Role::Candidate) && o.iter().any(|o| o.role == Role::Stable)
        })
        .await;
    let stable = obs.iter().find(|o| o.role == Role::Stable).unwrap();
    assert_eq!(stable.error, Some(ErrorClass::ClientDisconnected));
    let cand = obs.iter().find(|o| o.role == Role::Candidate).unwrap();
    assert!(cand.is_success(), "{cand:?}");
    assert!(cand.usage.is_some());
    assert_eq!(cand.finish_reason.as_deref(), Some("stop"));
    h.mock.release_streams(1);
}

#[tokio::test]
async fn truncated_streams_are_captured_as_truncated() {
    let h = Harness::start(
        MockConfig::builtin().unwrap(),
        &SHADOW.replace("model: held", "model: mock-truncated"),
    )
    .await;
    let mut body = chat_body("s", "hello");
    body["stream"] = json!(true);
    let r = h.chat(&body, &[]).await;
    let _ = r.bytes().await;
    let obs = h
        .wait_observations(|o| o.iter().any(|o| o.role == Role::Stable))
        .await;
    let stable = obs.iter().find(|o| o.role == Role::Stable).unwrap();
    assert_eq!(stable.error, Some(ErrorClass::Truncated), "{stable:?}");
}
