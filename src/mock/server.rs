//! The mock server's shared state (bounded request log, per-model counters, stream release
//! gate, shutdown) and [`MockServer`], which runs it on a real socket for tests and benches.
//!
//! Owns: what the mock remembers about requests, and the server's lifecycle. Never: logs per
//! request or touches files, so that it stays light under load. Fails closed: a request for a
//! model it does not know is answered 404.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::serve::ListenerExt;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::{MockConfig, MockError, Profile};

/// One request as the mock received it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    /// Position among all requests this server received (0, 1, …).
    pub seq: u64,
    pub path: String,
    /// The `model` field, when the body had one.
    pub model: Option<String>,
    /// Headers in arrival order, names lowercase; values that are not UTF-8 are left out.
    pub headers: Vec<(String, String)>,
    /// The parsed body, or `null` when it was not JSON.
    pub body: Value,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct ModelCounters {
    requests: AtomicU64,
    completed: AtomicU64,
}

struct Inner {
    config: MockConfig,
    counters: HashMap<String, ModelCounters>,
    log: Mutex<VecDeque<RecordedRequest>>,
    seq: AtomicU64,
    /// Permits for streams held after their first chunk.
    release: Semaphore,
    shutdown: CancellationToken,
}

/// The state every handler shares; cheap to clone.
#[derive(Clone)]
pub struct MockState {
    inner: Arc<Inner>,
}

impl MockState {
    pub fn new(config: MockConfig) -> Self {
        let counters = config
            .models
            .keys()
            .map(|m| (m.clone(), ModelCounters::default()))
            .collect();
        let capacity = config.request_log_capacity;
        Self {
            inner: Arc::new(Inner {
                config,
                counters,
                log: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
                seq: AtomicU64::new(0),
                release: Semaphore::new(0),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    pub fn config(&self) -> &MockConfig {
        &self.inner.config
    }

    pub fn profile(&self, model: &str) -> Option<&Profile> {
        self.inner.config.models.get(model)
    }

    /// Appends to the request log, evicting the oldest entry when full.
    pub(super) fn record(&self, path: &str, headers: &HeaderMap, body: &Value) {
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let capacity = self.inner.config.request_log_capacity;
        if capacity == 0 {
            return;
        }
        let entry = RecordedRequest {
            seq,
            path: path.to_owned(),
            model: body.get("model").and_then(Value::as_str).map(str::to_owned),
            headers: headers
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
            body: body.clone(),
        };
        let mut log = self.inner.log.lock().unwrap_or_else(|p| p.into_inner());
        while log.len() >= capacity {
            log.pop_front();
        }
        log.push_back(entry);
    }

    /// Counts a request for `model` and returns how many came before it (its counter key).
    pub(super) fn count_request(&self, model: &str) -> u64 {
        self.inner
            .counters
            .get(model)
            .map_or(0, |c| c.requests.fetch_add(1, Ordering::Relaxed))
    }

    /// Counts a response for `model` that has been sent to the end (plain body, the last frame
    /// of a stream, or an injected error).
    pub(super) fn count_completed(&self, model: &str) {
        if let Some(c) = self.inner.counters.get(model) {
            c.completed.fetch_add(1, Ordering::Release);
        }
    }

    /// The last `request_log_capacity` requests, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        let log = self.inner.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter().cloned().collect()
    }

    /// Requests received for `model` (0 for models it does not serve).
    pub fn request_count(&self, model: &str) -> u64 {
        self.inner
            .counters
            .get(model)
            .map_or(0, |c| c.requests.load(Ordering::Relaxed))
    }

    /// Responses for `model` sent to the end; a stream counts once its last frame is handed to
    /// the connection.
    pub fn completed_count(&self, model: &str) -> u64 {
        self.inner
            .counters
            .get(model)
            .map_or(0, |c| c.completed.load(Ordering::Acquire))
    }

    /// `(model, requests, completed)` for every model.
    pub fn counts(&self) -> Vec<(String, u64, u64)> {
        let mut out: Vec<_> = self
            .inner
            .counters
            .iter()
            .map(|(m, c)| {
                let r = c.requests.load(Ordering::Relaxed);
                let d = c.completed.load(Ordering::Acquire);
                (m.clone(), r, d)
            })
            .collect();
        out.sort();
        out
    }

    /// Lets `n` streams held after their first chunk go on.
    pub fn release_streams(&self, n: usize) {
        self.inner.release.add_permits(n);
    }

    /// Waits for a release permit; false when the server shuts down first.
    pub(super) async fn wait_release(&self) -> bool {
        tokio::select! {
            permit = self.inner.release.acquire() => {
                if let Ok(p) = permit { p.forget(); }
                true
            }
            () = self.inner.shutdown.cancelled() => false,
        }
    }

    /// Sleeps `d`; false when the server shuts down first.
    pub(super) async fn pause(&self, d: std::time::Duration) -> bool {
        if d.is_zero() {
            return !self.inner.shutdown.is_cancelled();
        }
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = self.inner.shutdown.cancelled() => false,
        }
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }
}

/// Serves `state` on `listener` until `state`'s shutdown token is cancelled.
pub async fn serve(listener: tokio::net::TcpListener, state: MockState) -> std::io::Result<()> {
    let token = state.shutdown_token();
    let listener = listener.tap_io(|tcp| {
        // Without TCP_NODELAY, small stream chunks wait for delayed ACKs.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, super::handlers::router(state))
        .with_graceful_shutdown(token.cancelled_owned())
        .await
}

/// A mock upstream on 127.0.0.1 with an ephemeral port; shuts down when dropped.
pub struct MockServer {
    pub addr: SocketAddr,
    state: MockState,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl MockServer {
    /// Binds 127.0.0.1:0 (ignoring `config.listen`) and starts serving.
    pub async fn start(config: MockConfig) -> Result<MockServer, MockError> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Binds `config.listen` and starts serving.
    pub async fn start_on(config: MockConfig) -> Result<MockServer, MockError> {
        Self::bind(config.listen, config).await
    }

    async fn bind(addr: SocketAddr, config: MockConfig) -> Result<MockServer, MockError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| MockError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| MockError::Bind { addr, source })?;
        let state = MockState::new(config);
        let task = tokio::spawn(serve(listener, state.clone()));
        Ok(MockServer {
            addr,
            state,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL an OpenAI client is given.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn state(&self) -> &MockState {
        &self.state
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    pub fn request_count(&self, model: &str) -> u64 {
        self.state.request_count(model)
    }

    pub fn completed_count(&self, model: &str) -> u64 {
        self.state.completed_count(model)
    }

    pub fn release_streams(&self, n: usize) {
        self.state.release_streams(n);
    }

    /// Stops accepting, ends hanging and streaming responses, and waits for the server task.
    pub async fn shutdown(mut self) {
        self.state.shutdown_token().cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.state.shutdown_token().cancel();
    }
}
