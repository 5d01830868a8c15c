//! Deterministic checks, run in-process on both sides of a pair.
//!
//! Pure and cheap: no I/O, no allocation beyond the results. A side whose call failed
//! (`Observation::error`) is `Skipped`, not failed: errors are counted by the gate on their own
//! and must not be counted twice. A hard check that passes on stable and fails on the candidate
//! is a guardrail signal ([`CheckOutcome::is_guardrail`]).

use serde::Serialize;

use std::borrow::Cow;

use crate::capture::{Answer, Observation, Pair, Role};

use super::model::{Check, CheckKind, LengthUnit, RefusalExpect, Rubric, Severity};
use super::tool_checks::tool_check;

/// The result of one check on one side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum SideResult {
    Pass,
    Fail {
        reason: String,
    },
    /// The check could not be evaluated on this side (error, no cost known, no stable value).
    Skipped {
        reason: String,
    },
}

impl SideResult {
    pub fn passed(&self) -> bool {
        matches!(self, SideResult::Pass)
    }

    pub fn failed(&self) -> bool {
        matches!(self, SideResult::Fail { .. })
    }

    pub(super) fn fail(reason: impl Into<String>) -> Self {
        SideResult::Fail {
            reason: truncate(reason.into()),
        }
    }

    pub(super) fn skip(reason: impl Into<String>) -> Self {
        SideResult::Skipped {
            reason: reason.into(),
        }
    }

    fn from_bool(ok: bool, reason: impl FnOnce() -> String) -> Self {
        if ok {
            SideResult::Pass
        } else {
            SideResult::fail(reason())
        }
    }
}

/// One check on both sides of one pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckOutcome {
    pub check_id: String,
    pub check_type: &'static str,
    pub severity: Severity,
    pub weight: f64,
    pub stable: SideResult,
    pub candidate: SideResult,
}

impl CheckOutcome {
    /// A hard check that passes on stable and fails on the candidate.
    pub fn is_guardrail(&self) -> bool {
        self.severity == Severity::Hard && self.stable.passed() && self.candidate.failed()
    }

    pub fn side(&self, role: Role) -> &SideResult {
        match role {
            Role::Stable => &self.stable,
            Role::Candidate => &self.candidate,
        }
    }
}

/// All checks of a rubric on one pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub outcomes: Vec<CheckOutcome>,
}

impl CheckReport {
    /// Weighted share of passed checks among those evaluated on `role`'s side; `None` when
    /// nothing was evaluated (or all weights are zero).
    pub fn score(&self, role: Role) -> Option<f64> {
        let (mut passed, mut total) = (0.0, 0.0);
        for o in &self.outcomes {
            match o.side(role) {
                SideResult::Pass => {
                    passed += o.weight;
                    total += o.weight;
                }
                SideResult::Fail { .. } => total += o.weight,
                SideResult::Skipped { .. } => {}
            }
        }
        (total > 0.0).then(|| passed / total)
    }

    pub fn guardrails(&self) -> impl Iterator<Item = &CheckOutcome> {
        self.outcomes.iter().filter(|o| o.is_guardrail())
    }
}

pub fn run_checks(rubric: &Rubric, pair: &Pair) -> CheckReport {
    CheckReport {
        outcomes: rubric.checks.iter().map(|c| evaluate(c, pair)).collect(),
    }
}

pub fn evaluate(check: &Check, pair: &Pair) -> CheckOutcome {
    let (stable, candidate) = match &check.kind {
        CheckKind::EqualsStable { path, .. } => equals_stable(path, &pair.stable, &pair.candidate),
        kind => (side(kind, &pair.stable), side(kind, &pair.candidate)),
    };
    CheckOutcome {
        check_id: check.id.clone(),
        check_type: check.kind.type_name(),
        severity: check.severity,
        weight: check.weight,
        stable,
        candidate,
    }
}

/// The assistant's answer text: the captured text, else the first output's text in the
/// normalized answer of the response body (`capture::Answer`, any of the three APIs); `None`
/// when there is no text (a tool-call-only answer has none: the tool checks read its calls).
pub fn answer_text(obs: &Observation) -> Option<Cow<'_, str>> {
    if let Some(text) = obs.response_text.as_deref() {
        return Some(Cow::Borrowed(text));
    }
    let answer = Answer::from_body(&obs.response_body.as_ref()?.value())?;
    let first = answer.outputs.into_iter().next()?;
    (!first.text.is_empty()).then_some(Cow::Owned(first.text))
}

fn errored(obs: &Observation) -> Option<SideResult> {
    obs.error
        .map(|e| SideResult::skip(format!("the call failed ({})", e.as_str())))
}

fn side(kind: &CheckKind, obs: &Observation) -> SideResult {
    if let Some(skip) = errored(obs) {
        return skip;
    }
    if let Some(result) = tool_check(kind, obs) {
        return result;
    }
    match kind {
        CheckKind::LatencyMs { max } => {
            return SideResult::from_bool(obs.latency_ms <= *max, || {
                format!(
                    "latency {:.0} ms is over the budget of {max} ms",
                    obs.latency_ms
                )
            });
        }
        CheckKind::Cost { max_usd } => {
            return match obs.cost_usd {
                None => SideResult::skip("no cost known for this model"),
                Some(c) => SideResult::from_bool(c <= *max_usd, || {
                    format!("cost ${c:.6} is over the budget of ${max_usd}")
                }),
            };
        }
        CheckKind::FinishReason { allowed } => {
            return match obs.finish_reason.as_deref() {
                Some(r) if allowed.iter().any(|a| a == r) => SideResult::Pass,
                Some(r) => SideResult::fail(format!(
                    "finish reason `{r}` is not one of: {}",
                    allowed.join(", ")
                )),
                None => SideResult::fail("no finish reason"),
            };
        }
        CheckKind::Refusal { expect, .. } => {
            // A refusal the provider marked as such (`message.refusal`, a `refusal` part or
            // output item, Anthropic's `stop_reason: refusal`) counts whatever the phrases.
            let marked =
                Answer::of(obs).is_some_and(|a| a.outputs.iter().any(|o| o.refusal.is_some()));
            if marked {
                return match expect {
                    RefusalExpect::Refusal => SideResult::Pass,
                    RefusalExpect::Answer => SideResult::fail("refused (marked by the provider)"),
                };
            }
        }
        _ => {}
    }
    let Some(text) = answer_text(obs) else {
        return SideResult::fail("no answer text");
    };
    text_check(kind, &text, obs)
}

fn text_check(kind: &CheckKind, text: &str, obs: &Observation) -> SideResult {
    match kind {
        CheckKind::JsonValid => match serde_json::from_str::<serde_json::Value>(text.trim()) {
            Ok(_) => SideResult::Pass,
            Err(e) => SideResult::fail(format!("not valid JSON: {e}")),
        },
        CheckKind::JsonSchema { validator, .. } => {
            match serde_json::from_str::<serde_json::Value>(text.trim()) {
                Err(e) => SideResult::fail(format!("not valid JSON: {e}")),
                Ok(v) => match validator.iter_errors(&v).next() {
                    None => SideResult::Pass,
                    Some(e) => SideResult::fail(format!(
                        "schema violation at `{}`: {e}",
                        e.instance_path()
                    )),
                },
            }
        }
        CheckKind::Regex { pattern, negate } => {
            let found = pattern.is_match(text);
            SideResult::from_bool(found != *negate, || {
                if *negate {
                    format!("matches `{}`", pattern.as_str())
                } else {
                    format!("does not match `{}`", pattern.as_str())
                }
            })
        }
        CheckKind::Contains {
            values,
            case_sensitive,
        } => {
            let missing: Vec<&str> = values
                .iter()
                .filter(|v| !contains(text, v, *case_sensitive))
                .map(String::as_str)
                .collect();
            SideResult::from_bool(missing.is_empty(), || format!("missing {missing:?}"))
        }
        CheckKind::NotContains {
            values,
            case_sensitive,
        } => {
            let found: Vec<&str> = values
                .iter()
                .filter(|v| contains(text, v, *case_sensitive))
                .map(String::as_str)
                .collect();
            SideResult::from_bool(found.is_empty(), || format!("contains {found:?}"))
        }
        CheckKind::Length { unit, min, max } => {
            let chars = text.chars().count() as u64;
            let n = match unit {
                LengthUnit::Chars => chars,
                LengthUnit::Tokens => obs.usage.map_or(chars.div_ceil(4), |u| u.completion_tokens),
            };
            let unit = match unit {
                LengthUnit::Chars => "chars",
                LengthUnit::Tokens => "tokens",
            };
            if min.is_some_and(|m| n < m) {
                SideResult::fail(format!(
                    "{n} {unit} is below the minimum of {}",
                    min.unwrap_or(0)
                ))
            } else if max.is_some_and(|m| n > m) {
                SideResult::fail(format!(
                    "{n} {unit} is above the maximum of {}",
                    max.unwrap_or(0)
                ))
            } else {
                SideResult::Pass
            }
        }
        CheckKind::Refusal { phrases, expect } => {
            let lower = text.to_lowercase();
            let hit = phrases.iter().find(|p| lower.contains(p.as_str()));
            match (expect, hit) {
                (RefusalExpect::Answer, None) | (RefusalExpect::Refusal, Some(_)) => {
                    SideResult::Pass
                }
                (RefusalExpect::Answer, Some(p)) => SideResult::fail(format!("refused (\"{p}\")")),
                (RefusalExpect::Refusal, None) => SideResult::fail("did not refuse"),
            }
        }
        // Handled before: these do not look at the text.
        CheckKind::LatencyMs { .. }
        | CheckKind::Cost { .. }
        | CheckKind::FinishReason { .. }
        | CheckKind::EqualsStable { .. }
        | CheckKind::ToolCalled { .. }
        | CheckKind::ToolName { .. }
        | CheckKind::ToolArgumentsValid { .. }
        | CheckKind::ToolArgument { .. } => SideResult::skip("not a text check"),
    }
}

fn contains(text: &str, value: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        text.contains(value)
    } else {
        text.to_lowercase().contains(&value.to_lowercase())
    }
}

/// Stable passes when it has a value at `path`; the candidate passes when its value is equal.
fn equals_stable(
    path: &serde_json_path::JsonPath,
    stable: &Observation,
    candidate: &Observation,
) -> (SideResult, SideResult) {
    let values = |obs: &Observation| -> Result<Vec<serde_json::Value>, String> {
        let text = answer_text(obs).ok_or("no answer text")?;
        let text: &str = &text;
        let json: serde_json::Value =
            serde_json::from_str(text.trim()).map_err(|e| format!("not valid JSON: {e}"))?;
        let found: Vec<serde_json::Value> = path.query(&json).all().into_iter().cloned().collect();
        if found.is_empty() {
            return Err(format!("nothing at `{path}`"));
        }
        Ok(found)
    };
    let stable_values = match errored(stable) {
        Some(skip) => Err(skip),
        None => values(stable).map_err(|r| SideResult::skip(format!("stable has no value: {r}"))),
    };
    let stable_values = match stable_values {
        Ok(v) => v,
        Err(skip) => return (skip, SideResult::skip("nothing to compare with")),
    };
    let candidate_result = match errored(candidate) {
        Some(skip) => skip,
        None => match values(candidate) {
            Err(r) => SideResult::fail(r),
            Ok(v) if v == stable_values => SideResult::Pass,
            Ok(v) => SideResult::fail(format!(
                "`{path}` is {} where the reference has {}",
                show(&v),
                show(&stable_values)
            )),
        },
    };
    (SideResult::Pass, candidate_result)
}

fn show(values: &[serde_json::Value]) -> String {
    match values {
        [one] => one.to_string(),
        many => serde_json::Value::Array(many.to_vec()).to_string(),
    }
}

fn truncate(mut s: String) -> String {
    const MAX: usize = 300;
    if s.len() > MAX {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}
