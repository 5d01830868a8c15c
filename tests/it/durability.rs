//! A `kill -9` of the real gateway binary on SQLite: what was flushed stays, at most the
//! unflushed batch is lost, the database is not corrupted, and a restart carries on. Most
//! observations have no row of their own (only the aggregates count them), so "what was
//! flushed" is what the aggregate tables count.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use canarist::mock::{MockConfig, MockServer};
use canarist::store::Store;
use futures::StreamExt;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_gateway(config: &std::path::Path) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_canarist"))
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("CANARIST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    std::thread::spawn(move || for _ in lines {});
    let url = line[line.find("http://").unwrap()..].trim().to_owned();
    (Proc(child), url)
}

async fn send(client: &reqwest::Client, url: &str, n: usize) {
    futures::stream::iter(0..n)
        .for_each_concurrent(16, |i| async move {
            let r = client
                .post(format!("{url}/v1/chat/completions"))
                .json(
                    &serde_json::json!({"model": "chat", "user": format!("u{i}"),
                    "messages": [{"role": "user", "content": "hello"}]}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        })
        .await;
}

/// Observations the aggregate tables count (with a row of their own or without).
async fn observation_count(db: &std::path::Path) -> u64 {
    let store = Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let n = store.count_aggregated(None).await.unwrap();
    store.close().await;
    n
}

#[tokio::test]
async fn kill_9_loses_at_most_the_unflushed_batch_and_never_corrupts() {
    let mock = MockServer::start(MockConfig::builtin().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("canarist.db");
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "providers:\n  mock: {{ base_url: \"{}\" }}\nstorage: {{ url: \"sqlite://{}\" }}\n\
             capture: {{ flush_interval: 50ms, aggregate_interval: 200ms }}\ndeployments:\n  - slug: chat\n    stable: {{ provider: mock, model: mock-fast }}\n",
            mock.base_url(),
            db.display()
        ),
    )
    .unwrap();
    let client = reqwest::Client::new();

    let (mut gw, url) = start_gateway(&config);
    send(&client, &url, 200).await;
    // Well past the flush interval and the aggregate interval (row-less observations wait
    // for the latter): all 200 are flushed, the next 50 may not be.
    tokio::time::sleep(Duration::from_millis(700)).await;
    send(&client, &url, 50).await;
    gw.0.kill().unwrap(); // SIGKILL: no graceful shutdown, no final flush
    gw.0.wait().unwrap();
    drop(gw);

    let after_kill = observation_count(&db).await;
    assert!(
        after_kill >= 200,
        "flushed observations were lost: {after_kill}"
    );
    assert!(after_kill <= 250, "{after_kill}");

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(check, "ok");
    pool.close().await;

    // A restart on the same file carries on writing.
    let (_gw, url) = start_gateway(&config);
    send(&client, &url, 10).await;
    for _ in 0..200 {
        if observation_count(&db).await >= after_kill + 10 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the restarted gateway did not write new observations");
}

/// Reads a metric of the gateway at `url` (0 when absent).
async fn metric(client: &reqwest::Client, url: &str, name: &str) -> f64 {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    crate::support::metric_value(&text, name)
}

/// One request of unit `user`; its request id.
async fn request(client: &reqwest::Client, url: &str, user: &str) -> uuid::Uuid {
    request_to(client, url, "chat", user).await
}

/// One request to deployment `model` of unit `user`; its request id.
async fn request_to(client: &reqwest::Client, url: &str, model: &str, user: &str) -> uuid::Uuid {
    let r = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&serde_json::json!({"model": model, "user": user,
            "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Postgres goes away (a TCP proxy in front of it is cut) while the real binary serves a shadow
/// deployment (every observation a pair's side: rows) and a deployment in mode off (stable
/// only: row-less observations, counted in the aggregates only); the binary spools what it
/// cannot write, is killed with SIGKILL during the outage, and after the database is back a
/// restart replays the spool: every event spooled before the kill is in the database — rows
/// once each, row-less observations counted once each — and at most what was still in memory
/// is lost. (Multi-threaded: the proxy must run while the test thread waits for the binary's
/// first line.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_postgres_outage_loses_nothing_spooled() {
    use crate::store::gateway::{CutProxy, rows_of, wait_stored};
    for db in crate::store::backends()
        .await
        .into_iter()
        .filter(|d| d.pg.is_some())
    {
        let (admin, name) = db.pg.clone().unwrap();
        let mut proxy = CutProxy::start(&admin).await;
        let mock = MockServer::start(crate::store::gateway::mock_config())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("canarist.yaml");
        std::fs::write(
            &config,
            crate::store::gateway::shadow_config(
                &mock.base_url(),
                &proxy.url(&admin, &name),
                "flush_interval: 50ms, write_attempts: 1, retry_backoff: 50ms, \
                 row_sample_rate: 0",
            ) + "  - slug: plain\n    model: plain\n    stable: { provider: mock, model: mock-stable }\n",
        )
        .unwrap();
        let store = db.store().await; // direct, not through the proxy
        let client = reqwest::Client::new();

        let (mut gw, url) = start_gateway(&config);
        let mut before = Vec::new();
        for i in 0..20 {
            before.push(request(&client, &url, &format!("before-{i}")).await);
            request_to(&client, &url, "plain", &format!("before-{i}")).await;
        }
        assert!(
            wait_stored(&store, &db, &before, Duration::from_secs(30))
                .await
                .is_empty()
        );
        let plain = || async { store.count_aggregated(Some("plain")).await.unwrap() };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while plain().await < 20 {
            assert!(tokio::time::Instant::now() < deadline, "plain not counted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(plain().await, 20);
        assert_eq!(
            store.count_observations(Some("plain")).await.unwrap(),
            0,
            "mode off, no sample: no rows"
        );

        proxy.cut();
        let mut during = Vec::new();
        for i in 0..30 {
            during.push(request(&client, &url, &format!("during-{i}")).await);
            request_to(&client, &url, "plain", &format!("during-{i}")).await;
        }
        // Every event of those requests (2 observations and a pair each for `chat`, one row-less
        // observation for `plain`) is written or spooled, and nothing waits in memory.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let enqueued = metric(&client, &url, "canarist_capture_enqueued_total").await;
            let written = metric(&client, &url, "canarist_capture_written_total").await;
            let spooled = metric(&client, &url, "canarist_capture_spooled_total").await;
            let unflushed = metric(&client, &url, "canarist_capture_unflushed").await;
            if enqueued == 200.0 && written + spooled == enqueued && spooled > 0.0 {
                assert_eq!(unflushed, 0.0);
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not spooled: enqueued {enqueued}, written {written}, spooled {spooled}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let aggregated = metric(&client, &url, "canarist_capture_aggregated_total").await;
        assert_eq!(
            aggregated, 20.0,
            "before the outage: the 20 plain observations"
        );
        // More requests, then SIGKILL at once: these may still be in memory.
        let mut late = Vec::new();
        for i in 0..5 {
            late.push(request(&client, &url, &format!("late-{i}")).await);
            request_to(&client, &url, "plain", &format!("late-{i}")).await;
        }
        gw.0.kill().unwrap();
        gw.0.wait().unwrap();
        drop(gw);
        for r in &during {
            assert_eq!(
                rows_of(&store, &db, *r).await,
                (vec![], vec![]),
                "the outage held"
            );
        }
        assert_eq!(plain().await, 20, "the outage held");

        proxy.restore().await;
        let (_gw, _url) = start_gateway(&config);
        let missing = wait_stored(&store, &db, &during, Duration::from_secs(60)).await;
        assert!(
            missing.is_empty(),
            "{} of {} requests spooled before the kill lost events",
            missing.len(),
            during.len()
        );
        let mut late_observations = 0;
        let mut late_events = 0;
        for r in &late {
            let (o, p) = rows_of(&store, &db, *r).await;
            late_observations += o.len() as u64;
            late_events += o.len() + p.len();
        }
        eprintln!(
            "events of the {} requests sent just before the kill stored after the restart: {late_events} of {}",
            late.len(),
            3 * late.len()
        );
        assert_eq!(
            store.count_observations(None).await.unwrap(),
            2 * (before.len() + during.len()) as u64 + late_observations,
            "each observation is stored once"
        );
        // The row-less observations: the 50 spooled or written before the kill, each counted
        // once (the spooled flushes replayed once, whatever the restart replays again); of the
        // late ones, at most those that were still in memory are lost.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while plain().await < 50 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "spooled row-less observations lost: {} of 50 counted",
                plain().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let counted = plain().await;
        assert!(
            (50..=55).contains(&counted),
            "each row-less observation counted once: {counted}"
        );
        eprintln!(
            "row-less observations of the late requests counted: {}",
            counted - 50
        );
        assert_eq!(
            store.count_aggregated(Some("chat")).await.unwrap(),
            store.count_observations(Some("chat")).await.unwrap(),
            "rows are counted once each"
        );
        store.close().await;
        db.cleanup().await;
    }
}
