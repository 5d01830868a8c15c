//! The capture cost per request off the proxy hop: CPU time of the whole process (the request
//! path's `Capture::record`, the writer task and the store) per captured observation, for
//! traffic that forms no pair (mode off, or a live stage's unpaired requests: one stable
//! observation per request, bodies kept), on SQLite (a file in a temp dir) and on Postgres when
//! `DATABASE_URL` is set (a fresh database, dropped afterwards). Two policies on the same
//! observations:
//! - `rows`: every observation a full row (`RowPolicy::ALL_ROWS`), what the store did before
//!   row-less observations existed;
//! - `aggregated`: the default policy (1% row sample, up to 20 error rows per flush); the rest is
//!   flushed as deltas of the aggregate tables.
//!
//! And, without the queue and the writer task, the store's own cost of row-less observations:
//! `flush-N` hands the sink flushes of N row-less observations each (what the writer would give
//! it), so that every flush touches the same units the same way whatever the machine's timing.
//! A flush of 20,000 is what the queued runs make (the producer outruns the 200 ms interval); a
//! gateway at a few thousand requests a second writes flushes of a few hundred, where each
//! observation is one more unit row per cohort. Being deterministic, it is the run to count
//! instructions of (`valgrind --tool=callgrind`, `BENCH_ONLY=flush BENCH_FLUSH=500`).
//!
//! The observations are built before the clock starts; CPU is read from `/proc/self/stat`
//! (10 ms ticks: use runs of seconds). Run: `cargo bench --bench capture_path` (optionally
//! `BENCH_REQUESTS=…`; `BENCH_ONLY=rows|aggregated|flush` for one kind of run; `BENCH_FLUSH=…`,
//! comma-separated flush sizes, default `20000,500`).

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use canarist::capture::{
    Capture, CaptureEvent, Endpoint, Flush, FlushId, Observation, Purpose, Role, RowPolicy, Sink,
    Usage, WriterConfig,
};
use canarist::store::{Store, StoreSink};
use chrono::Utc;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

type BoxResult<T> = Result<T, Box<dyn Error>>;

fn observation(i: u64) -> Observation {
    Observation {
        id: Uuid::new_v4(),
        request_id: Uuid::new_v4(),
        pair_id: None,
        at: Utc::now(),
        deployment: "support".into(),
        variant: "stable".into(),
        role: Role::Stable,
        purpose: Purpose::Served,
        stage: "live-5".into(),
        config_version: 7,
        endpoint: Endpoint::ChatCompletions,
        upstream_model: "stable-model".into(),
        stream: i.is_multiple_of(2),
        bucket: Some((i % 10_000) as u16),
        unit_key: Some(format!("user-{}", i % 5000)),
        sticky: true,
        cohort: BTreeMap::from([(
            "tier".to_string(),
            if i.is_multiple_of(10) {
                "enterprise"
            } else {
                "free"
            }
            .to_string(),
        )]),
        status: Some(200),
        error: None,
        error_detail: None,
        ttft_ms: Some(80.0 + (i % 50) as f64),
        latency_ms: 400.0 + (i % 300) as f64,
        usage: Some(Usage {
            prompt_tokens: 120,
            completion_tokens: 80,
            total_tokens: 200,
            ..Usage::default()
        }),
        cost_usd: Some(0.0004),
        finish_reason: Some("stop".into()),
        response_text: Some(
            "Thanks for reaching out! Here is how to reset your password: open Settings, \
             choose Security, then follow the link we email you."
                .into(),
        ),
        request_body: Some(
            serde_json::json!({"model": "support", "messages": [
            {"role": "user", "content": "How do I reset my password?"}]})
            .into(),
        ),
        response_body: Some(
            serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
            "content": "Thanks for reaching out! Here is how to reset your password."}}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 80, "total_tokens": 200}})
            .into(),
        ),
    }
}

fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the `)`.
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_micros(ticks * 10_000) // USER_HZ = 100
}

async fn run(label: &str, url: &str, policy: &str, rows: RowPolicy, n: u64) -> BoxResult<()> {
    let store = Store::connect(url).await?;
    let config = WriterConfig {
        rows,
        ..WriterConfig::default()
    };
    let capacity = config.queue_capacity;
    let observations: Vec<Observation> = (0..n).map(observation).collect();
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let capture = Capture::start(
        Arc::new(StoreSink::new(store.clone())),
        config,
        &tracker,
        cancel.clone(),
    );
    let stats = capture.stats().clone();
    let cpu0 = process_cpu();
    let start = Instant::now();
    for o in observations {
        // Produce as fast as the writer drains (the bench measures the sink, not drops).
        while capture.queue_depth() + 1 > capacity {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        capture.record(CaptureEvent::Observation(Box::new(o)));
    }
    while stats.written.load(Ordering::Relaxed) + stats.dropped() < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = (process_cpu() - cpu0).as_secs_f64();
    let stored_rows = store.count_observations(None).await?;
    let counted = store.count_aggregated(None).await?;
    println!(
        "{label:<9} {policy:<10} {n} observations in {elapsed:.2} s: {:.1} µs CPU per observation, \
         {:.0} observations/s; {stored_rows} rows, {counted} counted; dropped {}",
        cpu * 1e6 / n as f64,
        n as f64 / elapsed,
        stats.dropped(),
    );
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    store.close().await;
    Ok(())
}

/// Writes `n` row-less observations straight to the store's sink, `size` per flush.
async fn run_flushes(label: &str, url: &str, size: usize, n: u64) -> BoxResult<()> {
    let store = Store::connect(url).await?;
    let sink = StoreSink::new(store.clone());
    let writer = Uuid::new_v4();
    let lean = |i: u64| Observation {
        response_text: None,
        request_body: None,
        response_body: None,
        finish_reason: None,
        ..observation(i)
    };
    let observations: Vec<Observation> = (0..n).map(lean).collect();
    let flushes: Vec<Flush> = observations
        .chunks(size.max(1))
        .zip(1..)
        .map(|(chunk, seq)| Flush {
            id: Some(FlushId { writer, seq }),
            rows: Vec::new(),
            counted: chunk.to_vec(),
        })
        .collect();
    drop(observations);
    let cpu0 = process_cpu();
    let start = Instant::now();
    for flush in &flushes {
        sink.write_flush(flush).await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = (process_cpu() - cpu0).as_secs_f64();
    let counted = store.count_aggregated(None).await?;
    let policy = format!("flush-{size}");
    println!(
        "{label:<9} {policy:<10} {n} observations in {elapsed:.2} s: {:.1} µs CPU per observation, \
         {:.0} observations/s; {counted} counted",
        cpu * 1e6 / n as f64,
        n as f64 / elapsed,
    );
    store.close().await;
    Ok(())
}

/// `BENCH_FLUSH`: the flush sizes of the `flush-N` runs.
fn flush_sizes() -> Vec<usize> {
    let sizes = std::env::var("BENCH_FLUSH").unwrap_or_else(|_| "20000,500".into());
    sizes
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

async fn both(label: &str, url_of: &dyn Fn(&str) -> String, n: u64) -> BoxResult<()> {
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let wanted = |kind: &str| only.is_empty() || only == kind;
    if wanted("rows") {
        run(label, &url_of("rows"), "rows", RowPolicy::ALL_ROWS, n).await?;
    }
    if wanted("aggregated") {
        run(label, &url_of("agg"), "aggregated", RowPolicy::default(), n).await?;
    }
    if wanted("flush") {
        for size in flush_sizes() {
            run_flushes(label, &url_of(&format!("flush{size}")), size, n).await?;
        }
    }
    Ok(())
}

async fn bench() -> BoxResult<()> {
    let n: u64 = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_path_buf();
    both(
        "sqlite",
        &|name| format!("sqlite://{}", path.join(format!("{name}.db")).display()),
        n,
    )
    .await?;
    if let Ok(admin) = std::env::var("DATABASE_URL") {
        let mut conn = sqlx::PgConnection::connect(&admin).await?;
        let suffix = Uuid::new_v4().simple().to_string();
        let names: Vec<String> = ["rows".to_owned(), "agg".to_owned()]
            .into_iter()
            .chain(flush_sizes().iter().map(|size| format!("flush{size}")))
            .map(|name| format!("canarist_bench_{name}_{suffix}"))
            .collect();
        for name in &names {
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await?;
        }
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let result = both(
            "postgres",
            &|name| format!("{base}/canarist_bench_{name}_{suffix}"),
            n,
        )
        .await;
        for name in &names {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await?;
        }
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
