//! What one request may hold (`server:`): a place among `server.max_requests_in_flight`,
//! kept until its response body ends (a stream included), and `server.body_read_timeout` to send
//! its whole body. Connections and header reads are bounded where they are accepted
//! ([`super::server`]).
//!
//! Fails closed: beyond the in-flight bound a request gets 503 with `Retry-After` and an
//! OpenAI-shaped body before anything reads it; a body not read in time ends with
//! [`BodyReadTimeout`], which the handlers answer with 408. `/metrics` and `/healthz` hold no
//! place, so that a saturated gateway can still be watched.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use super::AppState;

/// Seconds a shed request is told to wait.
const RETRY_AFTER_SECS: u64 = 1;

/// A request body was not read within `server.body_read_timeout`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body was not received within {0:?}")]
pub struct BodyReadTimeout(pub std::time::Duration);

impl BodyReadTimeout {
    /// The timeout somewhere in `error`'s source chain, if that is what ended a body read.
    pub fn find(error: &(dyn std::error::Error + 'static)) -> Option<BodyReadTimeout> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(t) = e.downcast_ref::<BodyReadTimeout>() {
                return Some(*t);
            }
            next = e.source();
        }
        None
    }
}

/// The places for requests in flight.
#[derive(Debug, Clone)]
pub struct InFlight(Arc<Semaphore>);

impl InFlight {
    pub fn new(max: usize) -> Self {
        Self(Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))))
    }
}

/// Middleware on every route: takes an in-flight place (or sheds the request) and puts the
/// body-read deadline on the request body.
pub async fn bound_request(State(gw): State<AppState>, request: Request, next: Next) -> Response {
    let timeout = gw.config.server.body_read_timeout;
    let request = request.map(|body| Body::new(Deadline::new(body, timeout)));
    if matches!(request.uri().path(), "/metrics" | "/healthz") {
        return next.run(request).await;
    }
    let Ok(place) = gw.in_flight.0.clone().try_acquire_owned() else {
        gw.metrics.http.requests_shed.inc();
        return overloaded(gw.config.server.max_requests_in_flight);
    };
    let (parts, body) = next.run(request).await.into_parts();
    // The place is given back when the response body is done with (ended or dropped).
    let body = Held {
        inner: body,
        _place: place,
    };
    Response::from_parts(parts, Body::new(body))
}

fn overloaded(max: usize) -> Response {
    let body = super::error_body(
        &format!(
            "The gateway is answering its limit of {max} requests at once; retry after \
             {RETRY_AFTER_SECS} s."
        ),
        "server_error",
        None,
        Some("overloaded"),
    );
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

/// A response body that holds an in-flight place until it is dropped.
struct Held {
    inner: Body,
    _place: OwnedSemaphorePermit,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails with [`BodyReadTimeout`] once its deadline passes (the whole
/// body, however it trickles in; not the silence between chunks).
struct Deadline {
    inner: Body,
    sleep: Pin<Box<Sleep>>,
    timeout: std::time::Duration,
}

impl Deadline {
    fn new(inner: Body, timeout: std::time::Duration) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Some(Err(axum::Error::new(BodyReadTimeout(self.timeout)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
