//! The validated rubric types. Unvalidated input only exists as a YAML [`Node`](super::yaml::Node)
//! tree; everything here has passed [`load`](super::load) and is safe to use as is.
//! Holds data only: no I/O, no decisions.

use std::collections::BTreeMap;
use std::path::PathBuf;

use regex::Regex;
use serde::Serialize;
use serde_json_path::JsonPath;

use super::hash::ContentHash;

/// One rubric file, validated.
#[derive(Debug, Clone)]
pub struct Rubric {
    pub id: String,
    pub version: semver::Version,
    pub description: Option<String>,
    /// The file it was loaded from (for messages).
    pub source: PathBuf,
    /// Hash of everything that affects a verdict; judgments are stamped with it.
    pub hash: ContentHash,
    pub applies_to: AppliesTo,
    pub checks: Vec<Check>,
    pub criteria: Vec<Criterion>,
    /// Present whenever `criteria` is not empty.
    pub judging: Option<Judging>,
}

/// Which pairs a rubric scores. Empty lists and maps match everything.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliesTo {
    pub deployments: Vec<String>,
    /// Endpoint paths, e.g. `/chat/completions`.
    pub routes: Vec<String>,
    /// Cohort label → accepted values (any of them); every label must match.
    pub cohort: BTreeMap<String, Vec<String>>,
    /// Request `metadata` key → accepted values; every key must match.
    pub metadata: BTreeMap<String, Vec<String>>,
    /// Fraction of applicable pairs that LLM criteria are run on, 0..=1.
    pub sample_rate: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A failure on the candidate where stable passed is a guardrail signal for the gate.
    Hard,
    Soft,
}

/// A deterministic check, run on both sides of every applicable pair.
#[derive(Debug, Clone)]
pub struct Check {
    /// `id` from the file, or `<type>_<index>`.
    pub id: String,
    pub kind: CheckKind,
    pub weight: f64,
    pub severity: Severity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthUnit {
    Chars,
    /// `usage.completion_tokens` when the side reported usage, else ceil(chars / 4).
    Tokens,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalExpect {
    /// Passes when the answer contains none of the phrases.
    Answer,
    /// Passes when the answer contains one of the phrases.
    Refusal,
}

#[derive(Debug, Clone)]
pub enum CheckKind {
    JsonValid,
    JsonSchema {
        schema: serde_json::Value,
        validator: Box<jsonschema::Validator>,
    },
    Regex {
        pattern: Regex,
        negate: bool,
    },
    /// Every value must occur.
    Contains {
        values: Vec<String>,
        case_sensitive: bool,
    },
    /// No value may occur.
    NotContains {
        values: Vec<String>,
        case_sensitive: bool,
    },
    Length {
        unit: LengthUnit,
        min: Option<u64>,
        max: Option<u64>,
    },
    FinishReason {
        allowed: Vec<String>,
    },
    /// Phrases are matched case-insensitively.
    Refusal {
        phrases: Vec<String>,
        expect: RefusalExpect,
    },
    LatencyMs {
        max: f64,
    },
    /// Sides without a known cost are not evaluated.
    Cost {
        max_usd: f64,
    },
    /// The candidate's value at `path` must equal stable's.
    EqualsStable {
        path_text: String,
        path: JsonPath,
    },
    /// `tool_called` (`called: true`) or `tool_not_called`: some tool call (of `tool`, when
    /// given) is in the answer, or none is.
    ToolCalled {
        tool: Option<String>,
        called: bool,
    },
    /// Every tool call's name is one of `allowed`.
    ToolName {
        allowed: Vec<String>,
    },
    /// Every tool call (of `tool`, when given) names a tool the request declared, and its
    /// arguments parse as JSON valid against that tool's declared schema.
    ToolArgumentsValid {
        tool: Option<String>,
    },
    /// Every call of `tool` has, at `path` in its arguments, a value that equals or matches.
    ToolArgument {
        tool: String,
        path_text: String,
        path: JsonPath,
        expect: ArgumentExpect,
    },
}

/// What a `tool_argument` check expects of the value at its path.
#[derive(Debug, Clone)]
pub enum ArgumentExpect {
    /// Equal as JSON (`"3"` is not `3`).
    Equals(serde_json::Value),
    /// A string matching the regex (other values are matched as their JSON text).
    Matches(Regex),
}

impl CheckKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            CheckKind::JsonValid => "json_valid",
            CheckKind::JsonSchema { .. } => "json_schema",
            CheckKind::Regex { .. } => "regex",
            CheckKind::Contains { .. } => "contains",
            CheckKind::NotContains { .. } => "not_contains",
            CheckKind::Length { .. } => "length",
            CheckKind::FinishReason { .. } => "finish_reason",
            CheckKind::Refusal { .. } => "refusal",
            CheckKind::LatencyMs { .. } => "latency_ms",
            CheckKind::Cost { .. } => "cost",
            CheckKind::EqualsStable { .. } => "equals_stable",
            CheckKind::ToolCalled { called: true, .. } => "tool_called",
            CheckKind::ToolCalled { called: false, .. } => "tool_not_called",
            CheckKind::ToolName { .. } => "tool_name",
            CheckKind::ToolArgumentsValid { .. } => "tool_arguments_valid",
            CheckKind::ToolArgument { .. } => "tool_argument",
        }
    }
}

/// All check type names, for messages.
pub const CHECK_TYPES: &[&str] = &[
    "json_valid",
    "json_schema",
    "regex",
    "contains",
    "not_contains",
    "length",
    "finish_reason",
    "refusal",
    "latency_ms",
    "cost",
    "equals_stable",
    "tool_called",
    "tool_not_called",
    "tool_name",
    "tool_arguments_valid",
    "tool_argument",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Each side scored alone and blind.
    Pointwise,
    /// Both answers shown, in both orders.
    Pairwise,
    /// Each answer scored against a reference answer.
    Reference,
}

/// Where a `reference` criterion takes its reference answer from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "source")]
pub enum ReferenceSource {
    /// Stable's answer; only the candidate is judged.
    Stable,
    /// A string in the request's `metadata`; both sides are judged.
    Metadata { key: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Label {
    pub name: String,
    pub score: f64,
    pub description: String,
}

/// How a pointwise or reference verdict is expressed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// Integer scores `min..=max`; anchors describe at least both ends.
    Ordinal {
        min: i64,
        max: i64,
        anchors: BTreeMap<i64, String>,
    },
    /// Named labels, each mapped to a score.
    Labels(Vec<Label>),
}

impl Scale {
    /// Lowest and highest score on the scale.
    pub fn bounds(&self) -> (f64, f64) {
        match self {
            Scale::Ordinal { min, max, .. } => (*min as f64, *max as f64),
            Scale::Labels(labels) => labels.iter().fold((f64::MAX, f64::MIN), |(lo, hi), l| {
                (lo.min(l.score), hi.max(l.score))
            }),
        }
    }

    /// A raw score mapped onto 0..=1.
    pub fn normalize(&self, score: f64) -> f64 {
        let (lo, hi) = self.bounds();
        if hi > lo {
            (score - lo) / (hi - lo)
        } else {
            1.0
        }
    }
}

/// The verdict a few-shot example shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExampleVerdict {
    Score(i64),
    Label(String),
    /// `A`, `B` or `tie`.
    Pairwise(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    pub input: String,
    /// The answer (pointwise, reference) or answer A (pairwise).
    pub answer: String,
    /// Answer B (pairwise only).
    pub answer_b: Option<String>,
    /// The reference (reference mode only).
    pub reference: Option<String>,
    pub reasoning: String,
    pub verdict: ExampleVerdict,
}

/// An LLM-judged criterion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Criterion {
    pub id: String,
    pub mode: Mode,
    /// What the judge is asked, e.g. "Does the answer resolve the customer's problem?".
    pub question: String,
    pub steps: Vec<String>,
    /// `None` for pairwise criteria (their verdict is A, B or tie).
    pub scale: Option<Scale>,
    /// Pairwise only: whether the judge may answer `tie`.
    pub allow_tie: bool,
    pub reference: Option<ReferenceSource>,
    pub examples: Vec<Example>,
    pub weight: f64,
}

/// One judge model behind an OpenAI-compatible endpoint.
#[derive(Clone, PartialEq)]
pub struct JudgeModel {
    /// The judge file's stem for shared judges, `inline` otherwise.
    pub name: String,
    pub base_url: String,
    pub api_key_env: String,
    pub model: String,
    pub temperature: f64,
    /// Whether `temperature` is sent at all (reasoning models refuse it).
    pub send_temperature: bool,
    pub seed: Option<i64>,
    pub max_tokens: u32,
    /// The request field `max_tokens` is sent as.
    pub token_limit_field: TokenLimitField,
    pub requests_per_minute: u32,
    pub tokens_per_minute: Option<u32>,
    /// Spend cap per rollout stage, in USD.
    pub spend_cap_usd: Option<f64>,
}

impl std::fmt::Debug for JudgeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JudgeModel")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key_env", &self.api_key_env)
            .field("model", &self.model)
            .field("temperature", &self.temperature)
            .field("seed", &self.seed)
            .field("max_tokens", &self.max_tokens)
            .field("send_temperature", &self.send_temperature)
            .field("token_limit_field", &self.token_limit_field)
            .finish_non_exhaustive()
    }
}

/// The request field that carries a judge's token limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenLimitField {
    /// `max_tokens`: chat models and most OpenAI-compatible servers.
    MaxTokens,
    /// `max_completion_tokens`: OpenAI's reasoning models (o1, o3, o4, gpt-5), which refuse
    /// `max_tokens`.
    MaxCompletionTokens,
}

impl TokenLimitField {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenLimitField::MaxTokens => "max_tokens",
            TokenLimitField::MaxCompletionTokens => "max_completion_tokens",
        }
    }

    pub fn parse(name: &str) -> Option<TokenLimitField> {
        [
            TokenLimitField::MaxTokens,
            TokenLimitField::MaxCompletionTokens,
        ]
        .into_iter()
        .find(|f| f.as_str() == name)
    }
}

/// Whether `model` is one of OpenAI's reasoning models (`o1*`, `o3*`, `o4*`, `gpt-5*`, with or
/// without a `provider/` prefix): they take `max_completion_tokens` and no `temperature`.
pub fn is_reasoning_model(model: &str) -> bool {
    let name = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// The most common verdict among the judges that answered (scores or labels).
    Majority,
    /// The mean normalized score of the judges that answered.
    Mean,
}

/// The judge (a panel of one) or the panel that scores a rubric's criteria.
#[derive(Debug, Clone, PartialEq)]
pub struct Judging {
    pub judges: Vec<JudgeModel>,
    pub aggregate: Aggregate,
}
