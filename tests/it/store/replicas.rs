//! Replica coordination and outages: config NOTIFY, the leader lock, a database that goes away
//! and comes back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use canarist::capture::{Capture, CaptureEvent, Observation, Role, RowPolicy, WriterConfig};
use canarist::store::{LeaderLock, Leadership, Store, StoreOptions, StoreSink};
use sqlx::Connection;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{backends, obs, pg_url};

#[tokio::test]
async fn config_watcher_sees_bumps_from_another_pool() {
    for db in backends().await {
        let label = db.label;
        let a = db.store().await;
        let b = db.store().await;
        // Postgres: the poll is long, so only NOTIFY can deliver within the second.
        let poll = if db.pg.is_some() {
            Duration::from_secs(30)
        } else {
            Duration::from_millis(50)
        };
        let mut watcher = canarist::store::ConfigWatcher::new(&b, poll).await.unwrap();
        let v = a.bump_config_version(Some("support")).await.unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(1), watcher.changed()).await;
        assert_eq!(seen.ok(), Some(v), "{label}: new version within a second");
        a.close().await;
        b.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn leader_lock_is_exclusive_and_handed_over() {
    for db in backends().await.into_iter().filter(|d| d.pg.is_some()) {
        let a = db.store().await;
        let b = db.store().await;
        let first = LeaderLock::try_acquire(&a, 42)
            .await
            .unwrap()
            .expect("first acquires");
        assert!(LeaderLock::try_acquire(&b, 42).await.unwrap().is_none());
        drop(first); // the connection closes: the session's lock is released
        let mut second = None;
        for _ in 0..50 {
            second = LeaderLock::try_acquire(&b, 42).await.unwrap();
            if second.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            second.is_some(),
            "acquired after the holder's connection dropped"
        );

        // Leadership tasks: one leads; cancelling it hands over to the other.
        let tracker = TaskTracker::new();
        let (ca, cb) = (CancellationToken::new(), CancellationToken::new());
        let mut la = Leadership::spawn(
            a.clone(),
            7,
            Duration::from_millis(100),
            &tracker,
            ca.clone(),
        );
        tokio::time::timeout(Duration::from_secs(10), la.wait_until_leader())
            .await
            .unwrap();
        let mut lb = Leadership::spawn(
            b.clone(),
            7,
            Duration::from_millis(100),
            &tracker,
            cb.clone(),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!lb.is_leader(), "only one leader");
        ca.cancel();
        tokio::time::timeout(Duration::from_secs(10), lb.wait_until_leader())
            .await
            .unwrap();
        cb.cancel();
        tracker.close();
        tracker.wait().await;
        a.close().await;
        b.close().await;
        db.cleanup().await;
    }
}

fn outage_writer() -> WriterConfig {
    WriterConfig {
        queue_capacity: 100,
        batch_size: 10,
        flush_interval: Duration::from_millis(10),
        max_attempts: 2,
        retry_backoff: Duration::from_millis(10),
        // No spool: what the writer does when nothing can take a failed batch (the spool's own
        // outage tests are in `spool.rs`).
        spool: None,
        // Every observation a row, so that each one can be looked up below.
        rows: RowPolicy::ALL_ROWS,
        max_counted: 10,
        aggregate_interval: Duration::from_millis(10),
    }
}

/// Records 300 events while the database is unavailable, checks that drops are counted, calls
/// `restore`, then checks that new events are written.
async fn outage_then_recovery<F: std::future::Future<Output = ()>>(
    label: &str,
    store: Store,
    restore: F,
) {
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let capture = Capture::start(
        Arc::new(StoreSink::new(store.clone())),
        outage_writer(),
        &tracker,
        cancel.clone(),
    );
    for i in 0..300 {
        // `record` is a try_send: it returns at once whatever the database does.
        capture.record(CaptureEvent::Observation(Box::new(obs(
            "stable",
            Role::Stable,
            "free",
            5.0,
            i,
        ))));
    }
    let stats = capture.stats().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stats
        .dropped_write_failed
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{label}: no failed batch counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stats.dropped() > 0, "{label}");
    restore.await;
    while capture.queue_depth() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{label}: queue never drained"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fresh: Vec<Observation> = (0..20)
        .map(|i| obs("stable", Role::Stable, "free", 5.0, 1000 + i))
        .collect();
    for o in &fresh {
        capture.record(CaptureEvent::Observation(Box::new(o.clone())));
    }
    for o in &fresh {
        loop {
            if store.observation(o.id).await.ok().flatten().is_some() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{label}: not written after recovery"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn sqlite_outage_drops_are_counted_and_writes_resume() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let options = StoreOptions {
        busy_timeout: Duration::from_millis(50),
        acquire_timeout: Duration::from_millis(500),
        ..StoreOptions::default()
    };
    let store = Store::connect_with(&url, &options).await.unwrap();
    // Another process holds the write lock: every write fails with SQLITE_BUSY.
    let mut locker = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .unwrap();
    outage_then_recovery("sqlite", store.clone(), async move {
        sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
        locker.close().await.unwrap();
    })
    .await;
    store.close().await;
}

/// A TCP proxy to Postgres that can be stopped (port closed, connections cut) and restarted.
pub(crate) async fn proxy(listener: TcpListener, target: String, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => {
                let Ok((mut inbound, _)) = accepted else { continue };
                let target = target.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else { return };
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        }
    }
}

#[tokio::test]
async fn postgres_outage_drops_are_counted_and_writes_resume() {
    for db in backends().await.into_iter().filter(|d| d.pg.is_some()) {
        let (admin, name) = db.pg.clone().unwrap();
        let target = {
            let rest = admin.split_once("://").unwrap().1;
            let authority = rest.split('/').next().unwrap();
            authority
                .rsplit_once('@')
                .map_or(authority, |(_, h)| h)
                .to_string()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        tokio::spawn(proxy(listener, target.clone(), stop.clone()));
        let options = StoreOptions {
            acquire_timeout: Duration::from_millis(500),
            ..StoreOptions::default()
        };
        let store = Store::connect_with(&pg_url(&admin, Some(port), &name), &options)
            .await
            .unwrap();
        stop.cancel(); // the database is gone: port closed, connections cut
        outage_then_recovery("postgres", store.clone(), async move {
            let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
            tokio::spawn(proxy(listener, target, CancellationToken::new()));
        })
        .await;
        store.close().await;
        db.cleanup().await;
    }
}
