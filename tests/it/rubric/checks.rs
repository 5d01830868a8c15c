//! Deterministic checks on both sides of a pair, and the apply/sample decision.
use std::path::Path;

use canarist::capture::{ErrorClass, Role, Usage};
use canarist::rubric::*;
use serde_json::json;

use super::*;

// ---------- checks ----------

#[test]
fn json_checks() {
    let o = run_one(
        "type: json_valid\nseverity: hard",
        &texts(r#"{"a": 1}"#, r#"{"a": "#),
    );
    assert!(o.stable.passed() && fail(&o.candidate) && o.is_guardrail());

    let schema = "type: json_schema\nschema:\n  type: object\n  required: [total]\n  properties:\n    total: { type: number }";
    let o = run_one(schema, &texts(r#"{"total": 3}"#, r#"{"total": "3"}"#));
    assert!(o.stable.passed() && fail(&o.candidate), "{o:?}");
    assert!(!o.is_guardrail(), "soft checks are no guardrail");
    let o = run_one(schema, &texts("not json", r#"{"total": 3.5}"#));
    assert!(fail(&o.stable) && o.candidate.passed());

    let eq = "type: equals_stable\npath: $.total";
    let o = run_one(eq, &texts(r#"{"total": 5}"#, r#"{"total": 5, "x": 1}"#));
    assert!(o.stable.passed() && o.candidate.passed());
    let o = run_one(eq, &texts(r#"{"total": 5}"#, r#"{"total": 6}"#));
    assert!(fail(&o.candidate), "{o:?}");
    let o = run_one(eq, &texts(r#"{"total": 5}"#, r#"{"sum": 5}"#));
    assert!(fail(&o.candidate));
    let o = run_one(eq, &texts("no json", r#"{"total": 5}"#));
    assert!(
        matches!(o.stable, SideResult::Skipped { .. })
            && matches!(o.candidate, SideResult::Skipped { .. })
    );
}

#[test]
fn text_checks() {
    let o = run_one(
        r"type: regex
pattern: '^\d+$'",
        &texts("123", "abc"),
    );
    assert!(o.stable.passed() && fail(&o.candidate));
    let o = run_one(
        r"type: regex
pattern: '^\d+$'
negate: true",
        &texts("123", "abc"),
    );
    assert!(fail(&o.stable) && o.candidate.passed());

    let c = "type: contains\nvalues: [refund, Order]\ncase_sensitive: false";
    let o = run_one(c, &texts("Your REFUND for order 1", "Your refund"));
    assert!(o.stable.passed() && fail(&o.candidate));
    let n = "type: not_contains\nvalue: password";
    let o = run_one(n, &texts("all good", "your password is"));
    assert!(o.stable.passed() && fail(&o.candidate));

    let l = "type: length\nmin: 5\nmax: 10";
    let o = run_one(l, &texts("hello!", "hi"));
    assert!(o.stable.passed() && fail(&o.candidate));
    assert!(fail(
        &run_one(l, &texts("hello!", "hello world!")).candidate
    ));
    // Tokens: reported usage wins over the chars/4 estimate.
    let mut p = texts("twelve chars", "twelve chars");
    p.candidate.usage = Some(Usage {
        prompt_tokens: 1,
        completion_tokens: 50,
        total_tokens: 51,
        ..Usage::default()
    });
    let o = run_one("type: length\nunit: tokens\nmax: 20", &p);
    assert!(o.stable.passed() && fail(&o.candidate), "{o:?}");

    let r = "type: refusal";
    let o = run_one(
        r,
        &texts("Sure, here is how.", "I'm sorry, but I can't do that."),
    );
    assert!(o.stable.passed() && fail(&o.candidate));
    let o = run_one(
        "type: refusal\nexpect: refusal\nphrases: [\"I won't\"]",
        &texts("I WON'T do that", "Sure!"),
    );
    assert!(o.stable.passed() && fail(&o.candidate));
}

#[test]
fn call_checks_and_skips() {
    let mut p = texts("a", "b");
    p.candidate.finish_reason = Some("length".into());
    p.candidate.latency_ms = 9000.0;
    p.candidate.cost_usd = Some(0.5);
    let o = run_one("type: finish_reason\nallowed: [stop]\nseverity: hard", &p);
    assert!(o.stable.passed() && fail(&o.candidate) && o.is_guardrail());
    let o = run_one("type: latency_ms\nmax: 1000", &p);
    assert!(o.stable.passed() && fail(&o.candidate));
    let o = run_one("type: cost\nmax_usd: 0.01", &p);
    assert!(o.stable.passed() && fail(&o.candidate));
    p.stable.cost_usd = None;
    assert!(matches!(
        run_one("type: cost\nmax_usd: 0.01", &p).stable,
        SideResult::Skipped { .. }
    ));

    // A failed call is skipped (the gate counts errors), so it is no guardrail signal.
    let mut p = texts("{}", "");
    p.candidate.error = Some(ErrorClass::Timeout);
    p.candidate.response_text = None;
    let o = run_one("type: json_valid\nseverity: hard", &p);
    assert!(matches!(o.candidate, SideResult::Skipped { .. }) && !o.is_guardrail());
}

#[test]
fn check_report_weights_and_guardrails() {
    let r = rubric_from(
        "id: w\nversion: 1.0.0\nchecks:\n  - { type: json_valid, weight: 3, severity: hard }\n  - { type: contains, value: x, weight: 1 }\n",
    );
    let report = run_checks(&r, &texts(r#"{"x": 1}"#, "x"));
    assert_eq!(report.score(Role::Stable), Some(1.0));
    assert_eq!(report.score(Role::Candidate), Some(0.25));
    let g: Vec<&str> = report.guardrails().map(|o| o.check_id.as_str()).collect();
    assert_eq!(g, ["json_valid_0"]);
}

// ---------- selection ----------

#[test]
fn applies_to_and_sampling() {
    let rubrics = load_dir(Path::new("rubrics")).unwrap();
    let get = |id: &str| rubrics.iter().find(|r| r.id == id).unwrap().clone();
    let support = get("support-chat");
    let p = texts("a", "b");
    assert!(select(&support, &p).applies);
    let mut other = p.clone();
    other.deployment = "billing".into();
    assert_eq!(
        select(&support, &other),
        Selection {
            applies: false,
            judge_sampled: false
        }
    );

    let safety = get("safety-refusal");
    assert!(!select(&safety, &p).applies, "no metadata suite");
    let harmful = chat_pair("a", "b", json!({"suite": "harmful"}));
    assert_eq!(
        select(&safety, &harmful),
        Selection {
            applies: true,
            judge_sampled: true
        }
    );

    let mut never = support.clone();
    never.applies_to.sample_rate = 0.0;
    assert_eq!(
        select(&never, &p),
        Selection {
            applies: true,
            judge_sampled: false
        }
    );
    // Deterministic: the same pair is always decided the same way.
    let decisions: Vec<bool> = (0..50)
        .map(|_| select(&support, &p).judge_sampled)
        .collect();
    assert!(decisions.iter().all(|d| *d == decisions[0]));
}
