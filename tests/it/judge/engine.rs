//! The judge engine against the mock's simulated judge: repair and abstention, 429 handling,
//! permanent errors, the rate limit (paused time), the cache.
use std::sync::Arc;
use std::time::Duration;

use canarist::capture::{Pair, Role};
use canarist::judge::{Judge, JudgeStats, PairOutput};
use canarist::mock::{ErrorStatus, MockConfig, MockServer, Profile};
use canarist::store::NewJudgment;

use super::*;

// ---------- engine against the simulated judge ----------

async fn judge_with(
    mock: &MockServer,
    model: &str,
    rpm: u32,
    in_flight: usize,
) -> (Judge, Arc<JudgeStats>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let r = rubric(dir.path(), &mock.base_url(), model, rpm);
    let stats = JudgeStats::new();
    (
        Judge::new(vec![r], options(in_flight), stats.clone()).unwrap(),
        stats,
        dir,
    )
}

#[tokio::test]
async fn garbage_answers_get_one_repair_then_an_abstention_without_score() {
    let mock = MockServer::start(MockConfig::builtin().unwrap())
        .await
        .unwrap();
    let (judge, stats, _dir) = judge_with(&mock, "mock-judge-garbage", 60_000, 4).await;
    let e = &entries(1)[0];
    let out = judge
        .judge_pair(&pair("d", "c", &e.prompt, &e.good, &e.degraded))
        .await
        .unwrap();
    // 4 questions (2 sides + 2 orders), each asked twice: the answer and the repair.
    assert_eq!(mock.request_count("mock-judge-garbage"), 8);
    assert_eq!(JudgeStats::get(&stats.repairs), 4);
    let repair = mock
        .requests()
        .into_iter()
        .find(|r| r.body["messages"].as_array().unwrap().len() == 4)
        .unwrap();
    let msgs = repair.body["messages"].as_array().unwrap();
    assert_eq!(msgs[2]["role"], "assistant");
    assert!(
        msgs[3]["content"]
            .as_str()
            .unwrap()
            .contains("could not be used"),
        "{msgs:?}"
    );
    let abstained: Vec<&NewJudgment> = out
        .judgments
        .iter()
        .filter(|j| j.abstain_reason.is_some())
        .collect();
    assert_eq!(
        abstained.len(),
        5,
        "both sides, both orders, combined: {:?}",
        out.judgments
    );
    for j in &out.judgments {
        assert_eq!(j.abstain_reason.as_deref(), Some("not_json"), "{j:?}");
        assert_eq!((j.score, j.winner), (None, None), "never a made-up score");
    }
    assert_eq!(
        stats
            .abstentions()
            .get(&("not_json".into(), "candidate".into())),
        Some(&1)
    );
    assert_eq!(
        stats.abstentions().get(&("not_json".into(), "pair".into())),
        Some(&1)
    );
    assert!(judge.cache().is_empty(), "abstentions are never cached");
    // Checks still ran.
    assert_eq!(out.checks.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_429_halves_concurrency_and_retry_after_is_honoured() {
    let mock = MockServer::start(MockConfig::builtin().unwrap())
        .await
        .unwrap();
    let (judge, stats, _dir) = judge_with(&mock, "mock-judge-429", 60_000, 4).await;
    let e = &entries(1)[0];
    let start = tokio::time::Instant::now();
    let out = judge
        .judge_pair(&pair("d", "c", &e.prompt, &e.good, &e.degraded))
        .await
        .unwrap();
    // The first two requests are 429 with retry-after: 2; every question is answered in the end.
    assert_eq!(JudgeStats::get(&stats.rate_limited), 2);
    assert_eq!(mock.request_count("mock-judge-429"), 4 + 2);
    assert!(
        out.judgments.iter().all(|j| j.abstain_reason.is_none()),
        "{:?}",
        out.judgments
    );
    let ep = judge
        .endpoint(&judge.rubrics()[0].judging.as_ref().unwrap().judges[0])
        .unwrap();
    assert_eq!(
        ep.limits.concurrency().limit(),
        1,
        "4 → 2 → 1 after two 429s"
    );
    // Virtual time: the retries waited at least the 2 s the judge asked for.
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(JudgeStats::get(&stats.waits_backoff) >= 1);
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let config = MockConfig::builtin().unwrap().with_model(
        "judge-400",
        Profile {
            judge: true,
            error_rate: 1.0,
            error_status: ErrorStatus::BadRequest400,
            ..Profile::default()
        },
    );
    let mock = MockServer::start(config).await.unwrap();
    let (judge, stats, _dir) = judge_with(&mock, "judge-400", 60_000, 4).await;
    let e = &entries(1)[0];
    let out = judge
        .judge_pair(&pair("d", "c", &e.prompt, &e.good, &e.degraded))
        .await
        .unwrap();
    assert_eq!(
        mock.request_count("judge-400"),
        4,
        "one call per question, no retry"
    );
    assert_eq!(JudgeStats::get(&stats.permanent_errors), 4);
    for j in &out.judgments {
        assert_eq!(
            j.abstain_reason.as_deref(),
            Some("judge_rejected_400"),
            "{j:?}"
        );
        assert!(j.score.is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn the_judge_runs_at_its_requests_per_minute_and_not_faster() {
    let mock = MockServer::start(MockConfig::builtin().unwrap())
        .await
        .unwrap();
    // 30 requests per minute: one every 2 s.
    let (judge, stats, _dir) = judge_with(&mock, "mock-judge", 30, 8).await;
    let start = tokio::time::Instant::now();
    let pairs: Vec<Pair> = entries(5)
        .iter()
        .map(|e| pair("d", "c", &e.prompt, &e.good, &e.degraded))
        .collect();
    let outs = futures::future::join_all(pairs.iter().map(|p| judge.judge_pair(p))).await;
    assert!(outs.iter().all(Result::is_ok));
    let calls = JudgeStats::get(&stats.calls);
    assert_eq!(calls, 20);
    assert_eq!(mock.request_count("mock-judge"), 20);
    // Burst of one: call k starts no earlier than 2 s × k, so 20 calls need at least 38 s of
    // virtual time — and with the limiter the only thing waiting, not much more.
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_secs(38), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(41),
        "throughput equals the limit: {elapsed:?}"
    );
    assert!(JudgeStats::get(&stats.waits_rate) >= 19);
}

#[tokio::test]
async fn an_identical_pair_is_answered_from_the_cache() {
    let mock = MockServer::start(MockConfig::builtin().unwrap())
        .await
        .unwrap();
    let (judge, stats, _dir) = judge_with(&mock, "mock-judge", 60_000, 4).await;
    let e = &entries(1)[0];
    let first = judge
        .judge_pair(&pair("d", "c", &e.prompt, &e.good, &e.degraded))
        .await
        .unwrap();
    assert_eq!(mock.request_count("mock-judge"), 4);
    let second = judge
        .judge_pair(&pair("d", "c", &e.prompt, &e.good, &e.degraded))
        .await
        .unwrap();
    assert_eq!(mock.request_count("mock-judge"), 4, "no new judge call");
    assert_eq!(JudgeStats::get(&stats.cache_hits), 4);
    let strip = |o: &PairOutput| {
        o.judgments
            .iter()
            .map(|j| {
                (
                    j.criterion.clone(),
                    j.order.clone(),
                    j.side,
                    j.score,
                    j.winner,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&first), strip(&second));
    assert_eq!(scores(&first, "helpfulness", Role::Stable), [Some(1.0)]);
    assert_eq!(scores(&first, "helpfulness", Role::Candidate), [Some(0.0)]);
}
