//! The streaming tee: forwards an upstream SSE stream chunk by chunk while assembling the full
//! answer for capture. The same type drains mirrored streams (nobody reads the output).
//!
//! Chunks are forwarded as soon as they arrive. When the gateway asked the upstream for usage
//! although the client did not, forwarding happens per complete SSE event so that the
//! usage-only chunk can be withheld from the client. When the stream ends, fails, or the client
//! goes away (the tee is dropped), the side is finished exactly once with what was seen.
//!
//! The stream is read under `upstream_limits` (`sse::StreamReader`): beyond a bound the side
//! ends as `upstream_invalid_response` and the client's stream ends with an error event in its
//! API's shape instead of the rest of the upstream's bytes.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use tokio::time::Instant;

use crate::capture::ErrorClass;
use crate::upstream::sse::{EventKind, LimitError, StreamAssembler, StreamReader, event_data};
use crate::upstream::translate::StreamTranslator;

use super::side::{Outcome, Side};
use super::{ApiError, Gateway};

pub struct TeeStream {
    upstream: BoxStream<'static, Result<Bytes, reqwest::Error>>,
    reader: StreamReader,
    /// Withhold the usage-only chunk (the client did not ask for it).
    strip_usage: bool,
    pending: VecDeque<Bytes>,
    /// The bytes forwarded so far end inside an event (raw forwarding only).
    mid_event: bool,
    first_token: Option<Instant>,
    status: u16,
    finish: Option<(Side, Arc<Gateway>)>,
    /// The variant speaks the other API: each event goes to the client translated.
    translate: Option<Box<StreamTranslator>>,
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
        let limits = gw.config.upstream_limits;
        Self {
            upstream: Box::pin(response.bytes_stream()),
            reader: StreamReader::with_assembler(assembler, limits),
            strip_usage,
            pending: VecDeque::new(),
            mid_event: false,
            first_token: None,
            status,
            finish: Some((side, gw)),
            translate: None,
        }
    }

    /// Forwards every event translated by `translator` (into the client's API) instead of
    /// the upstream's bytes.
    pub fn translating(mut self, translator: StreamTranslator) -> Self {
        self.translate = Some(Box::new(translator));
        self
    }

    /// Ends the side now with `error` (e.g. the mirror's own timeout fired).
    pub fn abort(&mut self, error: ErrorClass, detail: &str) {
        self.finish_with(Some((error, detail.to_owned())));
    }

    fn finish_with(&mut self, error: Option<(ErrorClass, String)>) {
        let Some((side, gw)) = self.finish.take() else {
            return;
        };
        let assembler = self.reader.assembler();
        let error = error.or_else(|| {
            if self.reader.malformed() {
                Some((
                    ErrorClass::Malformed,
                    "stream held data that is not JSON".to_owned(),
                ))
            } else if let Some(e) = assembler.stream_error() {
                // The provider ended its stream with an error of its own (e.g. overloaded).
                Some((ErrorClass::Upstream5xx, e.to_owned()))
            } else if !assembler.complete() {
                Some((
                    ErrorClass::Truncated,
                    format!("stream ended without {}", assembler.end_marker()),
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
            usage: assembler.usage(),
            finish_reason: assembler.finish_reason(),
            text: Some(assembler.text().to_owned()),
            // The capture policy would not keep a body over its cap: do not build it.
            response_body: (side.ctx.keep_bodies
                && self.reader.received() <= gw.capture_policy().max_body_bytes)
                .then(|| assembler.to_response_bytes()),
            response_len: self.reader.received(),
            response_model: assembler.model().map(str::to_owned),
            response_id: assembler.id().map(str::to_owned),
        };
        side.finish(&gw, outcome);
    }

    /// Feeds `chunk` to the reader; queues what the client should receive.
    fn absorb(&mut self, chunk: Bytes) {
        let events = match self.reader.push(chunk.clone()) {
            Ok(events) => events,
            Err(e) => return self.refuse(&e),
        };
        for (event, kind) in events {
            if self.first_token.is_none() && self.reader.assembler().has_token() {
                self.first_token = Some(Instant::now());
            }
            if let Some(t) = self.translate.as_mut() {
                if let Some(data) = event_data(&event) {
                    self.pending.extend(t.event(&data));
                }
                continue;
            }
            // Withholding the usage-only chunk: forward the other events whole.
            if self.strip_usage && kind != EventKind::UsageOnly {
                self.pending.push_back(event);
            }
        }
        // Translated frames and events without the usage-only chunk are whole events, already
        // queued: nothing is forwarded in part.
        if self.translate.is_none() && !self.strip_usage {
            // Forward the bytes exactly as they came, partial events included.
            self.pending.push_back(chunk);
            self.mid_event = self.reader.pending_len() > 0;
        }
    }

    /// The upstream broke a bound: the side ends as an invalid response and the client's
    /// stream ends with an error event in its API's shape (after a blank line that closes any
    /// event forwarded in part): an OpenAI error object, a Responses `error` event, an
    /// Anthropic `error` event.
    fn refuse(&mut self, e: &LimitError) {
        let detail = e.to_string();
        self.finish_with(Some((ErrorClass::InvalidResponse, detail)));
        let (message, code) = (
            ApiError::BadUpstream.to_string(),
            "upstream_invalid_response",
        );
        let event = match &self.translate {
            Some(t) => t.error_event(&message, code),
            None => self.reader.assembler().error_event(&message, code),
        };
        if self.mid_event {
            self.pending.push_back(Bytes::from_static(b"\n\n"));
        }
        self.pending.push_back(event);
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
                    if let Some(rest) = self.strip_usage.then(|| self.reader.finish()).flatten() {
                        self.pending.push_back(rest);
                    }
                    if let Some(t) = self.translate.as_mut() {
                        let end = t.finish();
                        self.pending.extend(end);
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
