//! canarist's integration tests: one binary so that it links once.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod aa;
mod admin;
mod clients;
mod credentials;
mod demo;
mod durability;
mod errors;
mod gate_input;
mod judge;
mod live;
mod metrics;
mod mock_upstream;
mod ops;
/// A rollout against real model servers (ignored; `scripts/e2e-realllm.sh` runs it).
mod realllm;
mod report;
mod rollout;
mod rubric;
mod shadow;
mod simulate;
mod store;
mod streaming;
mod support;
mod traces;
mod ui;
