//! JWT bearer tokens (valid, expired, not yet valid, wrong key, role claim), per-key rate limits,
//! proxy client keys and the OpenAPI document.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::{Env, error_shape, fixture, sqlite_db};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Signs `claims` (with the configured `iss` and `aud` added where absent).
fn token(alg: Algorithm, private: &str, claims: &Value) -> String {
    let mut claims = claims.clone();
    for (k, v) in [("iss", "iss"), ("aud", "aud")] {
        if claims.get(k).is_none() {
            claims[k] = json!(v);
        }
    }
    let claims = &claims;
    let pem = std::fs::read(fixture(private)).unwrap();
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    };
    encode(&Header::new(alg), claims, &key).unwrap()
}

async fn list_status(env: &Env, bearer: &str) -> (u16, Value) {
    let (s, _, body) = env
        .send(reqwest::Method::GET, "/v1/deployments", Some(bearer), None)
        .await;
    (s.as_u16(), body)
}

#[tokio::test]
async fn jwt_rs256_from_a_public_key() {
    let db = sqlite_db().await;
    let yaml = format!(
        "admin:\n  jwt:\n    algorithm: RS256\n    public_key_file: {}\n    role_claim: canarist_role\n    leeway_seconds: 0\n    issuer: iss\n    audience: aud\n",
        fixture("jwt-rs256-public.pem").display()
    );
    let env = Env::start(&db, &yaml).await;
    let rs = |claims: Value| token(Algorithm::RS256, "jwt-rs256-private.pem", &claims);
    let valid =
        rs(json!({"sub": "alice@example.com", "exp": now() + 600, "canarist_role": "admin"}));
    assert_eq!(list_status(&env, &valid).await.0, 200);
    // The subject is the actor of a change.
    let (s, r) = env
        .patch(
            "support",
            &valid,
            json!({"action": "toggle_shadow", "shadow_mode": true}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let audit = env.store.admin_audit(Some("support")).await.unwrap();
    assert_eq!(audit.last().unwrap().actor, "jwt:alice@example.com");

    for (claims, private, want) in [
        (
            json!({"sub": "a", "exp": now() - 120, "canarist_role": "admin"}),
            "jwt-rs256-private.pem",
            "expired",
        ),
        (
            json!({"sub": "a", "exp": now() + 600, "nbf": now() + 300, "canarist_role": "admin"}),
            "jwt-rs256-private.pem",
            "nbf",
        ),
        (
            json!({"sub": "a", "exp": now() + 600, "canarist_role": "admin"}),
            "jwt-rs256-other-private.pem",
            "signature",
        ),
        (
            json!({"sub": "a", "exp": now() + 600, "canarist_role": "root"}),
            "jwt-rs256-private.pem",
            "canarist_role",
        ),
        (
            json!({"sub": "a", "exp": now() + 600, "role": "admin"}),
            "jwt-rs256-private.pem",
            "canarist_role",
        ),
        (
            json!({"sub": "a", "canarist_role": "admin"}),
            "jwt-rs256-private.pem",
            "exp",
        ),
    ] {
        let t = token(Algorithm::RS256, private, &claims);
        let (s, body) = list_status(&env, &t).await;
        assert_eq!(s, 401, "{claims}");
        assert_eq!(error_shape(&body).0, "invalid_api_key");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{claims}: {msg}");
    }
    // A token of another algorithm than configured.
    let es = token(
        Algorithm::ES256,
        "jwt-es256-private.pem",
        &json!({"sub": "a", "exp": now() + 600, "canarist_role": "owner"}),
    );
    assert_eq!(list_status(&env, &es).await.0, 401);
    // The role comes from the claim: a viewer token may read but not act.
    let viewer = rs(json!({"sub": "bob", "exp": now() + 600, "canarist_role": "viewer"}));
    assert_eq!(list_status(&env, &viewer).await.0, 200);
    let (s, body) = env
        .patch(
            "support",
            &viewer,
            json!({"action": "toggle_shadow", "shadow_mode": false}),
        )
        .await;
    assert_eq!(
        (s.as_u16(), error_shape(&body).0.as_str()),
        (403, "insufficient_role")
    );
    env.stop().await;
}

#[tokio::test]
async fn jwt_es256_from_a_jwks_file() {
    let db = sqlite_db().await;
    let dir = tempfile::tempdir().unwrap();
    let pem = std::fs::read(fixture("jwt-es256-private.pem")).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(
        &EncodingKey::from_ec_pem(&pem).unwrap(),
        Algorithm::ES256,
    )
    .unwrap();
    jwk.common.key_id = Some("k1".into());
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::to_vec(&json!({"keys": [jwk]})).unwrap()).unwrap();
    let yaml = format!(
        "admin:\n  jwt:\n    algorithm: ES256\n    jwks_file: {}\n    issuer: iss\n    audience: aud\n",
        jwks.display()
    );
    let env = Env::start(&db, &yaml).await;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    let key = EncodingKey::from_ec_pem(&pem).unwrap();
    let t = encode(
        &header,
        &json!({"sub": "svc", "exp": now() + 600, "role": "owner", "iss": "iss", "aud": "aud"}),
        &key,
    )
    .unwrap();
    let (s, _, body) = env
        .send(reqwest::Method::GET, "/v1/admin/keys", Some(&t), None)
        .await;
    assert_eq!(s, 200, "{body}");
    let expired = encode(
        &header,
        &json!({"sub": "svc", "exp": now() - 600, "role": "owner", "iss": "iss", "aud": "aud"}),
        &key,
    )
    .unwrap();
    assert_eq!(list_status(&env, &expired).await.0, 401);
    env.stop().await;
}

#[tokio::test]
async fn rate_limit_is_per_key_with_retry_after() {
    let db = sqlite_db().await;
    let env = Env::start(
        &db,
        "admin:\n  rate_limit_per_minute: 1\n  rate_limit_burst: 3\n",
    )
    .await;
    for _ in 0..3 {
        assert_eq!(list_status(&env, &env.viewer).await.0, 200);
    }
    let (s, headers, body) = env
        .send(
            reqwest::Method::GET,
            "/v1/deployments",
            Some(&env.viewer),
            None,
        )
        .await;
    assert_eq!(s, 429);
    assert_eq!(error_shape(&body).0, "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Writes are limited too, and other keys have their own budget.
    let (s, _) = env
        .patch(
            "support",
            &env.viewer,
            json!({"action": "toggle_shadow", "shadow_mode": true}),
        )
        .await;
    assert_eq!(s, 429);
    assert_eq!(list_status(&env, &env.admin).await.0, 200);
    env.stop().await;
}

#[tokio::test]
async fn proxy_client_keys() {
    let db = sqlite_db().await;
    // Off by default: no key needed.
    let env = Env::start(&db, "").await;
    assert_eq!(env.served_by("support", "u").await, "stable");
    env.stop().await;

    let db = sqlite_db().await;
    let env = Env::start(&db, "admin:\n  proxy_keys_required: true\n").await;
    let chat = crate::support::chat_body("support", "hi");
    let r = env
        .client
        .post(env.url("/v1/chat/completions"))
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(error_shape(&r.json().await.unwrap()).0, "invalid_api_key");
    let r = env
        .client
        .post(env.url("/v1/chat/completions"))
        .bearer_auth(&env.client_key)
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A client key opens the proxy, not the admin API.
    assert_eq!(list_status(&env, &env.client_key).await.0, 403);
    env.stop().await;
}

#[tokio::test]
async fn openapi_document_lists_every_admin_path() {
    let db = sqlite_db().await;
    let env = Env::start(&db, "").await;
    let (s, _, doc) = env
        .send(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(s, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with('3'),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v1/gateway/canary", &["post"][..]),
        ("/v1/deployments", &["get"]),
        ("/v1/deployments/{slug}", &["get"]),
        ("/v1/deployments/{slug}/traffic", &["patch"]),
        ("/v1/deployments/{slug}/audit", &["get"]),
        ("/v1/deployments/{slug}/stages/{stage}/report", &["get"]),
        ("/v1/deployments/{slug}/rollout", &["get", "post"]),
        ("/v1/deployments/{slug}/rollout/promote", &["post"]),
        ("/v1/deployments/{slug}/rollout/rollback", &["post"]),
        ("/v1/deployments/{slug}/rollout/pause", &["post"]),
        ("/v1/deployments/{slug}/rollout/resume", &["post"]),
        ("/v1/admin/keys", &["get", "post"]),
        ("/v1/admin/keys/{id}", &["delete"]),
        ("/v1/deployments/{slug}/reports", &["get"]),
        ("/v1/deployments/{slug}/reports/{index}", &["get"]),
        ("/v1/admin/whoami", &["get"]),
        ("/v1/deployments/{slug}/rollout/approve", &["post"]),
        ("/v1/deployments/{slug}/reports/{index}/link", &["post"]),
        ("/v1/deployments/{slug}/reports/{index}/charts", &["get"]),
        ("/v1/deployments/{slug}/reports/{index}/history", &["get"]),
        ("/v1/hooks/{slug}/verdict", &["get", "post"]),
        ("/v1/hooks/{slug}/promote", &["post"]),
        ("/v1/hooks/{slug}/rollback", &["post"]),
    ] {
        for m in methods {
            let op = &paths[path][*m];
            assert!(op.is_object(), "{m} {path} missing");
            for code in ["401", "403", "429"] {
                assert!(op["responses"][code].is_object(), "{m} {path} lacks {code}");
            }
        }
    }
    assert_eq!(paths.len(), 23);
    let traffic = &paths["/v1/deployments/{slug}/traffic"]["patch"]["responses"];
    for code in ["200", "400", "404", "422"] {
        assert!(traffic[code].is_object(), "traffic lacks {code}");
    }
    assert!(
        doc["components"]["schemas"]["TrafficResponse"]["properties"]["cache_version"].is_object()
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    env.stop().await;
}
