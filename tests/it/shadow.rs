//! Shadow mode: the client's answer comes from stable alone, whatever the candidate does, and
//! the captured pair holds both sides.

use std::time::Duration;

use canarist::capture::{ErrorClass, Purpose, Role};
use canarist::mock::{Latency, MockConfig, Profile};
use serde_json::json;

use crate::support::{Harness, chat_body, metric_value};

fn shadow_of(candidate_model: &str, extra: &str) -> String {
    format!(
        r#"
deployments:
  - slug: support
    model: support
    mode: shadow
    stage: shadow
    stable: {{ provider: mock, model: mock-stable }}
    candidates: [ {{ name: cand, provider: mock, model: {candidate_model}, percent: 100 }} ]
    shadow: {{ timeout: 20s }}
{extra}
"#
    )
}

fn off_deployment() -> &'static str {
    r#"
  - slug: control
    model: control
    mode: off
    stable: { provider: mock, model: mock-stable }
"#
}

fn mock() -> MockConfig {
    MockConfig::builtin()
        .unwrap()
        .with_seed(7)
        .with_fixed_created(1_700_000_000)
        .with_model(
            "mock-stable",
            Profile {
                latency: Latency::Fixed(Duration::from_millis(5)),
                ..Profile::default()
            },
        )
}

/// Sends the same request to the shadowed deployment and to a stable-only control deployment
/// and returns both (status, headers' content-type, body bytes).
async fn stable_vs_shadowed(h: &Harness, stream: bool) -> (Vec<u8>, Vec<u8>) {
    let mut body = chat_body("support", "Where is my order?");
    body["stream"] = json!(stream);
    // `user` reaches the upstream too, so the mock draws the same answer and id for both.
    body["user"] = json!("u-1");
    let shadowed = h.chat(&body, &[("x-canarist-unit", "u-1")]).await;
    assert_eq!(shadowed.status(), 200);
    assert_eq!(shadowed.headers()["x-canarist-variant"], "stable");
    let shadowed = shadowed.bytes().await.unwrap().to_vec();
    body["model"] = json!("control");
    let control = h.chat(&body, &[("x-canarist-unit", "u-1")]).await;
    assert_eq!(control.status(), 200);
    (shadowed, control.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn failing_candidates_never_change_the_client_response() {
    for (candidate, expected_error) in [
        ("mock-500", Some(ErrorClass::Upstream5xx)),
        ("mock-malformed", Some(ErrorClass::Malformed)),
        ("mock-candidate-bad", None),
    ] {
        let h = Harness::start(mock(), &(shadow_of(candidate, "") + off_deployment())).await;
        for stream in [false, true] {
            let (shadowed, control) = stable_vs_shadowed(&h, stream).await;
            assert_eq!(
                String::from_utf8_lossy(&shadowed),
                String::from_utf8_lossy(&control),
                "{candidate} (stream={stream}) changed the client's bytes"
            );
        }
        // The candidate's own outcome is captured, not hidden.
        let obs = h
            .wait_observations(|o| o.iter().filter(|o| o.role == Role::Candidate).count() == 2)
            .await;
        for o in obs.iter().filter(|o| o.role == Role::Candidate) {
            assert_eq!(o.purpose, Purpose::Mirrored);
            assert_eq!(o.error, expected_error, "{candidate}: {o:?}");
        }
    }
}

#[tokio::test]
async fn hanging_or_slow_candidates_do_not_delay_the_client() {
    let slow = Profile {
        latency: Latency::Fixed(Duration::from_secs(3)),
        ttft: Some(Latency::Fixed(Duration::from_millis(10))),
        chunk_delay: Duration::from_millis(400),
        words_per_chunk: 1,
        ..Profile::default()
    };
    for candidate in ["mock-hang", "mock-slow-cand"] {
        let h = Harness::start(
            mock().with_model("mock-slow-cand", slow.clone()),
            &(shadow_of(candidate, "") + off_deployment()),
        )
        .await;
        for stream in [false, true] {
            let (shadowed, control) = stable_vs_shadowed(&h, stream).await;
            assert_eq!(
                String::from_utf8_lossy(&shadowed),
                String::from_utf8_lossy(&control),
                "{candidate} (stream={stream})"
            );
        }
        // The client has its complete answer while the candidate is still going: structure,
        // not timing — the candidate's observation does not exist yet.
        let obs = h.observations();
        assert!(
            obs.iter().all(|o| o.role == Role::Stable),
            "{candidate}: candidate finished before the client response? {obs:?}"
        );
        assert!(
            h.mock.request_count(if candidate == "mock-hang" {
                "mock-hang"
            } else {
                "mock-slow-cand"
            }) >= 2
        );
    }
}

#[tokio::test]
async fn a_mirror_timeout_is_captured_as_a_timeout() {
    let h = Harness::start(
        mock(),
        &shadow_of("mock-hang", "").replace("timeout: 20s", "timeout: 200ms"),
    )
    .await;
    let r = h.chat(&chat_body("support", "hello"), &[]).await;
    assert_eq!(r.status(), 200);
    let obs = h
        .wait_observations(|o| o.iter().any(|o| o.role == Role::Candidate))
        .await;
    let cand = obs.iter().find(|o| o.role == Role::Candidate).unwrap();
    assert_eq!(cand.error, Some(ErrorClass::Timeout));
    let pairs = h.wait_pairs(1).await;
    assert_eq!(pairs[0].candidate.error, Some(ErrorClass::Timeout));
    assert!(pairs[0].stable.is_success());
}

#[tokio::test]
async fn the_captured_pair_holds_both_full_answers_with_usage_and_timings() {
    let h = Harness::start(mock(), &shadow_of("mock-candidate-good", "")).await;
    for (i, stream) in [false, true].into_iter().enumerate() {
        let mut body = chat_body("support", "How do I reset my password?");
        body["stream"] = json!(stream);
        body["metadata"] = json!({"tier": "pro"});
        let r = h.chat(&body, &[("x-canarist-unit", "alice")]).await;
        assert_eq!(r.status(), 200);
        let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        let text = r.text().await.unwrap();
        let pairs = h.wait_pairs(i + 1).await;
        let pair = pairs
            .iter()
            .find(|p| p.request_id.to_string() == request_id)
            .unwrap();
        for (side, role, model) in [
            (&pair.stable, Role::Stable, "mock-stable"),
            (&pair.candidate, Role::Candidate, "mock-candidate-good"),
        ] {
            assert_eq!(side.role, role);
            assert_eq!(side.upstream_model, model);
            assert_eq!(side.stream, stream);
            assert!(side.is_success(), "{side:?}");
            assert_eq!(side.finish_reason.as_deref(), Some("stop"));
            let usage = side.usage.expect("usage captured");
            assert!(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
            assert!(side.ttft_ms.unwrap() <= side.latency_ms);
            assert!(side.latency_ms > 0.0);
            let answer = side.response_text.clone().unwrap();
            assert!(!answer.is_empty());
            let full = side.response_body.as_ref().unwrap().value();
            assert_eq!(full["choices"][0]["message"]["content"], answer.as_str());
            assert_eq!(side.request_body.as_ref().unwrap().value()["model"], model);
            assert_eq!(side.unit_key.as_deref(), Some("alice"));
            assert!(side.sticky);
            assert_eq!(side.stage, "shadow");
            assert_eq!(side.pair_id, Some(pair.id));
        }
        // What the client got is stable's answer.
        let stable_answer = pair.stable.response_text.clone().unwrap();
        if !stream {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                v["choices"][0]["message"]["content"],
                stable_answer.as_str()
            );
        } else {
            assert!(text.contains("data: [DONE]"));
        }
        assert_eq!(pair.stable.bucket, pair.candidate.bucket);
    }
}

#[tokio::test]
async fn the_spend_cap_stops_mirroring_and_says_so() {
    let h = Harness::start(
        mock(),
        &shadow_of("mock-candidate-good", "    spend_cap: { tokens: 1 }"),
    )
    .await;
    let r = h.chat(&chat_body("support", "hello there"), &[]).await;
    assert_eq!(r.status(), 200);
    // Let the first mirror finish so that its spend is counted.
    h.wait_observations(|o| o.iter().any(|o| o.role == Role::Candidate))
        .await;
    for _ in 0..4 {
        let r = h.chat(&chat_body("support", "hello there"), &[]).await;
        assert_eq!(r.status(), 200);
    }
    let candidate_calls = h.mock.request_count("mock-candidate-good");
    assert_eq!(candidate_calls, 1, "mirroring continued past the cap");
    let m = h.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "canarist_mirror_spend_cap_reached{deployment=\"support\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "canarist_mirror_skipped_total{deployment=\"support\",reason=\"spend_cap\"}"
        ),
        4.0,
        "{m}"
    );
}

#[tokio::test]
async fn embeddings_are_served_by_stable_and_not_mirrored_by_default() {
    let h = Harness::start(mock(), &shadow_of("mock-candidate-good", "")).await;
    let r = h
        .post(
            "/v1/embeddings",
            &json!({"model": "support", "input": "hello"}),
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["data"][0]["embedding"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.mock.request_count("mock-candidate-good"), 0);
}
