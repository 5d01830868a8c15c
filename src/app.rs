//! `app`: the one place the application is started and stopped. [`Runtime::start`] builds every
//! service once, in order — store, capture writer (with its sink), live traffic (reloaded from
//! the store, then following its config version), guardrails, judge workers, rollout
//! controller, retention, HTTP — and [`Runtime::shutdown`] stops them in the reverse order.
//! `canarist serve`, `canarist demo`, the integration tests and the benches all start the
//! gateway through it.
//!
//! Owns: the start and shutdown order and the wiring between services (who gets which handle:
//! the gateway and the judge's checker get the guardrails' sender at construction; the
//! guardrails, the controller and the admin API share one [`LiveTraffic`]). Every task runs on
//! a tracker with a cancellation token that shutdown drains. Never: binds the socket (the
//! caller does, so tests pass a `127.0.0.1:0` listener) or decides anything. Fails closed: a
//! service that does not start stops the start with an error naming it; the ones already
//! started are dropped (their tasks end with their tokens).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::capture::{Capture, JsonlSink, MemorySink, RowPolicy, Sink, SpoolConfig, WriterConfig};
use crate::config::{Config, SinkKind};
use crate::http::{AppState, Gateway, GatewayParts};
use crate::judge::{Checker, CheckingSink, HardFailureHook, JudgeRuntime};
use crate::rollout::LiveTraffic;
use crate::rollout::actions::RolloutCtx;
use crate::rollout::alerts::{AlertOptions, Alerts};
use crate::rollout::controller::{OUTCOME_QUEUE, RolloutRuntime};
use crate::rollout::guardrails;
use crate::store::{RetentionPolicy, Store, StoreError, StoreSink, redact_url};
use crate::telemetry::Metrics;

/// How often the live traffic re-reads the store's config version (besides `NOTIFY`).
const TRAFFIC_POLL: Duration = Duration::from_secs(1);
/// How often retention prunes.
const RETENTION_INTERVAL: Duration = Duration::from_secs(600);

/// Where the runtime's database comes from.
#[derive(Default)]
pub enum Storage {
    /// Connect to the config's `storage.url` (what `serve` and `demo` do); closed at shutdown.
    #[default]
    FromConfig,
    /// A store the caller connected (and closes).
    Use(Store),
    /// No database: a pure proxy (the config's traffic, no guardrails, judge, controller or
    /// retention). The sink must then not be the store's.
    Without,
}

/// What a caller may change about the start; [`Options::default`] is what `serve` runs.
pub struct Options {
    pub storage: Storage,
    /// Capture into this sink instead of the one `capture.sink` names.
    pub sink: Option<Arc<dyn Sink>>,
    /// Run the guardrails (with a store only).
    pub guardrails: bool,
    /// Run the rollout controller (with a store only).
    pub controller: bool,
    /// How long shutdown waits for in-flight requests, then for background calls.
    pub grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            storage: Storage::FromConfig,
            sink: None,
            guardrails: true,
            controller: true,
            grace: Duration::from_secs(30),
        }
    }
}

/// A service that did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{file}: storage.url {url}: {error}")]
    Store {
        file: String,
        /// The URL with its password redacted.
        url: String,
        error: StoreError,
    },
    #[error("the capture sink is the store's, but the runtime has no store")]
    SinkWithoutStore,
    #[error("reading the stored traffic: {0}")]
    Traffic(StoreError),
    #[error(transparent)]
    Judge(#[from] crate::judge::StartError),
    #[error("building the upstream clients: {0}")]
    Upstreams(#[from] reqwest::Error),
    #[error("the listener: {0}")]
    Listener(#[from] std::io::Error),
}

/// The sink the config asks for; the store sink runs the rubrics' checks when there are any.
pub fn sink_for(
    config: &Config,
    store: Option<&Store>,
    checker: Option<&Arc<Checker>>,
) -> Result<Arc<dyn Sink>, StartError> {
    Ok(match (&config.capture.sink, store, checker) {
        (SinkKind::Memory, _, _) => Arc::new(MemorySink::new()),
        (SinkKind::Jsonl(path), _, _) => Arc::new(JsonlSink::new(path)),
        (SinkKind::Store, None, _) => return Err(StartError::SinkWithoutStore),
        (SinkKind::Store, Some(store), Some(checker)) => {
            Arc::new(CheckingSink::new(store.clone(), checker.clone()))
        }
        (SinkKind::Store, Some(store), None) => Arc::new(StoreSink::new(store.clone())),
    })
}

/// Tasks on a tracker, stopped by their token.
struct Tracked {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Tracked {
    fn new() -> Self {
        Self {
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
        }
    }

    /// Cancels, then waits up to `grace` for the tasks to end.
    async fn stop(self, grace: Duration, what: &str) {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("{what} still running at shutdown");
        }
    }
}

/// The running application.
pub struct Runtime {
    addr: SocketAddr,
    gateway: AppState,
    store: Option<Store>,
    owns_store: bool,
    grace: Duration,
    capture: Tracked,
    traffic: Tracked,
    rollouts: Option<RolloutRuntime>,
    judge: Option<JudgeRuntime>,
    retention: Tracked,
    http: Tracked,
    serving: JoinHandle<std::io::Result<()>>,
}

impl Runtime {
    /// Starts everything `config` asks for, serving on `listener`, as `canarist serve` does.
    pub async fn start(config: Config, listener: TcpListener) -> Result<Runtime, StartError> {
        Self::start_with(config, listener, Options::default()).await
    }

    /// Like [`Runtime::start`], with `options`.
    pub async fn start_with(
        config: Config,
        listener: TcpListener,
        options: Options,
    ) -> Result<Runtime, StartError> {
        let config = Arc::new(config);
        let addr = listener.local_addr()?;

        // 1. The store.
        let (store, owns_store) = match options.storage {
            Storage::FromConfig => {
                let store = Store::connect(&config.storage_url).await.map_err(|error| {
                    StartError::Store {
                        file: config.source.display().to_string(),
                        url: redact_url(&config.storage_url),
                        error,
                    }
                })?;
                (Some(store), true)
            }
            Storage::Use(store) => (Some(store), false),
            Storage::Without => (None, false),
        };

        // The guardrails' channel exists before anything that reports into it is built.
        let (outcomes, signals) = match (&store, options.guardrails) {
            (Some(_), true) => {
                let (tx, rx) = guardrails::channel(OUTCOME_QUEUE);
                (Some(tx), Some(rx))
            }
            _ => (None, None),
        };
        let judge_setup = match &store {
            Some(_) => crate::judge::prepare(config.judge.as_ref())?,
            None => None,
        };
        if let (Some(setup), Some(tx)) = (&judge_setup, &outcomes) {
            // Hard checks that fail on the candidate where stable passed feed the guardrails.
            let tx = tx.clone();
            setup
                .checker
                .on_hard_failure(HardFailureHook(Arc::new(move |deployment, stage| {
                    tx.hard_failure(deployment, stage)
                })));
        }

        // 2. The capture writer and its sink.
        let sink = match options.sink {
            Some(sink) => sink,
            None => sink_for(
                &config,
                store.as_ref(),
                judge_setup.as_ref().map(|j| &j.checker),
            )?,
        };
        let capture_tasks = Tracked::new();
        let writer = WriterConfig {
            queue_capacity: config.capture.queue_capacity,
            batch_size: config.capture.batch_size,
            flush_interval: config.capture.flush_interval,
            max_attempts: config.capture.write_attempts,
            retry_backoff: config.capture.retry_backoff,
            spool: config.capture.spool.as_ref().map(|s| SpoolConfig {
                dir: s.dir.clone(),
                max_bytes: s.max_bytes,
            }),
            rows: RowPolicy {
                sample_rate: config.capture.row_sample_rate,
                error_rows_per_flush: config.capture.error_rows_per_flush,
            },
            max_counted: config.capture.max_aggregated_per_flush,
            aggregate_interval: config.capture.aggregate_interval,
        };
        let capture = Capture::start(
            sink,
            writer,
            &capture_tasks.tracker,
            capture_tasks.cancel.clone(),
        );
        let probe = capture.clone();
        let metrics = Metrics::new(Arc::new(move || probe.counts()));

        // 3. The live traffic: the stored states now, then every change of the config version.
        let observer = {
            let gauges = metrics.rollout.clone();
            let config = config.clone();
            Arc::new(move |t: &crate::routing::TrafficTable| {
                crate::rollout::metrics::observe_traffic(&gauges, t, &config)
            })
        };
        let traffic = LiveTraffic::new(config.clone(), store.clone(), observer);
        let traffic_tasks = Tracked::new();
        traffic.reload().await.map_err(StartError::Traffic)?;
        traffic
            .watch(
                TRAFFIC_POLL,
                &traffic_tasks.tracker,
                traffic_tasks.cancel.clone(),
            )
            .await
            .map_err(StartError::Traffic)?;

        // 4. The guardrails.
        let rollout_ctx = store.as_ref().map(|store| RolloutCtx {
            store: store.clone(),
            config: config.clone(),
            alerts: Alerts::spawn(AlertOptions::default()),
            traffic: Some(traffic.clone()),
        });
        let mut rollouts = rollout_ctx
            .filter(|_| signals.is_some() || options.controller)
            .map(|ctx| RolloutRuntime::start(ctx, Some(metrics.rollout.clone()), signals));

        // 5. The judge workers.
        let judge = match (judge_setup, &store) {
            (Some(setup), Some(store)) => Some(setup.start(&config.prices, store, &metrics)?),
            _ => None,
        };

        // 6. The rollout controller.
        if options.controller
            && let Some(rollouts) = &mut rollouts
        {
            rollouts.start_controller();
        }

        // 7. Retention.
        let retention = Tracked::new();
        let policy = config.retention;
        if let Some(store) = &store
            && (policy.observations.is_some()
                || policy.bodies.is_some()
                || policy.gate_history.is_some())
        {
            store.spawn_retention(
                RetentionPolicy {
                    observations: policy.observations,
                    bodies: policy.bodies,
                    gate_history: policy.gate_history,
                    interval: RETENTION_INTERVAL,
                },
                &retention.tracker,
                retention.cancel.clone(),
            );
        }

        // 8. HTTP.
        let gateway = Arc::new(Gateway::new(GatewayParts {
            config: config.clone(),
            capture,
            metrics,
            traffic,
            outcomes,
            store: store.clone(),
        })?);
        let http = Tracked::new();
        let serving = crate::http::serve(
            listener,
            gateway.clone(),
            &http.tracker,
            http.cancel.clone(),
        );
        Ok(Runtime {
            addr,
            gateway,
            store,
            owns_store,
            grace: options.grace,
            capture: capture_tasks,
            traffic: traffic_tasks,
            rollouts,
            judge,
            retention,
            http,
            serving,
        })
    }

    /// The address the gateway serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The gateway's shared state (config, live traffic, metrics, …).
    pub fn gateway(&self) -> &AppState {
        &self.gateway
    }

    /// The live traffic table every request reads.
    pub fn traffic(&self) -> &LiveTraffic {
        &self.gateway.traffic
    }

    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// The guardrails and the controller, when they run.
    pub fn rollouts(&self) -> Option<&RolloutRuntime> {
        self.rollouts.as_ref()
    }

    /// The judge workers, when they run.
    pub fn judge(&self) -> Option<&JudgeRuntime> {
        self.judge.as_ref()
    }

    /// Waits until serving stops on its own (it only does on error).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        match (&mut self.serving).await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join)),
        }
    }

    /// Stops everything in the reverse order of the start: HTTP (in-flight requests, then
    /// background calls, each up to the grace), retention, the controller, the judge workers,
    /// the guardrails (and queued alerts), the traffic watch, then the capture writer, which
    /// flushes what was captured. Closes the store if the runtime opened it.
    pub async fn shutdown(self) {
        let grace = self.grace;
        drop(self.serving);
        self.http.stop(grace, "the HTTP server").await;
        crate::http::drain_background(&self.gateway, grace).await;
        self.retention.stop(grace, "retention").await;
        let mut rollouts = self.rollouts;
        if let Some(r) = &mut rollouts {
            r.stop_controller().await;
        }
        if let Some(judge) = self.judge {
            judge.shutdown().await;
        }
        if let Some(r) = rollouts {
            r.stop().await;
        }
        self.traffic.stop(grace, "the traffic watch").await;
        self.capture.stop(grace, "the capture writer").await;
        if self.owns_store
            && let Some(store) = self.store
        {
            store.close().await;
        }
    }
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM: when `serve` and `demo` begin their shutdown.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
