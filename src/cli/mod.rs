//! `cli`: the `canarist` command line — the subcommand glue, one file per subcommand (`demo/`
//! is the demo's folder). Each parses its arguments, calls the library's typed functions and
//! prints; this is the only place besides `main.rs` that uses `anyhow` (library modules return
//! `thiserror` errors that name the file, field or thing that failed). This file wires the
//! subcommands together and sets up logging.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub(crate) mod completions;
pub(crate) mod config;
pub mod demo;
pub(crate) mod keys;
pub(crate) mod migrate;
pub(crate) mod mock;
pub mod replay;
pub mod report;
pub(crate) mod rollout;
pub mod rubric;
pub(crate) mod serve;
pub(crate) mod simulate;

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
    Demo(demo::DemoArgs),
    /// Run the gateway.
    Serve(ServeArgs),
    /// Run the built-in OpenAI-compatible mock upstream (for tests, benches and the demo).
    MockUpstream(crate::mock::MockArgs),
    /// Run the database migrations and exit.
    Migrate(migrate::MigrateArgs),
    /// Work with rubric files.
    #[command(subcommand)]
    Rubric(rubric::RubricCommand),
    /// Run the gate on synthetic traffic, many times, and print its error rates.
    Simulate(crate::simulate::SimulateArgs),
    /// Offline pre-flight: send a golden dataset to stable and candidate, judge, summarise.
    Replay(replay::ReplayArgs),
    /// Create, list or revoke admin API keys.
    Keys(keys::KeysArgs),
    /// Start, inspect, promote, roll back, pause or resume a deployment's rollout.
    Rollout(rollout::RolloutArgs),
    /// Write per-stage quality reports of a deployment's rollout (HTML, Markdown or JSON).
    Report(report::ReportArgs),
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
        Command::Demo(args) => demo::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::MockUpstream(args) => mock::run(args).await,
        Command::Migrate(args) => migrate::run(args).await,
        Command::Rubric(cmd) => rubric::run(cmd).await,
        Command::Simulate(args) => simulate::run(args).await,
        Command::Replay(args) => replay::run(args).await,
        Command::Keys(args) => keys::run(args).await,
        Command::Rollout(args) => rollout::run(args).await,
        Command::Report(args) => report::run(args).await,
        Command::Config(cmd) => config::run(cmd).await,
        Command::Completions(args) => completions::completions(&args),
        Command::Man => completions::man(),
    }
}
