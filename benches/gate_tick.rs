//! The controller's tick query (`Store::stage_summary`) on a large stage: 1,000,000 observations
//! of 100,000 sticky units (a live 10% stage: stable serves 90% of the units, the candidate
//! 10%; 2% errors; two cohort label keys), on SQLite (a file in a temp dir) and on Postgres
//! when `DATABASE_URL` is set (a fresh database, dropped afterwards). It times the tick read
//! from the aggregate tables the writer keeps, and the same summary summed from the observation
//! rows (`stage_summary_from_rows`, what every tick did before the aggregate tables); the two
//! must agree on the counts.
//!
//! Run: `cargo bench --bench gate_tick` (optionally `GATE_TICK_OBSERVATIONS=…`,
//! `GATE_TICK_UNITS=…`, `GATE_TICK_ROW_RUNS=…`). Target: the tick under 100 ms on both backends.

use std::collections::BTreeMap;
use std::error::Error;
use std::time::{Duration, Instant};

use canarist::capture::{CaptureEvent, Endpoint, ErrorClass, Observation, Purpose, Role, Usage};
use canarist::store::{StageSummary, Store, SummaryScope};
use chrono::Utc;
use sqlx::Connection;
use uuid::Uuid;

type BoxResult<T> = Result<T, Box<dyn Error>>;

const BATCH: u64 = 5_000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn observation(i: u64, units: u64) -> Observation {
    // A cheap deterministic scramble, so that units and errors do not line up.
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17;
    let unit = h % units;
    let candidate = unit.is_multiple_of(10);
    let variant = if candidate { "cand-a" } else { "stable" };
    let error = h.is_multiple_of(50).then_some(ErrorClass::Upstream5xx);
    Observation {
        id: Uuid::new_v4(),
        request_id: Uuid::new_v4(),
        pair_id: None,
        at: Utc::now(),
        deployment: "support".into(),
        variant: variant.into(),
        role: if candidate {
            Role::Candidate
        } else {
            Role::Stable
        },
        purpose: Purpose::Served,
        stage: "canary-1".into(),
        config_version: 7,
        endpoint: Endpoint::ChatCompletions,
        upstream_model: format!("{variant}-model"),
        stream: false,
        bucket: Some((unit % 10_000) as u16),
        unit_key: Some(format!("user-{unit}")),
        sticky: true,
        cohort: BTreeMap::from([
            (
                "tier".to_string(),
                ["free", "pro", "enterprise"][(unit % 3) as usize].to_string(),
            ),
            (
                "region".to_string(),
                ["eu", "us"][(unit % 2) as usize].to_string(),
            ),
        ]),
        status: Some(if error.is_some() { 502 } else { 200 }),
        error,
        error_detail: None,
        ttft_ms: Some(50.0 + (h % 200) as f64),
        latency_ms: 300.0 + (h % 700) as f64,
        usage: Some(Usage {
            prompt_tokens: 120,
            completion_tokens: 80,
            total_tokens: 200,
            ..Usage::default()
        }),
        cost_usd: Some(0.0004),
        finish_reason: Some("stop".into()),
        response_text: None,
        request_body: None,
        response_body: None,
    }
}

fn requests(s: &StageSummary) -> u64 {
    s.variants
        .iter()
        .filter(|v| v.cohort.is_none())
        .map(|v| v.requests)
        .sum()
}

async fn time_tick(
    store: &Store,
    rows: bool,
    runs: u64,
) -> BoxResult<(Duration, Duration, StageSummary)> {
    let scope = SummaryScope::new("support", "canary-1");
    let mut times = Vec::new();
    let mut last = StageSummary::default();
    for _ in 0..runs {
        let t = Instant::now();
        last = if rows {
            store.stage_summary_from_rows(scope).await?
        } else {
            store.stage_summary(scope).await?
        };
        times.push(t.elapsed());
    }
    times.sort();
    Ok((times[times.len() / 2], times[times.len() - 1], last))
}

async fn run(label: &str, url: &str) -> BoxResult<()> {
    let n = env("GATE_TICK_OBSERVATIONS", 1_000_000);
    let units = env("GATE_TICK_UNITS", 100_000);
    let store = Store::connect(url).await?;
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let batch: Vec<CaptureEvent> = (i..(i + BATCH).min(n))
            .map(|j| CaptureEvent::Observation(Box::new(observation(j, units))))
            .collect();
        store.write_events(&batch).await?;
        i += BATCH;
    }
    let load = start.elapsed().as_secs_f64();
    let (median, max, fast) = time_tick(&store, false, 20).await?;
    let (row_median, row_max, slow) = time_tick(&store, true, env("GATE_TICK_ROW_RUNS", 3)).await?;
    assert_eq!(
        requests(&fast),
        n,
        "{label}: the aggregates hold every observation"
    );
    assert_eq!(
        requests(&fast),
        requests(&slow),
        "{label}: aggregates and rows agree"
    );
    let units_seen: u64 = fast
        .variants
        .iter()
        .filter(|v| v.cohort.is_none())
        .map(|v| v.units)
        .sum();
    println!(
        "{label:<9} {n} observations, {units_seen} units: loaded in {load:.1} s ({:.0} observations/s \
         with the aggregates); tick from aggregates median {:.1} ms (max {:.1}); from rows median \
         {:.0} ms (max {:.0})",
        n as f64 / load,
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        row_median.as_secs_f64() * 1e3,
        row_max.as_secs_f64() * 1e3,
    );
    store.close().await;
    Ok(())
}

async fn bench() -> BoxResult<()> {
    let dir = tempfile::tempdir()?;
    run(
        "sqlite",
        &format!("sqlite://{}", dir.path().join("bench.db").display()),
    )
    .await?;
    if let Ok(admin) = std::env::var("DATABASE_URL") {
        let name = format!("canarist_bench_{}", Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let result = run("postgres", &format!("{base}/{name}")).await;
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
