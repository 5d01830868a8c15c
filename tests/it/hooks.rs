//! The progressive-delivery hooks over a real socket, with the requests Argo Rollouts' `web`
//! metric provider and Flagger's webhooks send, as their documentation and code describe them:
//!
//! - Argo `web` provider (argo-rollouts `docs/analysis/web.md`): `GET` (or `POST` with `jsonBody`)
//!   to `url`, the template's `headers` (`Authorization: Bearer …`, `Content-Type`), the metric
//!   decided on the JSON (`jsonPath: "{$.healthy}"`, `successCondition: result == true`); a
//!   non-2xx answer is a measurement error, so the template asks `always_ok=true`.
//! - Flagger webhooks (flagger `docs/gitbook/usage/webhooks.md`, `pkg/controller/webhook.go`):
//!   `POST` with only `Content-Type: application/json` and the body
//!   `{"name", "namespace", "phase", "checksum", "metadata"}`; 2xx (≤ 202) proceeds, anything
//!   else halts. No headers can be configured, so the key travels in `metadata.canarist_key`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::admin::{Env, error_shape, sqlite_db};

const DEPLOYMENTS: &str = r#"
deployments:
  - slug: gated
    model: gated
    mode: off
    stable: { provider: mock, model: mock-stable }
    candidates:
      - { name: cand, provider: mock, model: mock-candidate-good, percent: 100 }
    ramp:
      stages:
        - { shadow: 100, min_duration: 1h }
        - { percent: 10, min_duration: 1h }
        - { percent: 50, min_duration: 1h }
    gate:
      metrics: [{ name: error_rate, kind: error_rate, margin: 0.05, ceiling: 0.5 }]
      min_samples: 10
"#;

/// What Flagger's webhook client sends: a POST, `Content-Type: application/json`, the payload.
async fn flagger(env: &Env, path: &str, phase: &str, key: &str) -> (StatusCode, Value) {
    let body = json!({
        "name": "podinfo",
        "namespace": "test",
        "phase": phase,
        "checksum": "6d4b8f9c7d",
        "metadata": { "canarist_key": key, "cmd": "hey -z 1m http://podinfo-canary.test:9898/" }
    });
    let r = env
        .client
        .post(env.url(path))
        .header("Content-Type", "application/json")
        .header("User-Agent", "Go-http-client/1.1")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

/// What Argo's `web` provider sends for a GET metric: the template's headers, no body.
async fn argo_get(env: &Env, path: &str, key: &str) -> (StatusCode, Value) {
    let r = env
        .client
        .get(env.url(path))
        .header("Authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn argo_and_flagger_requests_get_the_verdict_and_drive_the_stages() {
    let db = sqlite_db().await;
    let env = Env::start_with(&db, DEPLOYMENTS, "").await;
    let verdict = "/v1/hooks/gated/verdict?always_ok=true";

    // No rollout yet: fails closed (404), for Argo and Flagger alike.
    let (s, v) = argo_get(&env, verdict, &env.viewer).await;
    assert_eq!(
        (s, error_shape(&v).0.as_str()),
        (StatusCode::NOT_FOUND, "rollout_not_found")
    );
    let (s, _) = flagger(&env, "/v1/hooks/gated/verdict", "Progressing", &env.viewer).await;
    assert_eq!(s, 404);
    let (s, _, _) = env
        .send(
            reqwest::Method::POST,
            "/v1/deployments/gated/rollout",
            Some(&env.admin),
            Some(json!({"reason": "hooks"})),
        )
        .await;
    assert_eq!(s, 200);

    // Argo: GET with the template's Authorization header; the JSON carries the gate's verdict
    // and evidence (no traffic yet: hold, healthy).
    let (s, v) = argo_get(&env, verdict, &env.viewer).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["healthy"].as_bool(), v["verdict"].as_str()),
        (Some(true), Some("hold")),
        "{v}"
    );
    assert_eq!(v["state"], "shadow");
    assert_eq!(v["decision"]["action"], "hold");
    assert!(
        v["decision"]["evidence"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "{v}"
    );

    // Flagger `rollout` hook: 200 proceeds; `confirm-promotion` used as a gate waits (412) until
    // the gate says promote; the `rollback` hook type is 412 (do not roll back).
    let (s, v) = flagger(&env, "/v1/hooks/gated/verdict", "Progressing", &env.viewer).await;
    assert_eq!((s, v["met"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
    let (s, v) = flagger(
        &env,
        "/v1/hooks/gated/verdict?expect=promote",
        "Progressing",
        &env.viewer,
    )
    .await;
    assert_eq!(
        (s, v["met"].as_bool()),
        (StatusCode::PRECONDITION_FAILED, Some(false)),
        "{v}"
    );
    let (s, _) = flagger(
        &env,
        "/v1/hooks/gated/verdict?expect=rollback",
        "Progressing",
        &env.viewer,
    )
    .await;
    assert_eq!(s, 412);

    // Credentials: none is 401; a viewer cannot drive the stages; a client key cannot read.
    let (s, _) = flagger(&env, "/v1/hooks/gated/verdict", "Progressing", "").await;
    assert_eq!(s, 401);
    let (s, v) = flagger(&env, "/v1/hooks/gated/promote", "Progressing", &env.viewer).await;
    assert_eq!(
        (s, error_shape(&v).0.as_str()),
        (StatusCode::FORBIDDEN, "insufficient_role")
    );
    let (s, _) = flagger(
        &env,
        "/v1/hooks/gated/verdict",
        "Progressing",
        &env.client_key,
    )
    .await;
    assert_eq!(s, 403);

    // Flagger `confirm-promotion` → canarist promotes one stage; Flagger's retry of the same
    // revision (same checksum) does not promote twice.
    for _ in 0..2 {
        let (s, v) = flagger(&env, "/v1/hooks/gated/promote", "Progressing", &env.admin).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            (v["state"].as_str(), v["stage"].as_u64()),
            (Some("canary"), Some(1)),
            "{v}"
        );
    }
    let (_, _, audit) = env
        .send(
            reqwest::Method::GET,
            "/v1/deployments/gated/audit",
            Some(&env.viewer),
            None,
        )
        .await;
    let hooked: Vec<&Value> = audit["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["evidence"]["kind"] == "hook")
        .collect();
    assert_eq!(hooked.len(), 1, "{audit}");
    assert_eq!(hooked[0]["actor"], env.admin_id.as_str());
    assert_eq!(hooked[0]["evidence"]["canary"], "test/podinfo");
    assert_eq!(hooked[0]["evidence"]["checksum"], "6d4b8f9c7d");
    assert!(
        !audit.to_string().contains(&env.admin),
        "the key is never recorded"
    );

    // Flagger `post-rollout` with phase Succeeded: nothing to roll back.
    let (s, v) = flagger(&env, "/v1/hooks/gated/rollback", "Succeeded", &env.admin).await;
    assert_eq!(
        (s, v["state"].as_str()),
        (StatusCode::OK, Some("canary")),
        "{v}"
    );

    // Argo: a POST web metric (method POST, jsonBody, headers) rolls canarist back.
    let r = env
        .client
        .post(env.url("/v1/hooks/gated/rollback"))
        .header("Authorization", format!("Bearer {}", env.admin))
        .header("Content-Type", "application/json")
        .body(r#"{"rollout": "podinfo", "reason": "argo analysis failed"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["state"].as_str(), v["verdict"].as_str()),
        (Some("rolled_back"), Some("rollback")),
        "{v}"
    );
    assert_eq!(env.served_by("gated", "u1").await, "stable");

    // Now every caller hears "unhealthy": Flagger's rollout hook halts (412, the verdict as the
    // body it logs), its rollback hook fires (200), Argo reads healthy=false.
    let (s, v) = flagger(&env, "/v1/hooks/gated/verdict", "Progressing", &env.viewer).await;
    assert_eq!(
        (s, v["healthy"].as_bool()),
        (StatusCode::PRECONDITION_FAILED, Some(false))
    );
    let (s, _) = flagger(
        &env,
        "/v1/hooks/gated/verdict?expect=rollback",
        "Progressing",
        &env.viewer,
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = argo_get(&env, verdict, &env.viewer).await;
    assert_eq!((s, v["healthy"].as_bool()), (StatusCode::OK, Some(false)));
    // A second rollback (Flagger post-rollout `Failed`) is a no-op 200.
    let (s, _) = flagger(&env, "/v1/hooks/gated/rollback", "Failed", &env.admin).await;
    assert_eq!(s, 200);
    env.stop().await;
    db.cleanup().await;
}
