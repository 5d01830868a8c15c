//! `upstream`: talking to providers of the OpenAI and Anthropic APIs.
//!
//! Owns: one HTTP client per provider (connect/read/total timeouts), the request-body rewrite
//! (`request`), SSE splitting and stream assembly (`sse`), and error classification: every
//! failure says who is to blame and whether it is worth retrying.
//! Never: decides routing or records anything; callers do. Fails closed per call: an error is
//! returned to the caller, never swallowed.

pub mod credentials;
pub mod messages;
pub mod request;
pub mod responses;
pub mod shape;
pub mod sse;
#[cfg(test)]
mod sse_agree;
#[cfg(test)]
mod sse_fuzz;
#[cfg(test)]
mod sse_reference;
pub mod translate;
pub mod whole;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;

use crate::capture::{Endpoint, ErrorClass};
use crate::config::{Provider, ProviderApi};

pub use credentials::ClientCredentials;

/// A call that produced no usable response.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{class:?} calling provider `{provider}`: {detail}")]
pub struct UpstreamError {
    pub provider: String,
    pub class: ErrorClass,
    /// Internal detail for logs and capture; never shown to clients.
    pub detail: String,
}

impl UpstreamError {
    /// Worth retrying on another variant (live fallback): the upstream is down or slow, or
    /// answered 5xx/malformed. A 4xx is the request's fault and would fail on stable too.
    pub fn retryable(&self) -> bool {
        !matches!(
            self.class,
            ErrorClass::Upstream4xx | ErrorClass::ClientDisconnected
        )
    }

    pub(crate) fn from_reqwest(provider: &str, e: &reqwest::Error) -> Self {
        let class = if e.is_timeout() {
            ErrorClass::Timeout
        } else if e.is_connect() {
            ErrorClass::Unreachable
        } else if e.is_body() || e.is_decode() {
            ErrorClass::Truncated
        } else {
            ErrorClass::Unreachable
        };
        Self {
            provider: provider.to_owned(),
            class,
            detail: error_chain(e),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

struct ProviderClient {
    provider: Provider,
    client: reqwest::Client,
    /// The URL of every captured endpoint, parsed once (a call clones one instead of parsing
    /// its URL again).
    urls: HashMap<&'static str, reqwest::Url>,
}

/// Where one call goes and how it is bounded (see [`Upstreams::send`]).
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// Appended to the provider's base URL (`/messages/count_tokens`).
    pub path: &'a str,
    pub stream: bool,
    pub timeout: Option<Duration>,
}

/// HTTP clients for every configured provider.
pub struct Upstreams {
    by_name: HashMap<String, ProviderClient>,
}

impl Upstreams {
    pub fn new<'a>(
        providers: impl IntoIterator<Item = &'a Provider>,
    ) -> Result<Self, reqwest::Error> {
        let mut by_name = HashMap::new();
        for p in providers {
            let client = reqwest::Client::builder()
                .connect_timeout(p.connect_timeout)
                .read_timeout(p.read_timeout)
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(256)
                .tcp_nodelay(true)
                .build()?;
            let urls = Endpoint::ALL
                .iter()
                .filter_map(|e| {
                    let url = reqwest::Url::parse(&format!("{}{}", p.base_url, e.path())).ok()?;
                    Some((e.path(), url))
                })
                .collect();
            by_name.insert(
                p.name.clone(),
                ProviderClient {
                    provider: p.clone(),
                    client,
                    urls,
                },
            );
        }
        Ok(Self { by_name })
    }

    /// Sends `body` to `endpoint` of `provider`. `timeout` bounds the whole call (for
    /// non-streamed calls) or the wait for response headers (streams; the provider's read
    /// timeout then bounds each silence). The provider's own key is sent when it has one; the
    /// client's `credentials` only when the provider opts in (`forward_client_auth`).
    pub async fn send(
        &self,
        provider: &str,
        endpoint: Endpoint,
        body: Bytes,
        stream: bool,
        timeout: Option<Duration>,
        credentials: &ClientCredentials,
    ) -> Result<reqwest::Response, UpstreamError> {
        let call = Call {
            path: endpoint.path(),
            stream,
            timeout,
        };
        self.send_to(provider, call, body, credentials).await
    }

    /// Sends `body` to `call.path` of `provider` (what [`Upstreams::send`] does for an endpoint;
    /// also `/messages/count_tokens`, which nothing captures). The provider's own key goes as
    /// its API has it: `Authorization: Bearer` (`api: openai`) or `x-api-key` (`api:
    /// anthropic`, which also receives the client's `anthropic-version` and `anthropic-beta`,
    /// or its configured `anthropic_version`).
    pub async fn send_to(
        &self,
        provider: &str,
        call: Call<'_>,
        body: impl Into<Bytes>,
        credentials: &ClientCredentials,
    ) -> Result<reqwest::Response, UpstreamError> {
        let Call {
            path,
            stream,
            timeout,
        } = call;
        let Some(pc) = self.by_name.get(provider) else {
            return Err(UpstreamError {
                provider: provider.to_owned(),
                class: ErrorClass::Unreachable,
                detail: "provider is not configured".to_owned(),
            });
        };
        let mut req = match pc.urls.get(path) {
            Some(url) => pc.client.post(url.clone()),
            None => pc.client.post(format!("{}{path}", pc.provider.base_url)),
        };
        req = req
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.into());
        if stream {
            req = req.header(http::header::ACCEPT, "text/event-stream");
        }
        let anthropic = pc.provider.api == ProviderApi::Anthropic;
        if anthropic {
            for (name, value) in credentials.anthropic() {
                req = req.header(name.clone(), value.clone());
            }
            if !credentials.has_anthropic_version() {
                req = req.header("anthropic-version", pc.provider.anthropic_version.as_str());
            }
        }
        if let Some(key) = &pc.provider.api_key {
            if anthropic {
                let mut value = http::HeaderValue::from_str(key).map_err(|_| UpstreamError {
                    provider: provider.to_owned(),
                    class: ErrorClass::Unreachable,
                    detail: "the provider's key is not a valid header value".to_owned(),
                })?;
                value.set_sensitive(true);
                req = req.header("x-api-key", value);
            } else {
                req = req.bearer_auth(key);
            }
        } else if pc.provider.forward_client_auth {
            for (name, value) in credentials.headers() {
                req = req.header(name.clone(), value.clone());
            }
        }
        // The trace context (no credential): this call's span when spans are exported, else the
        // client's own headers as they came.
        let ours = crate::telemetry::traces::current_trace_headers();
        if ours.is_empty() {
            for (name, value) in credentials.trace() {
                req = req.header(name.clone(), value.clone());
            }
        } else {
            for (name, value) in ours {
                req = req.header(name, value);
            }
        }
        let total = timeout
            .unwrap_or(pc.provider.timeout)
            .min(pc.provider.timeout);
        if !stream {
            // Covers the body as well; streams are bounded by the read timeout instead.
            req = req.timeout(total);
        }
        let send = req.send();
        let response = if stream {
            tokio::time::timeout(total, send)
                .await
                .map_err(|_| UpstreamError {
                    provider: provider.to_owned(),
                    class: ErrorClass::Timeout,
                    detail: format!("no response headers within {total:?}"),
                })?
        } else {
            send.await
        };
        response.map_err(|e| UpstreamError::from_reqwest(provider, &e))
    }

    /// Reads a whole (non-streamed) body within `timeout`, refusing one larger than `max_bytes`
    /// (`upstream_limits.max_body_bytes`) as soon as it is known to be: nothing beyond the
    /// bound is buffered.
    pub async fn read_body(
        provider: &str,
        mut response: reqwest::Response,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Bytes, UpstreamError> {
        let too_large = || UpstreamError {
            provider: provider.to_owned(),
            class: ErrorClass::InvalidResponse,
            detail: sse::LimitError::BodyTooLarge { limit: max_bytes }.to_string(),
        };
        let limit = u64::try_from(max_bytes).unwrap_or(u64::MAX);
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let read = async {
            // A body that comes in one chunk (most do) is that chunk: no copy.
            let Some(first) = response.chunk().await? else {
                return Ok(Ok(Bytes::new()));
            };
            if first.len() > max_bytes {
                return Ok(Err(too_large()));
            }
            let Some(second) = response.chunk().await? else {
                return Ok(Ok(first));
            };
            let mut body = bytes::BytesMut::with_capacity(first.len() + second.len());
            body.extend_from_slice(&first);
            let mut next = Some(second);
            while let Some(chunk) = next {
                if body.len().saturating_add(chunk.len()) > max_bytes {
                    return Ok(Err(too_large()));
                }
                body.extend_from_slice(&chunk);
                next = response.chunk().await?;
            }
            Ok::<_, reqwest::Error>(Ok(body.freeze()))
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(UpstreamError::from_reqwest(provider, &e)),
            Err(_) => Err(UpstreamError {
                provider: provider.to_owned(),
                class: ErrorClass::Timeout,
                detail: format!("body not complete within {timeout:?}"),
            }),
        }
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.by_name.get(name).map(|p| &p.provider)
    }
}

/// The error class of a non-2xx status.
pub fn class_of_status(status: u16) -> Option<ErrorClass> {
    match status {
        200..=299 => None,
        400..=499 => Some(ErrorClass::Upstream4xx),
        _ => Some(ErrorClass::Upstream5xx),
    }
}
