//! A database outage loses nothing that fits on disk: while the store is unreachable the
//! capture writer spools batches next to the config file, and replays them in order once the
//! store is back. Postgres goes away behind a TCP proxy the test cuts; SQLite is made unwritable
//! by another connection holding its write lock (every write fails with `SQLITE_BUSY`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use canarist::store::{Store, StoreOptions};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::backends;
use super::gateway::{CutProxy, StoreGateway, wait_stored};
use crate::support::metric_value;

const OUTAGE: Duration = Duration::from_secs(20);

/// Sends about 10 requests a second until `stop`; the request ids of those answered.
async fn load(gw: Arc<StoreGateway>, prefix: &'static str, stop: CancellationToken) -> Vec<Uuid> {
    let mut sent = Vec::new();
    let mut i = 0;
    while !stop.is_cancelled() {
        let gw = gw.clone();
        sent.push(tokio::spawn(async move {
            gw.send(&format!("{prefix}-{i}"), "free", "hello").await
        }));
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ids = Vec::new();
    for s in sent {
        ids.push(s.await.unwrap());
    }
    ids
}

/// What takes the database away and gives it back.
enum Outage {
    Proxy(CutProxy),
    Locked(String, Option<sqlx::SqliteConnection>),
}

impl Outage {
    async fn begin(&mut self) {
        match self {
            Outage::Proxy(p) => p.cut(),
            Outage::Locked(url, conn) => {
                let mut locker = sqlx::SqliteConnection::connect(url).await.unwrap();
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut locker)
                    .await
                    .unwrap();
                *conn = Some(locker);
            }
        }
    }

    async fn end(&mut self) {
        match self {
            Outage::Proxy(p) => p.restore().await,
            Outage::Locked(_, conn) => {
                let mut locker = conn.take().unwrap();
                sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
                locker.close().await.unwrap();
            }
        }
    }
}

#[tokio::test]
async fn an_outage_under_load_loses_no_accepted_event() {
    for db in backends().await {
        let label = db.label;
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            acquire_timeout: Duration::from_millis(500),
            busy_timeout: Duration::from_millis(50),
            ..StoreOptions::default()
        };
        // The gateway's store goes through the outage; `check` reads the database directly.
        let (store, mut outage) = match &db.pg {
            Some((admin, name)) => {
                let proxy = CutProxy::start(admin).await;
                let store = Store::connect_with(&proxy.url(admin, name), &options)
                    .await
                    .unwrap();
                (store, Outage::Proxy(proxy))
            }
            None => {
                let store = Store::connect_with(&db.url, &options).await.unwrap();
                (store, Outage::Locked(db.url.clone(), None))
            }
        };
        let check = db.store().await;
        let gw = Arc::new(
            StoreGateway::start(
                &db,
                &store,
                "flush_interval: 50ms, batch_size: 50, retry_backoff: 50ms",
                &dir.path().join("canarist.yaml"),
            )
            .await,
        );

        let stop = CancellationToken::new();
        let driver = tokio::spawn(load(gw.clone(), "load", stop.clone()));
        tokio::time::sleep(Duration::from_secs(2)).await;
        outage.begin().await;
        tokio::time::sleep(OUTAGE).await;
        let during = gw.metrics().await;
        outage.end().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.cancel();
        let accepted = driver.await.unwrap();

        let missing = wait_stored(&check, &db, &accepted, Duration::from_secs(60)).await;
        let metrics = gw.metrics().await;
        eprintln!(
            "{label}: {} requests accepted, {} incomplete; spooled {} events, replayed {}",
            accepted.len(),
            missing.len(),
            metric_value(&metrics, "canarist_capture_spooled_total"),
            metric_value(&metrics, "canarist_capture_replayed_total"),
        );
        assert!(
            missing.is_empty(),
            "{label}: {} of {} accepted requests lost events",
            missing.len(),
            accepted.len()
        );
        assert_eq!(
            metric_value(&metrics, "canarist_capture_dropped_total"),
            0.0,
            "{label}: {metrics}"
        );
        // The outage went through the spool, and all of it came back.
        assert!(
            metric_value(&during, "canarist_capture_spooled_total") > 0.0,
            "{label}: nothing was spooled during the outage: {during}"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let m = gw.metrics().await;
            let (spooled, replayed) = (
                metric_value(&m, "canarist_capture_spooled_total"),
                metric_value(&m, "canarist_capture_replayed_total"),
            );
            if spooled == replayed && metric_value(&m, "canarist_capture_spool_bytes") == 0.0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{label}: spool not drained: {m}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let spool_dir = dir.path().join("canarist-spool");
        let left: Vec<_> = std::fs::read_dir(&spool_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".jsonl"))
            .collect();
        assert!(left.is_empty(), "{label}: segments left: {left:?}");
        Arc::into_inner(gw).unwrap().server.shutdown().await;
        store.close().await;
        check.close().await;
        db.cleanup().await;
    }
}
