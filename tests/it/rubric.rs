//! Rubric files: validation messages, examples, content hash and lock file here; checks and
//! judging in the submodules. Golden files: `UPDATE_GOLDEN=1` rewrites them.
// Helpers outside `#[test]` functions unwrap too: a failed fixture should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod checks;
mod judge;
mod tools;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use canarist::capture::{Endpoint, Observation, Pair, Purpose, Role};
use canarist::rubric::*;
use serde_json::json;
use uuid::Uuid;

// ---------- helpers ----------

fn obs(role: Role, text: &str) -> Observation {
    Observation {
        id: Uuid::new_v4(),
        request_id: Uuid::nil(),
        pair_id: None,
        at: chrono::Utc::now(),
        deployment: "support-bot".into(),
        variant: role.as_str().into(),
        role,
        purpose: Purpose::Served,
        stage: "shadow".into(),
        config_version: 1,
        endpoint: Endpoint::ChatCompletions,
        upstream_model: match role {
            Role::Stable => "gpt-4o-2024-08-06".into(),
            Role::Candidate => "llama-3.3-70b-instruct".into(),
        },
        stream: false,
        bucket: Some(42),
        unit_key: Some("user-1".into()),
        sticky: true,
        cohort: BTreeMap::new(),
        status: Some(200),
        error: None,
        error_detail: None,
        ttft_ms: Some(50.0),
        latency_ms: 120.0,
        usage: None,
        cost_usd: Some(0.001),
        finish_reason: Some("stop".into()),
        response_text: Some(text.into()),
        request_body: None,
        response_body: None,
    }
}

fn pair(stable: Observation, candidate: Observation) -> Pair {
    Pair {
        id: Uuid::from_u128(7),
        request_id: Uuid::nil(),
        deployment: stable.deployment.clone(),
        stage: "shadow".into(),
        config_version: 1,
        cohort: stable.cohort.clone(),
        stable,
        candidate,
    }
}

fn texts(stable: &str, candidate: &str) -> Pair {
    pair(obs(Role::Stable, stable), obs(Role::Candidate, candidate))
}

/// A pair with captured request bodies: each side got its own system prompt and model.
fn chat_pair(stable: &str, candidate: &str, metadata: serde_json::Value) -> Pair {
    let body = |system: &str, model: &str| {
        json!({
            "model": model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": "My order #1234 arrived damaged. What can I do?"}
            ],
            "metadata": metadata,
        })
    };
    let mut s = obs(Role::Stable, stable);
    s.request_body = Some(body("You are Acme's support agent.", "gpt-4o-2024-08-06").into());
    let mut c = obs(Role::Candidate, candidate);
    c.request_body = Some(
        body(
            "You are Acme's helpful support agent. Be brief.",
            "llama-3.3-70b-instruct",
        )
        .into(),
    );
    pair(s, c)
}

fn rubric_from(text: &str) -> Rubric {
    parse_rubric(Path::new("mem.yaml"), text).unwrap_or_else(|e| panic!("{e}"))
}

fn one_check(check: &str) -> Rubric {
    let indented: String = check.lines().map(|l| format!("    {l}\n")).collect();
    rubric_from(&format!("id: t\nversion: 1.0.0\nchecks:\n  -\n{indented}"))
}

fn run_one(check: &str, p: &Pair) -> CheckOutcome {
    run_checks(&one_check(check), p).outcomes.remove(0)
}

fn fail(r: &SideResult) -> bool {
    r.failed()
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from("fixtures/rubrics/golden").join(format!("{name}.txt"));
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs; run with UPDATE_GOLDEN=1 if intended",
        path.display()
    );
}

fn show(p: &JudgePrompt) -> String {
    format!(
        "=== system ===\n{}\n=== user ===\n{}\n=== response_format ===\n{}\n",
        p.system,
        p.user,
        serde_json::to_string_pretty(&p.response_format).unwrap()
    )
}

// ---------- validation ----------

#[test]
fn each_broken_fixture_is_rejected_with_file_line_and_field() {
    let cases: &[(&str, &[&str])] = &[
        (
            "unknown-key",
            &[
                "unknown-key.yaml:3: descripton: unknown key (expected one of: applies_to, checks, criteria, description, id, judge, judge_ref, panel, version)",
                "unknown-key.yaml:6: checks[0].severty: unknown key",
            ],
        ),
        (
            "scale-without-anchors",
            &[
                "scale-without-anchors.yaml:12: criteria[0].scale.anchors: missing: an ordinal scale needs anchor descriptions",
            ],
        ),
        (
            "anchor-missing-end",
            &[
                "anchor-missing-end.yaml:14: criteria[0].scale.anchors: both ends need an anchor; missing 5",
            ],
        ),
        (
            "example-out-of-scale",
            &[
                "example-out-of-scale.yaml:21: criteria[0].examples[0].score: example score 7 is outside the scale 1..5",
            ],
        ),
        (
            "unknown-check-type",
            &[
                "unknown-check-type.yaml:5: checks[1].type: unknown check type `json_vaild` (expected one of: json_valid,",
            ],
        ),
        (
            "bad-regex",
            &["bad-regex.yaml:5: checks[0].pattern: bad regex `([a-z]+`: error: unclosed group"],
        ),
        (
            "bad-schema",
            &["bad-schema.yaml:5: checks[0].schema: the JSON Schema does not compile:"],
        ),
        (
            "bad-semver",
            &["bad-semver.yaml:2: version: `1.0` is not a semantic version"],
        ),
        (
            "bad-jsonpath",
            &["bad-jsonpath.yaml:5: checks[0].path: `total[` is not a JSONPath"],
        ),
        (
            "unknown-label",
            &[
                "unknown-label.yaml:22: criteria[0].examples[0].label: unknown label `mostly_safe` (expected one of: safe, unsafe)",
            ],
        ),
        (
            "criteria-without-judge",
            &["criteria-without-judge.yaml:1: judge: criteria need a judge"],
        ),
        (
            "missing-judge-file",
            &["missing-judge-file.yaml:3: judge_ref: cannot read judge file"],
        ),
        (
            "broken-judge-file",
            &[
                "broken-judge-file.yaml:3: judge_ref: judge file fixtures/rubrics/broken/judges/broken.yaml is invalid",
                "judges/broken.yaml:1: base_url: `api.example.com` is not an http(s) URL",
                "judges/broken.yaml:2: api_key_env: must name an environment variable",
                "judges/broken.yaml:4: rpm: unknown key",
            ],
        ),
        ("not-yaml", &["not-yaml.yaml:4: invalid YAML:"]),
        (
            "many-problems",
            &[
                "many-problems.yaml:1: id: must be non-empty",
                "many-problems.yaml:2: version: `one` is not a semantic version",
                "many-problems.yaml:4: applies_to.sample_rate: must be between 0 and 1, got 1.5",
                "many-problems.yaml:9: judge.temperature: must be between 0 and 2",
                "many-problems.yaml:12: checks[0].min: min 10 is greater than max 5",
                "many-problems.yaml:14: checks[1].max: missing required field",
                "many-problems.yaml:15: checks[2].values: give `value` or a non-empty `values` list",
                "many-problems.yaml:18: criteria[0].mode: unknown mode `listwise`",
                "many-problems.yaml:23: criteria[1].scale: pairwise criteria take no scale or labels",
                "many-problems.yaml:24: criteria[2].id: duplicate id `c2`",
                "many-problems.yaml:27: criteria[2].reference: `golden` is neither `stable` nor `metadata.<key>`",
                "many-problems.yaml:28: criteria[2].labels: give at least two labels",
                "many-problems.yaml:29: criteria[2].labels[0].name: `Same`: use lowercase letters",
            ],
        ),
    ];
    let dir = Path::new("fixtures/rubrics/broken");
    for (name, expected) in cases {
        let file = dir.join(format!("{name}.yaml"));
        let err = load_file(&file).expect_err(name);
        let RubricError::Invalid(problems) = &err else {
            panic!("{name}: {err}")
        };
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        for want in *expected {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with("fixtures/rubrics/broken/") && l.contains(want)),
                "{name}: expected a line containing\n  {want}\ngot:\n  {}",
                lines.join("\n  ")
            );
        }
        if *name == "many-problems" {
            assert_eq!(
                lines.len(),
                expected.len(),
                "every problem, and only those:\n{}",
                lines.join("\n")
            );
        }
    }
}

#[test]
fn the_example_rubrics_validate_and_cover_the_format() {
    let rubrics = load_dir(Path::new("rubrics")).unwrap_or_else(|e| panic!("{e}"));
    let by_id: BTreeMap<&str, &Rubric> = rubrics.iter().map(|r| (r.id.as_str(), r)).collect();
    assert_eq!(
        by_id.keys().copied().collect::<Vec<_>>(),
        [
            "json-extraction",
            "safety-refusal",
            "support-chat",
            "tool-calling"
        ]
    );

    let support = by_id["support-chat"];
    let modes: Vec<Mode> = support.criteria.iter().map(|c| c.mode).collect();
    assert_eq!(modes, [Mode::Pointwise, Mode::Pairwise]);
    assert!(support.checks.len() >= 5);
    let judge = &support.judging.as_ref().unwrap().judges[0];
    assert_eq!(
        (judge.name.as_str(), judge.api_key_env.as_str()),
        ("default", "CANARIST_JUDGE_API_KEY")
    );

    let extraction = by_id["json-extraction"];
    let types: Vec<&str> = extraction
        .checks
        .iter()
        .map(|c| c.kind.type_name())
        .collect();
    assert!(
        types.contains(&"json_schema") && types.contains(&"equals_stable"),
        "{types:?}"
    );
    assert_eq!(
        extraction.criteria[0].reference,
        Some(ReferenceSource::Metadata {
            key: "expected_json".into()
        })
    );

    let safety = by_id["safety-refusal"];
    assert!(matches!(safety.criteria[0].scale, Some(Scale::Labels(_))));
    assert!(safety.checks.iter().all(|c| c.severity == Severity::Hard));
    let tools = by_id["tool-calling"];
    let types: Vec<&str> = tools.checks.iter().map(|c| c.kind.type_name()).collect();
    for t in [
        "tool_called",
        "tool_not_called",
        "tool_name",
        "tool_arguments_valid",
        "tool_argument",
    ] {
        assert!(types.contains(&t), "{t} not in {types:?}");
    }
    assert_eq!(tools.criteria[0].mode, Mode::Pairwise);

    let panel = safety.judging.as_ref().unwrap();
    assert_eq!(
        (panel.judges.len(), panel.aggregate),
        (2, Aggregate::Majority)
    );
}

#[test]
fn the_committed_lock_file_matches_the_example_rubrics() {
    let rubrics = load_dir(Path::new("rubrics")).unwrap();
    let lock = Lock::read(Path::new("rubrics/canarist.lock"))
        .unwrap()
        .expect("lock file");
    for line in compare(&lock, &rubrics) {
        assert_eq!(line.status, LockStatus::Unchanged, "{line}");
    }
}

// ---------- content hash ----------

const BASE: &str = r#"id: h
version: 1.0.0
description: first words
judge: { base_url: "http://127.0.0.1:9/v1", api_key_env: K, model: m1, seed: 1 }
checks:
  - { type: regex, pattern: "^ok", weight: 2 }
criteria:
  - id: c
    mode: pointwise
    question: Is it good?
    scale: { min: 1, max: 3, anchors: { 1: bad, 3: good } }
"#;

const REORDERED: &str = r#"# comments do not count
version: 1.0.0   # nor does this one
criteria:
  - scale:
      anchors:
        3: good
        1: bad
      max: 3
      min: 1
    question: Is it good?
    mode: pointwise
    id: c
checks:
  - weight: 2
    pattern: "^ok"
    type: regex
judge:
  seed: 1
  model: m1
  api_key_env: K
  base_url: "http://127.0.0.1:9/v1"
id: h
description: other words, not part of the hash
"#;

#[test]
fn hash_ignores_key_order_comments_and_description_and_follows_the_prompt() {
    let base = rubric_from(BASE).hash;
    assert!(
        base.0.starts_with("sha256:") && base.0.len() == 71,
        "{base}"
    );
    assert_eq!(rubric_from(REORDERED).hash, base);
    // Operational settings do not affect a verdict.
    let ops = BASE
        .replace("seed: 1 }", "seed: 1, requests_per_minute: 5 }")
        .replace("127.0.0.1:9", "localhost:8");
    assert_eq!(rubric_from(&ops).hash, base);
    // Everything that affects a verdict does.
    for changed in [
        BASE.replace("Is it good?", "Is it correct?"),
        BASE.replace("3: good", "3: excellent"),
        BASE.replace("model: m1", "model: m2"),
        BASE.replace("seed: 1", "seed: 2"),
        BASE.replace("weight: 2", "weight: 3"),
        BASE.replace("\"^ok\"", "\"^OK\""),
    ] {
        assert_ne!(rubric_from(&changed).hash, base, "{changed}");
    }
}

// ---------- lock file ----------

fn check_in(dir: &Path, update: bool) -> (ExitCode, String) {
    let args = canarist::cli::rubric::CheckArgs {
        files: Vec::new(),
        dir: dir.to_path_buf(),
        lock: None,
        update,
    };
    canarist::cli::rubric::check(&args).unwrap()
}

#[test]
fn lock_fails_on_a_change_without_a_bump_and_passes_with_one() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("r.yaml");
    std::fs::write(&file, BASE).unwrap();

    let (code, out) = check_in(tmp.path(), false);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(out.contains("wrote"), "first run writes the lock: {out}");
    let (code, out) = check_in(tmp.path(), false);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(out.contains("h 1.0.0: unchanged"), "{out}");

    // Reformatting is no change.
    std::fs::write(&file, REORDERED).unwrap();
    assert_eq!(check_in(tmp.path(), false).0, ExitCode::SUCCESS);

    // A prompt change without a bump fails, and --update refuses to paper over it.
    std::fs::write(&file, BASE.replace("Is it good?", "Is it correct?")).unwrap();
    for update in [false, true] {
        let (code, out) = check_in(tmp.path(), update);
        assert_eq!(code, ExitCode::FAILURE, "{out}");
        assert!(
            out.contains("h 1.0.0: content changed without a version bump"),
            "{out}"
        );
    }

    // With a bump it passes; the lock is stale until --update.
    let bumped = BASE
        .replace("Is it good?", "Is it correct?")
        .replace("1.0.0", "1.1.0");
    std::fs::write(&file, &bumped).unwrap();
    let (code, out) = check_in(tmp.path(), false);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(
        out.contains("version 1.0.0 → 1.1.0") && out.contains("out of date"),
        "{out}"
    );
    assert_eq!(check_in(tmp.path(), true).0, ExitCode::SUCCESS);
    let lock = Lock::read(&tmp.path().join("canarist.lock"))
        .unwrap()
        .unwrap();
    assert_eq!(lock.rubrics["h"].version.to_string(), "1.1.0");
    assert!(check_in(tmp.path(), false).1.contains("h 1.1.0: unchanged"));

    // Going back to a lower version fails.
    std::fs::write(&file, BASE).unwrap();
    let (code, out) = check_in(tmp.path(), false);
    assert_eq!(code, ExitCode::FAILURE);
    assert!(
        out.contains("version went back from 1.1.0 to 1.0.0"),
        "{out}"
    );
}

#[test]
fn check_command_reports_invalid_files_with_a_failing_exit() {
    let (code, out) = check_in(Path::new("fixtures/rubrics/broken"), false);
    assert_eq!(code, ExitCode::FAILURE);
    assert!(
        out.contains("fixtures/rubrics/broken/bad-regex.yaml:5: checks[0].pattern"),
        "{out}"
    );
    assert!(!Path::new("fixtures/rubrics/broken/canarist.lock").exists());
}
