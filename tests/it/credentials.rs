//! Which credentials reach which upstream (issue 13 item 1). Three mock upstreams record every
//! header they receive: `keyed` (the provider has its own key), `open` (no key, no opt-in) and
//! `optin` (no key, `forward_client_auth: true`). Deployments put each of them in every place a
//! call can go: stable served with the candidate mirrored (shadow), the candidate served with
//! stable mirrored (live pair sample), stable served with stable asked again (the A/A arm), and
//! the passthrough of a model that is no deployment. Each is run with the proxy keys off (the
//! client sends its own provider key, or something that looks like a canarist key) and on (the
//! client sends its `client`-role canarist key). A canarist key never reaches any upstream; a
//! client's provider key reaches only `optin`; cookies and proxy credentials reach none.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use canarist::app::Runtime;
use canarist::capture::MemorySink;
use canarist::config::Config;
use canarist::http::admin::Role;
use canarist::http::admin::keys::create_key;
use canarist::mock::{MockConfig, MockServer, RecordedRequest};
use serde_json::{Value, json};

use crate::admin::sqlite_db;
use crate::store::TestDb;
use crate::support::gateway;

const PROVIDERS: [&str; 3] = ["keyed", "open", "optin"];
const PROVIDER_KEY: &str = "sk-provider-own";

/// The credential-bearing headers a client sends, besides `Authorization`.
const OTHER: [(&str, &str); 4] = [
    ("x-api-key", "xk-client-provider-key"),
    ("api-key", "ak-client-provider-key"),
    ("cookie", "session=client-session"),
    ("proxy-authorization", "Basic Y2xpZW50OnNlY3JldA=="),
];

struct Upstreams {
    mocks: BTreeMap<&'static str, MockServer>,
}

impl Upstreams {
    async fn start() -> Upstreams {
        let mut mocks = BTreeMap::new();
        for name in PROVIDERS {
            let mock = MockServer::start(MockConfig::builtin().unwrap())
                .await
                .unwrap();
            mocks.insert(name, mock);
        }
        Upstreams { mocks }
    }

    /// Every request tagged `case`, with the provider (mock) that received it.
    fn tagged(&self, case: &str) -> Vec<(&'static str, RecordedRequest)> {
        self.mocks
            .iter()
            .flat_map(|(name, mock)| mock.requests().into_iter().map(move |r| (*name, r)))
            .filter(|(_, r)| r.body["metadata"]["case"] == case)
            .collect()
    }

    /// Waits (up to 10 s) until `n` requests tagged `case` arrived, then a little longer to
    /// make sure no further one does.
    async fn wait_tagged(&self, case: &str, n: usize) -> Vec<(&'static str, RecordedRequest)> {
        for _ in 0..1_000 {
            if self.tagged(case).len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let seen = self.tagged(case);
        assert_eq!(seen.len(), n, "requests tagged {case}: {seen:#?}");
        seen
    }

    fn yaml(&self, rest: &str) -> String {
        let mut y = String::from("providers:\n");
        for (name, mock) in &self.mocks {
            y.push_str(&format!(
                "  {name}:\n    base_url: {}\n    timeout: 5s\n",
                mock.base_url()
            ));
            match *name {
                "keyed" => y.push_str("    api_key_env: KEYED_API_KEY\n"),
                "optin" => y.push_str("    forward_client_auth: true\n"),
                _ => {}
            }
        }
        y.push_str("capture:\n  flush_interval: 10ms\ndefault_provider: optin\ndeployments:\n");
        for sp in PROVIDERS {
            for cp in PROVIDERS {
                y.push_str(&format!(
                    "  - slug: shadow-{sp}-{cp}\n    mode: shadow\n    \
                     stable: {{ provider: {sp}, model: mock-stable }}\n    \
                     candidates:\n      - {{ name: cand, provider: {cp}, model: mock-candidate-good, percent: 100 }}\n  \
                     - slug: live-{sp}-{cp}\n    mode: live\n    \
                     stable: {{ provider: {sp}, model: mock-stable }}\n    \
                     candidates:\n      - {{ name: cand, provider: {cp}, model: mock-candidate-good, percent: 50 }}\n    \
                     live: {{ pair_sample_percent: 100 }}\n"
                ));
            }
            y.push_str(&format!(
                "  - slug: aa-{sp}\n    stable: {{ provider: {sp}, model: mock-stable }}\n    aa_percent: 100\n"
            ));
        }
        y.push_str(rest);
        y
    }
}

/// What `provider` must receive as `header` when the client sent `sent`.
fn expected(provider: &str, header: &str, sent: Option<&str>) -> Option<String> {
    let client_value = || {
        sent.filter(|v| !v.trim_start_matches("Bearer ").starts_with("cnr_"))
            .map(str::to_owned)
    };
    match (provider, header) {
        ("keyed", "authorization") => Some(format!("Bearer {PROVIDER_KEY}")),
        ("optin", "authorization" | "x-api-key" | "api-key") => client_value(),
        _ => None,
    }
}

struct Gateway {
    server: Runtime,
    client: reqwest::Client,
    /// The client's `Authorization` value.
    auth: Option<String>,
    _db: Option<TestDb>,
}

impl Gateway {
    async fn start(upstreams: &Upstreams, db: Option<TestDb>, auth: Option<String>) -> Gateway {
        let (rest, store) = match &db {
            Some(db) => (
                format!(
                    "storage:\n  url: {}\nadmin:\n  proxy_keys_required: true\n",
                    db.url
                ),
                Some(db.store().await),
            ),
            None => (String::new(), None),
        };
        let config = Config::from_yaml(
            Path::new("credentials.yaml"),
            &upstreams.yaml(&rest),
            &|var| (var == "KEYED_API_KEY").then(|| PROVIDER_KEY.to_owned()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let sink = MemorySink::new();
        let options = match &store {
            Some(store) => gateway::gateway_only(store, Arc::new(sink)),
            None => gateway::without_store(&sink),
        };
        let server = gateway::start(config, options).await;
        Gateway {
            server,
            client: reqwest::Client::new(),
            auth,
            _db: db,
        }
    }

    async fn send(&self, model: &str, user: &str, case: &str) -> reqwest::Response {
        let body = json!({"model": model, "user": user, "metadata": {"case": case},
                          "messages": [{"role": "user", "content": "hi"}]});
        let mut req = self
            .client
            .post(format!("{}/v1/chat/completions", self.server.url()))
            .json(&body);
        if let Some(a) = &self.auth {
            req = req.header("authorization", a);
        }
        for (k, v) in OTHER {
            req = req.header(k, v);
        }
        req.send().await.unwrap()
    }

    /// Sends one request per place a call can go and checks what each upstream received.
    async fn check_every_path(&self, upstreams: &Upstreams, run: &str) {
        let mut checked = 0;
        for sp in PROVIDERS {
            for cp in PROVIDERS {
                // Shadow: stable served by `sp`, the candidate mirrored to `cp`.
                let case = format!("{run}/shadow-{sp}-{cp}");
                let r = self.send(&format!("shadow-{sp}-{cp}"), "u", &case).await;
                assert_eq!(r.status(), 200, "{case}: {}", r.text().await.unwrap());
                checked += self
                    .check(
                        upstreams,
                        &case,
                        &[(sp, "mock-stable"), (cp, "mock-candidate-good")],
                    )
                    .await;
                // Live: the candidate served by `cp`, stable's pair sample mirrored to `sp`.
                let case = format!("{run}/live-{sp}-{cp}");
                let user = self.candidate_user(&format!("live-{sp}-{cp}"), &case).await;
                let r = self.send(&format!("live-{sp}-{cp}"), &user, &case).await;
                assert_eq!(r.headers()["x-canarist-variant"], "cand", "{case}");
                checked += self
                    .check(
                        upstreams,
                        &case,
                        &[(cp, "mock-candidate-good"), (sp, "mock-stable")],
                    )
                    .await;
            }
            // The A/A arm: stable served by `sp` and asked again there in the background.
            let case = format!("{run}/aa-{sp}");
            let r = self.send(&format!("aa-{sp}"), "u", &case).await;
            assert_eq!(r.status(), 200, "{case}");
            checked += self
                .check(
                    upstreams,
                    &case,
                    &[(sp, "mock-stable"), (sp, "mock-stable")],
                )
                .await;
        }
        // A model that is no deployment goes to `default_provider` (`optin`).
        let case = format!("{run}/passthrough");
        let r = self.send("mock-stable", "u", &case).await;
        assert_eq!(r.status(), 200, "{case}");
        checked += self
            .check(upstreams, &case, &[("optin", "mock-stable")])
            .await;
        assert_eq!(checked, 9 * 4 + 3 * 2 + 1, "{run}");
    }

    /// A user whose unit the live deployment `model` serves from the candidate (probing
    /// requests are tagged apart and not checked).
    async fn candidate_user(&self, model: &str, case: &str) -> String {
        for i in 0..200 {
            let user = format!("user-{i}");
            let r = self.send(model, &user, &format!("{case}/probe")).await;
            if r.headers()["x-canarist-variant"] == "cand" {
                return user;
            }
        }
        panic!("no unit of {model} is served by the candidate");
    }

    /// Asserts that exactly `calls` (provider, upstream model) arrived for `case`, each with
    /// exactly the credentials its provider may see. Returns the number checked.
    async fn check(&self, upstreams: &Upstreams, case: &str, calls: &[(&str, &str)]) -> usize {
        let seen = upstreams.wait_tagged(case, calls.len()).await;
        let mut want: Vec<(&str, &str)> = calls.to_vec();
        let mut got: Vec<(&str, &str)> = seen
            .iter()
            .map(|(p, r)| (*p, r.model.as_deref().unwrap_or("")))
            .collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want, "{case}");
        for (provider, request) in &seen {
            let sent = self.auth.as_deref();
            assert_eq!(
                request.header("authorization").map(str::to_owned),
                expected(provider, "authorization", sent),
                "{case}: Authorization seen by `{provider}` ({:?})",
                request.model
            );
            for (name, value) in OTHER {
                assert_eq!(
                    request.header(name).map(str::to_owned),
                    expected(provider, name, Some(value)),
                    "{case}: `{name}` seen by `{provider}` ({:?})",
                    request.model
                );
            }
        }
        seen.len()
    }

    async fn stop(self) {
        self.server.shutdown().await;
    }
}

#[tokio::test]
async fn client_credentials_reach_only_providers_that_opt_in_and_canarist_keys_reach_none() {
    let upstreams = Upstreams::start().await;

    // Proxy keys off: the client's own provider key, then something shaped like a canarist key.
    for (run, auth) in [
        ("provider-key", Some("Bearer sk-client-provider-key")),
        ("canarist-shaped", Some("Bearer cnr_not-a-stored-key")),
        ("no-auth", None),
    ] {
        let gw = Gateway::start(&upstreams, None, auth.map(str::to_owned)).await;
        gw.check_every_path(&upstreams, run).await;
        gw.stop().await;
    }

    // Proxy keys on: the client's `client`-role key opens the proxy and goes nowhere else.
    let db = sqlite_db().await;
    let store = db.store().await;
    let (client_key, _) = create_key(&store, "app", Role::Client, "test")
        .await
        .unwrap();
    let gw = Gateway::start(&upstreams, Some(db), Some(format!("Bearer {client_key}"))).await;
    gw.check_every_path(&upstreams, "proxy-keys").await;
    gw.stop().await;
}

#[tokio::test]
async fn proxy_routes_refuse_keys_of_every_role_but_client() {
    let upstreams = Upstreams::start().await;
    let db = sqlite_db().await;
    let store = db.store().await;
    let mut keys = Vec::new();
    for role in [Role::Owner, Role::Admin, Role::Viewer, Role::Client] {
        let (key, _) = create_key(&store, role.as_str(), role, "test")
            .await
            .unwrap();
        keys.push((role, key));
    }
    let mut gw = Gateway::start(&upstreams, Some(db), None).await;
    for (role, key) in keys {
        gw.auth = Some(format!("Bearer {key}"));
        let case = format!("role-{}", role.as_str());
        let r = gw.send("shadow-open-optin", "u", &case).await;
        if role == Role::Client {
            assert_eq!(r.status(), 200, "{case}");
            upstreams.wait_tagged(&case, 2).await;
            continue;
        }
        assert_eq!(r.status(), 403, "{case}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "permission_error", "{body}");
        assert_eq!(body["error"]["code"], "insufficient_role", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("client"), "{message}");
        // Refused before anything was sent upstream.
        upstreams.wait_tagged(&case, 0).await;
    }
    gw.stop().await;
}

/// The client's W3C trace context reaches every upstream call (served and mirrored) as it came
/// when no spans are exported — the one header added besides the rules above; a malformed
/// `traceparent` is dropped, and credentials and cookies still are not forwarded.
#[tokio::test]
async fn the_client_traceparent_reaches_the_upstream_and_nothing_else_is_added() {
    let h = crate::support::Harness::start(
        MockConfig::builtin().unwrap(),
        "deployments:\n  - slug: traced\n    model: traced\n    mode: shadow\n    \
         stable: { provider: mock, model: mock-stable }\n    \
         candidates:\n      - { name: cand, provider: mock, model: mock-candidate-good, percent: 100 }\n",
    )
    .await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut body = crate::support::chat_body("traced", "hi");
    body["metadata"] = json!({ "case": "traced" });
    let r = h
        .post(
            "/v1/chat/completions",
            &body,
            &[
                ("traceparent", tp),
                ("tracestate", "vendor=opaque"),
                ("cookie", "session=secret"),
                ("authorization", "Bearer sk-client"),
                ("x-canarist-unit", "u1"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let seen = wait_requests(&h.mock, "traced", 2).await;
    for r in &seen {
        let header = |name: &str| {
            r.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("traceparent"), Some(tp), "{r:?}");
        assert_eq!(header("tracestate"), Some("vendor=opaque"), "{r:?}");
        assert_eq!(header("cookie"), None);
        assert_eq!(
            header("authorization"),
            None,
            "the mock provider does not opt in"
        );
    }
    // A malformed traceparent is not passed on.
    body["metadata"] = json!({ "case": "malformed" });
    let r = h
        .post(
            "/v1/chat/completions",
            &body,
            &[("traceparent", "00-nonsense-01")],
        )
        .await;
    assert_eq!(r.status(), 200);
    for r in wait_requests(&h.mock, "malformed", 2).await {
        assert!(r.headers.iter().all(|(n, _)| n != "traceparent"), "{r:?}");
    }
}

async fn wait_requests(mock: &MockServer, case: &str, n: usize) -> Vec<RecordedRequest> {
    for _ in 0..500 {
        let seen: Vec<RecordedRequest> = mock
            .requests()
            .into_iter()
            .filter(|r| r.body["metadata"]["case"] == case)
            .collect();
        if seen.len() >= n {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} upstream requests tagged {case}");
}
