//! Rollouts end to end: the real gateway (`app::Runtime`, as `canarist serve` starts it) in front of the real mock
//! upstream, capturing into the store, with the rollout controller, guardrails and alert
//! webhooks running as `canarist serve` runs them. SQLite always; Postgres too when
//! `DATABASE_URL` is set (a fresh database per test), including two `canarist serve` processes
//! on one database.

/// Approval stages (`approval: required`).
mod approval;
/// Heavy users at a 10% live stage: promoted on units, a failing candidate rolled back.
mod heavy_users;
/// A tool-calling candidate that breaks one route's tool schema, rolled back in that cohort.
mod tools;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canarist::app::Runtime;
use canarist::config::Config;
use canarist::mock::{MockConfig, MockServer, Profile};
use canarist::rollout::actions::{self, Actor, RolloutCtx};
use canarist::rollout::controller::Controller;
use canarist::store::{Store, StoreSink};
use serde_json::Value;

use crate::store::{TestDb, backends};
use crate::support::{chat_body, config_yaml, gateway};

const DEPLOYMENT: &str = "chat";

/// A local webhook receiver: every POSTed JSON body, in order.
struct Hooks {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Hooks {
    async fn start() -> Hooks {
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let store = bodies.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let store = store.clone();
                async move {
                    store.lock().unwrap().push(v);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Hooks { url, bodies }
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    async fn wait_for(&self, pred: impl Fn(&Value) -> bool) -> Value {
        eventually("the alert webhook", || {
            let found = self.bodies().into_iter().find(|b| pred(b));
            async move { found }
        })
        .await
    }
}

/// Polls `f` every 20 ms until it yields `Some` (at most 20 s; a deadline, not a measurement).
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..1_000 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn mock_config() -> MockConfig {
    MockConfig::builtin()
        .unwrap()
        .with_model("mock-cand", Profile::default())
}

/// The test config: mock provider, the store at `db`, a 100 ms controller tick, and `rest`.
fn config(mock: &MockServer, db: &str, rest: &str) -> Config {
    let yaml = config_yaml(
        &mock.base_url(),
        &format!(
            "storage: {{ url: \"{db}\" }}\ncontroller: {{ tick: 100ms, leader_retry: 100ms }}\n{rest}"
        ),
    );
    Config::from_yaml(std::path::Path::new("rollout-test.yaml"), &yaml, &|_| None)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A gateway replica with its rollout runtime, as `canarist serve` runs them.
struct Node {
    server: Runtime,
    store: Store,
    client: reqwest::Client,
}

impl Node {
    async fn start(config: &Config, db: &TestDb) -> Node {
        let store = db.store().await;
        let options = canarist::app::Options {
            sink: Some(Arc::new(StoreSink::new(store.clone()))),
            ..gateway::with_store(&store)
        };
        let server = gateway::start(config.clone(), options).await;
        Node {
            server,
            store,
            client: reqwest::Client::new(),
        }
    }

    fn ctx(&self) -> &RolloutCtx {
        &self.server.rollouts().expect("rollouts run").ctx
    }

    /// One chat request as `unit`: (status, serving variant, stage).
    async fn chat(&self, unit: &str) -> (u16, String, String) {
        let r = self
            .client
            .post(format!("{}/v1/chat/completions", self.server.url()))
            .header("x-canarist-unit", unit)
            .json(&chat_body(DEPLOYMENT, "hello"))
            .send()
            .await
            .unwrap();
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let out = (
            r.status().as_u16(),
            header("x-canarist-variant"),
            header("x-canarist-stage"),
        );
        let _ = r.bytes().await;
        out
    }

    /// Waits until this gateway routes under `stage` (a change made outside it, as by the CLI,
    /// arrives through the config-version watch).
    async fn wait_stage(&self, stage: &str) {
        eventually(&format!("stage `{stage}` on the gateway"), || async {
            let table = self.server.gateway().traffic.load();
            let live = table
                .by_slug(DEPLOYMENT)
                .map(|d| d.deployment.stage.clone());
            (live.as_deref() == Some(stage)).then_some(())
        })
        .await;
    }

    async fn stop(self) {
        self.server.shutdown().await;
        self.store.close().await;
    }
}

fn actor(id: &str) -> Actor {
    Actor::new(id)
}

/// The state and stage of the deployment's latest rollout.
async fn latest(ctx: &RolloutCtx) -> (String, u32) {
    let r = ctx.store.rollouts(DEPLOYMENT).await.unwrap();
    let r = r.first().expect("a rollout");
    (r.state.clone(), r.stage_index)
}

const RESTART: &str = r#"
deployments:
  - slug: chat
    stable: { provider: mock, model: mock-fast }
    candidates: [{ name: cand, provider: mock, model: mock-cand }]
    ramp:
      stages:
        - { shadow: 100, min_duration: 0s, min_judged_pairs: 0, max_duration: 1h }
        - { percent: 50, min_duration: 1h, min_judged_pairs: 0, max_duration: 2h }
        - { percent: 100, min_duration: 0s, min_judged_pairs: 0 }
    gate:
      # At 40 error-free units per side the sequence's half-width was about 0.10; Studentized
      # for its few units (t with 39 degrees of freedom) it needs a few more to clear 0.15.
      metrics: [{ name: error_rate, kind: error_rate, margin: 0.15, ceiling: 0.5 }]
      min_samples: 10
"#;

#[tokio::test]
async fn transitions_are_persisted_and_a_restart_resumes_the_stage() {
    for db in backends().await {
        let mock = MockServer::start(mock_config()).await.unwrap();
        let cfg = config(&mock, &db.url, RESTART);
        let a = Node::start(&cfg, &db).await;
        let r = actions::start(a.ctx(), DEPLOYMENT, &actor("cli"), "begin")
            .await
            .unwrap();
        assert_eq!(
            (r.state.as_str(), r.stage_index),
            ("shadow", 0),
            "{}",
            db.label
        );
        let err = actions::start(a.ctx(), DEPLOYMENT, &actor("cli"), "again")
            .await
            .unwrap_err();
        assert_eq!(err.status_code(), 409, "{err}");
        a.wait_stage("shadow").await;

        // Shadow traffic without errors: the gate promotes to stage 1 (50% live) — 80 units,
        // as the unit-level sequence is Studentized for its few units.
        for i in 0..80 {
            let (status, variant, stage) = a.chat(&format!("u{i}")).await;
            if i >= 40 && stage != "shadow" {
                break;
            }
            assert_eq!((status, variant.as_str()), (200, "stable"));
            assert_eq!(stage, "shadow");
        }
        a.wait_stage("canary-1").await;
        assert_eq!(latest(a.ctx()).await, ("canary".into(), 1));
        actions::pause(a.ctx(), DEPLOYMENT, &actor("ops"), "look")
            .await
            .unwrap();
        let err = actions::promote(a.ctx(), DEPLOYMENT, &actor("ops"), "too early")
            .await
            .unwrap_err();
        assert_eq!(err.status_code(), 409, "paused: {err}");
        actions::resume(a.ctx(), DEPLOYMENT, &actor("ops"), "fine")
            .await
            .unwrap();

        // Stage 1 traffic, some of it served by the candidate.
        let mut served_by_cand = 0;
        for i in 0..40 {
            let (status, variant, stage) = a.chat(&format!("v{i}")).await;
            assert_eq!((status, stage.as_str()), (200, "canary-1"));
            served_by_cand += usize::from(variant == "cand");
        }
        assert!(
            served_by_cand > 0 && served_by_cand < 40,
            "{served_by_cand}"
        );
        let before = eventually("stage 1 observations in the store", || async {
            let s = actions::status(a.ctx(), DEPLOYMENT).await.unwrap();
            let n: u64 = s.live.iter().map(|l| l.requests).sum();
            (n >= 40).then_some(s)
        })
        .await;
        let view = before.rollout.clone().unwrap();
        assert_eq!((view.state.as_str(), view.stage), ("canary", 1));
        assert_eq!((view.mode.as_str(), view.candidate_percent), ("live", 50.0));
        let decision = before.decision.clone().unwrap();
        assert_eq!(
            decision.action,
            canarist::gate::Action::Hold,
            "{decision:?}"
        );

        // Every transition is in the audit log with actor, reason and evidence.
        let log = actions::audit_log(a.ctx(), DEPLOYMENT).await.unwrap();
        let steps: Vec<(&str, &str, &str)> = log
            .iter()
            .map(|t| (t.from_state.as_str(), t.to_state.as_str(), t.actor.as_str()))
            .collect();
        assert_eq!(
            steps,
            vec![
                ("", "draft", "cli"),
                ("draft", "shadow", "cli"),
                ("shadow", "canary", "gate"),
                ("canary", "paused", "ops"),
                ("paused", "canary", "ops"),
            ],
            "{}",
            db.label
        );
        assert!(log.iter().all(|t| !t.reason.is_empty()), "{log:?}");
        let promotion = &log[2];
        assert_eq!(promotion.evidence["kind"], "gate");
        assert_eq!(promotion.evidence["decision"]["action"], "promote");
        assert_eq!(
            promotion.evidence["decision"]["evidence"][0]["metric"],
            "error_rate"
        );
        assert!(
            log.windows(2)
                .all(|w| w[1].config_version > w[0].config_version)
        );
        a.stop().await;

        // A new gateway and controller on the same database: same stage, same start, same data.
        let b = Node::start(&cfg, &db).await;
        let after = actions::status(b.ctx(), DEPLOYMENT).await.unwrap();
        let resumed = after.rollout.clone().unwrap();
        assert_eq!((resumed.state.as_str(), resumed.stage), ("canary", 1));
        assert_eq!(resumed.stage_started_at, view.stage_started_at);
        let count = |s: &actions::RolloutStatus| -> u64 { s.live.iter().map(|l| l.requests).sum() };
        assert_eq!(count(&after), count(&before), "accumulated data is kept");
        let mut c = Controller::new(b.ctx().clone(), None);
        let tick = c.tick().await;
        assert_eq!(tick.len(), 1);
        let held = tick[0].result.as_ref().unwrap();
        assert_eq!((held.state.as_str(), held.stage_index), ("canary", 1));
        assert_eq!(
            tick[0].decision.as_ref().map(|d| d.action),
            Some(canarist::gate::Action::Hold)
        );
        let (_, _, stage) = b.chat("v0").await;
        assert_eq!(stage, "canary-1", "the new gateway serves the stored stage");
        // Manual promotion past the last stage makes the candidate the new stable.
        actions::promote(b.ctx(), DEPLOYMENT, &actor("ops"), "go")
            .await
            .unwrap();
        let done = actions::promote(b.ctx(), DEPLOYMENT, &actor("ops"), "all in")
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", db.label));
        assert_eq!(done.state, "promoted");
        // Made outside this gateway (as by the CLI): in force once the version watch re-reads.
        eventually("the promoted candidate to serve as stable", || async {
            let before_cand = mock.request_count("mock-cand");
            let (status, variant, stage) = b.chat("anyone").await;
            let promoted =
                (status, variant.as_str(), stage.as_str()) == (200, "stable", "promoted");
            (promoted && mock.request_count("mock-cand") == before_cand + 1).then_some(())
        })
        .await;
        b.stop().await;
        db.cleanup().await;
    }
}

const GATE_ROLLBACK: &str = r#"
deployments:
  - slug: chat
    stable: { provider: mock, model: mock-fast }
    candidates: [{ name: cand, provider: mock, model: mock-500 }]
    ramp:
      stages:
        - { percent: 50, min_duration: 1h, min_judged_pairs: 0 }
    gate:
      metrics: [{ name: error_rate, kind: error_rate, margin: 0.02, ceiling: 0.2 }]
      min_samples: 10
    alerts: { webhook_url: "HOOK", format: json }
"#;

#[tokio::test]
async fn a_gate_rollback_sends_the_next_request_to_stable_and_fires_the_webhook() {
    for db in backends().await {
        let mock = MockServer::start(mock_config()).await.unwrap();
        let hooks = Hooks::start().await;
        let cfg = config(&mock, &db.url, &GATE_ROLLBACK.replace("HOOK", &hooks.url));
        let node = Node::start(&cfg, &db).await;
        actions::start(node.ctx(), DEPLOYMENT, &actor("cli"), "canary")
            .await
            .unwrap();
        node.wait_stage("canary-0").await;
        let units: Vec<String> = (0..60).map(|i| format!("user-{i}")).collect();
        let mut candidate_units = Vec::new();
        for u in &units {
            let (status, variant, _) = node.chat(u).await;
            if variant == "cand" {
                assert_eq!(status, 500, "mock-500 answers 500");
                candidate_units.push(u.clone());
            }
        }
        assert!(candidate_units.len() >= 10, "{}", candidate_units.len());
        let hook = hooks.wait_for(|b| b["event"] == "rolled_back").await;
        assert_eq!(hook["deployment"], DEPLOYMENT);
        assert_eq!(hook["failing"]["metric"], "error_rate", "{hook}");
        assert_eq!(hook["failing"]["cohort"], "all");
        assert_eq!(hook["failing"]["evidence"]["verdict"], "worse");
        assert_eq!(hook["actor"], "gate");

        // The alert goes out after the traffic swap: the very next requests are stable's.
        let cand_calls = mock.request_count("mock-500");
        for u in &candidate_units {
            let (status, variant, stage) = node.chat(u).await;
            assert_eq!((status, variant.as_str()), (200, "stable"), "{}", db.label);
            assert_eq!(stage, "rolled_back");
        }
        assert_eq!(mock.request_count("mock-500"), cand_calls);

        let log = actions::audit_log(node.ctx(), DEPLOYMENT).await.unwrap();
        let last = log.last().unwrap();
        assert_eq!(
            (last.to_state.as_str(), last.actor.as_str()),
            ("rolled_back", "gate")
        );
        assert_eq!(last.evidence["failing"]["metric"], "error_rate");
        assert_eq!(latest(node.ctx()).await.0, "rolled_back");
        let err = actions::rollback(node.ctx(), DEPLOYMENT, &actor("ops"), "again")
            .await
            .unwrap_err();
        assert_eq!(err.status_code(), 404, "no rollout in progress: {err}");
        node.stop().await;
        db.cleanup().await;
    }
}

const GUARDRAIL: &str = r#"
deployments:
  - slug: chat
    stable: { provider: mock, model: mock-fast }
    candidates: [{ name: cand, provider: mock, model: mock-500 }]
    ramp:
      stages:
        - { percent: 50, min_duration: 1h, min_judged_pairs: 0 }
    guardrails: { bucket: 1s, buckets: 60, min_count: 10, error_ceiling: 0.5 }
    alerts: { webhook_url: "HOOK", format: slack }
"#;

#[tokio::test]
async fn a_guardrail_trip_rolls_back_a_failing_live_candidate() {
    for db in backends().await {
        let mock = MockServer::start(mock_config()).await.unwrap();
        let hooks = Hooks::start().await;
        let cfg = config(&mock, &db.url, &GUARDRAIL.replace("HOOK", &hooks.url));
        let node = Node::start(&cfg, &db).await;
        actions::start(node.ctx(), DEPLOYMENT, &actor("cli"), "canary")
            .await
            .unwrap();
        node.wait_stage("canary-0").await;
        let mut candidate_errors = 0;
        for i in 0..2_000 {
            let (_, variant, _) = node.chat(&format!("g{i}")).await;
            candidate_errors += usize::from(variant == "cand");
            if latest(node.ctx()).await.0 == "rolled_back" {
                break;
            }
        }
        assert_eq!(latest(node.ctx()).await.0, "rolled_back", "{}", db.label);
        assert!(candidate_errors >= 10, "tripped after {candidate_errors}");
        let log = actions::audit_log(node.ctx(), DEPLOYMENT).await.unwrap();
        let last = log.last().unwrap();
        assert_eq!(last.actor, "guardrail");
        assert!(last.reason.contains("guardrail tripped"), "{}", last.reason);
        assert_eq!(last.evidence["kind"], "guardrail");
        assert!(
            last.evidence["trip"]["candidate_errors"]["n"]
                .as_u64()
                .unwrap()
                >= 10
        );
        let hook = hooks
            .wait_for(|b| {
                b["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("rolled_back"))
            })
            .await;
        let text = hook["text"].as_str().unwrap();
        assert!(
            text.contains("`guardrail.error_rate` in cohort `all`"),
            "{text}"
        );
        let cand_calls = mock.request_count("mock-500");
        for i in 0..30 {
            let (status, variant, _) = node.chat(&format!("g{i}")).await;
            assert_eq!((status, variant.as_str()), (200, "stable"));
        }
        assert_eq!(mock.request_count("mock-500"), cand_calls);
        node.stop().await;
        db.cleanup().await;
    }
}

const AA_GUARDRAIL: &str = r#"
deployments:
  - slug: chat
    stable: { provider: mock, model: mock-500 }
    candidates: [{ name: cand, provider: mock, model: mock-fast }]
    aa_percent: 100
    ramp:
      stages:
        - { shadow: 10, min_duration: 1h, min_judged_pairs: 0 }
    guardrails: { bucket: 1s, buckets: 60, min_count: 10, error_ceiling: 0.5 }
"#;

/// Stable fails every call, so the A/A arm's second stable calls fail too: they are stable's
/// failures, and the candidate's guardrail (which would trip on 10 failures) never sees them.
#[tokio::test]
async fn the_aa_arm_never_reaches_the_candidates_guardrail() {
    for db in backends().await {
        let mock = MockServer::start(mock_config()).await.unwrap();
        let cfg = config(&mock, &db.url, AA_GUARDRAIL);
        let node = Node::start(&cfg, &db).await;
        actions::start(
            node.ctx(),
            DEPLOYMENT,
            &actor("cli"),
            "shadow with an A/A arm",
        )
        .await
        .unwrap();
        node.wait_stage("shadow").await;
        for i in 0..200 {
            let (status, variant, _) = node.chat(&format!("aa{i}")).await;
            assert_eq!((status, variant.as_str()), (500, "stable"), "{}", db.label);
        }
        // Every request was served by stable; ~90% were not mirrored and went to the A/A arm.
        let aa_failures = eventually("the A/A observations in the store", || async {
            let summary = node
                .store
                .stage_summary(canarist::store::SummaryScope::new(DEPLOYMENT, "shadow"))
                .await
                .unwrap();
            let arm = summary.aa.variants.iter().find(|v| v.cohort.is_none())?;
            (arm.requests >= 100).then(|| arm.error_count())
        })
        .await;
        assert!(aa_failures >= 100, "{}: {aa_failures}", db.label);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(latest(node.ctx()).await.0, "shadow", "{}", db.label);
        let log = actions::audit_log(node.ctx(), DEPLOYMENT).await.unwrap();
        assert!(
            log.iter().all(|e| e.actor != "guardrail"),
            "{}: {log:?}",
            db.label
        );
        node.stop().await;
        db.cleanup().await;
    }
}

const TIMEOUT: &str = r#"
deployments:
  - slug: chat
    stable: { provider: mock, model: mock-fast }
    candidates: [{ name: cand, provider: mock, model: mock-cand }]
    ramp:
      stages:
        - { shadow: 50, min_duration: 0s, min_judged_pairs: 0, max_duration: 300ms }
        - { percent: 10 }
    gate:
      metrics: [{ name: error_rate, kind: error_rate, margin: 0.02, ceiling: 0.2 }]
      min_samples: 1000
    alerts: { webhook_url: "HOOK", format: json }
"#;

#[tokio::test]
async fn a_stage_past_its_maximum_duration_holds_and_alerts_once() {
    for db in backends().await {
        let mock = MockServer::start(mock_config()).await.unwrap();
        let hooks = Hooks::start().await;
        let cfg = config(&mock, &db.url, &TIMEOUT.replace("HOOK", &hooks.url));
        let node = Node::start(&cfg, &db).await;
        actions::start(node.ctx(), DEPLOYMENT, &actor("cli"), "slow stage")
            .await
            .unwrap();
        let hook = hooks.wait_for(|b| b["event"] == "stage_timeout").await;
        assert_eq!(hook["state"], "shadow");
        assert_eq!(hook["stage"], 0);
        assert!(
            hook["reason"]
                .as_str()
                .unwrap()
                .contains("maximum duration"),
            "{hook}"
        );
        // Further ticks hold without alerting again, in this controller or a new one.
        let mut fresh = Controller::new(node.ctx().clone(), None);
        for _ in 0..3 {
            let t = fresh.tick().await;
            let r = t[0].result.as_ref().unwrap();
            assert_eq!((r.state.as_str(), r.stage_index), ("shadow", 0));
        }
        let log = actions::audit_log(node.ctx(), DEPLOYMENT).await.unwrap();
        let timeouts = log
            .iter()
            .filter(|t| t.evidence["kind"] == "stage_timeout")
            .count();
        assert_eq!(timeouts, 1, "{log:?}");
        assert_eq!(latest(node.ctx()).await, ("shadow".into(), 0));
        let alerts = hooks
            .bodies()
            .iter()
            .filter(|b| b["event"] == "stage_timeout")
            .count();
        assert_eq!(alerts, 1);
        node.stop().await;
        db.cleanup().await;
    }
}

/// A `canarist serve` child process: its URL and every stderr line so far.
struct Child {
    process: tokio::process::Child,
    url: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Child {
    async fn spawn(config: &std::path::Path) -> Child {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let mut process = tokio::process::Command::new(env!("CARGO_BIN_EXE_canarist"))
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .env("CANARIST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut err_lines = BufReader::new(process.stderr.take().unwrap()).lines();
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        let mut out_lines = BufReader::new(process.stdout.take().unwrap()).lines();
        let url = loop {
            let line = tokio::time::timeout(Duration::from_secs(30), out_lines.next_line())
                .await
                .expect("serve starts")
                .unwrap()
                .unwrap_or_else(|| panic!("serve exited: {:?}", stderr.lock().unwrap()));
            if let Some(url) = line.strip_prefix("canarist listening on ") {
                break url.trim().to_owned();
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = out_lines.next_line().await {} });
        Child {
            process,
            url,
            stderr,
        }
    }

    fn leads(&self) -> bool {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("rollout controller is leader"))
    }

    async fn variant(&self, client: &reqwest::Client, unit: &str) -> String {
        let r = client
            .post(format!("{}/v1/chat/completions", self.url))
            .header("x-canarist-unit", unit)
            .json(&chat_body(DEPLOYMENT, "hi"))
            .send()
            .await
            .unwrap();
        r.headers()["x-canarist-variant"]
            .to_str()
            .unwrap()
            .to_owned()
    }
}

async fn cli(config: &std::path::Path, action: &str) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_canarist"))
        .args([
            "rollout",
            action,
            "--deployment",
            DEPLOYMENT,
            "--reason",
            "from the test",
        ])
        .arg("--config")
        .arg(config)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "rollout {action}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test]
async fn two_serve_processes_on_postgres_share_rollbacks_and_hand_over_leadership() {
    let Some(db) = backends().await.into_iter().find(|d| d.pg.is_some()) else {
        eprintln!("DATABASE_URL not set: skipping the two-process Postgres test");
        return;
    };
    let mock = MockServer::start(mock_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("canarist.yaml");
    let rest = format!(
        "storage: {{ url: \"{}\" }}\ncontroller: {{ tick: 100ms, leader_retry: 200ms }}\n{}",
        db.url,
        r#"
deployments:
  - slug: chat
    stable: { provider: mock, model: mock-fast }
    candidates: [{ name: cand, provider: mock, model: mock-cand }]
    ramp:
      stages:
        - { percent: 50, min_duration: 1h, min_judged_pairs: 0 }
"#
    );
    std::fs::write(&path, config_yaml(&mock.base_url(), &rest)).unwrap();
    let mut a = Child::spawn(&path).await;
    let mut b = Child::spawn(&path).await;
    let client = reqwest::Client::new();

    let started = cli(&path, "start").await;
    assert!(started.contains("is canary at stage 0"), "{started}");
    // A unit the candidate serves, on both replicas.
    let unit = eventually("a candidate-served unit on A", || async {
        for i in 0..50 {
            let u = format!("pg-{i}");
            if a.variant(&client, &u).await == "cand" {
                return Some(u);
            }
        }
        None
    })
    .await;
    eventually("B to serve the canary", || async {
        (b.variant(&client, &unit).await == "cand").then_some(())
    })
    .await;

    cli(&path, "rollback").await;
    let t0 = Instant::now();
    let mut in_force = Vec::new();
    for (name, child) in [("A", &a), ("B", &b)] {
        eventually("the rollback on every replica", || async {
            (child.variant(&client, &unit).await == "stable").then_some(())
        })
        .await;
        in_force.push(format!("{name} {} ms", t0.elapsed().as_millis()));
    }
    eprintln!("rollback in force after: {}", in_force.join(", "));
    let status = cli(&path, "status").await;
    assert!(status.contains("rolled_back"), "{status}");

    // Exactly one leads; killing it hands the lock to the other.
    let leader_is_a = eventually("a leader", || async {
        match (a.leads(), b.leads()) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        }
    })
    .await;
    let (dead, survivor) = if leader_is_a {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    dead.process.kill().await.unwrap();
    let t1 = Instant::now();
    eventually("the other replica to take the lock", || async {
        survivor.leads().then_some(())
    })
    .await;
    eprintln!(
        "leadership handed over after {} ms",
        t1.elapsed().as_millis()
    );
    let _ = a.process.kill().await;
    let _ = b.process.kill().await;
    db.cleanup().await;
}

/// A deployment without a ramp: its canaries come from `POST /api/v1/gateway/canary`, guarded
/// by the default guardrails (10% error ceiling, at least 100 candidate calls in the minute),
/// alerting to a webhook.
const API_CANARY: &str = r#"
deployments:
  - slug: chat
    stable: { provider: mock, model: mock-fast }
    alerts: { webhook_url: "HOOK", format: json }
"#;

/// Starts an admin-API canary of `mock-500` (every call fails) at 50% on `chat`.
async fn api_canary(node: &Node, key: &str, auto_rollback: bool) {
    let r = node
        .client
        .post(format!("{}/api/v1/gateway/canary", node.server.url()))
        .bearer_auth(key)
        .json(&serde_json::json!({
            "candidate_model": "mock-500", "stable_model": "mock-fast",
            "traffic_percent": 50, "auto_rollback": auto_rollback,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    node.wait_stage("canary").await;
}

#[tokio::test]
async fn an_api_canary_is_rolled_back_by_its_guardrail_unless_auto_rollback_is_off() {
    use canarist::http::admin::Role;
    use canarist::http::admin::keys::create_key;
    for db in backends().await {
        let mock = MockServer::start(mock_config()).await.unwrap();
        let hooks = Hooks::start().await;
        let cfg = config(&mock, &db.url, &API_CANARY.replace("HOOK", &hooks.url));
        let node = Node::start(&cfg, &db).await;
        let (key, _) = create_key(&node.store, "ops", Role::Admin, "test")
            .await
            .unwrap();
        let audit = |action: &'static str| {
            let store = node.store.clone();
            async move {
                store
                    .admin_audit(Some(DEPLOYMENT))
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|e| e.action == action)
                    .collect::<Vec<_>>()
            }
        };

        // auto_rollback on (the default): the trip takes the candidate's traffic away.
        api_canary(&node, &key, true).await;
        let mut served_by_candidate = 0;
        for i in 0..2_000 {
            let (_, variant, _) = node.chat(&format!("a{i}")).await;
            served_by_candidate += usize::from(variant != "stable");
            if !audit("traffic.rollback").await.is_empty() {
                break;
            }
        }
        let rollback = audit("traffic.rollback").await;
        assert_eq!(rollback.len(), 1, "{}: {rollback:?}", db.label);
        assert_eq!(rollback[0].actor, "guardrail");
        assert_eq!(
            rollback[0].detail["evidence"]["metric"], "guardrail.error_rate",
            "{:?}",
            rollback[0].detail
        );
        assert!(
            served_by_candidate >= 100,
            "the default guardrail waits for 100 candidate calls: {served_by_candidate}"
        );
        node.wait_stage("rolled_back").await;
        let hook = hooks.wait_for(|b| b["event"] == "rolled_back").await;
        assert_eq!(
            (
                &hook["actor"],
                &hook["failing"]["metric"],
                &hook["candidate"]
            ),
            (
                &Value::from("guardrail"),
                &Value::from("guardrail.error_rate"),
                &Value::from("mock-500")
            ),
            "{hook}"
        );
        let failing_calls = mock.request_count("mock-500");
        for i in 0..50 {
            let (status, variant, _) = node.chat(&format!("a{i}")).await;
            assert_eq!((status, variant.as_str()), (200, "stable"));
        }
        assert_eq!(mock.request_count("mock-500"), failing_calls);

        // auto_rollback off: the same failures are recorded (once) and the canary keeps serving.
        api_canary(&node, &key, false).await;
        for i in 0..2_000 {
            node.chat(&format!("b{i}")).await;
            if !audit("traffic.guardrail_tripped").await.is_empty() {
                break;
            }
        }
        let tripped = audit("traffic.guardrail_tripped").await;
        assert_eq!(tripped.len(), 1, "{}: {tripped:?}", db.label);
        assert_eq!(tripped[0].actor, "guardrail");
        assert_eq!(tripped[0].detail["auto_rollback"], false);
        let hook = hooks.wait_for(|b| b["event"] == "guardrail_tripped").await;
        assert!(
            hook["reason"]
                .as_str()
                .is_some_and(|r| r.contains("auto_rollback is off")),
            "{hook}"
        );
        let mut still_candidate = 0;
        for i in 0..200 {
            let (_, variant, stage) = node.chat(&format!("b{i}")).await;
            assert_eq!(stage, "canary");
            still_candidate += usize::from(variant != "stable");
        }
        assert!(still_candidate > 50, "{still_candidate} of 200");
        assert_eq!(audit("traffic.guardrail_tripped").await.len(), 1);
        assert_eq!(audit("traffic.rollback").await.len(), 1);
        node.stop().await;
        db.cleanup().await;
    }
}

const STAGE_EXCLUSION: &str = r#"
deployments:
  - slug: chat
    stable: { provider: mock, model: mock-fast }
    candidates: [{ name: cand, provider: mock, model: mock-cand }]
    cohorts:
      labels:
        tier: { metadata: tier }
    ramp:
      stages:
        - { percent: 40, min_duration: 1h, min_judged_pairs: 0, exclude_cohorts: ["tier=enterprise"] }
        - { percent: 50, min_duration: 1h, min_judged_pairs: 0 }
"#;

/// A ramp stage's `exclude_cohorts` keeps that cohort on stable in live traffic, and the next
/// stage, which excludes nothing, lets it in.
#[tokio::test]
async fn a_stage_cohort_exclusion_keeps_the_cohort_on_stable() {
    let db = backends().await.swap_remove(0);
    let mock = MockServer::start(mock_config()).await.unwrap();
    let node = Node::start(&config(&mock, &db.url, STAGE_EXCLUSION), &db).await;
    actions::start(node.ctx(), DEPLOYMENT, &actor("cli"), "canary")
        .await
        .unwrap();
    node.wait_stage("canary-0").await;
    let served = |tier: &'static str, stage: &'static str| {
        let node = &node;
        async move {
            let mut candidate = 0;
            for i in 0..200 {
                let mut body = chat_body(DEPLOYMENT, "hello");
                body["metadata"] = serde_json::json!({ "tier": tier });
                let r = node
                    .client
                    .post(format!("{}/v1/chat/completions", node.server.url()))
                    .header("x-canarist-unit", format!("{tier}-{i}"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                assert_eq!(r.headers()["x-canarist-stage"], stage);
                candidate += usize::from(r.headers()["x-canarist-variant"] == "cand");
            }
            candidate
        }
    };
    assert_eq!(served("enterprise", "canary-0").await, 0);
    let free = served("free", "canary-0").await;
    assert!(
        (70..=130).contains(&free),
        "{free} of 200 free units at 50%"
    );
    actions::promote(node.ctx(), DEPLOYMENT, &actor("cli"), "next stage")
        .await
        .unwrap();
    node.wait_stage("canary-1").await;
    let enterprise = served("enterprise", "canary-1").await;
    assert!((70..=130).contains(&enterprise), "{enterprise} of 200");
    node.stop().await;
    db.cleanup().await;
}
