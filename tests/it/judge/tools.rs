//! The pairwise judge prefers one tool decision over another: a pair of real mock answers
//! (`mock-tools` against `mock-tools-broken-refunds` on the refunds route) judged by the engine
//! against the simulated judge, which reads the `[tools]` block and the `[tool call: …]` blocks
//! canarist renders and prefers the call whose arguments are valid against the declared schema.
use canarist::capture::Role;
use canarist::judge::Judge;
use canarist::mock::{MockConfig, MockServer};
use canarist::store::Verdict;

use super::*;

const RUBRIC: &str = "id: tool-decisions\nversion: 1.0.0\napplies_to:\n  sample_rate: 1.0\n\
judge_ref: judges/j.yaml\nchecks:\n  - id: arguments\n    type: tool_arguments_valid\n\
criteria:\n  - id: tool_decision\n    mode: pairwise\n    question: Which answer calls the right tool with correct arguments?\n\
\x20 - id: tool_quality\n    mode: pointwise\n    question: Are the tool call's arguments right?\n\
\x20   scale:\n      min: 1\n      max: 5\n      anchors:\n        1: Wrong.\n        5: Right.\n";

fn request() -> Value {
    json!({"model": "order-agent", "metadata": {"route": "refunds"},
        "messages": [{"role": "user", "content": "Refund order A-1042, it arrived broken."}],
        "tools": [{"type": "function", "function": {"name": "issue_refund",
            "description": "Refund an order.",
            "parameters": {"type": "object", "required": ["order_id", "amount_usd"],
                "properties": {"order_id": {"type": "string", "examples": ["A-1042"]},
                    "amount_usd": {"type": "number", "exclusiveMinimum": 0}}}}}]})
}

/// One side: what `model` on the mock answered to [`request`].
async fn answered(mock: &MockServer, role: Role, model: &str) -> Observation {
    let mut body = request();
    body["model"] = json!(model);
    let response: Value = reqwest::Client::new()
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut obs = side("order-agent", role, role.as_str(), "", "");
    obs.response_text = None;
    obs.finish_reason = Some("tool_calls".into());
    obs.request_body = Some(request().into());
    obs.response_body = Some(response.into());
    obs
}

#[tokio::test]
async fn the_pairwise_judge_prefers_the_schema_valid_tool_call() {
    let mock = MockServer::start(MockConfig::builtin().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    rubric(dir.path(), &mock.base_url(), "mock-judge", 60_000);
    let path = dir.path().join("tools.yaml");
    std::fs::write(&path, RUBRIC).unwrap();
    let r = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let judge = Judge::new(vec![r], options(4), canarist::judge::JudgeStats::new()).unwrap();
    let mut p = pair("order-agent", "candidate", "", "", "");
    p.stable = answered(&mock, Role::Stable, "mock-tools").await;
    p.candidate = answered(&mock, Role::Candidate, "mock-tools-broken-refunds").await;
    let out = judge.judge_pair(&p).await.unwrap();

    let combined = out
        .judgments
        .iter()
        .find(|j| j.criterion == "tool_decision" && j.order == "combined")
        .unwrap_or_else(|| panic!("{:?}", out.judgments));
    assert_eq!(combined.winner, Some(Verdict::Stable), "{combined:?}");
    for order in ["ab", "ba"] {
        let j = out
            .judgments
            .iter()
            .find(|j| j.criterion == "tool_decision" && j.order == order)
            .unwrap();
        assert!(
            j.reasoning
                .as_deref()
                .is_some_and(|r| r.contains("break its declared schema")),
            "{j:?}"
        );
    }
    let score = |role: Role| {
        out.judgments
            .iter()
            .find(|j| j.criterion == "tool_quality" && j.side == Some(role))
            .and_then(|j| j.score)
    };
    assert_eq!(
        (score(Role::Stable), score(Role::Candidate)),
        (Some(1.0), Some(0.0))
    );
    // The judge was shown the declared tools and both calls.
    let prompts: Vec<String> = mock
        .requests()
        .into_iter()
        .filter(|r| r.body["model"] == "mock-judge")
        .map(|r| {
            r.body["messages"][1]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        prompts
            .iter()
            .all(|p| p.contains("[tools]\n- issue_refund: Refund an order.\n  arguments: {")),
        "{prompts:?}"
    );
    assert!(
        prompts
            .iter()
            .any(|p| p.contains("[tool call: issue_refund]"))
    );
    // The check at capture agrees.
    let checked = |role: Role| {
        out.checks
            .iter()
            .find(|c| c.name == "arguments" && c.side == role)
            .map(|c| c.passed)
    };
    assert_eq!(
        (checked(Role::Stable), checked(Role::Candidate)),
        (Some(true), Some(false))
    );
}
