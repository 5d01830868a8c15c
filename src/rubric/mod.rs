//! `rubric`: rubric YAML files, validation, content hash, deterministic checks.
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum RubricCommand {
    /// Validate rubric files and compare them with the lock file.
    Check {},
}

pub async fn run(_cmd: RubricCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
