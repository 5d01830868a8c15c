//! `canarist config check|schema`: validate a config file (and the rubrics its judge reads)
//! without starting anything, and print the JSON Schema of the file for editors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::{Config, RawConfig};

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file and the rubrics it references; print every problem (exit 1 on any).
    Check(CheckArgs),
    /// Print the JSON Schema of the config file (the one shipped as docs/config.schema.json).
    Schema(SchemaArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The config file (YAML).
    #[arg(long, short, default_value = "canarist.yaml", env = "CANARIST_CONFIG")]
    pub config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Write the schema into this file instead of printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The JSON Schema of the config file, generated from the `Raw*` types, pretty-printed with a
/// trailing newline.
pub fn schema_json() -> anyhow::Result<String> {
    let schema = schemars::schema_for!(RawConfig);
    Ok(format!("{}\n", serde_json::to_string_pretty(&schema)?))
}

pub async fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Schema(args) => {
            let json = schema_json()?;
            match args.out {
                Some(path) => std::fs::write(&path, json)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{json}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Check(args) => Ok(check(&args)),
    }
}

/// Prints every problem of the config and of the rubrics its judge reads; 1 when there is any.
fn check(args: &CheckArgs) -> ExitCode {
    let mut problems = 0usize;
    let rubrics_dir = match Config::load(&args.config) {
        Ok(config) => config.judge.filter(|j| j.enabled).map(|j| j.rubrics_dir),
        Err(e) => {
            problems += e.problems.len();
            println!("{e}");
            // The rubrics are still checked when the rest of the file has problems.
            std::fs::read_to_string(&args.config)
                .ok()
                .and_then(|text| serde_yaml_ng::from_str::<RawConfig>(&text).ok())
                .and_then(|raw| raw.judge)
                .filter(|j| j.enabled != Some(false))
                .map(|j| {
                    j.rubrics_dir
                        .unwrap_or_else(crate::config::default_rubrics_dir)
                })
        }
    };
    let mut rubric_count = 0;
    if let Some(dir) = rubrics_dir.filter(|d| d.is_dir()) {
        match crate::rubric::load_dir(&dir) {
            Ok(rubrics) => rubric_count = rubrics.len(),
            Err(crate::rubric::RubricError::Invalid(list)) => {
                problems += list.len();
                for p in &list {
                    println!("{p}");
                }
                println!(
                    "{} problem(s) in the rubrics of {}",
                    list.len(),
                    dir.display()
                );
            }
            Err(e) => {
                problems += 1;
                println!("{e}");
            }
        }
    }
    if problems == 0 {
        println!(
            "ok: {} is valid ({rubric_count} rubric(s) checked)",
            args.config.display()
        );
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
