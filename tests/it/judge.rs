//! The judge worker against the mock upstream's simulated judge (`mock-judge`, real sockets):
//! end to end through the store (SQLite always, Postgres when `DATABASE_URL` is set), repair and
//! abstention, 429 handling, permanent errors, the rate limit (paused time: virtual clock, no
//! wall-clock assertions), the cache, the bounded queue, and `canarist replay`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use canarist::capture::{CaptureEvent, Endpoint, Observation, Pair, Purpose, Role, Sink};
use canarist::judge::{Judge, JudgeOptions, JudgeStats, PairOutput, Worker, WorkerConfig};
use canarist::mock::{DatasetEntry, ErrorStatus, MockConfig, MockServer, Profile};
use canarist::rubric::{Rubric, load_file};
use canarist::store::{NewJudgment, StoreSink, SummaryScope};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::store::{TestDb, backends};

// ---------- helpers ----------

/// Writes a rubric (pointwise helpfulness, pairwise preference, a finish_reason check) whose
/// judge is `model` at `base_url`, and returns it loaded.
fn rubric(dir: &Path, base_url: &str, model: &str, rpm: u32) -> Rubric {
    std::fs::create_dir_all(dir.join("judges")).unwrap();
    std::fs::write(
        dir.join("judges/j.yaml"),
        format!(
            "base_url: {base_url}\napi_key_env: CANARIST_TEST_JUDGE_KEY\nmodel: {model}\n\
             temperature: 0\nseed: 1\nmax_tokens: 200\nrequests_per_minute: {rpm}\n"
        ),
    )
    .unwrap();
    let path = dir.join("support.yaml");
    std::fs::write(
        &path,
        "id: test-support\nversion: 1.2.0\napplies_to:\n  sample_rate: 1.0\njudge_ref: judges/j.yaml\n\
         checks:\n  - id: finished\n    type: finish_reason\n    allowed: [stop]\n    severity: hard\n\
         criteria:\n  - id: helpfulness\n    mode: pointwise\n    question: How well does the answer resolve the customer's problem?\n\
         \x20   scale:\n      min: 1\n      max: 5\n      anchors:\n        1: Does not help.\n        5: Fully resolves it.\n\
         \x20 - id: preference\n    mode: pairwise\n    question: Which answer would the customer rather receive?\n",
    )
    .unwrap();
    load_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn options(max_in_flight: usize) -> JudgeOptions {
    JudgeOptions {
        max_in_flight,
        grow_every: 1000,
        max_retries: 3,
        timeout: Duration::from_secs(30),
        cache_capacity: 1000,
        prices: BTreeMap::new(),
    }
}

fn entries(n: usize) -> Vec<DatasetEntry> {
    canarist::mock::Dataset::builtin().unwrap().entries()[..n].to_vec()
}

fn side(deployment: &str, role: Role, variant: &str, prompt: &str, text: &str) -> Observation {
    Observation {
        id: Uuid::new_v4(),
        request_id: Uuid::nil(),
        pair_id: None,
        at: chrono::Utc::now(),
        deployment: deployment.into(),
        variant: variant.into(),
        role,
        purpose: Purpose::Served,
        stage: "shadow".into(),
        config_version: 1,
        endpoint: Endpoint::ChatCompletions,
        upstream_model: variant.into(),
        stream: false,
        bucket: Some(1),
        unit_key: None,
        sticky: false,
        cohort: BTreeMap::new(),
        status: Some(200),
        error: None,
        error_detail: None,
        ttft_ms: Some(10.0),
        latency_ms: 20.0,
        usage: None,
        cost_usd: None,
        finish_reason: Some("stop".into()),
        response_text: Some(text.into()),
        request_body: Some(json!({"model": deployment, "messages": [{"role": "user", "content": prompt}]})),
        response_body: None,
    }
}

fn pair(deployment: &str, candidate: &str, prompt: &str, stable_text: &str, cand_text: &str) -> Pair {
    let (id, request_id) = (Uuid::new_v4(), Uuid::new_v4());
    let mut s = side(deployment, Role::Stable, "stable", prompt, stable_text);
    let mut c = side(deployment, Role::Candidate, candidate, prompt, cand_text);
    for o in [&mut s, &mut c] {
        o.pair_id = Some(id);
        o.request_id = request_id;
    }
    Pair {
        id,
        request_id,
        deployment: deployment.into(),
        stage: "shadow".into(),
        config_version: 1,
        cohort: BTreeMap::new(),
        stable: s,
        candidate: c,
    }
}

/// What `model` on the mock answers to `entry` (unit key = entry id, so it is reproducible).
async fn answer(http: &reqwest::Client, mock: &MockServer, model: &str, entry: &DatasetEntry) -> String {
    let body: Value = http
        .post(format!("{}/chat/completions", mock.base_url()))
        .header("x-canarist-unit", &entry.id)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": entry.prompt}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["choices"][0]["message"]["content"].as_str().unwrap().to_owned()
}

type Row = (String, String, String, String, String, String, Option<String>, Option<f64>, Option<String>, Option<String>, Option<String>);

async fn judgment_rows(db: &TestDb) -> Vec<Row> {
    let sql = "SELECT rubric_id, rubric_version, rubric_hash, name, judge_model, judge_order, side, \
               score, winner, abstain_reason, trace_id FROM judgments";
    if db.pg.is_some() {
        let p = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&p).await.unwrap()
    } else {
        let p = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&p).await.unwrap()
    }
}

fn scores(out: &PairOutput, criterion: &str, role: Role) -> Vec<Option<f64>> {
    out.judgments
        .iter()
        .filter(|j| j.criterion == criterion && j.side == Some(role))
        .map(|j| j.score)
        .collect()
}

// ---------- end to end through the store ----------

#[tokio::test]
async fn worker_judges_stored_pairs_and_stamps_every_judgment() {
    let mock = MockServer::start(MockConfig::builtin().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rubric = rubric(dir.path(), &mock.base_url(), "mock-judge", 60_000);
    let http = reqwest::Client::new();
    let mut events = Vec::new();
    for e in entries(16) {
        let stable = answer(&http, &mock, "mock-stable", &e).await;
        for (dep, model) in [("good", "mock-candidate-good"), ("bad", "mock-candidate-bad")] {
            let cand = answer(&http, &mock, model, &e).await;
            events.push(CaptureEvent::Pair(Box::new(pair(dep, model, &e.prompt, &stable, &cand))));
        }
    }
    for db in backends().await {
        let store = db.store().await;
        StoreSink::new(store.clone()).write_batch(&events).await.unwrap();
        let stats = JudgeStats::new();
        let judge = Arc::new(Judge::new(vec![rubric.clone()], options(8), stats.clone()).unwrap());
        let worker = Worker::new(store.clone(), judge, WorkerConfig { batch: 8, ..WorkerConfig::default() });
        let mut done = 0;
        while let Ok(p) = worker.run_once().await {
            if p.claimed == 0 {
                break;
            }
            assert_eq!(p.failed, 0, "{}", db.label);
            done += p.done;
        }
        assert_eq!(done, 32, "{}", db.label);
        let counts: BTreeMap<String, u64> = store.job_counts().await.unwrap().into_iter().collect();
        assert_eq!(counts.get("done"), Some(&32), "{}: {counts:?}", db.label);

        let rows = judgment_rows(&db).await;
        // Per pair: helpfulness on both sides, preference ab + ba + combined.
        assert_eq!(rows.len(), 32 * 5, "{}", db.label);
        for r in &rows {
            assert_eq!((r.0.as_str(), r.1.as_str(), r.2.as_str()), ("test-support", "1.2.0", rubric.hash.0.as_str()));
            assert_eq!(r.4, "mock-judge");
            assert!(["single", "ab", "ba", "combined"].contains(&r.5.as_str()), "{r:?}");
            assert_eq!(r.5 == "single", r.6.is_some(), "pointwise rows carry a side: {r:?}");
            assert!(r.9.is_none(), "no abstention: {r:?}");
            assert!(r.10.is_some(), "trace id set");
        }
        // The good candidate scores like stable; the bad one lower.
        let summary = |dep: &'static str| {
            let store = store.clone();
            async move {
                let s = store.score_summaries(SummaryScope::new(dep, "shadow")).await.unwrap();
                let get = |c: &str| s.iter().find(|x| x.criterion == c && x.cohort.is_none()).unwrap().clone();
                (get("helpfulness"), get("preference"))
            }
        };
        let (good, good_pref) = summary("good").await;
        let (bad, bad_pref) = summary("bad").await;
        let mean = |m: &canarist::store::Moments| m.mean().unwrap();
        assert!((mean(&good.candidate_scores) - mean(&good.stable)).abs() < 0.15, "{good:?}");
        assert!(mean(&bad.candidate_scores) < mean(&bad.stable) - 0.15, "{bad:?}");
        assert!(bad_pref.losses > bad_pref.wins && bad_pref.losses >= 3, "{bad_pref:?}");
        assert!(good_pref.ties >= good_pref.losses, "{good_pref:?}");
        let checks = store.check_summaries(SummaryScope::new("good", "shadow")).await.unwrap();
        assert!(checks.iter().any(|c| c.check == "finished" && c.stable_passed == 16));
        assert_eq!(JudgeStats::get(&stats.pairs_judged), 32);
        db.cleanup().await;
    }
}

#[tokio::test]
async fn full_queue_drops_the_newest_and_counts_and_failures_go_back_to_the_queue() {
    let mut config = MockConfig::builtin().unwrap();
    config = config.with_model("judge-503", Profile { judge: true, error_rate: 1.0, error_status: ErrorStatus::Unavailable503, ..Profile::default() });
    let mock = MockServer::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rubric = rubric(dir.path(), &mock.base_url(), "judge-503", 60_000);
    let e = &entries(1)[0];
    let events: Vec<CaptureEvent> = (0..5)
        .map(|_| CaptureEvent::Pair(Box::new(pair("d", "c", &e.prompt, &e.good, &e.good))))
        .collect();
    for db in backends().await {
        let store = db.store().await;
        StoreSink::new(store.clone()).write_batch(&events).await.unwrap();
        let stats = JudgeStats::new();
        let mut opts = options(4);
        opts.max_retries = 1;
        let judge = Arc::new(Judge::new(vec![rubric.clone()], opts, stats.clone()).unwrap());
        let config = WorkerConfig { batch: 1, max_backlog: Some(2), ..WorkerConfig::default() };
        let worker = Worker::new(store.clone(), judge, config);
        let poll = worker.run_once().await.unwrap();
        assert_eq!(poll.dropped, 3, "{}", db.label);
        assert_eq!(JudgeStats::get(&stats.queue_dropped), 3);
        // The judge answers 503: retried once per question, then the job goes back to the queue.
        assert_eq!((poll.claimed, poll.failed), (1, 1), "{}", db.label);
        let counts: BTreeMap<String, u64> = store.job_counts().await.unwrap().into_iter().collect();
        assert_eq!(counts.get("cancelled"), Some(&3), "{counts:?}");
        assert_eq!(counts.get("queued"), Some(&2), "the failed job is queued again: {counts:?}");
        assert_eq!(JudgeStats::get(&stats.queue_depth), 2);
        assert!(judgment_rows(&db).await.is_empty(), "nothing recorded for an unreachable judge");
        db.cleanup().await;
    }
}

// ---------- engine against the simulated judge ----------

async fn judge_with(mock: &MockServer, model: &str, rpm: u32, in_flight: usize) -> (Judge, Arc<JudgeStats>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let r = rubric(dir.path(), &mock.base_url(), model, rpm);
    let stats = JudgeStats::new();
    (Judge::new(vec![r], options(in_flight), stats.clone()).unwrap(), stats, dir)
}

#[tokio::test]
async fn garbage_answers_get_one_repair_then_an_abstention_without_score() {
    let mock = MockServer::start(MockConfig::builtin().unwrap()).await.unwrap();
    let (judge, stats, _dir) = judge_with(&mock, "mock-judge-garbage", 60_000, 4).await;
    let e = &entries(1)[0];
    let out = judge.judge_pair(&pair("d", "c", &e.prompt, &e.good, &e.degraded)).await.unwrap();
    // 4 questions (2 sides + 2 orders), each asked twice: the answer and the repair.
    assert_eq!(mock.request_count("mock-judge-garbage"), 8);
    assert_eq!(JudgeStats::get(&stats.repairs), 4);
    let repair = mock.requests().into_iter().find(|r| r.body["messages"].as_array().unwrap().len() == 4).unwrap();
    let msgs = repair.body["messages"].as_array().unwrap();
    assert_eq!(msgs[2]["role"], "assistant");
    assert!(msgs[3]["content"].as_str().unwrap().contains("could not be used"), "{msgs:?}");
    let abstained: Vec<&NewJudgment> = out.judgments.iter().filter(|j| j.abstain_reason.is_some()).collect();
    assert_eq!(abstained.len(), 5, "both sides, both orders, combined: {:?}", out.judgments);
    for j in &out.judgments {
        assert_eq!(j.abstain_reason.as_deref(), Some("not_json"), "{j:?}");
        assert_eq!((j.score, j.winner), (None, None), "never a made-up score");
    }
    assert_eq!(stats.abstentions().get(&("not_json".into(), "candidate".into())), Some(&1));
    assert_eq!(stats.abstentions().get(&("not_json".into(), "pair".into())), Some(&1));
    assert!(judge.cache().is_empty(), "abstentions are never cached");
    // Checks still ran.
    assert_eq!(out.checks.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_429_halves_concurrency_and_retry_after_is_honoured() {
    let mock = MockServer::start(MockConfig::builtin().unwrap()).await.unwrap();
    let (judge, stats, _dir) = judge_with(&mock, "mock-judge-429", 60_000, 4).await;
    let e = &entries(1)[0];
    let start = tokio::time::Instant::now();
    let out = judge.judge_pair(&pair("d", "c", &e.prompt, &e.good, &e.degraded)).await.unwrap();
    // The first two requests are 429 with retry-after: 2; every question is answered in the end.
    assert_eq!(JudgeStats::get(&stats.rate_limited), 2);
    assert_eq!(mock.request_count("mock-judge-429"), 4 + 2);
    assert!(out.judgments.iter().all(|j| j.abstain_reason.is_none()), "{:?}", out.judgments);
    let ep = judge.endpoint(&judge.rubrics()[0].judging.as_ref().unwrap().judges[0]).unwrap();
    assert_eq!(ep.limits.concurrency().limit(), 1, "4 → 2 → 1 after two 429s");
    // Virtual time: the retries waited at least the 2 s the judge asked for.
    assert!(start.elapsed() >= Duration::from_secs(2), "{:?}", start.elapsed());
    assert!(JudgeStats::get(&stats.waits_backoff) >= 1);
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let config = MockConfig::builtin().unwrap().with_model(
        "judge-400",
        Profile { judge: true, error_rate: 1.0, error_status: ErrorStatus::BadRequest400, ..Profile::default() },
    );
    let mock = MockServer::start(config).await.unwrap();
    let (judge, stats, _dir) = judge_with(&mock, "judge-400", 60_000, 4).await;
    let e = &entries(1)[0];
    let out = judge.judge_pair(&pair("d", "c", &e.prompt, &e.good, &e.degraded)).await.unwrap();
    assert_eq!(mock.request_count("judge-400"), 4, "one call per question, no retry");
    assert_eq!(JudgeStats::get(&stats.permanent_errors), 4);
    for j in &out.judgments {
        assert_eq!(j.abstain_reason.as_deref(), Some("judge_rejected_400"), "{j:?}");
        assert!(j.score.is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn the_judge_runs_at_its_requests_per_minute_and_not_faster() {
    let mock = MockServer::start(MockConfig::builtin().unwrap()).await.unwrap();
    // 30 requests per minute: one every 2 s.
    let (judge, stats, _dir) = judge_with(&mock, "mock-judge", 30, 8).await;
    let start = tokio::time::Instant::now();
    let pairs: Vec<Pair> = entries(5).iter().map(|e| pair("d", "c", &e.prompt, &e.good, &e.degraded)).collect();
    let outs = futures::future::join_all(pairs.iter().map(|p| judge.judge_pair(p))).await;
    assert!(outs.iter().all(Result::is_ok));
    let calls = JudgeStats::get(&stats.calls);
    assert_eq!(calls, 20);
    assert_eq!(mock.request_count("mock-judge"), 20);
    // Burst of one: call k starts no earlier than 2 s × k, so 20 calls need at least 38 s of
    // virtual time — and with the limiter the only thing waiting, not much more.
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_secs(38), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(41), "throughput equals the limit: {elapsed:?}");
    assert!(JudgeStats::get(&stats.waits_rate) >= 19);
}

#[tokio::test]
async fn an_identical_pair_is_answered_from_the_cache() {
    let mock = MockServer::start(MockConfig::builtin().unwrap()).await.unwrap();
    let (judge, stats, _dir) = judge_with(&mock, "mock-judge", 60_000, 4).await;
    let e = &entries(1)[0];
    let first = judge.judge_pair(&pair("d", "c", &e.prompt, &e.good, &e.degraded)).await.unwrap();
    assert_eq!(mock.request_count("mock-judge"), 4);
    let second = judge.judge_pair(&pair("d", "c", &e.prompt, &e.good, &e.degraded)).await.unwrap();
    assert_eq!(mock.request_count("mock-judge"), 4, "no new judge call");
    assert_eq!(JudgeStats::get(&stats.cache_hits), 4);
    let strip = |o: &PairOutput| o.judgments.iter().map(|j| (j.criterion.clone(), j.order.clone(), j.side, j.score, j.winner)).collect::<Vec<_>>();
    assert_eq!(strip(&first), strip(&second));
    assert_eq!(scores(&first, "helpfulness", Role::Stable), [Some(1.0)]);
    assert_eq!(scores(&first, "helpfulness", Role::Candidate), [Some(0.0)]);
}

// ---------- replay ----------

#[tokio::test]
async fn replay_prints_a_table_and_valid_json() {
    let mock = MockServer::start(MockConfig::builtin().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    rubric(dir.path(), "http://127.0.0.1:9/v1", "mock-judge", 60_000);
    let rubric_path = dir.path().join("support.yaml");
    let args = canarist::judge::ReplayArgs {
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
    let report = canarist::judge::replay::replay(&args).await.unwrap();
    assert_eq!(report.prompts, 20);
    let line = |name: &str| report.lines.iter().find(|l| l.name == name).unwrap();
    let help = line("helpfulness");
    assert_eq!(help.stable_n + help.candidate_n, 40);
    assert!(help.difference.unwrap() < -0.1, "{help:?}");
    assert!(line("preference").losses > line("preference").wins);
    assert_eq!(line("finished").kind, "check");
    let aa = report.aa.as_ref().unwrap();
    let aa_pref = aa.iter().find(|l| l.name == "preference").unwrap();
    assert_eq!(aa_pref.position_consistency, Some(1.0), "the simulated judge has no position bias");
    let text = canarist::judge::replay::render(&report);
    assert!(text.contains("helpfulness") && text.contains("A/A"), "{text}");

    // The binary: the same with --json prints one valid JSON document.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_canarist"))
        .args(["replay", "--dataset", "fixtures/datasets/support.jsonl", "--rubric"])
        .arg(&rubric_path)
        .args(["--stable", "mock:mock-stable", "--candidate", "mock:mock-candidate-good", "--limit", "5", "--json"])
        .args(["--base-url", &mock.base_url(), "--judge-base-url", &mock.base_url()])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["prompts"], 5);
    assert_eq!(v["rubric_id"], "test-support");
    assert!(v["lines"].as_array().unwrap().len() >= 3);
}
