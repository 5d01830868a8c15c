//! The real gateway (in process, on a real socket) in front of the mock upstream, capturing into
//! one of the suite's databases: what the capture tests of the store drive.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use canarist::app::Runtime;
use canarist::capture::Pair;
use canarist::config::Config;
use canarist::mock::{MockConfig, MockServer, Profile};
use canarist::store::{Store, StoreSink};
use serde_json::{Value, json};
use uuid::Uuid;

use super::TestDb;

/// A shadow deployment `chat` (stable `mock-stable`, candidate `cand` on every unit, so every
/// request makes two observations and one pair) with a `tier` label read from `metadata`.
pub(crate) fn shadow_config(mock_url: &str, db_url: &str, capture: &str) -> String {
    format!(
        "providers:\n  mock: {{ base_url: \"{mock_url}\", timeout: 10s }}\n\
         storage: {{ url: \"{db_url}\" }}\n\
         capture: {{ {capture} }}\n\
         deployments:\n  - slug: chat\n    model: chat\n    mode: shadow\n    stage: s1\n    \
         stable: {{ provider: mock, model: mock-stable }}\n    \
         candidates: [ {{ name: cand, provider: mock, model: mock-cand, percent: 100 }} ]\n    \
         cohorts:\n      labels: {{ tier: {{ metadata: tier }} }}\n"
    )
}

pub(crate) fn mock_config() -> MockConfig {
    MockConfig::builtin()
        .unwrap()
        .with_model("mock-cand", Profile::default())
}

pub(crate) struct StoreGateway {
    pub(crate) _mock: MockServer,
    pub(crate) server: Runtime,
    pub(crate) client: reqwest::Client,
}

impl StoreGateway {
    /// The gateway over `store` with `shadow_config(…, capture)`; its config file is `config_path`
    /// (the spool lives next to it).
    pub(crate) async fn start(
        db: &TestDb,
        store: &Store,
        capture: &str,
        config_path: &std::path::Path,
    ) -> Self {
        let mock = MockServer::start(mock_config()).await.unwrap();
        let yaml = shadow_config(&mock.base_url(), &db.url, capture);
        let config =
            Config::from_yaml(config_path, &yaml, &|_| None).unwrap_or_else(|e| panic!("{e}"));
        let sink = Arc::new(StoreSink::new(store.clone()));
        let server = crate::support::gateway::start(
            config,
            crate::support::gateway::gateway_only(store, sink),
        )
        .await;
        Self {
            _mock: mock,
            server,
            client: reqwest::Client::new(),
        }
    }

    /// One chat request from `user` (cohort `tier`, prompt `prompt`); its request id.
    pub(crate) async fn send(&self, user: &str, tier: &str, prompt: &str) -> Uuid {
        let r = self
            .client
            .post(format!("{}/v1/chat/completions", self.server.url()))
            .json(&json!({
                "model": "chat", "user": user, "metadata": {"tier": tier},
                "messages": [{"role": "user", "content": prompt}]
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        r.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    pub(crate) async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.server.url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The ids of the observations and of the pairs stored for `request_id`.
pub(crate) async fn rows_of(
    store: &Store,
    db: &TestDb,
    request_id: Uuid,
) -> (Vec<Uuid>, Vec<Uuid>) {
    match store.pg_pool() {
        Some(pool) => {
            let o = sqlx::query_scalar("SELECT id FROM observations WHERE request_id = $1")
                .bind(request_id)
                .fetch_all(pool)
                .await
                .unwrap();
            let p = sqlx::query_scalar("SELECT id FROM pairs WHERE request_id = $1")
                .bind(request_id)
                .fetch_all(pool)
                .await
                .unwrap();
            (o, p)
        }
        None => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let o = sqlx::query_scalar("SELECT id FROM observations WHERE request_id = $1")
                .bind(request_id)
                .fetch_all(&pool)
                .await
                .unwrap();
            let p = sqlx::query_scalar("SELECT id FROM pairs WHERE request_id = $1")
                .bind(request_id)
                .fetch_all(&pool)
                .await
                .unwrap();
            pool.close().await;
            (o, p)
        }
    }
}

/// Waits (up to `within`) until every request in `requests` has its two observations and its
/// pair stored; returns the requests still incomplete then.
pub(crate) async fn wait_stored(
    store: &Store,
    db: &TestDb,
    requests: &[Uuid],
    within: Duration,
) -> Vec<Uuid> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut missing = Vec::new();
        for &r in requests {
            let (o, p) = rows_of(store, db, r).await;
            if o.len() != 2 || p.len() != 1 {
                missing.push(r);
            }
        }
        if missing.is_empty() || tokio::time::Instant::now() >= deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The stored pair of `request_id` (both sides decoded), if any.
pub(crate) async fn pair_of_request(store: &Store, db: &TestDb, request_id: Uuid) -> Option<Pair> {
    let (_, pairs) = rows_of(store, db, request_id).await;
    store.pair(*pairs.first()?).await.unwrap()
}

/// The text of the first user message of a stored request body.
pub(crate) fn prompt_of(body: &Value) -> Option<&str> {
    body["messages"][0]["content"].as_str()
}

/// A TCP proxy in front of Postgres that the test can cut (port closed, connections dropped) and
/// restore on the same port.
pub(crate) struct CutProxy {
    port: u16,
    target: String,
    stop: tokio_util::sync::CancellationToken,
}

impl CutProxy {
    /// A proxy to the server of `admin_url` (`postgres://user@host:port/db`).
    pub(crate) async fn start(admin_url: &str) -> Self {
        let rest = admin_url.split_once("://").unwrap().1;
        let authority = rest.split('/').next().unwrap();
        let target = authority
            .rsplit_once('@')
            .map_or(authority, |(_, h)| h)
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(super::replicas::proxy(
            listener,
            target.clone(),
            stop.clone(),
        ));
        Self { port, target, stop }
    }

    /// The URL of database `name` through the proxy.
    pub(crate) fn url(&self, admin_url: &str, name: &str) -> String {
        super::pg_url(admin_url, Some(self.port), name)
    }

    pub(crate) fn cut(&self) {
        self.stop.cancel();
    }

    pub(crate) async fn restore(&mut self) {
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("rebinding the proxy port: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot rebind the proxy port: {e}"),
            }
        };
        self.stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(super::replicas::proxy(
            listener,
            self.target.clone(),
            self.stop.clone(),
        ));
    }
}
