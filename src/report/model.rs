//! The stage report as data: the types every renderer reads and the JSON schema
//! (`docs/report-schema.md`) they serialize to.
//!
//! Stability: [`SCHEMA_VERSION`] names the JSON shape. Adding an optional field keeps the version;
//! renaming, removing or changing the meaning of a field bumps it. Numbers are plain JSON numbers;
//! a value that cannot be computed (no data) is `null`, never `0` or `NaN`. Times are RFC 3339
//! UTC. A cohort is `"all"` or `"key=value"` (the gate's naming).
//! Pure data: no I/O, no statistics.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::gate::{Alert, Evidence, Method, Verdict};

/// The version of the JSON shape below.
pub const SCHEMA_VERSION: u32 = 2;

/// The label of [`StageReport::reference_tests`], printed with them in every format.
pub const REFERENCE_LABEL: &str = "classic fixed-sample tests, for reference only";

/// One report per ramp stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    pub schema_version: u32,
    pub generated_at: DateTime<Utc>,
    pub deployment: String,
    /// The first thing a reader needs: which model replaced which, what happened, why
    /// (`summary`). Computed from the rest of the report.
    #[serde(default)]
    pub summary: Summary,
    pub rollout: RolloutInfo,
    pub stage: StageInfo,
    /// Every stage of the rollout so far (for the ramp curve).
    pub ramp: Vec<RampPoint>,
    /// The configured ramp, every stage (so the curve's axis ends at the last stage, not at
    /// the last stage reached); empty when the report was built without the ramp.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedStage>,
    /// Links to the dashboard's view of this stage and to the neighbouring stages' reports;
    /// absent when the report was built without knowing where the dashboard is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Links>,
    /// The confidence level of every interval in this report is `1 − interval_alpha`; intervals
    /// are anytime-valid confidence sequences tuned for `interval_target_n` observations.
    pub interval_alpha: f64,
    pub interval_target_n: f64,
    /// Requests, errors, latency, tokens and cost per cohort and variant.
    pub variants: Vec<VariantStats>,
    /// Matched pairs per cohort.
    pub pairs: Vec<PairCount>,
    pub criteria: Vec<CriterionStats>,
    pub checks: Vec<CheckStats>,
    /// The A/A arm (stable against a second stable answer), when the deployment runs one.
    #[serde(default, skip_serializing_if = "AaReport::is_empty")]
    pub aa: AaReport,
    pub judge: JudgeQuality,
    pub sample_ratio: SampleRatio,
    /// `None` when no decision was recorded and no gate policy was given.
    pub decision: Option<DecisionReport>,
    /// The gate's evaluations during the stage, oldest first, as the controller recorded them
    /// (thinned: a cell when it changed, a few hundred per cell at most); the chart over time
    /// draws them and then `decision`'s evidence as the last point. Absent when none were
    /// recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gate_history: Vec<GateHistoryPoint>,
    pub worst_answers: Vec<WorstAnswer>,
    pub reference_tests: ReferenceTests,
    /// Things the reader should know (missing data, recomputed decision, sampling).
    pub notes: Vec<String>,
}

/// The A/A arm of a stage: stable judged against a second stable answer to the same request.
/// A perfect judge of a deterministic model would show zero differences and all ties; what it
/// shows instead is the noise floor below which a candidate's difference means nothing.
/// Rows are the criteria and checks sections' (their `candidate` is `aa`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AaReport {
    /// A/A pairs captured in the stage.
    pub pairs: u64,
    pub criteria: Vec<CriterionStats>,
    pub checks: Vec<CheckStats>,
}

impl AaReport {
    pub fn is_empty(&self) -> bool {
        self.pairs == 0 && self.criteria.is_empty() && self.checks.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutInfo {
    pub id: Uuid,
    /// The candidate variant's name (in the config's `candidates`).
    pub candidate: String,
    /// The upstream model stable calls, from the config the report was built with; `null`
    /// when the report was built without it.
    #[serde(default)]
    pub stable_model: Option<String>,
    /// The upstream model of the candidate variant, likewise.
    #[serde(default)]
    pub candidate_model: Option<String>,
    /// The rollout's current state (e.g. `canary`, `promoted`, `rolled_back`).
    pub state: String,
    /// The stage the rollout is in now (or ended in).
    #[serde(default)]
    pub stage_index: u32,
    /// The config version written with the rollout's last transition.
    #[serde(default)]
    pub config_version: u64,
    pub created_at: DateTime<Utc>,
    /// The rollout's latest transition (who moved it last, when, why).
    #[serde(default)]
    pub last_transition: Option<TransitionRef>,
}

/// The one-glance summary every renderer puts first (`summary::summarize`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// `promoted`, `rolled_back`, or `running` (any other state: shadow, canary, paused,
    /// awaiting approval).
    pub status: String,
    /// "stable A → candidate B (config vN): rolled back at stage 1 canary-10 by gate, TIME,
    /// because …".
    pub headline: String,
    /// This stage's decision in one line, when the rollout's last move was elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_line: Option<String>,
    /// The key evidence in one line: each gate metric's estimate, interval and verdict.
    pub evidence: String,
    /// When that evidence was computed: `at decision, TIME` or `recomputed now`.
    #[serde(default)]
    pub evidence_when: String,
    /// Checks that block promotion (sample-ratio mismatch, abstentions), each one sentence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub banners: Vec<String>,
}

/// Dashboard URLs (`…/ui#/deployments/NAME/stages/K`; `…/report` opens that stage's report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Links {
    pub dashboard: String,
    pub previous: Option<String>,
    pub next: Option<String>,
}

/// A stage of the configured ramp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStage {
    pub index: u32,
    pub mode: StageMode,
    /// Live: the candidate's share; shadow: the mirror sample rate (clients still get stable).
    pub percent: f64,
}

/// How the candidate received traffic in a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageMode {
    /// The candidate was only mirrored (clients always got stable).
    Shadow,
    /// The candidate served its share of clients.
    Live,
    /// No candidate observation in the stage, and no ramp to say.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageInfo {
    pub index: u32,
    /// The stage label observations carry.
    pub name: String,
    pub mode: StageMode,
    /// The configured candidate percentage (shadow: the mirror sample rate), from the ramp when
    /// one was given.
    pub configured_percent: Option<f64>,
    /// Live: candidate share of served requests; shadow: candidate calls per stable request.
    pub observed_percent: Option<f64>,
    pub started_at: DateTime<Utc>,
    /// `None` while the stage is running.
    pub ended_at: Option<DateTime<Utc>>,
    /// Until `ended_at`, or until `generated_at` for a running stage.
    pub duration_seconds: f64,
    /// The state the rollout moved to when the stage ended.
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RampPoint {
    pub index: u32,
    pub name: String,
    /// Shadow stages serve 0% from the candidate whatever `percent` (their mirror rate) says.
    #[serde(default = "unknown_mode")]
    pub mode: StageMode,
    /// Configured when known, else observed.
    pub percent: Option<f64>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    /// `promote`, `hold` or `rollback` as recorded for the stage, when recorded.
    pub action: Option<String>,
}

fn unknown_mode() -> StageMode {
    StageMode::Unknown
}

/// A latency or time-to-first-token distribution over successful requests, in milliseconds.
/// Quantiles come from log buckets and are at most 5% above the true value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub count: u64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    /// (bucket upper bound in ms, count), ascending; only for the `all` cohort.
    pub histogram: Vec<(f64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantStats {
    pub cohort: String,
    pub variant: String,
    /// `stable` or `candidate`.
    pub role: String,
    pub requests: u64,
    /// Distinct units (sticky keys) among the requests; a request without one is its own.
    pub units: u64,
    /// Requests whose answer went to the client.
    pub served: u64,
    /// Distinct units among the served requests.
    pub served_units: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    /// Error class → count.
    pub errors_by_class: BTreeMap<String, u64>,
    pub latency_ms: Distribution,
    pub ttft_ms: Distribution,
    /// Tokens per successful request (failed requests report no usage).
    pub prompt_tokens_per_request: Option<f64>,
    pub completion_tokens_per_request: Option<f64>,
    /// Mean USD per request over requests with a price.
    pub cost_per_request: Option<f64>,
    pub total_cost: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairCount {
    pub cohort: String,
    pub candidate: String,
    pub pairs: u64,
}

/// candidate − stable with its anytime-valid interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub estimate: f64,
    pub lo: f64,
    pub hi: f64,
    /// Pairs (paired) or candidate + stable observations (two-sample).
    pub n: u64,
    pub method: DifferenceMethod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceMethod {
    /// Confidence sequence on per-pair differences.
    Paired,
    /// Confidence sequence on the difference of two independent means.
    TwoSample,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WinTieLoss {
    pub wins: u64,
    pub ties: u64,
    pub losses: u64,
    /// (wins + ties / 2) / total, with its interval.
    pub win_rate: Option<f64>,
    pub interval: Option<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriterionStats {
    pub cohort: String,
    pub candidate: String,
    pub rubric_id: String,
    pub rubric_hash: String,
    pub criterion: String,
    pub stable_mean: Option<f64>,
    pub candidate_mean: Option<f64>,
    pub stable_n: u64,
    pub candidate_n: u64,
    /// Pointwise/reference scores: candidate − stable.
    pub difference: Option<Difference>,
    /// Pairwise criteria: combined verdicts from the candidate's side.
    pub win_tie_loss: Option<WinTieLoss>,
    /// Abstentions: stable side, candidate side, pairwise verdicts.
    pub abstentions: [u64; 3],
    /// Abstentions over judge attempts.
    pub abstention_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckStats {
    pub cohort: String,
    pub candidate: String,
    pub rubric_id: String,
    pub rubric_hash: String,
    pub check: String,
    pub stable_pass_rate: Option<f64>,
    pub candidate_pass_rate: Option<f64>,
    pub stable_n: u64,
    pub candidate_n: u64,
    /// Difference of check scores (pass = 1), candidate − stable.
    pub difference: Option<Difference>,
    /// Pairs where stable passed and the candidate failed.
    pub regressions: u64,
    pub improvements: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeQuality {
    /// Abstentions over judge attempts, per side, over every criterion (cohort `all`).
    pub stable_abstention_rate: Option<f64>,
    pub candidate_abstention_rate: Option<f64>,
    pub pairwise_abstention_rate: Option<f64>,
    pub position_consistency: Vec<Consistency>,
    /// Pairs with at least one judgment or check result.
    pub judged_pairs: u64,
}

/// Pairwise criteria: how often both presentation orders gave the same verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consistency {
    pub candidate: String,
    pub rubric_id: String,
    pub criterion: String,
    pub consistent: u64,
    pub inconsistent: u64,
    pub rate: Option<f64>,
}

/// The sample-ratio check: the distinct units each variant served against the configured split
/// (canarist assigns units, so units are what the split is about). The served requests and
/// their own chi-square are kept for information only: a sticky heavy user moves the request
/// split far more than a per-request test allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRatio {
    /// (variant, served units, configured share); shares empty when the split is unknown.
    pub variants: Vec<(String, u64, Option<f64>)>,
    /// Served requests per variant, in the order of `variants` (information only).
    pub requests: Vec<u64>,
    /// The units' chi-square and p-value (the check).
    pub chi_square: Option<f64>,
    pub p_value: Option<f64>,
    /// The requests' chi-square and p-value (information only).
    pub request_chi_square: Option<f64>,
    pub request_p_value: Option<f64>,
    pub alpha: f64,
    /// `Some(true)` when p < alpha; `None` when the test does not apply (shadow stage, unknown
    /// split, no traffic).
    pub mismatch: Option<bool>,
    pub note: String,
}

/// Where the decision in a report comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionSource {
    /// The evidence JSON of the transition that the controller recorded for the stage.
    Transition,
    /// `gate::evaluate` run now on the stage summary with the given policy.
    Recomputed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionReport {
    pub source: DecisionSource,
    /// `promote`, `hold` or `rollback`.
    pub action: String,
    pub reason: String,
    pub evidence: Vec<Evidence>,
    pub alerts: Vec<Alert>,
    /// The recorded transition (source `transition` only).
    pub transition: Option<TransitionRef>,
}

/// One recorded evaluation of a gate cell (metric × cohort).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateHistoryPoint {
    pub metric: String,
    pub cohort: String,
    pub at: DateTime<Utc>,
    pub estimate: Option<f64>,
    /// The interval the verdict rested on; `null` on a side where it was unbounded (too little
    /// data for a variance).
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    pub bound: Option<f64>,
    pub method: Method,
    pub verdict: Verdict,
    pub candidate_n: u64,
    pub stable_n: u64,
}

/// A stage's recorded gate evaluations, without the rest of its report (the admin API's
/// `…/reports/{index}/history`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageHistory {
    pub rollout_id: Uuid,
    pub stage: u32,
    pub name: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub points: Vec<GateHistoryPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransitionRef {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub from_state: String,
    pub to_state: String,
    pub from_stage: u32,
    pub to_stage: u32,
    pub reason: String,
    /// The gate decision's own reason, when the transition carries one (its `reason` may be
    /// only "gate rollback").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_reason: Option<String>,
}

/// One of the worst candidate answers, beside stable's answer to the same request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorstAnswer {
    pub pair_id: Uuid,
    pub request_id: Uuid,
    pub cohort: String,
    /// Why it was picked: `hard check <name> failed (…)`, `<criterion> scored 1 (stable 4)`.
    pub reasons: Vec<String>,
    /// The lowest candidate score among the reasons, if any.
    pub lowest_score: Option<f64>,
    /// The conversation both sides were sent (as the judge sees it), from the stored request
    /// bodies: redacted and capped by the capture policy like everything stored; `null` when
    /// no body was kept.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Further picked pairs with the same prompt and the same two answers, shown once here.
    #[serde(default)]
    pub repeats: u64,
    pub candidate_answer: Option<String>,
    pub stable_answer: Option<String>,
    pub candidate_error: Option<String>,
    pub stable_error: Option<String>,
    pub judgments: Vec<JudgmentNote>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgmentNote {
    pub criterion: String,
    pub judge_model: String,
    /// `single`, `ab`, `ba` or `combined`.
    pub order: String,
    pub side: Option<String>,
    pub score: Option<f64>,
    pub winner: Option<String>,
    pub reasoning: Option<String>,
    pub abstain_reason: Option<String>,
}

/// Welch's t and Mann-Whitney U per criterion (cohort `all`). Fixed-sample tests are not valid
/// under continuous monitoring; they are printed for comparison only and never gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceTests {
    pub label: String,
    pub rows: Vec<ReferenceRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceRow {
    pub rubric_id: String,
    pub criterion: String,
    pub welch_t: Option<f64>,
    pub welch_df: Option<f64>,
    pub welch_p: Option<f64>,
    /// U of the candidate sample.
    pub mann_whitney_u: Option<f64>,
    pub mann_whitney_p: Option<f64>,
    /// Observations in the (bounded) samples the U test used.
    pub mann_whitney_n: (u64, u64),
    /// The samples were cut at the bound.
    pub sampled: bool,
}
