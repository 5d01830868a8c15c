//! Reading the judge's answer, combining the two pairwise orders, and aggregating a panel.
//!
//! Fails closed: an answer that does not parse, lacks a field or leaves the scale is a
//! [`ParseFailure`] with a reason code, never a default score. The worker asks once more with
//! [`ParseFailure::repair_message`] and then records an [`Abstain`].

use serde::Serialize;
use serde_json::Value;

use super::model::{Aggregate, Criterion, Scale};
use super::prompt::Order;

/// A pairwise verdict as the judge gave it (positions, not variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PairChoice {
    A,
    B,
    Tie,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    Score {
        score: i64,
        normalized: f64,
    },
    Label {
        label: String,
        score: f64,
        normalized: f64,
    },
    Pairwise {
        choice: PairChoice,
    },
}

/// A parsed judge answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeAnswer {
    pub reasoning: String,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParseFailureCode {
    Empty,
    NotJson,
    NotAnObject,
    MissingReasoning,
    MissingScore,
    WrongType,
    OutOfScale,
    UnknownLabel,
}

impl ParseFailureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ParseFailureCode::Empty => "empty",
            ParseFailureCode::NotJson => "not_json",
            ParseFailureCode::NotAnObject => "not_an_object",
            ParseFailureCode::MissingReasoning => "missing_reasoning",
            ParseFailureCode::MissingScore => "missing_score",
            ParseFailureCode::WrongType => "wrong_type",
            ParseFailureCode::OutOfScale => "out_of_scale",
            ParseFailureCode::UnknownLabel => "unknown_label",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", code.as_str())]
pub struct ParseFailure {
    pub code: ParseFailureCode,
    pub detail: String,
}

/// A judgment that was not made. Recorded with its reason; never replaced by a score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Abstain {
    /// e.g. `not_json`, `out_of_scale`, `no_input`, `panel_no_majority`.
    pub reason_code: String,
}

impl Abstain {
    pub fn new(reason_code: impl Into<String>) -> Self {
        Self {
            reason_code: reason_code.into(),
        }
    }
}

impl ParseFailure {
    fn new(code: ParseFailureCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }

    pub fn abstain(&self) -> Abstain {
        Abstain::new(self.code.as_str())
    }

    /// The follow-up user message for the one repair retry.
    pub fn repair_message(&self, c: &Criterion) -> String {
        format!(
            "Your previous reply could not be used ({}). Reply again with only one JSON object \
             that follows this schema, with the reasoning first: {}",
            self.detail,
            super::prompt::response_schema(c)
        )
    }
}

/// Parses the judge's reply for criterion `c`. Tolerates a Markdown code fence or text around
/// the object; nothing else.
pub fn parse_answer(c: &Criterion, text: &str) -> Result<JudgeAnswer, ParseFailure> {
    use ParseFailureCode as F;
    let text = text.trim();
    if text.is_empty() {
        return Err(ParseFailure::new(F::Empty, "the reply is empty"));
    }
    let value = serde_json::from_str::<Value>(text)
        .ok()
        .or_else(|| {
            let (start, end) = (text.find('{')?, text.rfind('}')?);
            serde_json::from_str(text.get(start..=end)?).ok()
        })
        .ok_or_else(|| ParseFailure::new(F::NotJson, "the reply is not a JSON object"))?;
    let Value::Object(obj) = value else {
        return Err(ParseFailure::new(
            F::NotAnObject,
            "the reply is JSON but not an object",
        ));
    };
    let reasoning = match obj.get("reasoning") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        Some(Value::String(_)) | None => {
            return Err(ParseFailure::new(
                F::MissingReasoning,
                "`reasoning` is missing or empty",
            ));
        }
        Some(_) => {
            return Err(ParseFailure::new(
                F::WrongType,
                "`reasoning` must be a string",
            ));
        }
    };
    let verdict = match &c.scale {
        Some(Scale::Ordinal { min, max, .. }) => {
            let raw = obj
                .get("score")
                .ok_or_else(|| ParseFailure::new(F::MissingScore, "`score` is missing"))?;
            let score = integer(raw).ok_or_else(|| {
                ParseFailure::new(
                    F::WrongType,
                    format!("`score` must be an integer, got {raw}"),
                )
            })?;
            if !(*min..=*max).contains(&score) {
                return Err(ParseFailure::new(
                    F::OutOfScale,
                    format!("score {score} is outside {min}..{max}"),
                ));
            }
            let scale = c.scale.as_ref().map_or(0.0, |s| s.normalize(score as f64));
            Verdict::Score {
                score,
                normalized: scale,
            }
        }
        Some(scale @ Scale::Labels(labels)) => {
            let raw = verdict_str(&obj)?;
            let wanted = raw.trim().to_lowercase();
            let label = labels.iter().find(|l| l.name == wanted).ok_or_else(|| {
                ParseFailure::new(
                    F::UnknownLabel,
                    format!("`{raw}` is not one of the verdicts"),
                )
            })?;
            Verdict::Label {
                label: label.name.clone(),
                score: label.score,
                normalized: scale.normalize(label.score),
            }
        }
        None => {
            let raw = verdict_str(&obj)?;
            let choice = match raw.trim().to_lowercase().as_str() {
                "a" => PairChoice::A,
                "b" => PairChoice::B,
                "tie" if c.allow_tie => PairChoice::Tie,
                _ => {
                    return Err(ParseFailure::new(
                        F::UnknownLabel,
                        format!("`{raw}` is not a verdict"),
                    ));
                }
            };
            Verdict::Pairwise { choice }
        }
    };
    Ok(JudgeAnswer { reasoning, verdict })
}

fn verdict_str(obj: &serde_json::Map<String, Value>) -> Result<&str, ParseFailure> {
    match obj.get("verdict") {
        None => Err(ParseFailure::new(
            ParseFailureCode::MissingScore,
            "`verdict` is missing",
        )),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(ParseFailure::new(
            ParseFailureCode::WrongType,
            format!("`verdict` must be a string, got {other}"),
        )),
    }
}

/// An integer, an integral float (`4.0`) or a numeric string (`"4"`).
fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A pairwise result from the candidate's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum PairOutcome {
    CandidateWins,
    StableWins,
    /// Both orders said tie, or they disagreed (`inconsistent`: position bias or noise).
    Tie {
        inconsistent: bool,
    },
}

impl PairOutcome {
    /// Candidate's score: win 1, tie 0.5, loss 0.
    pub fn candidate_score(self) -> f64 {
        match self {
            PairOutcome::CandidateWins => 1.0,
            PairOutcome::StableWins => 0.0,
            PairOutcome::Tie { .. } => 0.5,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Winner {
    Stable,
    Candidate,
    Neither,
}

fn winner(order: Order, choice: PairChoice) -> Winner {
    match (order, choice) {
        (_, PairChoice::Tie) => Winner::Neither,
        (Order::StableFirst, PairChoice::A) | (Order::CandidateFirst, PairChoice::B) => {
            Winner::Stable
        }
        (Order::StableFirst, PairChoice::B) | (Order::CandidateFirst, PairChoice::A) => {
            Winner::Candidate
        }
    }
}

/// Combines the verdicts of the two orders; disagreement is a tie. Either order abstaining
/// makes the pair abstain.
pub fn combine_pairwise(
    stable_first: Result<PairChoice, Abstain>,
    candidate_first: Result<PairChoice, Abstain>,
) -> Result<PairOutcome, Abstain> {
    let a = winner(Order::StableFirst, stable_first?);
    let b = winner(Order::CandidateFirst, candidate_first?);
    Ok(match (a, b) {
        (Winner::Candidate, Winner::Candidate) => PairOutcome::CandidateWins,
        (Winner::Stable, Winner::Stable) => PairOutcome::StableWins,
        (Winner::Neither, Winner::Neither) => PairOutcome::Tie {
            inconsistent: false,
        },
        _ => PairOutcome::Tie { inconsistent: true },
    })
}

/// Aggregates a panel's normalized scores (0..=1; pairwise as the candidate's score). More than
/// half of the judges must have answered; `majority` needs more than half of those that
/// answered to agree on one value.
pub fn aggregate_panel(method: Aggregate, scores: &[Result<f64, Abstain>]) -> Result<f64, Abstain> {
    let answered: Vec<f64> = scores
        .iter()
        .filter_map(|s| s.as_ref().ok().copied())
        .collect();
    if answered.is_empty() {
        return Err(Abstain::new("panel_all_abstained"));
    }
    if answered.len() * 2 <= scores.len() {
        return Err(Abstain::new("panel_no_quorum"));
    }
    match method {
        Aggregate::Mean => Ok(answered.iter().sum::<f64>() / answered.len() as f64),
        Aggregate::Majority => {
            let mut best = (0usize, 0.0);
            for v in &answered {
                let n = answered.iter().filter(|w| (*w - v).abs() < 1e-9).count();
                if n > best.0 {
                    best = (n, *v);
                }
            }
            if best.0 * 2 > answered.len() {
                Ok(best.1)
            } else {
                Err(Abstain::new("panel_no_majority"))
            }
        }
    }
}
