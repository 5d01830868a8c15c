//! `canarist migrate`: run the database migrations of `--database-url` (or of the config's
//! `storage.url`) and exit.

use std::process::ExitCode;

use crate::store::{Store, StoreOptions, redact_url};

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Database URL (`sqlite://canarist.db`, `postgres://…`).
    #[arg(long, env = "DATABASE_URL", conflicts_with = "config")]
    pub database_url: Option<String>,
    /// Read `storage.url` from this config file instead.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let url = match (args.database_url, args.config) {
        (Some(url), _) => url,
        (None, Some(path)) => {
            crate::config::Config::load_with(&path, crate::config::LoadMode::Store)?.storage_url
        }
        (None, None) => anyhow::bail!("give --database-url (or DATABASE_URL) or --config"),
    };
    let store = Store::connect_no_migrate(&url, &StoreOptions::default()).await?;
    store.migrate().await?;
    store.close().await;
    eprintln!("migrations applied to {}", redact_url(&url));
    Ok(ExitCode::SUCCESS)
}
