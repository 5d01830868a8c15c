//! `mock`: canarist's own OpenAI-compatible upstream (chat completions, completions,
//! embeddings, the Responses API) that also speaks Anthropic's Messages API, for the integration
//! tests, the load bench and the demo (`canarist mock-upstream` is `cli::mock`).
//!
//! Named models with profiles (`fixtures/mock/profiles.yaml`: latency, time to first token,
//! inter-chunk delay, injected errors, truncated and malformed streams, hangs) answer prompts
//! from a dataset (`fixtures/datasets/support.jsonl`) with a good or a degraded answer, so that
//! a better and a worse model can be simulated reproducibly from a seed (what exactly is
//! deterministic is documented in [`answer`]).
//!
//! Layout: `config` (profiles YAML → [`MockConfig`]), `dataset` (JSONL answers), `answer`
//! (pure decisions), `wire` (OpenAI JSON shapes), `wire_apis` (the Responses and Anthropic
//! Messages shapes and typed events), `handlers` (routes and SSE), `apis` (the Responses API's
//! `/v1/responses` and Anthropic's `/v1/messages` and `/v1/messages/count_tokens`), `server`
//! (state, request log, [`MockServer`]), `judge` (a *simulated* LLM judge for models with
//! `judge: true`, e.g. `mock-judge`: it reads canarist's judge prompt and scores the dataset's
//! good answers high and degraded ones low; it is not a language model), `tools` (profiles with
//! `tool_calls: true` call a tool the request declares, with arguments built from its schema,
//! broken in degraded answers).
//!
//! Owns: everything the mock does. Never: logs per request or does per-request file I/O (the
//! load bench sends it 1,000+ requests/s). Fails closed: a bad profiles or dataset file stops
//! it from starting, with the file, line and field named.

pub mod answer;
mod apis;
mod config;
mod dataset;
mod handlers;
pub mod judge;
mod server;
pub mod tools;
pub mod wire;
pub mod wire_apis;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use config::{CohortRate, ErrorStatus, Latency, MockConfig, MockError, Profile};
pub use dataset::{Dataset, DatasetEntry};
pub use handlers::router;
pub use server::{MockServer, MockState, RecordedRequest, serve};

/// Default profiles file, relative to the working directory.
pub const DEFAULT_PROFILES: &str = "fixtures/mock/profiles.yaml";
/// Default dataset file, relative to the working directory.
pub const DEFAULT_DATASET: &str = "fixtures/datasets/support.jsonl";

#[derive(Debug, clap::Args)]
pub struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub listen: SocketAddr,
    /// Profiles YAML [default: fixtures/mock/profiles.yaml if present, else the built-in copy].
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    /// Dataset JSONL [default: fixtures/datasets/support.jsonl if present, else the built-in copy].
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Seed of every random draw (answers, latencies, faults).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Loads the configuration `args` describe. A path given explicitly must exist; a default that
/// is absent falls back to the copy compiled into the binary.
pub fn load_config(args: &MockArgs) -> Result<MockConfig, MockError> {
    let dataset = match pick(args.dataset.as_deref(), DEFAULT_DATASET) {
        Some(path) => Dataset::load(&path)?,
        None => Dataset::builtin()?,
    };
    let config = match pick(args.profiles.as_deref(), DEFAULT_PROFILES) {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|source| MockError::Read {
                path: path.clone(),
                source,
            })?;
            MockConfig::from_parts(&path.display().to_string(), &text, dataset)?
        }
        None => MockConfig::from_parts(
            "<builtin>/fixtures/mock/profiles.yaml",
            config::BUILTIN_PROFILES,
            dataset,
        )?,
    };
    Ok(config.with_seed(args.seed).with_listen(args.listen))
}

fn pick(explicit: Option<&Path>, default: &str) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from(default)).filter(|p| p.is_file()),
    }
}
