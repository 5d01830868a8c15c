//! The live traffic configuration: every deployment by the model alias clients send, with its
//! precomputed hash seed. Held behind an `ArcSwap` by the gateway so that a change (a new
//! percentage, a rollback) is one atomic store.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Deployment;

use super::hash_seed;

/// One deployment as routing sees it.
#[derive(Debug, Clone)]
pub struct RoutedDeployment {
    pub deployment: Deployment,
    pub seed: u64,
}

impl RoutedDeployment {
    pub fn new(deployment: Deployment) -> Self {
        let seed = hash_seed(
            &deployment.salt,
            deployment
                .candidates
                .iter()
                .map(|c| c.variant.name.as_str()),
        );
        Self { deployment, seed }
    }
}

/// All deployments at one config version.
#[derive(Debug, Clone, Default)]
pub struct TrafficTable {
    /// Bumped by every change; stamped on every observation.
    pub version: u64,
    by_model: HashMap<String, Arc<RoutedDeployment>>,
    /// Slugs in config order (for `/v1/models`).
    order: Vec<String>,
}

impl TrafficTable {
    pub fn new(version: u64, deployments: impl IntoIterator<Item = Deployment>) -> Self {
        let mut by_model = HashMap::new();
        let mut order = Vec::new();
        for d in deployments {
            order.push(d.model.clone());
            by_model.insert(d.model.clone(), Arc::new(RoutedDeployment::new(d)));
        }
        Self {
            version,
            by_model,
            order,
        }
    }

    /// The config file's deployments with the stored traffic states applied. A state whose
    /// deployment is not in the config is a deployment created through the admin API
    /// ([`super::TrafficState::standalone`]); it is added unless its model alias is taken.
    pub fn overlaid<'a>(
        version: u64,
        base: &[Deployment],
        states: impl IntoIterator<Item = (&'a str, &'a super::TrafficState)>,
    ) -> Self {
        let states: Vec<(&str, &super::TrafficState)> = states.into_iter().collect();
        let by_slug: HashMap<&str, &super::TrafficState> = states.iter().copied().collect();
        let mut deployments: Vec<Deployment> = base
            .iter()
            .map(|d| match by_slug.get(d.slug.as_str()) {
                Some(state) => state.apply(d),
                None => d.clone(),
            })
            .collect();
        for (slug, state) in states {
            let taken = deployments
                .iter()
                .any(|d| d.slug == slug || d.model == slug);
            if !taken {
                deployments.push(state.standalone(slug));
            }
        }
        Self::new(version, deployments)
    }

    /// The deployment clients reach with `model`.
    pub fn by_model(&self, model: &str) -> Option<&Arc<RoutedDeployment>> {
        self.by_model.get(model)
    }

    pub fn by_slug(&self, slug: &str) -> Option<&Arc<RoutedDeployment>> {
        self.by_model.values().find(|d| d.deployment.slug == slug)
    }

    /// Deployments in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<RoutedDeployment>> {
        self.order.iter().filter_map(|m| self.by_model.get(m))
    }

    /// A copy with `slug` replaced by `f(deployment)` and the version bumped.
    pub fn with_change(&self, slug: &str, f: impl FnOnce(&mut Deployment)) -> Option<TrafficTable> {
        let current = self.by_slug(slug)?;
        let mut changed = current.deployment.clone();
        f(&mut changed);
        let mut next = self.clone();
        next.version = self.version + 1;
        next.by_model.remove(&current.deployment.model);
        for m in next.order.iter_mut() {
            if m == &current.deployment.model {
                m.clone_from(&changed.model);
            }
        }
        next.by_model.insert(
            changed.model.clone(),
            Arc::new(RoutedDeployment::new(changed)),
        );
        Some(next)
    }
}
