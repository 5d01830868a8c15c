//! [`LiveTraffic`]: this process's live traffic table — the one atomic swap every request reads
//! and every traffic change replaces — plus its reload from the store.
//!
//! Owns: the `ArcSwap`'d [`TrafficTable`] and how it is rebuilt from the stored traffic states
//! (the config's deployments overlaid with what the store holds, at the store's config version).
//! Never: decides a change (the traffic service and the rollout actions do) or knows about
//! metrics — whoever builds it passes an observer that hears about every new table. Fails safe:
//! a reload that cannot read the store keeps the table in force.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::routing::TrafficTable;
use crate::store::{ConfigWatcher, Store, StoreError};

/// Called with every table that is swapped in (the gateway updates its gauges from it).
pub type TableObserver = Arc<dyn Fn(&TrafficTable) + Send + Sync>;

struct Inner {
    table: ArcSwap<TrafficTable>,
    config: Arc<Config>,
    store: Option<Store>,
    observe: TableObserver,
}

/// A handle on the live traffic table. Cheap to clone; every clone sees the same table.
#[derive(Clone)]
pub struct LiveTraffic {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LiveTraffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTraffic")
            .field("version", &self.inner.table.load().version)
            .field("store", &self.inner.store.is_some())
            .finish()
    }
}

impl LiveTraffic {
    /// The config file's traffic (version 1); `store`, when given, is where [`reload`] reads
    /// the stored states from.
    ///
    /// [`reload`]: LiveTraffic::reload
    pub fn new(config: Arc<Config>, store: Option<Store>, observe: TableObserver) -> Self {
        let table = TrafficTable::new(1, config.deployments.iter().cloned());
        observe(&table);
        Self {
            inner: Arc::new(Inner {
                table: ArcSwap::from_pointee(table),
                config,
                store,
                observe,
            }),
        }
    }

    /// The table in force (one atomic load).
    pub fn load(&self) -> Guard<Arc<TrafficTable>> {
        self.inner.table.load()
    }

    /// The table in force, as an owned `Arc` (for holding across awaits).
    pub fn load_full(&self) -> Arc<TrafficTable> {
        self.inner.table.load_full()
    }

    /// Replaces the table (one atomic store).
    pub fn set(&self, table: TrafficTable) {
        (self.inner.observe)(&table);
        self.inner.table.store(Arc::new(table));
    }

    /// The store the states are read from, if any.
    pub fn store(&self) -> Option<&Store> {
        self.inner.store.as_ref()
    }

    /// Re-reads the stored traffic states and swaps in the resulting table; returns the store's
    /// config version. Without a store this changes nothing.
    pub async fn reload(&self) -> Result<u64, StoreError> {
        let Some(store) = &self.inner.store else {
            return Ok(self.load().version);
        };
        let version = store.config_version().await?;
        let states = store.traffic_states().await?;
        let table = TrafficTable::overlaid(
            version.max(1),
            &self.inner.config.deployments,
            states.iter().map(|s| (s.deployment.as_str(), &s.state)),
        );
        self.set(table);
        Ok(version)
    }

    /// Follows the store: reloads whenever its config version changes (a `NOTIFY` on Postgres,
    /// a poll every `poll` in any case), on `tracker`, until `cancel`. Without a store this
    /// starts nothing.
    pub async fn watch(
        &self,
        poll: Duration,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<(), StoreError> {
        let Some(store) = self.store() else {
            return Ok(());
        };
        let mut watcher = ConfigWatcher::new(store, poll).await?;
        let live = self.clone();
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    version = watcher.changed() => match live.reload().await {
                        Ok(_) => tracing::info!(version, "traffic config reloaded"),
                        Err(error) => tracing::warn!(%error, "traffic config reload failed; keeping the current one"),
                    },
                }
            }
        });
        Ok(())
    }

    /// Reloads after a change this process has just stored; a failure is only logged, since
    /// the config-version watch applies the change within a second anyway.
    pub async fn reload_after_change(&self, deployment: &str, what: &str) {
        if let Err(error) = self.reload().await {
            tracing::warn!(%error, deployment, "traffic reload after {what} failed; the watcher retries");
        }
    }
}
