//! `judge`: scores matched pairs against the rubrics — deterministic checks on every applicable
//! pair as it is captured (`checker`, run by the store sink), LLM criteria (through async-openai,
//! strict JSON-schema output) on each rubric's sample by the worker. `canarist replay`, the same
//! judging offline on a golden dataset, is subcommand glue in `cli::replay` over [`Judge`].
//!
//! Layout: `client` (one endpoint: request building, transport, error classes), `limits`
//! (requests and tokens per minute on tokio's clock, back-off after 429, spend per stage),
//! `concurrency` (calls in flight, halved on 429, grown back slowly), `cache` (bounded LRU of
//! parsed answers), `call` (one question: cache, limits, retries, the repair retry, abstention),
//! `rows` (store rows), `checker` (the checks at capture), `engine` ([`Judge`]: one pair against every rubric), `worker` (the job
//! loop on the store), `stats` (counters and their `/metrics` collector), `runtime` (the workers inside `serve`).
//!
//! Owns: every call to a judge model. Never: runs on the request path or decides a rollout.
//! Fails open for the gateway (a judge outage delays scores, nothing else) and closed for
//! scores: a judgment that was not made is an abstention with a reason, never a default score.
//! Stored scores are normalized to 0..=1.

mod cache;
mod call;
mod checker;
mod client;
mod concurrency;
mod engine;
mod limits;
mod rows;
mod runtime;
mod stats;
mod summary;
mod worker;

pub use cache::{CacheKey, JudgeCache};
pub use call::{AskContext, Asked, Endpoint, Unavailable, ask, estimate_tokens};
pub use checker::{Checked, Checker, CheckingSink, HardFailureFn, HardFailureHook};
pub use client::{CallFailure, ClientError, Completion, HttpFailure, JudgeClient, Message};
pub use concurrency::AdaptiveConcurrency;
pub use engine::{Judge, JudgeOptions, PairOutput};
pub use limits::{LimitSettings, Limits, TokioClock, Waited, backoff, retry_after};
pub use rows::order_name;
pub use runtime::{JudgeRuntime, JudgeSetup, StartError, options, prepare, start};
pub use stats::{JudgeCollector, JudgeStats};
pub use summary::{Line, SummaryBuilder, render_table};
pub use worker::{Poll, Worker, WorkerConfig, spawn_workers};
