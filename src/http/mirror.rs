//! Background calls: the shadow mirror of a candidate and the live pair sample of stable.
//!
//! A background call runs in a detached task on the gateway's `TaskTracker`, with its own
//! timeout, and is never cancelled by the client's disconnect. Its outcome only reaches capture.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::time::Instant;
use tracing::Instrument;

use crate::capture::{Endpoint, ErrorClass};
use crate::upstream::{ClientCredentials, Upstreams, class_of_status, sse};

use super::Gateway;
use super::side::{Outcome, Side};
use super::tee::TeeStream;

/// The outcome of a complete (non-streamed) upstream body.
pub fn outcome_of_body(status: u16, body: &Bytes, keep_body: bool, ttft: Duration) -> Outcome {
    let parsed = sse::summarize_body(body);
    let error =
        class_of_status(status).or_else(|| parsed.is_none().then_some(ErrorClass::Malformed));
    let summary = parsed.as_ref().map(sse::summary_of).unwrap_or_default();
    Outcome {
        status: Some(status),
        error,
        detail: error.map(|e| match e {
            ErrorClass::Malformed => "response body is not JSON".to_owned(),
            _ => format!("upstream answered {status}"),
        }),
        ttft: (error.is_none()).then_some(ttft),
        usage: summary.usage,
        finish_reason: summary.finish_reason,
        text: summary.text,
        response_body: if keep_body { parsed } else { None },
        response_len: body.len(),
    }
}

/// Starts a detached background call for `side`.
pub fn spawn(
    gw: Arc<Gateway>,
    side: Side,
    body: Vec<u8>,
    endpoint: Endpoint,
    stream: bool,
    timeout: Duration,
    credentials: ClientCredentials,
) {
    let tasks = gw.tasks.clone();
    // A child of the request's span, though it may outlive it.
    let span = super::serve::upstream_span(&side);
    let record = span.clone();
    tasks.spawn(
        async move {
            let deadline = Instant::now() + timeout;
            let provider = side.provider.clone();
            let sent = tokio::time::timeout_at(
                deadline,
                gw.upstreams.send(
                    &provider,
                    endpoint,
                    body,
                    stream,
                    Some(timeout),
                    &credentials,
                ),
            )
            .await;
            let response = match sent {
                Err(_) => {
                    side.finish(
                        &gw,
                        Outcome::failed(
                            None,
                            ErrorClass::Timeout,
                            "mirror timeout before response",
                        ),
                    );
                    return;
                }
                Ok(Err(e)) => {
                    side.finish(&gw, Outcome::failed(None, e.class, e.detail));
                    return;
                }
                Ok(Ok(r)) => r,
            };
            let status = response.status().as_u16();
            record.record("http.status_code", i64::from(status));
            let streaming_ok = stream && response.status().is_success();
            if !streaming_ok {
                let remaining = deadline.saturating_duration_since(Instant::now());
                match Upstreams::read_body(&provider, response, remaining).await {
                    Ok(bytes) => {
                        let ttft = side.started.elapsed();
                        let keep = side.ctx.keep_bodies;
                        side.finish(&gw, outcome_of_body(status, &bytes, keep, ttft));
                    }
                    Err(e) => side.finish(&gw, Outcome::failed(Some(status), e.class, e.detail)),
                }
                return;
            }
            let chat = endpoint == Endpoint::ChatCompletions;
            let mut tee = TeeStream::new(response, side, gw.clone(), chat, false);
            let drained =
                tokio::time::timeout_at(deadline, async { while tee.next().await.is_some() {} })
                    .await;
            if drained.is_err() {
                tee.abort(
                    ErrorClass::Timeout,
                    "mirror stream did not finish within its timeout",
                );
            }
        }
        .instrument(span),
    );
}
