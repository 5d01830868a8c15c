//! The dashboard's HTTP side: `/ui` and its embedded assets, `GET /v1/admin/whoami`, and the
//! stage reports it reads (`GET /v1/deployments/{slug}/reports` as JSON, `/reports/{index}` as
//! self-contained HTML) with their roles and errors. The page itself is tested in a browser by
//! `scripts/e2e-ui.sh`.

use reqwest::Method;
use serde_json::json;

use crate::admin::{Env, error_shape, sqlite_db};

#[tokio::test]
async fn the_dashboard_and_the_reports_it_reads() {
    let db = sqlite_db().await;
    let env = Env::start(&db, "").await;

    // The page and its assets: no key needed, the right types, nothing external.
    for (path, ty, needle) in [
        ("/ui", "text/html", "/ui/app.js"),
        ("/ui/app.js", "text/javascript", "/v1/admin/whoami"),
        ("/ui/app.css", "text/css", "[hidden]"),
    ] {
        let r = env.client.get(env.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with(ty), "{path}: {ct}");
        assert!(r.text().await.unwrap().contains(needle), "{path}");
    }

    // whoami: the role of the key, 401 without one.
    let (s, _, v) = env
        .send(Method::GET, "/v1/admin/whoami", Some(&env.admin), None)
        .await;
    assert_eq!(
        (s.as_u16(), v["role"].as_str()),
        (200, Some("admin")),
        "{v}"
    );
    assert_eq!(v["id"], env.admin_id.as_str());
    let (s, _, v) = env
        .send(Method::GET, "/v1/admin/whoami", Some(&env.viewer), None)
        .await;
    assert_eq!((s.as_u16(), v["role"].as_str()), (200, Some("viewer")));
    let (s, _, _) = env.send(Method::GET, "/v1/admin/whoami", None, None).await;
    assert_eq!(s, 401);

    // Before any rollout: 404 rollout_not_found; unknown deployment: 404 deployment_not_found.
    let (s, _, v) = env
        .send(
            Method::GET,
            "/v1/deployments/ramped/reports",
            Some(&env.viewer),
            None,
        )
        .await;
    assert_eq!(s, 404);
    assert_eq!(error_shape(&v).0, "rollout_not_found");
    let (s, _, v) = env
        .send(
            Method::GET,
            "/v1/deployments/nope/reports",
            Some(&env.viewer),
            None,
        )
        .await;
    assert_eq!(s, 404);
    assert_eq!(error_shape(&v).0, "deployment_not_found");

    // Start a rollout and send a little traffic.
    let (s, _, v) = env
        .send(
            Method::POST,
            "/v1/deployments/ramped/rollout",
            Some(&env.admin),
            Some(json!({"reason": "ui test"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    for i in 0..3 {
        assert_eq!(env.served_by("ramped", &format!("u{i}")).await, "stable");
    }
    let (s, _, v) = env
        .send(
            Method::GET,
            "/v1/deployments/ramped/reports",
            Some(&env.viewer),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let reports = v["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 1, "{v}");
    assert_eq!(reports[0]["deployment"], "ramped");
    assert_eq!(reports[0]["stage"]["index"], 0);
    assert_eq!(reports[0]["stage"]["name"], "shadow");
    assert_eq!(reports[0]["ramp"].as_array().unwrap().len(), 1);

    // One stage as HTML: self-contained, with the deployment's name and an SVG chart.
    let r = env
        .client
        .get(env.url("/v1/deployments/ramped/reports/0"))
        .bearer_auth(&env.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("ramped") && html.contains("<svg"), "{html}");
    assert!(!html.contains("<script src") && !html.contains("<link rel=\"stylesheet\""));
    for (path, code) in [
        ("/v1/deployments/ramped/reports/7", "stage_not_found"),
        ("/v1/deployments/ramped/reports/x", "stage_not_found"),
    ] {
        let (s, _, v) = env.send(Method::GET, path, Some(&env.viewer), None).await;
        assert_eq!(s, 404, "{path}");
        assert_eq!(error_shape(&v).0, code, "{path}");
    }
    let (s, _, _) = env
        .send(Method::GET, "/v1/deployments/ramped/reports/0", None, None)
        .await;
    assert_eq!(s, 401);
    let (s, _, _) = env
        .send(
            Method::GET,
            "/v1/deployments/ramped/reports/0",
            Some(&env.client_key),
            None,
        )
        .await;
    assert_eq!(s, 403);

    // A short-lived signed link opens one report without a key (what the dashboard navigates to).
    let (s, _, v) = env
        .send(
            Method::POST,
            "/v1/deployments/ramped/reports/0/link",
            Some(&env.viewer),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let url = v["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("/reports/ramped/0?exp="), "{url}");
    assert!(!url.contains("cnr_"), "no key in the URL");
    let expires: chrono::DateTime<chrono::Utc> = v["expires_at"].as_str().unwrap().parse().unwrap();
    let ttl = expires - chrono::Utc::now();
    assert!(
        ttl <= chrono::Duration::minutes(5) && ttl > chrono::Duration::minutes(4),
        "{ttl}"
    );
    let r = env.client.get(env.url(&url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.text().await.unwrap().contains("<svg"));
    // Another stage, a later expiry, a broken signature or none: 401.
    let exp: i64 = url
        .split("exp=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for bad in [
        url.replace("/reports/ramped/0?", "/reports/ramped/1?"),
        url.replace(&format!("exp={exp}"), &format!("exp={}", exp + 3600)),
        format!("{url}x"),
        "/reports/ramped/0".to_owned(),
    ] {
        let r = env.client.get(env.url(&bad)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{bad}");
    }
    // Asking for a link needs a viewer key (a client key is refused); unknown stage: 404.
    for (key, want) in [(None, 401), (Some(&env.client_key), 403)] {
        let (s, _, _) = env
            .send(
                Method::POST,
                "/v1/deployments/ramped/reports/0/link",
                key.map(|k| k.as_str()),
                None,
            )
            .await;
        assert_eq!(s, want);
    }
    let (s, _, _) = env
        .send(
            Method::POST,
            "/v1/deployments/nope/reports/0/link",
            Some(&env.viewer),
            None,
        )
        .await;
    assert_eq!(s, 404);

    env.stop().await;
    db.cleanup().await;
}

/// The policy every HTML response of the gateway must carry: nothing inline runs unless its hash
/// is listed, nothing loads from elsewhere, no page may frame it.
fn assert_strict_html_headers(path: &str, headers: &reqwest::header::HeaderMap, html: &str) {
    let csp = headers
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{path}: no Content-Security-Policy"))
        .to_str()
        .unwrap()
        .to_owned();
    for needle in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(needle), "{path}: {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
    assert!(!csp.contains("unsafe-eval"), "{path}: {csp}");
    assert!(!csp.contains('*'), "{path}: {csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
    // Every inline <style> block is allowed by its hash; there is no inline script at all.
    use base64::Engine as _;
    use sha2::Digest as _;
    let mut rest = html;
    while let Some(start) = rest.find("<style>") {
        let after = &rest[start + "<style>".len()..];
        let end = after.find("</style>").expect("a closed style block");
        let hash = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(&after.as_bytes()[..end]));
        assert!(csp.contains(&format!("'sha256-{hash}'")), "{path}: {csp}");
        rest = &after[end..];
    }
    assert!(!html.contains("<script>"), "{path}: no inline script");
}

#[tokio::test]
async fn html_responses_send_a_strict_content_security_policy() {
    let db = sqlite_db().await;
    let env = Env::start(&db, "").await;
    let r = env.client.get(env.url("/ui")).send().await.unwrap();
    let headers = r.headers().clone();
    let html = r.text().await.unwrap();
    assert_strict_html_headers("/ui", &headers, &html);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");

    let (s, _, v) = env
        .send(
            Method::POST,
            "/v1/deployments/ramped/rollout",
            Some(&env.admin),
            Some(json!({"reason": "csp test"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let r = env
        .client
        .get(env.url("/v1/deployments/ramped/reports/0"))
        .bearer_auth(&env.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    let html = r.text().await.unwrap();
    assert!(html.contains("<style>"));
    assert_strict_html_headers("report", &headers, &html);
    // JSON answers are not HTML but still say so strictly.
    let r = env
        .client
        .get(env.url("/v1/deployments"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    env.stop().await;
    db.cleanup().await;
}
