//! `report`: per-stage quality reports of a rollout, as JSON, Markdown and one self-contained
//! HTML file with SVG charts.
//!
//! Owns: the report model and its stable JSON schema (`model`, documented in
//! `docs/report-schema.md`), the builder that reads the store (`build`, `worst`), the pure
//! conversions and statistics glue (`sections`, `stats`; the gate's input comes from `crate::gate_input`), the pure renderers
//! (`markdown`, `html`, `svg`, and [`to_json`]), the summary card (`summary`) and the charts
//! the dashboard shows too (`svg_ramp`, `svg_forest`, `svg_history`, `svg_latency`: one renderer
//! for both); `canarist report` is `cli::report`.
//! Never: writes to the store, changes a rollout, or decides anything — a decision shown in a
//! report is the one the controller recorded, or `gate::evaluate` re-run and labelled so. The
//! HTML never references anything outside the file and escapes every text that came from users
//! or LLMs.
//! Fails closed: a store error or an unknown stage fails the report; a value that cannot be
//! computed is shown as missing (`null`, `–`), never as zero.

mod build;
mod format;
mod html;
mod html_answers;
mod html_markdown;
mod markdown;
mod markdown_answers;
pub mod model;
mod sections;
mod stats;
mod summary;
pub mod svg;
pub mod svg_forest;
pub mod svg_history;
pub mod svg_latency;
pub mod svg_ramp;
mod worst;

pub use build::{
    BuildOptions, DEFAULT_ALPHA, DEFAULT_TARGET_N, Models, build_all, build_with,
    recorded_decision, stage_history,
};
pub use html::{CHART_CSS, latency_chart, ramp_chart, style_source, to_html};
pub use markdown::to_markdown;
pub use model::{
    AaReport, GateHistoryPoint, REFERENCE_LABEL, SCHEMA_VERSION, StageHistory, StageReport, Summary,
};
pub use summary::summarize;

use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("deployment `{0}` has no rollout in the store")]
    NoRollout(String),
    #[error(
        "deployment `{deployment}` has no stage {stage} in its latest rollout (stages: {available:?})"
    )]
    NoStage {
        deployment: String,
        stage: u32,
        available: Vec<u32>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("report JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("report JSON has schema_version {found}; this canarist reads {expected}")]
    SchemaVersion { found: u32, expected: u32 },
}

/// The report of stage `stage` (index in the ramp) of `deployment`'s latest rollout, with
/// default options (no gate policy or ramp; intervals at α = 0.05).
pub async fn build(
    store: &Store,
    deployment: &str,
    stage: u32,
) -> Result<StageReport, ReportError> {
    build_with(store, deployment, stage, &BuildOptions::default()).await
}

/// The gate's forest plot of a report (`None` without a decision or intervals): the chart the
/// HTML page draws in its gate evidence section.
pub fn forest_chart(report: &StageReport) -> Option<String> {
    report
        .decision
        .as_ref()
        .and_then(|d| svg_forest::evidence_forest(&d.evidence))
}

/// The gate's evidence over the stage (`None` without recorded evaluations or a decision): each
/// cell's recorded intervals, then the decision's own evidence — at its transition, else at the
/// stage's end, else at the report's time — as the last point.
pub fn history_chart(report: &StageReport) -> Option<String> {
    let decision = report.decision.as_ref().map(|d| {
        let at = d.transition.as_ref().map_or_else(
            || report.stage.ended_at.unwrap_or(report.generated_at),
            |t| t.at,
        );
        (at, d.evidence.as_slice())
    });
    svg_history::history_chart(&report.gate_history, decision, report.stage.started_at)
}

/// The report as pretty JSON (the documented schema), with a trailing newline.
pub fn to_json(report: &StageReport) -> Result<String, ReportError> {
    let mut s = serde_json::to_string_pretty(report)?;
    s.push('\n');
    Ok(s)
}

/// Parses a report written by [`to_json`], refusing another schema version.
pub fn from_json(text: &str) -> Result<StageReport, ReportError> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    let found = value
        .get("schema_version")
        .and_then(serde_json::Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0);
    if found != SCHEMA_VERSION {
        return Err(ReportError::SchemaVersion {
            found,
            expected: SCHEMA_VERSION,
        });
    }
    Ok(serde_json::from_value(value)?)
}

/// A file name for a stage's report: `<deployment>-stage-<index>-<name>.<ext>`, with anything
/// but ASCII letters, digits, `-` and `_` replaced by `_`.
pub fn file_name(report: &StageReport, ext: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!(
        "{}-stage-{}-{}.{ext}",
        clean(&report.deployment),
        report.stage.index,
        clean(&report.stage.name)
    )
}
