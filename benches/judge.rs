//! Judge bench, against the mock upstream's simulated judge (`mock-judge`, zero latency, real
//! sockets on 127.0.0.1) running in this process on its own runtime:
//!
//! (a) **Throughput under a requests-per-minute limit.** Pairs (4 judge calls each: a pointwise
//!     criterion on both sides, a pairwise criterion in both orders) are judged concurrently
//!     through `Judge::judge_pair` with the judge's limit at `JUDGE_BENCH_RPM` (default 1,200/min)
//!     for about `JUDGE_BENCH_SECS` (default 15 s) of real time. A sampler thread polls the
//!     mock's request counter every 200 µs and notes when the first and the last call arrived;
//!     the achieved rate is `(calls − 1) / (t_last − t_first)` (the limiter's burst is one, so
//!     calls are spaced by one period and the first one starts at once). Printed next to the
//!     configured rate, as a percentage (target: 100 % ± 2 %).
//!
//! (b) **The worker's own overhead per judgment**, with the limit off (a rate no run can reach)
//!     and the cache off. The mock and the judge run on two tokio runtimes whose threads are
//!     named `bench-mock` and `bench-judge`; CPU time (user + system) is read per thread from
//!     `/proc/self/task/*/stat`. The judge's share is the whole process's CPU time minus the mock
//!     threads' (so the mock's HTTP server, request log and simulated verdicts are left out); it
//!     covers prompt rendering, the limits, async-openai request building, the HTTP client,
//!     parsing the JSON answer and building the rows. Reported per judge call and per pair,
//!     next to the wall time per call at `JUDGE_BENCH_IN_FLIGHT` (default 16) calls in flight.
//!     USER_HZ is 100, so CPU times have 10 ms resolution: the run is long enough (default
//!     `JUDGE_BENCH_PAIRS` = 3,000 pairs, 12,000 calls) for that to be < 0.1 %.
//!
//! Run: `cargo bench --bench judge`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use canarist::capture::{Endpoint, Observation, Pair, Purpose, Role};
use canarist::judge::{Judge, JudgeOptions, JudgeStats};
use canarist::mock::{MockConfig, MockServer};
use canarist::rubric::{Rubric, load_file};
use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

const JUDGE: &str = "mock-judge";
const CALLS_PER_PAIR: u64 = 4;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A rubric with one pointwise and one pairwise criterion, judged by `mock-judge` at `rpm`.
fn rubric(dir: &Path, base_url: &str, rpm: u32) -> Rubric {
    std::fs::write(
        dir.join("bench.yaml"),
        format!(
            "id: bench\nversion: 1.0.0\napplies_to:\n  sample_rate: 1.0\n\
             judge:\n  base_url: {base_url}\n  api_key_env: CANARIST_BENCH_JUDGE_KEY\n  model: {JUDGE}\n\
             \x20 temperature: 0\n  seed: 1\n  max_tokens: 200\n  requests_per_minute: {rpm}\n\
             criteria:\n  - id: helpfulness\n    mode: pointwise\n    question: How well does the answer resolve the customer's problem?\n\
             \x20   scale:\n      min: 1\n      max: 5\n      anchors:\n        1: Does not help.\n        5: Fully resolves it.\n\
             \x20 - id: preference\n    mode: pairwise\n    question: Which answer would the customer rather receive?\n"
        ),
    )
    .unwrap();
    load_file(&dir.join("bench.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

fn side(role: Role, prompt: &str, text: &str, pair: Uuid, request: Uuid) -> Observation {
    Observation {
        id: Uuid::new_v4(),
        request_id: request,
        pair_id: Some(pair),
        at: chrono::Utc::now(),
        deployment: "bench".into(),
        variant: role.as_str().into(),
        role,
        purpose: Purpose::Served,
        stage: "shadow".into(),
        config_version: 1,
        endpoint: Endpoint::ChatCompletions,
        upstream_model: role.as_str().into(),
        stream: false,
        bucket: Some(1),
        unit_key: None,
        sticky: false,
        cohort: BTreeMap::new(),
        status: Some(200),
        error: None,
        error_detail: None,
        ttft_ms: Some(10.0),
        latency_ms: 20.0,
        usage: None,
        cost_usd: None,
        finish_reason: Some("stop".into()),
        response_text: Some(text.into()),
        request_body: Some(
            json!({"model": "bench", "messages": [{"role": "user", "content": prompt}]}).into(),
        ),
        response_body: None,
    }
}

/// `n` pairs from the mock's dataset (good answer vs degraded), cycling through it.
fn pairs(n: usize) -> Vec<Pair> {
    let dataset = canarist::mock::Dataset::builtin().unwrap();
    let entries = dataset.entries();
    (0..n)
        .map(|i| {
            let e = &entries[i % entries.len()];
            let (id, request_id) = (Uuid::new_v4(), Uuid::new_v4());
            Pair {
                id,
                request_id,
                deployment: "bench".into(),
                stage: "shadow".into(),
                config_version: 1,
                cohort: BTreeMap::new(),
                stable: side(Role::Stable, &e.prompt, &e.good, id, request_id),
                candidate: side(Role::Candidate, &e.prompt, &e.degraded, id, request_id),
            }
        })
        .collect()
}

fn options(in_flight: usize) -> JudgeOptions {
    JudgeOptions {
        max_in_flight: in_flight,
        grow_every: 10,
        max_retries: 3,
        timeout: Duration::from_secs(30),
        cache_capacity: 0,
        prices: BTreeMap::new(),
    }
}

/// Judges every pair, `in_flight` pairs at a time, on the judge runtime; returns the judgments.
fn judge_all(
    rt: &tokio::runtime::Runtime,
    judge: Arc<Judge>,
    pairs: Vec<Pair>,
    in_flight: usize,
) -> usize {
    rt.block_on(async move {
        tokio::spawn(async move {
            futures::stream::iter(pairs)
                .map(|p| {
                    let judge = judge.clone();
                    async move { judge.judge_pair(&p).await.unwrap().judgments.len() }
                })
                .buffer_unordered(in_flight)
                .fold(0, |n, k| async move { n + k })
                .await
        })
        .await
        .unwrap()
    })
}

/// CPU time (user + system) from a `/proc/.../stat` line.
fn stat_cpu(stat: &str) -> Duration {
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the `)`.
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_micros(ticks * 10_000) // USER_HZ = 100
}

/// CPU time of this process, and of its threads named `bench-mock`.
fn cpu() -> (Duration, Duration) {
    let process = stat_cpu(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default());
    let mut mock = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == "bench-mock" {
            mock +=
                stat_cpu(&std::fs::read_to_string(task.path().join("stat")).unwrap_or_default());
        }
    }
    (process, mock)
}

fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let mock_rt = runtime("bench-mock");
    let judge_rt = runtime("bench-judge");
    let mock = Arc::new(
        mock_rt
            .block_on(MockServer::start(MockConfig::builtin().unwrap()))
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();

    // ---------- (a) throughput under the requests-per-minute limit ----------
    let rpm: u32 = env_or("JUDGE_BENCH_RPM", 1200);
    let secs: f64 = env_or("JUDGE_BENCH_SECS", 15.0);
    let n_pairs = ((f64::from(rpm) / 60.0 * secs) / CALLS_PER_PAIR as f64)
        .ceil()
        .max(2.0) as usize;
    let calls = n_pairs as u64 * CALLS_PER_PAIR;
    let limited = Arc::new(judge_rt.block_on(async {
        Judge::new(
            vec![rubric(dir.path(), &mock.base_url(), rpm)],
            options(8),
            JudgeStats::new(),
        )
        .unwrap()
    }));
    let before = mock.request_count(JUDGE);
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (mock, done) = (mock.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut first, mut last) = (None, None);
            while !done.load(Ordering::Relaxed) {
                let n = mock.request_count(JUDGE) - before;
                let now = Instant::now();
                if n >= 1 && first.is_none() {
                    first = Some(now);
                }
                if n >= calls && last.is_none() {
                    last = Some(now);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            (first, last)
        })
    };
    let start = Instant::now();
    let judgments = judge_all(&judge_rt, limited.clone(), pairs(n_pairs), 64);
    let wall = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let (first, last) = sampler.join().unwrap();
    let (first, last) = (first.unwrap(), last.unwrap());
    assert_eq!(
        mock.request_count(JUDGE) - before,
        calls,
        "one call per question"
    );
    assert_eq!(JudgeStats::get(&limited.stats().calls), calls);
    let span = last - first;
    let achieved = (calls - 1) as f64 / span.as_secs_f64() * 60.0;
    println!(
        "judge/throughput: {n_pairs} pairs, {calls} calls, {judgments} judgments in {wall:.2?}"
    );
    println!(
        "judge/throughput: configured {rpm}/min, achieved {achieved:.1}/min over {span:.2?} \
         (first to last call) = {:.2} % of the limit",
        achieved / f64::from(rpm) * 100.0
    );

    // ---------- (b) overhead per judgment, limit off ----------
    let n_pairs: usize = env_or("JUDGE_BENCH_PAIRS", 3000);
    let in_flight: usize = env_or("JUDGE_BENCH_IN_FLIGHT", 16);
    let calls = n_pairs as u64 * CALLS_PER_PAIR;
    let dir_off = tempfile::tempdir().unwrap();
    let unlimited = Arc::new(judge_rt.block_on(async {
        Judge::new(
            vec![rubric(dir_off.path(), &mock.base_url(), u32::MAX)],
            options(in_flight),
            JudgeStats::new(),
        )
        .unwrap()
    }));
    // Warm-up: connections, allocator, lazy statics.
    judge_all(&judge_rt, unlimited.clone(), pairs(200), in_flight);
    let work = pairs(n_pairs);
    let before = mock.request_count(JUDGE);
    let calls_before = JudgeStats::get(&unlimited.stats().calls);
    let (cpu0, mock0) = cpu();
    let start = Instant::now();
    let judgments = judge_all(&judge_rt, unlimited.clone(), work, in_flight);
    let wall = start.elapsed();
    let (cpu1, mock1) = cpu();
    assert_eq!(mock.request_count(JUDGE) - before, calls);
    assert_eq!(
        JudgeStats::get(&unlimited.stats().calls) - calls_before,
        calls
    );
    let (total, mock_cpu) = (cpu1 - cpu0, mock1 - mock0);
    let judge_cpu = total.saturating_sub(mock_cpu);
    let per = |d: Duration, n: u64| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "judge/overhead: {n_pairs} pairs, {calls} calls, {judgments} judgments, {in_flight} in flight, \
         limit off, cache off, in {wall:.2?}"
    );
    println!(
        "judge/overhead: wall {:.1} µs per call ({:.0} calls/s); CPU: process {total:.2?}, mock {mock_cpu:.2?}, judge {judge_cpu:.2?}",
        per(wall, calls),
        calls as f64 / wall.as_secs_f64()
    );
    println!(
        "judge/overhead: judge CPU {:.1} µs per call, {:.1} µs per pair (mock's share left out: {:.1} µs per call)",
        per(judge_cpu, calls),
        per(judge_cpu, n_pairs as u64),
        per(mock_cpu, calls)
    );
    drop(mock_rt);
}
