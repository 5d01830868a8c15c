//! Everything `canarist demo` runs in its one process, started as `canarist serve` starts it:
//! the mock upstream (stable, candidate and the SIMULATED judge), the gateway on a fresh SQLite
//! database, the judge workers, the rollout controller with its guardrails. Plus the two things
//! done at the end: the stage reports and, with `--keep-running`, admin and viewer keys.
//!
//! Owns: the demo's working directory (config, rubric, database, reports) and the start and
//! shutdown order. Never: decides anything about the rollout. Fails closed: any part that does
//! not start stops the demo with an error naming it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::scenario::{self, Fill, Pace, Scenario};
use crate::app::{Options, Runtime, Storage};
use crate::config::Config;
use crate::http::admin::Role;
use crate::mock::{MockConfig, MockServer};
use crate::report::{BuildOptions, build_all, file_name, to_html, to_markdown};
use crate::rollout::actions::RolloutCtx;
use crate::store::Store;

/// The running parts.
pub struct Stack {
    pub mock: MockServer,
    /// The gateway with everything `serve` runs around it (judge workers, guardrails,
    /// controller, retention).
    pub runtime: Runtime,
    pub store: Store,
    /// What the demo starts its rollout and reads its log with (the runtime's).
    pub rollouts: RolloutCtx,
    pub config: Arc<Config>,
    pub dir: PathBuf,
}

/// Files of a fresh run in `dir`: removes the previous run's database and reports.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("rubrics"))
        .with_context(|| format!("creating {}", dir.display()))?;
    for name in ["demo.db", "demo.db-wal", "demo.db-shm"] {
        let p = dir.join(name);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    let reports = dir.join("reports");
    if reports.exists() {
        std::fs::remove_dir_all(&reports)
            .with_context(|| format!("removing {}", reports.display()))?;
    }
    Ok(())
}

impl Stack {
    /// Starts every part for `scenario` in `dir`, the gateway listening on `listen`.
    pub async fn start(
        dir: &Path,
        scenario: Scenario,
        pace: Pace,
        listen: std::net::SocketAddr,
        seed: u64,
    ) -> anyhow::Result<Stack> {
        prepare_dir(dir)?;
        let dir = std::path::absolute(dir).with_context(|| format!("{}", dir.display()))?;
        let mock = MockServer::start(MockConfig::builtin()?.with_seed(seed))
            .await
            .map_err(|e| anyhow::anyhow!("cannot start the mock upstream: {e}"))?;
        let mock_url = mock.base_url();
        let rubric_path = dir.join("rubrics").join("support-chat.yaml");
        std::fs::write(&rubric_path, scenario::rubric_yaml(&mock_url))
            .with_context(|| format!("writing {}", rubric_path.display()))?;
        let db = dir.join("demo.db");
        let yaml = scenario::config_yaml(&Fill {
            mock_url: &mock_url,
            storage_url: &format!("sqlite://{}", db.display()),
            rubrics_dir: &dir.join("rubrics").display().to_string(),
            candidate: scenario.candidate_model(),
            pace,
        });
        let config_path = dir.join("canarist.yaml");
        std::fs::write(&config_path, &yaml)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let config = Config::from_yaml(&config_path, &yaml, &|name| std::env::var(name).ok())?;
        let store = Store::connect(&config.storage_url)
            .await
            .with_context(|| format!("opening the demo database {}", db.display()))?;
        let shared = Arc::new(config.clone());
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("starting the gateway on {listen}"))?;
        let options = Options {
            storage: Storage::Use(store.clone()),
            grace: Duration::from_secs(5),
            ..Options::default()
        };
        let runtime = Runtime::start_with(config, listener, options)
            .await
            .with_context(|| format!("starting the gateway on {listen}"))?;
        let rollouts = runtime
            .rollouts()
            .map(|r| r.ctx.clone())
            .context("the demo's gateway runs no rollout controller")?;
        Ok(Stack {
            mock,
            runtime,
            store,
            rollouts,
            config: shared,
            dir,
        })
    }

    /// Pairs the judge has scored since the start.
    pub fn pairs_judged(&self) -> u64 {
        self.runtime.judge().map_or(0, |j| {
            crate::judge::JudgeStats::get(&j.judge.stats().pairs_judged)
        })
    }

    /// Waits until the judge has caught up with the queue (at most `limit`).
    pub async fn drain_judge(&self, limit: Duration) {
        let start = tokio::time::Instant::now();
        let mut last = u64::MAX;
        while start.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = self.pairs_judged();
            if now == last {
                return;
            }
            last = now;
        }
    }

    /// Writes every stage's report of the latest rollout as HTML, Markdown and JSON into
    /// `<dir>/reports`; returns the paths, HTML first per stage.
    pub async fn write_reports(&self) -> anyhow::Result<Vec<PathBuf>> {
        let settings = self.config.rollouts.get(scenario::DEPLOYMENT);
        let opts = BuildOptions {
            policy: settings.and_then(|s| s.gate.clone()),
            ramp: settings.map(|s| s.ramp.clone()),
            models: self
                .config
                .deployment(scenario::DEPLOYMENT)
                .map(crate::report::Models::of),
            ..BuildOptions::default()
        };
        let reports = build_all(&self.store, scenario::DEPLOYMENT, &opts).await?;
        let out = self.dir.join("reports");
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let mut paths = Vec::new();
        for r in &reports {
            for (ext, text) in [
                ("html", to_html(r)),
                ("md", to_markdown(r)),
                ("json", crate::report::to_json(r)?),
            ] {
                let path = out.join(file_name(r, ext));
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                paths.push(path);
            }
        }
        Ok(paths)
    }

    /// An admin key and a viewer key for the admin API and the dashboard.
    pub async fn create_keys(&self) -> anyhow::Result<(String, String)> {
        let keys = crate::http::admin::keys::create_key;
        let (admin, _) = keys(&self.store, "demo-admin", Role::Admin, "canarist demo").await?;
        let (viewer, _) = keys(&self.store, "demo-viewer", Role::Viewer, "canarist demo").await?;
        Ok((admin, viewer))
    }

    /// Stops everything, in the reverse order of the start.
    pub async fn shutdown(self) {
        self.runtime.shutdown().await;
        self.mock.shutdown().await;
        self.store.close().await;
    }
}
