//! `canarist serve`: run the gateway until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use tokio::net::TcpListener;

use crate::app::Runtime;
use crate::config::Config;

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
    let deployments = config.deployments.len();
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let mut runtime = Runtime::start(config, listener).await?;
    tracing::info!(addr = %runtime.addr(), deployments, "canarist gateway listening");
    println!("canarist listening on {}", runtime.url());
    tokio::select! {
        result = runtime.wait() => result?,
        () = crate::app::shutdown_signal() => {
            tracing::info!("shutting down");
            runtime.shutdown().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}
