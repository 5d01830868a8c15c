//! Validating the `checks:` list of a rubric file into [`Check`]s: regexes and JSONPaths are
//! parsed and JSON Schemas compiled here, once, so that running a check cannot fail on its own
//! definition. Never reads other files. Fails closed: a check with any problem is dropped and
//! the problem reported, so the rubric does not load.

use regex::Regex;
use serde_json_path::JsonPath;

use super::load::unique_ids;
use super::model::{
    ArgumentExpect, CHECK_TYPES, Check, CheckKind, LengthUnit, RefusalExpect, Severity,
};
use super::yaml::{self, Ctx, MapReader, Node};

/// Phrases of a typical refusal, used by `type: refusal` when the rubric lists none.
pub const DEFAULT_REFUSAL_PHRASES: &[&str] = &[
    "i can't help with that",
    "i cannot help with that",
    "i can't assist with that",
    "i cannot assist with that",
    "i'm sorry, but i can't",
    "i am sorry, but i cannot",
    "i'm not able to help with",
    "i won't be able to help",
    "as an ai language model",
];

pub(super) fn checks(cx: &mut Ctx, m: &mut MapReader<'_>) -> Vec<Check> {
    let items = m.seq(cx, "checks");
    let mut out = Vec::new();
    let mut ids = Vec::new();
    for (i, (field, node)) in items.into_iter().enumerate() {
        if let Some((id, line)) = yaml::peek_str(node, "id") {
            ids.push((id, line, format!("{field}.id")));
        }
        out.extend(check(cx, node, &field, i));
    }
    unique_ids(
        cx,
        ids.iter().map(|(id, l, f)| (id.as_str(), *l, f.clone())),
    );
    out
}

fn check(cx: &mut Ctx, node: &Node, path: &str, index: usize) -> Option<Check> {
    let before = cx.problems.len();
    let mut m = MapReader::new(cx, node, path)?;
    let ty = m.req_str(cx, "type")?;
    let id = m.str(cx, "id").unwrap_or_else(|| format!("{ty}_{index}"));
    let weight = m.f64(cx, "weight").unwrap_or(1.0);
    if weight < 0.0 {
        cx.problem(
            m.line_of("weight"),
            &m.field("weight"),
            "must not be negative",
        );
    }
    let severity = match m.str(cx, "severity").as_deref() {
        None | Some("soft") => Severity::Soft,
        Some("hard") => Severity::Hard,
        Some(other) => {
            cx.problem(
                m.line_of("severity"),
                &m.field("severity"),
                format!("unknown severity `{other}` (expected hard or soft)"),
            );
            Severity::Soft
        }
    };
    let kind = match ty.as_str() {
        "json_valid" => Some(CheckKind::JsonValid),
        "json_schema" => json_schema(cx, &mut m),
        "regex" => regex(cx, &mut m),
        "contains" | "not_contains" => {
            let values = values(cx, &mut m);
            let case_sensitive = m.bool(cx, "case_sensitive").unwrap_or(true);
            Some(if ty == "contains" {
                CheckKind::Contains {
                    values,
                    case_sensitive,
                }
            } else {
                CheckKind::NotContains {
                    values,
                    case_sensitive,
                }
            })
        }
        "length" => length(cx, &mut m),
        "finish_reason" => {
            let allowed = m.str_list(cx, "allowed");
            if allowed.is_empty() {
                cx.problem(
                    m.line_of("allowed"),
                    &m.field("allowed"),
                    "list at least one finish reason (e.g. stop)",
                );
            }
            Some(CheckKind::FinishReason { allowed })
        }
        "refusal" => refusal(cx, &mut m),
        "latency_ms" => positive(cx, &mut m, "max").map(|max| CheckKind::LatencyMs { max }),
        "cost" => positive(cx, &mut m, "max_usd").map(|max_usd| CheckKind::Cost { max_usd }),
        "equals_stable" => json_path(cx, &mut m)
            .map(|(path_text, path)| CheckKind::EqualsStable { path_text, path }),
        "tool_called" | "tool_not_called" => Some(CheckKind::ToolCalled {
            tool: tool_name(cx, &mut m, false),
            called: ty == "tool_called",
        }),
        "tool_name" => {
            let allowed = m.str_list(cx, "allowed");
            if allowed.is_empty() || allowed.iter().any(|a| a.trim().is_empty()) {
                cx.problem(
                    m.line_of("allowed"),
                    &m.field("allowed"),
                    "list at least one tool name, none empty",
                );
            }
            Some(CheckKind::ToolName { allowed })
        }
        "tool_arguments_valid" => Some(CheckKind::ToolArgumentsValid {
            tool: tool_name(cx, &mut m, false),
        }),
        "tool_argument" => tool_argument(cx, &mut m),
        other => {
            let line = m.line_of("type");
            cx.problem(
                line,
                &m.field("type"),
                format!(
                    "unknown check type `{other}` (expected one of: {})",
                    CHECK_TYPES.join(", ")
                ),
            );
            // The keys of an unknown type cannot be judged, so they are not reported.
            return None;
        }
    };
    m.finish(cx);
    if cx.problems.len() > before {
        return None;
    }
    Some(Check {
        id,
        kind: kind?,
        weight,
        severity,
    })
}

fn json_schema(cx: &mut Ctx, m: &mut MapReader<'_>) -> Option<CheckKind> {
    let node = m.require(cx, "schema")?;
    let schema = node.to_json();
    match jsonschema::validator_for(&schema) {
        Ok(v) => Some(CheckKind::JsonSchema {
            schema,
            validator: Box::new(v),
        }),
        Err(e) => {
            cx.problem(
                m.line_of("schema"),
                &m.field("schema"),
                format!("the JSON Schema does not compile: {e}"),
            );
            None
        }
    }
}

fn regex(cx: &mut Ctx, m: &mut MapReader<'_>) -> Option<CheckKind> {
    let negate = m.bool(cx, "negate").unwrap_or(false);
    let text = m.req_str(cx, "pattern")?;
    compile_regex(cx, m, "pattern", &text).map(|pattern| CheckKind::Regex { pattern, negate })
}

/// `text` (the value of `key`) as a regex, or a problem naming the key.
fn compile_regex(cx: &mut Ctx, m: &MapReader<'_>, key: &str, text: &str) -> Option<Regex> {
    match Regex::new(text) {
        Ok(pattern) => Some(pattern),
        Err(e) => {
            // regex errors draw a caret diagram over several lines; keep the last one.
            let msg = e.to_string();
            let last = msg
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or(&msg);
            cx.problem(
                m.line_of(key),
                &m.field(key),
                format!("bad regex `{text}`: {}", last.trim()),
            );
            None
        }
    }
}

/// The required `path`, parsed as a JSONPath (RFC 9535).
fn json_path(cx: &mut Ctx, m: &mut MapReader<'_>) -> Option<(String, JsonPath)> {
    let path_text = m.req_str(cx, "path")?;
    match JsonPath::parse(&path_text) {
        Ok(path) => Some((path_text, path)),
        Err(e) => {
            cx.problem(
                m.line_of("path"),
                &m.field("path"),
                format!("`{path_text}` is not a JSONPath: {e}"),
            );
            None
        }
    }
}

/// The `tool` a tool check is about: a non-empty name, required or not.
fn tool_name(cx: &mut Ctx, m: &mut MapReader<'_>, required: bool) -> Option<String> {
    let tool = if required {
        m.req_str(cx, "tool")
    } else {
        m.str(cx, "tool")
    };
    match tool {
        Some(t) if t.trim().is_empty() => {
            cx.problem(m.line_of("tool"), &m.field("tool"), "must not be empty");
            None
        }
        other => other,
    }
}

/// `tool_argument`: `tool`, `path`, and exactly one of `equals` (any YAML value) and `matches`
/// (a regex).
fn tool_argument(cx: &mut Ctx, m: &mut MapReader<'_>) -> Option<CheckKind> {
    let tool = tool_name(cx, m, true);
    let path = json_path(cx, m);
    let equals = match m.get("equals") {
        Some(node) => Some(node.to_json()),
        None if m.is_explicit_null("equals") => Some(serde_json::Value::Null),
        None => None,
    };
    let matches = m.str(cx, "matches");
    let expect = match (equals, matches) {
        (Some(v), None) => Some(ArgumentExpect::Equals(v)),
        (None, Some(text)) => compile_regex(cx, m, "matches", &text).map(ArgumentExpect::Matches),
        (Some(_), Some(_)) => {
            cx.problem(
                m.line_of("matches"),
                &m.field("matches"),
                "give `equals` or `matches`, not both",
            );
            None
        }
        (None, None) => {
            cx.problem(
                m.line,
                &m.field("equals"),
                "give `equals` (a value) or `matches` (a regex)",
            );
            None
        }
    };
    let (path_text, path) = path?;
    Some(CheckKind::ToolArgument {
        tool: tool?,
        path_text,
        path,
        expect: expect?,
    })
}

/// `value: x` or `values: [x, y]`, at least one, none empty.
fn values(cx: &mut Ctx, m: &mut MapReader<'_>) -> Vec<String> {
    let mut values = m.str_list(cx, "values");
    values.extend(m.str(cx, "value"));
    if values.is_empty() {
        cx.problem(
            m.line,
            &m.field("values"),
            "give `value` or a non-empty `values` list",
        );
    }
    if values.iter().any(String::is_empty) {
        cx.problem(
            m.line_of("values"),
            &m.field("values"),
            "values must not be empty strings",
        );
    }
    values
}

fn length(cx: &mut Ctx, m: &mut MapReader<'_>) -> Option<CheckKind> {
    let unit = match m.str(cx, "unit").as_deref() {
        None | Some("chars") => LengthUnit::Chars,
        Some("tokens") => LengthUnit::Tokens,
        Some(other) => {
            cx.problem(
                m.line_of("unit"),
                &m.field("unit"),
                format!("unknown unit `{other}` (expected chars or tokens)"),
            );
            return None;
        }
    };
    let min = m.u64(cx, "min");
    let max = m.u64(cx, "max");
    match (min, max) {
        (None, None) => {
            cx.problem(m.line, &m.field("max"), "give `min`, `max` or both");
        }
        (Some(lo), Some(hi)) if lo > hi => {
            cx.problem(
                m.line_of("min"),
                &m.field("min"),
                format!("min {lo} is greater than max {hi}"),
            );
        }
        _ => {}
    }
    Some(CheckKind::Length { unit, min, max })
}

fn refusal(cx: &mut Ctx, m: &mut MapReader<'_>) -> Option<CheckKind> {
    let mut phrases: Vec<String> = m
        .str_list(cx, "phrases")
        .iter()
        .map(|p| p.to_lowercase())
        .collect();
    if !m.has("phrases") {
        phrases = DEFAULT_REFUSAL_PHRASES
            .iter()
            .map(|p| (*p).to_owned())
            .collect();
    } else if phrases.is_empty() || phrases.iter().any(String::is_empty) {
        cx.problem(
            m.line_of("phrases"),
            &m.field("phrases"),
            "list at least one non-empty phrase (or leave `phrases` out for the defaults)",
        );
    }
    let expect = match m.str(cx, "expect").as_deref() {
        None | Some("answer") => RefusalExpect::Answer,
        Some("refusal") => RefusalExpect::Refusal,
        Some(other) => {
            cx.problem(
                m.line_of("expect"),
                &m.field("expect"),
                format!("unknown value `{other}` (expected answer or refusal)"),
            );
            return None;
        }
    };
    Some(CheckKind::Refusal { phrases, expect })
}

fn positive(cx: &mut Ctx, m: &mut MapReader<'_>, key: &'static str) -> Option<f64> {
    let v = m.require(cx, key).and_then(|_| m.f64(cx, key))?;
    if v <= 0.0 {
        cx.problem(
            m.line_of(key),
            &m.field(key),
            format!("must be positive, got {v}"),
        );
        return None;
    }
    Some(v)
}
