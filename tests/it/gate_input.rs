//! One converter from store summaries to the gate's input (`canarist::gate_input`): the report's
//! recomputed decision is the controller's, also on a stage that keeps a cohort out of the
//! candidate. SQLite always, Postgres too when `DATABASE_URL` is set.

use std::collections::BTreeMap;
use std::sync::Arc;

use canarist::capture::{CaptureEvent, Endpoint, Observation, Purpose, Role};
use canarist::config::Config;
use canarist::gate::{Action, Verdict};
use canarist::report::{self, BuildOptions, model::DecisionSource};
use canarist::rollout::actions::{self, Actor, RolloutCtx};
use canarist::rollout::alerts::Alerts;
use canarist::rollout::controller::Controller;
use chrono::{Duration, Utc};
use uuid::Uuid;

use crate::store::backends;
use crate::support::config_yaml;

const DEPLOYMENT: &str = "support";

/// A live 10% stage that keeps `tier=enterprise` on stable, gated on the error rate, holding
/// for 5 judged pairs (so the decision is a hold whose reason names every blocker).
const REST: &str = r#"
deployments:
  - slug: support
    stable: { provider: mock, model: mock-fast }
    candidates: [{ name: cand, provider: mock, model: mock-cand }]
    ramp:
      stages:
        - { percent: 10, min_duration: 0s, min_judged_pairs: 5, exclude_cohorts: ["tier=enterprise"] }
        - { percent: 50 }
    gate:
      metrics: [{ name: error_rate, kind: error_rate, margin: 0.05, ceiling: 0.5 }]
      min_samples: 10
"#;

fn served(variant: &str, role: Role, tier: &str, i: usize) -> CaptureEvent {
    CaptureEvent::Observation(Box::new(Observation {
        id: Uuid::new_v4(),
        request_id: Uuid::new_v4(),
        pair_id: None,
        at: Utc::now() + Duration::milliseconds(1),
        deployment: DEPLOYMENT.into(),
        variant: variant.into(),
        role,
        purpose: Purpose::Served,
        stage: "canary-0".into(),
        config_version: 1,
        endpoint: Endpoint::ChatCompletions,
        upstream_model: format!("{variant}-model"),
        stream: false,
        bucket: Some((i % 10_000) as u16),
        unit_key: Some(format!("user-{i}")),
        sticky: true,
        cohort: BTreeMap::from([("tier".to_owned(), tier.to_owned())]),
        status: Some(200),
        error: None,
        error_detail: None,
        ttft_ms: Some(20.0),
        latency_ms: 80.0,
        usage: None,
        cost_usd: None,
        finish_reason: Some("stop".into()),
        response_text: Some(format!("answer {i}")),
        request_body: None,
        response_body: None,
    }))
}

#[tokio::test]
async fn the_reports_recomputed_decision_is_the_controllers_on_a_stage_with_excluded_cohorts() {
    for db in backends().await {
        let yaml = config_yaml(
            "http://127.0.0.1:9/v1",
            &format!("storage: {{ url: \"{}\" }}\n{REST}", db.url),
        );
        let config = Config::from_yaml(std::path::Path::new("gate-input.yaml"), &yaml, &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        let settings = config.rollouts[DEPLOYMENT].clone();
        let store = db.store().await;
        let ctx = RolloutCtx {
            store: store.clone(),
            config: Arc::new(config),
            alerts: Alerts::disabled(),
            traffic: None,
        };
        actions::start(&ctx, DEPLOYMENT, &Actor::new("test"), "begin")
            .await
            .unwrap();

        // Enterprise (1,000 requests) stays on stable; the candidate serves 10% of the other
        // 4,000. Over all traffic that is 8%: a sample-ratio mismatch, and an enterprise cohort
        // without candidate data, if the exclusion were ignored.
        let mut events = Vec::new();
        for i in 0..1_000 {
            events.push(served("stable", Role::Stable, "enterprise", i));
        }
        for i in 1_000..4_600 {
            events.push(served("stable", Role::Stable, "free", i));
        }
        for i in 4_600..5_000 {
            events.push(served("cand", Role::Candidate, "free", i));
        }
        for batch in events.chunks(500) {
            store.write_events(batch).await.unwrap();
        }

        let opts = BuildOptions {
            policy: settings.gate.clone(),
            ramp: Some(settings.ramp.clone()),
            ..BuildOptions::default()
        };
        let recomputed = report::build_with(&store, DEPLOYMENT, 0, &opts)
            .await
            .unwrap()
            .decision
            .unwrap();
        assert_eq!(
            recomputed.source,
            DecisionSource::Recomputed,
            "{}",
            db.label
        );

        let status = actions::status(&ctx, DEPLOYMENT)
            .await
            .unwrap()
            .decision
            .unwrap();
        let mut controller = Controller::new(ctx.clone(), None);
        let ticked = controller.tick().await;
        assert_eq!(ticked.len(), 1, "{}: {ticked:?}", db.label);
        let decided = ticked[0].decision.clone().unwrap();

        // The eligible traffic is what the gate saw: the split is right, enterprise is gone,
        // and only the judged-pair minimum holds the stage.
        assert_eq!(decided.action, Action::Hold, "{}: {decided:?}", db.label);
        assert_eq!(decided.reason, "hold: 0 of 5 judged pairs", "{}", db.label);
        assert!(
            decided
                .evidence
                .iter()
                .all(|e| e.cohort != "tier=enterprise"
                    && (e.verdict == Verdict::NonInferior || e.verdict == Verdict::Passed)),
            "{}: {:?}",
            db.label,
            decided.evidence
        );
        assert!(
            decided.evidence.iter().any(|e| e.metric == "sample_ratio"),
            "{}",
            db.label
        );

        for (who, d) in [("status", &status), ("controller tick", &decided)] {
            assert_eq!(recomputed.action, "hold", "{}: {who}", db.label);
            assert_eq!(recomputed.reason, d.reason, "{}: {who}", db.label);
            assert_eq!(recomputed.evidence, d.evidence, "{}: {who}", db.label);
            assert_eq!(recomputed.alerts, d.alerts, "{}: {who}", db.label);
        }
        store.close().await;
        db.cleanup().await;
    }
}
