//! A **simulated** LLM judge, for tests and the demo: models with `judge: true` in the profiles
//! (`mock-judge`, `mock-judge-garbage`, `mock-judge-429`) answer canarist's judge prompts
//! without any language model. It is not a judge of quality: it recognises answers from the
//! dataset and says so in its reasoning ("SIMULATED JUDGE …").
//!
//! How it decides: it reads the `<answer>`, `<answer_a>`, `<answer_b>` blocks of the judge prompt
//! canarist renders, looks each one up among the dataset's good and degraded answers, and reads
//! the expected output from the request's strict JSON schema (`response_format`):
//! - `score` (an integer enum): the top of the scale for a good answer, the bottom for a degraded
//!   one, the middle for an answer it does not know;
//! - `verdict` with `A`/`B`: the good answer wins; equal quality is `tie` when allowed, else the
//!   answer whose text sorts first (the same in both orders, so it is position-consistent);
//! - `verdict` with labels: the first label for a good answer, the last for a degraded one (so a
//!   rubric should list its best label first, as the examples do).
//!
//! An answer that calls tools (`[tool call: NAME]` blocks) is good when every call's arguments
//! are valid against the schema the conversation's `[tools]` block declares for its tool, and
//! degraded otherwise, so that the pairwise judge prefers the valid tool decision.
//!
//! Deterministic: the same prompt gets the same verdict. `judge_garbage_rate` makes it answer
//! prose instead of JSON (to exercise the repair retry and abstentions). Pure: no I/O.

use serde_json::{Map, Value, json};
use xxhash_rust::xxh3::xxh3_64;

use super::answer::Draws;
use super::dataset::Dataset;

const LABEL: &str = "SIMULATED JUDGE (canarist mock-upstream, not a language model)";

/// The garbage reply.
pub const GARBAGE: &str = "Honestly, I think this answer is pretty good overall!";

/// A uniform draw in [0, 1) for the garbage decision of one request.
pub fn garbage_draw(draws: &Draws) -> f64 {
    (xxh3_64(draws.id().as_bytes()) >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Quality {
    Degraded,
    Unknown,
    Good,
}

fn quality<'d>(dataset: &'d Dataset, answer: &str) -> (Quality, Option<&'d str>) {
    let answer = answer.trim();
    for e in dataset.entries() {
        if e.good.trim() == answer {
            return (Quality::Good, Some(&e.id));
        }
        if e.degraded.trim() == answer {
            return (Quality::Degraded, Some(&e.id));
        }
    }
    (Quality::Unknown, None)
}

fn describe(q: (Quality, Option<&str>)) -> String {
    match q {
        (Quality::Good, Some(id)) => format!("the dataset's good answer to `{id}`"),
        (Quality::Degraded, Some(id)) => format!("the dataset's degraded answer to `{id}`"),
        _ => "an answer that is not in the dataset".to_owned(),
    }
}

/// The tool calls of a rendered answer (`[tool call: NAME]` and the arguments below it):
/// `(name, arguments)`.
fn tool_calls(answer: &str) -> Vec<(&str, &str)> {
    answer
        .split("\n\n")
        .filter_map(|part| {
            let rest = part.trim().strip_prefix("[tool call: ")?;
            let (name, args) = rest.split_once(']')?;
            Some((name, args.trim()))
        })
        .collect()
}

/// The tools the `[tools]` block of the conversation declares: name → argument schema.
fn declared_tools(prompt: &str) -> Vec<(String, Value)> {
    let Some(conversation) = block(prompt, "conversation") else {
        return Vec::new();
    };
    let Some(start) = conversation.find("[tools]\n") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut name = None;
    for line in conversation[start..].lines().skip(1) {
        if line.trim().is_empty() {
            break;
        }
        if let Some(rest) = line.strip_prefix("- ") {
            name = Some(rest.split(':').next().unwrap_or(rest).trim().to_owned());
        } else if let (Some(n), Some(schema)) = (&name, line.trim().strip_prefix("arguments: "))
            && let Ok(schema) = serde_json::from_str(schema)
        {
            out.push((n.clone(), schema));
        }
    }
    out
}

/// The quality of an answer that calls tools: good when every call's arguments are valid
/// against the schema the conversation declares for its tool, degraded when one is not (or is
/// not JSON); `None` for answers without tool calls.
fn tool_quality(prompt: &str, answer: &str) -> Option<(Quality, String)> {
    let calls = tool_calls(answer);
    if calls.is_empty() {
        return None;
    }
    let tools = declared_tools(prompt);
    for (name, args) in &calls {
        let value = serde_json::from_str::<Value>(args).ok();
        let schema = tools.iter().find(|(n, _)| n == name).map(|(_, s)| s);
        let valid = match (value, schema) {
            (None, _) => false,
            (Some(v), Some(schema)) => {
                jsonschema::validator_for(schema).is_ok_and(|validator| validator.is_valid(&v))
            }
            (Some(_), None) => false,
        };
        if !valid {
            return Some((
                Quality::Degraded,
                format!("a call of `{name}` whose arguments break its declared schema"),
            ));
        }
    }
    Some((
        Quality::Good,
        "tool calls whose arguments are valid against the declared schemas".to_owned(),
    ))
}

/// The quality of one judged answer and how the reasoning describes it.
fn judged(dataset: &Dataset, prompt: &str, answer: &str) -> (Quality, String) {
    tool_quality(prompt, answer).unwrap_or_else(|| {
        let q = quality(dataset, answer);
        (q.0, describe(q))
    })
}

/// The text between `<name>` and `</name>` (as canarist's judge prompts tag them).
fn block<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text.get(start..)?.find(&close)?;
    text.get(start..end)
}

/// The first user message that carries the judged answer(s) (the repair message comes later).
fn judge_prompt(body: &Map<String, Value>) -> Option<String> {
    body.get("messages")?.as_array()?.iter().find_map(|m| {
        let user = m.get("role").and_then(Value::as_str) == Some("user");
        let text = super::wire::content_text(m.get("content")?);
        (user && text.contains("<answer")).then_some(text)
    })
}

fn schema_property<'b>(body: &'b Map<String, Value>, key: &str) -> Option<&'b Value> {
    body.get("response_format")?
        .get("json_schema")?
        .get("schema")?
        .get("properties")?
        .get(key)
}

/// The simulated judge's reply to one chat request (see the module docs).
pub fn reply(dataset: &Dataset, body: &Map<String, Value>, garbage: bool) -> String {
    if garbage {
        return GARBAGE.to_owned();
    }
    let Some(prompt) = judge_prompt(body) else {
        return format!(
            "{LABEL}: send a canarist judge prompt (with <answer> blocks and a json_schema \
             response_format) to get a verdict."
        );
    };
    if let Some(score) = schema_property(body, "score") {
        let scale: Vec<i64> = enum_values(score).filter_map(Value::as_i64).collect();
        let (lo, hi) = (
            scale.iter().copied().min().unwrap_or(1),
            scale.iter().copied().max().unwrap_or(5),
        );
        let q = judged(dataset, &prompt, block(&prompt, "answer").unwrap_or(""));
        let score = match q.0 {
            Quality::Good => hi,
            Quality::Degraded => lo,
            Quality::Unknown => lo + (hi - lo) / 2,
        };
        let reasoning = format!("{LABEL}: the answer is {}.", q.1);
        return json!({"reasoning": reasoning, "score": score}).to_string();
    }
    let verdicts: Vec<&str> = schema_property(body, "verdict")
        .map(|v| enum_values(v).filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if verdicts.contains(&"A") && verdicts.contains(&"B") {
        let (a, b) = (
            block(&prompt, "answer_a").unwrap_or("").trim(),
            block(&prompt, "answer_b").unwrap_or("").trim(),
        );
        let (qa, qb) = (judged(dataset, &prompt, a), judged(dataset, &prompt, b));
        let verdict = match qa.0.cmp(&qb.0) {
            std::cmp::Ordering::Greater => "A",
            std::cmp::Ordering::Less => "B",
            std::cmp::Ordering::Equal if verdicts.contains(&"tie") => "tie",
            std::cmp::Ordering::Equal if a <= b => "A",
            std::cmp::Ordering::Equal => "B",
        };
        let reasoning = format!("{LABEL}: answer A is {}; answer B is {}.", qa.1, qb.1);
        return json!({"reasoning": reasoning, "verdict": verdict}).to_string();
    }
    let q = judged(dataset, &prompt, block(&prompt, "answer").unwrap_or(""));
    let label = match q.0 {
        Quality::Good => verdicts.first(),
        Quality::Degraded => verdicts.last(),
        Quality::Unknown => verdicts.get(verdicts.len() / 2),
    };
    let reasoning = format!("{LABEL}: the answer is {}.", q.1);
    json!({"reasoning": reasoning, "verdict": label.copied().unwrap_or("unknown")}).to_string()
}

fn enum_values(v: &Value) -> impl Iterator<Item = &Value> {
    v.get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(user: &str, schema_key: &str, values: Value) -> Map<String, Value> {
        let body = json!({
            "model": "mock-judge",
            "messages": [
                {"role": "system", "content": "You are an impartial evaluator."},
                {"role": "user", "content": user},
            ],
            "response_format": {"type": "json_schema", "json_schema": {"name": "judgment", "strict": true,
                "schema": {"type": "object", "properties": {"reasoning": {"type": "string"}, schema_key: {"enum": values}}}}},
        });
        body.as_object().cloned().unwrap()
    }

    #[test]
    fn scores_good_high_degraded_low_and_prefers_good_in_both_orders() {
        let d = Dataset::builtin().unwrap();
        let e = &d.entries()[0];
        let conv = format!("<conversation>\n[user]\n{}\n</conversation>", e.prompt);
        let point = |answer: &str| {
            let user = format!("{conv}\n\n<answer>\n{answer}\n</answer>");
            let out: Value = serde_json::from_str(&reply(
                &d,
                &request(&user, "score", json!([1, 2, 3, 4, 5])),
                false,
            ))
            .unwrap();
            assert!(
                out["reasoning"]
                    .as_str()
                    .unwrap()
                    .starts_with("SIMULATED JUDGE")
            );
            out["score"].as_i64().unwrap()
        };
        assert_eq!(point(&e.good), 5);
        assert_eq!(point(&e.degraded), 1);
        assert_eq!(point("something else"), 3);
        let pair = |a: &str, b: &str| {
            let user =
                format!("{conv}\n\n<answer_a>\n{a}\n</answer_a>\n\n<answer_b>\n{b}\n</answer_b>");
            let out: Value = serde_json::from_str(&reply(
                &d,
                &request(&user, "verdict", json!(["A", "B"])),
                false,
            ))
            .unwrap();
            out["verdict"].as_str().unwrap().to_owned()
        };
        assert_eq!(pair(&e.good, &e.degraded), "A");
        assert_eq!(pair(&e.degraded, &e.good), "B");
        // Equal quality without tie: the same text wins in both orders.
        let (x, y) = ("same quality one", "same quality two");
        assert_eq!(pair(x, y), "A");
        assert_eq!(pair(y, x), "B");
        assert_eq!(
            reply(&d, &request(&conv, "score", json!([1, 5])), true),
            GARBAGE
        );
    }
}
