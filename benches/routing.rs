//! Criterion benches for the per-request pure work: the routing decision (unit key → bucket →
//! plan, with cohort rules) and the body rewrite (parse once, rewrite `model`, apply overrides).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::path::Path;

use canarist::capture::Endpoint;
use canarist::config::Config;
use canarist::routing::{self, Draws, RoutedDeployment};
use canarist::upstream::request;
use criterion::{Criterion, criterion_group, criterion_main};

const CONFIG: &str = r#"
providers: { p: { base_url: "http://127.0.0.1:1/v1" } }
deployments:
  - slug: chat
    mode: live
    stable: { provider: p, model: stable-model, params: { temperature: 0.2 } }
    candidates: [ { name: cand, provider: p, model: cand-model, percent: 10, system_prompt: "Be brief." } ]
    cohorts:
      labels: { tier: { metadata: tier }, region: { header: x-region } }
      rules: [ { match: { tier: enterprise }, action: exclude, until_percent: 25 } ]
"#;

fn body() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": "chat",
        "messages": [{"role": "system", "content": "You are a helpful support agent for ACME."},
                     {"role": "user", "content": "My order #1234 has not arrived; it was due yesterday. Can you check?"}],
        "user": "user-42", "temperature": 0.7, "metadata": {"tier": "pro"},
        "tools": [{"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}],
    }))
    .unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let Ok(config) = Config::from_yaml(Path::new("bench.yaml"), CONFIG, &|_| None) else {
        return;
    };
    let routed = RoutedDeployment::new(config.deployments[0].clone());
    let dep = &routed.deployment;
    let body = body();
    let empty = http::HeaderMap::new();

    c.bench_function("routing/plan (unit key, cohort labels, rules)", |b| {
        b.iter(|| {
            let req = black_box("user-42");
            let bucket = routing::bucket(routed.seed, req);
            let meta = serde_json::Map::from_iter([("tier".to_owned(), serde_json::json!("pro"))]);
            let labels = routing::cohort_labels(
                &dep.cohorts,
                |h| empty.get(h).and_then(|v| v.to_str().ok()),
                Some(&meta),
            );
            routing::plan(
                dep,
                Some(bucket),
                Draws {
                    unsticky_bucket: 7,
                    pair_roll: 9,
                },
                |i| routing::eligible(&dep.cohorts, &labels, dep.candidates[i].buckets),
            )
        })
    });
    c.bench_function("request/parse", |b| {
        b.iter(|| request::parse(Endpoint::ChatCompletions, black_box(&body)).map(|r| r.stream))
    });
    c.bench_function("request/parse + rewrite (model, params)", |b| {
        b.iter(|| {
            request::parse(Endpoint::ChatCompletions, black_box(&body))
                .map(|r| r.body_for(&dep.stable).len())
        })
    });
    c.bench_function("request/parse + rewrite (system prompt override)", |b| {
        b.iter(|| {
            request::parse(Endpoint::ChatCompletions, black_box(&body))
                .map(|r| r.body_for(&dep.candidates[0].variant).len())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
