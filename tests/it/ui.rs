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

    env.stop().await;
    db.cleanup().await;
}
