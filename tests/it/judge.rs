//! The judge worker against the mock upstream's simulated judge (`mock-judge`, real sockets):
//! end to end through the store (SQLite always, Postgres when `DATABASE_URL` is set), repair and
//! abstention, 429 handling, permanent errors, the rate limit (paused time: virtual clock, no
//! wall-clock assertions), the cache, the bounded queue, and `canarist replay`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use canarist::capture::{CaptureEvent, Endpoint, Observation, Pair, Purpose, Role, Sink};
use canarist::judge::{
    Checker, CheckingSink, HardFailureHook, Judge, JudgeOptions, JudgeStats, PairOutput, Worker,
    WorkerConfig,
};
use canarist::mock::{DatasetEntry, ErrorStatus, MockConfig, MockServer, Profile};
use canarist::rubric::{Rubric, load_file};
use canarist::store::{StoreSink, SummaryScope};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::store::{TestDb, backends};

/// The engine against the simulated judge: repair, 429, permanent errors, rate, cache.
mod engine;
/// Against a real model server (ignored; `scripts/e2e-realllm.sh` runs it).
mod realllm;
/// `canarist replay`.
mod replay;
/// The judge's request body: token limit field and temperature per judge model.
mod request_shape;
/// Tool decisions judged pairwise and pointwise.
mod tools;

// ---------- helpers ----------

/// Writes a rubric (pointwise helpfulness, pairwise preference, a finish_reason check) whose
/// judge is `model` at `base_url`, and returns it loaded.
pub(crate) fn rubric(dir: &Path, base_url: &str, model: &str, rpm: u32) -> Rubric {
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

pub(crate) fn options(max_in_flight: usize) -> JudgeOptions {
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
        request_body: Some(
            json!({"model": deployment, "messages": [{"role": "user", "content": prompt}]}).into(),
        ),
        response_body: None,
    }
}

fn pair(
    deployment: &str,
    candidate: &str,
    prompt: &str,
    stable_text: &str,
    cand_text: &str,
) -> Pair {
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
async fn answer(
    http: &reqwest::Client,
    mock: &MockServer,
    model: &str,
    entry: &DatasetEntry,
) -> String {
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
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<f64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

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
    let mock = MockServer::start(MockConfig::builtin().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rubric = rubric(dir.path(), &mock.base_url(), "mock-judge", 60_000);
    let http = reqwest::Client::new();
    let mut events = Vec::new();
    for e in entries(16) {
        let stable = answer(&http, &mock, "mock-stable", &e).await;
        for (dep, model) in [
            ("good", "mock-candidate-good"),
            ("bad", "mock-candidate-bad"),
        ] {
            let cand = answer(&http, &mock, model, &e).await;
            events.push(CaptureEvent::Pair(Box::new(pair(
                dep, model, &e.prompt, &stable, &cand,
            ))));
        }
    }
    for db in backends().await {
        let store = db.store().await;
        let stats = JudgeStats::new();
        // As in `serve`: the checks are stored with the pairs, the worker asks the criteria.
        let checker = Arc::new(Checker::new(vec![rubric.clone()], stats.clone()));
        CheckingSink::new(store.clone(), checker)
            .write_batch(&events)
            .await
            .unwrap();
        let judge = Arc::new(Judge::new(vec![rubric.clone()], options(8), stats.clone()).unwrap());
        let worker = Worker::new(
            store.clone(),
            judge,
            WorkerConfig {
                batch: 8,
                ..WorkerConfig::default()
            },
        );
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
            assert_eq!(
                (r.0.as_str(), r.1.as_str(), r.2.as_str()),
                ("test-support", "1.2.0", rubric.hash.0.as_str())
            );
            assert_eq!(r.4, "mock-judge");
            assert!(
                ["single", "ab", "ba", "combined"].contains(&r.5.as_str()),
                "{r:?}"
            );
            assert_eq!(
                r.5 == "single",
                r.6.is_some(),
                "pointwise rows carry a side: {r:?}"
            );
            assert!(r.9.is_none(), "no abstention: {r:?}");
            assert!(r.10.is_some(), "trace id set");
        }
        // The good candidate scores like stable; the bad one lower.
        let summary = |dep: &'static str| {
            let store = store.clone();
            async move {
                let s = store
                    .score_summaries(SummaryScope::new(dep, "shadow"))
                    .await
                    .unwrap();
                let get = |c: &str| {
                    s.iter()
                        .find(|x| x.criterion == c && x.cohort.is_none())
                        .unwrap()
                        .clone()
                };
                (get("helpfulness"), get("preference"))
            }
        };
        let (good, good_pref) = summary("good").await;
        let (bad, bad_pref) = summary("bad").await;
        let mean = |m: &canarist::store::Moments| m.mean().unwrap();
        assert!(
            (mean(&good.candidate_scores) - mean(&good.stable)).abs() < 0.15,
            "{good:?}"
        );
        assert!(
            mean(&bad.candidate_scores) < mean(&bad.stable) - 0.15,
            "{bad:?}"
        );
        assert!(
            bad_pref.losses > bad_pref.wins && bad_pref.losses >= 3,
            "{bad_pref:?}"
        );
        assert!(good_pref.ties >= good_pref.losses, "{good_pref:?}");
        let checks = store
            .check_summaries(SummaryScope::new("good", "shadow"))
            .await
            .unwrap();
        assert!(
            checks
                .iter()
                .any(|c| c.check == "finished" && c.stable_passed == 16)
        );
        assert_eq!(JudgeStats::get(&stats.pairs_judged), 32);
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_hanging_judgment_holds_one_slot_and_is_given_back_at_shutdown() {
    // Pairs of deployment `slow` go to a judge that never answers; those of `fast` to the
    // simulated judge. The worker keeps two jobs in flight: the hanging one holds one slot,
    // the other slot must go on judging every `fast` pair (a batch barrier would wait forever).
    let config = MockConfig::builtin().unwrap().with_model(
        "judge-hang",
        Profile {
            judge: true,
            hang: true,
            ..Profile::default()
        },
    );
    let mock = MockServer::start(config).await.unwrap();
    let (slow_dir, fast_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut slow = rubric(slow_dir.path(), &mock.base_url(), "judge-hang", 60_000);
    slow.id = "slow-support".into();
    slow.applies_to.deployments = vec!["slow".into()];
    let mut fast = rubric(fast_dir.path(), &mock.base_url(), "mock-judge", 60_000);
    fast.applies_to.deployments = vec!["fast".into()];
    let e = &entries(1)[0];
    // The hanging pair first: it is claimed first.
    let mut events = vec![CaptureEvent::Pair(Box::new(pair(
        "slow", "c", &e.prompt, &e.good, &e.good,
    )))];
    for _ in 0..4 {
        events.push(CaptureEvent::Pair(Box::new(pair(
            "fast", "c", &e.prompt, &e.good, &e.good,
        ))));
    }
    for db in backends().await {
        let store = db.store().await;
        let stats = JudgeStats::new();
        let rubrics = vec![slow.clone(), fast.clone()];
        CheckingSink::new(
            store.clone(),
            Arc::new(Checker::new(rubrics.clone(), stats.clone())),
        )
        .write_batch(&events)
        .await
        .unwrap();
        let mut opts = options(8);
        opts.timeout = Duration::from_secs(600);
        let judge = Arc::new(Judge::new(rubrics, opts, stats.clone()).unwrap());
        let worker = Worker::new(
            store.clone(),
            judge,
            WorkerConfig {
                batch: 2,
                poll_interval: Duration::from_millis(10),
                shutdown_grace: Duration::from_millis(50),
                ..WorkerConfig::default()
            },
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let running = tokio::spawn(worker.run(stop.clone()));
        let mut counts = BTreeMap::new();
        for _ in 0..1000 {
            counts = store.job_counts().await.unwrap().into_iter().collect();
            if counts.get("done") == Some(&4) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(counts.get("done"), Some(&4), "{}: {counts:?}", db.label);
        assert_eq!(counts.get("running"), Some(&1), "{}: {counts:?}", db.label);
        assert_eq!(JudgeStats::get(&stats.pairs_judged), 4, "{}", db.label);
        // Shutdown does not wait for the hanging judgment past the grace: the job goes back to
        // the queue at once, its attempt not counted.
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(60), running)
            .await
            .expect("the worker stops after its shutdown grace")
            .unwrap();
        let counts: BTreeMap<String, u64> = store.job_counts().await.unwrap().into_iter().collect();
        assert_eq!(counts.get("queued"), Some(&1), "{}: {counts:?}", db.label);
        assert_eq!(counts.get("running"), None, "{}: {counts:?}", db.label);
        let again = store
            .claim("next", 10, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(again.len(), 1, "{}", db.label);
        assert_eq!(again[0].deployment, "slow", "{}", db.label);
        assert_eq!(
            again[0].attempts, 1,
            "{}: claimed once, released uncounted",
            db.label
        );
        db.cleanup().await;
    }
}

/// Check rows per pair in the store: (pair id, check, side, passed).
async fn check_rows(db: &TestDb) -> Vec<(Uuid, String, String, bool)> {
    let sql = "SELECT pair_id, name, side, passed FROM check_results ORDER BY pair_id, name, side";
    if db.pg.is_some() {
        let p = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&p).await.unwrap()
    } else {
        let p = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&p).await.unwrap()
    }
}

#[tokio::test]
async fn checks_are_stored_with_the_pair_and_do_not_wait_for_a_judge_that_is_down() {
    // The judge answers 503 to everything: the checks must not care.
    let config = MockConfig::builtin().unwrap().with_model(
        "judge-503",
        Profile {
            judge: true,
            error_rate: 1.0,
            error_status: ErrorStatus::Unavailable503,
            ..Profile::default()
        },
    );
    let mock = MockServer::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sampled = rubric(dir.path(), &mock.base_url(), "judge-503", 60_000);
    let mut unsampled = sampled.clone();
    unsampled.applies_to.sample_rate = 0.0;
    let e = &entries(1)[0];
    let fine = pair("d", "c", &e.prompt, &e.good, &e.good);
    // The candidate stopped on length where stable finished: the hard `finished` check regresses.
    let mut cut = pair("d", "c", &e.prompt, &e.good, &e.good);
    cut.candidate.finish_reason = Some("length".into());
    // The same cut answer from the A/A arm (stable asked twice, purpose `aa`, stored under the
    // reserved variant name): stored, but no guardrail signal.
    let mut aa_cut = pair(
        "d",
        canarist::capture::AA_VARIANT,
        &e.prompt,
        &e.good,
        &e.good,
    );
    aa_cut.candidate.finish_reason = Some("length".into());
    aa_cut.candidate.purpose = canarist::capture::Purpose::Aa;
    let events = [
        CaptureEvent::Pair(Box::new(fine.clone())),
        CaptureEvent::Pair(Box::new(cut.clone())),
        CaptureEvent::Pair(Box::new(aa_cut.clone())),
    ];
    for db in backends().await {
        let store = db.store().await;
        for (rubric, jobs) in [(&unsampled, 0), (&sampled, 3)] {
            let stats = JudgeStats::new();
            let checker = Arc::new(Checker::new(vec![rubric.clone()], stats.clone()));
            let seen = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
            let hook_seen = seen.clone();
            checker.on_hard_failure(HardFailureHook(Arc::new(move |d, s| {
                hook_seen.lock().unwrap().push((d.to_owned(), s.to_owned()));
            })));
            let sink = CheckingSink::new(store.clone(), checker);
            sink.write_batch(&events).await.unwrap();

            // Stored with the pairs: one row per side of the `finished` check; the cut answer
            // failed on the candidate only, and that hard failure reached the guardrails once.
            let mut expected = vec![
                (fine.id, "finished".to_owned(), "candidate".to_owned(), true),
                (fine.id, "finished".to_owned(), "stable".to_owned(), true),
                (cut.id, "finished".to_owned(), "candidate".to_owned(), false),
                (cut.id, "finished".to_owned(), "stable".to_owned(), true),
                (
                    aa_cut.id,
                    "finished".to_owned(),
                    "candidate".to_owned(),
                    false,
                ),
                (aa_cut.id, "finished".to_owned(), "stable".to_owned(), true),
            ];
            expected.sort();
            let mut rows = check_rows(&db).await;
            rows.sort();
            assert_eq!(rows, expected, "{}", db.label);
            assert_eq!(
                *seen.lock().unwrap(),
                vec![("d".to_owned(), "shadow".to_owned())],
                "{}",
                db.label
            );
            assert_eq!(JudgeStats::get(&stats.check_results), 6);
            // A judge job only for the pairs in the rubric's judge sample.
            let queued: BTreeMap<String, u64> =
                store.job_counts().await.unwrap().into_iter().collect();
            assert_eq!(
                queued.get("queued").copied().unwrap_or(0),
                jobs,
                "{}: {queued:?}",
                db.label
            );
            // The same batch written again (a retried write) stores nothing twice.
            sink.write_batch(&events).await.unwrap();
            assert_eq!(check_rows(&db).await.len(), 6, "{}", db.label);
        }

        // The worker meets the 503 judge: the job goes back, no judgment; the checks stay.
        let stats = JudgeStats::new();
        let mut opts = options(4);
        opts.max_retries = 0;
        let judge = Arc::new(Judge::new(vec![sampled.clone()], opts, stats.clone()).unwrap());
        let worker = Worker::new(store.clone(), judge, WorkerConfig::default());
        let poll = worker.run_once().await.unwrap();
        assert_eq!((poll.claimed, poll.failed), (3, 3), "{}", db.label);
        assert!(judgment_rows(&db).await.is_empty(), "{}", db.label);
        assert_eq!(check_rows(&db).await.len(), 6, "{}", db.label);
        let checks = store
            .check_summaries(SummaryScope::new("d", "shadow"))
            .await
            .unwrap();
        let finished = checks
            .iter()
            .find(|c| c.check == "finished" && c.cohort.is_none() && c.candidate == "c")
            .unwrap_or_else(|| panic!("{}: {checks:?}", db.label));
        assert_eq!(
            (finished.stable_passed, finished.candidate_passed),
            (2, 1),
            "{}: {finished:?}",
            db.label
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn full_queue_drops_the_newest_and_counts_and_failures_go_back_to_the_queue() {
    let mut config = MockConfig::builtin().unwrap();
    config = config.with_model(
        "judge-503",
        Profile {
            judge: true,
            error_rate: 1.0,
            error_status: ErrorStatus::Unavailable503,
            ..Profile::default()
        },
    );
    let mock = MockServer::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rubric = rubric(dir.path(), &mock.base_url(), "judge-503", 60_000);
    let e = &entries(1)[0];
    let events: Vec<CaptureEvent> = (0..5)
        .map(|_| CaptureEvent::Pair(Box::new(pair("d", "c", &e.prompt, &e.good, &e.good))))
        .collect();
    for db in backends().await {
        let store = db.store().await;
        StoreSink::new(store.clone())
            .write_batch(&events)
            .await
            .unwrap();
        let stats = JudgeStats::new();
        let mut opts = options(4);
        opts.max_retries = 1;
        let judge = Arc::new(Judge::new(vec![rubric.clone()], opts, stats.clone()).unwrap());
        let config = WorkerConfig {
            batch: 1,
            max_backlog: Some(2),
            ..WorkerConfig::default()
        };
        let worker = Worker::new(store.clone(), judge, config);
        let poll = worker.run_once().await.unwrap();
        assert_eq!(poll.dropped, 3, "{}", db.label);
        assert_eq!(JudgeStats::get(&stats.queue_dropped), 3);
        // The judge answers 503: retried once per question, then the job goes back to the queue.
        assert_eq!((poll.claimed, poll.failed), (1, 1), "{}", db.label);
        let counts: BTreeMap<String, u64> = store.job_counts().await.unwrap().into_iter().collect();
        assert_eq!(counts.get("cancelled"), Some(&3), "{counts:?}");
        assert_eq!(
            counts.get("queued"),
            Some(&2),
            "the failed job is queued again: {counts:?}"
        );
        assert_eq!(JudgeStats::get(&stats.queue_depth), 2);
        assert!(
            judgment_rows(&db).await.is_empty(),
            "nothing recorded for an unreachable judge"
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn serve_starts_workers_from_the_config_and_exports_judge_metrics() {
    let mock = MockServer::start(MockConfig::builtin().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    rubric(dir.path(), &mock.base_url(), "mock-judge", 60_000);
    let yaml = format!(
        "judge:\n  rubrics_dir: {}\n  workers: 2\n  lease: 30s\n  poll_interval: 10ms\n",
        dir.path().display()
    );
    let config = canarist::config::Config::from_yaml(Path::new("c.yaml"), &yaml, &|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    let judge_config = config.judge.clone().unwrap();
    assert_eq!(
        (judge_config.workers, judge_config.lease),
        (2, Duration::from_secs(30))
    );
    let mut dbs = backends().await;
    let db = dbs.remove(0);
    for other in dbs {
        other.cleanup().await;
    }
    let store = db.store().await;
    let e = &entries(1)[0];
    let events = [CaptureEvent::Pair(Box::new(pair(
        "d",
        "c",
        &e.prompt,
        &e.good,
        &e.degraded,
    )))];
    StoreSink::new(store.clone())
        .write_batch(&events)
        .await
        .unwrap();
    let metrics =
        canarist::telemetry::Metrics::new(Arc::new(canarist::telemetry::CaptureCounts::default));
    let runtime = canarist::judge::start(Some(&judge_config), &BTreeMap::new(), &store, &metrics)
        .unwrap()
        .expect("workers started");
    // The workers pick the job up on their own.
    for _ in 0..500 {
        if JudgeStats::get(&runtime.judge.stats().pairs_judged) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(JudgeStats::get(&runtime.judge.stats().pairs_judged), 1);
    runtime.shutdown().await;
    let text = metrics.encode();
    assert!(text.contains("canarist_judge_calls_total 4"), "{text}");
    assert!(text.contains("canarist_judge_pairs_total 1"), "{text}");
    // A disabled section starts nothing.
    let off = canarist::config::JudgeConfig {
        enabled: false,
        ..judge_config
    };
    assert!(
        canarist::judge::start(Some(&off), &BTreeMap::new(), &store, &metrics)
            .unwrap()
            .is_none()
    );
}
