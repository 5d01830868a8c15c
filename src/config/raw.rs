//! The config file as written: `Raw*` structs that serde fills in. Nothing here is validated;
//! [`super::load`] turns these into the types in [`super`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "canarist config",
    description = "The canarist gateway's config file (canarist.yaml)."
)]
pub struct RawConfig {
    #[serde(default)]
    pub listen: Option<String>,
    /// Largest request body accepted, in bytes.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    /// USD per million tokens, per upstream model name.
    #[serde(default)]
    pub prices: BTreeMap<String, RawPrice>,
    /// Provider that serves models that are no deployment; absent: such requests get 404.
    #[serde(default)]
    pub default_provider: Option<String>,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub deployments: Vec<RawDeployment>,
    #[serde(default)]
    pub capture: RawCapture,
    /// Bounds on what an upstream may send (`config::limits`).
    #[serde(default)]
    pub upstream_limits: Option<super::limits::RawUpstreamLimits>,
    /// Bounds on what a client may hold: header and body read time, connections, requests in
    /// flight (`config::limits`).
    #[serde(default)]
    pub server: Option<super::limits::RawServer>,
    #[serde(default)]
    pub storage: Option<RawStorage>,
    #[serde(default)]
    pub judge: Option<super::judge::RawJudge>,
    /// The admin API: rate limits, proxy client keys, JWT verification.
    #[serde(default)]
    pub admin: Option<super::admin::RawAdmin>,
    /// `GET /metrics`: whether it needs a key.
    #[serde(default)]
    pub metrics: Option<RawMetrics>,
    /// The rollout controller (`tick`); see `config::rollout`.
    #[serde(default)]
    pub controller: Option<super::rollout::RawController>,
    /// Where people reach this gateway (e.g. `https://canarist.example.com`): alerts link to
    /// its dashboard (`/ui#/deployments/…`) and stage reports.
    #[serde(default)]
    pub public_url: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub base_url: String,
    /// Name of the environment variable that holds the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Forward the client's own provider credentials (`Authorization`, `x-api-key`,
    /// `api-key`) to this provider, which has no key of its own. Off by default.
    #[serde(default)]
    pub forward_client_auth: bool,
    /// Whole-request timeout (e.g. `600s`).
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<std::time::Duration>,
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<std::time::Duration>,
    /// Longest silence between two reads of a response body (streams included).
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub read_timeout: Option<std::time::Duration>,
    /// The API the provider speaks: `openai` (chat completions, completions, embeddings,
    /// Responses; the default) or `anthropic` (Messages and count_tokens; its key is sent as
    /// `x-api-key`, with `anthropic-version`).
    #[serde(default)]
    pub api: ProviderApi,
    /// The `anthropic-version` header an `api: anthropic` provider receives when the client
    /// sends none (default `2023-06-01`).
    #[serde(default)]
    pub anthropic_version: Option<String>,
}

/// The API a provider speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderApi {
    /// OpenAI's: chat completions, completions, embeddings and the Responses API; the key is
    /// sent as `Authorization: Bearer`.
    #[default]
    Openai,
    /// Anthropic's Messages API (`/messages`, `/messages/count_tokens`); the key is sent as
    /// `x-api-key`, and `anthropic-version` with every call.
    Anthropic,
}

impl ProviderApi {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderApi::Openai => "openai",
            ProviderApi::Anthropic => "anthropic",
        }
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// Input tokens written to the provider's prompt cache (Anthropic's
    /// `cache_creation_input_tokens`); default: `input_per_mtok`.
    #[serde(default)]
    pub cache_write_per_mtok: Option<f64>,
    /// Input tokens read from the provider's prompt cache (Anthropic's
    /// `cache_read_input_tokens`, OpenAI's `cached_tokens`); default: `input_per_mtok`.
    #[serde(default)]
    pub cache_read_per_mtok: Option<f64>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// Header whose value is the unit key when no earlier source in `unit_key_from` is present.
    #[serde(default)]
    pub tenant_header: Option<String>,
    /// Longest unit key or cohort label value a request may carry, in bytes (default 256); a
    /// longer one is refused with 400 naming its field.
    #[serde(default)]
    pub max_key_bytes: Option<u64>,
    /// Where a request's unit key comes from, in order of precedence; the first one present
    /// (and non-empty) is used. Default: `[header, safety_identifier, user, prompt_cache_key,
    /// metadata.user_id, tenant]` (`header` is `x-canarist-unit`, `tenant` the
    /// `tenant_header`).
    #[serde(default)]
    #[schemars(extend("items" = {"type": "string", "enum": ["header", "safety_identifier", "user", "prompt_cache_key", "metadata.user_id", "tenant"]}))]
    pub unit_key_from: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Require a canarist key of role `viewer` or above on `GET /metrics` (default false).
    #[serde(default)]
    pub require_key: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    pub slug: String,
    /// The `model` clients send. Defaults to the slug.
    #[serde(default)]
    pub model: Option<String>,
    /// `off` (stable only), `shadow` (candidates mirrored) or `live` (candidates serve).
    #[serde(default)]
    #[schemars(extend("enum" = ["off", "shadow", "live", null]))]
    pub mode: Option<String>,
    /// Stage label carried on observations and the `x-canarist-stage` header.
    #[serde(default)]
    pub stage: Option<String>,
    /// Hash salt for bucket assignment; defaults to the slug.
    #[serde(default)]
    pub salt: Option<String>,
    pub stable: RawVariant,
    #[serde(default)]
    pub candidates: Vec<RawCandidate>,
    #[serde(default)]
    pub shadow: RawShadow,
    #[serde(default)]
    pub live: RawLive,
    #[serde(default)]
    pub spend_cap: RawSpendCap,
    /// The A/A arm: percent of stable-served requests (not otherwise paired) sent to stable a
    /// second time in the background; the two stable answers are judged against each other.
    #[serde(default)]
    pub aa_percent: Option<f64>,
    #[serde(default)]
    pub cohorts: RawCohorts,
    /// This deployment's unit key sources, in order (overrides `routing.unit_key_from`).
    #[serde(default)]
    #[schemars(extend("items" = {"type": "string", "enum": ["header", "safety_identifier", "user", "prompt_cache_key", "metadata.user_id", "tenant"]}))]
    pub unit_key_from: Option<Vec<String>>,
    /// Ramp stages, gate policy, guardrails and alerts; see `config::rollout`.
    #[serde(default)]
    pub ramp: Option<crate::rollout::ramp::RawRamp>,
    #[serde(default)]
    pub gate: Option<crate::gate::GatePolicy>,
    #[serde(default)]
    pub guardrails: Option<crate::gate::GuardrailConfig>,
    #[serde(default)]
    pub alerts: Option<super::rollout::RawAlerts>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawVariant {
    pub provider: String,
    pub model: String,
    /// Replaces (or inserts) the system message, so that a prompt change can be canaried.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Request fields set on every call to this variant (e.g. `temperature`, `max_tokens`).
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCandidate {
    pub name: String,
    pub provider: String,
    pub model: String,
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Share of units (0–100, steps of 0.01) mirrored (shadow) or served (live).
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub percent: f64,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawShadow {
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<std::time::Duration>,
    #[serde(default)]
    pub mirror_embeddings: Option<bool>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLive {
    /// Percent of candidate-served requests also sent to stable in the background.
    #[serde(default)]
    pub pair_sample_percent: Option<f64>,
    #[serde(default)]
    pub fallback_to_stable: Option<bool>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSpendCap {
    #[serde(default)]
    pub tokens: Option<u64>,
    #[serde(default)]
    pub usd: Option<f64>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCohorts {
    /// Label name → where its value comes from.
    #[serde(default)]
    pub labels: BTreeMap<String, RawLabelSource>,
    #[serde(default)]
    pub rules: Vec<RawCohortRule>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLabelSource {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCohortRule {
    /// Label values that must all match (`tier: enterprise`).
    #[serde(rename = "match")]
    pub matches: BTreeMap<String, String>,
    /// `include` (only matching requests may be in the canary) or `exclude`.
    #[schemars(extend("enum" = ["include", "exclude"]))]
    pub action: String,
    /// For `exclude`: matching requests join the canary once the candidate's percent reaches this.
    #[serde(default)]
    pub until_percent: Option<f64>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCapture {
    /// `store` (the `storage` database, the default), `jsonl:<path>`, or `memory`.
    #[serde(default)]
    pub sink: Option<String>,
    #[serde(default)]
    pub queue_capacity: Option<usize>,
    #[serde(default)]
    pub batch_size: Option<usize>,
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub flush_interval: Option<std::time::Duration>,
    /// Fraction (0–1) of observations that keep request and response bodies.
    #[serde(default)]
    pub body_sample_rate: Option<f64>,
    /// Regular expressions whose matches are replaced by `[REDACTED]` in stored bodies.
    #[serde(default)]
    pub redact: Vec<String>,
    /// Bodies larger than this (bytes) are not kept.
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// Write attempts per batch before it goes to the spool (default 3).
    #[serde(default)]
    pub write_attempts: Option<u32>,
    /// First delay between write attempts, and between tries to replay the spool (default
    /// 100ms; doubles, up to 5 s).
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub retry_backoff: Option<std::time::Duration>,
    /// Where batches wait while the store is unreachable.
    #[serde(default)]
    pub spool: Option<RawSpool>,
    /// Fraction (0–1) of the observations that are not a pair's side or a kept error which the
    /// store keeps as full rows anyway (default 0.01). Every observation is added to the
    /// aggregate tables the gate, status and reports read, with or without a row.
    #[serde(default)]
    pub row_sample_rate: Option<f64>,
    /// Failed observations kept as full rows per flush, at most (default 20), so that a report
    /// has errors to show; every error is counted in the aggregates.
    #[serde(default)]
    pub error_rows_per_flush: Option<usize>,
    /// Row-less observations in one flush, at most (default 20000): a flush holding this many
    /// is written at once.
    #[serde(default)]
    pub max_aggregated_per_flush: Option<usize>,
    /// How long row-less observations collect before a flush adds them to the aggregate tables
    /// (default 1s; at least `flush_interval`). Longer means fewer per-unit rows written per
    /// observation, and more lost to a `kill -9`.
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub aggregate_interval: Option<std::time::Duration>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    /// The spool directory; relative paths are relative to the config file's directory
    /// (default `canarist-spool`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Bytes the spool may hold (default 256 MiB); 0 turns the spool off.
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

/// `storage:`. Its `Debug` output redacts the URL (it may carry a password).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// `sqlite://…` or `postgres://…` (default `sqlite://canarist.db`).
    #[serde(default)]
    pub url: Option<String>,
    /// Name of the environment variable that holds `url` (it may carry a password).
    #[serde(default)]
    pub url_env: Option<String>,
    /// Observations older than this are deleted (e.g. `30d`); absent: kept.
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub keep_observations: Option<std::time::Duration>,
    /// Request and response bodies older than this are cleared (e.g. `7d`); absent: kept.
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub keep_bodies: Option<std::time::Duration>,
    /// The gate's recorded evaluations (the charts over time) older than this are deleted
    /// (e.g. `90d`); absent: kept.
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub keep_gate_history: Option<std::time::Duration>,
}

impl std::fmt::Debug for RawStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawStorage")
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .field("url_env", &self.url_env)
            .field("keep_observations", &self.keep_observations)
            .field("keep_bodies", &self.keep_bodies)
            .field("keep_gate_history", &self.keep_gate_history)
            .finish()
    }
}
