//! Captured bodies are the bytes that went over the wire: through the real gateway (served and
//! mirrored sides) into SQLite, the stored request body is byte for byte what the upstream
//! received and the stored response body what it sent — key order, whitespace and escapes
//! included — after the redaction rules, for chat completions, the Responses API (plain, and a
//! stream's terminal `response` object) and Anthropic Messages.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use canarist::config::Config;
use serde_json::{Value, json};

use crate::support::gateway;

const EMAIL: &str = "bob@example.com";

/// Odd on purpose: unsorted keys, spaces, escapes, a float with a trailing zero, an email.
const CHAT: &str = r#"{"object": "chat.completion", "id":"c1",  "model":"m", "created": 1,
  "choices":[{"index":0,"message":{"role":"assistant","content":"Hi bob@example.com, caf\u00e9 \"x\"\n"},"finish_reason":"stop"}],
  "usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}, "x": 1.50}"#;
const RESPONSE: &str = r#"{"model":"m",  "id":"r1", "object":"response", "status":"completed", "output":[{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Hi bob@example.com \u00e9","annotations":[]}]}], "usage":{"input_tokens":3,"output_tokens":2,"total_tokens":5}}"#;
const MESSAGE: &str = r#"{"type":"message", "id":"msg_1","role":"assistant","model":"m","content":[{"type":"text","text":"Hello bob@example.com"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":2}}"#;

/// An upstream that answers the constants above and records every body it receives.
async fn upstream(received: Arc<Mutex<Vec<Vec<u8>>>>) -> String {
    let json =
        |body: &'static str| ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    let record = move |body: Bytes| -> Value {
        received.lock().unwrap().push(body.to_vec());
        serde_json::from_slice(&body).unwrap()
    };
    let (r1, r2, r3) = (record.clone(), record.clone(), record);
    let app = axum::Router::new()
        .route(
            "/v1/chat/completions",
            post(move |body: Bytes| async move {
                r1(body);
                json(CHAT)
            }),
        )
        .route(
            "/v1/responses",
            post(move |body: Bytes| async move {
                if r2(body)["stream"] == true {
                    return sse();
                }
                json(RESPONSE)
            }),
        )
        .route(
            "/v1/messages",
            post(move |_: HeaderMap, body: Bytes| async move {
                r3(body);
                json(MESSAGE)
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn sse() -> Response {
    let created = r#"{"type":"response.created","sequence_number":0,"response":{"id":"r1","object":"response","model":"m","status":"in_progress","output":[]}}"#;
    let delta = r#"{"type":"response.output_text.delta","sequence_number":1,"output_index":0,"content_index":0,"delta":"Hi"}"#;
    let body = format!(
        "event: response.created\ndata: {created}\n\n\
         event: response.output_text.delta\ndata: {delta}\n\n\
         event: response.completed\ndata: {{\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{RESPONSE}}}\n\n"
    );
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

fn config(url: &str, db: &str) -> Config {
    let yaml = format!(
        r#"
providers:
  up: {{ base_url: "{url}", timeout: 5s }}
  anth: {{ base_url: "{url}", api: anthropic, api_key_env: KEY, timeout: 5s }}
storage: {{ url: "{db}" }}
capture:
  flush_interval: 10ms
  redact: ['[\w.+-]+@[\w-]+\.[\w.]+']
deployments:
  - slug: chat
    model: chat
    mode: shadow
    stable: {{ provider: up, model: up-stable }}
    candidates: [ {{ name: cand, provider: up, model: up-cand, percent: 100 }} ]
  - slug: claude
    model: claude
    mode: shadow
    stable: {{ provider: anth, model: up-stable }}
    candidates: [ {{ name: cand, provider: anth, model: up-cand, percent: 100 }} ]
"#
    );
    Config::from_yaml(Path::new("bodies.yaml"), &yaml, &|v| {
        (v == "KEY").then(|| "k".to_owned())
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// `(request_id, request_body, response_body)` text of every stored observation.
async fn stored(db: &str, want: usize) -> Vec<(String, String, String)> {
    let pool = sqlx::SqlitePool::connect(db).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT upstream_model, request_body, response_body FROM observations \
             WHERE request_body IS NOT NULL AND response_body IS NOT NULL",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        if rows.len() >= want || tokio::time::Instant::now() >= deadline {
            pool.close().await;
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn captured_bodies_are_the_bytes_sent_and_received_after_redaction() {
    let dbs = super::backends().await;
    let db = dbs.into_iter().find(|d| d.label == "sqlite").unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let url = upstream(received.clone()).await;
    let store = db.store().await;
    let server = gateway::start(config(&url, &db.url), gateway::with_store(&store)).await;
    let http = reqwest::Client::new();
    let prompt = format!("Mail {EMAIL}, please");
    let requests = [
        (
            "/v1/chat/completions",
            json!({"model": "chat",
            "messages": [{"role": "user", "content": prompt}]}),
            CHAT,
        ),
        (
            "/v1/responses",
            json!({"model": "chat", "input": prompt}),
            RESPONSE,
        ),
        (
            "/v1/responses",
            json!({"model": "chat", "input": prompt, "stream": true}),
            RESPONSE,
        ),
        (
            "/v1/messages",
            json!({"model": "claude", "max_tokens": 5,
            "messages": [{"role": "user", "content": prompt}]}),
            MESSAGE,
        ),
    ];
    for (path, body, _) in &requests {
        let r = http
            .post(format!("{}{path}", server.url()))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let text = r.text().await.unwrap();
        // What is kept never changes what is served.
        assert!(text.contains(EMAIL), "{path}: {text}");
    }
    // Two sides per request, each its own upstream call.
    let rows = stored(&db.url, 2 * requests.len()).await;
    assert_eq!(rows.len(), 2 * requests.len(), "{rows:#?}");
    let redact = |t: &str| t.replace(EMAIL, "[REDACTED]");
    let sent: Vec<String> = (received.lock().unwrap().iter())
        .map(|b| redact(std::str::from_utf8(b).unwrap()))
        .collect();
    let answers: Vec<String> = requests.iter().map(|(_, _, a)| redact(a)).collect();
    for (model, request_body, response_body) in &rows {
        assert!(
            answers.contains(response_body),
            "{model}: stored response is not the upstream's bytes: {response_body}"
        );
        assert!(
            sent.contains(request_body),
            "{model}: stored request is not the bytes sent: {request_body}\nsent: {sent:#?}"
        );
        assert!(!request_body.contains(EMAIL) && !response_body.contains(EMAIL));
    }
    server.shutdown().await;
    store.close().await;
    db.cleanup().await;
}
