//! The client's credentials that an upstream may receive.
//!
//! The rule (an invariant, see ARCHITECTURE.md): a canarist key (`cnr_…`) is never forwarded
//! anywhere; a client's own provider credentials (`Authorization`, `x-api-key`, `api-key`) are
//! forwarded only to a provider that opts in with `forward_client_auth: true` (and so has no key
//! of its own), on served and mirrored calls alike; cookies, `Proxy-Authorization` and every other
//! client header are never forwarded. [`ClientCredentials::from_headers`] keeps only what may be
//! forwarded at all; [`crate::upstream::Upstreams::send`] applies the provider's opt-in.
//!
//! Besides credentials it keeps the client's W3C trace context (`traceparent`, `tracestate`),
//! which is no credential and goes to every upstream: `send` propagates the upstream call's own
//! span context when spans are exported, and otherwise the client's headers unchanged, so that
//! the upstream's spans join the client's trace either way.

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// Every canarist API key starts with this (`http::admin` issues them).
pub const GATEWAY_KEY_PREFIX: &str = "cnr_";

/// The client headers that carry a provider credential and may be forwarded on opt-in.
const FORWARDABLE: [HeaderName; 3] = [
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
];

/// The client's provider credentials, canarist keys already taken out. Cheap to clone; its
/// `Debug` shows header names only.
#[derive(Clone, Default)]
pub struct ClientCredentials {
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The client's `traceparent` and `tracestate` (well-formed ones only).
    trace: Vec<(HeaderName, HeaderValue)>,
    /// The client's `anthropic-version` and `anthropic-beta` (no credentials), which only an
    /// `api: anthropic` provider receives.
    anthropic: Vec<(HeaderName, HeaderValue)>,
}

/// The Anthropic API headers a client's own are passed through for.
pub const ANTHROPIC_HEADERS: [&str; 2] = ["anthropic-version", "anthropic-beta"];

/// The W3C trace-context headers.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// A `traceparent` as W3C Trace Context level 1 writes it (`00-<32 hex>-<16 hex>-<2 hex>`),
/// or a later version's longer form; `tracestate` up to its 512-character bound.
fn trace_value_ok(name: &str, value: &HeaderValue) -> bool {
    let Ok(text) = value.to_str() else {
        return false;
    };
    if name == "tracestate" {
        return text.len() <= 512;
    }
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() >= 4
        && [2, 32, 16, 2]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl ClientCredentials {
    /// No credentials (what a provider that does not opt in receives).
    pub fn none() -> Self {
        Self::default()
    }

    /// The forwardable credentials of a client request: `Authorization`, `x-api-key` and
    /// `api-key`, each unless it holds a canarist key (or is not text).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut kept = Vec::new();
        for name in FORWARDABLE {
            for value in headers.get_all(&name) {
                if is_gateway_key(value) {
                    continue;
                }
                let mut value = value.clone();
                value.set_sensitive(true);
                kept.push((name.clone(), value));
            }
        }
        let trace = TRACE_HEADERS
            .iter()
            .filter_map(|name| {
                let value = headers.get(*name)?;
                trace_value_ok(name, value).then(|| (HeaderName::from_static(name), value.clone()))
            })
            .collect();
        let anthropic = ANTHROPIC_HEADERS
            .iter()
            .flat_map(|name| {
                headers
                    .get_all(*name)
                    .iter()
                    .map(|v| (HeaderName::from_static(name), v.clone()))
            })
            .collect();
        Self {
            headers: kept,
            trace,
            anthropic,
        }
    }

    /// The client's `anthropic-version` and `anthropic-beta` headers.
    pub fn anthropic(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.anthropic.iter().map(|(n, v)| (n, v))
    }

    /// Whether the client sent its own `anthropic-version`.
    pub fn has_anthropic_version(&self) -> bool {
        self.anthropic.iter().any(|(n, _)| n == "anthropic-version")
    }

    /// The client's own trace-context headers (sent when no span context of ours is exported).
    pub fn trace(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.trace.iter().map(|(n, v)| (n, v))
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// The headers to set on an upstream request.
    pub fn headers(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.headers.iter().map(|(n, v)| (n, v))
    }
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.headers
                    .iter()
                    .chain(&self.trace)
                    .chain(&self.anthropic)
                    .map(|(n, _)| n.as_str()),
            )
            .finish()
    }
}

/// Whether a header value holds a canarist key: bare, or after an auth scheme (`Bearer cnr_…`),
/// and unreadable values count as one (they are not forwarded).
fn is_gateway_key(value: &HeaderValue) -> bool {
    let Ok(text) = value.to_str() else {
        return true;
    };
    let text = text.trim();
    let credential = text
        .split_once(char::is_whitespace)
        .map_or(text, |(_, rest)| rest.trim_start());
    text.starts_with(GATEWAY_KEY_PREFIX) || credential.starts_with(GATEWAY_KEY_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn kept(c: &ClientCredentials) -> Vec<(String, String)> {
        c.headers()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect()
    }

    #[test]
    fn canarist_keys_are_never_kept_in_any_form() {
        for value in [
            "Bearer cnr_abc",
            "bearer  cnr_abc",
            "cnr_abc",
            " Basic cnr_abc",
        ] {
            let c = ClientCredentials::from_headers(&headers(&[
                ("authorization", value),
                ("x-api-key", value),
                ("api-key", value),
            ]));
            assert!(c.is_empty(), "{value}: {c:?}");
        }
    }

    #[test]
    fn provider_credentials_are_kept_and_nothing_else() {
        let c = ClientCredentials::from_headers(&headers(&[
            ("authorization", "Bearer sk-client"),
            ("x-api-key", "xk"),
            ("api-key", "ak"),
            ("cookie", "session=1"),
            ("proxy-authorization", "Basic eDp5"),
            ("x-canarist-unit", "u"),
        ]));
        assert_eq!(
            kept(&c),
            [
                ("authorization".to_owned(), "Bearer sk-client".to_owned()),
                ("x-api-key".to_owned(), "xk".to_owned()),
                ("api-key".to_owned(), "ak".to_owned()),
            ]
        );
        assert!(c.headers().all(|(_, v)| v.is_sensitive()));
        let debug = format!("{c:?}");
        assert!(!debug.contains("sk-client"), "{debug}");
    }

    #[test]
    fn only_well_formed_trace_context_is_kept() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = ClientCredentials::from_headers(&headers(&[
            ("traceparent", tp),
            ("tracestate", "vendor=abc"),
        ]));
        let got: Vec<(String, String)> = c
            .trace()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("traceparent".into(), tp.into()),
                ("tracestate".into(), "vendor=abc".into())
            ]
        );
        assert!(c.is_empty(), "trace context is no credential");
        for bad in [
            "garbage",
            "00-xyz-00f067aa0ba902b7-01",
            "00-4bf92f35-00f067aa0ba902b7-01",
        ] {
            let c = ClientCredentials::from_headers(&headers(&[("traceparent", bad)]));
            assert_eq!(c.trace().count(), 0, "{bad}");
        }
    }
}
