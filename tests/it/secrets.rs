//! Secrets never reach logs or `Debug` output (issue 13, item 7): a webhook URL (a Slack webhook
//! URL is a credential), a `storage.url` with a password, a provider key. Logs are captured with
//! a test subscriber while a webhook fails, the store is unreachable and an upstream call fails,
//! and from the real binary's stderr when it cannot reach its store.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canarist::app::{Options, Runtime, Storage};
use canarist::capture::MemorySink;
use canarist::config::Config;
use canarist::rollout::alerts::{AlertEvent, AlertMessage, AlertOptions, Alerts};

const PROVIDER_KEY: &str = "sk-test-PROVIDERKEYSECRET1234";
const DB_PASSWORD: &str = "DBPASSWORDSECRET5678";
const WEBHOOK_TOKEN: &str = "WEBHOOKTOKENSECRET9012";
const SECRETS: [&str; 3] = [PROVIDER_KEY, DB_PASSWORD, WEBHOOK_TOKEN];

fn yaml() -> String {
    format!(
        r#"providers:
  dead:
    base_url: http://127.0.0.1:9/v1
    api_key_env: TEST_PROVIDER_KEY
    connect_timeout: 1s
storage:
  url: postgres://canarist:{DB_PASSWORD}@127.0.0.1:9/canarist
capture:
  sink: memory
deployments:
  - slug: chat
    stable: {{ provider: dead, model: m }}
    alerts: {{ webhook_url: "http://127.0.0.1:9/services/T000/B000/{WEBHOOK_TOKEN}", format: slack }}
"#
    )
}

fn env(name: &str) -> Option<String> {
    (name == "TEST_PROVIDER_KEY").then(|| PROVIDER_KEY.to_owned())
}

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} leaks `{secret}`:\n{text}");
    }
}

#[tokio::test]
async fn secrets_reach_neither_logs_nor_debug_output() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let config = Config::from_yaml(Path::new("secrets.yaml"), &yaml(), &env).unwrap();
    assert_no_secret("Config's Debug", &format!("{config:?}"));

    // The store is unreachable: the start fails, and says so without the password.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = match Runtime::start(config.clone(), listener).await {
        Ok(_) => panic!("the store at port 9 is unreachable"),
        Err(e) => e,
    };
    tracing::error!(error = %err, debug = ?err, "start failed");
    assert_no_secret("the start error", &format!("{err} {err:?}"));

    // An upstream call fails (the provider key was on it).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink = MemorySink::new();
    let options = Options {
        storage: Storage::Without,
        sink: Some(Arc::new(sink.clone())),
        grace: Duration::from_secs(2),
        ..Options::default()
    };
    let gateway = Runtime::start_with(config.clone(), listener, options)
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gateway.url()))
        .json(
            &serde_json::json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    gateway.shutdown().await;

    // A webhook fails, with every retry.
    let alerts = Alerts::spawn(AlertOptions {
        max_attempts: 2,
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
        timeout: Duration::from_secs(2),
        ..AlertOptions::default()
    });
    let target = config
        .alerts_of("chat")
        .expect("the deployment's alerts")
        .clone();
    assert_no_secret("AlertTarget's Debug", &format!("{target:?}"));
    alerts.send(
        &target,
        AlertMessage {
            event: AlertEvent::GuardrailTripped,
            deployment: "chat".into(),
            candidate: "c".into(),
            state: "live".into(),
            stage: 0,
            actor: "test".into(),
            reason: "test".into(),
            failing: None,
            evidence: serde_json::Value::Null,
            at: chrono::Utc::now(),
            links: None,
        },
    );
    alerts.drain(Duration::from_secs(10)).await;
    assert_eq!(
        alerts
            .stats()
            .failed
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    let text = logs.text();
    assert!(text.contains("alert webhook failed"), "{text}");
    assert!(text.contains("start failed"), "{text}");
    assert_no_secret("the logs", &text);
}

#[test]
fn the_binary_says_nothing_secret_when_its_store_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("canarist.yaml");
    std::fs::write(&path, yaml()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_canarist"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .env("TEST_PROVIDER_KEY", PROVIDER_KEY)
        .env("CANARIST_LOG", "debug")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the store at port 9 is unreachable");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stderr.contains("storage.url"), "{stderr}");
    assert_no_secret("stderr", &stderr);
    assert_no_secret("stdout", &stdout);
}
