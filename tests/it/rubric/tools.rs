//! Tool-call checks and tool calls in judge prompts, over the whole answer of each API shape.
use canarist::capture::{Answer, Role};
use canarist::rubric::*;
use serde_json::{Value, json};

use super::*;

fn order_schema() -> Value {
    json!({"type": "object", "required": ["order_id"], "additionalProperties": false,
        "properties": {"order_id": {"type": "string", "pattern": "^[A-Z]-[0-9]+$"}}})
}

/// A chat request declaring `lookup_order` and `issue_refund`.
fn chat_request() -> Value {
    json!({"model": "order-agent", "messages": [{"role": "user", "content": "Where is A-1?"}],
    "tools": [
        {"type": "function", "function": {"name": "lookup_order", "parameters": order_schema()}},
        {"type": "function", "function": {"name": "issue_refund",
            "parameters": {"type": "object", "required": ["order_id", "amount"],
                "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}}}}}
    ]})
}

/// A chat answer with these tool calls (`(name, arguments)`) and `content`.
fn chat_answer(content: Option<&str>, calls: &[(&str, &str)]) -> Value {
    let calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (name, args))| {
            json!({"id": format!("call_{i}"), "type": "function",
                "function": {"name": name, "arguments": args}})
        })
        .collect();
    let mut message = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        message["tool_calls"] = json!(calls);
    }
    json!({"object": "chat.completion", "choices": [{"index": 0, "message": message,
        "finish_reason": if calls.is_empty() { "stop" } else { "tool_calls" }}]})
}

/// A side that sent `request` and answered `response` (no captured text: the body is all).
fn side(role: Role, request: Value, response: Value) -> Observation {
    let mut o = obs(role, "");
    o.response_text = None;
    o.request_body = Some(request.into());
    o.response_body = Some(response.into());
    o
}

fn tool_pair(stable: Value, candidate: Value) -> Pair {
    pair(
        side(Role::Stable, chat_request(), stable),
        side(Role::Candidate, chat_request(), candidate),
    )
}

fn skipped(r: &SideResult) -> bool {
    matches!(r, SideResult::Skipped { .. })
}

fn reason(r: &SideResult) -> &str {
    match r {
        SideResult::Fail { reason } | SideResult::Skipped { reason } => reason,
        SideResult::Pass => "",
    }
}

#[test]
fn tool_called_and_not_called() {
    let lookup = chat_answer(None, &[("lookup_order", r#"{"order_id": "A-1"}"#)]);
    let text = chat_answer(Some("Your order is on its way."), &[]);
    let p = tool_pair(lookup.clone(), text.clone());
    let o = run_one("type: tool_called", &p);
    assert!(o.stable.passed() && fail(&o.candidate), "{o:?}");
    assert_eq!(reason(&o.candidate), "no tool was called");
    let o = run_one("type: tool_called\ntool: issue_refund", &p);
    assert_eq!(
        reason(&o.stable),
        "`issue_refund` was not called (called: lookup_order)"
    );
    let o = run_one(
        "type: tool_not_called\ntool: lookup_order",
        &tool_pair(text, lookup),
    );
    assert!(o.stable.passed() && fail(&o.candidate));
    assert_eq!(reason(&o.candidate), "called lookup_order");
}

#[test]
fn tool_name_is_one_of_a_set() {
    let p = tool_pair(
        chat_answer(None, &[("lookup_order", "{}")]),
        chat_answer(None, &[("lookup_order", "{}"), ("delete_account", "{}")]),
    );
    let o = run_one("type: tool_name\nallowed: [lookup_order, issue_refund]", &p);
    assert!(o.stable.passed() && fail(&o.candidate));
    assert_eq!(
        reason(&o.candidate),
        "called delete_account, not one of: lookup_order, issue_refund"
    );
    let o = run_one(
        "type: tool_name\nallowed: [lookup_order]",
        &tool_pair(
            chat_answer(Some("hi"), &[]),
            chat_answer(None, &[("x", "{}")]),
        ),
    );
    assert!(skipped(&o.stable), "no call, nothing to name: {o:?}");
}

#[test]
fn tool_arguments_are_validated_against_the_schema_the_request_declared() {
    let check = "type: tool_arguments_valid\nseverity: hard";
    let good = chat_answer(None, &[("lookup_order", r#"{"order_id": "A-1"}"#)]);
    for (bad, why) in [
        (
            r#"{"order_id": "a1"}"#,
            "the arguments of `lookup_order` break its schema at `/order_id`:",
        ),
        (
            r#"{"order": "A-1"}"#,
            "the arguments of `lookup_order` break its schema at `/`:",
        ),
        (
            r#"{"order_id": "A-1""#,
            "the arguments of `lookup_order` are not JSON:",
        ),
    ] {
        let p = tool_pair(good.clone(), chat_answer(None, &[("lookup_order", bad)]));
        let o = run_one(check, &p);
        assert!(o.stable.passed() && o.is_guardrail(), "{bad}: {o:?}");
        assert!(reason(&o.candidate).starts_with(why), "{bad}: {o:?}");
    }
    // A tool the request never declared.
    let p = tool_pair(good.clone(), chat_answer(None, &[("refund_all", "{}")]));
    let o = run_one(check, &p);
    assert_eq!(
        reason(&o.candidate),
        "`refund_all` is not a tool the request declared (declared: lookup_order, issue_refund)"
    );
    // Only the named tool's calls; a side without them, or without its request, is skipped.
    let refund_only = "type: tool_arguments_valid\ntool: issue_refund";
    let p = tool_pair(
        good.clone(),
        chat_answer(
            None,
            &[("issue_refund", r#"{"order_id": "A-1", "amount": "9"}"#)],
        ),
    );
    let o = run_one(refund_only, &p);
    assert!(skipped(&o.stable) && fail(&o.candidate), "{o:?}");
    let mut p = tool_pair(good.clone(), good);
    p.candidate.request_body = None;
    let o = run_one(check, &p);
    assert!(o.stable.passed() && skipped(&o.candidate), "{o:?}");
}

#[test]
fn an_argument_at_a_path_equals_or_matches() {
    let p = tool_pair(
        chat_answer(
            None,
            &[("issue_refund", r#"{"order_id": "A-1", "amount": 12.5}"#)],
        ),
        chat_answer(
            None,
            &[("issue_refund", r#"{"order_id": "1", "amount": "12.5"}"#)],
        ),
    );
    let o = run_one(
        "type: tool_argument\ntool: issue_refund\npath: $.amount\nequals: 12.5",
        &p,
    );
    assert!(o.stable.passed() && fail(&o.candidate), "{o:?}");
    assert_eq!(
        reason(&o.candidate),
        "`issue_refund` `$.amount` = \"12.5\" is not 12.5"
    );
    let o = run_one(
        "type: tool_argument\ntool: issue_refund\npath: $.order_id\nmatches: '^[A-Z]-[0-9]+$'",
        &p,
    );
    assert!(o.stable.passed() && fail(&o.candidate), "{o:?}");
    let o = run_one(
        "type: tool_argument\ntool: issue_refund\npath: $.currency\nequals: USD",
        &p,
    );
    assert_eq!(
        reason(&o.stable),
        "the arguments of `issue_refund` have nothing at `$.currency`"
    );
    let o = run_one(
        "type: tool_argument\ntool: lookup_order\npath: $.order_id\nequals: A-1",
        &p,
    );
    assert!(skipped(&o.stable) && skipped(&o.candidate));
}

#[test]
fn the_checks_read_responses_and_messages_answers_too() {
    let schema = order_schema();
    let responses_req = json!({"model": "m", "input": "Where is A-1?",
        "tools": [{"type": "function", "name": "lookup_order", "parameters": schema}]});
    let responses_answer = |args: &str| {
        json!({"object": "response", "status": "completed", "output": [
            {"type": "function_call", "id": "fc_1", "call_id": "call_1",
             "name": "lookup_order", "arguments": args}]})
    };
    let messages_req = json!({"model": "m", "max_tokens": 100,
        "messages": [{"role": "user", "content": "Where is A-1?"}],
        "tools": [{"name": "lookup_order", "input_schema": schema}]});
    let messages_answer = |input: Value| {
        json!({"type": "message", "role": "assistant", "stop_reason": "tool_use",
            "content": [{"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup_order", "input": input}]})
    };
    let p = pair(
        side(
            Role::Stable,
            responses_req.clone(),
            responses_answer(r#"{"order_id": "A-1"}"#),
        ),
        side(
            Role::Candidate,
            messages_req,
            messages_answer(json!({"order_id": 1})),
        ),
    );
    let o = run_one("type: tool_arguments_valid", &p);
    assert!(o.stable.passed() && fail(&o.candidate), "{o:?}");
    let o = run_one("type: tool_called\ntool: lookup_order", &p);
    assert!(o.stable.passed() && o.candidate.passed());
    // The text checks read the Messages answer's text block.
    let o = run_one("type: contains\nvalue: Looking", &p);
    assert!(o.candidate.passed() && fail(&o.stable), "{o:?}");
    assert_eq!(
        Answer::of(&p.stable).unwrap().tool_calls().count(),
        1,
        "the Responses function_call"
    );
}

#[test]
fn bad_tool_checks_are_reported_with_file_line_and_field() {
    let text = "id: t\nversion: 1.0.0\nchecks:\n  - type: tool_name\n    allowed: []\n  - type: tool_argument\n    path: $.a\n  - type: tool_argument\n    tool: f\n    path: 'a['\n    equals: 1\n    matches: x\n  - type: tool_argument\n    tool: f\n    path: $.a\n    matches: '(x'\n  - type: tool_called\n    tool: ''\n  - type: tool_arguments_valid\n    schema: {}\n";
    let err = parse_rubric(std::path::Path::new("tools.yaml"), text).unwrap_err();
    let RubricError::Invalid(problems) = err else {
        panic!("expected problems")
    };
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let expected = [
        "tools.yaml:5: checks[0].allowed: list at least one tool name, none empty",
        "tools.yaml:6: checks[1].equals: give `equals` (a value) or `matches` (a regex)",
        "tools.yaml:6: checks[1].tool: missing required field",
        "tools.yaml:10: checks[2].path: `a[` is not a JSONPath",
        "tools.yaml:12: checks[2].matches: give `equals` or `matches`, not both",
        "tools.yaml:16: checks[3].matches: bad regex `(x`: error: unclosed group",
        "tools.yaml:18: checks[4].tool: must not be empty",
        "tools.yaml:20: checks[5].schema: unknown key (expected one of: id, severity, tool, type, weight)",
    ];
    for want in expected {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "expected\n  {want}\ngot:\n  {}",
            lines.join("\n  ")
        );
    }
    assert_eq!(lines.len(), expected.len(), "{}", lines.join("\n"));
}

#[test]
fn judge_prompts_show_tool_calls_and_ask_about_the_decision() {
    let rubrics = load_dir(std::path::Path::new("rubrics")).unwrap();
    let rubric = rubrics.iter().find(|r| r.id == "tool-calling").unwrap();
    let p = tool_pair(
        chat_answer(
            Some("Let me look that up."),
            &[("lookup_order", r#"{"order_id":"A-1"}"#)],
        ),
        chat_answer(None, &[("lookup_order", r#"{"order": 1"#)]),
    );
    let prompts = render(&rubric.criteria[0], &p).unwrap();
    assert_eq!(prompts.len(), 2, "pairwise: both orders");
    let ab = &prompts[0].1;
    assert!(
        ab.user.contains(
            "<answer_a>\nLet me look that up.\n\n[tool call: lookup_order]\n{\n  \"order_id\": \"A-1\"\n}\n</answer_a>"
        ),
        "{}",
        ab.user
    );
    assert!(
        ab.user.contains(
            "<answer_b>\n[tool call: lookup_order]\n{\"order\": 1\n(the arguments are not valid JSON)\n</answer_b>"
        ),
        "{}",
        ab.user
    );
    assert!(ab.system.contains("judge whether to call a tool at all"));
    golden("tool-calling.tool_decision.pairwise-ab", &show(ab));
    // A tool-call-only answer is an answer, not an abstention (it used to be `no_answer`).
    assert_eq!(
        answer_for_judge(&p.candidate).as_deref(),
        Some("[tool call: lookup_order]\n{\"order\": 1\n(the arguments are not valid JSON)")
    );
    // Text-only answers render exactly as before, without the note about tools.
    let text = texts("Your order ships today.", "It shipped.");
    let support = rubrics.iter().find(|r| r.id == "support-chat").unwrap();
    let mut text = text;
    for side in [&mut text.stable, &mut text.candidate] {
        side.request_body = Some(chat_request().into());
    }
    let plain = render(&support.criteria[1], &text).unwrap();
    assert!(!plain[0].1.system.contains("[tool call"));
    assert!(
        plain[0]
            .1
            .user
            .contains("<answer_a>\nYour order ships today.\n</answer_a>")
    );
}

#[test]
fn a_refusal_the_provider_marked_counts_for_the_refusal_check() {
    let refused = json!({"object": "chat.completion", "choices": [{"index": 0,
        "finish_reason": "stop",
        "message": {"role": "assistant", "content": null, "refusal": "No, sorry."}}]});
    let anthropic = json!({"type": "message", "stop_reason": "refusal",
        "content": [{"type": "text", "text": "No."}]});
    let p = pair(
        side(Role::Stable, chat_request(), refused),
        side(Role::Candidate, chat_request(), anthropic),
    );
    let o = run_one("type: refusal\nexpect: refusal", &p);
    assert!(o.stable.passed() && o.candidate.passed(), "{o:?}");
    let o = run_one("type: refusal", &p);
    assert_eq!(reason(&o.stable), "refused (marked by the provider)");
    assert!(fail(&o.candidate));
}
