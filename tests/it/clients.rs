//! Real clients and the real binary: async-openai works against canarist unchanged, and
//! `canarist serve --config fixtures/quickstart.yaml` in front of `canarist mock-upstream`
//! captures pairs to its JSONL file.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
};
use futures::StreamExt;

use crate::support::Harness;

const SHADOW: &str = r#"
deployments:
  - slug: quickstart
    mode: shadow
    stable: { provider: mock, model: mock-stable }
    candidates: [ { name: candidate, provider: mock, model: mock-candidate-good, percent: 100 } ]
"#;

fn request(stream: bool) -> async_openai::types::chat::CreateChatCompletionRequest {
    let mut args = CreateChatCompletionRequestArgs::default();
    args.model("quickstart")
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("How do I reset my password?")
            .build()
            .unwrap()
            .into()]);
    if stream {
        args.stream(true);
    }
    args.build().unwrap()
}

#[tokio::test]
async fn async_openai_works_unchanged() {
    let h = Harness::start(canarist::mock::MockConfig::builtin().unwrap(), SHADOW).await;
    let client = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/v1", h.gateway.url()))
            .with_api_key("sk-unused"),
    );
    let plain = client.chat().create(request(false)).await.unwrap();
    let answer = plain.choices[0].message.content.clone().unwrap();
    assert!(!answer.is_empty());
    assert!(plain.usage.is_some());

    let mut stream = client.chat().create_stream(request(true)).await.unwrap();
    let mut text = String::new();
    let mut finish = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        for c in chunk.choices {
            text.push_str(c.delta.content.as_deref().unwrap_or_default());
            finish = finish.or(c.finish_reason);
        }
    }
    assert!(!text.is_empty());
    assert!(finish.is_some());
    h.wait_pairs(2).await;
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and waits for the line that carries its URL.
fn spawn(args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_canarist"))
        .args(args)
        .env("CANARIST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let line = lines.next().unwrap().unwrap();
    std::thread::spawn(move || for _ in lines {});
    let url = line[line.find("http://").unwrap()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    (Proc(child), url)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_quickstart_binary_captures_pairs_to_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let mock_port = free_port();
    let (_mock, mock_url) = spawn(&[
        "mock-upstream",
        "--listen",
        &format!("127.0.0.1:{mock_port}"),
    ]);
    assert!(mock_url.contains(&mock_port.to_string()));
    let capture = dir.path().join("q.jsonl");
    let quickstart = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/quickstart.yaml"
    ))
    .unwrap()
    .replace("127.0.0.1:9090", &format!("127.0.0.1:{mock_port}"))
    .replace("captures/quickstart.jsonl", capture.to_str().unwrap())
        + &format!(
            "\nstorage:\n  url: sqlite://{}\n",
            dir.path().join("c.db").display()
        );
    let config = dir.path().join("quickstart.yaml");
    std::fs::write(&config, quickstart).unwrap();
    let (_gw, gw_url) = spawn(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);

    let client = reqwest::Client::new();
    let r = client
        .post(format!("{gw_url}/v1/chat/completions"))
        .json(&serde_json::json!({"model": "quickstart", "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-canarist-variant"], "stable");
    for _ in 0..500 {
        let text = std::fs::read_to_string(&capture).unwrap_or_default();
        if text.lines().any(|l| l.contains(r#""kind":"pair""#)) {
            let pair: serde_json::Value = serde_json::from_str(
                text.lines()
                    .find(|l| l.contains(r#""kind":"pair""#))
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(pair["deployment"], "quickstart");
            assert_eq!(pair["candidate"]["upstream_model"], "mock-candidate-good");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no pair written to {}", capture.display());
}

#[test]
fn a_broken_config_exits_with_every_problem() {
    let out = Command::new(env!("CARGO_BIN_EXE_canarist"))
        .args([
            "serve",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/config/broken.yaml"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.yaml: "), "{err}");
    assert!(err.contains("deployments[0].stable.provider"), "{err}");
    assert!(err.contains("capture.redact[0]"), "{err}");
}
