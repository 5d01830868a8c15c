//! A rollout against real model servers, end to end: llama.cpp (`/work/shared/realllm`) serving
//! SmolLM2-135M-Instruct as the stable variant and gemma-3-270m **base** as the candidate, the
//! real `canarist serve` binary in shadow mode in front of them, and a second SmolLM2 server as
//! the judge. `scripts/e2e-realllm.sh` starts the three servers and passes their URLs in
//! `CANARIST_REALLLM_STABLE_URL`, `CANARIST_REALLLM_CANDIDATE_URL` and `CANARIST_REALLLM_URL`
//! (the judge). Ignored by default (it needs the servers and takes minutes on a 2-core machine);
//! without the variables it passes with a message.
//!
//! The task is structured extraction: "return this sentence's person as a JSON object". The
//! instruct model answers with the object; the base model, which has never been taught to chat,
//! continues the prompt instead. The rubric's deterministic `json_schema` check tells them apart,
//! the gate compares the two pass rates pair by pair, and the rollout must end rolled back with
//! that check named as the failing metric — while every client was answered by stable, the
//! candidate's answers were captured beside them, and the real judge scored the pairs it reached
//! before the rollback with its strict JSON-schema output. The judge's verdicts are recorded, not gated on: a 135M
//! model is no judge of quality (see ../shared/realllm/README.md).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const DEPLOYMENT: &str = "person-extractor";
const RUBRIC_ID: &str = "person-json";
/// The gate metric: the `schema` check of the rubric above, as `<rubric>.<check>`.
const CHECK_METRIC: &str = "person-json.schema";
const JUDGE_MODEL: &str = "smollm2-judge";
/// A deadline, not a measurement: the rollback came after 36 s (12 pairs) on a 2-core machine.
const DEADLINE: Duration = Duration::from_secs(12 * 60);

/// People the client asks about; each request is one sentence about one of them.
const PEOPLE: [(&str, u32, &str); 16] = [
    ("Alice", 30, "Paris"),
    ("Bob", 42, "Berlin"),
    ("Chen", 25, "Shanghai"),
    ("Dana", 37, "Denver"),
    ("Emil", 51, "Oslo"),
    ("Fatima", 29, "Cairo"),
    ("Goran", 63, "Zagreb"),
    ("Hana", 19, "Tokyo"),
    ("Ivan", 45, "Kyiv"),
    ("Julia", 33, "Madrid"),
    ("Kofi", 58, "Accra"),
    ("Lena", 24, "Vienna"),
    ("Mateo", 40, "Lima"),
    ("Nora", 36, "Dublin"),
    ("Omar", 27, "Amman"),
    ("Priya", 48, "Mumbai"),
];

fn prompt(i: usize) -> String {
    let (name, age, city) = PEOPLE[i % PEOPLE.len()];
    format!(
        "Extract the person from this sentence as a JSON object with keys \"name\" (string), \
         \"age\" (integer) and \"city\" (string). Reply with the JSON object only.\n\
         Sentence: {name} is {age} years old and lives in {city}."
    )
}

/// The servers' OpenAI base URLs (`…/v1`), with or without `/v1` in the variables.
struct Servers {
    stable: String,
    candidate: String,
    judge: String,
}

fn v1(var: &str) -> Option<String> {
    let url = std::env::var(var).ok()?;
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

fn servers() -> Option<Servers> {
    Some(Servers {
        stable: v1("CANARIST_REALLLM_STABLE_URL")?,
        candidate: v1("CANARIST_REALLLM_CANDIDATE_URL")?,
        judge: v1("CANARIST_REALLLM_URL")?,
    })
}

/// The gateway config: shadow first (it cannot promote within the test: an hour's minimum), the
/// gate on the check's pass rate. The check is `soft` so that the statistical gate, not the
/// hard-check guardrail, makes the call and names the metric.
fn config_yaml(s: &Servers, db: &Path, rubrics: &Path) -> String {
    format!(
        r#"listen: 127.0.0.1:0
providers:
  smollm2:
    base_url: {stable}
    timeout: 120s
  gemma3:
    base_url: {candidate}
    timeout: 120s
storage:
  url: "sqlite://{db}"
capture:
  flush_interval: 50ms
  body_sample_rate: 1.0
judge:
  rubrics_dir: "{rubrics}"
  workers: 1
  batch: 4
  poll_interval: 100ms
  lease: 5m
  max_in_flight: 2
  timeout: 120s
controller:
  tick: 500ms
deployments:
  - slug: {DEPLOYMENT}
    model: {DEPLOYMENT}
    stable: {{ provider: smollm2, model: smollm2-135m-instruct }}
    candidates:
      - {{ name: gemma-base, provider: gemma3, model: gemma-3-270m }}
    shadow:
      timeout: 120s
    ramp:
      stages:
        - {{ shadow: 100, min_duration: 1h, min_judged_pairs: 1000, max_duration: 2h }}
        - {{ percent: 10, min_duration: 1h, min_judged_pairs: 1000 }}
    gate:
      metrics:
        - {{ name: {CHECK_METRIC}, kind: mean, direction: higher_is_better, margin: 0.1 }}
        - {{ name: error_rate, kind: error_rate, margin: 0.05, ceiling: 0.3 }}
      min_samples: 12
      target_n: 50
"#,
        stable = s.stable,
        candidate = s.candidate,
        db = db.display(),
        rubrics = rubrics.display(),
    )
}

/// The rubric: the answer must be a JSON object with the three keys, typed; and the real judge
/// scores every pair on completeness (pointwise, blind, JSON-schema output). Every pair, not a
/// sample: a rollback cancels the judge jobs still pending, so only the pairs judged before the
/// gate acts (a few, at CPU speed) are ever judged, and a quarter sample of 8 pairs can be none.
fn rubric_yaml(judge_url: &str) -> String {
    format!(
        r#"id: {RUBRIC_ID}
version: 1.0.0
description: The person in a sentence, extracted as JSON.
applies_to:
  deployments: [{DEPLOYMENT}]
  sample_rate: 1.0
judge:
  base_url: {judge_url}
  api_key_env: CANARIST_REALLLM_API_KEY
  model: {JUDGE_MODEL}
  temperature: 0
  seed: 7
  max_tokens: 320
  requests_per_minute: 600
checks:
  - id: valid_json
    type: json_valid
  - id: schema
    type: json_schema
    schema:
      type: object
      required: [name, age, city]
      properties:
        name: {{ type: string, minLength: 1 }}
        age: {{ type: integer, minimum: 0 }}
        city: {{ type: string, minLength: 1 }}
criteria:
  - id: completeness
    mode: pointwise
    question: Does the answer give the person's name, age and city from the sentence?
    scale:
      min: 1
      max: 3
      anchors:
        1: None of them.
        3: All three.
    examples:
      - input: "[user] Sentence: Zoe is 31 years old and lives in Rome."
        answer: '{{"name": "Zoe", "age": 31, "city": "Rome"}}'
        reasoning: All three fields are given.
        score: 3
"#
    )
}

/// `canarist serve`, its URL, and its stderr so far (printed when the test fails).
struct Gateway {
    _process: tokio::process::Child,
    url: String,
    stderr: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Gateway {
    async fn start(config: &Path) -> Gateway {
        let mut process = tokio::process::Command::new(env!("CARGO_BIN_EXE_canarist"))
            .args(["serve", "--config"])
            .arg(config)
            .env("CANARIST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let mut err_lines = BufReader::new(process.stderr.take().unwrap()).lines();
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        let mut out_lines = BufReader::new(process.stdout.take().unwrap()).lines();
        let url = loop {
            let line = tokio::time::timeout(Duration::from_secs(60), out_lines.next_line())
                .await
                .expect("serve starts")
                .unwrap()
                .unwrap_or_else(|| panic!("serve exited: {:?}", stderr.lock().unwrap()));
            if let Some(url) = line.strip_prefix("canarist listening on ") {
                break url.trim().to_owned();
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = out_lines.next_line().await {} });
        Gateway {
            _process: process,
            url,
            stderr,
        }
    }

    fn log_tail(&self) -> String {
        let lines = self.stderr.lock().unwrap();
        let from = lines.len().saturating_sub(40);
        lines[from..].join("\n")
    }
}

/// Runs the real binary's `canarist <args> --config <config>`; its stdout.
async fn cli(config: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_canarist"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("CANARIST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "canarist {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn status(config: &Path) -> Value {
    let text = cli(
        config,
        &["rollout", "status", "--deployment", DEPLOYMENT, "--json"],
    )
    .await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("status JSON: {e}: {text}"))
}

/// Failed upstream calls in the store: (variant, error class, detail, count).
async fn upstream_errors(db: &Path) -> Vec<(String, String, String, i64)> {
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await
        .unwrap();
    sqlx::query_as(
        "SELECT variant, error_class, COALESCE(error_detail, ''), COUNT(*) FROM observations \
         WHERE error_class IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 10",
    )
    .fetch_all(&db)
    .await
    .unwrap()
}

/// What the clients saw.
#[derive(Default)]
struct ClientTally {
    sent: AtomicU64,
    from_stable: AtomicU64,
    json_answers: AtomicU64,
    failures: std::sync::Mutex<Vec<String>>,
}

/// One client request through the gateway; tallies who answered and whether it was JSON.
async fn one_request(http: &reqwest::Client, url: &str, i: usize, tally: &ClientTally) {
    tally.sent.fetch_add(1, Relaxed);
    let body = json!({
        "model": DEPLOYMENT,
        "messages": [{ "role": "user", "content": prompt(i) }],
        "max_tokens": 40,
        "temperature": 0,
        "user": format!("analyst-{i}"),
    });
    let result = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await;
    let r = match result {
        Ok(r) => r,
        Err(e) => {
            tally.failures.lock().unwrap().push(e.to_string());
            return;
        }
    };
    let variant = r
        .headers()
        .get("x-canarist-variant")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        tally
            .failures
            .lock()
            .unwrap()
            .push(format!("{status}: {v}"));
        return;
    }
    if variant == "stable" {
        tally.from_stable.fetch_add(1, Relaxed);
    }
    let content = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
    if serde_json::from_str::<Value>(content).is_ok_and(|c| c.is_object()) {
        tally.json_answers.fetch_add(1, Relaxed);
    }
}

#[tokio::test]
#[ignore = "needs real model servers: scripts/e2e-realllm.sh"]
async fn rollout_realllm_shadow_rolls_back_a_base_model_on_the_json_check() {
    let Some(servers) = servers() else {
        eprintln!(
            "rollout_realllm: CANARIST_REALLLM_STABLE_URL, CANARIST_REALLLM_CANDIDATE_URL or \
             CANARIST_REALLLM_URL is not set; skipped (run scripts/e2e-realllm.sh)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rubrics = dir.path().join("rubrics");
    std::fs::create_dir_all(&rubrics).unwrap();
    std::fs::write(
        rubrics.join("person-json.yaml"),
        rubric_yaml(&servers.judge),
    )
    .unwrap();
    let config = dir.path().join("canarist.yaml");
    std::fs::write(
        &config,
        config_yaml(&servers, &dir.path().join("canarist.db"), &rubrics),
    )
    .unwrap();

    let gateway = Gateway::start(&config).await;
    let t0 = Instant::now();
    let started = cli(
        &config,
        &[
            "rollout",
            "start",
            "--deployment",
            DEPLOYMENT,
            "--reason",
            "real-model e2e",
        ],
    )
    .await;
    assert!(started.contains("shadow"), "{started}");

    // Two clients, one request at a time each, until the rollout ends (or the deadline).
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(180))
        .build()
        .unwrap();
    let tally = Arc::new(ClientTally::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let next = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (http, url, tally, stop, next) = (
                http.clone(),
                gateway.url.clone(),
                tally.clone(),
                stop.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    let i = next.fetch_add(1, Relaxed) as usize;
                    one_request(&http, &url, i, &tally).await;
                }
            })
        })
        .collect();

    let mut last = Value::Null;
    let ended = loop {
        if t0.elapsed() > DEADLINE {
            break false;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        last = status(&config).await;
        if last["rollout"]["state"] == "rolled_back" {
            break true;
        }
    };
    let elapsed = t0.elapsed();
    stop.cancel();
    for c in clients {
        c.await.unwrap();
    }
    assert!(
        ended,
        "the rollout did not end within {DEADLINE:?}; last status: {last:#}\n{}",
        gateway.log_tail()
    );
    eprintln!(
        "rollout_realllm: rolled back after {:.1}s, {} client requests",
        elapsed.as_secs_f64(),
        tally.sent.load(Relaxed)
    );

    // Every client was answered, by stable, with the instruct model's JSON.
    let failures = tally.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "client failures: {failures:?}");
    let sent = tally.sent.load(Relaxed);
    assert!(sent >= 12, "{sent}");
    assert_eq!(
        tally.from_stable.load(Relaxed),
        sent,
        "shadow: stable answers"
    );
    assert!(
        tally.json_answers.load(Relaxed) * 10 >= sent * 8,
        "SmolLM2 answered with JSON: {} of {sent}",
        tally.json_answers.load(Relaxed)
    );

    // The gate rolled back, naming the check: in the audit log, by the gate, with its evidence.
    let log = cli(
        &config,
        &["rollout", "log", "--deployment", DEPLOYMENT, "--json"],
    )
    .await;
    let entries: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let rollback = entries
        .iter()
        .find(|e| e["to_state"] == "rolled_back")
        .unwrap_or_else(|| panic!("no rollback in the audit log: {log}"));
    eprintln!("rollout_realllm: {}", rollback["reason"]);
    eprintln!(
        "rollout_realllm: upstream errors {:?}",
        upstream_errors(&dir.path().join("canarist.db")).await
    );
    assert_eq!(rollback["actor"], "gate", "{rollback:#}");
    let failing = &rollback["evidence"]["failing"];
    assert_eq!(failing["metric"], CHECK_METRIC, "{rollback:#}");
    assert_eq!(failing["cohort"], "all", "{rollback:#}");
    assert_eq!(failing["evidence"]["verdict"], "worse", "{rollback:#}");
    assert!(
        rollback["reason"]
            .as_str()
            .is_some_and(|r| r.contains(CHECK_METRIC)),
        "{rollback:#}"
    );
    // Traffic is back on stable alone: nothing is mirrored any more.
    assert_eq!(last["rollout"]["candidate_percent"], 0.0, "{last:#}");

    // The stage report: the check separates the two variants, and the real judge scored pairs.
    let out = dir.path().join("report");
    cli(
        &config,
        &[
            "report",
            "--deployment",
            DEPLOYMENT,
            "--stage",
            "0",
            "--format",
            "json",
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .await;
    let report = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a JSON report");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["rollout"]["state"], "rolled_back");
    let schema = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cohort"] == "all" && c["check"] == "schema")
        .unwrap_or_else(|| panic!("the schema check in the report: {:#}", report["checks"]));
    eprintln!("rollout_realllm: schema check {schema}");
    let rate = |side: &str| schema[format!("{side}_pass_rate")].as_f64().unwrap();
    assert!(rate("stable") >= 0.8, "{schema:#}");
    assert!(rate("candidate") <= 0.2, "{schema:#}");
    let judged = report["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cohort"] == "all" && c["criterion"] == "completeness")
        .unwrap_or_else(|| {
            panic!(
                "no judged criterion in the report: {:#}\n{}",
                report["criteria"],
                gateway.log_tail()
            )
        });
    eprintln!("rollout_realllm: completeness {judged}");
    assert!(
        judged["stable_n"].as_u64().unwrap() + judged["candidate_n"].as_u64().unwrap() >= 1,
        "the real judge scored at least one answer: {judged:#}"
    );

    // The judgments in the store are the real judge's: stamped with its model and the rubric.
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        dir.path().join("canarist.db").display()
    ))
    .await
    .unwrap();
    /// (judge model, rubric, criterion, score, abstention reason)
    type Row = (String, String, String, Option<f64>, Option<String>);
    let rows: Vec<Row> =
        sqlx::query_as("SELECT judge_model, rubric_id, name, score, abstain_reason FROM judgments")
            .fetch_all(&db)
            .await
            .unwrap();
    assert!(!rows.is_empty(), "no judgments stored");
    for (model, rubric, criterion, score, abstained) in &rows {
        assert_eq!(
            (model.as_str(), rubric.as_str(), criterion.as_str()),
            (JUDGE_MODEL, RUBRIC_ID, "completeness")
        );
        // A judgment is a parsed score in 0–1, or an abstention with its reason and no score
        // (the tiny judge sometimes talks past `max_tokens`: `not_json`), never a default.
        match (score, abstained) {
            (Some(s), None) => assert!((0.0..=1.0).contains(s), "{rows:?}"),
            (None, Some(reason)) => assert!(!reason.is_empty(), "{rows:?}"),
            _ => panic!("a score or an abstention reason, not both or neither: {rows:?}"),
        }
    }
    assert!(
        rows.iter().any(|r| r.3.is_some()),
        "the real judge's output parsed at least once: {rows:?}"
    );
    eprintln!("rollout_realllm: {} judgments by {JUDGE_MODEL}", rows.len());
}
