//! `canarist keys`: create, list or revoke admin API keys in the configured database (glue over
//! `http::admin::keys::create_key` and the store).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::http::admin::Role;
use crate::http::admin::keys::create_key;
use crate::store::{NewAuditEntry, Store};

/// `canarist keys`: manage admin API keys in the configured database.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    /// The config file (its `storage.url` is used).
    #[arg(
        long,
        short,
        global = true,
        default_value = "canarist.yaml",
        env = "CANARIST_CONFIG"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (it is shown only once).
    Create {
        /// `viewer` (reads), `admin` (acts), `owner` (also manages keys) or `client` (proxy only).
        #[arg(long)]
        role: String,
        #[arg(long)]
        name: String,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by id.
    Revoke { id: uuid::Uuid },
}

pub async fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let config =
        match crate::config::Config::load_with(&args.config, crate::config::LoadMode::Store) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::from(2));
            }
        };
    let store = Store::connect(&config.storage_url).await?;
    let actor = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    let code = match args.command {
        KeysCommand::Create { role, name } => {
            let Some(role) = Role::parse(&role) else {
                eprintln!("--role: `{role}` is not one of viewer, admin, owner, client");
                return Ok(ExitCode::from(2));
            };
            let (key, record) = create_key(&store, &name, role, &actor).await?;
            eprintln!(
                "created key {} ({}, role {}); store it now, it is not shown again:",
                record.id,
                record.name,
                role.as_str()
            );
            println!("{key}");
            ExitCode::SUCCESS
        }
        KeysCommand::List => {
            for k in store.api_keys().await? {
                let state = match k.revoked_at {
                    Some(at) => format!("revoked {}", at.to_rfc3339()),
                    None => "active".to_owned(),
                };
                println!(
                    "{}\t{}\t{}\t{}\t{state}",
                    k.id,
                    k.role,
                    k.name,
                    k.created_at.to_rfc3339()
                );
            }
            ExitCode::SUCCESS
        }
        KeysCommand::Revoke { id } => {
            if store.revoke_api_key(id).await? {
                store
                    .record_audit(&NewAuditEntry {
                        deployment: None,
                        action: "key.revoke",
                        actor: &actor,
                        detail: serde_json::json!({"key_id": id}),
                    })
                    .await?;
                eprintln!("revoked {id}");
                ExitCode::SUCCESS
            } else {
                eprintln!("no active key with id {id}");
                ExitCode::FAILURE
            }
        }
    };
    store.close().await;
    Ok(code)
}
