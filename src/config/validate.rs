//! Turning a [`RawConfig`] into a [`Config`], collecting every problem on the way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::raw::{RawCandidate, RawCohorts, RawConfig, RawDeployment, RawVariant};
use super::*;

/// YAML → raw structs. A syntax or type error stops here, reported with its field path and line.
pub(super) fn parse(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        ConfigError::single(path, &field, e.inner())
    })
}

struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }
}

pub(super) fn validate(
    path: &Path,
    raw: RawConfig,
    env: &dyn Fn(&str) -> Option<String>,
    mode: LoadMode,
) -> Result<Config, ConfigError> {
    let mut p = Problems(Vec::new());

    let listen = match raw.listen.as_deref() {
        None => default_listen(),
        Some(s) => s.parse().unwrap_or_else(|_| {
            p.push(
                "listen",
                format!("`{s}` is not a socket address like 127.0.0.1:8080"),
            );
            default_listen()
        }),
    };

    let max_body_bytes = match raw.max_body_bytes {
        None => default_max_body_bytes(),
        Some(0) => {
            p.push("max_body_bytes", "must be greater than 0");
            default_max_body_bytes()
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };

    let mut providers = BTreeMap::new();
    for (name, rp) in raw.providers {
        let field = format!("providers.{name}");
        let base_url = rp.base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            p.push(
                format!("{field}.base_url"),
                format!("`{}` must start with http:// or https://", rp.base_url),
            );
        } else if reqwest::Url::parse(&base_url).is_err() {
            p.push(
                format!("{field}.base_url"),
                format!("`{}` is not a valid URL", rp.base_url),
            );
        }
        let api_key = match &rp.api_key_env {
            None => None,
            Some(var) => match env(var) {
                Some(key) if !key.is_empty() => Some(key),
                _ if mode == LoadMode::Store => None,
                _ => {
                    p.push(
                        format!("{field}.api_key_env"),
                        format!("environment variable `{var}` is not set"),
                    );
                    None
                }
            },
        };
        if let Some(v) = rp.anthropic_version.as_deref()
            && (v.is_empty() || http::HeaderValue::from_str(v).is_err())
        {
            p.push(
                format!("{field}.anthropic_version"),
                format!("`{v}` is not a valid header value"),
            );
        }
        if rp.forward_client_auth && rp.api_key_env.is_some() {
            p.push(
                format!("{field}.forward_client_auth"),
                "a provider with its own key (`api_key_env`) never receives the client's; \
                 remove one of the two",
            );
        }
        providers.insert(
            name.clone(),
            Provider {
                name,
                base_url,
                api_key,
                api_key_env: rp.api_key_env,
                forward_client_auth: rp.forward_client_auth,
                timeout: rp.timeout.unwrap_or_else(default_timeout),
                connect_timeout: rp.connect_timeout.unwrap_or_else(default_connect_timeout),
                read_timeout: rp.read_timeout.unwrap_or_else(default_read_timeout),
                api: rp.api,
                anthropic_version: rp
                    .anthropic_version
                    .unwrap_or_else(|| super::DEFAULT_ANTHROPIC_VERSION.to_owned()),
            },
        );
    }

    let mut prices = BTreeMap::new();
    for (model, rp) in raw.prices {
        let cache_write = rp.cache_write_per_mtok.unwrap_or(rp.input_per_mtok);
        let cache_read = rp.cache_read_per_mtok.unwrap_or(rp.input_per_mtok);
        if ![
            rp.input_per_mtok,
            rp.output_per_mtok,
            cache_write,
            cache_read,
        ]
        .iter()
        .all(|x| *x >= 0.0)
        {
            p.push(
                format!("prices.{model}"),
                "prices must be non-negative numbers",
            );
        }
        prices.insert(
            model,
            Price {
                input_per_mtok: rp.input_per_mtok,
                output_per_mtok: rp.output_per_mtok,
                cache_write_per_mtok: cache_write,
                cache_read_per_mtok: cache_read,
            },
        );
    }

    if let Some(dp) = raw
        .default_provider
        .as_ref()
        .filter(|dp| !providers.contains_key(*dp))
    {
        p.push("default_provider", unknown_provider(dp, &providers));
    }

    let tenant_header = raw.routing.tenant_header.as_deref().and_then(|h| {
        header_name(h).or_else(|| {
            p.push(
                "routing.tenant_header",
                format!("`{h}` is not a valid header name"),
            );
            None
        })
    });

    let max_key_bytes = match raw.routing.max_key_bytes {
        None => default_max_key_bytes(),
        Some(0) => {
            p.push("routing.max_key_bytes", "must be greater than 0".to_owned());
            default_max_key_bytes()
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let metrics = super::MetricsConfig {
        require_key: raw
            .metrics
            .as_ref()
            .and_then(|m| m.require_key)
            .unwrap_or(false),
    };
    let unit_key_from = unit_sources("routing.unit_key_from", raw.routing.unit_key_from, &mut p)
        .unwrap_or_else(default_unit_key_from);

    let mut deployments = Vec::new();
    let mut slugs = BTreeSet::new();
    let mut aliases = BTreeSet::new();
    let mut rollouts = BTreeMap::new();
    let mut canary_guards = BTreeMap::new();
    for (i, mut rd) in raw.deployments.into_iter().enumerate() {
        let field = format!("deployments[{i}]");
        let rollout_parts = super::rollout::RawRolloutParts::take(&mut rd);
        if let Some(d) = deployment(&field, rd, &providers, &mut p) {
            if !rollout_parts.has_ramp() {
                if let Some(g) = super::rollout::canary_guards(&field, rollout_parts, env, &mut p.0)
                {
                    canary_guards.insert(d.slug.clone(), g);
                }
            } else if let Some(s) =
                super::rollout::settings(path, &field, rollout_parts, &d, env, &mut p.0)
            {
                rollouts.insert(d.slug.clone(), s);
            }
            if !slugs.insert(d.slug.clone()) {
                p.push(
                    format!("{field}.slug"),
                    format!("`{}` is used by another deployment", d.slug),
                );
            }
            if !aliases.insert(d.model.clone()) {
                p.push(
                    format!("{field}.model"),
                    format!("`{}` is used by another deployment", d.model),
                );
            }
            deployments.push(d);
        }
    }

    let capture = capture(path, raw.capture, &mut p);
    let upstream_limits = super::limits::upstream_limits(raw.upstream_limits, &mut p.0);
    let server = super::limits::server(raw.server, &mut p.0);
    let (storage_url, retention) = match raw.storage {
        None => (Ok(None), Retention::default()),
        Some(s) => (
            super::secret::resolve("storage.url", s.url, s.url_env.as_deref(), env, &mut p.0),
            Retention {
                observations: s.keep_observations,
                bodies: s.keep_bodies,
                gate_history: s.keep_gate_history,
            },
        ),
    };
    let storage_url = match storage_url {
        Ok(url) => {
            let url = url.unwrap_or_else(default_storage_url);
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                // Only the scheme is echoed: the rest may carry a password.
                let scheme = url.split(':').next().unwrap_or_default();
                p.push(
                    "storage.url",
                    format!("`{scheme}:…` is not a sqlite:… or postgres://… URL"),
                );
            }
            url
        }
        Err(()) => default_storage_url(),
    };

    let judge = super::judge::judge(raw.judge, &mut p.0);
    let admin = super::admin::validate(path, raw.admin, env, &mut p.0);
    let controller = super::rollout::controller(raw.controller, &mut p.0);
    let public_url = raw
        .public_url
        .map(|u| u.trim().trim_end_matches('/').to_owned());
    if let Some(u) = &public_url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        p.push(
            "public_url",
            format!("`{u}` is not an http:// or https:// URL"),
        );
    }

    if !p.0.is_empty() {
        return Err(ConfigError {
            file: path.to_path_buf(),
            problems: p.0,
        });
    }
    Ok(Config {
        source: path.to_path_buf(),
        listen,
        max_body_bytes,
        providers,
        prices,
        default_provider: raw.default_provider,
        tenant_header,
        max_key_bytes,
        unit_key_from,
        deployments,
        capture,
        upstream_limits,
        server,
        storage_url,
        retention,
        judge,
        admin,
        metrics,
        rollouts,
        canary_guards,
        controller,
        public_url,
    })
}

fn unknown_provider(name: &str, providers: &BTreeMap<String, Provider>) -> String {
    let known: Vec<&str> = providers.keys().map(String::as_str).collect();
    format!("unknown provider `{name}` (known: {})", known.join(", "))
}

fn header_name(s: &str) -> Option<http::HeaderName> {
    http::HeaderName::from_bytes(s.as_bytes()).ok()
}

/// Percent (0–100, 0.01 steps) → buckets (0–10000).
fn percent_to_buckets(field: &str, percent: f64, p: &mut Problems) -> u16 {
    if !(0.0..=100.0).contains(&percent) {
        p.push(
            field,
            format!("{percent} is not a percentage between 0 and 100"),
        );
        return 0;
    }
    let buckets = percent * 100.0;
    if (buckets - buckets.round()).abs() > 1e-6 {
        p.push(
            field,
            format!("{percent} is finer than the 0.01% bucket step"),
        );
    }
    buckets.round() as u16
}

fn variant(
    field: &str,
    name: String,
    rv: RawVariant,
    providers: &BTreeMap<String, Provider>,
    p: &mut Problems,
) -> Variant {
    check_variant(field, &rv.provider, &rv.model, &rv.params, providers, p);
    Variant {
        name,
        provider: rv.provider,
        model: rv.model,
        system_prompt: rv.system_prompt,
        params: rv.params,
    }
}

fn check_variant(
    field: &str,
    provider: &str,
    model: &str,
    params: &serde_json::Map<String, serde_json::Value>,
    providers: &BTreeMap<String, Provider>,
    p: &mut Problems,
) {
    if !providers.contains_key(provider) {
        p.push(
            format!("{field}.provider"),
            unknown_provider(provider, providers),
        );
    }
    if model.trim().is_empty() {
        p.push(format!("{field}.model"), "must not be empty");
    }
    for key in ["model", "messages", "prompt", "input", "stream"] {
        if params.contains_key(key) {
            p.push(
                format!("{field}.params.{key}"),
                "cannot be overridden (it comes from the client's request)",
            );
        }
    }
    // A variant's params are sent in its own provider's API, after any translation of the
    // client's request: on an Anthropic provider, Chat Completions' names are refused.
    let anthropic = providers
        .get(provider)
        .is_some_and(|pr| pr.api == super::ProviderApi::Anthropic);
    for key in CHAT_ONLY_PARAMS
        .iter()
        .filter(|k| anthropic && params.contains_key(**k))
    {
        p.push(
            format!("{field}.params.{key}"),
            "is a Chat Completions field; an `api: anthropic` variant's params are sent to \
             Anthropic's Messages API as they are (max_tokens, stop_sequences, temperature, \
             top_p, top_k, metadata, …)",
        );
    }
}

/// Chat Completions request fields that Anthropic's Messages API does not take.
const CHAT_ONLY_PARAMS: &[&str] = &[
    "max_completion_tokens",
    "n",
    "stop",
    "logprobs",
    "top_logprobs",
    "response_format",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "seed",
    "parallel_tool_calls",
    "reasoning_effort",
    "user",
    "stream_options",
];

fn candidate(
    field: &str,
    rc: RawCandidate,
    providers: &BTreeMap<String, Provider>,
    p: &mut Problems,
) -> Candidate {
    check_variant(field, &rc.provider, &rc.model, &rc.params, providers, p);
    if rc.name.trim().is_empty() || rc.name == "stable" {
        p.push(
            format!("{field}.name"),
            "must be a non-empty name other than `stable`",
        );
    }
    let buckets = percent_to_buckets(&format!("{field}.percent"), rc.percent, p);
    Candidate {
        variant: Variant {
            name: rc.name,
            provider: rc.provider,
            model: rc.model,
            system_prompt: rc.system_prompt,
            params: rc.params,
        },
        buckets,
    }
}

fn deployment(
    field: &str,
    rd: RawDeployment,
    providers: &BTreeMap<String, Provider>,
    p: &mut Problems,
) -> Option<Deployment> {
    if rd.slug.is_empty()
        || !rd
            .slug
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        p.push(
            format!("{field}.slug"),
            format!(
                "`{}` must be non-empty and use only letters, digits, `-`, `_`, `.`",
                rd.slug
            ),
        );
    }
    let mode = match rd.mode.as_deref().unwrap_or("off") {
        "off" => Mode::Off,
        "shadow" => Mode::Shadow,
        "live" => Mode::Live,
        other => {
            p.push(
                format!("{field}.mode"),
                format!("`{other}` is not one of off, shadow, live"),
            );
            Mode::Off
        }
    };
    let stable = variant(
        &format!("{field}.stable"),
        "stable".to_owned(),
        rd.stable,
        providers,
        p,
    );
    let mut names = BTreeSet::new();
    let candidates: Vec<Candidate> = rd
        .candidates
        .into_iter()
        .enumerate()
        .map(|(j, rc)| {
            let cf = format!("{field}.candidates[{j}]");
            let c = candidate(&cf, rc, providers, p);
            if !names.insert(c.variant.name.clone()) {
                p.push(
                    format!("{cf}.name"),
                    format!("`{}` is used twice", c.variant.name),
                );
            }
            if c.variant.name == crate::vocab::AA_VARIANT {
                p.push(
                    format!("{cf}.name"),
                    format!(
                        "`{}` is reserved for the A/A arm (stable asked twice); pick another name",
                        crate::vocab::AA_VARIANT
                    ),
                );
            }
            c
        })
        .collect();
    let lane = crate::vocab::lane_width(candidates.len());
    for (j, c) in candidates.iter().enumerate() {
        if c.buckets > lane {
            p.push(
                format!("{field}.candidates[{j}].percent"),
                format!(
                    "with {} candidates each may take at most {}% (the bucket space is split \
                     evenly so that raising one never moves another's units)",
                    candidates.len(),
                    f64::from(lane) / 100.0
                ),
            );
        }
    }
    if mode != Mode::Off && candidates.is_empty() {
        p.push(
            format!("{field}.candidates"),
            format!("mode `{}` needs at least one candidate", mode.as_str()),
        );
    }
    let pair_sample_buckets = percent_to_buckets(
        &format!("{field}.live.pair_sample_percent"),
        rd.live.pair_sample_percent.unwrap_or(0.0),
        p,
    );
    let aa_buckets = percent_to_buckets(
        &format!("{field}.aa_percent"),
        rd.aa_percent.unwrap_or(0.0),
        p,
    );
    if rd
        .spend_cap
        .usd
        .is_some_and(|usd| usd.is_nan() || usd < 0.0)
    {
        p.push(
            format!("{field}.spend_cap.usd"),
            "must be a non-negative number",
        );
    }
    let mirror_embeddings = rd.shadow.mirror_embeddings.unwrap_or(false);
    let apis: Vec<_> = std::iter::once(&stable)
        .chain(candidates.iter().map(|c| &c.variant))
        .filter_map(|v| providers.get(&v.provider).map(|pr| pr.api))
        .collect();
    if mirror_embeddings && apis.iter().any(|a| Some(a) != apis.first()) {
        p.push(
            format!("{field}.shadow.mirror_embeddings"),
            "the variants' providers speak different APIs, and embeddings are not translated \
             (only Chat Completions ↔ Anthropic Messages are)",
        );
    }
    let cohorts = cohorts(&format!("{field}.cohorts"), rd.cohorts, p);
    let unit_key_from = unit_sources(&format!("{field}.unit_key_from"), rd.unit_key_from, p);
    Some(Deployment {
        model: rd.model.unwrap_or_else(|| rd.slug.clone()),
        salt: rd.salt.unwrap_or_else(|| rd.slug.clone()),
        slug: rd.slug,
        mode,
        stage: rd.stage.unwrap_or_else(default_stage),
        stable,
        candidates,
        shadow_timeout: rd.shadow.timeout.unwrap_or_else(default_shadow_timeout),
        mirror_embeddings,
        pair_sample_buckets,
        aa_buckets,
        fallback_to_stable: rd.live.fallback_to_stable.unwrap_or(false),
        spend_cap: SpendCap {
            tokens: rd.spend_cap.tokens,
            usd: rd.spend_cap.usd,
        },
        cohorts,
        unit_key_from,
    })
}

/// A `unit_key_from` list: known names, each once, at least one.
fn unit_sources(
    field: &str,
    names: Option<Vec<String>>,
    p: &mut Problems,
) -> Option<Vec<UnitSource>> {
    let names = names?;
    if names.is_empty() {
        p.push(
            field,
            "must name at least one source (leave it out for the default order)",
        );
    }
    let mut sources = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        match UnitSource::parse(name) {
            None => p.push(
                format!("{field}[{i}]"),
                format!(
                    "`{name}` is not a unit key source; expected one of {}",
                    UnitSource::DEFAULT_ORDER
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some(s) if sources.contains(&s) => {
                p.push(format!("{field}[{i}]"), format!("`{name}` is listed twice"));
            }
            Some(s) => sources.push(s),
        }
    }
    Some(sources)
}

fn cohorts(field: &str, rc: RawCohorts, p: &mut Problems) -> Cohorts {
    let mut labels = Vec::new();
    for (name, src) in rc.labels {
        let lf = format!("{field}.labels.{name}");
        match (src.header, src.metadata) {
            (Some(h), None) => match header_name(&h) {
                Some(h) => labels.push((name, LabelSource::Header(h))),
                None => p.push(
                    format!("{lf}.header"),
                    format!("`{h}` is not a valid header name"),
                ),
            },
            (None, Some(key)) => labels.push((name, LabelSource::Metadata(key))),
            _ => p.push(lf, "set exactly one of `header` or `metadata`"),
        }
    }
    let known: BTreeSet<&str> = labels.iter().map(|(n, _)| n.as_str()).collect();
    let mut rules = Vec::new();
    for (i, rule) in rc.rules.into_iter().enumerate() {
        let rf = format!("{field}.rules[{i}]");
        if rule.matches.is_empty() {
            p.push(format!("{rf}.match"), "needs at least one `label: value`");
        }
        for label in rule.matches.keys() {
            if !known.contains(label.as_str()) {
                p.push(
                    format!("{rf}.match.{label}"),
                    format!("`{label}` is not a label declared under cohorts.labels"),
                );
            }
        }
        let action = match rule.action.as_str() {
            "include" => {
                if rule.until_percent.is_some() {
                    p.push(
                        format!("{rf}.until_percent"),
                        "only applies to `exclude` rules",
                    );
                }
                CohortAction::Include
            }
            "exclude" => CohortAction::Exclude {
                until_buckets: rule
                    .until_percent
                    .map(|pc| percent_to_buckets(&format!("{rf}.until_percent"), pc, p)),
            },
            other => {
                p.push(
                    format!("{rf}.action"),
                    format!("`{other}` is not one of include, exclude"),
                );
                CohortAction::Include
            }
        };
        rules.push(CohortRule {
            matches: rule.matches.into_iter().collect(),
            action,
        });
    }
    Cohorts { labels, rules }
}

fn capture(path: &Path, rc: super::raw::RawCapture, p: &mut Problems) -> CaptureConfig {
    let sink = match rc.sink.as_deref() {
        Some("memory") => SinkKind::Memory,
        None | Some("store") => SinkKind::Store,
        Some(s) if s.starts_with("jsonl:") && s.len() > "jsonl:".len() => {
            SinkKind::Jsonl(PathBuf::from(&s["jsonl:".len()..]))
        }
        Some(other) => {
            p.push(
                "capture.sink",
                format!("`{other}` is not one of memory, store, jsonl:<path>"),
            );
            SinkKind::Memory
        }
    };
    let body_sample_rate = rc.body_sample_rate.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&body_sample_rate) {
        p.push("capture.body_sample_rate", "must be between 0 and 1");
    }
    let mut redact = Vec::new();
    for (i, pattern) in rc.redact.iter().enumerate() {
        match regex::Regex::new(pattern) {
            Ok(re) => redact.push(re),
            Err(e) => p.push(
                format!("capture.redact[{i}]"),
                format!("invalid regex: {e}"),
            ),
        }
    }
    let queue_capacity = rc.queue_capacity.unwrap_or(10_000);
    if queue_capacity == 0 {
        p.push("capture.queue_capacity", "must be greater than 0");
    }
    let write_attempts = rc.write_attempts.unwrap_or_else(default_write_attempts);
    if write_attempts == 0 {
        p.push("capture.write_attempts", "must be at least 1");
    }
    let row_sample_rate = rc.row_sample_rate.unwrap_or(0.01);
    if !(0.0..=1.0).contains(&row_sample_rate) {
        p.push("capture.row_sample_rate", "must be between 0 and 1");
    }
    let max_aggregated_per_flush = rc.max_aggregated_per_flush.unwrap_or(20_000);
    if max_aggregated_per_flush == 0 {
        p.push("capture.max_aggregated_per_flush", "must be greater than 0");
    }
    let flush_interval = rc
        .flush_interval
        .unwrap_or(std::time::Duration::from_millis(200));
    let aggregate_interval = rc
        .aggregate_interval
        .unwrap_or(std::time::Duration::from_secs(1));
    if rc.aggregate_interval.is_some() && aggregate_interval < flush_interval {
        p.push(
            "capture.aggregate_interval",
            "must be at least capture.flush_interval (row-less observations ride on a flush)",
        );
    }
    let spool = rc.spool.unwrap_or_default();
    let max_bytes = spool.max_bytes.unwrap_or_else(default_spool_max_bytes);
    let spool = (max_bytes > 0).then(|| {
        let dir = spool.path.unwrap_or_else(default_spool_dir);
        SpoolSettings {
            // Relative to the config file's directory, not to the working directory.
            dir: path.parent().unwrap_or(Path::new(".")).join(dir),
            max_bytes,
        }
    });
    CaptureConfig {
        row_sample_rate,
        error_rows_per_flush: rc.error_rows_per_flush.unwrap_or(20),
        max_aggregated_per_flush,
        write_attempts,
        retry_backoff: rc.retry_backoff.unwrap_or_else(default_retry_backoff),
        spool,
        sink,
        queue_capacity,
        batch_size: rc.batch_size.unwrap_or(500).max(1),
        flush_interval,
        aggregate_interval: aggregate_interval.max(flush_interval),
        body_sample_rate,
        redact,
        max_body_bytes: rc.max_body_bytes.unwrap_or(256 * 1024),
    }
}
