//! The demo's traffic generator: concurrent clients calling the real gateway over HTTP with
//! prompts from the support dataset, each request with a unit key (header `x-canarist-unit` and
//! the `user` field), the entry's cohort `metadata` (e.g. `tier`), and a quarter of them
//! streamed. Users send heavy-tailed volumes, as real users do: user *i* (from 0) is drawn with
//! probability ∝ (i + 1)^−0.8 (Zipf), so the top 1% of users send over a quarter of the
//! requests and the gate has to analyse units, not requests.
//!
//! Owns: the client tasks, their pacing and counters. Never: looks at the rollout or the store;
//! it only sees what a client sees (status codes and the `x-canarist-variant` header).
//! Fails open: a failed request is counted and the client goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::mock::DatasetEntry;

/// What the clients have seen so far.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// Answers served by the candidate (by the `x-canarist-variant` header).
    pub from_candidate: AtomicU64,
}

impl Counters {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Running clients; [`Traffic::stop`] ends them.
pub struct Traffic {
    pub counters: Arc<Counters>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

/// How much traffic, and to where.
#[derive(Debug, Clone)]
pub struct TrafficPlan {
    /// The gateway's base URL (`http://host:port`).
    pub gateway_url: String,
    pub model: String,
    pub clients: usize,
    /// Requests per second, over all clients.
    pub rate: f64,
    /// Distinct unit keys (simulated users).
    pub users: u32,
}

/// The exponent of the users' Zipf volumes.
pub const ZIPF_EXPONENT: f64 = 0.8;

/// Cumulative Zipf weights of `users` users, for [`draw_user`].
pub fn zipf_cumulative(users: u32) -> Vec<f64> {
    let mut acc = 0.0;
    (0..users.max(1))
        .map(|i| {
            acc += (f64::from(i) + 1.0).powf(-ZIPF_EXPONENT);
            acc
        })
        .collect()
}

/// The user a uniform draw `u` in [0, 1) falls on.
pub fn draw_user(cumulative: &[f64], u: f64) -> usize {
    let total = cumulative.last().copied().unwrap_or(0.0);
    cumulative
        .partition_point(|&c| c <= u * total)
        .min(cumulative.len().saturating_sub(1))
}

/// The body of one request for `entry` as `user`.
pub fn request_body(model: &str, entry: &DatasetEntry, user: &str, stream: bool) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are the support assistant of a SaaS company."},
            {"role": "user", "content": entry.prompt},
        ],
        "user": user,
        "stream": stream,
    });
    if !entry.metadata.is_empty() {
        body["metadata"] = Value::Object(entry.metadata.clone());
    }
    body
}

/// Starts `plan.clients` clients.
pub fn start(plan: TrafficPlan, entries: Arc<Vec<DatasetEntry>>) -> Traffic {
    let counters = Arc::new(Counters::default());
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let client = reqwest::Client::new();
    let clients = plan.clients.max(1);
    let period = Duration::from_secs_f64(clients as f64 / plan.rate.max(0.1));
    let volumes = Arc::new(zipf_cumulative(plan.users));
    for _ in 0..clients {
        let (client, plan, entries) = (client.clone(), plan.clone(), entries.clone());
        let volumes = volumes.clone();
        let (counters, cancel) = (counters.clone(), cancel.clone());
        tracker.spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                if entries.is_empty() {
                    break;
                }
                let entry = &entries[rand::random_range(0..entries.len())];
                let user = format!("user-{}", draw_user(&volumes, rand::random::<f64>()));
                let stream = rand::random_range(0..4u8) == 0;
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = one(&client, &plan, entry, &user, stream, &counters) => {}
                }
            }
        });
    }
    tracker.close();
    Traffic {
        counters,
        tracker,
        cancel,
    }
}

async fn one(
    client: &reqwest::Client,
    plan: &TrafficPlan,
    entry: &DatasetEntry,
    user: &str,
    stream: bool,
    counters: &Counters,
) {
    counters.sent.fetch_add(1, Ordering::Relaxed);
    let result = client
        .post(format!("{}/v1/chat/completions", plan.gateway_url))
        .header("x-canarist-unit", user)
        .json(&request_body(&plan.model, entry, user, stream))
        .timeout(Duration::from_secs(60))
        .send()
        .await;
    let ok = match result {
        Ok(r) => {
            let candidate = r
                .headers()
                .get("x-canarist-variant")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v != "stable");
            let success = r.status().is_success();
            // Read the whole answer (a stream to its end), as a real client would.
            let complete = r.bytes().await.is_ok();
            if success && complete && candidate {
                counters.from_candidate.fetch_add(1, Ordering::Relaxed);
            }
            success && complete
        }
        Err(_) => false,
    };
    let counter = if ok { &counters.ok } else { &counters.failed };
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Traffic {
    /// Stops every client (requests in flight are abandoned) and waits for them.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_volumes_are_heavy_tailed() {
        let c = zipf_cumulative(5000);
        assert_eq!(c.len(), 5000);
        assert_eq!(draw_user(&c, 0.0), 0);
        assert_eq!(draw_user(&c, 0.999_999_999), 4999);
        // The top 1% of users (50) carry over a quarter of the requests; the top user ~4%.
        let share = |k: usize| c[k - 1] / c[4999];
        assert!(share(50) > 0.25, "{}", share(50));
        assert!(share(1) > 0.03 && share(1) < 0.06, "{}", share(1));
        let mut counts = vec![0u32; 5000];
        for i in 0..10_000 {
            counts[draw_user(&c, (f64::from(i) + 0.5) / 10_000.0)] += 1;
        }
        assert!(counts[0] > 300, "{}", counts[0]);
    }

    #[test]
    fn bodies_carry_unit_metadata_and_stream_flag() {
        let d = crate::mock::Dataset::builtin().unwrap();
        let e = d
            .entries()
            .iter()
            .find(|e| e.metadata.get("tier").and_then(Value::as_str) == Some("enterprise"))
            .unwrap();
        let b = request_body("support-bot", e, "user-7", true);
        assert_eq!(b["model"], "support-bot");
        assert_eq!(b["user"], "user-7");
        assert_eq!(b["stream"], true);
        assert_eq!(b["metadata"]["tier"], "enterprise");
        assert_eq!(b["messages"][1]["content"], e.prompt.as_str());
        // The mock recognises the prompt (its last user message) and answers from the dataset.
        assert_eq!(
            d.lookup(b["messages"][1]["content"].as_str().unwrap())
                .map(|x| &x.id),
            Some(&e.id)
        );
    }
}
