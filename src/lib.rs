//! canarist: an OpenAI-compatible LLM gateway that makes model and prompt rollouts safe.
//!
//! The modules follow `ARCHITECTURE.md`: pure logic (`routing`, `rubric`, `gate`) is kept apart
//! from I/O (`upstream`, `http`, `capture`, `store`, `judge`, `rollout`, `report`).

pub mod app;
pub mod capture;
pub mod cli;
pub mod config;
pub mod gate;
pub mod gate_input;
pub mod http;
pub mod judge;
pub mod mock;
pub mod report;
pub mod rollout;
pub mod routing;
pub mod rubric;
pub mod simulate;
pub mod store;
pub mod telemetry;
pub mod upstream;
pub mod vocab;
