//! `canarist serve`: run the gateway until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::capture::{JsonlSink, MemorySink, Sink};
use crate::config::{Config, SinkKind};
use crate::http::Server;
use crate::judge::{Checker, CheckingSink};
use crate::store::{Store, StoreSink, redact_url};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The config file (YAML).
    #[arg(long, short, default_value = "canarist.yaml", env = "CANARIST_CONFIG")]
    pub config: PathBuf,
    /// Listen address; overrides `listen` in the config.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Also run the built-in mock upstream (as `canarist mock-upstream` would) on this address,
    /// so that the quickstart needs one command.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9090")]
    pub with_mock_upstream: Option<std::net::SocketAddr>,
}

/// The sink the config asks for; the store sink runs the rubrics' checks when there are any.
pub fn sink_for(config: &Config, store: &Store, checker: Option<&Arc<Checker>>) -> Arc<dyn Sink> {
    match (&config.capture.sink, checker) {
        (SinkKind::Memory, _) => Arc::new(MemorySink::new()),
        (SinkKind::Jsonl(path), _) => Arc::new(JsonlSink::new(path)),
        (SinkKind::Store, Some(checker)) => {
            Arc::new(CheckingSink::new(store.clone(), checker.clone()))
        }
        (SinkKind::Store, None) => Arc::new(StoreSink::new(store.clone())),
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let listen = args.listen.unwrap_or(config.listen);
    let _mock = match args.with_mock_upstream {
        None => None,
        Some(addr) => {
            let mock = crate::mock::MockConfig::builtin()?.with_listen(addr);
            let server = crate::mock::MockServer::start_on(mock)
                .await
                .map_err(|e| anyhow::anyhow!("cannot start the mock upstream on {addr}: {e}"))?;
            println!("mock upstream listening on {}", server.base_url());
            Some(server)
        }
    };
    let store = Store::connect(&config.storage_url).await.map_err(|e| {
        anyhow::anyhow!(
            "{}: storage.url {}: {e}",
            config.source.display(),
            redact_url(&config.storage_url)
        )
    })?;
    let judge_setup = crate::judge::prepare(config.judge.as_ref())?;
    let sink = sink_for(&config, &store, judge_setup.as_ref().map(|j| &j.checker));
    let deployments = config.deployments.len();
    let prices = config.prices.clone();
    let mut server = Server::start_with_store(config, listen, sink, Some(store.clone())).await?;
    let background = tokio_util::task::TaskTracker::new();
    let stop_background = tokio_util::sync::CancellationToken::new();
    let retention = server.gateway().config.retention;
    if retention.observations.is_some() || retention.bodies.is_some() {
        store.spawn_retention(
            crate::store::RetentionPolicy {
                observations: retention.observations,
                bodies: retention.bodies,
                interval: Duration::from_secs(600),
            },
            &background,
            stop_background.clone(),
        );
    }
    let rollouts =
        crate::rollout::controller::start_with_gateway(store.clone(), server.gateway().clone());
    let judge = judge_setup
        .map(|setup| setup.start(&prices, &store, &server.gateway().metrics))
        .transpose()?;
    if let Some(judge) = &judge {
        // Hard checks that fail on the candidate where stable passed feed the guardrails.
        let outcomes = rollouts.outcomes.clone();
        judge
            .checker
            .on_hard_failure(crate::judge::HardFailureHook(std::sync::Arc::new(
                move |deployment, stage| outcomes.hard_failure(deployment, stage),
            )));
    }
    tracing::info!(addr = %server.addr(), deployments, "canarist gateway listening");
    println!("canarist listening on {}", server.url());
    tokio::select! {
        result = server.wait() => result?,
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            rollouts.stop().await;
            stop_background.cancel();
            background.close();
            server.shutdown(Duration::from_secs(30)).await;
            if let Some(judge) = judge {
                judge.shutdown().await;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn shutdown_signal() {
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
