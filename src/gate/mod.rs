//! `gate`: the statistical gate and the guardrails. Pure: summaries in, decision out.
//!
//! Owns: anytime-valid confidence sequences (`sequential`), the gate policy and the summary
//! types it reads (`policy`), the decision rule (`evaluate`), the sliding-window guardrails
//! (`guardrail`). Uses only `vocab`: `canarist simulate` lives in `crate::simulate`.
//! Never: reads clocks, touches the store or the network, or changes traffic — the rollout
//! controller passes time and summaries in and acts on the [`Decision`].
//! Fails closed: missing, mismatched or too little data is never read as "non-inferior", so it
//! can hold a stage but never promote one.

mod evaluate;
pub mod guardrail;
pub mod policy;
pub mod sequential;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use evaluate::evaluate;
pub use guardrail::{Excess, Guardrail, GuardrailConfig, Trip, UNIT_GROUPS, unit_hash};
pub use policy::{
    Abstentions, Assigned, Assignment, Direction, GatePolicy, MetricData, MetricKind, MetricPolicy,
    StageContext, StageSummaries,
};

/// What the gate recommends for the current stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Promote,
    Hold,
    Rollback,
}

/// The gate's answer: an action, a human-readable reason, and the evidence behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub action: Action,
    pub reason: String,
    pub evidence: Vec<Evidence>,
    /// Conditions someone should look at whatever the action (e.g. sample-ratio mismatch).
    pub alerts: Vec<Alert>,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The interval lies wholly on the good side of the bound.
    NonInferior,
    /// The interval straddles the bound.
    Inconclusive,
    /// The rollback interval lies wholly on the bad side of the bound.
    Worse,
    /// Not enough observations to say anything.
    InsufficientData,
    /// The summary does not fit the metric kind (a wiring bug; blocks promotion).
    Invalid,
    /// A non-statistical check that blocks promotion (SRM, abstentions).
    Blocked,
    /// A non-statistical check that passed.
    Passed,
    /// A cohort with too few units to decide at this stage (`GatePolicy::cohort_min_units`)
    /// whose estimate shows no harm: it does not hold the stage, and could still roll it back.
    Deferred,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NonInferior => "non_inferior",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Worse => "worse",
            Verdict::InsufficientData => "insufficient_data",
            Verdict::Invalid => "invalid",
            Verdict::Blocked => "blocked",
            Verdict::Passed => "passed",
            Verdict::Deferred => "deferred",
        }
    }
}

/// How an estimate and interval were computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    None,
    PairedCs,
    TwoSampleCs,
    ProportionCs,
    WinRateCs,
    ExceedanceCs,
    RatioCs,
    Ceiling,
    ChiSquareSrm,
    AbstentionRate,
    /// Like `ProportionCs`, over units: delta-method variance of each side's ratio.
    ProportionDeltaCs,
    /// Like `PairedCs`, with the differences summed per unit (delta method over units).
    PairedDeltaCs,
    /// Like `ExceedanceCs`, over the candidate's units (delta method).
    ExceedanceDeltaCs,
    /// Like `RatioCs`, over units: each side's cost per request with delta-method variance.
    RatioDeltaCs,
    /// Like `Ceiling`, over the candidate's units (delta method).
    CeilingDelta,
    /// An error rate or latency tail on the paired requests (the same prompt sent to both
    /// variants): differences per pair summed per unit, delta method over units, intersected
    /// with the two-sample sequence (half the α each).
    PairedRequestsDeltaCs,
    /// The candidate's share of requests slower than a threshold near stable's quantile minus
    /// stable's own share, over units of both sides (delta method), reported on the scale of
    /// the share above stable's quantile (1 − q + the difference).
    ExceedanceDifferenceDeltaCs,
}

impl Method {
    pub fn describe(self) -> &'static str {
        match self {
            Method::None => "no method (no data)",
            Method::PairedCs => "asymptotic confidence sequence on paired differences",
            Method::TwoSampleCs => "asymptotic confidence sequence on a two-sample difference",
            Method::ProportionCs => "asymptotic confidence sequence on a difference of rates",
            Method::WinRateCs => "asymptotic confidence sequence on the pairwise win rate",
            Method::ExceedanceCs => {
                "asymptotic confidence sequence on the share above stable's quantile"
            }
            Method::RatioCs => "asymptotic confidence sequence on a ratio (delta method)",
            Method::Ceiling => {
                "asymptotic confidence sequence on the candidate's rate vs a ceiling"
            }
            Method::ChiSquareSrm => "chi-square goodness of fit of the traffic split",
            Method::AbstentionRate => "judge abstention rate vs threshold",
            Method::ProportionDeltaCs => {
                "asymptotic confidence sequence on a difference of rates, delta-method variance over units"
            }
            Method::PairedDeltaCs => {
                "asymptotic confidence sequence on paired differences, delta-method variance over units"
            }
            Method::ExceedanceDeltaCs => {
                "asymptotic confidence sequence on the share above stable's quantile, delta-method variance over units"
            }
            Method::RatioDeltaCs => {
                "asymptotic confidence sequence on a ratio, delta-method variance over units"
            }
            Method::CeilingDelta => {
                "asymptotic confidence sequence on the candidate's rate vs a ceiling, delta-method variance over units"
            }
            Method::PairedRequestsDeltaCs => {
                "asymptotic confidence sequence on the paired requests' differences (same prompt, both variants), delta-method variance over units, intersected with the two-sample sequence"
            }
            Method::ExceedanceDifferenceDeltaCs => {
                "asymptotic confidence sequence on the difference of the shares above a latency threshold near stable's quantile, delta-method variance over both sides' units"
            }
        }
    }

    /// What one independent draw of this method is.
    pub fn unit_of_analysis(self) -> AnalysisUnit {
        match self {
            Method::None => AnalysisUnit::None,
            Method::PairedCs | Method::WinRateCs => AnalysisUnit::Pair,
            Method::TwoSampleCs
            | Method::ProportionCs
            | Method::ExceedanceCs
            | Method::RatioCs
            | Method::Ceiling => AnalysisUnit::Request,
            Method::ChiSquareSrm
            | Method::ProportionDeltaCs
            | Method::PairedDeltaCs
            | Method::ExceedanceDeltaCs
            | Method::RatioDeltaCs
            | Method::CeilingDelta
            | Method::PairedRequestsDeltaCs
            | Method::ExceedanceDifferenceDeltaCs => AnalysisUnit::Unit,
            Method::AbstentionRate => AnalysisUnit::JudgeAttempt,
        }
    }
}

/// The unit of analysis of a check: what its method treats as one independent draw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisUnit {
    /// No statistic (no data), or evidence recorded before units were named.
    #[default]
    None,
    Request,
    Pair,
    /// The sticky key the routing randomizes (`x-canarist-unit`, `user`, tenant header).
    Unit,
    JudgeAttempt,
}

impl AnalysisUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            AnalysisUnit::None => "none",
            AnalysisUnit::Request => "request",
            AnalysisUnit::Pair => "pair",
            AnalysisUnit::Unit => "unit",
            AnalysisUnit::JudgeAttempt => "judge attempt",
        }
    }
}

/// One check's evidence: what was measured, where, how, and what it showed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub metric: String,
    /// `all` or a cohort label such as `tier=enterprise`.
    pub cohort: String,
    pub estimate: Option<f64>,
    /// The interval the verdict rests on (at the rollback α when the verdict is `worse`). An
    /// unbounded side (too little data for a variance) is infinite: `null` in JSON, which has
    /// no infinity, and read back as −∞ / +∞.
    #[serde(default, deserialize_with = "unbounded_as_null::deserialize")]
    pub interval: Option<(f64, f64)>,
    pub margin: f64,
    /// The threshold the interval is compared with (e.g. −margin, a ceiling, a budget).
    pub bound: f64,
    pub direction: Direction,
    pub candidate_n: u64,
    pub stable_n: u64,
    pub method: Method,
    /// What the method counts as one independent draw.
    #[serde(default)]
    pub unit: AnalysisUnit,
    /// Units per side when the inference ran over units (`candidate_n`/`stable_n` stay the
    /// requests or pairs behind them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<(u64, u64)>,
    /// α of this cell after the Bonferroni split.
    pub alpha: f64,
    pub verdict: Verdict,
    pub note: Option<String>,
}

/// Reads an interval whose unbounded sides were written as `null` (serde_json writes a
/// non-finite number so): `[null, null]` is (−∞, +∞), not an error that loses the evidence.
mod unbounded_as_null {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<(f64, f64)>, D::Error> {
        let sides = Option::<(Option<f64>, Option<f64>)>::deserialize(d)?;
        Ok(sides.map(|(lo, hi)| (lo.unwrap_or(f64::NEG_INFINITY), hi.unwrap_or(f64::INFINITY))))
    }
}

impl Evidence {
    pub fn counts_text(&self) -> String {
        match self.units {
            Some((c, s)) => format!(
                "units candidate {c}, stable {s} (n candidate {}, stable {})",
                self.candidate_n, self.stable_n
            ),
            None => format!("n candidate {}, stable {}", self.candidate_n, self.stable_n),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    SampleRatioMismatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub message: String,
}
