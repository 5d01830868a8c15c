//! Hostile upstreams (`upstream_limits`): a candidate or stable that sends a huge tool-call
//! index, an oversized answer or a stream that never ends cannot crash or exhaust the gateway.
//! The served client gets a clean OpenAI-shaped 502 (or, once a stream has started, an error
//! event), and the side's observation is `upstream_invalid_response`.

use std::time::Duration;

use canarist::capture::{ErrorClass, Purpose, Role};
use canarist::mock::{MockConfig, Profile};
use serde_json::{Value, json};

use crate::support::{Harness, chat_body};

fn mock() -> MockConfig {
    MockConfig::builtin()
        .unwrap()
        .with_model(
            "index-usize-max",
            Profile {
                huge_tool_index: Some(u64::MAX),
                ..Profile::default()
            },
        )
        .with_model(
            "index-1e8",
            Profile {
                huge_tool_index: Some(100_000_000),
                ..Profile::default()
            },
        )
        .with_model(
            "big-answer",
            Profile {
                answer_bytes: Some(300_000),
                ..Profile::default()
            },
        )
        // The fixture's `mock-endless` without its delay: a flood.
        .with_model(
            "mock-endless",
            Profile {
                endless_stream: true,
                ..Profile::default()
            },
        )
        .with_model(
            "endless-slow",
            Profile {
                endless_stream: true,
                chunk_delay: Duration::from_millis(50),
                ..Profile::default()
            },
        )
}

/// A shadow deployment `shadow-<model>` whose candidate is `model`, and an `off` deployment
/// `served-<model>` whose stable is `model`, for each of `models`.
fn deployments(models: &[&str], extra: &str) -> String {
    let mut out = format!("{extra}\ndeployments:\n");
    for m in models {
        out.push_str(&format!(
            "  - slug: shadow-{m}\n    mode: shadow\n    stable: {{ provider: mock, model: mock-fast }}\n    candidates: [ {{ name: cand, provider: mock, model: {m}, percent: 100 }} ]\n    shadow: {{ timeout: 1s }}\n  - slug: served-{m}\n    stable: {{ provider: mock, model: {m} }}\n"
        ));
    }
    out
}

const LIMITS: &str = "upstream_limits:\n  max_body_bytes: 100000\n  max_stream_bytes: 100000\n";

fn assert_openai_invalid_response(body: &Value) {
    assert_eq!(body["error"]["type"], "upstream_error", "{body}");
    assert_eq!(body["error"]["code"], "upstream_invalid_response", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

/// The last SSE event of a stream, parsed.
fn last_event(text: &str) -> Value {
    let data = text
        .split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .last()
        .unwrap_or_else(|| panic!("no event in {text:?}"));
    serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data:?}"))
}

async fn ask(h: &Harness, deployment: &str, stream: bool, unit: &str) -> reqwest::Response {
    let mut body = chat_body(deployment, "Where is my order?");
    body["stream"] = json!(stream);
    h.chat(&body, &[("x-canarist-unit", unit)]).await
}

#[tokio::test]
async fn huge_tool_call_indices_are_refused_without_a_crash() {
    let models = ["mock-huge-tool-index", "index-usize-max", "index-1e8"];
    let h = Harness::start(mock(), &deployments(&models, "")).await;
    for (i, m) in models.iter().enumerate() {
        // Served: the stream has started, so it ends with an OpenAI-shaped error event.
        let r = ask(&h, &format!("served-{m}"), true, &format!("u{i}")).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.expect("the stream ends cleanly");
        assert_openai_invalid_response(&last_event(&text));
        assert!(!text.contains("[DONE]"), "{m}: {text}");
        // Mirrored: the client's answer is stable's; the candidate's side is refused.
        let r = ask(&h, &format!("shadow-{m}"), true, &format!("u{i}")).await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("[DONE]"));
    }
    let obs = h
        .wait_observations(|o| {
            o.iter()
                .filter(|o| o.error == Some(ErrorClass::InvalidResponse))
                .count()
                == 2 * models.len()
        })
        .await;
    let refused: Vec<_> = obs
        .iter()
        .filter(|o| o.error == Some(ErrorClass::InvalidResponse))
        .collect();
    assert_eq!(
        refused
            .iter()
            .filter(|o| o.purpose == Purpose::Mirrored && o.role == Role::Candidate)
            .count(),
        models.len()
    );
    assert!(
        refused.iter().all(|o| o
            .error_detail
            .as_deref()
            .is_some_and(|d| d.contains("max_tool_calls"))),
        "{refused:#?}"
    );
    // Still serving.
    let r = ask(&h, "served-mock-huge-tool-index", false, "after").await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn an_oversized_answer_is_a_502_and_an_invalid_observation() {
    let h = Harness::start(mock(), &deployments(&["big-answer"], LIMITS)).await;
    // Not streamed: a clean OpenAI-shaped 502.
    let r = ask(&h, "served-big-answer", false, "u1").await;
    assert_eq!(r.status(), 502);
    assert_openai_invalid_response(&r.json().await.unwrap());
    // Streamed: the error event ends the stream.
    let r = ask(&h, "served-big-answer", true, "u2").await;
    assert_eq!(r.status(), 200);
    assert_openai_invalid_response(&last_event(&r.text().await.unwrap()));
    // Mirrored, both ways.
    for (unit, stream) in [("u3", false), ("u4", true)] {
        let r = ask(&h, "shadow-big-answer", stream, unit).await;
        assert_eq!(r.status(), 200);
    }
    let obs = h
        .wait_observations(|o| {
            o.iter()
                .filter(|o| o.error == Some(ErrorClass::InvalidResponse))
                .count()
                == 4
        })
        .await;
    for o in obs
        .iter()
        .filter(|o| o.variant != "stable" || o.deployment.starts_with("served"))
    {
        assert_eq!(o.error, Some(ErrorClass::InvalidResponse), "{o:#?}");
        // Nothing of the oversized answer was kept.
        assert!(o.response_text.as_ref().is_none_or(|t| t.len() <= 100_000));
    }
}

#[tokio::test]
async fn an_endless_stream_ends_at_its_bounds() {
    let h = Harness::start(
        mock(),
        &deployments(&["mock-endless", "endless-slow"], LIMITS),
    )
    .await;
    // Served, fast: cut at max_stream_bytes with an error event.
    let r = ask(&h, "served-mock-endless", true, "u1").await;
    assert_eq!(r.status(), 200);
    assert_openai_invalid_response(&last_event(&r.text().await.unwrap()));
    // Mirrored, fast: cut at max_stream_bytes; slow: at the shadow timeout (1 s).
    for (deployment, unit) in [("shadow-mock-endless", "u2"), ("shadow-endless-slow", "u3")] {
        let r = ask(&h, deployment, true, unit).await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("[DONE]"));
    }
    let obs = h
        .wait_observations(|o| o.iter().filter(|o| o.role == Role::Candidate).count() == 2)
        .await;
    let class_of = |deployment: &str| {
        obs.iter()
            .find(|o| o.deployment == deployment && o.role == Role::Candidate)
            .map(|o| o.error)
    };
    assert_eq!(
        class_of("shadow-mock-endless"),
        Some(Some(ErrorClass::InvalidResponse))
    );
    assert_eq!(
        class_of("shadow-endless-slow"),
        Some(Some(ErrorClass::Timeout))
    );
    let served = obs
        .iter()
        .find(|o| o.deployment == "served-mock-endless")
        .unwrap();
    assert_eq!(served.error, Some(ErrorClass::InvalidResponse));
}
