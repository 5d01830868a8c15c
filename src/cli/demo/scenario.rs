//! The demo's scenarios and the files they run with: which candidate the mock plays, what the
//! rollout is expected to end with, and the config and rubric (fixtures/demo/, compiled in)
//! with their placeholders filled in.
//!
//! Owns: the scenario → candidate profile → expected outcome table, the stage plans (normal and
//! `--fast`), and template filling. Pure: no I/O, so all of it is unit-tested here.

use std::time::Duration;

/// The config template (fixtures/demo/canarist.yaml).
pub const CONFIG_TEMPLATE: &str = include_str!("../../../fixtures/demo/canarist.yaml");
/// The rubric template (fixtures/demo/support-chat.yaml).
pub const RUBRIC_TEMPLATE: &str = include_str!("../../../fixtures/demo/support-chat.yaml");

/// The demo deployment's slug and model alias.
pub const DEPLOYMENT: &str = "support-bot";
/// The judge metric the gate uses (a criterion of the demo rubric).
pub const JUDGE_METRIC: &str = "helpfulness";
/// The cohort the `cohort-regression` candidate degrades.
pub const DEGRADED_COHORT: &str = "tier=enterprise";

/// What the candidate does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Same quality as stable: promoted through every stage.
    Good,
    /// Degraded answers far more often: rolled back on the judge metric.
    Regression,
    /// Degraded answers for enterprise customers only: rolled back naming that cohort.
    CohortRegression,
    /// 20% of calls fail with 503: rolled back on the error rate.
    Errors,
}

/// How a rollout ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Promoted,
    RolledBack {
        stage: String,
        metric: Option<String>,
        cohort: Option<String>,
        reason: String,
    },
    /// Still running at the deadline (state and stage).
    Unfinished {
        state: String,
        stage: String,
    },
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Good => "good",
            Scenario::Regression => "regression",
            Scenario::CohortRegression => "cohort-regression",
            Scenario::Errors => "errors",
        }
    }

    /// The mock model (a profile of fixtures/mock/profiles.yaml) that plays the candidate.
    pub fn candidate_model(self) -> &'static str {
        match self {
            Scenario::Good => "mock-candidate-good",
            Scenario::Regression => "mock-candidate-bad",
            Scenario::CohortRegression => "mock-candidate-enterprise-bad",
            Scenario::Errors => "mock-flaky",
        }
    }

    /// What the scenario is expected to end with, in words.
    pub fn expectation(self) -> &'static str {
        match self {
            Scenario::Good => "promoted",
            Scenario::Regression => "rolled back on helpfulness",
            Scenario::CohortRegression => "rolled back on helpfulness in cohort tier=enterprise",
            Scenario::Errors => "rolled back on the error rate",
        }
    }

    /// Whether `ending` is what this scenario should end with.
    pub fn expects(self, ending: &Ending) -> bool {
        match (self, ending) {
            (Scenario::Good, Ending::Promoted) => true,
            (Scenario::Regression, Ending::RolledBack { metric, .. }) => {
                metric.as_deref() == Some(JUDGE_METRIC)
            }
            (Scenario::CohortRegression, Ending::RolledBack { metric, cohort, .. }) => {
                metric.as_deref() == Some(JUDGE_METRIC)
                    && cohort.as_deref() == Some(DEGRADED_COHORT)
            }
            (Scenario::Errors, Ending::RolledBack { metric, .. }) => {
                metric.as_deref().is_some_and(|m| m.contains("error_rate"))
            }
            _ => false,
        }
    }
}

/// Stage durations and minimums, and the controller tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    pub min_duration: Duration,
    pub shadow_pairs: u64,
    pub stage_pairs: u64,
    pub tick: Duration,
    /// Live stages after shadow: the candidate's share of traffic, in percent.
    pub percents: &'static [u32],
    /// The demo gives up when the rollout has not ended by then.
    pub deadline: Duration,
}

impl Pace {
    pub fn new(fast: bool) -> Self {
        if fast {
            Pace {
                min_duration: Duration::from_secs(2),
                shadow_pairs: 60,
                stage_pairs: 30,
                tick: Duration::from_millis(250),
                percents: &[25, 50, 100],
                deadline: Duration::from_secs(150),
            }
        } else {
            Pace {
                min_duration: Duration::from_secs(20),
                shadow_pairs: 200,
                stage_pairs: 80,
                tick: Duration::from_secs(1),
                percents: &[10, 50, 100],
                deadline: Duration::from_secs(20 * 60),
            }
        }
    }

    /// The `stages:` list (shadow, then the live percentages), indented for the template.
    pub fn stages_yaml(&self) -> String {
        let min = format!("{}s", self.min_duration.as_secs());
        let mut out = format!(
            "        - {{ shadow: 100, min_duration: {min}, min_judged_pairs: {}, max_duration: 1h }}\n",
            self.shadow_pairs
        );
        for percent in self.percents {
            out.push_str(&format!(
                "        - {{ percent: {percent}, min_duration: {min}, min_judged_pairs: {}, max_duration: 1h }}\n",
                self.stage_pairs
            ));
        }
        out
    }
}

/// The values that fill the templates.
#[derive(Debug, Clone)]
pub struct Fill<'a> {
    pub mock_url: &'a str,
    pub storage_url: &'a str,
    pub rubrics_dir: &'a str,
    pub candidate: &'a str,
    pub pace: Pace,
}

/// The demo config, ready to load.
pub fn config_yaml(fill: &Fill<'_>) -> String {
    CONFIG_TEMPLATE
        .replace("__MOCK_URL__", fill.mock_url)
        .replace("__STORAGE_URL__", &yaml_string(fill.storage_url))
        .replace("__RUBRICS_DIR__", &yaml_string(fill.rubrics_dir))
        .replace("__CANDIDATE__", fill.candidate)
        .replace("__TICK__", &format!("{}ms", fill.pace.tick.as_millis()))
        .replace("__STAGES__\n", &fill.pace.stages_yaml())
}

/// The demo rubric, its judge at `mock_url`.
pub fn rubric_yaml(mock_url: &str) -> String {
    RUBRIC_TEMPLATE.replace("__MOCK_URL__", mock_url)
}

/// A double-quoted YAML string (paths may hold spaces or colons).
fn yaml_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::Exposure;

    #[test]
    fn filled_config_loads_with_the_ramp_gate_and_cohorts() {
        let dir = tempfile::tempdir().unwrap();
        let rubrics = dir.path().display().to_string();
        for (fast, scenario) in [(true, Scenario::Good), (false, Scenario::CohortRegression)] {
            let yaml = config_yaml(&Fill {
                mock_url: "http://127.0.0.1:9/v1",
                storage_url: "sqlite:///tmp/x y/demo.db",
                rubrics_dir: &rubrics,
                candidate: scenario.candidate_model(),
                pace: Pace::new(fast),
            });
            let c =
                crate::config::Config::from_yaml(std::path::Path::new("demo.yaml"), &yaml, &|_| {
                    None
                })
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.storage_url, "sqlite:///tmp/x y/demo.db");
            let d = c.deployment(DEPLOYMENT).unwrap();
            assert_eq!(d.candidates[0].variant.model, scenario.candidate_model());
            let r = &c.rollouts[DEPLOYMENT];
            let shares: Vec<Exposure> = r.ramp.stages.iter().map(|s| s.exposure).collect();
            let first = if fast { 0.25 } else { 0.1 };
            assert_eq!(
                shares,
                vec![
                    Exposure::Shadow { sample_rate: 1.0 },
                    Exposure::Live { share: first },
                    Exposure::Live { share: 0.5 },
                    Exposure::Live { share: 1.0 },
                ]
            );
            assert_eq!(
                r.ramp.stages[0].min_judged_pairs,
                Pace::new(fast).shadow_pairs
            );
            let names: Vec<&str> = r
                .gate
                .as_ref()
                .unwrap()
                .metrics
                .iter()
                .map(|m| m.name.as_str())
                .collect();
            assert_eq!(names, [JUDGE_METRIC, "error_rate"]);
            assert_eq!(c.controller.tick, Pace::new(fast).tick);
        }
    }

    #[test]
    fn filled_rubric_loads_and_points_at_the_mock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("support-chat.yaml");
        std::fs::write(&path, rubric_yaml("http://127.0.0.1:4321/v1")).unwrap();
        let r = crate::rubric::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.id, "support-chat-demo");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("base_url: http://127.0.0.1:4321/v1"));
        assert!(!text.contains("__"));
    }

    #[test]
    fn each_scenario_expects_its_own_ending() {
        let back = |metric: &str, cohort: &str| Ending::RolledBack {
            stage: "shadow".into(),
            metric: Some(metric.into()),
            cohort: Some(cohort.into()),
            reason: String::new(),
        };
        assert!(Scenario::Good.expects(&Ending::Promoted));
        assert!(!Scenario::Good.expects(&back("helpfulness", "all")));
        assert!(Scenario::Regression.expects(&back("helpfulness", "all")));
        assert!(!Scenario::Regression.expects(&back("error_rate", "all")));
        assert!(!Scenario::Regression.expects(&Ending::Promoted));
        assert!(Scenario::CohortRegression.expects(&back("helpfulness", "tier=enterprise")));
        assert!(!Scenario::CohortRegression.expects(&back("helpfulness", "all")));
        assert!(Scenario::Errors.expects(&back("guardrail.error_rate", "all")));
        assert!(Scenario::Errors.expects(&back("error_rate", "tier=pro")));
        let unfinished = Ending::Unfinished {
            state: "canary".into(),
            stage: "canary-1".into(),
        };
        assert!(!Scenario::Good.expects(&unfinished));
    }
}
