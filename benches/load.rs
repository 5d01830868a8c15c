//! Load bench: the same fixed-rate load sent directly to the mock upstream and through canarist
//! (shadow mirroring 10% to a candidate, capture on), in one run. Prints the latency each path
//! sees at p50/p90/p99, the overhead the gateway adds in µs and as a ratio, the gateway's CPU
//! time per proxied request, and the streaming time-to-first-chunk overhead.
//!
//! Run: `cargo bench --bench load` (env `LOAD_RPS`, `LOAD_SECS`, `LOAD_STREAMS` to change the
//! load; defaults 1000 req/s for 10 s over a 50 ms upstream, 300 streams).
//! The mock upstream and the gateway run as separate processes of the real `canarist` binary.
//!
//! For scale on the same machine and load, when nginx is installed (`LOAD_NGINX`, default
//! `/usr/sbin/nginx`; `LOAD_NGINX=off` skips it) the same load also goes through a plain nginx
//! reverse proxy to the mock (one process, keep-alive upstream, no logs): a proxy hop that does
//! nothing else, against which the gateway's CPU per request can be read.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

const BIN: &str = env!("CARGO_BIN_EXE_canarist");

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts `canarist ARGS` and waits for the line announcing its URL.
fn spawn(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("CANARIST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start canarist");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("process exited early")
            .expect("read stdout");
        if let Some(i) = line.find("http://") {
            break line[i..]
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (
        child,
        url.trim_end_matches('/').trim_end_matches("/v1").to_owned(),
    )
}

/// CPU time (user + system) of a process so far, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of /proc/PID/stat (utime, stime), counted after the `)`.
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    let hz = 100; // USER_HZ on Linux
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// A plain nginx reverse proxy in front of `upstream` (`http://host:port`), one process; its URL.
fn spawn_nginx(nginx: &str, upstream: &str, dir: &std::path::Path) -> Option<(Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let upstream = upstream.trim_start_matches("http://");
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {dir}/nginx.pid;\n\
         error_log {dir}/nginx-error.log warn;\nevents {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir};\n  proxy_temp_path {dir};\n\
         \x20 upstream mock {{ server {upstream}; keepalive 256; }}\n\
         \x20 server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
         \x20     proxy_pass http://mock;\n      proxy_http_version 1.1;\n\
         \x20     proxy_set_header Connection \"\";\n      proxy_buffering off;\n    }}\n  }}\n}}\n",
        dir = dir.display(),
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).ok()?;
    let child = Command::new(nginx)
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(dir.join("nginx-error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .ok()?;
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((child, url));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn body(model: &str, i: usize, stream: bool) -> String {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "system", "content": "You are a helpful support agent."},
                     {"role": "user", "content": format!("Where is my order #{i}? It was due yesterday.")}],
        "user": format!("user-{}", i % 5000),
        "stream": stream,
    })
    .to_string()
}

/// Sends `rate` req/s for `secs` (open loop: each request starts at its scheduled time);
/// returns the latency histogram (µs) and the error count.
async fn run_load(
    client: &reqwest::Client,
    url: &str,
    model: &str,
    rate: u64,
    secs: u64,
) -> (Histogram<u64>, u64) {
    let total = (rate * secs) as usize;
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let start = tokio::time::Instant::now();
    let hist = Arc::new(std::sync::Mutex::new(
        Histogram::<u64>::new(3).expect("histogram"),
    ));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let client = client.clone();
        let url = format!("{url}/v1/chat/completions");
        let payload = body(model, i, false);
        let hist = hist.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = match client
                .post(&url)
                .header("content-type", "application/json")
                .body(payload)
                .send()
                .await
            {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            if ok {
                let _ = hist
                    .lock()
                    .map(|mut h| h.record(t.elapsed().as_micros() as u64));
            } else {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let h = hist.lock().map(|h| h.clone()).expect("histogram lock");
    (h, errors.load(std::sync::atomic::Ordering::Relaxed))
}

/// Time to the first streamed chunk, µs, over `n` sequential streams.
async fn first_chunk(client: &reqwest::Client, url: &str, model: &str, n: usize) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for i in 0..n {
        let t = Instant::now();
        let r = client
            .post(format!("{url}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body(model, i, true))
            .send()
            .await;
        if let Ok(mut r) = r {
            if let Ok(Some(_)) = r.chunk().await {
                h.record(t.elapsed().as_micros() as u64).ok();
            }
            while let Ok(Some(_)) = r.chunk().await {}
        }
    }
    h
}

fn q(h: &Histogram<u64>, q: f64) -> u64 {
    h.value_at_quantile(q)
}

#[tokio::main]
async fn main() {
    let rate: u64 = env_or("LOAD_RPS", 1000);
    let secs: u64 = env_or("LOAD_SECS", 10);
    let streams: usize = env_or("LOAD_STREAMS", 300);
    let dir = tempfile::tempdir().expect("tempdir");

    let (mut mock, mock_url) = spawn(&["mock-upstream", "--listen", "127.0.0.1:0"]);
    let config = format!(
        r#"
listen: 127.0.0.1:0
providers:
  mock: {{ base_url: "{mock_url}/v1", timeout: 30s }}
prices:
  mock-50ms: {{ input_per_mtok: 0.15, output_per_mtok: 0.6 }}
deployments:
  - slug: bench
    model: bench
    mode: shadow
    stage: shadow
    stable: {{ provider: mock, model: mock-50ms }}
    candidates: [ {{ name: candidate, provider: mock, model: mock-50ms, percent: 10 }} ]
  - slug: bench-stream
    model: bench-stream
    mode: shadow
    stable: {{ provider: mock, model: mock-fast }}
    candidates: [ {{ name: candidate, provider: mock, model: mock-fast, percent: 10 }} ]
capture:
  sink: "jsonl:{}"
"#,
        dir.path().join("capture.jsonl").display()
    );
    let config_path = dir.path().join("bench.yaml");
    std::fs::write(&config_path, config).expect("write config");
    let (mut gateway, gw_url) = spawn(&["serve", "--config", config_path.to_str().expect("path")]);

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(2048)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");

    // Warm up both paths (connections, allocator).
    let _ = run_load(&client, &mock_url, "mock-50ms", 200, 1).await;
    let _ = run_load(&client, &gw_url, "bench", 200, 1).await;

    println!(
        "load: {rate} req/s for {secs} s, upstream mock-50ms (fixed 50 ms), shadow 10%, capture to JSONL"
    );
    let mock_before = cpu_time(mock.id());
    let (direct, direct_err) = run_load(&client, &mock_url, "mock-50ms", rate, secs).await;
    let mock_cpu = cpu_time(mock.id()).saturating_sub(mock_before);
    let cpu_before = cpu_time(gateway.id());
    let (proxied, proxied_err) = run_load(&client, &gw_url, "bench", rate, secs).await;
    let cpu = cpu_time(gateway.id()).saturating_sub(cpu_before);
    let n = proxied.len().max(1);

    println!(
        "{:<10} {:>8} {:>10} {:>10} {:>10} {:>8}",
        "path", "count", "p50 µs", "p90 µs", "p99 µs", "errors"
    );
    for (name, h, e) in [
        ("direct", &direct, direct_err),
        ("canarist", &proxied, proxied_err),
    ] {
        println!(
            "{:<10} {:>8} {:>10} {:>10} {:>10} {:>8}",
            name,
            h.len(),
            q(h, 0.5),
            q(h, 0.9),
            q(h, 0.99),
            e
        );
    }
    for (label, quantile) in [("p50", 0.5), ("p99", 0.99)] {
        let d = q(&direct, quantile) as f64;
        let p = q(&proxied, quantile) as f64;
        println!(
            "added latency {label}: {:>8.0} µs  (ratio {:.3})",
            p - d,
            p / d.max(1.0)
        );
    }
    println!(
        "gateway CPU: {:.1} ms total, {:.1} µs per proxied request (includes the 10% mirrored calls and capture)",
        cpu.as_secs_f64() * 1e3,
        cpu.as_secs_f64() * 1e6 / n as f64
    );

    println!(
        "for scale, the mock upstream's own CPU per direct request: {:.1} µs",
        mock_cpu.as_secs_f64() * 1e6 / direct.len().max(1) as f64
    );

    let nginx = std::env::var("LOAD_NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".to_owned());
    if nginx != "off" && std::path::Path::new(&nginx).exists() {
        match spawn_nginx(&nginx, &mock_url, dir.path()) {
            Some((mut proxy, url)) => {
                let _ = run_load(&client, &url, "mock-50ms", 200, 1).await;
                let before = cpu_time(proxy.id());
                let (h, errors) = run_load(&client, &url, "mock-50ms", rate, secs).await;
                let nginx_cpu = cpu_time(proxy.id()).saturating_sub(before);
                println!(
                    "for scale, plain nginx proxy hop (no mirroring, no capture): p50 {} µs p99 {} µs, \
                     errors {errors}, added p50 {:.0} µs, CPU {:.1} µs per request; canarist/nginx CPU {:.2}",
                    q(&h, 0.5),
                    q(&h, 0.99),
                    q(&h, 0.5) as f64 - q(&direct, 0.5) as f64,
                    nginx_cpu.as_secs_f64() * 1e6 / h.len().max(1) as f64,
                    (cpu.as_secs_f64() / n as f64)
                        / (nginx_cpu.as_secs_f64() / h.len().max(1) as f64).max(1e-9),
                );
                let _ = proxy.kill();
            }
            None => println!("nginx at {nginx} did not start; no reference hop"),
        }
    }

    let direct_ttfc = first_chunk(&client, &mock_url, "mock-fast", streams).await;
    let proxied_ttfc = first_chunk(&client, &gw_url, "bench-stream", streams).await;
    println!(
        "stream first chunk ({streams} sequential): direct p50 {} µs p99 {} µs; canarist p50 {} µs p99 {} µs; added p50 {} µs p99 {} µs",
        q(&direct_ttfc, 0.5),
        q(&direct_ttfc, 0.99),
        q(&proxied_ttfc, 0.5),
        q(&proxied_ttfc, 0.99),
        q(&proxied_ttfc, 0.5) as i64 - q(&direct_ttfc, 0.5) as i64,
        q(&proxied_ttfc, 0.99) as i64 - q(&direct_ttfc, 0.99) as i64,
    );

    let _ = gateway.kill();
    let _ = mock.kill();
}
