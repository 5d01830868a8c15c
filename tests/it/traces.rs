//! Traces through the SDK's in-memory exporter: a proxied request carrying a W3C `traceparent`
//! produces a `proxy.request` span in the client's trace with the routing fields, its upstream
//! calls are child spans, and the judge's `judge.pair` span for that request's pair links to the
//! request span and carries the scores as attributes.
//!
//! The subscriber is installed for this test's thread only (`set_default` on a current-thread
//! runtime), so other tests in the binary are unaffected.

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

use canarist::judge::{Judge, JudgeStats};
use canarist::mock::MockConfig;

use crate::support::{Harness, chat_body};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

const DEPLOYMENT: &str = r#"
deployments:
  - slug: support
    model: support
    mode: shadow
    stage: shadow
    stable: { provider: mock, model: mock-stable }
    candidates:
      - { name: cand, provider: mock, model: mock-candidate-good, percent: 100 }
    cohorts:
      labels:
        tier: { metadata: tier }
"#;

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_joins_the_client_trace_and_the_judge_span_links_to_it() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);
    canarist::telemetry::traces::set_exporting();

    let h = Harness::start(MockConfig::builtin().unwrap(), DEPLOYMENT).await;
    // Another test's thread may have been registering a callsite (with only the no-op global
    // dispatcher in sight) while `set_default` ran, and cached "never" for it; recompute.
    tracing::callsite::rebuild_interest_cache();
    let mut body = chat_body("support", "My order has not arrived.");
    body["metadata"] = serde_json::json!({"tier": "pro"});
    let r = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("x-canarist-unit", "user-7")
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let request_id: uuid::Uuid = r.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let _ = r.bytes().await.unwrap();
    let pair = h.wait_pairs(1).await.remove(0);
    assert_eq!(pair.request_id, request_id);

    // The judge, in process, as `serve` builds it: linked to the gateway's request spans.
    let dir = tempfile::tempdir().unwrap();
    let rubric = crate::judge::rubric(dir.path(), &h.mock.base_url(), "mock-judge", 60_000);
    let judge = Judge::new(vec![rubric], crate::judge::options(4), JudgeStats::new())
        .unwrap()
        .with_traces(h.gateway.gateway().metrics.traces.clone());
    let out = judge.judge_pair(&pair).await.unwrap();
    let score = out
        .judgments
        .iter()
        .find(|j| {
            j.criterion == "helpfulness" && j.side == Some(canarist::capture::Role::Candidate)
        })
        .and_then(|j| j.score)
        .expect("a candidate helpfulness score");
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();

    let client_trace = TraceId::from_hex(CLIENT_TRACE).unwrap();
    let request = spans
        .iter()
        .find(|s| s.name == "proxy.request")
        .unwrap_or_else(|| panic!("no proxy.request span in {spans:#?}"));
    assert_eq!(request.span_context.trace_id(), client_trace);
    assert_eq!(
        request.parent_span_id,
        SpanId::from_hex(CLIENT_SPAN).unwrap()
    );
    assert!(request.parent_span_is_remote);
    let text = |k: &str| attr(request, k).map(|v| v.as_str().into_owned());
    assert_eq!(text("deployment").as_deref(), Some("support"));
    assert_eq!(text("variant").as_deref(), Some("stable"));
    assert_eq!(text("stage").as_deref(), Some("shadow"));
    assert_eq!(text("cohort").as_deref(), Some("tier=pro"));
    assert_eq!(text("request_id"), Some(request_id.to_string()));
    let bucket = pair.stable.bucket.expect("a sticky bucket");
    assert_eq!(
        attr(request, "bucket"),
        Some(&Value::I64(i64::from(bucket)))
    );

    // The served upstream call is a child of the request span, in the same trace.
    let served = spans
        .iter()
        .find(|s| s.name == "upstream.call" && text_of(s, "purpose") == Some("Served".into()))
        .unwrap_or_else(|| panic!("no served upstream.call span in {spans:#?}"));
    assert_eq!(served.span_context.trace_id(), client_trace);
    assert_eq!(served.parent_span_id, request.span_context.span_id());
    assert_eq!(text_of(served, "model").as_deref(), Some("mock-stable"));

    // The OpenTelemetry GenAI semantic-convention attributes, beside canarist's own.
    assert_eq!(text("gen_ai.operation.name").as_deref(), Some("chat"));
    assert_eq!(text("gen_ai.request.model").as_deref(), Some("support"));
    assert_eq!(text("gen_ai.provider.name").as_deref(), Some("openai"));
    let genai = |k: &str| text_of(served, k);
    assert_eq!(genai("gen_ai.operation.name").as_deref(), Some("chat"));
    assert_eq!(genai("gen_ai.provider.name").as_deref(), Some("openai"));
    assert_eq!(
        genai("gen_ai.request.model").as_deref(),
        Some("mock-stable")
    );
    assert!(
        genai("gen_ai.response.model").is_some(),
        "{:?}",
        served.attributes
    );
    assert!(
        genai("gen_ai.response.finish_reasons").is_some(),
        "{:?}",
        served.attributes
    );
    for k in ["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"] {
        assert!(
            matches!(attr(served, k), Some(Value::I64(n)) if *n > 0),
            "{k}: {:?}",
            served.attributes
        );
    }
    assert!(attr(served, "error.type").is_none());

    // Each upstream received its own call span's context, in the client's trace.
    let calls: Vec<String> = spans
        .iter()
        .filter(|s| s.name == "upstream.call")
        .map(|s| format!("00-{CLIENT_TRACE}-{}-01", s.span_context.span_id()))
        .collect();
    let sent: Vec<String> = h
        .mock
        .requests()
        .iter()
        .filter_map(|r| {
            r.headers
                .iter()
                .find(|(n, _)| n == "traceparent")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert!(!sent.is_empty());
    for tp in &sent {
        assert!(
            calls.contains(tp),
            "{tp} is no upstream.call span of ours: {calls:?}"
        );
    }
    assert!(sent.contains(&calls_served(served)), "{sent:?}");

    // The judge's span links to the request's span and carries the scores.
    let judged = spans
        .iter()
        .find(|s| s.name == "judge.pair")
        .unwrap_or_else(|| panic!("no judge.pair span in {spans:#?}"));
    let links: Vec<_> = judged
        .links
        .links
        .iter()
        .map(|l| l.span_context.clone())
        .collect();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].trace_id(), client_trace);
    assert_eq!(links[0].span_id(), request.span_context.span_id());
    assert_eq!(
        attr(judged, "score.test-support.helpfulness.candidate"),
        Some(&Value::F64(score))
    );
    assert!(attr(judged, "score.test-support.helpfulness.stable").is_some());
    assert!(
        attr(judged, "winner.test-support.preference").is_some(),
        "{:?}",
        judged.attributes
    );
    assert_eq!(text_of(judged, "request_id"), Some(request_id.to_string()));
}

fn calls_served(served: &SpanData) -> String {
    format!("00-{CLIENT_TRACE}-{}-01", served.span_context.span_id())
}

fn text_of(span: &SpanData, key: &str) -> Option<String> {
    attr(span, key).map(|v| v.as_str().into_owned())
}
