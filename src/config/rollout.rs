//! Rollout settings in the config file: per deployment an optional `ramp:` (stages), `gate:`
//! (the statistical gate's policy), `guardrails:` (the fast path) and `alerts:` (a webhook);
//! plus a top-level `controller: { tick: 5s }`.
//!
//! Owns: the raw alert and controller types, and the validation of all four per-deployment
//! sections (every problem named by file and field, like the rest of the config). Never: runs
//! a rollout. Fails closed: a section with any problem makes the whole config invalid.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::secret::Env;
use super::{Deployment, Problem};
use crate::gate::{GatePolicy, GuardrailConfig};
use crate::rollout::ramp::{Ramp, RawRamp};

/// `controller:` at the top level.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawController {
    /// How often the controller evaluates every active rollout (e.g. `5s`).
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub tick: Option<Duration>,
    /// How often a replica that is not the leader retries the leader lock.
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub leader_retry: Option<Duration>,
}

/// `alerts:` in a deployment. Its `Debug` output redacts the webhook URL.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// The webhook (a Slack incoming-webhook URL is a secret: prefer `webhook_url_env`).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Name of the environment variable that holds `webhook_url`.
    #[serde(default)]
    pub webhook_url_env: Option<String>,
    /// `slack` (the default) or `json`.
    #[serde(default)]
    #[schemars(extend("enum" = ["slack", "json", null]))]
    pub format: Option<String>,
}

/// Body shape of the alert webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertFormat {
    /// `{"text": …, "blocks": […]}` (Slack incoming webhooks and compatible receivers).
    Slack,
    /// A generic JSON object: event, deployment, state, failing metric and cohort, evidence.
    Json,
}

#[derive(Clone, PartialEq)]
pub struct AlertTarget {
    pub webhook_url: String,
    pub format: AlertFormat,
}

impl std::fmt::Debug for RawAlerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawAlerts")
            .field(
                "webhook_url",
                &self.webhook_url.as_ref().map(|_| "<redacted>"),
            )
            .field("webhook_url_env", &self.webhook_url_env)
            .field("format", &self.format)
            .finish()
    }
}

impl std::fmt::Debug for AlertTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertTarget")
            .field("webhook_url", &"<redacted>")
            .field("format", &self.format)
            .finish()
    }
}

/// Everything the rollout module needs about one deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSettings {
    pub ramp: Ramp,
    /// Without a gate policy the controller only enforces stage maximum durations; promotion
    /// is manual.
    pub gate: Option<GatePolicy>,
    pub guardrails: Option<GuardrailConfig>,
    pub alerts: Option<AlertTarget>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControllerSettings {
    pub tick: Duration,
    pub leader_retry: Duration,
}

pub fn default_tick() -> Duration {
    Duration::from_secs(5)
}
pub fn default_leader_retry() -> Duration {
    Duration::from_secs(1)
}

impl Default for ControllerSettings {
    fn default() -> Self {
        Self {
            tick: default_tick(),
            leader_retry: default_leader_retry(),
        }
    }
}

/// The four per-deployment sections, taken out of the raw deployment before it is validated.
#[derive(Debug, Default)]
pub(super) struct RawRolloutParts {
    ramp: Option<RawRamp>,
    gate: Option<GatePolicy>,
    guardrails: Option<GuardrailConfig>,
    alerts: Option<RawAlerts>,
}

impl RawRolloutParts {
    pub(super) fn has_ramp(&self) -> bool {
        self.ramp.is_some()
    }

    pub(super) fn take(rd: &mut super::raw::RawDeployment) -> Self {
        Self {
            ramp: rd.ramp.take(),
            gate: rd.gate.take(),
            guardrails: rd.guardrails.take(),
            alerts: rd.alerts.take(),
        }
    }
}

pub(super) fn controller(raw: Option<RawController>, out: &mut Vec<Problem>) -> ControllerSettings {
    let raw = raw.unwrap_or_default();
    let tick = raw.tick.unwrap_or_else(default_tick);
    let leader_retry = raw.leader_retry.unwrap_or_else(default_leader_retry);
    if tick.is_zero() {
        out.push(problem("controller.tick", "must be longer than 0"));
    }
    if leader_retry.is_zero() {
        out.push(problem("controller.leader_retry", "must be longer than 0"));
    }
    ControllerSettings { tick, leader_retry }
}

/// The guardrails and alerts of a deployment without a `ramp`: they watch the canaries set
/// through the admin API (`POST /api/v1/gateway/canary`).
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryGuards {
    /// `None`: the defaults.
    pub guardrails: Option<GuardrailConfig>,
    pub alerts: Option<AlertTarget>,
}

/// Validates the `guardrails` and `alerts` of a deployment without a ramp; a `gate` needs one.
/// `None` when it has neither (or they have problems, pushed to `out`).
pub(super) fn canary_guards(
    field: &str,
    raw: RawRolloutParts,
    env: Env<'_>,
    out: &mut Vec<Problem>,
) -> Option<CanaryGuards> {
    let before = out.len();
    if raw.gate.is_some() {
        out.push(problem(
            &format!("{field}.gate"),
            "only used by a rollout: add a `ramp`",
        ));
    }
    if let Some(g) = &raw.guardrails {
        guardrails(&format!("{field}.guardrails"), g, out);
    }
    let alerts = raw
        .alerts
        .and_then(|a| alerts(&format!("{field}.alerts"), a, env, out));
    (out.len() == before && (raw.guardrails.is_some() || alerts.is_some())).then_some(
        CanaryGuards {
            guardrails: raw.guardrails,
            alerts,
        },
    )
}

/// Validates one deployment's sections (`field` is e.g. `deployments[0]`). `None` when the
/// deployment has no ramp (or has problems, which are pushed to `out`).
pub(super) fn settings(
    file: &Path,
    field: &str,
    raw: RawRolloutParts,
    deployment: &Deployment,
    env: Env<'_>,
    out: &mut Vec<Problem>,
) -> Option<RolloutSettings> {
    let before = out.len();
    let Some(raw_ramp) = raw.ramp else {
        for (name, present) in [
            ("gate", raw.gate.is_some()),
            ("guardrails", raw.guardrails.is_some()),
            ("alerts", raw.alerts.is_some()),
        ] {
            if present {
                out.push(problem(
                    &format!("{field}.{name}"),
                    "only used by a rollout: add a `ramp`",
                ));
            }
        }
        return None;
    };
    let ramp = match raw_ramp.validate(file, &format!("{field}.ramp")) {
        Ok(r) => Some(r),
        Err(e) => {
            out.extend(e.problems);
            None
        }
    };
    if deployment.candidates.len() != 1 {
        out.push(problem(
            &format!("{field}.candidates"),
            "a deployment with a `ramp` needs exactly one candidate (the one being rolled out)",
        ));
    }
    if let Some(gate) = &raw.gate {
        out.extend(gate.validate(&format!("{field}.gate")));
    }
    if let Some(g) = &raw.guardrails {
        guardrails(&format!("{field}.guardrails"), g, out);
    }
    let alerts = raw
        .alerts
        .and_then(|a| alerts(&format!("{field}.alerts"), a, env, out));
    match ramp {
        Some(ramp) if out.len() == before => Some(RolloutSettings {
            ramp,
            gate: raw.gate,
            guardrails: raw.guardrails,
            alerts,
        }),
        _ => None,
    }
}

fn guardrails(field: &str, g: &GuardrailConfig, out: &mut Vec<Problem>) {
    let f = |name: &str| format!("{field}.{name}");
    if g.bucket.is_zero() {
        out.push(problem(&f("bucket"), "must be longer than 0"));
    }
    if g.buckets == 0 {
        out.push(problem(&f("buckets"), "must be at least 1"));
    }
    if g.min_count == 0 {
        out.push(problem(&f("min_count"), "must be at least 1"));
    }
    if !(g.error_ceiling > 0.0 && g.error_ceiling <= 1.0) {
        out.push(problem(&f("error_ceiling"), "must be in (0, 1]"));
    }
    if !(g.error_multiplier.is_finite() && g.error_multiplier >= 1.0) {
        out.push(problem(&f("error_multiplier"), "must be a number ≥ 1"));
    }
    if !(0.0..1.0).contains(&g.relative_floor) {
        out.push(problem(&f("relative_floor"), "must be in [0, 1)"));
    }
    if g.hard_fail_limit == 0 {
        out.push(problem(&f("hard_fail_limit"), "must be at least 1"));
    }
    if !(g.error_z.is_finite() && g.error_z >= 0.0) {
        out.push(problem(&f("error_z"), "must be a number ≥ 0"));
    }
}

fn alerts(
    field: &str,
    raw: RawAlerts,
    env: Env<'_>,
    out: &mut Vec<Problem>,
) -> Option<AlertTarget> {
    let before = out.len();
    let url_field = format!("{field}.webhook_url");
    let webhook_url = match super::secret::resolve(
        &url_field,
        raw.webhook_url,
        raw.webhook_url_env.as_deref(),
        env,
        out,
    ) {
        Ok(Some(url)) => url,
        Ok(None) => {
            out.push(problem(
                &url_field,
                "give `webhook_url` or `webhook_url_env`",
            ));
            String::new()
        }
        Err(()) => String::new(),
    };
    let url_ok = (webhook_url.starts_with("http://") || webhook_url.starts_with("https://"))
        && reqwest::Url::parse(&webhook_url).is_ok();
    if out.len() == before && !url_ok {
        // The value is not echoed: it may be a secret.
        out.push(problem(&url_field, "is not an http:// or https:// URL"));
    }
    let format = match raw.format.as_deref().unwrap_or("slack") {
        "slack" => AlertFormat::Slack,
        "json" => AlertFormat::Json,
        other => {
            out.push(problem(
                &format!("{field}.format"),
                &format!("`{other}` is not one of slack, json"),
            ));
            AlertFormat::Slack
        }
    };
    (out.len() == before).then_some(AlertTarget {
        webhook_url,
        format,
    })
}

fn problem(field: &str, message: &str) -> Problem {
    Problem {
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;
    use crate::rollout::ramp::Exposure;

    const BASE: &str = "providers:\n  p: { base_url: http://127.0.0.1:1/v1 }\n";

    fn load(rest: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_yaml(Path::new("r.yaml"), &format!("{BASE}{rest}"), &|_| None)
    }

    #[test]
    fn rollout_sections_parse_into_settings() {
        let c = load(
            r#"
controller: { tick: 100ms }
deployments:
  - slug: chat
    stable: { provider: p, model: a }
    candidates: [{ name: c, provider: p, model: b }]
    ramp:
      stages:
        - { shadow: 20, min_duration: 1m, max_duration: 1h }
        - { percent: 5 }
    gate:
      metrics: [{ name: error_rate, kind: error_rate, margin: 0.02, ceiling: 0.1 }]
    guardrails: { bucket: 1s, buckets: 10, min_count: 20 }
    alerts: { webhook_url: "http://127.0.0.1:1/hook", format: json }
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.controller.tick, std::time::Duration::from_millis(100));
        let s = &c.rollouts["chat"];
        assert_eq!(
            s.ramp.stages[0].exposure,
            Exposure::Shadow { sample_rate: 0.2 }
        );
        assert_eq!(s.gate.as_ref().map(|g| g.metrics.len()), Some(1));
        assert_eq!(s.guardrails.as_ref().map(|g| g.min_count), Some(20));
        assert_eq!(
            s.alerts.as_ref().map(|a| a.format),
            Some(super::AlertFormat::Json)
        );
    }

    /// Without a ramp, guardrails and alerts watch the admin API's canaries; a gate needs a ramp.
    #[test]
    fn guardrails_and_alerts_without_a_ramp_guard_api_canaries() {
        let c = load(
            r#"
deployments:
  - slug: chat
    stable: { provider: p, model: a }
    guardrails: { min_count: 20 }
    alerts: { webhook_url: "http://127.0.0.1:1/hook", format: slack }
  - slug: bare
    stable: { provider: p, model: a }
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(c.rollouts.is_empty());
        assert_eq!(c.guardrails_of("chat").map(|g| g.min_count), Some(20));
        assert_eq!(
            c.alerts_of("chat").map(|a| a.format),
            Some(super::AlertFormat::Slack)
        );
        assert!(c.guardrails_of("bare").is_none() && c.alerts_of("bare").is_none());
    }

    #[test]
    fn every_rollout_problem_names_file_and_field() {
        let err = load(
            r#"
controller: { tick: 0s }
deployments:
  - slug: chat
    stable: { provider: p, model: a }
    ramp: { stages: [{ percent: 500 }] }
    gate: { metrics: [] }
    guardrails: { min_count: 0, error_multiplier: 0.5, error_z: -1 }
    alerts: { webhook_url: "ftp://x", format: teams }
  - slug: other
    stable: { provider: p, model: a }
    gate: { metrics: [{ name: error_rate, kind: error_rate, margin: 0.02, ceiling: 0.1 }] }
"#,
        )
        .unwrap_err();
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        for expected in [
            "controller.tick",
            "deployments[0].ramp.stages[0].percent",
            "deployments[0].candidates",
            "deployments[0].gate.metrics",
            "deployments[0].guardrails.min_count",
            "deployments[0].guardrails.error_multiplier",
            "deployments[0].guardrails.error_z",
            "deployments[0].alerts.webhook_url",
            "deployments[0].alerts.format",
            "deployments[1].gate",
        ] {
            assert!(
                fields.contains(&expected),
                "missing {expected} in {fields:?}"
            );
        }
        assert!(err.to_string().starts_with("r.yaml: "), "{err}");
    }
}
