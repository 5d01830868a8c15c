//! The tool-call checks: on one side's normalized answer ([`Answer`], every choice and output
//! item of any of the three APIs) and, for argument schemas, the tools its request declared.
//!
//! Pure. A check that has nothing to look at is skipped, not failed: `tool_name`,
//! `tool_arguments_valid` and `tool_argument` skip an answer without the calls they are about
//! (whether a tool is called at all is `tool_called`'s question), and `tool_arguments_valid`
//! skips a side whose request was not captured (the schemas are unknown). A declared schema
//! that does not compile skips too: it is the request's fault, not the answer's.

use serde_json::Value;
use serde_json_path::JsonPath;

use crate::capture::{Answer, JsonBody, Observation, ToolCall, declared_tools};

use super::checks::SideResult;
use super::model::{ArgumentExpect, CheckKind};

/// `kind` on one side, when it is a tool check; `None` for every other kind.
pub(super) fn tool_check(kind: &CheckKind, obs: &Observation) -> Option<SideResult> {
    let tool_kind = matches!(
        kind,
        CheckKind::ToolCalled { .. }
            | CheckKind::ToolName { .. }
            | CheckKind::ToolArgumentsValid { .. }
            | CheckKind::ToolArgument { .. }
    );
    if !tool_kind {
        return None;
    }
    let Some(answer) = Answer::of(obs) else {
        return Some(SideResult::fail("no answer was captured"));
    };
    Some(match kind {
        CheckKind::ToolCalled { tool, called } => tool_called(&answer, tool.as_deref(), *called),
        CheckKind::ToolName { allowed } => tool_name(&answer, allowed),
        CheckKind::ToolArgumentsValid { tool } => {
            let request = obs.request_body.as_ref().map(JsonBody::value);
            arguments_valid(&answer, tool.as_deref(), request.as_ref())
        }
        CheckKind::ToolArgument {
            tool, path, expect, ..
        } => argument(&answer, tool, path, expect),
        _ => return None,
    })
}

fn names(calls: &[&ToolCall]) -> String {
    let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
    names.join(", ")
}

fn calls_of<'a>(answer: &'a Answer, tool: Option<&str>) -> Vec<&'a ToolCall> {
    answer
        .tool_calls()
        .filter(|c| tool.is_none_or(|t| c.name == t))
        .collect()
}

fn tool_called(answer: &Answer, tool: Option<&str>, called: bool) -> SideResult {
    let all: Vec<&ToolCall> = answer.tool_calls().collect();
    let hits = calls_of(answer, tool);
    match (called, hits.is_empty(), tool) {
        (true, false, _) | (false, true, _) => SideResult::Pass,
        (true, true, None) => SideResult::fail("no tool was called"),
        (true, true, Some(t)) if all.is_empty() => {
            SideResult::fail(format!("`{t}` was not called (no tool was)"))
        }
        (true, true, Some(t)) => {
            SideResult::fail(format!("`{t}` was not called (called: {})", names(&all)))
        }
        (false, false, _) => SideResult::fail(format!("called {}", names(&hits))),
    }
}

fn tool_name(answer: &Answer, allowed: &[String]) -> SideResult {
    let all: Vec<&ToolCall> = answer.tool_calls().collect();
    if all.is_empty() {
        return SideResult::skip("no tool was called");
    }
    let other: Vec<&ToolCall> = all
        .into_iter()
        .filter(|c| !allowed.contains(&c.name))
        .collect();
    if other.is_empty() {
        return SideResult::Pass;
    }
    SideResult::fail(format!(
        "called {}, not one of: {}",
        names(&other),
        allowed.join(", ")
    ))
}

/// The arguments of `call` as JSON, or why they are not.
fn parsed(call: &ToolCall) -> Result<Value, String> {
    serde_json::from_str(call.arguments.trim())
        .map_err(|e| format!("the arguments of `{}` are not JSON: {e}", call.name))
}

fn arguments_valid(answer: &Answer, tool: Option<&str>, request: Option<&Value>) -> SideResult {
    let calls = calls_of(answer, tool);
    if calls.is_empty() {
        return SideResult::skip(match tool {
            Some(t) => format!("`{t}` was not called"),
            None => "no tool was called".to_owned(),
        });
    }
    let Some(request) = request else {
        return SideResult::skip("the request was not captured, so the tools' schemas are unknown");
    };
    let declared = declared_tools(request);
    for call in calls {
        let Some(decl) = declared.iter().find(|d| d.name == call.name) else {
            let known: Vec<&str> = declared.iter().map(|d| d.name).collect();
            return SideResult::fail(format!(
                "`{}` is not a tool the request declared (declared: {})",
                call.name,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        };
        let value = match parsed(call) {
            Ok(v) => v,
            Err(reason) => return SideResult::fail(reason),
        };
        let Some(schema) = decl.schema else {
            continue;
        };
        let validator = match jsonschema::validator_for(schema) {
            Ok(v) => v,
            Err(e) => {
                return SideResult::skip(format!(
                    "the declared schema of `{}` does not compile: {e}",
                    call.name
                ));
            }
        };
        if let Some(e) = validator.iter_errors(&value).next() {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "/".to_owned() } else { at };
            return SideResult::fail(format!(
                "the arguments of `{}` break its schema at `{at}`: {e}",
                call.name
            ));
        }
    }
    SideResult::Pass
}

fn argument(answer: &Answer, tool: &str, path: &JsonPath, expect: &ArgumentExpect) -> SideResult {
    let calls = calls_of(answer, Some(tool));
    if calls.is_empty() {
        return SideResult::skip(format!("`{tool}` was not called"));
    }
    for call in calls {
        let value = match parsed(call) {
            Ok(v) => v,
            Err(reason) => return SideResult::fail(reason),
        };
        let found = path.query(&value).all();
        let Some(first) = found.first() else {
            return SideResult::fail(format!(
                "the arguments of `{tool}` have nothing at `{path}`"
            ));
        };
        let ok = found.iter().all(|v| match expect {
            ArgumentExpect::Equals(want) => *v == want,
            ArgumentExpect::Matches(re) => match v {
                Value::String(s) => re.is_match(s),
                other => re.is_match(&other.to_string()),
            },
        });
        if !ok {
            let want = match expect {
                ArgumentExpect::Equals(want) => format!("is not {want}"),
                ArgumentExpect::Matches(re) => format!("does not match `{}`", re.as_str()),
            };
            return SideResult::fail(format!("`{tool}` `{path}` = {first} {want}"));
        }
    }
    SideResult::Pass
}
