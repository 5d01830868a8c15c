//! The `upstream_limits:` section: bounds on everything an upstream controls, so that a
//! misbehaving provider (a self-hosted shadow candidate above all) cannot crash or exhaust the
//! gateway. Beyond a bound the answer is refused as `upstream_invalid_response`.
//!
//! ```yaml
//! upstream_limits:
//!   max_body_bytes: 33554432     # a non-streamed answer (32 MiB)
//!   max_stream_bytes: 33554432   # everything one stream sends (32 MiB)
//!   max_event_bytes: 1048576     # one SSE event, i.e. bytes without a blank line (1 MiB)
//!   max_stream_events: 200000    # SSE events in one stream
//!   max_tool_calls: 128          # tool calls in one answer (a streamed index must be below it)
//!   max_choices: 128             # choices in one answer (a streamed index must be below it)
//! ```
//!
//! The total duration of a mirrored call, its stream included, is the deployment's
//! `shadow.timeout`.
//!
//! The `server:` section bounds what a client holds: time to send its headers and its body,
//! connections, requests in flight.
//!
//! ```yaml
//! server:
//!   header_read_timeout: 30s     # a request's headers (and an idle keep-alive connection)
//!   body_read_timeout: 60s       # a request's whole body; beyond it: 408
//!   max_connections: 1024        # open connections; one more is closed at once
//!   max_requests_in_flight: 512  # requests being answered; one more gets 503 + Retry-After
//! ```

use std::time::Duration;

use serde::Deserialize;

use super::Problem;

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamLimits {
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    #[serde(default)]
    pub max_stream_bytes: Option<u64>,
    #[serde(default)]
    pub max_event_bytes: Option<u64>,
    #[serde(default)]
    pub max_stream_events: Option<u64>,
    #[serde(default)]
    pub max_tool_calls: Option<u64>,
    #[serde(default)]
    pub max_choices: Option<u64>,
}

/// Validated `upstream_limits`; every field is at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamLimits {
    /// Largest non-streamed response body read from an upstream, in bytes.
    pub max_body_bytes: usize,
    /// Largest total of bytes one stream may send.
    pub max_stream_bytes: usize,
    /// Largest single SSE event (bytes before its blank line).
    pub max_event_bytes: usize,
    /// Most SSE events one stream may send.
    pub max_stream_events: usize,
    /// Most tool calls in one answer; a streamed tool-call `index` must be below it.
    pub max_tool_calls: usize,
    /// Most choices in one answer; a streamed choice `index` must be below it.
    pub max_choices: usize,
}

pub fn default_upstream_max_body_bytes() -> usize {
    32 * 1024 * 1024
}
pub fn default_max_stream_bytes() -> usize {
    32 * 1024 * 1024
}
pub fn default_max_event_bytes() -> usize {
    1024 * 1024
}
pub fn default_max_stream_events() -> usize {
    200_000
}
pub fn default_max_tool_calls() -> usize {
    128
}
pub fn default_max_choices() -> usize {
    128
}

impl Default for UpstreamLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: default_upstream_max_body_bytes(),
            max_stream_bytes: default_max_stream_bytes(),
            max_event_bytes: default_max_event_bytes(),
            max_stream_events: default_max_stream_events(),
            max_tool_calls: default_max_tool_calls(),
            max_choices: default_max_choices(),
        }
    }
}

pub(super) fn upstream_limits(
    raw: Option<RawUpstreamLimits>,
    problems: &mut Vec<Problem>,
) -> UpstreamLimits {
    let d = UpstreamLimits::default();
    let Some(raw) = raw else {
        return d;
    };
    let mut field = |name: &str, value: Option<u64>, default: usize| match value {
        None => default,
        Some(0) => {
            problems.push(Problem {
                field: format!("upstream_limits.{name}"),
                message: "must be greater than 0".to_owned(),
            });
            default
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    UpstreamLimits {
        max_body_bytes: field("max_body_bytes", raw.max_body_bytes, d.max_body_bytes),
        max_stream_bytes: field("max_stream_bytes", raw.max_stream_bytes, d.max_stream_bytes),
        max_event_bytes: field("max_event_bytes", raw.max_event_bytes, d.max_event_bytes),
        max_stream_events: field(
            "max_stream_events",
            raw.max_stream_events,
            d.max_stream_events,
        ),
        max_tool_calls: field("max_tool_calls", raw.max_tool_calls, d.max_tool_calls),
        max_choices: field("max_choices", raw.max_choices, d.max_choices),
    }
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Time a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open (default 30s).
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub header_read_timeout: Option<Duration>,
    /// Time a client has to send a request's whole body; beyond it the request gets 408
    /// (default 60s).
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub body_read_timeout: Option<Duration>,
    /// Open client connections; one beyond it is closed as soon as it is accepted (default 1024).
    #[serde(default)]
    pub max_connections: Option<u64>,
    /// Requests being answered at once (streams until their end); one beyond it gets 503 with
    /// `Retry-After` (default 512). `/metrics` and `/healthz` are not counted.
    #[serde(default)]
    pub max_requests_in_flight: Option<u64>,
}

/// Validated `server:` bounds on what a client may hold; every field is positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    pub max_requests_in_flight: usize,
}

pub fn default_header_read_timeout() -> Duration {
    Duration::from_secs(30)
}
pub fn default_body_read_timeout() -> Duration {
    Duration::from_secs(60)
}
pub fn default_max_connections() -> usize {
    1024
}
pub fn default_max_requests_in_flight() -> usize {
    512
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: default_header_read_timeout(),
            body_read_timeout: default_body_read_timeout(),
            max_connections: default_max_connections(),
            max_requests_in_flight: default_max_requests_in_flight(),
        }
    }
}

pub(super) fn server(raw: Option<RawServer>, problems: &mut Vec<Problem>) -> ServerLimits {
    let d = ServerLimits::default();
    let Some(raw) = raw else {
        return d;
    };
    let mut zero = |name: &str| {
        problems.push(Problem {
            field: format!("server.{name}"),
            message: "must be greater than 0".to_owned(),
        });
    };
    let mut duration = |name: &str, value: Option<Duration>, default: Duration| match value {
        None => default,
        Some(v) if v.is_zero() => {
            zero(name);
            default
        }
        Some(v) => v,
    };
    let header_read_timeout = duration(
        "header_read_timeout",
        raw.header_read_timeout,
        d.header_read_timeout,
    );
    let body_read_timeout = duration(
        "body_read_timeout",
        raw.body_read_timeout,
        d.body_read_timeout,
    );
    let mut count = |name: &str, value: Option<u64>, default: usize| match value {
        None => default,
        Some(0) => {
            zero(name);
            default
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    ServerLimits {
        header_read_timeout,
        body_read_timeout,
        max_connections: count("max_connections", raw.max_connections, d.max_connections),
        max_requests_in_flight: count(
            "max_requests_in_flight",
            raw.max_requests_in_flight,
            d.max_requests_in_flight,
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;
    use super::*;

    fn load(yaml: &str) -> Result<Config, super::super::ConfigError> {
        Config::from_yaml(Path::new("limits.yaml"), yaml, &|_| None)
    }

    #[test]
    fn limits_have_defaults_and_take_every_key() {
        let c = load("{}").unwrap();
        assert_eq!(c.upstream_limits, UpstreamLimits::default());
        assert_eq!(c.upstream_limits.max_body_bytes, 32 * 1024 * 1024);
        let c = load(
            "upstream_limits: { max_body_bytes: 10, max_stream_bytes: 20, max_event_bytes: 30, \
             max_stream_events: 40, max_tool_calls: 50, max_choices: 60 }",
        )
        .unwrap();
        let l = c.upstream_limits;
        assert_eq!(
            [
                l.max_body_bytes,
                l.max_stream_bytes,
                l.max_event_bytes,
                l.max_stream_events,
                l.max_tool_calls,
                l.max_choices
            ],
            [10, 20, 30, 40, 50, 60]
        );
    }

    #[test]
    fn zero_limits_and_unknown_keys_are_refused_by_field() {
        let err = load("upstream_limits: { max_stream_bytes: 0, max_tool_calls: 0 }").unwrap_err();
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "upstream_limits.max_stream_bytes",
                "upstream_limits.max_tool_calls"
            ]
        );
        let err = load("upstream_limits: { max_bytes: 1 }").unwrap_err();
        assert!(err.to_string().contains("max_bytes"), "{err}");
    }
}
