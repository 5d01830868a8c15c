//! The `judge:` section of the config file: where the rubrics are and how the judge workers run.
//! Parsed into [`RawJudge`] (unknown keys rejected), validated into [`JudgeConfig`] with every
//! problem named by field. Per-judge limits (requests and tokens per minute, spend cap) live in
//! the rubric files, not here.
//!
//! ```yaml
//! judge:
//!   enabled: true          # default true when the section is present
//!   rubrics_dir: rubrics   # relative to the working directory
//!   workers: 1
//!   lease: 60s
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Problem;

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJudge {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub rubrics_dir: Option<PathBuf>,
    #[serde(default)]
    pub workers: Option<usize>,
    /// How long a claimed job is reserved for its worker.
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub lease: Option<Duration>,
    /// Jobs each worker judges at once (a free slot is filled as soon as one finishes).
    #[serde(default)]
    pub batch: Option<u32>,
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
    /// Queued jobs kept at most; beyond it the newest are dropped and counted.
    #[serde(default)]
    pub max_backlog: Option<u64>,
    /// Most judge calls in flight per judge endpoint (halved on 429, grown back slowly).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Cached judge answers (0 disables the cache).
    #[serde(default)]
    pub cache_capacity: Option<usize>,
    /// Retries of a rate-limited or failed judge call.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Timeout of one judge call.
    #[schemars(with = "Option<String>")]
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

/// The validated `judge:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeConfig {
    pub enabled: bool,
    pub rubrics_dir: PathBuf,
    pub workers: usize,
    pub lease: Duration,
    pub batch: u32,
    pub poll_interval: Duration,
    pub max_backlog: u64,
    pub max_in_flight: usize,
    pub cache_capacity: usize,
    pub max_retries: u32,
    pub timeout: Duration,
}

pub fn default_rubrics_dir() -> PathBuf {
    PathBuf::from("rubrics")
}
pub fn default_lease() -> Duration {
    Duration::from_secs(60)
}

/// Validates the section; `None` when it is absent.
pub fn judge(raw: Option<RawJudge>, problems: &mut Vec<Problem>) -> Option<JudgeConfig> {
    let raw = raw?;
    let mut push = |field: &str, message: String| {
        problems.push(Problem {
            field: format!("judge.{field}"),
            message,
        });
    };
    let enabled = raw.enabled.unwrap_or(true);
    let rubrics_dir = raw.rubrics_dir.unwrap_or_else(default_rubrics_dir);
    if enabled && !rubrics_dir.is_dir() {
        push(
            "rubrics_dir",
            format!("`{}` is not a folder", rubrics_dir.display()),
        );
    }
    let workers = raw.workers.unwrap_or(1);
    if !(1..=64).contains(&workers) {
        push("workers", format!("{workers} is outside 1..=64"));
    }
    let lease = raw.lease.unwrap_or_else(default_lease);
    if lease < Duration::from_secs(1) {
        push("lease", "must be at least 1s".to_owned());
    }
    let batch = raw.batch.unwrap_or(8);
    if batch == 0 {
        push("batch", "must be at least 1".to_owned());
    }
    let max_in_flight = raw.max_in_flight.unwrap_or(8);
    if max_in_flight == 0 {
        push("max_in_flight", "must be at least 1".to_owned());
    }
    let timeout = raw.timeout.unwrap_or(Duration::from_secs(120));
    if timeout.is_zero() {
        push("timeout", "must be greater than 0".to_owned());
    }
    let poll_interval = raw.poll_interval.unwrap_or(Duration::from_secs(1));
    if poll_interval.is_zero() {
        push("poll_interval", "must be greater than 0".to_owned());
    }
    Some(JudgeConfig {
        enabled,
        rubrics_dir,
        workers,
        lease,
        batch,
        poll_interval,
        max_backlog: raw.max_backlog.unwrap_or(100_000),
        max_in_flight,
        cache_capacity: raw.cache_capacity.unwrap_or(10_000),
        max_retries: raw.max_retries.unwrap_or(3),
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_every_problem_named() {
        let mut problems = Vec::new();
        let ok = judge(Some(RawJudge::default()), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let ok = ok.unwrap();
        assert_eq!(
            (ok.workers, ok.lease, ok.enabled),
            (1, default_lease(), true)
        );
        assert!(judge(None, &mut problems).is_none());
        let bad = RawJudge {
            rubrics_dir: Some("no/such/dir".into()),
            workers: Some(0),
            lease: Some(Duration::from_millis(10)),
            batch: Some(0),
            ..RawJudge::default()
        };
        judge(Some(bad), &mut problems);
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "judge.rubrics_dir",
                "judge.workers",
                "judge.lease",
                "judge.batch"
            ]
        );
    }
}
