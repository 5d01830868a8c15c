//! `config`: the YAML config file → a validated, typed [`Config`].
//!
//! Owns: parsing (`raw`), validation (`validate`) and the validated types below. Every problem
//! in a file is reported at once, each naming the file and the field (`deployments[0].stable.provider`).
//! Never: touches the network. Fails closed: a config with any problem is not used.

pub mod admin;
mod judge;
mod limits;
mod raw;
mod rollout;
mod secret;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::vocab::{ConfigError, Mode, Problem, UnitSource};
pub use admin::{AdminConfig, JwtConfig};
pub use judge::{JudgeConfig, RawJudge, default_rubrics_dir};
pub use limits::{RawServer, RawUpstreamLimits, ServerLimits, UpstreamLimits};
pub use raw::{ProviderApi, RawConfig};
pub use rollout::{
    AlertFormat, AlertTarget, CanaryGuards, ControllerSettings, RawAlerts, RawController,
    RolloutSettings,
};

/// What the command loading a config needs from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Everything: a provider's `api_key_env` must name a set variable (`serve`, `demo`,
    /// `replay`).
    Full,
    /// The store and the rollout settings: provider API keys are read when set but not
    /// required (`rollout`, `report`, `keys`, `migrate`). Every other secret is still required.
    Store,
}

/// The validated configuration. Its `Debug` output redacts every secret.
#[derive(Clone)]
pub struct Config {
    /// The file this was loaded from (for messages).
    pub source: PathBuf,
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub providers: BTreeMap<String, Provider>,
    pub prices: BTreeMap<String, Price>,
    /// Provider for models that are no deployment; `None` answers them 404 `model_not_found`.
    pub default_provider: Option<String>,
    pub tenant_header: Option<http::HeaderName>,
    /// Longest unit key or cohort label value accepted (`routing.max_key_bytes`).
    pub max_key_bytes: usize,
    /// Where unit keys come from, in order (`routing.unit_key_from`); a deployment may set its
    /// own.
    pub unit_key_from: Vec<UnitSource>,
    pub deployments: Vec<Deployment>,
    pub capture: CaptureConfig,
    /// Bounds on what an upstream may send (`upstream_limits:`).
    pub upstream_limits: UpstreamLimits,
    /// Bounds on what a client may hold (`server:`).
    pub server: ServerLimits,
    /// `sqlite://…` (default `sqlite://canarist.db`) or `postgres://…`.
    pub storage_url: String,
    /// How long observations and their bodies are kept (`storage.keep_*`).
    pub retention: Retention,
    /// The `judge:` section; `None` when absent (no judge workers).
    pub judge: Option<JudgeConfig>,
    /// The admin API (`admin:`).
    pub admin: AdminConfig,
    /// `metrics:`.
    pub metrics: MetricsConfig,
    /// Deployment slug → its ramp, gate, guardrails and alerts (only deployments with a `ramp`).
    pub rollouts: BTreeMap<String, RolloutSettings>,
    /// Deployment slug → guardrails and alerts of a deployment without a `ramp` (they watch
    /// admin-API canaries).
    pub canary_guards: BTreeMap<String, CanaryGuards>,
    pub controller: ControllerSettings,
    /// `public_url`, without a trailing slash; `None`: alerts carry no links.
    pub public_url: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("source", &self.source)
            .field("listen", &self.listen)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("providers", &self.providers)
            .field("prices", &self.prices)
            .field("default_provider", &self.default_provider)
            .field("tenant_header", &self.tenant_header)
            .field("max_key_bytes", &self.max_key_bytes)
            .field("unit_key_from", &self.unit_key_from)
            .field("deployments", &self.deployments)
            .field("capture", &self.capture)
            .field("upstream_limits", &self.upstream_limits)
            .field("server", &self.server)
            .field("storage_url", &"<redacted>")
            .field("retention", &self.retention)
            .field("judge", &self.judge)
            .field("admin", &self.admin)
            .field("metrics", &self.metrics)
            .field("rollouts", &self.rollouts)
            .field("canary_guards", &self.canary_guards)
            .field("controller", &self.controller)
            .finish()
    }
}

/// The `metrics:` section.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `GET /metrics` needs a key of role `viewer` or above.
    pub require_key: bool,
}

/// `routing.max_key_bytes` when absent.
pub fn default_max_key_bytes() -> usize {
    256
}

/// An OpenAI-compatible upstream.
#[derive(Clone)]
pub struct Provider {
    pub name: String,
    /// Base URL without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The key, read from `api_key_env` at load time.
    pub api_key: Option<String>,
    pub api_key_env: Option<String>,
    /// Whether the client's own provider credentials are forwarded to this provider (it then
    /// has no key of its own). A canarist key is never forwarded.
    pub forward_client_auth: bool,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// The API it speaks (`api:`).
    pub api: ProviderApi,
    /// The `anthropic-version` sent to an `api: anthropic` provider when the client sends none.
    pub anthropic_version: String,
}

/// The `anthropic-version` an `api: anthropic` provider receives by default.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("forward_client_auth", &self.forward_client_auth)
            .field("api", &self.api)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// Prompt-cache writes and reads (default: the input price).
    pub cache_write_per_mtok: f64,
    pub cache_read_per_mtok: f64,
}

impl Price {
    /// A price with cache writes and reads at the input price.
    pub fn new(input_per_mtok: f64, output_per_mtok: f64) -> Self {
        Self {
            input_per_mtok,
            output_per_mtok,
            cache_write_per_mtok: input_per_mtok,
            cache_read_per_mtok: input_per_mtok,
        }
    }

    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (prompt_tokens as f64 * self.input_per_mtok
            + completion_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }

    /// The cost of a call's usage: uncached input at the input price, the `cache_write` and
    /// `cache_read` tokens (part of `prompt_tokens`) at theirs, output at the output price.
    pub fn cost_with_cache(
        &self,
        prompt_tokens: u64,
        completion_tokens: u64,
        (cache_write, cache_read): (u64, u64),
    ) -> f64 {
        let uncached = prompt_tokens.saturating_sub(cache_write.saturating_add(cache_read));
        (uncached as f64 * self.input_per_mtok
            + cache_write as f64 * self.cache_write_per_mtok
            + cache_read as f64 * self.cache_read_per_mtok
            + completion_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

/// A provider + model, with the request overrides that make it a distinct variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub name: String,
    pub provider: String,
    pub model: String,
    pub system_prompt: Option<String>,
    pub params: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub variant: Variant,
    /// Share of units in basis points of a percent: 0..=10000 (0.01% steps).
    pub buckets: u16,
}

#[derive(Debug, Clone)]
pub struct Deployment {
    pub slug: String,
    /// The `model` clients send.
    pub model: String,
    pub mode: Mode,
    pub stage: String,
    pub salt: String,
    pub stable: Variant,
    pub candidates: Vec<Candidate>,
    pub shadow_timeout: Duration,
    pub mirror_embeddings: bool,
    /// Basis points (0..=10000) of candidate-served requests also sent to stable.
    pub pair_sample_buckets: u16,
    /// Basis points (0..=10000) of stable-served, otherwise unpaired requests sent to stable a
    /// second time: the A/A arm ([`crate::capture::AA_VARIANT`]).
    pub aa_buckets: u16,
    pub fallback_to_stable: bool,
    pub spend_cap: SpendCap,
    pub cohorts: Cohorts,
    /// This deployment's `unit_key_from`; `None` follows `routing.unit_key_from`.
    pub unit_key_from: Option<Vec<UnitSource>>,
}

impl Deployment {
    /// The unit key sources of this deployment, in order: its own, else `global`.
    pub fn unit_key_order<'a>(&'a self, global: &'a [UnitSource]) -> &'a [UnitSource] {
        self.unit_key_from.as_deref().unwrap_or(global)
    }
}

/// Retention of captured data; `None` keeps it forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub observations: Option<Duration>,
    pub bodies: Option<Duration>,
    pub gate_history: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpendCap {
    pub tokens: Option<u64>,
    pub usd: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cohorts {
    pub labels: Vec<(String, LabelSource)>,
    pub rules: Vec<CohortRule>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LabelSource {
    Header(http::HeaderName),
    Metadata(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CohortRule {
    pub matches: Vec<(String, String)>,
    pub action: CohortAction,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CohortAction {
    /// Only requests matching some include rule may be in the canary.
    Include,
    /// Matching requests stay out of the canary while the candidate's share is below
    /// `until_buckets` (forever when `None`).
    Exclude { until_buckets: Option<u16> },
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    Memory,
    Jsonl(PathBuf),
    /// The `storage` database.
    Store,
}

#[derive(Debug, Clone)]
pub struct CaptureConfig {
    pub sink: SinkKind,
    pub queue_capacity: usize,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub body_sample_rate: f64,
    pub redact: Vec<regex::Regex>,
    pub max_body_bytes: usize,
    /// Write attempts per batch before it is spooled (`capture.write_attempts`).
    pub write_attempts: u32,
    /// First delay between write attempts and between spool replays (`capture.retry_backoff`).
    pub retry_backoff: Duration,
    /// `capture.spool`; `None` when turned off (`max_bytes: 0`).
    pub spool: Option<SpoolSettings>,
    /// `capture.row_sample_rate`.
    pub row_sample_rate: f64,
    /// `capture.error_rows_per_flush`.
    pub error_rows_per_flush: usize,
    /// `capture.max_aggregated_per_flush`.
    pub max_aggregated_per_flush: usize,
    /// `capture.aggregate_interval`.
    pub aggregate_interval: Duration,
}

/// Where the capture writer keeps batches while the store is unreachable (`capture.spool`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSettings {
    /// `capture.spool.path`, resolved against the config file's directory.
    pub dir: PathBuf,
    /// `capture.spool.max_bytes`.
    pub max_bytes: u64,
}

/// `capture.spool.path` when absent: `canarist-spool/` next to the config file.
pub fn default_spool_dir() -> PathBuf {
    PathBuf::from("canarist-spool")
}
/// `capture.spool.max_bytes` when absent: 256 MiB.
pub fn default_spool_max_bytes() -> u64 {
    256 * 1024 * 1024
}
/// `capture.write_attempts` when absent.
pub fn default_write_attempts() -> u32 {
    3
}
/// `capture.retry_backoff` when absent.
pub fn default_retry_backoff() -> Duration {
    Duration::from_millis(100)
}

pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
pub fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}
pub fn default_timeout() -> Duration {
    Duration::from_secs(600)
}
pub fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
pub fn default_read_timeout() -> Duration {
    Duration::from_secs(120)
}
pub fn default_shadow_timeout() -> Duration {
    Duration::from_secs(120)
}
pub fn default_storage_url() -> String {
    "sqlite://canarist.db".to_owned()
}
pub fn default_stage() -> String {
    "default".to_owned()
}
/// `routing.unit_key_from` when absent: `header`, `safety_identifier`, `user`,
/// `prompt_cache_key`, `metadata.user_id`, `tenant`.
pub fn default_unit_key_from() -> Vec<UnitSource> {
    UnitSource::DEFAULT_ORDER.to_vec()
}

impl Config {
    /// The guardrails watching `deployment`'s traffic, if any are configured (a rollout's, or
    /// a ramp-less deployment's for its admin-API canaries).
    pub fn guardrails_of(&self, deployment: &str) -> Option<&crate::gate::GuardrailConfig> {
        match self.rollouts.get(deployment) {
            Some(r) => r.guardrails.as_ref(),
            None => self.canary_guards.get(deployment)?.guardrails.as_ref(),
        }
    }

    /// Where `deployment`'s alerts go, if anywhere.
    pub fn alerts_of(&self, deployment: &str) -> Option<&AlertTarget> {
        match self.rollouts.get(deployment) {
            Some(r) => r.alerts.as_ref(),
            None => self.canary_guards.get(deployment)?.alerts.as_ref(),
        }
    }

    /// Reads and validates `path`, reading secrets from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with(path, LoadMode::Full)
    }

    /// Reads and validates `path` for a command that needs only what `mode` says.
    pub fn load_with(path: &Path, mode: LoadMode) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::single(path, "", e))?;
        Self::from_yaml_with(path, &text, &|name| std::env::var(name).ok(), mode)
    }

    /// Validates `text` as if read from `path`; `env` looks up environment variables.
    pub fn from_yaml(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Self::from_yaml_with(path, text, env, LoadMode::Full)
    }

    /// [`Config::from_yaml`] for a command that needs only what `mode` says.
    pub fn from_yaml_with(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
        mode: LoadMode,
    ) -> Result<Config, ConfigError> {
        let raw = validate::parse(path, text)?;
        validate::validate(path, raw, env, mode)
    }

    pub fn deployment(&self, slug: &str) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.slug == slug)
    }

    pub fn price(&self, model: &str) -> Option<Price> {
        self.prices.get(model).copied()
    }
}

#[cfg(test)]
mod tests;
