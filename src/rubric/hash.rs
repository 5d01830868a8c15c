//! The content hash of a rubric: sha256 over a canonical JSON serialization of everything that
//! affects a verdict.
//!
//! Included: every check (type, parameters, weight, severity), every criterion (mode, question,
//! steps, scale and anchors or labels, examples, reference source, weight), each judge's model,
//! temperature, seed and max_tokens, the panel's aggregation, and the version of canarist's judge
//! prompt template. Excluded: `id`, `version`, `description`, comments, key order, `applies_to`
//! (it chooses pairs, not verdicts), and the judge's endpoint, key variable, rate limits and spend
//! cap (operational). The serialization is built from the validated model, so YAML formatting,
//! comments and key order cannot change it. Pure; cannot fail.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::model::{ArgumentExpect, CheckKind, Rubric};
use super::prompt::TEMPLATE_VERSION;

/// `sha256:<64 hex digits>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContentHash(pub String);

impl ContentHash {
    /// The first 12 hex digits, for messages.
    pub fn short(&self) -> &str {
        let hex = self.0.strip_prefix("sha256:").unwrap_or(&self.0);
        hex.get(..12).unwrap_or(hex)
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The canonical document that is hashed (exposed for debugging and tests).
pub fn canonical(rubric: &Rubric) -> Value {
    let checks: Vec<Value> = rubric
        .checks
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "type": c.kind.type_name(),
                "params": check_params(&c.kind),
                "weight": c.weight,
                "severity": c.severity,
            })
        })
        .collect();
    let judging = rubric.judging.as_ref().map(|j| {
        json!({
            "aggregate": j.aggregate,
            "judges": j.judges.iter().map(judge_form).collect::<Vec<_>>(),
        })
    });
    json!({
        "format": "canarist-rubric-hash/1",
        "template": TEMPLATE_VERSION,
        "checks": checks,
        "criteria": rubric.criteria,
        "judging": judging,
    })
}

/// A judge's part of the canonical form. The request-shape settings appear only when they
/// differ from a chat model's (`temperature` sent, `max_tokens`), so that the hashes of rubrics
/// written before they existed do not change.
fn judge_form(m: &super::JudgeModel) -> Value {
    let mut form = json!({
        "model": m.model,
        "temperature": m.temperature,
        "seed": m.seed,
        "max_tokens": m.max_tokens,
    });
    if let Some(obj) = form.as_object_mut() {
        if !m.send_temperature {
            obj.insert("send_temperature".into(), json!(false));
        }
        if m.token_limit_field != super::TokenLimitField::MaxTokens {
            obj.insert(
                "token_limit_field".into(),
                json!(m.token_limit_field.as_str()),
            );
        }
    }
    form
}

fn check_params(kind: &CheckKind) -> Value {
    match kind {
        CheckKind::JsonValid => json!({}),
        CheckKind::JsonSchema { schema, .. } => json!({ "schema": schema }),
        CheckKind::Regex { pattern, negate } => {
            json!({ "pattern": pattern.as_str(), "negate": negate })
        }
        CheckKind::Contains {
            values,
            case_sensitive,
        }
        | CheckKind::NotContains {
            values,
            case_sensitive,
        } => {
            json!({ "values": values, "case_sensitive": case_sensitive })
        }
        CheckKind::Length { unit, min, max } => json!({ "unit": unit, "min": min, "max": max }),
        CheckKind::FinishReason { allowed } => json!({ "allowed": allowed }),
        CheckKind::Refusal { phrases, expect } => json!({ "phrases": phrases, "expect": expect }),
        CheckKind::LatencyMs { max } => json!({ "max": max }),
        CheckKind::Cost { max_usd } => json!({ "max_usd": max_usd }),
        CheckKind::EqualsStable { path_text, .. } => json!({ "path": path_text }),
        CheckKind::ToolCalled { tool, .. } | CheckKind::ToolArgumentsValid { tool } => {
            json!({ "tool": tool })
        }
        CheckKind::ToolName { allowed } => json!({ "allowed": allowed }),
        CheckKind::ToolArgument {
            tool,
            path_text,
            expect,
            ..
        } => match expect {
            ArgumentExpect::Equals(v) => json!({ "tool": tool, "path": path_text, "equals": v }),
            ArgumentExpect::Matches(re) => {
                json!({ "tool": tool, "path": path_text, "matches": re.as_str() })
            }
        },
    }
}

/// Sorts object keys recursively so that the bytes do not depend on map implementation order.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), sorted(&map[k]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

pub fn content_hash(rubric: &Rubric) -> ContentHash {
    let doc = sorted(&canonical(rubric));
    let digest = Sha256::digest(doc.to_string().as_bytes());
    ContentHash(format!("sha256:{}", hex::encode(digest)))
}
