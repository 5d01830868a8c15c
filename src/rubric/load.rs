//! Rubric files → validated [`Rubric`]s, collecting every problem on the way.
//!
//! Reads the rubric file and the shared judge files it references (`judge_ref`, relative to the
//! rubric's directory). Fails closed: a rubric with any problem is not returned.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use super::hash::content_hash;
use super::model::{Aggregate, AppliesTo, JudgeModel, Judging, Rubric, TokenLimitField};
use super::yaml::{self, Ctx, MapReader, Node, Problem, Value};
use super::{load_checks, load_criteria};

/// Why rubrics could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RubricError {
    /// Every problem found, sorted by file and line.
    #[error("{}", Problems(.0))]
    Invalid(Vec<Problem>),
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Loads every `*.yaml` / `*.yml` file directly in `dir` (sub-folders such as `judges/` are
/// not rubrics). Reports the problems of all files together; rubric ids must be unique.
pub fn load_dir(dir: &Path) -> Result<Vec<Rubric>, RubricError> {
    let io = |source| RubricError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if is_yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut rubrics = Vec::new();
    let mut problems = Vec::new();
    for file in &files {
        match load_file(file) {
            Ok(r) => rubrics.push(r),
            Err(RubricError::Invalid(p)) => problems.extend(p),
            Err(e) => return Err(e),
        }
    }
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for r in &rubrics {
        if let Some(first) = seen.insert(&r.id, &r.source) {
            problems.push(Problem {
                file: r.source.clone(),
                line: 1,
                field: "id".into(),
                message: format!(
                    "duplicate rubric id `{}` (also in {})",
                    r.id,
                    first.display()
                ),
            });
        }
    }
    finish(problems)?;
    Ok(rubrics)
}

/// Loads and validates one rubric file.
pub fn load_file(path: &Path) -> Result<Rubric, RubricError> {
    let text = std::fs::read_to_string(path).map_err(|source| RubricError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_rubric(path, &text)
}

/// Validates rubric text that was read from `path` (judge files resolve relative to it).
pub fn parse_rubric(path: &Path, text: &str) -> Result<Rubric, RubricError> {
    let node = yaml::parse(path, text).map_err(|p| RubricError::Invalid(vec![p]))?;
    let mut cx = Ctx::new(path);
    let dir = path.parent().unwrap_or(Path::new("."));
    let rubric = build(&mut cx, &node, dir);
    finish(cx.problems)?;
    rubric.ok_or_else(|| RubricError::Invalid(Vec::new()))
}

fn finish(mut problems: Vec<Problem>) -> Result<(), RubricError> {
    if problems.is_empty() {
        return Ok(());
    }
    problems.sort();
    problems.dedup();
    Err(RubricError::Invalid(problems))
}

fn build(cx: &mut Ctx, node: &Node, dir: &Path) -> Option<Rubric> {
    let mut m = MapReader::new(cx, node, "")?;
    let id = m.req_str(cx, "id");
    let id_ok = |id: &str| {
        !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if let Some(id) = &id
        && !id_ok(id)
    {
        cx.problem(
            m.line_of("id"),
            "id",
            "must be non-empty and use only letters, digits, `-`, `_` and `.`",
        );
    }
    let version = m.require(cx, "version").and_then(|n| {
        let text = match &n.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            _ => String::new(),
        };
        semver::Version::parse(&text)
            .map_err(|e| {
                cx.problem(
                    n.line,
                    "version",
                    format!("`{text}` is not a semantic version (e.g. 1.2.0): {e}"),
                )
            })
            .ok()
    });
    let description = m.str(cx, "description");
    let applies_to = match m.get("applies_to") {
        Some(n) => applies_to(cx, n),
        None => Some(default_applies_to()),
    };
    let no_checks = yaml::is_empty_list(m.get("checks"));
    let no_criteria = yaml::is_empty_list(m.get("criteria"));
    let checks = load_checks::checks(cx, &mut m);
    let criteria = load_criteria::criteria(cx, &mut m);
    let judging = judging(cx, &mut m, dir, !no_criteria);
    if no_checks && no_criteria {
        cx.problem(
            m.line,
            "checks",
            "a rubric needs at least one check or criterion",
        );
    }
    m.finish(cx);
    if !cx.problems.is_empty() {
        return None;
    }
    let mut rubric = Rubric {
        id: id?,
        version: version?,
        description,
        source: cx.file.clone(),
        hash: super::hash::ContentHash::default(),
        applies_to: applies_to?,
        checks,
        criteria,
        judging,
    };
    rubric.hash = content_hash(&rubric);
    Some(rubric)
}

fn default_applies_to() -> AppliesTo {
    AppliesTo {
        deployments: Vec::new(),
        routes: Vec::new(),
        cohort: BTreeMap::new(),
        metadata: BTreeMap::new(),
        sample_rate: 1.0,
    }
}

fn applies_to(cx: &mut Ctx, node: &Node) -> Option<AppliesTo> {
    let mut m = MapReader::new(cx, node, "applies_to")?;
    let deployments = m.str_list(cx, "deployments");
    let routes = m.str_list(cx, "routes");
    for r in &routes {
        if !r.starts_with('/') {
            cx.problem(
                m.line_of("routes"),
                &m.field("routes"),
                format!("`{r}` is not an endpoint path (e.g. /chat/completions)"),
            );
        }
    }
    let cohort = matches(cx, &mut m, "cohort");
    let metadata = matches(cx, &mut m, "metadata");
    let sample_rate = m.f64(cx, "sample_rate").unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_rate) {
        cx.problem(
            m.line_of("sample_rate"),
            &m.field("sample_rate"),
            format!("must be between 0 and 1, got {sample_rate}"),
        );
    }
    m.finish(cx);
    Some(AppliesTo {
        deployments,
        routes,
        cohort,
        metadata,
        sample_rate,
    })
}

/// `key: value` or `key: [value, value]` → accepted values per key.
fn matches(
    cx: &mut Ctx,
    m: &mut MapReader<'_>,
    key: &'static str,
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let Some(node) = m.get(key) else {
        return out;
    };
    let parent = m.field(key);
    if MapReader::new(cx, node, &parent).is_none() {
        return out;
    }
    if let Value::Map(entries) = &node.value {
        for (k, line, v) in entries {
            let field = yaml::join(&parent, k);
            let values = match &v.value {
                Value::Str(s) => vec![s.clone()],
                Value::Int(i) => vec![i.to_string()],
                Value::Bool(b) => vec![b.to_string()],
                Value::Seq(items) => items
                    .iter()
                    .filter_map(|n| yaml::as_str(cx, n, &field))
                    .collect(),
                _ => {
                    cx.problem(*line, &field, "expected a value or a list of values");
                    Vec::new()
                }
            };
            out.insert(k.clone(), values);
        }
    }
    out
}

fn judging(cx: &mut Ctx, m: &mut MapReader<'_>, dir: &Path, needed: bool) -> Option<Judging> {
    let inline = m.get("judge");
    let by_ref = m.get("judge_ref");
    let panel = m.get("panel");
    let given = [inline.is_some(), by_ref.is_some(), panel.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if given > 1 {
        cx.problem(
            m.line,
            "judge",
            "give only one of `judge`, `judge_ref` and `panel`",
        );
        return None;
    }
    if given == 0 {
        if needed {
            cx.problem(
                m.line,
                "judge",
                "criteria need a judge: add `judge`, `judge_ref` or `panel`",
            );
        }
        return None;
    }
    if let Some(n) = inline {
        let j = judge(cx, n, "judge", "inline")?;
        return Some(Judging {
            judges: vec![j],
            aggregate: Aggregate::Mean,
        });
    }
    if let Some(n) = by_ref {
        let path = yaml::as_str(cx, n, "judge_ref")?;
        let j = judge_file(cx, n.line, "judge_ref", dir, &path)?;
        return Some(Judging {
            judges: vec![j],
            aggregate: Aggregate::Mean,
        });
    }
    let n = panel?;
    let mut p = MapReader::new(cx, n, "panel")?;
    let aggregate = match p.req_str(cx, "aggregate").as_deref() {
        Some("majority") => Some(Aggregate::Majority),
        Some("mean") => Some(Aggregate::Mean),
        Some(other) => {
            cx.problem(
                p.line_of("aggregate"),
                "panel.aggregate",
                format!("unknown aggregate `{other}` (expected majority or mean)"),
            );
            None
        }
        None => None,
    };
    let mut judges = Vec::new();
    let items = p.seq(cx, "judges");
    if items.len() < 2 {
        cx.problem(
            p.line,
            "panel.judges",
            "a panel needs at least two judges (use `judge` for one)",
        );
    }
    for (field, item) in items {
        let Some(mut e) = MapReader::new(cx, item, &field) else {
            continue;
        };
        if e.has("judge_ref") {
            if let Some(path) = e.str(cx, "judge_ref") {
                judges.extend(judge_file(
                    cx,
                    e.line_of("judge_ref"),
                    &e.field("judge_ref"),
                    dir,
                    &path,
                ));
            }
            e.finish(cx);
        } else {
            judges.extend(judge(cx, item, &field, "inline"));
        }
    }
    p.finish(cx);
    Some(Judging {
        judges,
        aggregate: aggregate?,
    })
}

/// Reads a shared judge file; its problems name the judge file, a missing file names the ref.
fn judge_file(cx: &mut Ctx, line: usize, field: &str, dir: &Path, rel: &str) -> Option<JudgeModel> {
    let path = dir.join(rel);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            cx.problem(
                line,
                field,
                format!("cannot read judge file {}: {e}", path.display()),
            );
            return None;
        }
    };
    let node = match yaml::parse(&path, &text) {
        Ok(n) => n,
        Err(p) => {
            cx.problems.push(p);
            return None;
        }
    };
    let name = Path::new(rel)
        .file_stem()
        .map_or_else(|| rel.to_owned(), |s| s.to_string_lossy().into_owned());
    let mut jcx = Ctx::new(&path);
    let judge = judge(&mut jcx, &node, "", &name);
    if !jcx.problems.is_empty() {
        cx.problem(
            line,
            field,
            format!("judge file {} is invalid", path.display()),
        );
    }
    cx.problems.extend(jcx.problems);
    judge
}

fn judge(cx: &mut Ctx, node: &Node, path: &str, name: &str) -> Option<JudgeModel> {
    let before = cx.problems.len();
    let mut m = MapReader::new(cx, node, path)?;
    let name = m.str(cx, "name").unwrap_or_else(|| name.to_owned());
    let base_url = m.req_str(cx, "base_url");
    if let Some(u) = &base_url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        cx.problem(
            m.line_of("base_url"),
            &m.field("base_url"),
            format!("`{u}` is not an http(s) URL"),
        );
    }
    let api_key_env = m.req_str(cx, "api_key_env");
    if let Some(k) = &api_key_env {
        let ok = !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            cx.problem(
                m.line_of("api_key_env"),
                &m.field("api_key_env"),
                "must name an environment variable (e.g. OPENAI_API_KEY), not hold a key",
            );
        }
    }
    let model = m.req_str(cx, "model");
    let temperature = m.f64(cx, "temperature").unwrap_or(0.0);
    if !(0.0..=2.0).contains(&temperature) {
        cx.problem(
            m.line_of("temperature"),
            &m.field("temperature"),
            "must be between 0 and 2 (use 0 for judging)",
        );
    }
    let temperature_is_null = m.is_explicit_null("temperature");
    let reasoning = model
        .as_deref()
        .is_some_and(super::model::is_reasoning_model);
    let send_temperature = m
        .bool(cx, "send_temperature")
        .unwrap_or(if temperature_is_null {
            false
        } else {
            m.has("temperature") || !reasoning
        });
    let token_limit_field = match m.str(cx, "token_limit_field") {
        None if reasoning => TokenLimitField::MaxCompletionTokens,
        None => TokenLimitField::MaxTokens,
        Some(name) => TokenLimitField::parse(&name).unwrap_or_else(|| {
            cx.problem(
                m.line_of("token_limit_field"),
                &m.field("token_limit_field"),
                format!("`{name}` is not one of max_tokens, max_completion_tokens"),
            );
            TokenLimitField::MaxTokens
        }),
    };
    let seed = m.int(cx, "seed");
    let max_tokens = bounded_u32(cx, &mut m, "max_tokens").unwrap_or(512);
    let requests_per_minute = bounded_u32(cx, &mut m, "requests_per_minute").unwrap_or(60);
    let tokens_per_minute = bounded_u32(cx, &mut m, "tokens_per_minute");
    let spend_cap_usd = m.f64(cx, "spend_cap_usd");
    if spend_cap_usd.is_some_and(|c| c <= 0.0) {
        cx.problem(
            m.line_of("spend_cap_usd"),
            &m.field("spend_cap_usd"),
            "must be positive",
        );
    }
    m.finish(cx);
    if cx.problems.len() > before {
        return None;
    }
    Some(JudgeModel {
        name,
        base_url: base_url?.trim_end_matches('/').to_owned(),
        api_key_env: api_key_env?,
        model: model?,
        temperature,
        send_temperature,
        seed,
        max_tokens,
        token_limit_field,
        requests_per_minute,
        tokens_per_minute,
        spend_cap_usd,
    })
}

/// A positive integer that fits in u32.
fn bounded_u32(cx: &mut Ctx, m: &mut MapReader<'_>, key: &'static str) -> Option<u32> {
    let v = m.u64(cx, key)?;
    match u32::try_from(v) {
        Ok(v) if v > 0 => Some(v),
        _ => {
            cx.problem(
                m.line_of(key),
                &m.field(key),
                format!("must be between 1 and {}", u32::MAX),
            );
            None
        }
    }
}

/// Reports ids that occur twice in one list (`checks`, `criteria`).
pub(super) fn unique_ids<'a>(cx: &mut Ctx, ids: impl Iterator<Item = (&'a str, usize, String)>) {
    let mut seen = BTreeSet::new();
    for (id, line, field) in ids {
        if !seen.insert(id) {
            cx.problem(line, &field, format!("duplicate id `{id}`"));
        }
    }
}
