//! Slow and greedy clients (issue 13, item 5): the `server:` bounds, tested with raw sockets
//! against the real app on 127.0.0.1. Timeouts are configured short; nothing here asserts a
//! timing as performance, only what happens once a bound is passed.

use std::time::Duration;

use canarist::mock::MockConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Harness, metric_value};

const DEPLOYMENT: &str =
    "deployments:\n  - slug: chat\n    stable: { provider: mock, model: mock-stable }\n";

async fn harness(server: &str) -> Harness {
    Harness::start(
        MockConfig::builtin().unwrap(),
        &format!("server:\n{server}{DEPLOYMENT}"),
    )
    .await
}

async fn connect(h: &Harness) -> TcpStream {
    TcpStream::connect(h.gateway.addr()).await.unwrap()
}

/// Reads until the peer closes (EOF or reset), up to `limit`; `None` if it never did.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok().map(|()| out)
}

/// Sends a keep-alive `GET path` on `stream` and reads one whole response (no body expected
/// beyond `Content-Length`).
async fn get_keep_alive(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before answering");
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn partial_headers_are_closed_after_the_header_read_timeout() {
    let h = harness("  header_read_timeout: 300ms\n").await;
    let mut stream = connect(&h).await;
    stream
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: appl")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(
        answer.is_some(),
        "a connection that never finishes its headers is still open after 10 s"
    );
    // A complete request on a fresh connection is still served; left idle, that keep-alive
    // connection is closed too.
    let mut fresh = connect(&h).await;
    assert!(
        get_keep_alive(&mut fresh, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let idle = read_until_closed(&mut fresh, Duration::from_secs(10)).await;
    assert_eq!(
        idle.as_deref(),
        Some(&b""[..]),
        "an idle keep-alive connection is closed"
    );
}

#[tokio::test]
async fn a_trickling_body_stops_with_a_408_in_openai_json() {
    let h = harness("  body_read_timeout: 300ms\n").await;
    let mut stream = connect(&h).await;
    stream
        .write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{\"model\": \"chat\", ",
        )
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // One byte every 50 ms: never silent for long, never done.
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if writer.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&out).contains("}}") {
                break;
            }
        }
    })
    .await;
    trickle.abort();
    assert!(
        read.is_ok(),
        "the trickling body was still being read after 10 s"
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let json: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_else(|e| {
        panic!("{e}: {body}");
    });
    assert_eq!(json["error"]["code"], "request_timeout", "{json}");
    assert_eq!(json["error"]["type"], "invalid_request_error", "{json}");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed() {
    let h = harness("  max_connections: 2\n").await;
    let mut first = connect(&h).await;
    let mut second = connect(&h).await;
    assert!(
        get_keep_alive(&mut first, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        get_keep_alive(&mut second, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );

    let mut third = connect(&h).await;
    // The write may or may not land before the gateway closes the socket.
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let answer = read_until_closed(&mut third, Duration::from_secs(10))
        .await
        .expect("the connection beyond the cap is closed");
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));

    // A connection that ends frees its place.
    drop(first);
    let mut served = None;
    for _ in 0..100 {
        let mut next = connect(&h).await;
        let _ = next
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await;
        let answer = read_until_closed(&mut next, Duration::from_secs(5))
            .await
            .unwrap_or_default();
        if !answer.is_empty() {
            served = Some(String::from_utf8_lossy(&answer).into_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = served.expect("a place frees up once a connection ends");
    assert!(
        metric_value(&metrics, "canarist_http_connections_refused_total") >= 1.0,
        "{metrics}"
    );
    drop(second);
}

#[tokio::test]
async fn requests_beyond_the_in_flight_cap_get_503_with_retry_after() {
    let h = harness("  max_requests_in_flight: 1\n  body_read_timeout: 30s\n").await;
    // A request whose body never completes stays in flight.
    let mut held = connect(&h).await;
    held.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"model\": ",
    )
    .await
    .unwrap();

    let mut shed = None;
    for _ in 0..250 {
        let r = h.client.get(h.url("/v1/models")).send().await.unwrap();
        if r.status() == 503 {
            shed = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = shed.expect("a second request while one is in flight gets 503");
    let retry_after: u64 = r
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    assert_eq!(body["error"]["type"], "server_error", "{body}");

    // /metrics and /healthz stay reachable, and the metric counts the refusal.
    let metrics = h.metrics().await;
    assert!(
        metric_value(&metrics, "canarist_http_requests_shed_total") >= 1.0,
        "{metrics}"
    );

    // Once the held request ends, requests are served again.
    drop(held);
    let mut ok = false;
    for _ in 0..250 {
        if h.client
            .get(h.url("/v1/models"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the in-flight place is freed when its request ends");
}

#[tokio::test]
async fn server_bounds_have_defaults_and_refuse_zero() {
    let path = std::path::Path::new("t.yaml");
    let c = canarist::config::Config::from_yaml(path, "{}", &|_| None).unwrap();
    assert_eq!(c.server, canarist::config::ServerLimits::default());
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(30));
    assert_eq!(c.server.body_read_timeout, Duration::from_secs(60));
    assert_eq!(c.server.max_connections, 1024);
    assert_eq!(c.server.max_requests_in_flight, 512);
    let err = canarist::config::Config::from_yaml(
        path,
        "server: { max_connections: 0, header_read_timeout: 0s }",
        &|_| None,
    )
    .unwrap_err();
    let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        ["server.header_read_timeout", "server.max_connections"]
    );
}
