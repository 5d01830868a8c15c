//! Heavy users at a 10% live stage (issue 14), through the real gateway, store and controller:
//! sticky users (`x-canarist-unit`) with seeded Pareto request volumes, three heavy ones on
//! the candidate. The request split is far from 10% (the heavy users send a large share of
//! the candidate's traffic), yet the sample-ratio check on units passes and an identical
//! candidate is promoted; a candidate that fails 20% of its calls is still rolled back by the
//! gate (guardrails off, so that the statistical gate — over units — decides).

use canarist::mock::ErrorStatus;
use futures::StreamExt;
use rand::distr::Distribution;
use rand::{SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;

use super::*;

const HEAVY: &str = r#"
deployments:
  - slug: chat
    stable: { provider: mock, model: mock-fast }
    candidates: [{ name: cand, provider: mock, model: MODEL }]
    live: { pair_sample_percent: 20, fallback_to_stable: false }
    ramp:
      stages:
        - { percent: 10, min_duration: 0s, min_judged_pairs: 0, max_duration: 1h }
        - { percent: 50, min_duration: 1h, min_judged_pairs: 0, max_duration: 2h }
    gate:
      metrics: [{ name: error_rate, kind: error_rate, margin: 0.05, ceiling: 0.1 }]
      min_samples: 20
"#;

fn mock_config() -> MockConfig {
    let bad = Profile {
        error_rate: 0.2,
        error_status: ErrorStatus::default(),
        ..Profile::default()
    };
    MockConfig::builtin()
        .unwrap()
        .with_model("mock-same", Profile::default())
        .with_model("mock-bad", bad)
}

/// Starts a node without guardrails (the gate alone decides).
async fn start(cfg: &Config, db: &TestDb) -> Node {
    let store = db.store().await;
    let options = canarist::app::Options {
        sink: Some(Arc::new(StoreSink::new(store.clone()))),
        guardrails: false,
        ..gateway::with_store(&store)
    };
    let server = gateway::start(cfg.clone(), options).await;
    Node {
        server,
        store,
        client: reqwest::Client::new(),
    }
}

/// The stage's traffic: three heavy users the candidate serves (120, 80 and 60 requests) and
/// 400 light ones with Pareto(1, 1.5) volumes capped at 20, in a seeded random order.
async fn heavy_tailed_traffic(node: &Node) -> usize {
    let mut heavy = Vec::new();
    for i in 0.. {
        let unit = format!("heavy-{i}");
        if node.chat(&unit).await.1 == "cand" {
            heavy.push(unit);
        }
        if heavy.len() == 3 {
            break;
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let pareto = statrs::distribution::Pareto::new(1.0, 1.5).unwrap();
    let mut requests: Vec<String> = Vec::new();
    for (unit, n) in heavy.iter().zip([120, 80, 60]) {
        requests.extend(std::iter::repeat_n(unit.clone(), n));
    }
    for i in 0..400 {
        let n = (pareto.sample(&mut rng).floor() as usize).min(20);
        requests.extend(std::iter::repeat_n(format!("user-{i}"), n));
    }
    requests.shuffle(&mut rng);
    let total = requests.len();
    futures::stream::iter(requests)
        .map(|unit| async move { node.chat(&unit).await })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    total
}

/// The gate's transition out of stage 0 (the controller's, actor `gate`).
async fn gate_transition(node: &Node) -> canarist::store::Transition {
    let log = actions::audit_log(node.ctx(), DEPLOYMENT).await.unwrap();
    log.into_iter()
        .find(|t| t.actor == "gate" && t.from_stage == 0)
        .unwrap_or_else(|| panic!("no gate transition from stage 0"))
}

fn evidence<'a>(t: &'a canarist::store::Transition, metric: &str) -> &'a Value {
    t.evidence["decision"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["metric"] == metric && e["cohort"] == "all")
        .unwrap_or_else(|| panic!("no {metric} evidence in {}", t.evidence))
}

/// The p-value of the request split the sample-ratio note reports (information only).
fn request_split_p(note: &str) -> f64 {
    let requests = note
        .split("; requests ")
        .nth(1)
        .unwrap_or_else(|| panic!("{note}"));
    let p = requests
        .split("p = ")
        .nth(1)
        .unwrap_or_else(|| panic!("{note}"));
    p.split([';', ')'])
        .next()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{note}"))
}

#[tokio::test]
async fn heavy_users_do_not_block_promotion_and_a_failing_candidate_is_rolled_back() {
    let mock = MockServer::start(mock_config()).await.unwrap();
    for (model, want) in [("mock-same", "canary"), ("mock-bad", "rolled_back")] {
        for db in backends().await {
            let cfg = config(&mock, &db.url, &HEAVY.replace("MODEL", model));
            let node = start(&cfg, &db).await;
            actions::start(node.ctx(), DEPLOYMENT, &actor("cli"), "begin")
                .await
                .unwrap();
            let sent = heavy_tailed_traffic(&node).await;
            eventually(&format!("{model}: the gate to end stage 0"), || async {
                let (state, stage) = latest(node.ctx()).await;
                (state == want && (stage == 1 || want == "rolled_back")).then_some(())
            })
            .await;
            let t = gate_transition(&node).await;
            let srm = evidence(&t, "sample_ratio");
            let errors = evidence(&t, "error_rate");
            let label = format!("{} {model}: {sent} requests", db.label);
            if want == "canary" {
                assert_eq!(srm["verdict"], "passed", "{label}: {srm}");
                // The counts name their variants: the candidate (10%) served fewer units than
                // stable.
                let units = srm["units"].as_array().unwrap();
                assert!(units[0].as_u64() < units[1].as_u64(), "{label}: {srm}");
                assert_eq!(srm["unit"], "unit", "{label}: {srm}");
                let p = request_split_p(srm["note"].as_str().unwrap());
                assert!(
                    p < 1e-3,
                    "{label}: the request split would have blocked: {srm}"
                );
                assert_eq!(errors["verdict"], "non_inferior", "{label}: {errors}");
            } else {
                assert_eq!(errors["verdict"], "worse", "{label}: {errors}");
            }
            assert_eq!(errors["unit"], "unit", "{label}: {errors}");
            node.stop().await;
            db.cleanup().await;
        }
    }
}

const TAIL: &str = r#"
deployments:
  - slug: chat
    stable: { provider: mock, model: mock-timed }
    candidates: [{ name: cand, provider: mock, model: MODEL }]
    live: { pair_sample_percent: 20, fallback_to_stable: false }
    ramp:
      stages:
        - { percent: 10, min_duration: 0s, min_judged_pairs: 0, max_duration: 1h }
        - { percent: 50, min_duration: 1h, min_judged_pairs: 0, max_duration: 2h }
    gate:
      metrics:
        - { name: error_rate, kind: error_rate, margin: 0.05, ceiling: 0.1 }
        - { name: latency_p95, kind: latency_tail, quantile: 0.95, margin: 0.1 }
      min_samples: 20
"#;

/// The latency tail over units through the real gateway, store and controller: stable and an
/// identical candidate answer in a lognormal 20 ms (median) / 60 ms (p95); a slow candidate in
/// 60 / 180 ms. With the same heavy users at 10%, the identical candidate is promoted and the
/// slow one rolled back on `latency_p95` alone (its error rate is stable's), and both decisions
/// compare the two sides' shares above the two rungs either side of stable's p95 over units
/// (interpolated where stable's share is 5%) and, since the stage samples pairs, the
/// pair-sampled requests' latencies at each rung (pairs first).
#[tokio::test]
async fn a_latency_tail_is_compared_over_units_and_a_slower_candidate_is_rolled_back() {
    let timed = |median: u64, p95: u64| Profile {
        latency: canarist::mock::Latency::LogNormal {
            median: Duration::from_millis(median),
            p95: Duration::from_millis(p95),
        },
        ..Profile::default()
    };
    let mock = MockServer::start(
        MockConfig::builtin()
            .unwrap()
            .with_model("mock-timed", timed(20, 60))
            .with_model("mock-timed-too", timed(20, 60))
            .with_model("mock-slow", timed(60, 180)),
    )
    .await
    .unwrap();
    for (model, want) in [("mock-timed-too", "canary"), ("mock-slow", "rolled_back")] {
        for db in backends().await {
            let cfg = config(&mock, &db.url, &TAIL.replace("MODEL", model));
            let node = start(&cfg, &db).await;
            actions::start(node.ctx(), DEPLOYMENT, &actor("cli"), "begin")
                .await
                .unwrap();
            let sent = heavy_tailed_traffic(&node).await;
            eventually(&format!("{model}: the gate to end stage 0"), || async {
                let (state, stage) = latest(node.ctx()).await;
                (state == want && (stage == 1 || want == "rolled_back")).then_some(())
            })
            .await;
            let t = gate_transition(&node).await;
            let tail = evidence(&t, "latency_p95");
            let label = format!("{} {model}: {sent} requests", db.label);
            // Both comparisons ran at both rungs (over units, and on the pair-sampled requests'
            // latencies at the same rung); the tighter one names the method.
            let method = tail["method"].as_str().unwrap();
            assert!(
                ["exceedance_difference_delta_cs", "paired_requests_delta_cs"].contains(&method),
                "{label}: {tail}"
            );
            assert_eq!(tail["unit"], "unit", "{label}: {tail}");
            let note = tail["note"].as_str().unwrap();
            assert!(
                note.starts_with("interpolated between the rungs"),
                "{label}: {note}"
            );
            for rung in ["; lower: threshold ", "; upper: threshold "] {
                assert!(note.contains(rung), "{label}: {note}");
            }
            assert!(note.contains("; paired requests: "), "{label}: {note}");
            let verdict = if want == "canary" {
                "non_inferior"
            } else {
                "worse"
            };
            assert_eq!(tail["verdict"], verdict, "{label}: {tail}");
            let errors = &evidence(&t, "error_rate")["verdict"];
            if want == "canary" {
                assert_eq!(errors, "non_inferior", "{label}");
            } else {
                assert_ne!(errors, "worse", "{label}: the latency decided");
            }
            node.stop().await;
            db.cleanup().await;
        }
    }
}
