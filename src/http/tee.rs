//! The streaming tee: forwards an upstream SSE stream chunk by chunk while assembling the full
//! answer for capture. The same type drains mirrored streams (nobody reads the output).
//!
//! Chunks are forwarded as soon as they arrive. When the gateway asked the upstream for usage
//! although the client did not, forwarding happens per complete SSE event so that the
//! usage-only chunk can be withheld from the client. When the stream ends, fails, or the client
//! goes away (the tee is dropped), the side is finished exactly once with what was seen.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use tokio::time::Instant;

use crate::capture::ErrorClass;
use crate::upstream::sse::{EventKind, EventSplitter, StreamAssembler, event_data};

use super::Gateway;
use super::side::{Outcome, Side};

pub struct TeeStream {
    upstream: BoxStream<'static, Result<Bytes, reqwest::Error>>,
    splitter: EventSplitter,
    assembler: StreamAssembler,
    /// Withhold the usage-only chunk (the client did not ask for it).
    strip_usage: bool,
    pending: VecDeque<Bytes>,
    malformed: bool,
    first_token: Option<Instant>,
    status: u16,
    /// Bytes received from the upstream.
    received: usize,
    finish: Option<(Side, Arc<Gateway>)>,
}

impl TeeStream {
    pub fn new(
        response: reqwest::Response,
        side: Side,
        gw: Arc<Gateway>,
        assembler: StreamAssembler,
        strip_usage: bool,
    ) -> Self {
        let status = response.status().as_u16();
        Self {
            upstream: Box::pin(response.bytes_stream()),
            splitter: EventSplitter::default(),
            assembler,
            strip_usage,
            pending: VecDeque::new(),
            malformed: false,
            first_token: None,
            status,
            received: 0,
            finish: Some((side, gw)),
        }
    }

    /// Ends the side now with `error` (e.g. the mirror's own timeout fired).
    pub fn abort(&mut self, error: ErrorClass, detail: &str) {
        self.finish_with(Some((error, detail.to_owned())));
    }

    fn finish_with(&mut self, error: Option<(ErrorClass, String)>) {
        let Some((side, gw)) = self.finish.take() else {
            return;
        };
        let error = error.or_else(|| {
            if self.malformed {
                Some((
                    ErrorClass::Malformed,
                    "stream held data that is not JSON".to_owned(),
                ))
            } else if !self.assembler.complete() {
                Some((
                    ErrorClass::Truncated,
                    "stream ended without [DONE] or a finish reason".to_owned(),
                ))
            } else {
                None
            }
        });
        let ttft = self
            .first_token
            .map(|t| t.saturating_duration_since(side.started));
        let outcome = Outcome {
            status: Some(self.status),
            error: error.as_ref().map(|(c, _)| *c),
            detail: error.map(|(_, d)| d),
            ttft,
            usage: self.assembler.usage,
            finish_reason: self.assembler.finish_reason.clone(),
            text: Some(self.assembler.text().to_owned()),
            response_body: side.ctx.keep_bodies.then(|| self.assembler.to_response()),
            response_len: self.received,
        };
        side.finish(&gw, outcome);
    }

    /// Feeds `chunk` to the assembler; queues what the client should receive.
    fn absorb(&mut self, chunk: Bytes) {
        self.received += chunk.len();
        let events = self.splitter.push(&chunk);
        let mut forward_events = Vec::new();
        for event in events {
            let kind = match event_data(&event) {
                Some(data) => self.assembler.feed(&data),
                None => EventKind::Other,
            };
            if kind == EventKind::Malformed {
                self.malformed = true;
            }
            if self.first_token.is_none() && self.assembler.has_token() {
                self.first_token = Some(Instant::now());
            }
            if !(self.strip_usage && kind == EventKind::UsageOnly) {
                forward_events.push(event);
            }
        }
        if self.strip_usage {
            self.pending.extend(forward_events);
        } else {
            // Forward the bytes exactly as they came, partial events included.
            self.pending.push_back(chunk);
        }
    }
}

impl Stream for TeeStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(chunk)));
            }
            if self.finish.is_none() {
                return Poll::Ready(None);
            }
            match self.upstream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => self.absorb(chunk),
                Poll::Ready(Some(Err(e))) => {
                    let class = if e.is_timeout() {
                        ErrorClass::Timeout
                    } else {
                        ErrorClass::Truncated
                    };
                    self.finish_with(Some((class, e.to_string())));
                    return Poll::Ready(Some(Err(std::io::Error::other("upstream stream failed"))));
                }
                Poll::Ready(None) => {
                    if let Some(rest) = self.strip_usage.then(|| self.splitter.finish()).flatten() {
                        self.pending.push_back(rest);
                    }
                    self.finish_with(None);
                }
            }
        }
    }
}

impl Drop for TeeStream {
    fn drop(&mut self) {
        if self.finish.is_some() {
            self.finish_with(Some((
                ErrorClass::ClientDisconnected,
                "the client went away before the stream ended".to_owned(),
            )));
        }
    }
}
