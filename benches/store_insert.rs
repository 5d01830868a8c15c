//! Sustained insert rate of observations through the capture writer and `StoreSink`, on SQLite
//! (a file in a temp dir) and on Postgres when `DATABASE_URL` is set (a fresh database, dropped
//! afterwards). Traffic is shadow-like: every request yields a stable and a candidate observation
//! and a pair (which also enqueues a judge job); 10% keep a request body.
//!
//! Run: `cargo bench --bench store_insert` (optionally `BENCH_REQUESTS=…`).

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use canarist::capture::{
    Capture, CaptureEvent, Endpoint, Observation, Pair, Purpose, Role, Usage, WriterConfig,
};
use canarist::store::{Store, StoreSink};
use chrono::Utc;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

type BoxResult<T> = Result<T, Box<dyn Error>>;

fn observation(i: u64, role: Role, request_id: Uuid, pair_id: Uuid) -> Observation {
    let variant = if role == Role::Stable {
        "stable"
    } else {
        "cand-a"
    };
    Observation {
        id: Uuid::new_v4(),
        request_id,
        pair_id: Some(pair_id),
        at: Utc::now(),
        deployment: "support".into(),
        variant: variant.into(),
        role,
        purpose: if role == Role::Stable { Purpose::Served } else { Purpose::Mirrored },
        stage: "shadow".into(),
        config_version: 7,
        endpoint: Endpoint::ChatCompletions,
        upstream_model: format!("{variant}-model"),
        stream: i.is_multiple_of(2),
        bucket: Some((i % 10_000) as u16),
        unit_key: Some(format!("user-{}", i % 5000)),
        sticky: true,
        cohort: BTreeMap::from([
            ("tier".to_string(), if i.is_multiple_of(10) { "enterprise" } else { "free" }.to_string()),
            ("region".to_string(), "eu".to_string()),
        ]),
        status: Some(200),
        error: None,
        error_detail: None,
        ttft_ms: Some(80.0 + (i % 50) as f64),
        latency_ms: 400.0 + (i % 300) as f64,
        usage: Some(Usage { prompt_tokens: 120, completion_tokens: 80, total_tokens: 200, ..Usage::default() }),
        cost_usd: Some(0.0004),
        finish_reason: Some("stop".into()),
        response_text: Some("Thanks for reaching out! Here is how to reset your password: open \
            Settings, choose Security, then follow the link we email you.".into()),
        request_body: i.is_multiple_of(10).then(|| {
            serde_json::json!({"model": "support", "messages": [{"role": "user", "content": "reset password"}]}).into()
        }),
        response_body: None,
    }
}

async fn run(label: &str, url: &str, requests: u64) -> BoxResult<()> {
    let store = Store::connect(url).await?;
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let config = WriterConfig::default();
    let capacity = config.queue_capacity;
    let capture = Capture::start(
        Arc::new(StoreSink::new(store.clone())),
        config,
        &tracker,
        cancel.clone(),
    );
    let stats = capture.stats().clone();
    let events = requests * 3;
    let start = Instant::now();
    let mut record_time = Duration::ZERO;
    for i in 0..requests {
        // Produce as fast as the writer drains (the bench measures the sink, not drops).
        while capture.queue_depth() + 3 > capacity {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let (request_id, pair_id) = (Uuid::new_v4(), Uuid::new_v4());
        let stable = observation(i, Role::Stable, request_id, pair_id);
        let candidate = observation(i, Role::Candidate, request_id, pair_id);
        let pair = Pair {
            id: pair_id,
            request_id,
            deployment: "support".into(),
            stage: "shadow".into(),
            config_version: 7,
            cohort: stable.cohort.clone(),
            stable: stable.clone(),
            candidate: candidate.clone(),
        };
        let t = Instant::now();
        capture.record(CaptureEvent::Observation(Box::new(stable)));
        capture.record(CaptureEvent::Observation(Box::new(candidate)));
        capture.record(CaptureEvent::Pair(Box::new(pair)));
        record_time += t.elapsed();
    }
    while stats.written.load(Ordering::Relaxed) + stats.dropped() < events {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let observations = store.count_observations(None).await?;
    println!(
        "{label:<9} {requests} requests → {observations} observations + {requests} pairs in {elapsed:.2} s: \
         {:.0} observations/s ({:.0} events/s); record() {:.0} ns/call; dropped {}; write errors {}",
        observations as f64 / elapsed,
        stats.written.load(Ordering::Relaxed) as f64 / elapsed,
        record_time.as_nanos() as f64 / events as f64,
        stats.dropped(),
        stats.write_errors.load(Ordering::Relaxed),
    );
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    store.close().await;
    Ok(())
}

async fn bench() -> BoxResult<()> {
    let requests: u64 = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let dir = tempfile::tempdir()?;
    run(
        "sqlite",
        &format!("sqlite://{}", dir.path().join("bench.db").display()),
        requests,
    )
    .await?;
    if let Ok(admin) = std::env::var("DATABASE_URL") {
        let name = format!("canarist_bench_{}", Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let result = run("postgres", &format!("{base}/{name}"), requests).await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await?;
        result?;
    } else {
        println!("postgres  skipped (set DATABASE_URL)");
    }
    Ok(())
}

fn main() -> BoxResult<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}
