//! Mock profiles: the YAML file of named models (`fixtures/mock/profiles.yaml`) → validated
//! [`Profile`]s, and the [`MockConfig`] that a mock server runs with.
//!
//! Owns: parsing (`Raw*` structs with `deny_unknown_fields`) and validation, which reports every
//! problem at once, each naming the file and the field. Never: touches the network.
//! Fails closed: a profiles file with any problem is not used.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::dataset::Dataset;

/// The profiles file compiled into the binary, so that it works from any directory.
pub const BUILTIN_PROFILES: &str = include_str!("../../fixtures/mock/profiles.yaml");
const BUILTIN_PROFILES_NAME: &str = "<builtin>/fixtures/mock/profiles.yaml";

/// Everything that can go wrong setting up the mock.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("{}: cannot read", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A syntax error, a wrong type or an unknown field.
    #[error("{file}: {field}: {message}")]
    Parse {
        file: String,
        field: String,
        message: String,
    },
    /// Values that parse but make no sense, all of them.
    #[error("{file}: {}", problems.join("; "))]
    Invalid { file: String, problems: Vec<String> },
    #[error("{file}:{line}: {message}")]
    Dataset {
        file: String,
        line: usize,
        message: String,
    },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A latency distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    Fixed(Duration),
    /// Lognormal with the given median and 95th percentile.
    LogNormal {
        median: Duration,
        p95: Duration,
    },
}

impl Default for Latency {
    fn default() -> Self {
        Latency::Fixed(Duration::ZERO)
    }
}

/// The status of an injected error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorStatus {
    BadRequest400,
    /// Carries `retry-after`.
    RateLimited429,
    #[default]
    Internal500,
    Unavailable503,
}

impl ErrorStatus {
    pub fn from_code(code: u16) -> Option<Self> {
        match code {
            400 => Some(Self::BadRequest400),
            429 => Some(Self::RateLimited429),
            500 => Some(Self::Internal500),
            503 => Some(Self::Unavailable503),
            _ => None,
        }
    }

    pub fn code(self) -> u16 {
        match self {
            Self::BadRequest400 => 400,
            Self::RateLimited429 => 429,
            Self::Internal500 => 500,
            Self::Unavailable503 => 503,
        }
    }
}

/// How one mock model behaves. `Profile::default()` is instant, always good, never faulty.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Time before a plain response, and before a stream's first chunk unless `ttft` is set.
    pub latency: Latency,
    /// Time to a stream's first chunk; `None` uses `latency`.
    pub ttft: Option<Latency>,
    /// Delay between two chunks of a stream.
    pub chunk_delay: Duration,
    /// Words of answer per stream chunk (at least 1).
    pub words_per_chunk: usize,
    /// Probability of answering `error_status` instead of an answer.
    pub error_rate: f64,
    pub error_status: ErrorStatus,
    /// `retry-after` of a 429, in seconds.
    pub retry_after_secs: u64,
    /// Probability that a stream stops half-way, without finish_reason or `[DONE]`.
    pub truncate_rate: f64,
    /// Probability that a plain body, or one stream chunk, is invalid JSON.
    pub malformed_rate: f64,
    /// Never answer.
    pub hang: bool,
    /// Probability that the answer is the dataset's degraded one.
    pub degraded_rate: f64,
    /// A different `degraded_rate` for requests whose `metadata` has `key: value` (a regression
    /// confined to one cohort, e.g. `tier=enterprise`).
    pub degraded_when: Option<CohortRate>,
    /// A stream waits after its first chunk until `MockServer::release_streams` lets it go on.
    pub hold_after_first_chunk: bool,
    /// The first this-many requests to the model answer `error_status` (e.g. a burst of 429s).
    pub fail_first: u64,
    /// Play the simulated LLM judge (`mock::judge`) instead of answering from the dataset.
    pub judge: bool,
    /// Judge only: probability that the verdict is garbage (not JSON), to exercise repair.
    pub judge_garbage_rate: f64,
    /// Hostile: a streamed chat answer carries a tool-call delta with this `index` (e.g. 2^60).
    pub huge_tool_index: Option<u64>,
    /// Hostile: the answer is padded to this many bytes (one giant chunk in a stream).
    pub answer_bytes: Option<usize>,
    /// Hostile: a stream never ends; after the answer, chunks go on until the client leaves.
    pub endless_stream: bool,
    /// When the request declares `tools`, answer by calling one (`mock::tools`); a degraded
    /// answer's arguments break the tool's schema.
    pub tool_calls: bool,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            latency: Latency::default(),
            ttft: None,
            chunk_delay: Duration::ZERO,
            words_per_chunk: default_words_per_chunk(),
            error_rate: 0.0,
            error_status: ErrorStatus::default(),
            retry_after_secs: default_retry_after_secs(),
            truncate_rate: 0.0,
            malformed_rate: 0.0,
            hang: false,
            degraded_rate: 0.0,
            degraded_when: None,
            hold_after_first_chunk: false,
            fail_first: 0,
            judge: false,
            judge_garbage_rate: 0.0,
            huge_tool_index: None,
            answer_bytes: None,
            endless_stream: false,
            tool_calls: false,
        }
    }
}

/// `degraded_when`: requests whose `metadata.<key>` is `value` are degraded with `rate`.
#[derive(Debug, Clone, PartialEq)]
pub struct CohortRate {
    pub key: String,
    pub value: String,
    pub rate: f64,
}

pub fn default_words_per_chunk() -> usize {
    3
}
pub fn default_retry_after_secs() -> u64 {
    1
}
pub fn default_embedding_dimensions() -> usize {
    8
}
pub fn default_request_log_capacity() -> usize {
    1000
}
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}

/// What a mock server runs with.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// The models it serves, by name.
    pub models: BTreeMap<String, Profile>,
    pub dataset: Arc<Dataset>,
    /// Seed of every random draw (see the module docs of `mock::answer`).
    pub seed: u64,
    /// Where `mock::run` listens (`MockServer::start` always binds 127.0.0.1:0).
    pub listen: SocketAddr,
    /// Length of embedding vectors when the request does not ask for `dimensions`.
    pub embedding_dimensions: usize,
    /// How many recent requests the in-memory log keeps.
    pub request_log_capacity: usize,
    /// `created` of every response; `None` uses the wall clock. Tests that compare response
    /// bytes set it so that two answers a second apart are still identical.
    pub fixed_created: Option<u64>,
}

impl MockConfig {
    /// The profiles and dataset compiled into the binary.
    pub fn builtin() -> Result<Self, MockError> {
        let dataset = Dataset::builtin()?;
        Self::from_parts(BUILTIN_PROFILES_NAME, BUILTIN_PROFILES, dataset)
    }

    /// Reads a profiles YAML file and a dataset JSONL file.
    pub fn from_files(profiles: &Path, dataset: &Path) -> Result<Self, MockError> {
        let text = std::fs::read_to_string(profiles).map_err(|source| MockError::Read {
            path: profiles.to_path_buf(),
            source,
        })?;
        let dataset = Dataset::load(dataset)?;
        Self::from_parts(&profiles.display().to_string(), &text, dataset)
    }

    /// Parses profiles `text` (named `file` in messages) and pairs them with `dataset`.
    pub fn from_parts(file: &str, text: &str, dataset: Dataset) -> Result<Self, MockError> {
        let raw = parse(file, text)?;
        let mut problems = Vec::new();
        let mut models = BTreeMap::new();
        for (name, raw_profile) in raw.models {
            let field = format!("models.{name}");
            if let Some(p) = raw_profile.validate(&field, &mut problems) {
                models.insert(name, p);
            }
        }
        if models.is_empty() && problems.is_empty() {
            problems.push("models: at least one model is needed".to_owned());
        }
        let embedding_dimensions = raw
            .embedding_dimensions
            .unwrap_or_else(default_embedding_dimensions);
        if !(1..=4096).contains(&embedding_dimensions) {
            problems.push(format!(
                "embedding_dimensions: {embedding_dimensions} is outside 1..=4096"
            ));
        }
        let request_log_capacity = raw
            .request_log_capacity
            .unwrap_or_else(default_request_log_capacity);
        if !problems.is_empty() {
            return Err(MockError::Invalid {
                file: file.to_owned(),
                problems,
            });
        }
        Ok(Self {
            models,
            dataset: Arc::new(dataset),
            seed: 0,
            listen: default_listen(),
            embedding_dimensions,
            request_log_capacity,
            fixed_created: None,
        })
    }

    /// Adds or replaces a model.
    pub fn with_model(mut self, name: &str, profile: Profile) -> Self {
        self.models.insert(name.to_owned(), profile);
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn with_fixed_created(mut self, created: u64) -> Self {
        self.fixed_created = Some(created);
        self
    }

    pub fn with_listen(mut self, listen: SocketAddr) -> Self {
        self.listen = listen;
        self
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfiles {
    embedding_dimensions: Option<usize>,
    request_log_capacity: Option<usize>,
    #[serde(default)]
    models: BTreeMap<String, RawProfile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    latency: Option<RawLatency>,
    ttft: Option<RawLatency>,
    chunk_delay_ms: Option<u64>,
    words_per_chunk: Option<usize>,
    error_rate: Option<f64>,
    error_status: Option<u16>,
    retry_after_secs: Option<u64>,
    truncate_rate: Option<f64>,
    malformed_rate: Option<f64>,
    hang: Option<bool>,
    degraded_rate: Option<f64>,
    degraded_when: Option<RawCohortRate>,
    hold_after_first_chunk: Option<bool>,
    fail_first: Option<u64>,
    judge: Option<bool>,
    judge_garbage_rate: Option<f64>,
    huge_tool_index: Option<u64>,
    answer_bytes: Option<usize>,
    endless_stream: Option<bool>,
    tool_calls: Option<bool>,
}

/// `{metadata: "tier=enterprise", rate: 0.6}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCohortRate {
    metadata: String,
    rate: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLatency {
    fixed_ms: Option<u64>,
    median_ms: Option<f64>,
    p95_ms: Option<f64>,
}

fn parse(file: &str, text: &str) -> Result<RawProfiles, MockError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| MockError::Parse {
        file: file.to_owned(),
        field: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

impl RawLatency {
    fn validate(&self, field: &str, problems: &mut Vec<String>) -> Option<Latency> {
        match (self.fixed_ms, self.median_ms, self.p95_ms) {
            (Some(ms), None, None) => Some(Latency::Fixed(Duration::from_millis(ms))),
            (None, Some(median), Some(p95)) => {
                if !(median > 0.0 && median.is_finite() && p95 >= median && p95.is_finite()) {
                    problems.push(format!(
                        "{field}: need 0 < median_ms <= p95_ms, got median_ms {median}, p95_ms {p95}"
                    ));
                    return None;
                }
                Some(Latency::LogNormal {
                    median: Duration::from_secs_f64(median / 1000.0),
                    p95: Duration::from_secs_f64(p95 / 1000.0),
                })
            }
            _ => {
                problems.push(format!(
                    "{field}: give either fixed_ms, or median_ms and p95_ms"
                ));
                None
            }
        }
    }
}

impl RawProfile {
    fn validate(self, field: &str, problems: &mut Vec<String>) -> Option<Profile> {
        let before = problems.len();
        let d = Profile::default();
        let mut rate = |name: &str, value: Option<f64>| {
            let v = value.unwrap_or(0.0);
            if !(0.0..=1.0).contains(&v) {
                problems.push(format!(
                    "{field}.{name}: {v} is not a probability in [0, 1]"
                ));
            }
            v
        };
        let error_rate = rate("error_rate", self.error_rate);
        let truncate_rate = rate("truncate_rate", self.truncate_rate);
        let malformed_rate = rate("malformed_rate", self.malformed_rate);
        let degraded_rate = rate("degraded_rate", self.degraded_rate);
        let judge_garbage_rate = rate("judge_garbage_rate", self.judge_garbage_rate);
        let when_rate = self
            .degraded_when
            .as_ref()
            .map(|w| rate("degraded_when.rate", Some(w.rate)));
        let degraded_when = match (&self.degraded_when, when_rate) {
            (Some(w), Some(rate)) => match w.metadata.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => Some(CohortRate {
                    key: k.trim().to_owned(),
                    value: v.trim().to_owned(),
                    rate,
                }),
                _ => {
                    problems.push(format!(
                        "{field}.degraded_when.metadata: expected `key=value`, got `{}`",
                        w.metadata
                    ));
                    None
                }
            },
            _ => None,
        };
        let latency = match &self.latency {
            Some(l) => l.validate(&format!("{field}.latency"), problems),
            None => Some(d.latency),
        };
        let ttft = match &self.ttft {
            Some(l) => l.validate(&format!("{field}.ttft"), problems).map(Some),
            None => Some(None),
        };
        let words_per_chunk = self.words_per_chunk.unwrap_or(d.words_per_chunk);
        if words_per_chunk == 0 {
            problems.push(format!("{field}.words_per_chunk: must be at least 1"));
        }
        let error_status = match self.error_status {
            None => Some(d.error_status),
            Some(code) => {
                let s = ErrorStatus::from_code(code);
                if s.is_none() {
                    problems.push(format!(
                        "{field}.error_status: {code} is not one of 400, 429, 500, 503"
                    ));
                }
                s
            }
        };
        if problems.len() > before {
            return None;
        }
        Some(Profile {
            latency: latency?,
            ttft: ttft?,
            chunk_delay: Duration::from_millis(self.chunk_delay_ms.unwrap_or(0)),
            words_per_chunk,
            error_rate,
            error_status: error_status?,
            retry_after_secs: self.retry_after_secs.unwrap_or(d.retry_after_secs),
            truncate_rate,
            malformed_rate,
            hang: self.hang.unwrap_or(false),
            degraded_rate,
            degraded_when,
            hold_after_first_chunk: self.hold_after_first_chunk.unwrap_or(false),
            fail_first: self.fail_first.unwrap_or(0),
            judge: self.judge.unwrap_or(false),
            judge_garbage_rate,
            huge_tool_index: self.huge_tool_index,
            answer_bytes: self.answer_bytes,
            endless_stream: self.endless_stream.unwrap_or(false),
            tool_calls: self.tool_calls.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<MockConfig, MockError> {
        MockConfig::from_parts("p.yaml", text, Dataset::default())
    }

    #[test]
    fn builtin_has_the_promised_models() {
        let c = MockConfig::builtin().unwrap();
        for m in [
            "mock-stable",
            "mock-candidate-good",
            "mock-candidate-bad",
            "mock-fast",
            "mock-50ms",
            "mock-hang",
            "mock-500",
            "mock-malformed",
            "mock-slow-stream",
            "mock-truncated",
        ] {
            assert!(c.models.contains_key(m), "{m} missing");
        }
        assert_eq!(c.models["mock-fast"], Profile::default());
        assert_eq!(
            c.models["mock-50ms"].latency,
            Latency::Fixed(Duration::from_millis(50))
        );
        assert!(c.models["mock-hang"].hang);
        assert!(
            c.models["mock-candidate-bad"].degraded_rate
                > c.models["mock-stable"].degraded_rate * 4.0
        );
        assert_eq!(c.embedding_dimensions, 8);
    }

    #[test]
    fn unknown_field_names_file_and_field() {
        let e = load("models:\n  m:\n    latncy: {fixed_ms: 3}\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("p.yaml: models.m.latncy"), "{msg}");
        assert!(msg.contains("unknown field"), "{msg}");
        let e = load("models:\n  m:\n    latency: {fixed: 3}\n").unwrap_err();
        assert!(e.to_string().contains("models.m.latency.fixed"), "{e}");
    }

    #[test]
    fn every_problem_is_reported() {
        let text = "embedding_dimensions: 0\nmodels:\n  a: {error_rate: 1.5, error_status: 418}\n  b: {latency: {median_ms: 50, p95_ms: 10}, words_per_chunk: 0}\n  c: {latency: {fixed_ms: 1, median_ms: 3}}\n";
        let MockError::Invalid { file, problems } = load(text).unwrap_err() else {
            panic!("expected Invalid")
        };
        assert_eq!(file, "p.yaml");
        let all = problems.join("\n");
        for needle in [
            "models.a.error_rate",
            "models.a.error_status: 418",
            "models.b.latency",
            "models.b.words_per_chunk",
            "models.c.latency",
            "embedding_dimensions",
        ] {
            assert!(all.contains(needle), "{needle} not in {all}");
        }
        assert_eq!(problems.len(), 6, "{all}");
    }

    #[test]
    fn lognormal_and_defaults() {
        let c = load("models:\n  m: {latency: {median_ms: 30, p95_ms: 60}, ttft: {fixed_ms: 5}}\n")
            .unwrap();
        let p = &c.models["m"];
        assert_eq!(
            p.latency,
            Latency::LogNormal {
                median: Duration::from_millis(30),
                p95: Duration::from_millis(60)
            }
        );
        assert_eq!(p.ttft, Some(Latency::Fixed(Duration::from_millis(5))));
        assert_eq!(p.words_per_chunk, 3);
        assert_eq!(c.request_log_capacity, 1000);
    }
}
