//! `rollout`: ramp configuration, the rollout state machine, and the I/O around it.
//!
//! Owns: the ramp config (`RawRamp` from YAML → validated [`Ramp`], every problem reported at
//! once with its file and field), the pure state machine (`machine`), the mapping between stored
//! rollouts, machine states and traffic (`stored`), the actions everyone calls (`actions`: persist, then apply), the controller loop
//! on the leader replica (`controller`) and which of its evaluations it records (`history`), the guardrail fast path (`guardrails`), alert webhooks
//! (`alerts`), this process's live traffic table (`live`), the traffic service every traffic change
//! goes through (`traffic`), and what the rollout metrics' labels and gauges read (`metrics`);
//! `canarist rollout …` is `cli::rollout` over `actions`.
//! Never: makes a statistical decision (the gate does) or routes a request (routing does).
//! Fails closed: a ramp with any problem is not used; a transition that cannot be persisted
//! does not take effect.

pub mod actions;
pub mod alerts;
pub mod canary_guard;
pub mod controller;
pub mod guardrails;
pub mod history;
pub mod live;
pub mod machine;
pub mod metrics;
pub mod ramp;
pub mod stored;
pub mod traffic;

pub use live::LiveTraffic;
pub use machine::{Event, Manual, Phase, StageRun, State, Transition, step};
pub use ramp::{
    Exposure, OnTimeout, Ramp, RawRamp, RawStage, Stage, default_max_duration,
    default_min_duration, default_min_judged_pairs,
};
