//! Background calls: the shadow mirror of a candidate, the live pair sample of stable and the
//! A/A arm's second stable call (started by [`super::background`]).
//!
//! A background call runs in a detached task on the gateway's `TaskTracker`, with its own
//! timeout, and is never cancelled by the client's disconnect. Its outcome only reaches capture.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::time::Instant;
use tracing::Instrument;

use crate::capture::ErrorClass;
use crate::config::UpstreamLimits;
use crate::upstream::whole::BodyError;
use crate::upstream::{ClientCredentials, Upstreams, class_of_status};

use super::Gateway;
use super::side::{Outcome, Side};
use super::tee::TeeStream;

/// The outcome of `side`'s complete (non-streamed) upstream body, received now; an answer with
/// more choices or tool calls than `limits` allow is an invalid response. The body is read in
/// one typed pass (`WireShape::read_body`) and kept as its bytes.
pub fn outcome_of_body(side: &Side, status: u16, body: &Bytes, limits: &UpstreamLimits) -> Outcome {
    let ttft = side.started.elapsed();
    let read = side.upstream_shape().read_body(body, limits);
    let error = class_of_status(status).or(match &read {
        Ok(_) => None,
        Err(BodyError::NotJson) => Some(ErrorClass::Malformed),
        Err(BodyError::Beyond(_)) => Some(ErrorClass::InvalidResponse),
    });
    let detail = error.map(|e| match (e, &read) {
        (ErrorClass::Malformed, _) => "response body is not JSON".to_owned(),
        (ErrorClass::InvalidResponse, Err(BodyError::Beyond(b))) => b.to_string(),
        _ => format!("upstream answered {status}"),
    });
    let keep = side.ctx.keep_bodies && read.is_ok();
    let answer = read.unwrap_or_default();
    Outcome {
        status: Some(status),
        error,
        detail,
        ttft: (error.is_none()).then_some(ttft),
        usage: answer.summary.usage,
        finish_reason: answer.summary.finish_reason,
        text: answer.summary.text,
        response_model: answer.model,
        response_id: answer.id,
        response_body: keep.then(|| body.clone()),
        response_len: body.len(),
    }
}

/// Starts a detached background call for `side`, bounded by `timeout` as a whole.
pub fn spawn(
    gw: Arc<Gateway>,
    side: Side,
    body: Bytes,
    timeout: Duration,
    credentials: ClientCredentials,
) {
    let tasks = gw.tasks.clone();
    // A child of the request's span, though it may outlive it.
    let mut side = side;
    let span = super::serve::upstream_span(&mut side);
    let call = run(gw, side, body, timeout, credentials, span.clone());
    tasks.spawn(call.instrument(span));
}

async fn run(
    gw: Arc<Gateway>,
    side: Side,
    body: Bytes,
    timeout: Duration,
    credentials: ClientCredentials,
    span: tracing::Span,
) {
    let deadline = Instant::now() + timeout;
    let (endpoint, stream) = (side.upstream_shape().endpoint(), side.ctx.stream);
    let send = gw.upstreams.send(
        &side.provider,
        endpoint,
        body,
        stream,
        Some(timeout),
        &credentials,
    );
    let response = match tokio::time::timeout_at(deadline, send).await {
        Err(_) => {
            let detail = "mirror timeout before response";
            side.finish(&gw, Outcome::failed(None, ErrorClass::Timeout, detail));
            return;
        }
        Ok(Err(e)) => {
            side.finish(&gw, Outcome::failed(None, e.class, e.detail));
            return;
        }
        Ok(Ok(r)) => r,
    };
    span.record("http.status_code", i64::from(response.status().as_u16()));
    if stream && response.status().is_success() {
        drain(&gw, response, side, deadline).await;
    } else {
        read_whole(&gw, response, side, deadline).await;
    }
}

/// Reads a whole body before `deadline` and finishes the side with it.
async fn read_whole(gw: &Arc<Gateway>, response: reqwest::Response, side: Side, deadline: Instant) {
    let status = response.status().as_u16();
    let remaining = deadline.saturating_duration_since(Instant::now());
    match Upstreams::read_body(
        &side.provider,
        response,
        remaining,
        gw.config.upstream_limits.max_body_bytes,
    )
    .await
    {
        Ok(bytes) => {
            let outcome = outcome_of_body(&side, status, &bytes, &gw.config.upstream_limits);
            side.finish(gw, outcome);
        }
        Err(e) => side.finish(gw, Outcome::failed(Some(status), e.class, e.detail)),
    }
}

/// Drains a stream through the tee (nobody reads its output) before `deadline`.
async fn drain(gw: &Arc<Gateway>, response: reqwest::Response, side: Side, deadline: Instant) {
    let assembler = side
        .upstream_shape()
        .stream_assembler(gw.config.upstream_limits);
    let mut tee = TeeStream::new(response, side, gw.clone(), assembler, false);
    let drained =
        tokio::time::timeout_at(deadline, async { while tee.next().await.is_some() {} }).await;
    if drained.is_err() {
        tee.abort(
            ErrorClass::Timeout,
            "mirror stream did not finish within its timeout",
        );
    }
}
