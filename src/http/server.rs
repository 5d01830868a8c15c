//! Serving the gateway on a listener the caller bound, and draining its background calls.
//! `app::Runtime` starts and stops it with the rest of the services.
//!
//! Owns the connection bounds of `server:`: at most `server.max_connections` open connections
//! (one beyond is closed as soon as it is accepted, and counted), and
//! `server.header_read_timeout` for a request's headers — hyper's HTTP/1.1 timer, which also
//! closes a keep-alive connection idle that long. HTTP/1.1 only: the bytes that would tell
//! HTTP/2 apart are not read under any timer. Fails closed: a connection that does not finish
//! its headers in time is closed without an answer.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{AppState, router};
use crate::config::ServerLimits;

/// How long accepting pauses after an error that is not one connection's (e.g. out of file
/// descriptors).
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Serves the gateway's routes on `listener` in a task on `tracker` until `cancel`; in-flight
/// requests then finish (graceful shutdown: every connection task runs on `tracker`). The
/// handle ends when accepting ends.
pub fn serve(
    listener: TcpListener,
    gateway: AppState,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> JoinHandle<std::io::Result<()>> {
    let server = Server {
        app: router(gateway.clone()),
        limits: gateway.config.server,
        places: Arc::new(Semaphore::new(
            gateway
                .config
                .server
                .max_connections
                .min(Semaphore::MAX_PERMITS),
        )),
        gateway,
        tracker: tracker.clone(),
        cancel,
    };
    tracker.spawn(server.accept(listener))
}

struct Server {
    app: Router,
    limits: ServerLimits,
    /// One permit per open connection.
    places: Arc<Semaphore>,
    gateway: AppState,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Server {
    async fn accept(self, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = self.cancel.cancelled() => return Ok(()),
            };
            let (tcp, remote) = match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Ok(place) = self.places.clone().try_acquire_owned() else {
                self.gateway.metrics.http.connections_refused.inc();
                tracing::debug!(%remote, "connection closed: server.max_connections are open");
                drop(tcp);
                continue;
            };
            // Small SSE writes must leave at once, not wait for the previous segment's ACK.
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY");
            }
            self.tracker.spawn(connection(
                tcp,
                remote,
                self.app.clone(),
                self.limits,
                place,
                self.cancel.clone(),
            ));
        }
    }
}

/// Serves one connection until it ends, or until `cancel` (then its in-flight requests finish).
async fn connection(
    tcp: TcpStream,
    remote: SocketAddr,
    app: Router,
    limits: ServerLimits,
    _place: OwnedSemaphorePermit,
    cancel: CancellationToken,
) {
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            let mut app = app.clone();
            async move { tower::Service::call(&mut app, request).await }
        });
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(tcp), service);
    let mut conn = std::pin::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::trace!(%remote, %error, "connection ended with an error");
                }
                return;
            }
            () = cancel.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Lets the gateway's background calls (mirrors) finish, up to `grace`.
pub async fn drain_background(gateway: &AppState, grace: std::time::Duration) {
    gateway.tasks.close();
    if tokio::time::timeout(grace, gateway.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("background calls still running at shutdown; their captures are lost");
    }
}
