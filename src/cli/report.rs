//! `canarist report`: builds stage reports from the store named in the config and writes one
//! file per stage into `--out`, printing each path.
//!
//! The deployment's `gate` and `ramp` come from the config; `--gate` (a gate policy YAML, as
//! `gate::GatePolicy`) and `--ramp` (a ramp YAML, `stages: [...]`) override them: the policy sets the interval α and lets a stage without a
//! recorded decision be re-evaluated; the ramp gives configured percentages and the stage
//! minimums. Glue only (anyhow); fails on the first error, naming the file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::{Config, ConfigError, LoadMode};
use crate::gate::GatePolicy;
use crate::report::{
    BuildOptions, Models, ReportError, StageReport, build_all, build_with, file_name, to_html,
    to_json, to_markdown,
};
use crate::rollout::Ramp;
use crate::store::{Store, StoreOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Html,
    Md,
    Json,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Md => "md",
            Format::Json => "json",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The gateway config (its `storage.url` names the database).
    #[arg(long)]
    pub config: PathBuf,
    /// Deployment slug; the report covers its latest rollout.
    #[arg(long)]
    pub deployment: String,
    /// Stage index in the ramp (0 = first stage).
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    pub stage: Option<u32>,
    /// One report per stage of the rollout.
    #[arg(long)]
    pub all: bool,
    #[arg(long, value_enum, default_value = "html")]
    pub format: Format,
    /// Directory to write into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Gate policy YAML (metrics, margins, α); default: the deployment's `gate` in the config.
    #[arg(long)]
    pub gate: Option<PathBuf>,
    /// Ramp YAML (`stages: [...]`); default: the deployment's `ramp` in the config.
    #[arg(long)]
    pub ramp: Option<PathBuf>,
    /// How many worst candidate answers to include.
    #[arg(long, default_value_t = 5)]
    pub worst: u32,
}

/// The report rendered in `format`.
pub fn render(report: &StageReport, format: Format) -> Result<String, ReportError> {
    Ok(match format {
        Format::Html => to_html(report),
        Format::Md => to_markdown(report),
        Format::Json => to_json(report)?,
    })
}

/// Reads and validates a gate policy file, naming the file and field of every problem.
pub fn load_policy(path: &Path) -> Result<GatePolicy, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::single(path, "", e))?;
    let de = serde_yaml_ng::Deserializer::from_str(&text);
    let policy: GatePolicy = serde_path_to_error::deserialize(de)
        .map_err(|e| ConfigError::single(path, &format!("gate.{}", e.path()), e.inner()))?;
    let problems = policy.validate("gate");
    if problems.is_empty() {
        Ok(policy)
    } else {
        Err(ConfigError {
            file: path.to_path_buf(),
            problems,
        })
    }
}

pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load_with(&args.config, LoadMode::Store)?;
    // The deployment's own ramp and gate, unless `--ramp`/`--gate` override them.
    let settings = config.rollouts.get(&args.deployment);
    let policy = match args.gate.as_deref() {
        Some(path) => Some(load_policy(path)?),
        None => settings.and_then(|s| s.gate.clone()),
    };
    let ramp = match &args.ramp {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading ramp {}", p.display()))?;
            Some(Ramp::from_yaml(p, &text)?)
        }
        None => settings.map(|s| s.ramp.clone()),
    };
    let store = Store::connect_with(&config.storage_url, &StoreOptions::default()).await?;
    let opts = BuildOptions {
        policy,
        ramp,
        worst_limit: args.worst,
        models: config.deployment(&args.deployment).map(Models::of),
        links_base: config.public_url.clone(),
        ..BuildOptions::default()
    };
    let reports = match (args.stage, args.all) {
        (Some(stage), _) => vec![build_with(&store, &args.deployment, stage, &opts).await?],
        (None, _) => build_all(&store, &args.deployment, &opts).await?,
    };
    store.close().await;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for report in &reports {
        let path = args.out.join(file_name(report, args.format.extension()));
        std::fs::write(&path, render(report, args.format)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
