//! `canarist serve`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The config file (YAML).
    #[arg(long, short, default_value = "canarist.yaml", env = "CANARIST_CONFIG")]
    pub config: PathBuf,
    /// Listen address; overrides `listen` in the config.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

pub async fn run(_args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not wired yet")
}
