//! The client's credentials that an upstream may receive.
//!
//! The rule (an invariant, see ARCHITECTURE.md): a canarist key (`cnr_…`) is never forwarded
//! anywhere; a client's own provider credentials (`Authorization`, `x-api-key`, `api-key`) are
//! forwarded only to a provider that opts in with `forward_client_auth: true` (and so has no key
//! of its own), on served and mirrored calls alike; cookies, `Proxy-Authorization` and every other
//! client header are never forwarded. [`ClientCredentials::from_headers`] keeps only what may be
//! forwarded at all; [`crate::upstream::Upstreams::send`] applies the provider's opt-in.

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
        Self { headers: kept }
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
            .entries(self.headers.iter().map(|(n, _)| n.as_str()))
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
}
