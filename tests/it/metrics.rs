//! `/metrics` after a known sequence: proxied requests by variant and status class, the stage and
//! percentage gauges following the traffic table, gate decisions from a known number of
//! controller ticks, one guardrail trip, admin calls refused by the rate limit, and the
//! controller's leadership gauge. SQLite (leadership there is immediate).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use canarist::app::{Options, Runtime};
use canarist::config::Config;
use canarist::http::admin::Role;
use canarist::http::admin::keys::create_key;
use canarist::mock::{MockConfig, MockServer, Profile};
use canarist::rollout::actions::{self, Actor};
use canarist::rollout::controller::{self, Controller};
use canarist::store::StoreSink;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::sqlite_db;
use crate::support::{chat_body, config_yaml, gateway, metric_value};

const REST: &str = r#"
controller: { tick: 1h, leader_retry: 100ms }
admin: { rate_limit_per_minute: 1, rate_limit_burst: 3 }
deployments:
  - slug: chat
    stable: { provider: mock, model: mock-fast }
    candidates: [{ name: cand, provider: mock, model: mock-500 }]
    ramp:
      stages:
        - { percent: 50, min_duration: 1h, min_judged_pairs: 0 }
    gate:
      metrics: [{ name: error_rate, kind: error_rate, margin: 0.15, ceiling: 0.9 }]
      min_samples: 1000
    guardrails: { bucket: 1s, buckets: 60, min_count: 10, error_ceiling: 0.5 }
"#;

async fn scrape(client: &reqwest::Client, server: &Runtime) -> String {
    let r = client
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The value of the sample `name{labels}` (exact labels, in the order the exporter writes them).
#[track_caller]
fn sample(text: &str, series: &str) -> f64 {
    let prefix = format!("{series} ");
    let found: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    assert_eq!(found.len(), 1, "one `{series}` sample expected in\n{text}");
    found[0]
}

#[tokio::test]
async fn metrics_count_a_known_sequence() {
    let db = sqlite_db().await;
    let mock = MockServer::start(
        MockConfig::builtin()
            .unwrap()
            .with_model("mock-cand", Profile::default()),
    )
    .await
    .unwrap();
    let rest = format!("storage: {{ url: \"{}\" }}\n{REST}", db.url);
    let config = Config::from_yaml(
        std::path::Path::new("metrics-test.yaml"),
        &config_yaml(&mock.base_url(), &rest),
        &|_| None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let store = db.store().await;
    let (viewer, _) = create_key(&store, "viewer", Role::Viewer, "test")
        .await
        .unwrap();
    // The guardrails run as in `serve`; the controller is driven by hand below.
    let options = Options {
        sink: Some(Arc::new(StoreSink::new(store.clone()))),
        controller: false,
        ..gateway::with_store(&store)
    };
    let server = gateway::start(config, options).await;
    let gw = server.gateway().clone();
    let ctx = server.rollouts().expect("guardrails run").ctx.clone();
    let rollout_metrics = Some(gw.metrics.rollout.clone());
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let client = reqwest::Client::new();
    let chat = |unit: String| {
        let client = client.clone();
        let url = format!("{}/v1/chat/completions", server.url());
        async move {
            let r = client
                .post(url)
                .header("x-canarist-unit", unit)
                .json(&chat_body("chat", "hello"))
                .send()
                .await
                .unwrap();
            let variant = r.headers()["x-canarist-variant"]
                .to_str()
                .unwrap()
                .to_owned();
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            (variant, status)
        }
    };
    let labels = r#"{deployment="chat"}"#;

    // Before the rollout: stable serves everything; no candidate share.
    let m = scrape(&client, &server).await;
    assert_eq!(
        sample(&m, &format!("canarist_candidate_served_percent{labels}")),
        0.0
    );
    let mut tally: BTreeMap<(String, u16), u64> = BTreeMap::new();
    for i in 0..5 {
        let (variant, status) = chat(format!("pre{i}")).await;
        assert_eq!((variant.as_str(), status), ("stable", 200));
        *tally.entry((variant, status)).or_default() += 1;
    }
    let m = scrape(&client, &server).await;
    assert_eq!(
        sample(
            &m,
            r#"canarist_requests_total{deployment="chat",variant="stable",status_class="2xx"}"#
        ),
        5.0
    );

    // Start the ramp: stage 0 at 50% live; the gauges follow the new traffic table.
    actions::start(&ctx, "chat", &Actor::new("test"), "begin")
        .await
        .unwrap();
    gw.traffic.reload().await.unwrap();
    let m = scrape(&client, &server).await;
    assert_eq!(
        sample(&m, &format!("canarist_rollout_stage_index{labels}")),
        0.0
    );
    assert_eq!(
        sample(&m, &format!("canarist_candidate_served_percent{labels}")),
        50.0
    );
    assert_eq!(
        sample(&m, &format!("canarist_candidate_mirrored_percent{labels}")),
        0.0
    );

    // Three controller ticks on a stage far from its minimum duration: three holds.
    let mut ctl = Controller::new(ctx.clone(), rollout_metrics.clone());
    for _ in 0..3 {
        let out = ctl.tick().await;
        assert_eq!(out.len(), 1, "{out:?}");
    }
    let m = scrape(&client, &server).await;
    assert_eq!(
        sample(
            &m,
            r#"canarist_gate_decisions_total{deployment="chat",action="hold"}"#
        ),
        3.0
    );
    assert_eq!(
        metric_value(
            &m,
            r#"canarist_gate_decisions_total{deployment="chat",action="promote"}"#
        ),
        0.0
    );

    // The candidate answers 500: the guardrail trips once and rolls the stage back.
    for i in 0..2_000 {
        let (variant, status) = chat(format!("g{i}")).await;
        *tally.entry((variant, status)).or_default() += 1;
        let rolled_back = store.rollouts("chat").await.unwrap()[0].state == "rolled_back";
        if rolled_back {
            break;
        }
    }
    assert_eq!(
        store.rollouts("chat").await.unwrap()[0].state,
        "rolled_back"
    );
    // The transition is persisted before the traffic change is written (a few ms later): wait
    // for the zero-traffic state rather than racing it.
    let mut m = String::new();
    for _ in 0..200 {
        gw.traffic.reload().await.unwrap();
        m = scrape(&client, &server).await;
        if sample(&m, &format!("canarist_candidate_served_percent{labels}")) == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        sample(
            &m,
            r#"canarist_guardrail_trips_total{deployment="chat",kind="error_rate"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&m, &format!("canarist_candidate_served_percent{labels}")),
        0.0
    );
    let stable_ok = tally[&("stable".to_owned(), 200)];
    let cand_err = tally[&("cand".to_owned(), 500)];
    assert!(cand_err >= 10, "{tally:?}");
    assert_eq!(tally.len(), 2, "only stable 200s and cand 500s: {tally:?}");
    assert_eq!(
        sample(
            &m,
            r#"canarist_requests_total{deployment="chat",variant="stable",status_class="2xx"}"#
        ),
        stable_ok as f64
    );
    assert_eq!(
        sample(
            &m,
            r#"canarist_requests_total{deployment="chat",variant="cand",status_class="5xx"}"#
        ),
        cand_err as f64
    );

    // Five admin reads with a burst of three: two 429s, counted by role.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = client
            .get(format!("{}/v1/deployments", server.url()))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let m = scrape(&client, &server).await;
    assert_eq!(
        sample(&m, r#"canarist_admin_rate_limited_total{role="viewer"}"#),
        2.0
    );

    // Leadership: 0 until the controller runs, then 1 (SQLite always leads).
    assert_eq!(sample(&m, "canarist_controller_leader"), 0.0);
    let handle = controller::spawn(ctx.clone(), rollout_metrics, &tracker, cancel.clone());
    for _ in 0..500 {
        if handle.is_leader()
            && sample(
                &scrape(&client, &server).await,
                "canarist_controller_leader",
            ) == 1.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        sample(
            &scrape(&client, &server).await,
            "canarist_controller_leader"
        ),
        1.0
    );

    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    server.shutdown().await;
    store.close().await;
    db.cleanup().await;
}
