//! Validating the `criteria:` list of a rubric file into [`Criterion`]s: modes, scales with
//! anchors or labels, evaluation steps and few-shot examples (whose verdicts must lie on the
//! scale). Never reads other files. Fails closed, like the rest of loading.

use std::collections::{BTreeMap, BTreeSet};

use super::load::unique_ids;
use super::model::{Criterion, Example, ExampleVerdict, Label, Mode, ReferenceSource, Scale};
use super::yaml::{self, Ctx, MapReader, Node, Value};

/// The widest ordinal scale accepted: anchored scales beyond 11 points are not judged reliably.
const MAX_SCALE_STEPS: i64 = 10;

pub(super) fn criteria(cx: &mut Ctx, m: &mut MapReader<'_>) -> Vec<Criterion> {
    let items = m.seq(cx, "criteria");
    let mut out = Vec::new();
    let mut ids = Vec::new();
    for (field, node) in items {
        if let Some((id, line)) = yaml::peek_str(node, "id") {
            ids.push((id, line, format!("{field}.id")));
        }
        out.extend(criterion(cx, node, &field));
    }
    unique_ids(
        cx,
        ids.iter().map(|(id, l, f)| (id.as_str(), *l, f.clone())),
    );
    out
}

fn criterion(cx: &mut Ctx, node: &Node, path: &str) -> Option<Criterion> {
    let before = cx.problems.len();
    let mut m = MapReader::new(cx, node, path)?;
    let id = m.req_str(cx, "id");
    let mode = match m.req_str(cx, "mode").as_deref() {
        Some("pointwise") => Some(Mode::Pointwise),
        Some("pairwise") => Some(Mode::Pairwise),
        Some("reference") => Some(Mode::Reference),
        Some(other) => {
            cx.problem(
                m.line_of("mode"),
                &m.field("mode"),
                format!("unknown mode `{other}` (expected pointwise, pairwise or reference)"),
            );
            None
        }
        None => None,
    };
    let question = m.req_str(cx, "question");
    if question.as_deref().is_some_and(|q| q.trim().is_empty()) {
        cx.problem(
            m.line_of("question"),
            &m.field("question"),
            "must not be empty",
        );
    }
    let steps = m.str_list(cx, "steps");
    let weight = m.f64(cx, "weight").unwrap_or(1.0);
    if weight < 0.0 {
        cx.problem(
            m.line_of("weight"),
            &m.field("weight"),
            "must not be negative",
        );
    }
    let scale_node = m.get("scale");
    let labels_node = m.get("labels");
    let scale = match (mode, scale_node, labels_node) {
        (Some(Mode::Pairwise), None, None) | (None, _, _) => None,
        (Some(Mode::Pairwise), _, _) => {
            let line = m.line_of(if scale_node.is_some() {
                "scale"
            } else {
                "labels"
            });
            cx.problem(
                line,
                &m.field("scale"),
                "pairwise criteria take no scale or labels: the verdict is A, B or tie",
            );
            None
        }
        (Some(_), Some(_), Some(_)) => {
            cx.problem(
                m.line_of("labels"),
                &m.field("scale"),
                "give either `scale` or `labels`, not both",
            );
            None
        }
        (Some(_), None, None) => {
            cx.problem(
                m.line,
                &m.field("scale"),
                "missing: give an ordinal `scale` with anchors or named `labels`",
            );
            None
        }
        (Some(_), Some(s), None) => ordinal(cx, s, &m.field("scale")),
        (Some(_), None, Some(l)) => labels(cx, l, &m.field("labels"), m.line_of("labels")),
    };
    let allow_tie = m.bool(cx, "allow_tie").unwrap_or(true);
    if m.has("allow_tie") && mode != Some(Mode::Pairwise) {
        cx.problem(
            m.line_of("allow_tie"),
            &m.field("allow_tie"),
            "only pairwise criteria have ties",
        );
    }
    let reference = reference(cx, &mut m, mode);
    let mut examples = Vec::new();
    for (field, n) in m.seq(cx, "examples") {
        if let (Some(mode), Some(e)) = (mode, MapReader::new(cx, n, &field)) {
            examples.extend(example(cx, e, mode, scale.as_ref(), allow_tie));
        }
    }
    m.finish(cx);
    if cx.problems.len() > before {
        return None;
    }
    Some(Criterion {
        id: id?,
        mode: mode?,
        question: question?,
        steps,
        scale,
        allow_tie,
        reference,
        examples,
        weight,
    })
}

fn reference(cx: &mut Ctx, m: &mut MapReader<'_>, mode: Option<Mode>) -> Option<ReferenceSource> {
    let text = m.str(cx, "reference");
    match (mode, text) {
        (Some(Mode::Reference), None) => {
            cx.problem(
                m.line,
                &m.field("reference"),
                "missing: `stable` or `metadata.<key>`",
            );
            None
        }
        (Some(Mode::Reference), Some(t)) => {
            if t == "stable" {
                Some(ReferenceSource::Stable)
            } else if let Some(key) = t.strip_prefix("metadata.").filter(|k| !k.is_empty()) {
                Some(ReferenceSource::Metadata {
                    key: key.to_owned(),
                })
            } else {
                cx.problem(
                    m.line_of("reference"),
                    &m.field("reference"),
                    format!("`{t}` is neither `stable` nor `metadata.<key>`"),
                );
                None
            }
        }
        (_, Some(_)) => {
            cx.problem(
                m.line_of("reference"),
                &m.field("reference"),
                "only `mode: reference` criteria take a reference",
            );
            None
        }
        (_, None) => None,
    }
}

fn ordinal(cx: &mut Ctx, node: &Node, path: &str) -> Option<Scale> {
    let before = cx.problems.len();
    let mut m = MapReader::new(cx, node, path)?;
    let min = m
        .require(cx, "min")
        .and_then(|n| yaml::as_int(cx, n, &m.field("min")));
    let max = m
        .require(cx, "max")
        .and_then(|n| yaml::as_int(cx, n, &m.field("max")));
    if let (Some(lo), Some(hi)) = (min, max) {
        if lo >= hi {
            cx.problem(
                m.line_of("max"),
                &m.field("max"),
                format!("max {hi} must be greater than min {lo}"),
            );
        } else if hi - lo > MAX_SCALE_STEPS {
            cx.problem(
                m.line_of("max"),
                &m.field("max"),
                format!("a scale spans at most {MAX_SCALE_STEPS} steps, got {lo}..{hi}"),
            );
        }
    }
    let field = m.field("anchors");
    let mut anchors = BTreeMap::new();
    match m.get("anchors") {
        None => cx.problem(
            m.line,
            &field,
            "missing: an ordinal scale needs anchor descriptions, at least for both ends",
        ),
        Some(n) => {
            match &n.value {
                Value::Map(entries) => {
                    for (k, line, v) in entries {
                        let f = format!("{field}.{k}");
                        let Ok(score) = k.parse::<i64>() else {
                            cx.problem(*line, &f, "anchor keys must be integer scores");
                            continue;
                        };
                        if let (Some(lo), Some(hi)) = (min, max)
                            && !(lo..=hi).contains(&score)
                        {
                            cx.problem(
                                *line,
                                &f,
                                format!("anchor {score} is outside the scale {lo}..{hi}"),
                            );
                        }
                        if let Some(text) = yaml::as_str(cx, v, &f) {
                            if text.trim().is_empty() {
                                cx.problem(*line, &f, "anchor description must not be empty");
                            }
                            anchors.insert(score, text);
                        }
                    }
                    if let (Some(lo), Some(hi)) = (min, max) {
                        let missing: Vec<String> = [lo, hi]
                            .iter()
                            .filter(|s| !anchors.contains_key(s))
                            .map(i64::to_string)
                            .collect();
                        if !missing.is_empty() && !entries.is_empty() {
                            cx.problem(
                                m.line_of("anchors"),
                                &field,
                                format!(
                                    "both ends need an anchor; missing {}",
                                    missing.join(" and ")
                                ),
                            );
                        } else if entries.is_empty() {
                            cx.problem(m.line_of("anchors"), &field, "an ordinal scale needs anchor descriptions, at least for both ends");
                        }
                    }
                }
                _ => cx.problem(
                    m.line_of("anchors"),
                    &field,
                    format!(
                        "expected a mapping of score → description, found {}",
                        n.type_name()
                    ),
                ),
            }
        }
    }
    m.finish(cx);
    if cx.problems.len() > before {
        return None;
    }
    Some(Scale::Ordinal {
        min: min?,
        max: max?,
        anchors,
    })
}

fn labels(cx: &mut Ctx, node: &Node, path: &str, line: usize) -> Option<Scale> {
    let before = cx.problems.len();
    let Value::Seq(items) = &node.value else {
        cx.problem(
            line,
            path,
            format!("expected a list of labels, found {}", node.type_name()),
        );
        return None;
    };
    if items.len() < 2 {
        cx.problem(line, path, "give at least two labels");
    }
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("{path}[{i}]");
        let Some(mut m) = MapReader::new(cx, item, &field) else {
            continue;
        };
        let name = m.req_str(cx, "name");
        let score = m
            .require(cx, "score")
            .and_then(|n| yaml::as_f64(cx, n, &m.field("score")));
        let description = m.req_str(cx, "description");
        if let Some(n) = &name {
            let ok = !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                cx.problem(
                    m.line_of("name"),
                    &m.field("name"),
                    format!("`{n}`: use lowercase letters, digits and `_`"),
                );
            }
            if !names.insert(n.clone()) {
                cx.problem(
                    m.line_of("name"),
                    &m.field("name"),
                    format!("duplicate label `{n}`"),
                );
            }
        }
        m.finish(cx);
        if let (Some(name), Some(score), Some(description)) = (name, score, description) {
            out.push(Label {
                name,
                score,
                description,
            });
        }
    }
    if cx.problems.len() > before {
        return None;
    }
    if out.iter().all(|l| l.score == out[0].score) {
        cx.problem(line, path, "labels must not all have the same score");
        return None;
    }
    Some(Scale::Labels(out))
}

fn example(
    cx: &mut Ctx,
    mut m: MapReader<'_>,
    mode: Mode,
    scale: Option<&Scale>,
    allow_tie: bool,
) -> Option<Example> {
    let before = cx.problems.len();
    let input = m.req_str(cx, "input");
    let reasoning = m.req_str(cx, "reasoning");
    let (answer, answer_b) = if mode == Mode::Pairwise {
        (m.req_str(cx, "answer_a"), m.req_str(cx, "answer_b"))
    } else {
        (m.req_str(cx, "answer"), None)
    };
    let reference = if mode == Mode::Reference {
        m.req_str(cx, "reference")
    } else {
        None
    };
    let verdict = match (mode, scale) {
        (Mode::Pairwise, _) => m.req_str(cx, "verdict").and_then(|v| {
            let ok = v == "A" || v == "B" || (allow_tie && v == "tie");
            if !ok {
                let allowed = if allow_tie { "A, B or tie" } else { "A or B" };
                cx.problem(
                    m.line_of("verdict"),
                    &m.field("verdict"),
                    format!("`{v}` is not a verdict (expected {allowed})"),
                );
            }
            ok.then_some(ExampleVerdict::Pairwise(v))
        }),
        (_, Some(Scale::Ordinal { min, max, .. })) => m
            .require(cx, "score")
            .and_then(|n| yaml::as_int(cx, n, &m.field("score")))
            .and_then(|s| {
                if (*min..=*max).contains(&s) {
                    Some(ExampleVerdict::Score(s))
                } else {
                    cx.problem(
                        m.line_of("score"),
                        &m.field("score"),
                        format!("example score {s} is outside the scale {min}..{max}"),
                    );
                    None
                }
            }),
        (_, Some(Scale::Labels(labels))) => m.req_str(cx, "label").and_then(|l| {
            if labels.iter().any(|x| x.name == l) {
                Some(ExampleVerdict::Label(l))
            } else {
                let names: Vec<&str> = labels.iter().map(|x| x.name.as_str()).collect();
                cx.problem(
                    m.line_of("label"),
                    &m.field("label"),
                    format!(
                        "unknown label `{l}` (expected one of: {})",
                        names.join(", ")
                    ),
                );
                None
            }
        }),
        // The scale itself is invalid and already reported; read the keys so they are not "unknown".
        (_, None) => {
            m.get("score");
            m.get("label");
            None
        }
    };
    m.finish(cx);
    if cx.problems.len() > before {
        return None;
    }
    Some(Example {
        input: input?,
        answer: answer?,
        answer_b,
        reference,
        reasoning: reasoning?,
        verdict: verdict?,
    })
}
