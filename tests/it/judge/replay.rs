//! `canarist replay` against the mock (variants and simulated judge), library and binary.
use canarist::mock::{MockConfig, MockServer};
use serde_json::Value;

use super::*;

// ---------- replay ----------

#[tokio::test]
async fn replay_prints_a_table_and_valid_json() {
    let mock = MockServer::start(MockConfig::builtin().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    rubric(dir.path(), "http://127.0.0.1:9/v1", "mock-judge", 60_000);
    let rubric_path = dir.path().join("support.yaml");
    let args = canarist::cli::replay::ReplayArgs {
        dataset: "fixtures/datasets/support.jsonl".into(),
        rubric: rubric_path.clone(),
        stable: "mock:mock-stable".into(),
        candidate: "mock:mock-candidate-bad".into(),
        base_url: mock.base_url(),
        api_key_env: None,
        config: None,
        judge_base_url: Some(mock.base_url()),
        concurrency: 4,
        limit: Some(20),
        aa: true,
        json: false,
    };
    let report = canarist::cli::replay::replay(&args).await.unwrap();
    assert_eq!(report.prompts, 20);
    let line = |name: &str| report.lines.iter().find(|l| l.name == name).unwrap();
    let help = line("helpfulness");
    assert_eq!(help.stable_n + help.candidate_n, 40);
    assert!(help.difference.unwrap() < -0.1, "{help:?}");
    assert!(line("preference").losses > line("preference").wins);
    assert_eq!(line("finished").kind, "check");
    let aa = report.aa.as_ref().unwrap();
    let aa_pref = aa.iter().find(|l| l.name == "preference").unwrap();
    assert_eq!(
        aa_pref.position_consistency,
        Some(1.0),
        "the simulated judge has no position bias"
    );
    let text = canarist::cli::replay::render(&report);
    assert!(
        text.contains("helpfulness") && text.contains("A/A"),
        "{text}"
    );

    // The binary: the same with --json prints one valid JSON document.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_canarist"))
        .args([
            "replay",
            "--dataset",
            "fixtures/datasets/support.jsonl",
            "--rubric",
        ])
        .arg(&rubric_path)
        .args([
            "--stable",
            "mock:mock-stable",
            "--candidate",
            "mock:mock-candidate-good",
            "--limit",
            "5",
            "--json",
        ])
        .args([
            "--base-url",
            &mock.base_url(),
            "--judge-base-url",
            &mock.base_url(),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["prompts"], 5);
    assert_eq!(v["rubric_id"], "test-support");
    assert!(v["lines"].as_array().unwrap().len() >= 3);
}
