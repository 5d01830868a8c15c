//! `store`: durable storage with sqlx (SQLite by default, Postgres for several replicas).
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {}

pub async fn run_migrate(_args: MigrateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
