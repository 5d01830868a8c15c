//! Live mode and sticky assignment over real HTTP: who answers, stickiness across a ramp,
//! cohort exclusion, pair sampling, fallback, overrides on the wire, and `/v1/models`.

use std::collections::HashMap;

use canarist::capture::{ErrorClass, Purpose, Role};
use canarist::mock::MockConfig;
use futures::StreamExt;
use serde_json::json;
use statrs::distribution::{Binomial, DiscreteCDF};

use crate::support::{Harness, chat_body, metric_value};

const LIVE: &str = r#"
deployments:
  - slug: chat
    model: chat
    mode: live
    stage: canary-1
    stable: { provider: mock, model: mock-fast, params: { temperature: 0.2 } }
    candidates:
      - { name: cand, provider: mock, model: mock-candidate-fast, percent: 0.5, system_prompt: "Answer in one sentence." }
    cohorts:
      labels: { tier: { metadata: tier }, region: { header: x-region } }
      rules: [ { match: { tier: enterprise }, action: exclude } ]
"#;

fn mock() -> MockConfig {
    MockConfig::builtin()
        .unwrap()
        .with_model("mock-candidate-fast", canarist::mock::Profile::default())
}

/// Sends one request per unit (concurrently) and returns unit → serving variant.
async fn variants_for(h: &Harness, units: &[String]) -> HashMap<String, String> {
    futures::stream::iter(units.iter().cloned())
        .map(|unit| async move {
            let r = h
                .chat(&chat_body("chat", "hi"), &[("x-canarist-unit", &unit)])
                .await;
            assert_eq!(r.status(), 200);
            let v = r.headers()["x-canarist-variant"]
                .to_str()
                .unwrap()
                .to_owned();
            (unit, v)
        })
        .buffer_unordered(32)
        .collect()
        .await
}

#[tokio::test]
async fn split_share_stickiness_and_ramp_over_http() {
    let h = Harness::start(mock(), LIVE).await;
    let units: Vec<String> = (0..20_000).map(|i| format!("unit-{i}")).collect();
    let at_half = variants_for(&h, &units).await;
    let candidates: Vec<&String> = at_half
        .iter()
        .filter(|(_, v)| *v == "cand")
        .map(|(u, _)| u)
        .collect();
    let n = units.len() as u64;
    let b = Binomial::new(0.005, n).unwrap();
    let (lo, hi) = (b.inverse_cdf(0.0005), b.inverse_cdf(0.9995));
    let k = candidates.len() as u64;
    assert!(
        (lo..=hi).contains(&k),
        "{k} of {n} on the candidate, 99.9% interval [{lo}, {hi}]"
    );

    // The same unit always gets the same variant.
    let sample: Vec<String> = units.iter().step_by(97).cloned().collect();
    let again = variants_for(&h, &sample).await;
    for u in &sample {
        assert_eq!(again[u], at_half[u], "unit {u} switched variant");
    }

    // Ramping up keeps every unit that saw the candidate.
    for percent in [2.0, 10.0] {
        let gw = h.gateway.gateway();
        let next = gw
            .traffic
            .load()
            .with_change("chat", |d| {
                d.candidates[0].buckets = (percent * 100.0) as u16
            })
            .unwrap();
        gw.traffic.set(next);
        let seen: Vec<String> = candidates.iter().map(|u| (*u).clone()).collect();
        let now = variants_for(&h, &seen).await;
        for u in &seen {
            assert_eq!(now[u], "cand", "unit {u} lost the candidate at {percent}%");
        }
    }
}

#[tokio::test]
async fn requests_without_a_unit_are_marked_unsticky() {
    let h = Harness::start(mock(), &LIVE.replace("percent: 0.5", "percent: 50")).await;
    for _ in 0..20 {
        assert_eq!(h.chat(&chat_body("chat", "hi"), &[]).await.status(), 200);
    }
    let obs = h.wait_observations(|o| o.len() >= 20).await;
    assert!(obs.iter().all(|o| !o.sticky && o.unit_key.is_none()));
    let served_by_candidate = obs.iter().filter(|o| o.role == Role::Candidate).count();
    assert!(
        served_by_candidate > 0 && served_by_candidate < 20,
        "random, not all one way"
    );
    // `user` is the next unit key source.
    let mut body = chat_body("chat", "hi");
    body["user"] = json!("bob");
    h.chat(&body, &[]).await;
    let obs = h.wait_observations(|o| o.len() >= 21).await;
    assert!(
        obs.iter()
            .any(|o| o.unit_key.as_deref() == Some("bob") && o.sticky)
    );
}

#[tokio::test]
async fn excluded_cohorts_never_see_the_candidate_and_labels_are_captured() {
    let h = Harness::start(mock(), &LIVE.replace("percent: 0.5", "percent: 100")).await;
    let mut body = chat_body("chat", "hi");
    body["metadata"] = json!({"tier": "enterprise"});
    for i in 0..30 {
        let unit = format!("e{i}");
        let r = h
            .chat(&body, &[("x-canarist-unit", &unit), ("x-region", "eu")])
            .await;
        assert_eq!(r.headers()["x-canarist-variant"], "stable");
    }
    body["metadata"] = json!({"tier": "free"});
    let r = h.chat(&body, &[("x-canarist-unit", "f1")]).await;
    assert_eq!(r.headers()["x-canarist-variant"], "cand");
    assert_eq!(r.headers()["x-canarist-stage"], "canary-1");
    assert_eq!(r.headers()["x-canarist-deployment"], "chat");
    let obs = h.wait_observations(|o| o.len() >= 31).await;
    let enterprise: Vec<_> = obs
        .iter()
        .filter(|o| o.cohort.get("tier").map(String::as_str) == Some("enterprise"))
        .collect();
    assert_eq!(enterprise.len(), 30);
    assert!(
        enterprise
            .iter()
            .all(|o| o.role == Role::Stable && o.cohort["region"] == "eu")
    );
}

#[tokio::test]
async fn variant_overrides_reach_the_upstream_and_unknown_fields_pass_through() {
    let h = Harness::start(mock(), &LIVE.replace("percent: 0.5", "percent: 100")).await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}],
                      "temperature": 0.9, "x_vendor": {"keep": [1, 2]}, "metadata": {"tier": "free"}});
    h.chat(&body, &[("x-canarist-unit", "u")]).await;
    let sent = h.mock.requests();
    let got = &sent.last().unwrap().body;
    assert_eq!(got["model"], "mock-candidate-fast");
    assert_eq!(
        got["messages"][0],
        json!({"role": "system", "content": "Answer in one sentence."})
    );
    assert_eq!(got["x_vendor"], json!({"keep": [1, 2]}));
    assert_eq!(
        got["temperature"], 0.9,
        "candidate has no temperature override"
    );
    let h2 = Harness::start(mock(), &LIVE.replace("percent: 0.5", "percent: 0")).await;
    h2.chat(&body, &[("x-canarist-unit", "u")]).await;
    let got = h2.mock.requests().last().unwrap().body.clone();
    assert_eq!(got["model"], "mock-fast");
    assert_eq!(got["temperature"], 0.2, "stable's override wins");
}

#[tokio::test]
async fn live_pair_sample_and_fallback() {
    let yaml = LIVE
        .replace("percent: 0.5", "percent: 100")
        .replace("model: mock-candidate-fast", "model: mock-500")
        .replace(
            "    cohorts:",
            "    live: { pair_sample_percent: 100, fallback_to_stable: true }\n    cohorts:",
        );
    let h = Harness::start(mock(), &yaml).await;
    let r = h
        .chat(&chat_body("chat", "hi"), &[("x-canarist-unit", "u")])
        .await;
    assert_eq!(r.status(), 200, "the fallback to stable answered");
    assert_eq!(r.headers()["x-canarist-variant"], "stable");
    let obs = h.wait_observations(|o| o.len() >= 3).await;
    let cand = obs.iter().find(|o| o.role == Role::Candidate).unwrap();
    assert_eq!(cand.purpose, Purpose::Served);
    assert_eq!(
        cand.error,
        Some(ErrorClass::Upstream5xx),
        "the failure counts against the candidate"
    );
    assert!(
        obs.iter()
            .any(|o| o.purpose == Purpose::Fallback && o.is_success())
    );
    assert!(
        obs.iter()
            .any(|o| o.purpose == Purpose::Mirrored && o.role == Role::Stable)
    );
    let pairs = h.wait_pairs(1).await;
    assert_eq!(pairs[0].candidate.error, Some(ErrorClass::Upstream5xx));
    let m = h.metrics().await;
    assert_eq!(
        metric_value(&m, "canarist_fallbacks_total{deployment=\"chat\"}"),
        1.0,
        "{m}"
    );
}

#[tokio::test]
async fn models_lists_the_deployments() {
    let h = Harness::start(mock(), LIVE).await;
    let v: serde_json::Value = h
        .client
        .get(h.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "chat");
}

/// The body fields that carry a unit key.
type BodyFields = fn(&str) -> serde_json::Value;

/// The serving variants of `n` requests with `body`, one at a time.
async fn serve_n(h: &Harness, body: &serde_json::Value, n: usize) -> Vec<String> {
    let mut served = Vec::new();
    for _ in 0..n {
        let r = h.chat(body, &[]).await;
        assert_eq!(r.status(), 200);
        served.push(
            r.headers()["x-canarist-variant"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    served
}

#[tokio::test]
async fn unit_keys_from_safety_identifier_prompt_cache_key_and_metadata_user_id_are_sticky() {
    let h = Harness::start(mock(), &LIVE.replace("percent: 0.5", "percent: 50")).await;
    let sources: [(&str, BodyFields); 4] = [
        ("safety_identifier", |k| json!({"safety_identifier": k})),
        ("prompt_cache_key", |k| json!({"prompt_cache_key": k})),
        ("metadata.user_id", |k| json!({"metadata": {"user_id": k}})),
        ("user", |k| json!({"user": k})),
    ];
    let mut sent = 0;
    for (source, fields) in sources {
        let mut variants = std::collections::BTreeSet::new();
        for i in 0..8 {
            let key = format!("{source}-{i}");
            let mut body = chat_body("chat", "hi");
            for (k, v) in fields(&key).as_object().unwrap() {
                body[k] = v.clone();
            }
            let served = serve_n(&h, &body, 6).await;
            sent += served.len();
            assert!(
                served.iter().all(|v| v == &served[0]),
                "{source} {key} switched variant: {served:?}"
            );
            variants.insert(served[0].clone());
        }
        assert_eq!(
            variants.len(),
            2,
            "{source}: 8 units at 50% all went one way"
        );
    }
    let obs = h.wait_observations(|o| o.len() >= sent).await;
    for (source, _) in sources {
        let keyed: Vec<_> = obs
            .iter()
            .filter(|o| o.unit_key.as_deref().is_some_and(|k| k.starts_with(source)))
            .collect();
        assert_eq!(keyed.len(), 48, "{source}");
        assert!(keyed.iter().all(|o| o.sticky), "{source}");
    }
}

#[tokio::test]
async fn the_configured_unit_key_order_decides_which_field_is_the_key() {
    let config = LIVE.replace("percent: 0.5", "percent: 50").replace(
        "    cohorts:",
        "    unit_key_from: [metadata.user_id, prompt_cache_key]\n    cohorts:",
    );
    let h = Harness::start(
        mock(),
        &format!("routing:\n  unit_key_from: [user]\n{config}"),
    )
    .await;
    let mut body = chat_body("chat", "hi");
    body["user"] = json!("u-1");
    body["safety_identifier"] = json!("s-1");
    body["prompt_cache_key"] = json!("p-1");
    h.chat(&body, &[("x-canarist-unit", "h-1")]).await;
    body["metadata"] = json!({"user_id": "m-1", "tier": "free"});
    h.chat(&body, &[("x-canarist-unit", "h-1")]).await;
    let obs = h.wait_observations(|o| o.len() >= 2).await;
    let keys: Vec<_> = obs.iter().map(|o| o.unit_key.as_deref()).collect();
    assert!(
        keys.contains(&Some("p-1")) && keys.contains(&Some("m-1")),
        "{keys:?}"
    );
}
