//! Issue 13, item 7, on the admin side: JWT audience and issuer, failed authentications limited
//! per client address, 413 for an oversized body, a share above its lane refused with 422,
//! `/metrics` behind a key when asked.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::{Env, error_shape, fixture, sqlite_db};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "canarist-admin";

fn rs256(claims: &Value) -> String {
    let pem = std::fs::read(fixture("jwt-rs256-private.pem")).unwrap();
    let key = EncodingKey::from_rsa_pem(&pem).unwrap();
    encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

fn jwt_yaml(extra: &str) -> String {
    format!(
        "admin:\n  jwt:\n    algorithm: RS256\n    public_key_file: {}\n{extra}",
        fixture("jwt-rs256-public.pem").display()
    )
}

#[tokio::test]
async fn jwt_audience_and_issuer_are_required_and_always_checked() {
    // Refused at load, naming the missing field.
    for (extra, missing) in [
        (format!("    issuer: {ISSUER}\n"), "admin.jwt.audience"),
        (format!("    audience: {AUDIENCE}\n"), "admin.jwt.issuer"),
    ] {
        let err =
            canarist::config::Config::from_yaml(Path::new("c.yaml"), &jwt_yaml(&extra), &|_| None)
                .unwrap_err();
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, [missing], "{err}");
    }

    let db = sqlite_db().await;
    let env = Env::start(
        &db,
        &jwt_yaml(&format!("    issuer: {ISSUER}\n    audience: {AUDIENCE}\n")),
    )
    .await;
    let exp = chrono::Utc::now().timestamp() + 600;
    let good = json!({"sub": "a", "exp": exp, "role": "viewer", "iss": ISSUER, "aud": AUDIENCE});
    let (s, _, body) = env
        .send(
            reqwest::Method::GET,
            "/v1/deployments",
            Some(&rs256(&good)),
            None,
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let mut cases = Vec::new();
    for (drop, other) in [
        ("aud", None),
        ("iss", None),
        ("aud", Some(("aud", "someone-else"))),
        ("iss", Some(("iss", "https://evil.test"))),
    ] {
        let mut claims = good.clone();
        claims.as_object_mut().unwrap().remove(drop);
        if let Some((k, v)) = other {
            claims[k] = json!(v);
        }
        cases.push(claims);
    }
    for claims in cases {
        let (s, _, body) = env
            .send(
                reqwest::Method::GET,
                "/v1/deployments",
                Some(&rs256(&claims)),
                None,
            )
            .await;
        assert_eq!(s, 401, "{claims} → {body}");
        assert_eq!(error_shape(&body).0, "invalid_api_key");
    }
    env.stop().await;
}

async fn status_from(
    env: &Env,
    from: IpAddr,
    key: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let client = reqwest::Client::builder()
        .local_address(from)
        .build()
        .unwrap();
    let r = client
        .get(env.url("/v1/deployments"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn failed_authentication_is_rate_limited_per_client_address() {
    let db = sqlite_db().await;
    let env = Env::start(
        &db,
        "admin:\n  auth_failures_per_minute: 1\n  auth_failure_burst: 3\n",
    )
    .await;
    let attacker = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let bystander = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    for i in 0..3 {
        let (s, _, body) = status_from(&env, attacker, &format!("cnr_guess{i}")).await;
        assert_eq!(s, 401, "{body}");
    }
    let (s, headers, body) = status_from(&env, attacker, "cnr_guess4").await;
    assert_eq!(s, 429, "{body}");
    assert_eq!(error_shape(&body).0, "rate_limit_exceeded");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    // Refused before the key is looked up: even a valid key from that address waits.
    let (s, _, _) = status_from(&env, attacker, &env.viewer).await;
    assert_eq!(s, 429);
    // Another address is not affected, and successful calls are never charged.
    for _ in 0..5 {
        let (s, _, body) = status_from(&env, bystander, &env.viewer).await;
        assert_eq!(s, 200, "{body}");
    }
    let (s, _, _) = status_from(&env, bystander, "cnr_typo").await;
    assert_eq!(s, 401);
    let metrics = env
        .client
        .get(env.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        crate::support::metric_value(&metrics, "canarist_admin_auth_failures_limited_total") >= 2.0,
        "{metrics}"
    );
    env.stop().await;
}

#[tokio::test]
async fn an_oversized_admin_body_is_413() {
    let db = sqlite_db().await;
    let env = Env::start(&db, "").await;
    let big =
        json!({"action": "toggle_shadow", "shadow_mode": true, "pad": "x".repeat(2 * 1024 * 1024)});
    let (s, r) = env.patch("support", &env.admin, big).await;
    assert_eq!(s, 413, "{r}");
    assert_eq!(error_shape(&r).0, "request_too_large");
    // A body of ordinary size is still read.
    let (s, r) = env
        .patch(
            "support",
            &env.admin,
            json!({"action": "toggle_shadow", "shadow_mode": true}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    env.stop().await;
}

#[tokio::test]
async fn a_share_above_its_lane_is_refused_with_422_naming_the_lane() {
    let db = sqlite_db().await;
    let env = Env::start(&db, "").await;
    let mut ids = Vec::new();
    for model in ["mock-candidate-good", "mock-candidate-bad", "mock-stable"] {
        let (s, r) = env
            .patch(
                "support",
                &env.admin,
                json!({"action": "add_challenger", "model_id": model, "traffic_pct": 1}),
            )
            .await;
        assert_eq!(s, 200, "{r}");
        ids.push(r["challenger"]["id"].as_str().unwrap().to_owned());
    }
    // Three challengers: lanes of 33.33%; 40% fits the 50% cap but not the lane.
    let (s, r) = env
        .patch(
            "support",
            &env.admin,
            json!({"action": "update_traffic", "challenger_id": ids[0], "traffic_pct": 40}),
        )
        .await;
    assert_eq!(s, 422, "{r}");
    assert_eq!(error_shape(&r).0, "invalid_traffic_config");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(message.contains("lane of 33.33%"), "{message}");
    env.stop().await;
}

#[tokio::test]
async fn metrics_require_a_viewer_key_when_configured() {
    let db = sqlite_db().await;
    let open = Env::start(&db, "").await;
    let r = open.client.get(open.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200, "off by default");
    open.stop().await;

    let db = sqlite_db().await;
    let env = Env::start(&db, "metrics:\n  require_key: true\n").await;
    let get = |key: Option<String>| {
        let mut req = env.client.get(env.url("/metrics"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send()
    };
    let r = get(None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(error_shape(&r.json().await.unwrap()).0, "invalid_api_key");
    let r = get(Some(env.client_key.clone())).await.unwrap();
    assert_eq!(r.status(), 403, "a client key is below viewer");
    for key in [&env.viewer, &env.admin, &env.owner] {
        let r = get(Some(key.clone())).await.unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(text.contains("canarist_http_requests_shed"), "{text}");
    }
    env.stop().await;
}
