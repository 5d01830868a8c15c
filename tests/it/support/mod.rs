//! Shared test harness: the real gateway (axum app on a real socket, started by
//! [`gateway::start`] — the one way the tests start one) in front of the real mock upstream,
//! capturing into memory.

pub mod gateway;

use std::time::Duration;

use canarist::app::Runtime;
use canarist::capture::{CaptureEvent, MemorySink, Observation, Pair};
use canarist::config::Config;
use canarist::mock::{MockConfig, MockServer};
use serde_json::Value;

pub struct Harness {
    pub mock: MockServer,
    pub gateway: Runtime,
    pub sink: MemorySink,
    pub client: reqwest::Client,
}

/// A config with provider `mock` pointing at `mock_url`, plus `rest` (YAML appended verbatim).
pub fn config_yaml(mock_url: &str, rest: &str) -> String {
    format!(
        "providers:\n  mock:\n    base_url: {mock_url}\n    timeout: 5s\n  dead:\n    base_url: http://127.0.0.1:9/v1\n    connect_timeout: 1s\ncapture:\n  flush_interval: 10ms\n  batch_size: 50\n{rest}"
    )
}

impl Harness {
    /// Starts the mock (with `mock`) and a gateway whose config is `config_yaml(mock, rest)`.
    pub async fn start(mock: MockConfig, rest: &str) -> Harness {
        let mock = MockServer::start(mock).await.expect("mock starts");
        let yaml = config_yaml(&mock.base_url(), rest);
        let config = Config::from_yaml(std::path::Path::new("test.yaml"), &yaml, &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        Self::with_config(mock, config).await
    }

    pub async fn with_config(mock: MockServer, config: Config) -> Harness {
        let sink = MemorySink::new();
        let gateway = gateway::start(config, gateway::without_store(&sink)).await;
        Harness {
            mock,
            gateway,
            sink,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway.url())
    }

    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).json(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("request reaches the gateway")
    }

    pub async fn chat(&self, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
        self.post("/v1/chat/completions", body, headers).await
    }

    pub fn observations(&self) -> Vec<Observation> {
        self.sink
            .events()
            .into_iter()
            .filter_map(|e| match e {
                CaptureEvent::Observation(o) => Some(*o),
                CaptureEvent::Pair(_) => None,
            })
            .collect()
    }

    pub fn pairs(&self) -> Vec<Pair> {
        self.sink
            .events()
            .into_iter()
            .filter_map(|e| match e {
                CaptureEvent::Pair(p) => Some(*p),
                CaptureEvent::Observation(_) => None,
            })
            .collect()
    }

    /// Waits (up to 10 s) until `f` holds for the captured observations.
    pub async fn wait_observations(&self, f: impl Fn(&[Observation]) -> bool) -> Vec<Observation> {
        for _ in 0..1_000 {
            let obs = self.observations();
            if f(&obs) {
                return obs;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "captured observations never matched: {:#?}",
            self.observations()
        );
    }

    /// Waits (up to 10 s) for `n` pairs.
    pub async fn wait_pairs(&self, n: usize) -> Vec<Pair> {
        for _ in 0..1_000 {
            let pairs = self.pairs();
            if pairs.len() >= n {
                return pairs;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("expected {n} pairs, captured {:#?}", self.sink.events());
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A chat request for `model` with one user message.
pub fn chat_body(model: &str, prompt: &str) -> Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": prompt}]})
}

/// Reads the value of a metric line that starts with `prefix` (labels included), or 0.
pub fn metric_value(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}
