//! Approval stages: the gate's promote holds a stage with `approval: required` in
//! `awaiting_approval` (alerted once, the stage's traffic unchanged) until an admin approves —
//! through the admin API (a viewer key cannot) or `canarist rollout approve` — and the audit log
//! records who.

use canarist::http::admin::Role;
use canarist::http::admin::keys::create_key;
use serde_json::{Value, json};

use super::*;

const APPROVAL: &str = r#"
deployments:
  - slug: chat
    stable: { provider: mock, model: mock-fast }
    candidates: [{ name: cand, provider: mock, model: mock-cand }]
    ramp:
      stages:
        - { shadow: 100, min_duration: 0s, min_judged_pairs: 0, max_duration: 1h, approval: required }
        - { percent: 50, min_duration: 0s, min_judged_pairs: 0, approval: required }
    gate:
      metrics: [{ name: error_rate, kind: error_rate, margin: 0.15, ceiling: 0.5 }]
      min_samples: 10
    alerts: { webhook_url: "HOOK", format: json }
"#;

async fn wait_state(node: &Node, want: (&str, u32)) {
    eventually(&format!("rollout {want:?}"), || async {
        let got = latest(node.ctx()).await;
        (got.0 == want.0 && got.1 == want.1).then_some(())
    })
    .await;
}

async fn approve_api(node: &Node, key: &str) -> (u16, Value) {
    let r = node
        .client
        .post(format!(
            "{}/v1/deployments/chat/rollout/approve",
            node.server.url()
        ))
        .bearer_auth(key)
        .json(&json!({ "reason": "looked at the evidence" }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn an_approval_stage_is_held_alerted_once_approved_by_an_admin_and_audited() {
    for db in backends().await {
        let mock = MockServer::start(mock_config()).await.unwrap();
        let hooks = Hooks::start().await;
        let rest = format!(
            "public_url: https://canarist.example/\n{}",
            APPROVAL.replace("HOOK", &hooks.url)
        );
        let cfg = config(&mock, &db.url, &rest);
        let node = Node::start(&cfg, &db).await;
        let (admin, admin_row) = create_key(&node.store, "ops", Role::Admin, "t")
            .await
            .unwrap();
        let (viewer, _) = create_key(&node.store, "watcher", Role::Viewer, "t")
            .await
            .unwrap();
        actions::start(node.ctx(), DEPLOYMENT, &actor("cli"), "approval test")
            .await
            .unwrap();
        node.wait_stage("shadow").await;

        // Clean shadow traffic (80 units, as the unit-level sequence is Studentized for its few
        // units): the gate says promote, the stage waits for a person.
        for i in 0..80 {
            assert_eq!(node.chat(&format!("u{i}")).await.0, 200);
        }
        wait_state(&node, ("awaiting_approval", 0)).await;
        let alert = hooks.wait_for(|b| b["event"] == "awaiting_approval").await;
        assert_eq!(
            (alert["state"].as_str(), alert["stage"].as_u64()),
            (Some("awaiting_approval"), Some(0)),
            "{alert}"
        );
        // The alert links to the stage in the dashboard and to its report.
        assert_eq!(
            alert["links"]["stage"],
            "https://canarist.example/ui#/deployments/chat/stages/0"
        );
        assert_eq!(
            alert["links"]["report"],
            "https://canarist.example/ui#/deployments/chat/stages/0/report"
        );
        // Held: more ticks (100 ms each) neither move it nor alert again; traffic stays shadow.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(latest(node.ctx()).await, ("awaiting_approval".into(), 0));
        let (_, variant, stage) = node.chat("later").await;
        assert_eq!((variant.as_str(), stage.as_str()), ("stable", "shadow"));
        let n = hooks
            .bodies()
            .iter()
            .filter(|b| b["event"] == "awaiting_approval")
            .count();
        assert_eq!(n, 1, "alerted once");
        let status = actions::status(node.ctx(), DEPLOYMENT).await.unwrap();
        assert_eq!(status.rollout.unwrap().state, "awaiting_approval");

        // A viewer cannot approve; an admin can, and the audit log says who.
        let (s, v) = approve_api(&node, &viewer).await;
        assert_eq!(s, 403, "{v}");
        assert_eq!(latest(node.ctx()).await, ("awaiting_approval".into(), 0));
        let (s, v) = approve_api(&node, &admin).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            (v["state"].as_str(), v["stage_index"].as_u64()),
            (Some("canary"), Some(1))
        );
        let log = actions::audit_log(node.ctx(), DEPLOYMENT).await.unwrap();
        let approved = log
            .iter()
            .find(|t| t.from_state == "awaiting_approval")
            .unwrap();
        let who = format!("key:{}", admin_row.id);
        assert_eq!(approved.actor, who);
        assert!(
            approved.reason.starts_with(&format!("approved by {who}")),
            "{}",
            approved.reason
        );
        assert_eq!(approved.evidence["kind"], "approval");
        node.wait_stage("canary-1").await;

        // The last stage waits too; `canarist rollout approve` promotes it.
        for i in 0..160 {
            assert_eq!(node.chat(&format!("v{i}")).await.0, 200);
        }
        wait_state(&node, ("awaiting_approval", 1)).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("canarist.yaml");
        let yaml = config_yaml(
            &mock.base_url(),
            &format!("storage: {{ url: \"{}\" }}\n{rest}", db.url),
        );
        std::fs::write(&path, yaml).unwrap();
        let out = cli(&path, "status").await;
        assert!(out.contains("awaiting approval"), "{out}");
        let out = cli(&path, "approve").await;
        assert!(out.contains("is promoted"), "{out}");
        let log = actions::audit_log(node.ctx(), DEPLOYMENT).await.unwrap();
        assert_eq!(log.last().unwrap().actor, "cli");
        node.stop().await;
        db.cleanup().await;
    }
}
