//! The capture policy covers everything stored or exported: an email in the prompt and in the
//! answer reaches no stored column (SQLite, and Postgres when `DATABASE_URL` is set), no JSONL
//! line, no judge request and no report; a huge answer is stored cut at `max_body_bytes`.

use std::sync::Arc;
use std::time::Duration;

use canarist::app::Runtime;
use canarist::config::Config;
use canarist::judge::{Checker, CheckingSink, Judge, JudgeStats, Worker, WorkerConfig};
use canarist::mock::{MockConfig, MockServer, Profile};
use canarist::report::{self, BuildOptions};
use canarist::rollout::Ramp;
use canarist::rubric::load_file;
use canarist::store::{NewRollout, Store};
use serde_json::json;

use crate::store::{TestDb, backends};
use crate::support::config_yaml;

const EMAIL: &str = "alice.pii@example.com";
const CAP: usize = 4096;

fn mock() -> MockConfig {
    // Both answer with the generic answer, which quotes the prompt (and so the email); the
    // candidate pads it to 50 kB.
    MockConfig::builtin().unwrap().with_model(
        "big-answer",
        Profile {
            answer_bytes: Some(50_000),
            ..Profile::default()
        },
    )
}

/// The config: the email pattern redacted, bodies capped at `CAP`, a shadow deployment, `rest`.
fn config(mock: &MockServer, rest: &str) -> Config {
    let yaml = config_yaml(
        &mock.base_url(),
        &format!(
            "  redact: ['[\\w.+-]+@[\\w-]+\\.[\\w.]+']\n  max_body_bytes: {CAP}\n{rest}\n\
             deployments:\n  - slug: support\n    mode: shadow\n    stage: shadow\n\
             \x20   stable: {{ provider: mock, model: mock-fast }}\n\
             \x20   candidates: [ {{ name: cand, provider: mock, model: big-answer, percent: 100 }} ]\n"
        ),
    );
    Config::from_yaml(std::path::Path::new("policy-test.yaml"), &yaml, &|_| None)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Sends the email in a prompt, plain and streamed, and checks the client still gets it back
/// (the policy is about what is kept, never about what is served).
async fn traffic(server: &Runtime) {
    let http = reqwest::Client::new();
    for stream in [false, true] {
        let body = json!({"model": "support", "stream": stream, "messages": [
            {"role": "user", "content": format!("Please write to {EMAIL} about order 42")}]});
        let r = http
            .post(format!("{}/v1/chat/completions", server.url()))
            .header("x-canarist-unit", format!("u-{stream}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains(EMAIL));
    }
}

/// Every row of every table, as text.
async fn dump(db: &TestDb) -> String {
    let mut out = String::new();
    if db.pg.is_some() {
        let p = sqlx::PgPool::connect(&db.url).await.unwrap();
        let tables: Vec<(String,)> = sqlx::query_as(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_all(&p)
        .await
        .unwrap();
        for (t,) in tables {
            let sql = format!("SELECT t::text FROM {t} t");
            let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_all(&p)
                .await
                .unwrap();
            for (r,) in rows {
                out.push_str(&r);
                out.push('\n');
            }
        }
    } else {
        // The database file and its write-ahead log hold every byte SQLite stored.
        let path = db.url.trim_start_matches("sqlite://");
        for file in [path.to_owned(), format!("{path}-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    out
}

/// Polls `f` every 20 ms until it holds (at most 20 s; a deadline, not a measurement).
async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1_000 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn rubric(dir: &std::path::Path, base_url: &str) -> canarist::rubric::Rubric {
    std::fs::create_dir_all(dir.join("judges")).unwrap();
    std::fs::write(
        dir.join("judges/j.yaml"),
        format!(
            "base_url: {base_url}\napi_key_env: CANARIST_TEST_JUDGE_KEY\nmodel: mock-judge\n\
             temperature: 0\nseed: 1\nmax_tokens: 200\nrequests_per_minute: 60000\n"
        ),
    )
    .unwrap();
    let path = dir.join("policy.yaml");
    // The length check fails the padded candidate, so the report lists the pair's answers.
    std::fs::write(
        &path,
        "id: policy\nversion: 1.0.0\napplies_to:\n  sample_rate: 1.0\njudge_ref: judges/j.yaml\n\
         checks:\n  - id: short\n    type: length\n    unit: chars\n    max: 1000\n    severity: hard\n\
         criteria:\n  - id: helpfulness\n    mode: pointwise\n    question: How well does the answer help?\n\
         \x20   scale:\n      min: 1\n      max: 5\n      anchors:\n        1: Does not help.\n        5: Fully helps.\n\
         \x20 - id: preference\n    mode: pairwise\n    question: Which answer is better?\n",
    )
    .unwrap();
    load_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn redaction_and_the_cap_cover_the_store_the_judge_and_the_reports() {
    let mock = MockServer::start(mock()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rubric = rubric(dir.path(), &mock.base_url());
    for db in backends().await {
        let store: Store = db.store().await;
        store
            .create_rollout(&NewRollout {
                deployment: "support".into(),
                candidate: "cand".into(),
                state: "shadow".into(),
                stage_index: 0,
                stage_name: "shadow".into(),
                actor: "test".into(),
                reason: "start".into(),
            })
            .await
            .unwrap();
        let config = config(&mock, "");
        // As in `serve`: the checks run in the store sink's writer.
        let sink = Arc::new(CheckingSink::new(
            store.clone(),
            Arc::new(Checker::new(vec![rubric.clone()], JudgeStats::new())),
        ));
        let server = crate::support::gateway::start(
            config,
            crate::support::gateway::gateway_only(&store, sink),
        )
        .await;
        traffic(&server).await;
        until("two judge jobs", || async {
            store
                .job_counts()
                .await
                .unwrap()
                .iter()
                .map(|(_, n)| n)
                .sum::<u64>()
                == 2
        })
        .await;

        // The judge asks about the stored pairs.
        let before = mock.requests().len();
        let judge = Arc::new(
            Judge::new(
                vec![rubric.clone()],
                crate::judge::options(4),
                JudgeStats::new(),
            )
            .unwrap(),
        );
        let worker = Worker::new(store.clone(), judge, WorkerConfig::default());
        while worker.run_once().await.unwrap().claimed > 0 {}
        let asked: Vec<_> = mock.requests()[before..]
            .iter()
            .filter(|r| r.model.as_deref() == Some("mock-judge"))
            .map(|r| r.body.to_string())
            .collect();
        assert!(!asked.is_empty(), "{}: the judge was never asked", db.label);
        for a in &asked {
            assert!(!a.contains(EMAIL), "{}: judge request {a}", db.label);
            assert!(a.contains("[REDACTED]"), "{}: judge request {a}", db.label);
        }

        // No stored column anywhere holds the email; the huge answer is stored capped.
        let stored = dump(&db).await;
        assert!(
            !stored.contains(EMAIL),
            "{}: the email was stored",
            db.label
        );
        assert!(stored.contains("[REDACTED]"), "{}", db.label);

        // Nor does any report.
        let opts = BuildOptions {
            policy: None,
            ramp: Some(
                Ramp::from_yaml(
                    std::path::Path::new("r.yaml"),
                    "stages:\n  - { shadow: 100 }\n",
                )
                .unwrap(),
            ),
            now: chrono::Utc::now() + chrono::Duration::hours(1),
            worst_limit: 5,
            sample_limit: 100,
            models: None,
            links_base: None,
        };
        let r = report::build_with(&store, "support", 0, &opts)
            .await
            .unwrap();
        assert_eq!(
            r.worst_answers.len(),
            2,
            "{}: {:?}",
            db.label,
            r.worst_answers
        );
        for w in &r.worst_answers {
            // The 50 kB answer, stored cut at the cap.
            let text = w.candidate_answer.as_deref().unwrap_or_default();
            assert!(
                text.len() <= CAP && text.len() > CAP - 8,
                "{}: {}",
                db.label,
                text.len()
            );
            // The prompt is shown, as stored: redacted by the same policy.
            let prompt = w.prompt.as_deref().unwrap_or_default();
            assert!(
                prompt.contains("[REDACTED]") && !prompt.contains(EMAIL),
                "{}: {prompt}",
                db.label
            );
        }
        for rendered in [
            report::to_json(&r).unwrap(),
            report::to_markdown(&r),
            report::to_html(&r),
        ] {
            assert!(
                !rendered.contains(EMAIL),
                "{}: a report holds the email",
                db.label
            );
            assert!(rendered.contains("[REDACTED]"), "{}", db.label);
        }
        server.shutdown().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn redaction_and_the_cap_cover_the_jsonl_sink() {
    let mock = MockServer::start(mock()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("captures.jsonl");
    let config = config(&mock, &format!("  sink: \"jsonl:{}\"", path.display()));
    let sink = canarist::capture::JsonlSink::new(&path);
    let options = canarist::app::Options {
        storage: canarist::app::Storage::Without,
        sink: Some(Arc::new(sink)),
        grace: Duration::from_secs(5),
        ..canarist::app::Options::default()
    };
    let server = crate::support::gateway::start(config, options).await;
    traffic(&server).await;
    let lines = || std::fs::read_to_string(&path).unwrap_or_default();
    until("two pairs in the JSONL file", || async {
        lines().matches("\"kind\":\"pair\"").count() == 2
    })
    .await;
    let text = lines();
    assert!(!text.contains(EMAIL), "{text}");
    assert!(text.contains("[REDACTED]"));
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for side in ["stable", "candidate"] {
            if let Some(t) = v[side]["response_text"].as_str() {
                assert!(t.len() <= CAP);
            }
        }
        if let Some(t) = v["response_text"].as_str() {
            assert!(t.len() <= CAP);
        }
    }
    server.shutdown().await;
}
