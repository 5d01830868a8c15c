//! The ramp: stages as written in YAML (`RawRamp`) → the validated [`Ramp`], every problem
//! reported at once with its file and field. Pure data and validation: no I/O, no clock; the
//! config loader and the rollout services both build on it.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::vocab::{ConfigError, Problem};

/// What happens when a stage reaches its maximum duration without a verdict.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// Stay in the stage and raise an alert (once).
    #[default]
    HoldAndAlert,
    /// Roll the candidate back.
    Rollback,
}

/// Whether a stage waits for a person once its gate says promote.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// The gate's promote advances the stage (the default).
    #[default]
    None,
    /// The gate's promote holds the stage in `awaiting_approval` until an admin approves.
    Required,
}

/// One stage as written in YAML: exactly one of `shadow` (sample rate, percent) or `percent`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    pub shadow: Option<f64>,
    pub percent: Option<f64>,
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub min_duration: Option<Duration>,
    pub min_judged_pairs: Option<u64>,
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub max_duration: Option<Duration>,
    pub on_timeout: Option<OnTimeout>,
    /// Cohorts kept out of the candidate in this stage, as `key=value` (e.g. `tier=enterprise`).
    #[serde(default)]
    pub exclude_cohorts: Vec<String>,
    /// `required`: when the gate says promote, wait in `awaiting_approval` for an admin.
    #[serde(default)]
    pub approval: Option<Approval>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRamp {
    pub stages: Vec<RawStage>,
}

/// How much traffic a stage gives the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exposure {
    /// Mirror this share (0–1] of requests to the candidate; clients always get stable.
    Shadow { sample_rate: f64 },
    /// Serve this share (0–1] of units from the candidate.
    Live { share: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub exposure: Exposure,
    pub min_duration: Duration,
    pub min_judged_pairs: u64,
    pub max_duration: Duration,
    pub on_timeout: OnTimeout,
    /// (key, value) cohort labels excluded from the candidate in this stage.
    pub exclude_cohorts: Vec<(String, String)>,
    /// The gate's promote waits for a person's approval (`approval: required`).
    #[serde(default)]
    pub approval_required: bool,
}

/// A validated ramp: at least one stage; a shadow stage only first; live shares increasing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ramp {
    pub stages: Vec<Stage>,
}

pub fn default_min_duration() -> Duration {
    Duration::from_secs(15 * 60)
}
pub fn default_min_judged_pairs() -> u64 {
    200
}
pub fn default_max_duration() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl RawRamp {
    /// Validates, reporting every problem at once; fields are named under `prefix` (e.g. `ramp`).
    pub fn validate(self, file: &Path, prefix: &str) -> Result<Ramp, ConfigError> {
        let mut problems = Vec::new();
        let mut bad = |field: String, message: String| problems.push(Problem { field, message });
        if self.stages.is_empty() {
            bad(
                format!("{prefix}.stages"),
                "at least one stage is needed".into(),
            );
        }
        let mut stages = Vec::new();
        let mut last_share = 0.0;
        for (i, raw) in self.stages.into_iter().enumerate() {
            let f = |name: &str| format!("{prefix}.stages[{i}].{name}");
            let pct_ok = |p: f64| p > 0.0 && p <= 100.0;
            let exposure = match (raw.shadow, raw.percent) {
                (Some(s), None) => {
                    if i != 0 {
                        bad(
                            f("shadow"),
                            "only the first stage can be a shadow stage".into(),
                        );
                    }
                    if !pct_ok(s) {
                        bad(
                            f("shadow"),
                            format!("sample rate must be in (0, 100] percent, got {s}"),
                        );
                    }
                    Exposure::Shadow {
                        sample_rate: s / 100.0,
                    }
                }
                (None, Some(p)) => {
                    if !pct_ok(p) {
                        bad(f("percent"), format!("must be in (0, 100], got {p}"));
                    } else if p / 100.0 <= last_share {
                        bad(
                            f("percent"),
                            "must be larger than the previous stage's".into(),
                        );
                    }
                    last_share = p / 100.0;
                    Exposure::Live { share: p / 100.0 }
                }
                _ => {
                    bad(
                        format!("{prefix}.stages[{i}]"),
                        "needs exactly one of `shadow` and `percent`".into(),
                    );
                    continue;
                }
            };
            let min_duration = raw.min_duration.unwrap_or_else(default_min_duration);
            let max_duration = raw.max_duration.unwrap_or_else(default_max_duration);
            if max_duration < min_duration {
                bad(
                    f("max_duration"),
                    "must not be shorter than min_duration".into(),
                );
            }
            let mut exclude = Vec::new();
            for (j, c) in raw.exclude_cohorts.iter().enumerate() {
                match c.split_once('=') {
                    Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                        exclude.push((k.trim().to_owned(), v.trim().to_owned()))
                    }
                    _ => bad(
                        f(&format!("exclude_cohorts[{j}]")),
                        format!("expected `key=value`, got `{c}`"),
                    ),
                }
            }
            stages.push(Stage {
                exposure,
                min_duration,
                min_judged_pairs: raw
                    .min_judged_pairs
                    .unwrap_or_else(default_min_judged_pairs),
                max_duration,
                on_timeout: raw.on_timeout.unwrap_or_default(),
                exclude_cohorts: exclude,
                approval_required: raw.approval == Some(Approval::Required),
            });
        }
        if problems.is_empty() {
            Ok(Ramp { stages })
        } else {
            Err(ConfigError {
                file: file.to_path_buf(),
                problems,
            })
        }
    }
}

impl Ramp {
    /// Parses and validates a ramp from YAML text (`stages: [...]`).
    pub fn from_yaml(file: &Path, text: &str) -> Result<Ramp, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let raw: RawRamp = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            ConfigError::single(file, &format!("ramp.{field}"), e.inner())
        })?;
        raw.validate(file, "ramp")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
stages:
  - { shadow: 20, min_duration: 10m, min_judged_pairs: 300, max_duration: 2h }
  - { percent: 0.5, exclude_cohorts: ["tier=enterprise"] }
  - { percent: 10, on_timeout: rollback, approval: required }
  - { percent: 100 }
"#;

    #[test]
    fn a_good_ramp_parses_with_defaults() {
        let r = Ramp::from_yaml(Path::new("d.yaml"), GOOD).unwrap();
        assert_eq!(r.stages.len(), 4);
        assert_eq!(r.stages[0].exposure, Exposure::Shadow { sample_rate: 0.2 });
        assert_eq!(r.stages[0].min_duration, Duration::from_secs(600));
        assert_eq!(r.stages[1].exposure, Exposure::Live { share: 0.005 });
        assert_eq!(
            r.stages[1].exclude_cohorts,
            vec![("tier".into(), "enterprise".into())]
        );
        assert_eq!(r.stages[1].min_judged_pairs, 200);
        assert_eq!(r.stages[1].on_timeout, OnTimeout::HoldAndAlert);
        assert_eq!(r.stages[2].on_timeout, OnTimeout::Rollback);
        assert!(r.stages[2].approval_required && !r.stages[1].approval_required);
        assert_eq!(r.stages[3].max_duration, default_max_duration());
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let bad = r#"
stages:
  - { percent: 5 }
  - { shadow: 10 }
  - { percent: 2 }
  - { percent: 150, min_duration: 2h, max_duration: 1h }
  - { exclude_cohorts: [enterprise] }
"#;
        let err = Ramp::from_yaml(Path::new("d.yaml"), bad).unwrap_err();
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "ramp.stages[1].shadow",
                "ramp.stages[2].percent",
                "ramp.stages[3].percent",
                "ramp.stages[3].max_duration",
                "ramp.stages[4]",
            ]
        );
        assert!(err.to_string().starts_with("d.yaml: 5 problems"));
        let unknown = "stages:\n  - { percent: 5, speed: 3 }\n";
        let err = Ramp::from_yaml(Path::new("d.yaml"), unknown).unwrap_err();
        assert!(err.problems[0].field.starts_with("ramp.stages[0]"), "{err}");
    }
}
