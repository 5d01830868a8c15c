//! [`TrafficState`]: the part of a deployment that changes at run time (mode, stage, stable,
//! candidates and their shares), as the rollout controller and the admin API set it and the
//! store persists it. Applying it to the config file's deployment gives the live deployment.

use serde::{Deserialize, Serialize};

use crate::config::{Candidate, CohortAction, CohortRule, Deployment, Mode, Variant};

/// A variant as stored in a traffic state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantState {
    pub name: String,
    pub provider: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// A candidate and its share in buckets (0..=10000, i.e. 0.01% steps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateState {
    #[serde(flatten)]
    pub variant: VariantState,
    pub buckets: u16,
}

/// The run-time traffic of one deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficState {
    /// `off`, `shadow` or `live`.
    pub mode: Mode,
    pub stage: String,
    pub stable: VariantState,
    pub candidates: Vec<CandidateState>,
    /// Whether a guardrail trip takes the candidates' traffic away at once (`true`, the
    /// default) or only records and alerts. Set by `POST /api/v1/gateway/canary`
    /// (`auto_rollback`); rollouts always roll back on a trip. Stored only when off.
    #[serde(default = "auto_rollback_on", skip_serializing_if = "is_on")]
    pub auto_rollback: bool,
    /// Cohort labels (`key`, `value`) kept out of the candidate whatever its share: a ramp
    /// stage's `exclude_cohorts`, on top of the deployment's own `cohorts.rules`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_cohorts: Vec<(String, String)>,
}

fn auto_rollback_on() -> bool {
    true
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_on(b: &bool) -> bool {
    *b
}

impl From<&Variant> for VariantState {
    fn from(v: &Variant) -> Self {
        Self {
            name: v.name.clone(),
            provider: v.provider.clone(),
            model: v.model.clone(),
            system_prompt: v.system_prompt.clone(),
            params: v.params.clone(),
        }
    }
}

impl From<&VariantState> for Variant {
    fn from(v: &VariantState) -> Self {
        Self {
            name: v.name.clone(),
            provider: v.provider.clone(),
            model: v.model.clone(),
            system_prompt: v.system_prompt.clone(),
            params: v.params.clone(),
        }
    }
}

impl TrafficState {
    /// The traffic part of `deployment`.
    pub fn of(deployment: &Deployment) -> Self {
        Self {
            mode: deployment.mode,
            stage: deployment.stage.clone(),
            stable: VariantState::from(&deployment.stable),
            candidates: deployment
                .candidates
                .iter()
                .map(|c| CandidateState {
                    variant: VariantState::from(&c.variant),
                    buckets: c.buckets,
                })
                .collect(),
            auto_rollback: true,
            exclude_cohorts: Vec::new(),
        }
    }

    /// `base` (from the config file) with this state applied.
    pub fn apply(&self, base: &Deployment) -> Deployment {
        let mut d = base.clone();
        d.mode = self.mode;
        d.stage.clone_from(&self.stage);
        d.stable = Variant::from(&self.stable);
        d.stable.name = "stable".to_owned();
        d.candidates = self
            .candidates
            .iter()
            .map(|c| Candidate {
                variant: Variant::from(&c.variant),
                buckets: c.buckets.min(crate::routing::BUCKETS),
            })
            .collect();
        d.cohorts
            .rules
            .extend(self.exclude_cohorts.iter().map(|kv| CohortRule {
                matches: vec![kv.clone()],
                action: CohortAction::Exclude {
                    until_buckets: None,
                },
            }));
        d
    }
}

impl TrafficState {
    /// A deployment that exists only in the store (created through the admin API, e.g.
    /// `POST /api/v1/gateway/canary` for a model no deployment serves): this state applied to
    /// the config defaults, answering clients that send model `slug`.
    pub fn standalone(&self, slug: &str) -> Deployment {
        let base = Deployment {
            slug: slug.to_owned(),
            model: slug.to_owned(),
            mode: Mode::Off,
            stage: crate::config::default_stage(),
            salt: slug.to_owned(),
            stable: Variant::from(&self.stable),
            candidates: Vec::new(),
            shadow_timeout: crate::config::default_shadow_timeout(),
            mirror_embeddings: false,
            pair_sample_buckets: 0,
            aa_buckets: 0,
            fallback_to_stable: false,
            spend_cap: crate::config::SpendCap::default(),
            cohorts: crate::config::Cohorts::default(),
            unit_key_from: None,
        };
        self.apply(&base)
    }
}
