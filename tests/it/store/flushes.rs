//! Row-less observations (issue 15 item 1): the capture writer keeps full rows only for pairs,
//! errors within a budget and a sample, and flushes everything else as deltas of the aggregate
//! tables. Two writers on one database add up to the traffic sent; the stage summary — and so
//! the gate's decision — equals the one of the same traffic stored as rows; and a flush written
//! twice (a retry after a commit whose answer was lost, a replay) adds once. Both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canarist::capture::{
    Capture, CaptureEvent, ErrorClass, Flush, FlushId, Observation, Role, RowPolicy, Sink,
    SinkError, WriterConfig,
};
use canarist::config::Config;
use canarist::store::{BatchExtras, Store, StoreSink, SummaryScope};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::aggregates::assert_same;
use super::{backends, obs};

/// 600 observations of 17 units, stable and candidate, some failed, two tiers.
fn traffic() -> Vec<Observation> {
    (0..600_i64)
        .map(|i| {
            let (variant, role) = if i % 3 == 0 {
                ("cand", Role::Candidate)
            } else {
                ("stable", Role::Stable)
            };
            let tier = if i % 5 == 0 { "enterprise" } else { "free" };
            let mut o = obs(variant, role, tier, 10.0 + (i % 37) as f64, i);
            o.unit_key = Some(format!("user-{}", i % 17));
            if i % 11 == 0 {
                o.error = Some(ErrorClass::Upstream5xx);
                o.status = Some(503);
            }
            o
        })
        .collect()
}

fn writer(rows: RowPolicy) -> WriterConfig {
    WriterConfig {
        batch_size: 50,
        flush_interval: Duration::from_millis(5),
        rows,
        max_counted: 64,
        ..WriterConfig::default()
    }
}

/// No row sample, three error rows per flush.
const FEW_ROWS: RowPolicy = RowPolicy {
    sample_rate: 0.0,
    error_rows_per_flush: 3,
};

/// Records `events` through a writer over `sink` and waits until it has written them all.
async fn record_all(sink: Arc<dyn Sink>, config: WriterConfig, events: &[Observation]) -> u64 {
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let capture = Capture::start(sink, config, &tracker, cancel.clone());
    for o in events {
        capture.record(CaptureEvent::Observation(Box::new(o.clone())));
        // Keep under the queue's capacity: nothing dropped.
        if capture.queue_depth() > 1_000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    let stats = capture.stats();
    assert_eq!(stats.dropped(), 0);
    assert_eq!(stats.written.load(Ordering::Relaxed), events.len() as u64);
    stats.aggregated.load(Ordering::Relaxed)
}

const GATED: &str = r#"
deployments:
  - slug: support
    stable: { provider: mock, model: mock-fast }
    candidates: [{ name: cand, provider: mock, model: mock-cand }]
    ramp:
      stages:
        - { percent: 10, min_duration: 0s }
        - { percent: 50 }
    gate:
      metrics:
        - { name: error_rate, kind: error_rate, margin: 0.02, ceiling: 0.5 }
      min_samples: 10
"#;

#[tokio::test]
async fn row_less_flushes_of_two_writers_add_up_to_the_traffic_sent_and_decide_the_same() {
    let events = traffic();
    let reference_dir = tempfile::tempdir().unwrap();
    // The same traffic as rows, every one of them (what the store held before).
    let reference = Store::connect(&format!(
        "sqlite://{}",
        reference_dir.path().join("rows.db").display()
    ))
    .await
    .unwrap();
    let all_rows = record_all(
        Arc::new(StoreSink::new(reference.clone())),
        writer(RowPolicy::ALL_ROWS),
        &events,
    )
    .await;
    assert_eq!(all_rows, 0, "every observation a row");
    assert_eq!(reference.count_observations(None).await.unwrap(), 600);
    let scope = SummaryScope::new("support", "shadow");
    let want = reference.stage_summary(scope).await.unwrap();
    assert_same(
        "reference",
        "rows",
        &want,
        &reference.stage_summary_from_rows(scope).await.unwrap(),
    );

    let config = Config::from_yaml(
        std::path::Path::new("flushes.yaml"),
        &crate::support::config_yaml("http://127.0.0.1:9", GATED),
        &|_| None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let settings = &config.rollouts["support"];
    let policy = settings.gate.as_ref().unwrap();
    let stage = &settings.ramp.stages[0];
    let elapsed = Duration::from_secs(3600);
    let want_decision = canarist::gate_input::decide(policy, stage, elapsed, &want);

    for db in backends().await {
        let label = db.label;
        let (a, b) = (db.store().await, db.store().await);
        // Two replicas, the same units on both, concurrently.
        let (half_a, half_b): (Vec<_>, Vec<_>) = events
            .iter()
            .cloned()
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        let strip =
            |v: Vec<(usize, Observation)>| v.into_iter().map(|(_, o)| o).collect::<Vec<_>>();
        let (half_a, half_b) = (strip(half_a), strip(half_b));
        let (counted_a, counted_b) = tokio::join!(
            record_all(
                Arc::new(StoreSink::new(a.clone())),
                writer(FEW_ROWS),
                &half_a
            ),
            record_all(
                Arc::new(StoreSink::new(b.clone())),
                writer(FEW_ROWS),
                &half_b
            ),
        );
        let rows = a.count_observations(None).await.unwrap();
        assert_eq!(rows + counted_a + counted_b, 600, "{label}");
        assert!(counted_a + counted_b >= 500, "{label}: {rows} rows");
        assert!(rows > 0, "{label}: errors keep rows");
        assert_eq!(a.count_aggregated(None).await.unwrap(), 600, "{label}");
        let got = a.stage_summary(scope).await.unwrap();
        assert_same(label, "row-less flushes", &got, &want);
        let stable = got
            .variants
            .iter()
            .find(|v| v.cohort.is_none() && v.variant == "stable")
            .unwrap();
        assert_eq!((stable.requests, stable.units), (400, 17), "{label}");
        let decision = canarist::gate_input::decide(policy, stage, elapsed, &got);
        assert_eq!(
            format!("{decision:?}"),
            format!("{want_decision:?}"),
            "{label}: the gate decides the same"
        );
        a.close().await;
        b.close().await;
        db.cleanup().await;
    }
    reference.close().await;
}

/// Commits every write, and answers the first write of each flush as if the connection had
/// dropped before the commit's answer arrived.
struct LostAnswer {
    inner: StoreSink,
    seen: Mutex<HashSet<FlushId>>,
}

impl Sink for LostAnswer {
    fn write_batch<'a>(
        &'a self,
        batch: &'a [CaptureEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        self.inner.write_batch(batch)
    }

    fn aggregates(&self) -> bool {
        true
    }

    fn write_flush<'a>(&'a self, flush: &'a Flush) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.inner.write_flush(flush).await?;
            let first = flush
                .id
                .is_some_and(|id| self.seen.lock().unwrap().insert(id));
            if first {
                return Err(SinkError::Database("connection reset".into()));
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn a_replayed_flush_adds_nothing() {
    for db in backends().await {
        let label = db.label;
        let store = db.store().await;
        let flush = Flush {
            id: Some(FlushId {
                writer: Uuid::new_v4(),
                seq: 1,
            }),
            rows: vec![CaptureEvent::Observation(Box::new(obs(
                "stable",
                Role::Stable,
                "free",
                5.0,
                1,
            )))],
            counted: (2..12)
                .map(|i| obs("stable", Role::Stable, "free", 5.0, i))
                .collect(),
        };
        for _ in 0..3 {
            store
                .write_flush_with(&flush, BatchExtras::default())
                .await
                .unwrap();
        }
        assert_eq!(store.count_aggregated(None).await.unwrap(), 11, "{label}");
        assert_eq!(store.count_observations(None).await.unwrap(), 1, "{label}");
        // Another flush of the same writer adds.
        let next = Flush {
            id: Some(FlushId {
                seq: 2,
                ..flush.id.unwrap()
            }),
            rows: vec![],
            counted: (12..15)
                .map(|i| obs("stable", Role::Stable, "free", 5.0, i))
                .collect(),
        };
        store
            .write_flush_with(&next, BatchExtras::default())
            .await
            .unwrap();
        assert_eq!(store.count_aggregated(None).await.unwrap(), 14, "{label}");

        // Through the writer: every commit's answer is lost once, so each flush is written
        // twice; each adds once.
        let events: Vec<_> = (100..400)
            .map(|i| obs("cand", Role::Candidate, "free", 5.0, i))
            .collect();
        let sink = Arc::new(LostAnswer {
            inner: StoreSink::new(store.clone()),
            seen: Mutex::new(HashSet::new()),
        });
        let config = WriterConfig {
            max_attempts: 2,
            retry_backoff: Duration::from_millis(1),
            ..writer(FEW_ROWS)
        };
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let capture = Capture::start(sink.clone(), config, &tracker, cancel.clone());
        for o in &events {
            capture.record(CaptureEvent::Observation(Box::new(o.clone())));
        }
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
        let stats = capture.stats();
        assert_eq!(stats.written.load(Ordering::Relaxed), 300, "{label}");
        assert!(stats.write_errors.load(Ordering::Relaxed) > 0, "{label}");
        assert_eq!(store.count_aggregated(None).await.unwrap(), 314, "{label}");
        store.close().await;
        db.cleanup().await;
    }
}
