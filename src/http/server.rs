//! Starting and stopping the gateway: the listener, the capture writer, graceful shutdown that
//! drains background calls and captured events.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::capture::{Capture, Sink, WriterConfig};
use crate::config::Config;

use super::{AppState, Gateway, router};

/// A running gateway.
pub struct Server {
    addr: SocketAddr,
    gateway: AppState,
    shutdown: CancellationToken,
    serve_task: tokio::task::JoinHandle<std::io::Result<()>>,
    capture_cancel: CancellationToken,
    writer_tasks: TaskTracker,
}

impl Server {
    /// Binds `listen` (port 0 picks a free port) and starts serving `config`, capturing into `sink`.
    pub async fn start(
        config: Config,
        listen: SocketAddr,
        sink: Arc<dyn Sink>,
    ) -> anyhow::Result<Self> {
        Self::start_with_store(config, listen, sink, None).await
    }

    /// Like [`Server::start`], with a database: the traffic state is read from it at start and
    /// re-read whenever its config version changes (a `NOTIFY` on Postgres, a poll every second
    /// in any case), so a change made by any replica is in force here within a second.
    pub async fn start_with_store(
        config: Config,
        listen: SocketAddr,
        sink: Arc<dyn Sink>,
        store: Option<crate::store::Store>,
    ) -> anyhow::Result<Self> {
        let writer_tasks = TaskTracker::new();
        let capture_cancel = CancellationToken::new();
        let writer = WriterConfig {
            queue_capacity: config.capture.queue_capacity,
            batch_size: config.capture.batch_size,
            flush_interval: config.capture.flush_interval,
            ..WriterConfig::default()
        };
        let capture = Capture::start(sink, writer, &writer_tasks, capture_cancel.clone());
        let gateway = Arc::new(Gateway::new(
            config,
            capture,
            TaskTracker::new(),
            store.clone(),
        )?);
        if let Some(store) = store {
            gateway.reload_traffic().await?;
            let mut watcher =
                crate::store::ConfigWatcher::new(&store, Duration::from_secs(1)).await?;
            let gw = gateway.clone();
            let stop = capture_cancel.clone();
            writer_tasks.spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        version = watcher.changed() => {
                            match gw.reload_traffic().await {
                                Ok(_) => tracing::info!(version, "traffic config reloaded"),
                                Err(error) => tracing::warn!(%error, "traffic config reload failed; keeping the current one"),
                            }
                        }
                    }
                }
            });
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr()?;
        // Small SSE writes must leave at once, not wait for the previous segment's ACK.
        let listener =
            axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
                if let Err(error) = tcp.set_nodelay(true) {
                    tracing::debug!(%error, "cannot set TCP_NODELAY");
                }
            });
        let shutdown = CancellationToken::new();
        let app = router(gateway.clone());
        let stop = shutdown.clone();
        let serve_task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        Ok(Self {
            addr,
            gateway,
            shutdown,
            serve_task,
            capture_cancel,
            writer_tasks,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn gateway(&self) -> &AppState {
        &self.gateway
    }

    /// Waits until the server stops on its own (it only does on error).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.serve_task).await??;
        Ok(())
    }

    /// Stops accepting requests, lets in-flight requests and background calls finish (up to
    /// `grace`), then flushes captured events.
    pub async fn shutdown(self, grace: Duration) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(grace, self.serve_task).await;
        self.gateway.tasks.close();
        if tokio::time::timeout(grace, self.gateway.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background calls still running at shutdown; their captures are lost");
        }
        self.capture_cancel.cancel();
        self.writer_tasks.close();
        let _ = tokio::time::timeout(grace, self.writer_tasks.wait()).await;
    }
}
