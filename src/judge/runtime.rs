//! Running the judge inside `canarist serve`: loads the rubrics named by the config's `judge:`
//! section ([`prepare`], before the gateway starts, since the capture sink runs their checks),
//! then builds the [`Judge`], registers its counters on the gateway's `/metrics`, and starts the
//! workers on their own task tracker so that shutdown can stop them ([`JudgeSetup::start`]).
//!
//! Fails closed at start (an invalid rubric folder stops `serve` with every problem listed) and
//! open afterwards (a judge that is down only delays scores).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{JudgeConfig, Price};
use crate::rubric::{Rubric, RubricError, load_dir};
use crate::store::Store;
use crate::telemetry::Metrics;

use super::checker::Checker;
use super::client::ClientError;
use super::engine::{Judge, JudgeOptions};
use super::stats::{JudgeCollector, JudgeStats};
use super::worker::{WorkerConfig, spawn_workers};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("judge.rubrics_dir: {0}")]
    Rubrics(#[from] RubricError),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The running workers.
#[derive(Debug)]
pub struct JudgeRuntime {
    pub judge: Arc<Judge>,
    /// The checks the capture sink runs (see [`JudgeSetup::checker`]).
    pub checker: Arc<Checker>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl JudgeRuntime {
    /// Stops polling and waits for the judgments in progress.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// The [`JudgeOptions`] a config asks for.
pub fn options(cfg: &JudgeConfig, prices: &BTreeMap<String, Price>) -> JudgeOptions {
    JudgeOptions {
        max_in_flight: cfg.max_in_flight,
        max_retries: cfg.max_retries,
        timeout: cfg.timeout,
        cache_capacity: cfg.cache_capacity,
        prices: prices.clone(),
        ..JudgeOptions::default()
    }
}

/// The rubrics and counters, loaded before the gateway starts: the capture sink needs the
/// [`Checker`] (`serve` builds it into the sink), the workers start afterwards.
#[derive(Debug)]
pub struct JudgeSetup {
    cfg: JudgeConfig,
    rubrics: Vec<Rubric>,
    stats: Arc<JudgeStats>,
    /// The rubrics' deterministic checks, for [`super::CheckingSink`].
    pub checker: Arc<Checker>,
}

/// Loads the rubrics when the section is present and enabled and the folder has rubrics.
pub fn prepare(cfg: Option<&JudgeConfig>) -> Result<Option<JudgeSetup>, StartError> {
    let Some(cfg) = cfg.filter(|c| c.enabled) else {
        return Ok(None);
    };
    let rubrics = load_dir(&cfg.rubrics_dir)?;
    if rubrics.is_empty() {
        tracing::warn!(dir = %cfg.rubrics_dir.display(), "no rubrics: the judge worker is not started");
        return Ok(None);
    }
    let stats = JudgeStats::new();
    let checker = Arc::new(Checker::new(rubrics.clone(), stats.clone()));
    Ok(Some(JudgeSetup {
        cfg: cfg.clone(),
        rubrics,
        stats,
        checker,
    }))
}

impl JudgeSetup {
    /// Builds the [`Judge`], registers its counters on `/metrics` and starts the workers.
    pub fn start(
        self,
        prices: &BTreeMap<String, Price>,
        store: &Store,
        metrics: &Metrics,
    ) -> Result<JudgeRuntime, StartError> {
        let Self {
            cfg,
            rubrics,
            stats,
            checker,
        } = self;
        metrics.register_collector(Box::new(JudgeCollector::new(stats.clone())));
        let n = rubrics.len();
        let judge = Arc::new(
            Judge::new(rubrics, options(&cfg, prices), stats)?.with_traces(metrics.traces.clone()),
        );
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let worker = WorkerConfig {
            lease: cfg.lease,
            batch: cfg.batch,
            poll_interval: cfg.poll_interval,
            max_backlog: Some(cfg.max_backlog),
            ..WorkerConfig::default()
        };
        spawn_workers(cfg.workers, store, &judge, &worker, &tracker, &cancel);
        tracing::info!(rubrics = n, workers = cfg.workers, "judge workers started");
        Ok(JudgeRuntime {
            judge,
            checker,
            tracker,
            cancel,
        })
    }
}

/// [`prepare`] then [`JudgeSetup::start`]: the workers, when the section is present, enabled
/// and the folder has rubrics.
pub fn start(
    cfg: Option<&JudgeConfig>,
    prices: &BTreeMap<String, Price>,
    store: &Store,
    metrics: &Metrics,
) -> Result<Option<JudgeRuntime>, StartError> {
    prepare(cfg)?
        .map(|setup| setup.start(prices, store, metrics))
        .transpose()
}
