//! The traffic service: the one path every change of a deployment's traffic takes — rollout
//! transitions (`actions`), the admin API's canaries and traffic PATCHes, and the canary guard.
//! It writes the new [`TrafficState`] to the store (with its audit entry, compare-and-set on
//! the deployment's stored config version where the caller read the state first), then swaps
//! this process's [`LiveTraffic`] so that its very next request follows the change; other
//! replicas follow on the version bump.
//!
//! Owns: the read-modify-write loop, the audit entry of a traffic change and the reload.
//! Never: decides what the new state is (the pure operations in `routing::ops` and the rollout
//! state machine do). Fails closed: a change that cannot be stored with its audit entry does
//! not take effect.

use std::sync::Arc;

use serde_json::Value;

use super::LiveTraffic;
use crate::config::Config;
use crate::routing::TrafficState;
use crate::store::{NewAuditEntry, Store, StoreError};

/// How often a change is retried after losing a compare-and-set race.
pub const CAS_ATTEMPTS: usize = 64;

/// What the audit log records about a change.
#[derive(Debug, Clone)]
pub struct Audit<'a> {
    /// e.g. `traffic.canary`, `traffic.update_traffic`, `traffic.rollback`.
    pub action: &'a str,
    /// An API key id, a token subject, `guardrail`.
    pub actor: &'a str,
    pub detail: Value,
}

/// A change that did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// Other writers won the compare-and-set every time.
    #[error("deployment `{deployment}` changed concurrently {attempts} times in a row; retry")]
    Conflict { deployment: String, attempts: usize },
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
}

/// A deployment's traffic as it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    pub state: TrafficState,
    /// The config version it was stored under; `None`: nothing stored, the config file's.
    pub version: Option<u64>,
}

/// The traffic service of one process.
#[derive(Clone)]
pub struct TrafficService {
    store: Store,
    config: Arc<Config>,
    live: Option<LiveTraffic>,
}

impl TrafficService {
    /// `live`: this process's table, swapped after every change (`None`: the CLI).
    pub fn new(store: Store, config: Arc<Config>, live: Option<LiveTraffic>) -> Self {
        Self {
            store,
            config,
            live,
        }
    }

    /// The deployment's traffic as stored, or as the config file has it when nothing is
    /// stored; `None`: no such deployment.
    pub async fn current(&self, slug: &str) -> Result<Option<Current>, StoreError> {
        if let Some((state, version)) = self.store.traffic_state(slug).await? {
            return Ok(Some(Current {
                state,
                version: Some(version),
            }));
        }
        Ok(self.config.deployment(slug).map(|d| Current {
            state: TrafficState::of(d),
            version: None,
        }))
    }

    /// Read-modify-write with compare-and-set: `change` maps the current traffic (`None` when
    /// the deployment does not exist) to the new state, and is re-run on the fresh state
    /// whenever another writer got there first (up to [`CAS_ATTEMPTS`] times). Returns the new
    /// config version and what `change` returned.
    pub async fn change<R, E>(
        &self,
        slug: &str,
        audit: &Audit<'_>,
        change: impl Fn(Option<&Current>) -> Result<(TrafficState, R), E>,
    ) -> Result<(u64, R), E>
    where
        E: From<ChangeError>,
    {
        for _ in 0..CAS_ATTEMPTS {
            let cur = self.current(slug).await.map_err(ChangeError::from)?;
            let (next, result) = change(cur.as_ref())?;
            let expected = cur.as_ref().and_then(|c| c.version);
            if let Some(version) = self
                .compare_and_set(slug, expected, &next, audit)
                .await
                .map_err(ChangeError::from)?
            {
                return Ok((version, result));
            }
        }
        Err(ChangeError::Conflict {
            deployment: slug.to_owned(),
            attempts: CAS_ATTEMPTS,
        }
        .into())
    }

    /// Stores `next` with its audit entry if the deployment's stored version is still
    /// `expected` (`None`: nothing stored yet), then reloads; `Ok(None)` when another writer
    /// got there first (nothing changed).
    pub async fn compare_and_set(
        &self,
        slug: &str,
        expected: Option<u64>,
        next: &TrafficState,
        audit: &Audit<'_>,
    ) -> Result<Option<u64>, StoreError> {
        let entry = NewAuditEntry {
            deployment: Some(slug),
            action: audit.action,
            actor: audit.actor,
            detail: audit.detail.clone(),
        };
        let version = self
            .store
            .put_traffic_if(slug, expected, next, &entry)
            .await?;
        if version.is_some() {
            self.reload(slug, audit.action).await;
        }
        Ok(version)
    }

    /// Stores `state` unconditionally, then reloads: a rollout transition's traffic, whose
    /// compare-and-set and audit entry were the transition's own (persisted just before).
    pub async fn put(
        &self,
        slug: &str,
        state: &TrafficState,
        actor: &str,
    ) -> Result<u64, StoreError> {
        let version = self.store.put_traffic(slug, state, actor).await?;
        self.reload(slug, "rollout.transition").await;
        Ok(version)
    }

    /// Swaps this process's table (a failure is logged: the config-version watch applies the
    /// stored change within a second anyway).
    pub async fn reload(&self, slug: &str, what: &str) {
        if let Some(live) = &self.live {
            live.reload_after_change(slug, what).await;
        }
    }
}
