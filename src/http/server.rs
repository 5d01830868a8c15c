//! Serving the gateway on a listener the caller bound, and draining its background calls.
//! `app::Runtime` starts and stops it with the rest of the services.

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{AppState, router};

/// Serves the gateway's routes on `listener` in a task on `tracker` until `cancel`; in-flight
/// requests then finish (graceful shutdown). The handle ends when serving ends.
pub fn serve(
    listener: TcpListener,
    gateway: AppState,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> JoinHandle<std::io::Result<()>> {
    // Small SSE writes must leave at once, not wait for the previous segment's ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    let app = router(gateway);
    tracker.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await
    })
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
