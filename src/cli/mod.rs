//! `cli`: the `canarist` command line. Each subcommand's arguments and body live with the module
//! that owns the work; this file only wires them together and sets up logging.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub(crate) mod completions;
pub(crate) mod config;
pub mod replay;
pub(crate) mod serve;

pub use serve::ServeArgs;

/// canarist: an OpenAI-compatible LLM gateway that makes model and prompt rollouts safe.
#[derive(Debug, Parser)]
#[command(name = "canarist", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the whole product in one process: mock upstream, gateway, judge, traffic and a
    /// live rollout that is promoted or rolled back, then the reports.
    Demo(crate::demo::DemoArgs),
    /// Run the gateway.
    Serve(ServeArgs),
    /// Run the built-in OpenAI-compatible mock upstream (for tests, benches and the demo).
    MockUpstream(crate::mock::MockArgs),
    /// Run the database migrations and exit.
    Migrate(crate::store::MigrateArgs),
    /// Work with rubric files.
    #[command(subcommand)]
    Rubric(crate::rubric::RubricCommand),
    /// Run the gate on synthetic traffic, many times, and print its error rates.
    Simulate(crate::simulate::SimulateArgs),
    /// Offline pre-flight: send a golden dataset to stable and candidate, judge, summarise.
    Replay(replay::ReplayArgs),
    /// Create, list or revoke admin API keys.
    Keys(crate::http::admin::keys::KeysArgs),
    /// Start, inspect, promote, roll back, pause or resume a deployment's rollout.
    Rollout(crate::rollout::cli::RolloutArgs),
    /// Write per-stage quality reports of a deployment's rollout (HTML, Markdown or JSON).
    Report(crate::report::ReportArgs),
    /// Validate a config file (and its rubrics), or print the config's JSON Schema.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff).
    Man,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Flushes exported spans when main returns. The demo's own display is its output: only
    // warnings are logged unless CANARIST_LOG says otherwise.
    let default_level = if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    let _tracing = crate::telemetry::traces::init_with(default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::MockUpstream(args) => crate::mock::run(args).await,
        Command::Migrate(args) => crate::store::run_migrate(args).await,
        Command::Rubric(cmd) => crate::rubric::run(cmd).await,
        Command::Simulate(args) => crate::simulate::run_simulate(args).await,
        Command::Replay(args) => replay::run(args).await,
        Command::Keys(args) => crate::http::admin::keys::run(args).await,
        Command::Rollout(args) => crate::rollout::cli::run(args).await,
        Command::Report(args) => crate::report::run(args).await,
        Command::Config(cmd) => config::run(cmd).await,
        Command::Completions(args) => completions::completions(&args),
        Command::Man => completions::man(),
    }
}
