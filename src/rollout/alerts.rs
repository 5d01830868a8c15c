//! Alert webhooks: a rollback, a stage that hit its maximum duration, a sample-ratio mismatch,
//! a guardrail trip on a canary that may not roll back on its own, a stage awaiting approval.
//!
//! [`Alerts::send`] only puts the alert on a bounded queue (full: dropped and counted); one
//! spawned task POSTs each alert to its deployment's webhook, Slack-compatible
//! (`{"text", "blocks"}`) or generic JSON (event, deployment, state, failing metric and cohort,
//! evidence), retrying with exponential backoff. Owns: the queue, the sender task, the body
//! formats. Never: blocks the controller or the request path. Fails open: an alert that cannot
//! be delivered after its retries is logged and counted, and the rollout goes on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{AlertFormat, AlertTarget};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    RolledBack,
    StageTimeout,
    SampleRatioMismatch,
    /// A guardrail tripped on an admin-API canary whose `auto_rollback` is off.
    GuardrailTripped,
    /// The gate says promote on a stage with `approval: required`: a person must approve.
    AwaitingApproval,
}

impl AlertEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::RolledBack => "rolled_back",
            AlertEvent::StageTimeout => "stage_timeout",
            AlertEvent::SampleRatioMismatch => "sample_ratio_mismatch",
            AlertEvent::GuardrailTripped => "guardrail_tripped",
            AlertEvent::AwaitingApproval => "awaiting_approval",
        }
    }
}

/// The metric and cohort that caused the alert, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Failing {
    pub metric: String,
    pub cohort: String,
    pub evidence: Value,
}

/// Where a person who is paged goes: the deployment and stage in the dashboard (`public_url`),
/// and the stage's report. The report link is the dashboard's too: the page asks the admin API
/// for a short-lived signed report URL, so no credential ever travels in an alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertLinks {
    /// `{public_url}/ui#/deployments/{slug}`.
    pub dashboard: String,
    /// `…/stages/{k}`: the stage with its decision and evidence.
    pub stage: Option<String>,
    /// `…/stages/{k}/report`: opens the stage's HTML report.
    pub report: Option<String>,
}

impl AlertLinks {
    /// The links for `deployment` (and its stage `stage`) under `public_url`.
    pub fn new(public_url: &str, deployment: &str, stage: Option<u32>) -> Self {
        let dashboard = format!(
            "{}/ui#/deployments/{}",
            public_url.trim_end_matches('/'),
            path_segment(deployment)
        );
        let stage_link = stage.map(|k| format!("{dashboard}/stages/{k}"));
        Self {
            report: stage_link.as_ref().map(|s| format!("{s}/report")),
            stage: stage_link,
            dashboard,
        }
    }
}

/// `s` percent-encoded for one URL path segment (unreserved characters kept).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One alert, as sent (the generic JSON format is exactly this, serialised).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertMessage {
    pub event: AlertEvent,
    pub deployment: String,
    pub candidate: String,
    pub state: String,
    pub stage: u32,
    pub actor: String,
    pub reason: String,
    pub failing: Option<Failing>,
    pub evidence: Value,
    pub at: DateTime<Utc>,
    /// Links to the dashboard and the stage report; `None` without `public_url`.
    pub links: Option<AlertLinks>,
}

impl AlertMessage {
    /// The body for `format`.
    pub fn body(&self, format: AlertFormat) -> Value {
        match format {
            AlertFormat::Json => serde_json::to_value(self).unwrap_or(Value::Null),
            AlertFormat::Slack => {
                let failing = self.failing.as_ref().map_or_else(String::new, |f| {
                    format!(
                        "\n*failing:* `{}` in cohort `{}`: {}",
                        f.metric,
                        f.cohort,
                        compact(&f.evidence)
                    )
                });
                let links = self.links.as_ref().map_or_else(String::new, |l| {
                    let mut s = format!(
                        "\n<{}|Open in the dashboard>",
                        l.stage.as_ref().unwrap_or(&l.dashboard)
                    );
                    if let Some(r) = &l.report {
                        s.push_str(&format!(" · <{r}|Stage {} report>", self.stage));
                    }
                    s
                });
                let text = format!(
                    "canarist: {} `{}` (candidate `{}`) is {} at stage {} — {} (by {}){failing}{links}",
                    self.event.as_str(),
                    self.deployment,
                    self.candidate,
                    self.state,
                    self.stage,
                    self.reason,
                    self.actor
                );
                json!({
                    "text": text,
                    "blocks": [{ "type": "section", "text": { "type": "mrkdwn", "text": text } }],
                })
            }
        }
    }
}

fn compact(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 600 {
        format!("{}…", s.chars().take(600).collect::<String>())
    } else {
        s
    }
}

/// Queue size and retry schedule.
#[derive(Debug, Clone, Copy)]
pub struct AlertOptions {
    pub capacity: usize,
    pub max_attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    pub timeout: Duration,
}

impl Default for AlertOptions {
    fn default() -> Self {
        Self {
            capacity: 256,
            max_attempts: 6,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Counters, for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct AlertStats {
    pub queued: AtomicU64,
    pub delivered: AtomicU64,
    /// Queue full (or alerts disabled with a target configured).
    pub dropped: AtomicU64,
    /// Gave up after every retry.
    pub failed: AtomicU64,
}

struct Job {
    target: AlertTarget,
    message: AlertMessage,
}

struct Inner {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    task: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<AlertStats>,
}

/// The alert sender handle; cheap to clone.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

impl Alerts {
    /// Starts the sender task (needs a Tokio runtime).
    pub fn spawn(options: AlertOptions) -> Self {
        let (tx, rx) = mpsc::channel(options.capacity.max(1));
        let stats = Arc::new(AlertStats::default());
        let task = tokio::spawn(deliver(rx, options, stats.clone()));
        Self {
            inner: Arc::new(Inner {
                tx: Mutex::new(Some(tx)),
                task: Mutex::new(Some(task)),
                stats,
            }),
        }
    }

    /// A handle that sends nothing (alerts are counted as dropped).
    pub fn disabled() -> Self {
        Self {
            inner: Arc::new(Inner {
                tx: Mutex::new(None),
                task: Mutex::new(None),
                stats: Arc::new(AlertStats::default()),
            }),
        }
    }

    /// Queues `message` for `target`; never waits. `false` when it was dropped.
    pub fn send(&self, target: &AlertTarget, message: AlertMessage) -> bool {
        let stats = &self.inner.stats;
        let sent = match self.inner.tx.lock() {
            Ok(guard) => guard.as_ref().is_some_and(|tx| {
                tx.try_send(Job {
                    target: target.clone(),
                    message,
                })
                .is_ok()
            }),
            Err(_) => false,
        };
        if sent {
            stats.queued.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("alert dropped (queue full or alerts stopped)");
        }
        sent
    }

    pub fn stats(&self) -> &AlertStats {
        &self.inner.stats
    }

    /// Stops taking alerts and waits (up to `within`) for the queued ones to be delivered.
    /// For short-lived processes such as the CLI.
    pub async fn drain(&self, within: Duration) {
        if let Ok(mut tx) = self.inner.tx.lock() {
            tx.take();
        }
        let task = self.inner.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = tokio::time::timeout(within, task).await;
        }
    }
}

async fn deliver(mut rx: mpsc::Receiver<Job>, options: AlertOptions, stats: Arc<AlertStats>) {
    let client = match reqwest::Client::builder().timeout(options.timeout).build() {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%error, "cannot build the alert HTTP client; alerts are off");
            return;
        }
    };
    while let Some(job) = rx.recv().await {
        let body = job.message.body(job.target.format);
        let mut backoff = options.first_backoff;
        let mut delivered = false;
        for attempt in 1..=options.max_attempts.max(1) {
            let result = client
                .post(&job.target.webhook_url)
                .json(&body)
                .send()
                .await;
            match result {
                Ok(r) if r.status().is_success() => {
                    delivered = true;
                    break;
                }
                Ok(r) => tracing::warn!(
                    status = r.status().as_u16(),
                    attempt,
                    deployment = %job.message.deployment,
                    "alert webhook refused"
                ),
                // The URL is a secret (a Slack webhook URL is a credential): never in the log.
                Err(error) => tracing::warn!(
                    error = %error.without_url(),
                    attempt,
                    deployment = %job.message.deployment,
                    "alert webhook failed"
                ),
            }
            if attempt < options.max_attempts {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(options.max_backoff);
            }
        }
        if delivered {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
            tracing::info!(deployment = %job.message.deployment, event = job.message.event.as_str(), "alert delivered");
        } else {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(deployment = %job.message.deployment, event = job.message.event.as_str(), "alert not delivered after retries");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> AlertMessage {
        AlertMessage {
            event: AlertEvent::RolledBack,
            deployment: "chat".into(),
            candidate: "cand".into(),
            state: "rolled_back".into(),
            stage: 2,
            actor: "gate".into(),
            reason: "worse".into(),
            failing: Some(Failing {
                metric: "error_rate".into(),
                cohort: "tier=free".into(),
                evidence: json!({ "estimate": 0.2 }),
            }),
            evidence: Value::Null,
            at: DateTime::<Utc>::UNIX_EPOCH,
            links: Some(AlertLinks::new(
                "https://canarist.example/",
                "chat bot",
                Some(2),
            )),
        }
    }

    #[test]
    fn both_formats_carry_the_dashboard_and_report_links() {
        let slack = message().body(AlertFormat::Slack);
        let text = slack["text"].as_str().unwrap();
        assert!(
            text.contains("<https://canarist.example/ui#/deployments/chat%20bot/stages/2|Open in the dashboard>"),
            "{text}"
        );
        assert!(
            text.contains("<https://canarist.example/ui#/deployments/chat%20bot/stages/2/report|Stage 2 report>"),
            "{text}"
        );
        let generic = message().body(AlertFormat::Json);
        assert_eq!(
            generic["links"]["dashboard"],
            "https://canarist.example/ui#/deployments/chat%20bot"
        );
        assert_eq!(
            generic["links"]["report"],
            "https://canarist.example/ui#/deployments/chat%20bot/stages/2/report"
        );
    }

    #[test]
    fn both_formats_name_the_failing_metric_and_cohort() {
        let slack = message().body(AlertFormat::Slack);
        let text = slack["text"].as_str().unwrap();
        assert!(
            text.contains("`error_rate` in cohort `tier=free`"),
            "{text}"
        );
        assert_eq!(slack["blocks"][0]["text"]["text"], slack["text"]);
        let generic = message().body(AlertFormat::Json);
        assert_eq!(generic["event"], "rolled_back");
        assert_eq!(generic["failing"]["metric"], "error_rate");
        assert_eq!(generic["failing"]["cohort"], "tier=free");
        assert_eq!(generic["stage"], 2);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let alerts = Alerts::disabled();
        let target = AlertTarget {
            webhook_url: "http://127.0.0.1:9/".into(),
            format: AlertFormat::Json,
        };
        assert!(!alerts.send(&target, message()));
        assert_eq!(alerts.stats().dropped.load(Ordering::Relaxed), 1);
    }
}
