//! The judge against a real model server: llama.cpp serving SmolLM2-135M-Instruct
//! (`/work/shared/realllm`), started by `scripts/e2e-realllm.sh`, which passes its URL in
//! `CANARIST_REALLLM_URL`. Ignored by default (it needs the server and takes tens of seconds);
//! without the variable it passes with a message.
//!
//! What it asserts: the real path works — canarist's prompts reach a real server, the strict
//! JSON-schema `response_format` comes back as JSON that parses into judgments (a score within
//! the scale, a label among the labels, a winner for each pairwise order), each stamped with the
//! rubric's id, version and content hash, the judge model and the request's trace id. The tiny
//! model's verdicts are not asserted: such a model is no judge of quality.

use std::collections::BTreeSet;
use std::path::Path;

use canarist::capture::{Pair, Role};
use canarist::judge::{Judge, JudgeStats};
use canarist::rubric::{Rubric, load_file};
use canarist::store::NewJudgment;

use super::*;

const JUDGE_MODEL: &str = "smollm2-judge";

/// Short few-shot examples keep the tiny model's reasoning short (unbounded, it tends to repeat
/// itself until `max_tokens` cuts the JSON off, which canarist rightly records as `not_json`).
const RUBRIC: &str = r#"id: realllm-support
version: 0.2.1
applies_to:
  sample_rate: 1.0
judge_ref: judges/realllm.yaml
criteria:
  - id: helpfulness
    mode: pointwise
    question: How well does the answer resolve the customer's problem?
    scale:
      min: 1
      max: 5
      anchors:
        1: Does not help at all.
        5: Fully resolves the problem.
    examples:
      - input: "[user] Where is my parcel?"
        answer: It is at the depot and arrives on Friday.
        reasoning: Gives the status and a date.
        score: 5
  - id: tone
    mode: pointwise
    question: What is the tone of the answer towards the customer?
    labels:
      - name: polite
        score: 1
        description: Courteous and respectful.
      - name: neutral
        score: 0.5
        description: Neither courteous nor rude.
      - name: rude
        score: 0
        description: Dismissive or insulting.
    examples:
      - input: "[user] Where is my parcel?"
        answer: Not my problem.
        reasoning: Dismissive.
        label: rude
  - id: preference
    mode: pairwise
    question: Which answer would the customer rather receive?
    examples:
      - input: "[user] Where is my parcel?"
        answer_a: It arrives on Friday.
        answer_b: No idea.
        reasoning: A gives a date.
        verdict: A
"#;

/// The server's OpenAI base URL (`…/v1`) from `CANARIST_REALLLM_URL`, with or without `/v1`.
fn realllm_url() -> Option<String> {
    let url = std::env::var("CANARIST_REALLLM_URL").ok()?;
    let url = url.trim().trim_end_matches('/');
    if url.is_empty() {
        return None;
    }
    Some(if url.ends_with("/v1") {
        url.to_owned()
    } else {
        format!("{url}/v1")
    })
}

/// A small rubric whose judge is the real server: an ordinal pointwise criterion, a labelled
/// pointwise criterion and a pairwise criterion.
fn realllm_rubric(dir: &Path, base_url: &str) -> Rubric {
    std::fs::create_dir_all(dir.join("judges")).unwrap();
    std::fs::write(
        dir.join("judges/realllm.yaml"),
        format!(
            "base_url: {base_url}\napi_key_env: CANARIST_REALLLM_API_KEY\nmodel: {JUDGE_MODEL}\n\
             temperature: 0\nseed: 7\nmax_tokens: 200\nrequests_per_minute: 600\n"
        ),
    )
    .unwrap();
    let path = dir.join("realllm.yaml");
    std::fs::write(&path, RUBRIC).unwrap();
    load_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Two support conversations, each with a helpful and an unhelpful answer.
fn real_pairs() -> Vec<Pair> {
    vec![
        pair(
            "support",
            "cand-model-x",
            "My order #1234 has not arrived; it was due yesterday. Can you check?",
            "I checked order #1234: it was delayed at the depot and will arrive tomorrow. \
             I have emailed you the tracking link.",
            "Orders arrive when they arrive.",
        ),
        pair(
            "support",
            "cand-model-x",
            "How do I reset my password?",
            "Go to Settings, then Security, and choose Reset password. We will email you a link \
             that is valid for one hour.",
            "Click 'Forgot password' on the sign-in page and follow the link in the email.",
        ),
    ]
}

fn assert_stamped(j: &NewJudgment, rubric: &Rubric, pair: &Pair) {
    assert_eq!(
        (
            j.rubric_id.as_str(),
            j.rubric_version.as_str(),
            j.rubric_hash.as_str()
        ),
        ("realllm-support", "0.2.1", rubric.hash.0.as_str()),
        "{j:?}"
    );
    assert_eq!(j.judge_model, JUDGE_MODEL, "{j:?}");
    assert_eq!(j.pair_id, pair.id);
    assert_eq!(j.trace_id, Some(pair.request_id.to_string()));
    assert!(
        j.abstain_reason.is_none(),
        "the constrained JSON output parsed: {j:?}"
    );
}

#[tokio::test]
#[ignore = "needs a real model server: scripts/e2e-realllm.sh"]
async fn judge_realllm_parses_schema_output_into_stamped_judgments() {
    let Some(url) = realllm_url() else {
        eprintln!(
            "judge_realllm: CANARIST_REALLLM_URL is not set; skipped (run scripts/e2e-realllm.sh)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rubric = realllm_rubric(dir.path(), &url);
    assert!(rubric.hash.0.len() >= 16, "{:?}", rubric.hash);
    let stats = JudgeStats::new();
    let mut opts = options(1);
    opts.timeout = Duration::from_secs(120);
    let judge = Judge::new(vec![rubric.clone()], opts, stats.clone()).unwrap();

    let pairs = real_pairs();
    for p in &pairs {
        let out = judge
            .judge_pair(p)
            .await
            .unwrap_or_else(|e| panic!("judge unavailable at {url}: {e}"));
        for j in &out.judgments {
            eprintln!(
                "judge_realllm: {} {} {:?} score={:?} label={:?} winner={:?} reasoning={:?}",
                j.criterion, j.order, j.side, j.score, j.label, j.winner, j.reasoning
            );
        }
        // helpfulness and tone on both sides, preference in both orders plus the combined row.
        assert_eq!(out.judgments.len(), 2 + 2 + 3, "{:?}", out.judgments);
        for j in &out.judgments {
            assert_stamped(j, &rubric, p);
        }
        for (criterion, mode) in [("helpfulness", "pointwise"), ("tone", "pointwise")] {
            let rows: Vec<&NewJudgment> = out
                .judgments
                .iter()
                .filter(|j| j.criterion == criterion)
                .collect();
            let sides: BTreeSet<&str> = rows
                .iter()
                .filter_map(|j| j.side.map(Role::as_str))
                .collect();
            assert_eq!(sides, BTreeSet::from(["candidate", "stable"]), "{rows:?}");
            for j in rows {
                assert_eq!((j.mode.as_str(), j.order.as_str()), (mode, "single"));
                let score = j.score.unwrap_or_else(|| panic!("a score: {j:?}"));
                assert!(
                    j.reasoning.as_deref().is_some_and(|r| !r.trim().is_empty()),
                    "{j:?}"
                );
                if criterion == "helpfulness" {
                    // 1..=5 normalized to 0..=1: one of 0, 0.25, 0.5, 0.75, 1.
                    let step = score * 4.0;
                    assert!(
                        (0.0..=4.0).contains(&step) && (step - step.round()).abs() < 1e-9,
                        "{j:?}"
                    );
                    assert!(j.label.is_none());
                } else {
                    let expected = match j.label.as_deref() {
                        Some("polite") => 1.0,
                        Some("neutral") => 0.5,
                        Some("rude") => 0.0,
                        other => panic!("a label of the scale, got {other:?}"),
                    };
                    assert_eq!(score, expected, "{j:?}");
                }
            }
        }
        let pref: Vec<&NewJudgment> = out
            .judgments
            .iter()
            .filter(|j| j.criterion == "preference")
            .collect();
        let orders: BTreeSet<&str> = pref.iter().map(|j| j.order.as_str()).collect();
        assert_eq!(orders, BTreeSet::from(["ab", "ba", "combined"]));
        for j in pref {
            assert_eq!((j.mode.as_str(), j.side), ("pairwise", None), "{j:?}");
            assert!(j.winner.is_some(), "a verdict: {j:?}");
            if j.order == "combined" {
                let s = j.score.unwrap_or_else(|| panic!("a combined score: {j:?}"));
                assert!([0.0, 0.5, 1.0].contains(&s), "{j:?}");
            } else {
                assert!(j.reasoning.is_some(), "{j:?}");
            }
        }
    }
    // 6 questions per pair, each answered by the server (no cache hit: the pairs differ); a
    // repair retry would add calls, so this is a lower bound.
    assert!(JudgeStats::get(&stats.calls) >= 6 * pairs.len() as u64);
    assert_eq!(JudgeStats::get(&stats.cache_hits), 0);
    assert!(
        JudgeStats::get(&stats.tokens) > 0,
        "the server reported its usage"
    );
    eprintln!(
        "judge_realllm: {} calls, {} repairs, {} tokens",
        JudgeStats::get(&stats.calls),
        JudgeStats::get(&stats.repairs),
        JudgeStats::get(&stats.tokens)
    );
    assert!(stats.abstentions().is_empty(), "{:?}", stats.abstentions());
}
