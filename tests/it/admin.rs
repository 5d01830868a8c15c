//! The admin API over real sockets: the gateway (`app::Runtime`, SQLite in a temp
//! dir, and Postgres when `DATABASE_URL` is set) in front of the mock upstream. Every status code
//! of the issue is produced here with its body shape asserted.

/// JWT bearer tokens, rate limits, proxy client keys, the OpenAPI document.
mod auth;
/// Issue 13 item 7: JWT audience and issuer, failed-authentication limit, 413, lanes, /metrics key.
mod hardening;

use std::path::PathBuf;
use std::sync::Arc;

use canarist::app::Runtime;
use canarist::capture::MemorySink;
use canarist::config::Config;
use canarist::http::admin::Role;
use canarist::http::admin::keys::create_key;
use canarist::mock::{MockConfig, MockServer};
use canarist::store::Store;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::store::{TestDb, backends};
use crate::support::{chat_body, config_yaml, gateway};

pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/admin")
        .join(name)
}

/// SQLite only (a Postgres database `backends` made is dropped at once).
pub(crate) async fn sqlite_db() -> TestDb {
    let mut dbs = backends().await;
    let first = dbs.remove(0);
    for d in dbs {
        d.cleanup().await;
    }
    first
}

/// The gateway with a store, plus keys of every role.
pub(crate) struct Env {
    pub(crate) _mock: MockServer,
    pub(crate) server: Runtime,
    pub(crate) store: Store,
    pub(crate) client: reqwest::Client,
    pub(crate) owner: String,
    pub(crate) admin: String,
    pub(crate) viewer: String,
    pub(crate) client_key: String,
    pub(crate) admin_id: String,
}

pub(crate) const DEPLOYMENTS: &str = r#"
deployments:
  - slug: support
    model: support
    mode: off
    stable: { provider: mock, model: mock-stable }
  - slug: ramped
    model: ramped
    mode: shadow
    stage: shadow
    stable: { provider: mock, model: mock-stable }
    candidates:
      - { name: cand, provider: mock, model: mock-candidate-good, percent: 100 }
    ramp:
      stages:
        - { shadow: 1.0, min_duration: 1h }
        - { percent: 10, min_duration: 1h }
"#;

impl Env {
    pub(crate) async fn start(db: &TestDb, admin_yaml: &str) -> Env {
        Env::start_with(db, DEPLOYMENTS, admin_yaml).await
    }

    /// Like [`Env::start`] with other `deployments:` (YAML starting with `deployments:`).
    pub(crate) async fn start_with(db: &TestDb, deployments: &str, admin_yaml: &str) -> Env {
        let mock = MockServer::start(MockConfig::builtin().unwrap())
            .await
            .unwrap();
        let rest = format!("{deployments}storage:\n  url: {}\n{admin_yaml}", db.url);
        let yaml = config_yaml(&mock.base_url(), &rest);
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test.yaml");
        let config = Config::from_yaml(&path, &yaml, &|_| None).unwrap_or_else(|e| panic!("{e}"));
        let store = db.store().await;
        let mut keys = Vec::new();
        for role in [Role::Owner, Role::Admin, Role::Viewer, Role::Client] {
            keys.push(
                create_key(&store, role.as_str(), role, "test")
                    .await
                    .unwrap(),
            );
        }
        let server = gateway::start(
            config,
            gateway::gateway_only(&store, Arc::new(MemorySink::new())),
        )
        .await;
        Env {
            _mock: mock,
            server,
            store,
            client: reqwest::Client::new(),
            admin_id: format!("key:{}", keys[1].1.id),
            owner: keys[0].0.clone(),
            admin: keys[1].0.clone(),
            viewer: keys[2].0.clone(),
            client_key: keys[3].0.clone(),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, value)
    }

    pub(crate) async fn patch(&self, slug: &str, key: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, v) = self
            .send(
                reqwest::Method::PATCH,
                &format!("/v1/deployments/{slug}/traffic"),
                Some(key),
                Some(body),
            )
            .await;
        (s, v)
    }

    /// The serving variant of a chat request for `model` from `unit`.
    pub(crate) async fn served_by(&self, model: &str, unit: &str) -> String {
        let r = self
            .client
            .post(self.url("/v1/chat/completions"))
            .header("x-canarist-unit", unit)
            .json(&chat_body(model, "hi"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        r.headers()["x-canarist-variant"]
            .to_str()
            .unwrap()
            .to_owned()
    }

    pub(crate) async fn stop(self) {
        self.server.shutdown().await;
        self.store.close().await;
    }
}

/// Asserts the OpenAI error shape and returns (code, param).
#[track_caller]
pub(crate) fn error_shape(body: &Value) -> (String, Option<String>) {
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(e["type"].is_string(), "{body}");
    assert!(e.get("param").is_some(), "{body}");
    (
        e["code"].as_str().unwrap_or_default().to_owned(),
        e["param"].as_str().map(str::to_owned),
    )
}

#[tokio::test]
async fn keys_and_roles() {
    for db in backends().await {
        let env = Env::start(&db, "").await;
        let get = |key: Option<String>, path: &'static str| {
            let env = &env;
            async move {
                env.send(reqwest::Method::GET, path, key.as_deref(), None)
                    .await
            }
        };
        // 401 without a key, with a malformed header, with an unknown key.
        let (s, _, body) = get(None, "/v1/deployments").await;
        assert_eq!(s, 401, "{}", db.label);
        assert_eq!(error_shape(&body).0, "invalid_api_key");
        let (s, _, _) = get(Some("cnr_not-a-key".into()), "/v1/deployments").await;
        assert_eq!(s, 401);
        let (s, _, _) = get(Some("garbage".into()), "/v1/deployments").await;
        assert_eq!(s, 401);
        // Viewer reads; client keys may not.
        let (s, _, body) = get(Some(env.viewer.clone()), "/v1/deployments").await;
        assert_eq!(s, 200);
        let slugs: Vec<&str> = body["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["slug"].as_str().unwrap())
            .collect();
        assert_eq!(slugs, ["support", "ramped"]);
        let (s, _, body) = get(Some(env.client_key.clone()), "/v1/deployments").await;
        assert_eq!(s, 403);
        assert_eq!(
            body["error"]["message"],
            "insufficient role for this operation"
        );
        // 403 for a viewer acting, and for an admin managing keys.
        let (s, body) = env
            .patch(
                "support",
                &env.viewer,
                json!({"action": "toggle_shadow", "shadow_mode": true}),
            )
            .await;
        assert_eq!(s, 403);
        assert_eq!(error_shape(&body).0, "insufficient_role");
        let (s, _, _) = get(Some(env.admin.clone()), "/v1/admin/keys").await;
        assert_eq!(s, 403);
        // Owner manages keys over the API; the new key is shown once and works; revoked, it does not.
        let (s, _, created) = env
            .send(
                reqwest::Method::POST,
                "/v1/admin/keys",
                Some(&env.owner),
                Some(json!({"name": "ci", "role": "viewer"})),
            )
            .await;
        assert_eq!(s, 201, "{created}");
        let key = created["key"].as_str().unwrap().to_owned();
        assert!(key.starts_with("cnr_"));
        assert_eq!(created["role"], "viewer");
        let (s, _, list) = get(Some(env.owner.clone()), "/v1/admin/keys").await;
        assert_eq!(s, 200);
        assert_eq!(list["keys"].as_array().unwrap().len(), 5);
        assert!(!list.to_string().contains(&key), "a key is never listed");
        assert_eq!(get(Some(key.clone()), "/v1/deployments").await.0, 200);
        let id = created["id"].as_str().unwrap();
        let (s, _, revoked) = env
            .send(
                reqwest::Method::DELETE,
                &format!("/v1/admin/keys/{id}"),
                Some(&env.owner),
                None,
            )
            .await;
        assert_eq!(s, 200, "{revoked}");
        assert!(revoked["revoked_at"].is_string());
        assert_eq!(get(Some(key), "/v1/deployments").await.0, 401);
        let (s, _, body) = env
            .send(
                reqwest::Method::DELETE,
                &format!("/v1/admin/keys/{id}"),
                Some(&env.owner),
                None,
            )
            .await;
        assert_eq!(
            (s.as_u16(), error_shape(&body).0.as_str()),
            (404, "key_not_found")
        );
        // Key management is audited with the actor.
        let audit = env.store.admin_audit(None).await.unwrap();
        assert!(
            audit
                .iter()
                .any(|a| a.action == "key.revoke" && a.actor.starts_with("key:"))
        );
        env.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn canary_endpoint() {
    for db in backends().await {
        let env = Env::start(&db, "").await;
        let post = |key: &str, body: Value| {
            let env = &env;
            let key = key.to_owned();
            async move {
                env.send(
                    reqwest::Method::POST,
                    "/api/v1/gateway/canary",
                    Some(&key),
                    Some(body),
                )
                .await
            }
        };
        let full = json!({"candidate_model": "mock-candidate-good", "stable_model": "mock-stable", "traffic_percent": 100});
        // 400: missing field, wrong type, out of range — each naming the field.
        for (body, field) in [
            (
                json!({"candidate_model": "mock-candidate-good", "stable_model": "mock-stable"}),
                "traffic_percent",
            ),
            (
                json!({"candidate_model": 3, "stable_model": "mock-stable", "traffic_percent": 5}),
                "candidate_model",
            ),
            (
                json!({"candidate_model": "mock-candidate-good", "stable_model": "mock-stable", "traffic_percent": 101}),
                "traffic_percent",
            ),
            (
                json!({"candidate_model": "mock-candidate-good", "stable_model": "mock-stable", "traffic_percent": "5"}),
                "traffic_percent",
            ),
            (
                json!({"candidate_model": "x", "stable_model": "mock-stable", "traffic_percent": 5, "auto_rollback": "no"}),
                "auto_rollback",
            ),
        ] {
            let (s, _, resp) = post(&env.admin, body.clone()).await;
            assert_eq!(s, 400, "{body} → {resp}");
            let (code, param) = error_shape(&resp);
            assert_eq!(
                (code.as_str(), param.as_deref()),
                ("invalid_body", Some(field)),
                "{resp}"
            );
            assert!(resp["error"]["message"].as_str().unwrap().contains(field));
        }
        // 401, 403.
        let (s, _, _) = env
            .send(
                reqwest::Method::POST,
                "/api/v1/gateway/canary",
                None,
                Some(full.clone()),
            )
            .await;
        assert_eq!(s, 401);
        let (s, _, resp) = post(&env.viewer, full.clone()).await;
        assert_eq!(
            (s.as_u16(), resp["error"]["message"].as_str()),
            (403, Some("insufficient role for this operation"))
        );
        // 200 {"success": true}: deployment `support` (stable mock-stable) now serves the candidate.
        assert_eq!(env.served_by("support", "u1").await, "stable");
        let (s, _, resp) = post(&env.admin, full.clone()).await;
        assert_eq!(s, 200, "{resp}");
        assert_eq!(resp["success"], true);
        assert_eq!(resp["deployment_id"], "support");
        let cand = resp["challenger_id"].as_str().unwrap().to_owned();
        assert_eq!(
            env.served_by("support", "u1").await,
            cand,
            "visible in the next request"
        );
        // A stable model that no deployment serves, but a provider does: a deployment is created.
        let (s, _, resp) = post(&env.admin, json!({"candidate_model": "mock-stable", "stable_model": "mock-candidate-good", "traffic_percent": 0})).await;
        assert_eq!(s, 200, "{resp}");
        assert_eq!(resp["deployment_id"], "mock-candidate-good");
        assert_eq!(env.served_by("mock-candidate-good", "u1").await, "stable");
        // A model no provider serves: 404 model_not_found.
        let (s, _, resp) = post(&env.admin, json!({"candidate_model": "nope-model", "stable_model": "mock-stable", "traffic_percent": 1})).await;
        assert_eq!(
            (s.as_u16(), error_shape(&resp).0.as_str()),
            (404, "model_not_found")
        );
        env.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn traffic_patch_statuses_and_routing() {
    for db in backends().await {
        let env = Env::start(&db, "").await;
        let units: Vec<String> = (0..60).map(|i| format!("user-{i}")).collect();
        // add_challenger → 200 with the documented shape.
        let (s, r) = env.patch("support", &env.admin, json!({"action": "add_challenger", "model_id": "mock-candidate-good", "traffic_pct": 50})).await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["deployment_id"], "support");
        assert_eq!(r["action"], "add_challenger");
        let ch = &r["challenger"];
        assert_eq!(
            (
                ch["model_id"].as_str(),
                ch["traffic_pct"].as_f64(),
                ch["is_active"].as_bool()
            ),
            (Some("mock-candidate-good"), Some(50.0), Some(true))
        );
        let id = ch["id"].as_str().unwrap().to_owned();
        let mut version = r["cache_version"].as_u64().unwrap();
        // Visible in the very next proxied requests: about half the units get the challenger.
        let mut served = Vec::new();
        for u in &units {
            served.push(env.served_by("support", u).await);
        }
        let n = served.iter().filter(|v| **v == id).count();
        assert!(n > 10 && n < 50, "{n} of 60 units on the challenger at 50%");
        assert!(served.iter().all(|v| v == &id || v == "stable"));
        // 422 invalid_traffic_config: above 50% in total, and missing conditional fields.
        for body in [
            json!({"action": "add_challenger", "model_id": "mock-stable", "traffic_pct": 1}),
            json!({"action": "add_challenger", "traffic_pct": 1}),
            json!({"action": "update_traffic", "challenger_id": id}),
            json!({"action": "remove_challenger"}),
            json!({"action": "toggle_shadow"}),
        ] {
            let (s, r) = env.patch("support", &env.admin, body.clone()).await;
            assert_eq!(s, 422, "{body} → {r}");
            assert_eq!(error_shape(&r).0, "invalid_traffic_config");
        }
        // 400: schema failures name the field.
        let (s, r) = env
            .patch("support", &env.admin, json!({"action": "explode"}))
            .await;
        assert_eq!(
            (s.as_u16(), error_shape(&r).1.as_deref()),
            (400, Some("action"))
        );
        let (s, r) = env
            .patch(
                "support",
                &env.admin,
                json!({"action": "toggle_shadow", "shadow_mode": "yes"}),
            )
            .await;
        assert_eq!(
            (s.as_u16(), error_shape(&r).1.as_deref()),
            (400, Some("shadow_mode"))
        );
        // 404 deployment_not_found.
        let (s, r) = env
            .patch(
                "nope",
                &env.admin,
                json!({"action": "toggle_shadow", "shadow_mode": true}),
            )
            .await;
        assert_eq!(
            (s.as_u16(), error_shape(&r).0.as_str()),
            (404, "deployment_not_found")
        );
        // update, toggle, remove: each bumps cache_version; routing follows each one at once.
        let (s, r) = env
            .patch(
                "support",
                &env.owner,
                json!({"action": "update_traffic", "challenger_id": id, "traffic_pct": 0}),
            )
            .await;
        assert_eq!(s, 200, "{r}");
        assert!(r["cache_version"].as_u64().unwrap() > version);
        version = r["cache_version"].as_u64().unwrap();
        for u in &units[..10] {
            assert_eq!(env.served_by("support", u).await, "stable");
        }
        let (s, r) = env
            .patch(
                "support",
                &env.admin,
                json!({"action": "update_traffic", "challenger_id": id, "traffic_pct": 50}),
            )
            .await;
        assert_eq!(s, 200);
        assert!(r["cache_version"].as_u64().unwrap() > version);
        version = r["cache_version"].as_u64().unwrap();
        let (s, r) = env
            .patch(
                "support",
                &env.admin,
                json!({"action": "toggle_shadow", "shadow_mode": true}),
            )
            .await;
        assert_eq!(s, 200);
        assert!(r["cache_version"].as_u64().unwrap() > version);
        version = r["cache_version"].as_u64().unwrap();
        for u in &units {
            assert_eq!(
                env.served_by("support", u).await,
                "stable",
                "shadow: stable answers"
            );
        }
        let (s, r) = env
            .patch(
                "support",
                &env.admin,
                json!({"action": "remove_challenger", "challenger_id": id}),
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(r["challenger"]["is_active"], false);
        assert!(r["cache_version"].as_u64().unwrap() > version);
        let (s, r) = env
            .patch(
                "support",
                &env.admin,
                json!({"action": "remove_challenger", "challenger_id": id}),
            )
            .await;
        assert_eq!(
            (s.as_u16(), error_shape(&r).0.as_str()),
            (404, "challenger_not_found")
        );
        // Every change is in the audit log with the key id that made it.
        let (s, _, log) = env
            .send(
                reqwest::Method::GET,
                "/v1/deployments/support/audit",
                Some(&env.viewer),
                None,
            )
            .await;
        assert_eq!(s, 200);
        let changes = log["changes"].as_array().unwrap();
        let actions: Vec<&str> = changes
            .iter()
            .map(|c| c["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            [
                "traffic.add_challenger",
                "traffic.update_traffic",
                "traffic.update_traffic",
                "traffic.toggle_shadow",
                "traffic.remove_challenger"
            ]
        );
        assert_eq!(changes[0]["actor"], env.admin_id.as_str());
        env.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn concurrent_update_traffic_never_exceeds_half() {
    for db in backends().await {
        let env = Env::start(
            &db,
            "admin:\n  rate_limit_per_minute: 100000\n  rate_limit_burst: 10000\n",
        )
        .await;
        for model in ["mock-stable", "mock-candidate-good"] {
            let (s, r) = env
                .patch(
                    "support",
                    &env.admin,
                    json!({"action": "add_challenger", "model_id": model, "traffic_pct": 10}),
                )
                .await;
            assert_eq!(s, 200, "{r}");
        }
        let ids = ["mock-stable", "mock-candidate-good"];
        let (mut ok, mut refused) = (0, 0);
        for round in 0..25 {
            for id in ids {
                let (s, _) = env
                    .patch(
                        "support",
                        &env.admin,
                        json!({"action": "update_traffic", "challenger_id": id, "traffic_pct": 10}),
                    )
                    .await;
                assert_eq!(s, 200);
            }
            // Each alone fits (40 + 10); together they would make 80%.
            let pct = 40 - (round % 3);
            let (a, b) = tokio::join!(
                env.patch(
                    "support",
                    &env.admin,
                    json!({"action": "update_traffic", "challenger_id": ids[0], "traffic_pct": pct})
                ),
                env.patch(
                    "support",
                    &env.admin,
                    json!({"action": "update_traffic", "challenger_id": ids[1], "traffic_pct": pct})
                ),
            );
            let mut statuses = [a.0.as_u16(), b.0.as_u16()];
            statuses.sort_unstable();
            assert_eq!(statuses, [200, 422], "round {round}: {a:?} {b:?}");
            ok += 1;
            refused += 1;
            let (state, _) = env.store.traffic_state("support").await.unwrap().unwrap();
            let total: u32 = state.candidates.iter().map(|c| u32::from(c.buckets)).sum();
            assert!(total <= 5_000, "round {round}: {total} buckets");
            let live = env.server.gateway().traffic.load();
            let live_total: u32 = live
                .by_slug("support")
                .unwrap()
                .deployment
                .candidates
                .iter()
                .map(|c| u32::from(c.buckets))
                .sum();
            assert!(live_total <= 5_000);
        }
        assert_eq!((ok, refused), (25, 25));
        env.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn rollout_control() {
    for db in backends().await {
        let env = Env::start(&db, "").await;
        let post = |path: &str, key: &str, body: Value| {
            let env = &env;
            let (path, key) = (path.to_owned(), key.to_owned());
            async move {
                env.send(reqwest::Method::POST, &path, Some(&key), Some(body))
                    .await
            }
        };
        let reason = json!({"reason": "manual test"});
        let (s, _, r) = post(
            "/v1/deployments/ramped/rollout",
            &env.viewer,
            reason.clone(),
        )
        .await;
        assert_eq!(
            (s.as_u16(), error_shape(&r).0.as_str()),
            (403, "insufficient_role")
        );
        let (s, _, r) = post("/v1/deployments/ramped/rollout", &env.admin, json!({})).await;
        assert_eq!(
            (s.as_u16(), error_shape(&r).1.as_deref()),
            (400, Some("reason"))
        );
        let (s, _, r) = post(
            "/v1/deployments/ramped/rollout/promote",
            &env.admin,
            reason.clone(),
        )
        .await;
        assert_eq!(s, 404, "{r}");
        assert_eq!(error_shape(&r).0, "rollout_not_found");
        let (s, _, r) = post(
            "/v1/deployments/support/rollout",
            &env.admin,
            reason.clone(),
        )
        .await;
        assert_eq!(
            (s.as_u16(), error_shape(&r).0.as_str()),
            (404, "deployment_not_found"),
            "no ramp"
        );

        let (s, _, r) = post("/v1/deployments/ramped/rollout", &env.admin, reason.clone()).await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["stage_index"], 0);
        let (s, _, r) = post("/v1/deployments/ramped/rollout", &env.admin, reason.clone()).await;
        assert_eq!((s.as_u16(), error_shape(&r).0.as_str()), (409, "conflict"));
        let (s, _, r) = post(
            "/v1/deployments/ramped/rollout/promote",
            &env.owner,
            reason.clone(),
        )
        .await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["stage_index"], 1);
        for action in ["pause", "resume"] {
            let (s, _, r) = post(
                &format!("/v1/deployments/ramped/rollout/{action}"),
                &env.admin,
                json!({"reason": action}),
            )
            .await;
            assert_eq!(s, 200, "{action}: {r}");
        }
        let (s, _, r) = post(
            "/v1/deployments/ramped/rollout/rollback",
            &env.admin,
            json!({"reason": "bad answers"}),
        )
        .await;
        assert_eq!(s, 200, "{r}");
        // The rollback is in force for the next request.
        for u in ["a", "b", "c", "d"] {
            assert_eq!(env.served_by("ramped", u).await, "stable");
        }
        let (s, _, st) = env
            .send(
                reqwest::Method::GET,
                "/v1/deployments/ramped/rollout",
                Some(&env.viewer),
                None,
            )
            .await;
        assert_eq!(s, 200, "{st}");
        assert!(
            st["rollout"]["state"].as_str().unwrap().contains("roll"),
            "{st}"
        );
        let (s, _, st) = env
            .send(
                reqwest::Method::GET,
                "/v1/deployments/ramped",
                Some(&env.viewer),
                None,
            )
            .await;
        assert_eq!(s, 200, "{st}");
        assert!(
            st["latest_decision"]["reason"]
                .as_str()
                .unwrap()
                .contains("bad answers"),
            "{st}"
        );
        assert_eq!(st["latest_decision"]["actor"], env.admin_id.as_str());
        let (s, _, log) = env
            .send(
                reqwest::Method::GET,
                "/v1/deployments/ramped/audit",
                Some(&env.viewer),
                None,
            )
            .await;
        assert_eq!(s, 200);
        let reasons: Vec<&str> = log["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["reason"].as_str().unwrap())
            .collect();
        assert!(
            ["pause", "resume", "bad answers"]
                .iter()
                .all(|w| reasons.iter().any(|r| r.contains(w))),
            "{reasons:?}"
        );
        let (s, _, rep) = env
            .send(
                reqwest::Method::GET,
                "/v1/deployments/ramped/stages/shadow/report",
                Some(&env.viewer),
                None,
            )
            .await;
        assert_eq!(s, 200, "{rep}");
        assert_eq!(rep["stage"], "shadow");
        assert!(rep["variants"].is_array() && rep["decision"].is_object());
        let (s, _, r) = env
            .send(
                reqwest::Method::GET,
                "/v1/deployments/nope",
                Some(&env.viewer),
                None,
            )
            .await;
        assert_eq!(
            (s.as_u16(), error_shape(&r).0.as_str()),
            (404, "deployment_not_found")
        );
        env.stop().await;
        db.cleanup().await;
    }
}
