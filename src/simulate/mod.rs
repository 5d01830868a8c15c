//! placeholder
use std::process::ExitCode;
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {}
pub async fn run_simulate(_args: SimulateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
