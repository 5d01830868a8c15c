//! `mock`: canarist's own OpenAI-compatible test server, driven by files in `fixtures/`.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct MockArgs {}

pub async fn run(_args: MockArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
