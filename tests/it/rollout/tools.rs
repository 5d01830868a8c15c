//! A tool-calling deployment in shadow: the candidate (`mock-tools-broken-refunds`) breaks the
//! `issue_refund` tool's argument schema on the refunds route only (metadata `route=refunds`);
//! the `tool_arguments_valid` check, run at capture on every pair, catches it, and the gate rolls
//! the rollout back naming that cohort — while the orders route, where the candidate is as good
//! as stable, shows no difference. Real sockets, the real gateway and controller, SQLite.

use serde_json::{Value, json};

use super::*;

const RUBRIC: &str = r#"id: tools
version: 1.0.0
checks:
  - id: arguments
    type: tool_arguments_valid
  - id: calls
    type: tool_called
"#;

const DEPLOYMENT_YAML: &str = r#"
judge:
  rubrics_dir: "RUBRICS"
  workers: 1
  poll_interval: 20ms
deployments:
  - slug: chat
    stable: { provider: mock, model: mock-tools }
    candidates: [{ name: cand, provider: mock, model: mock-tools-broken-refunds }]
    cohorts:
      labels:
        route: { metadata: route }
    ramp:
      stages:
        - { shadow: 100, min_duration: 1h, min_judged_pairs: 0, max_duration: 2h }
        - { percent: 10, min_duration: 1h, min_judged_pairs: 0 }
    gate:
      metrics:
        - { name: tools.arguments, kind: mean, direction: higher_is_better, margin: 0.1 }
      min_samples: 10
    alerts: { webhook_url: "HOOK", format: json }
"#;

/// The tools of the refunds route's prompt: `issue_refund` needs an order id and an amount.
fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "lookup_order", "parameters": {
            "type": "object", "required": ["order_id"], "additionalProperties": false,
            "properties": {"order_id": {"type": "string", "examples": ["A-1042"]}}}}},
        {"type": "function", "function": {"name": "issue_refund", "parameters": {
            "type": "object", "required": ["order_id", "amount_usd"],
            "properties": {"order_id": {"type": "string", "examples": ["A-1042"]},
                "amount_usd": {"type": "number", "exclusiveMinimum": 0}}}}}
    ])
}

/// Every other request is streamed: the capture assembles the stream's tool-call deltas into the
/// whole answer the check reads.
fn request(route: &str, i: usize) -> Value {
    let tool = if route == "refunds" {
        "issue_refund"
    } else {
        "lookup_order"
    };
    json!({
        "model": DEPLOYMENT,
        "stream": i % 2 == 1,
        "messages": [{"role": "user", "content": format!("Request {i} about order A-1042")}],
        "tools": tools(),
        "tool_choice": {"type": "function", "function": {"name": tool}},
        "metadata": {"route": route},
    })
}

#[tokio::test]
async fn a_candidate_that_breaks_one_routes_tool_schema_is_rolled_back_in_that_cohort() {
    let db = backends().await.swap_remove(0);
    let rubrics = tempfile::tempdir().unwrap();
    std::fs::write(rubrics.path().join("tools.yaml"), RUBRIC).unwrap();
    let mock = MockServer::start(MockConfig::builtin().unwrap())
        .await
        .unwrap();
    let hooks = Hooks::start().await;
    let yaml = DEPLOYMENT_YAML
        .replace("RUBRICS", &rubrics.path().display().to_string())
        .replace("HOOK", &hooks.url);
    // As `canarist serve` runs it: the store sink with the checker (the checks run at capture).
    let store = db.store().await;
    let node = Node {
        server: gateway::start(config(&mock, &db.url, &yaml), gateway::with_store(&store)).await,
        store,
        client: reqwest::Client::new(),
    };
    actions::start(node.ctx(), DEPLOYMENT, &actor("cli"), "shadow")
        .await
        .unwrap();
    node.wait_stage("shadow").await;

    // Both routes, interleaved; the client always gets stable's (valid) tool call.
    for i in 0..120 {
        if latest(node.ctx()).await.0 == "rolled_back" {
            break;
        }
        for route in ["orders", "refunds"] {
            let r = node
                .client
                .post(format!("{}/v1/chat/completions", node.server.url()))
                .header("x-canarist-unit", format!("{route}-{i}"))
                .json(&request(route, i))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["x-canarist-variant"], "stable");
            let args = client_arguments(r, i % 2 == 1).await;
            assert_eq!(args["order_id"], "A-1042", "{args}");
        }
    }

    let hook = hooks.wait_for(|b| b["event"] == "rolled_back").await;
    assert_eq!(hook["failing"]["metric"], "tools.arguments", "{hook}");
    assert_eq!(hook["failing"]["cohort"], "route=refunds", "{hook}");
    assert_eq!(hook["failing"]["evidence"]["verdict"], "worse", "{hook}");
    assert_eq!(hook["actor"], "gate");
    // The orders route, where the candidate's calls are as valid as stable's, shows no change.
    let cohorts = hook["evidence"]["decision"]["evidence"].as_array().unwrap();
    let orders = cohorts
        .iter()
        .find(|e| e["cohort"] == "route=orders")
        .unwrap_or_else(|| panic!("{hook}"));
    assert_eq!(orders["estimate"], 0.0, "{orders}");
    assert_ne!(orders["verdict"], "worse", "{orders}");
    assert_eq!(latest(node.ctx()).await.0, "rolled_back");

    // What the check saw: every refunds pair failed on the candidate, naming the schema
    // violation; the orders route's pairs passed on both sides.
    node.stop().await;
    let rows = check_rows(&db).await;
    let of = |route: &str, side: &str| -> Vec<&(String, String, bool, Option<String>)> {
        rows.iter()
            .filter(|(cohort, s, _, _)| cohort.contains(route) && s == side)
            .collect()
    };
    let broken = of("refunds", "candidate");
    assert!(broken.len() >= 10, "{rows:?}");
    for (_, _, passed, detail) in &broken {
        assert!(!passed);
        let detail = detail.as_deref().unwrap_or("");
        assert!(
            detail.contains("the arguments of `issue_refund` break its schema"),
            "{detail}"
        );
    }
    // Both sides of every pair were checked (a side whose calls the capture lost would be
    // skipped and leave no row): streamed answers carry their tool calls too.
    assert_eq!(of("refunds", "stable").len(), broken.len(), "{rows:?}");
    assert_eq!(
        of("orders", "stable").len(),
        of("orders", "candidate").len()
    );
    for (route, side) in [
        ("refunds", "stable"),
        ("orders", "stable"),
        ("orders", "candidate"),
    ] {
        let passed = of(route, side);
        assert!(
            !passed.is_empty() && passed.iter().all(|r| r.2),
            "{route} {side}: {rows:?}"
        );
    }
    db.cleanup().await;
}

/// The `arguments` check's rows: (pair cohort as stored, side, passed, detail).
async fn check_rows(db: &crate::store::TestDb) -> Vec<(String, String, bool, Option<String>)> {
    let sql = "SELECT p.cohort, c.side, c.passed, c.detail FROM check_results c \
               JOIN pairs p ON p.id = c.pair_id WHERE c.name = 'arguments'";
    if db.pg.is_some() {
        let p = sqlx::PgPool::connect(&db.url).await.unwrap();
        let rows: Vec<(sqlx::types::Json<Value>, String, bool, Option<String>)> =
            sqlx::query_as(sql).fetch_all(&p).await.unwrap();
        rows.into_iter()
            .map(|(c, s, ok, d)| (c.0.to_string(), s, ok, d))
            .collect()
    } else {
        let p = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&p).await.unwrap()
    }
}

/// The arguments of the tool call the client received, plain or streamed.
async fn client_arguments(r: reqwest::Response, streamed: bool) -> Value {
    let text = r.text().await.unwrap();
    let arguments = if streamed {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .filter_map(|d| {
                let chunk: Value = serde_json::from_str(d).unwrap();
                let piece = &chunk["choices"][0]["delta"]["tool_calls"][0]["function"];
                piece["arguments"].as_str().map(str::to_owned)
            })
            .collect::<String>()
    } else {
        let body: Value = serde_json::from_str(&text).unwrap();
        let call = &body["choices"][0]["message"]["tool_calls"][0]["function"];
        call["arguments"].as_str().unwrap().to_owned()
    };
    serde_json::from_str(&arguments).unwrap_or_else(|e| panic!("{e}: {text}"))
}
