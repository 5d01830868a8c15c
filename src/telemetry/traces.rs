//! Traces: the process's `tracing` subscriber (human logs on stderr, plus OpenTelemetry export over
//! OTLP/HTTP-protobuf when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
//! set), W3C `traceparent` extraction and injection (an upstream call carries its span's
//! context), and [`TraceIndex`], which lets the judge link its span for a
//! pair to the span of the request that produced it.
//!
//! Owns: span export and propagation. Never: blocks a request on export (the SDK's batch
//! processor runs on its own thread and drops spans when its queue is full).
//! Fails open: an exporter that cannot be built leaves logging on and tracing export off, with a
//! warning; a malformed `traceparent` is ignored (the request starts a new trace).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::field::{Field, Visit};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use uuid::Uuid;

/// How many recent requests' span contexts the gateway keeps for the judge to link to.
pub const TRACE_INDEX_CAPACITY: usize = 65_536;

/// Recent requests' span contexts by request id: the judge looks up the request of a pair and
/// links its `judge.pair` span to it. Bounded (least recently used out); empty unless an
/// OpenTelemetry layer is installed, since only valid span contexts are kept. A pair judged after
/// its request fell out, or on another replica, or after a restart, gets no link (its judgments
/// still carry the request id as `trace_id`).
#[derive(Clone)]
pub struct TraceIndex {
    inner: Arc<Mutex<LruCache<Uuid, SpanContext>>>,
}

impl std::fmt::Debug for TraceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceIndex").finish_non_exhaustive()
    }
}

impl Default for TraceIndex {
    fn default() -> Self {
        Self::new(TRACE_INDEX_CAPACITY)
    }
}

impl TraceIndex {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            inner: Arc::new(Mutex::new(LruCache::new(capacity))),
        }
    }

    /// Remembers `span`'s OpenTelemetry context under `request_id` (nothing without a layer).
    pub fn remember(&self, request_id: Uuid, span: &tracing::Span) {
        if !exporting() || span.is_disabled() {
            return;
        }
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            self.lock().put(request_id, sc);
        }
    }

    /// The span context of request `request_id`, if still known.
    pub fn get(&self, request_id: Uuid) -> Option<SpanContext> {
        self.lock().get(&request_id).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Uuid, SpanContext>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Makes `span` a child of the client's W3C trace context (`traceparent`, `tracestate`), when
/// the request carries a valid one. Call before the span is entered.
pub fn adopt_client_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    if !exporting() || span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if cx.span().span_context().is_remote() {
        // Without an OpenTelemetry layer there is nothing to parent.
        let _ = span.set_parent(cx);
    }
}

/// The W3C trace-context headers of the current span (an upstream call's), when it has a valid
/// OpenTelemetry context; empty without an OpenTelemetry layer.
pub fn current_trace_headers() -> Vec<(http::HeaderName, http::HeaderValue)> {
    if !exporting() {
        return Vec::new();
    }
    let span = tracing::Span::current();
    if span.is_disabled() {
        return Vec::new();
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut out = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut out);
    out.into_iter()
        .filter_map(|(k, v)| {
            Some((
                http::HeaderName::from_bytes(k.as_bytes()).ok()?,
                http::HeaderValue::from_str(&v).ok()?,
            ))
        })
        .collect()
}

/// Whether this process installed an OpenTelemetry layer (set once, by [`init_with`], or by
/// [`set_exporting`] for a subscriber a test installs): without one no span has a context
/// worth reading, so the request path skips asking each span for it (a subscriber lookup and
/// an extension read per call). Process-wide like the global subscriber it describes.
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Says that an OpenTelemetry layer is installed (tests that install their own subscriber).
pub fn set_exporting() {
    EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Keeps the tracer provider alive; dropping it flushes and stops span export.
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("warning: flushing traces failed: {e}");
        }
    }
}

fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()))
}

fn otlp_provider() -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "canarist".to_owned());
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build())
}

/// Installs the global subscriber: logs on stderr filtered by `CANARIST_LOG` (default `info`),
/// and OTLP span export when the standard OpenTelemetry endpoint variables are set.
pub fn init() -> TracingGuard {
    init_with("info")
}

/// [`init`] with another log level than `info` when `CANARIST_LOG` is not set.
pub fn init_with(default_level: &str) -> TracingGuard {
    let filter =
        EnvFilter::try_from_env("CANARIST_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let fmt = tracing_subscriber::fmt::layer()
        .fmt_fields(OwnFields)
        .with_writer(std::io::stderr);
    let provider = if otlp_configured() {
        match otlp_provider() {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("warning: OTLP trace export disabled: {e}");
                None
            }
        }
    } else {
        None
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("canarist")));
    if otel.is_some() {
        set_exporting();
    }
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    TracingGuard { provider }
}

/// The log lines' fields: canarist's own, without the OpenTelemetry attributes (`otel.*` and
/// the GenAI `gen_ai.*`, which repeat canarist's fields in the conventions' names and are only
/// for the OTLP export). Every span is formatted when it opens and on every `record` whether or
/// not a line is ever logged inside it, so the fields left out are work saved on every request.
#[derive(Debug, Default, Clone, Copy)]
pub struct OwnFields;

impl<'w> FormatFields<'w> for OwnFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> std::fmt::Result {
        let mut v = OwnVisitor {
            writer,
            sep: false,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> std::fmt::Result {
        let sep = !current.fields.is_empty();
        let mut v = OwnVisitor {
            writer: current.as_writer(),
            sep,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct OwnVisitor<'w> {
    writer: Writer<'w>,
    /// A field was written already: the next one needs a space.
    sep: bool,
    result: std::fmt::Result,
}

impl OwnVisitor<'_> {
    fn write(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("gen_ai.") || name.starts_with("otel.") {
            return;
        }
        let sep = if self.sep { " " } else { "" };
        self.sep = true;
        self.result = if name == "message" {
            write!(self.writer, "{sep}{value}")
        } else {
            write!(self.writer, "{sep}{name}={value}")
        };
    }
}

impl Visit for OwnVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, format_args!("{value}"));
        } else {
            self.write(field, format_args!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_leave_the_opentelemetry_attributes_out() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let make = move || Sink(sink.clone());
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(OwnFields)
                .with_ansi(false)
                .with_writer(make),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "proxy.request",
                otel.kind = "server",
                deployment = "d",
                gen_ai.request.model = "m",
                variant = tracing::field::Empty,
                gen_ai.response.model = tracing::field::Empty
            );
            span.record("gen_ai.response.model", "m2");
            span.record("variant", "cand");
            let _in = span.enter();
            tracing::warn!(status = 502, "request failed");
        });
        let line = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert!(
            line.contains(r#"proxy.request{deployment="d" variant="cand"}: "#),
            "{line}"
        );
        assert!(line.contains("request failed status=502"), "{line}");
        assert!(!line.contains("gen_ai") && !line.contains("otel"), "{line}");
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn without_a_layer_nothing_is_remembered_or_parented() {
        let index = TraceIndex::new(2);
        let span = tracing::info_span!("x");
        index.remember(Uuid::new_v4(), &span);
        assert!(index.is_empty());
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        adopt_client_parent(&span, &headers);
    }

    #[test]
    fn the_index_is_bounded() {
        use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};
        let index = TraceIndex::new(2);
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        for (i, id) in ids.iter().enumerate() {
            let sc = SpanContext::new(
                TraceId::from(u128::try_from(i + 1).unwrap_or(1)),
                SpanId::from(u64::try_from(i + 1).unwrap_or(1)),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            );
            index.lock().put(*id, sc);
        }
        assert_eq!(index.len(), 2);
        assert!(index.get(ids[0]).is_none());
        assert_eq!(
            index.get(ids[2]).map(|s| s.trace_id()),
            Some(TraceId::from(3u128))
        );
    }
}
