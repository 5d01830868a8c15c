//! `canarist demo` end to end: the real binary, with `--fast`, in a temporary directory. The
//! regression scenario must end rolled back naming the judge metric, the good one promoted;
//! both write stage reports whose JSON parses with `canarist::report::from_json`.

use std::path::Path;
use std::process::Output;

/// Runs `canarist demo --fast --scenario <scenario>` in `dir`.
async fn demo(scenario: &str, dir: &Path) -> (Output, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_canarist"))
        .args(["demo", "--fast", "--scenario", scenario, "--dir"])
        .arg(dir)
        .env("CANARIST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

/// Every `report: <path>` line: the files exist; each JSON report parses and is a report of the
/// demo deployment in the expected final state. Returns the parsed reports.
fn reports(stdout: &str, state: &str) -> Vec<canarist::report::StageReport> {
    let paths: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("report: "))
        .collect();
    assert!(
        paths.iter().any(|p| p.ends_with(".html")),
        "no HTML report: {stdout}"
    );
    let mut parsed = Vec::new();
    for p in &paths {
        let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        if p.ends_with(".html") {
            assert!(
                text.contains("<html") && text.contains("support-bot"),
                "{p}"
            );
        }
        if p.ends_with(".json") {
            let r = canarist::report::from_json(&text).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert_eq!(r.deployment, "support-bot");
            assert_eq!(r.rollout.state, state, "{p}");
            parsed.push(r);
        }
    }
    assert!(!parsed.is_empty(), "no JSON report: {stdout}");
    parsed
}

fn last_line(stdout: &str) -> &str {
    stdout.lines().last().unwrap_or("")
}

#[tokio::test]
async fn regression_scenario_is_rolled_back_on_the_judge_metric() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout) = demo("regression", dir.path()).await;
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let last = last_line(&stdout);
    assert!(last.starts_with("outcome: rolled back"), "{last}");
    assert!(last.contains("failing metric `helpfulness`"), "{last}");
    assert!(last.contains("in cohort `"), "{last}");
    assert!(
        stdout.contains("SIMULATED"),
        "the judge is labelled: {stdout}"
    );
    assert!(stdout.contains("/ui"), "dashboard URL: {stdout}");
    let parsed = reports(&stdout, "rolled_back");
    // The stage that was rolled back shows the candidate worse on helpfulness than stable.
    let stage = parsed
        .iter()
        .find(|r| r.decision.as_ref().is_some_and(|d| d.action == "rollback"))
        .unwrap_or_else(|| panic!("no report with the rollback decision: {stdout}"));
    let helpfulness = stage
        .criteria
        .iter()
        .find(|c| c.criterion == "helpfulness" && c.cohort == "all")
        .unwrap();
    assert!(
        helpfulness.candidate_mean.unwrap() < helpfulness.stable_mean.unwrap(),
        "{helpfulness:?}"
    );
    assert!(dir.path().join("demo.db").exists());
    assert!(dir.path().join("canarist.yaml").exists());
}

#[tokio::test]
async fn good_scenario_is_promoted_through_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout) = demo("good", dir.path()).await;
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let last = last_line(&stdout);
    assert!(last.starts_with("outcome: promoted"), "{last}");
    assert!(last.contains("as expected"), "{last}");
    let parsed = reports(&stdout, "promoted");
    // One report per stage: shadow and the three live stages.
    let mut stages: Vec<u32> = parsed.iter().map(|r| r.stage.index).collect();
    stages.sort_unstable();
    assert_eq!(stages, vec![0, 1, 2, 3], "{stdout}");
    // Progress lines showed the stages and the pairs judged as they went.
    for needle in ["stage 1/4 `shadow`", "pairs judged", "helpfulness"] {
        assert!(stdout.contains(needle), "{needle} missing: {stdout}");
    }
}
