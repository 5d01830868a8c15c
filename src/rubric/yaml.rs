//! A small span-aware YAML tree and the field readers that validation is written with.
//!
//! Why this and not serde: serde (with `serde_path_to_error`) stops at the first error and loses
//! line numbers for the semantic checks that come after deserialization. Rubric validation has
//! to report *every* problem as `file:line: field: message`, so the file is parsed with `saphyr`
//! (the maintained successor of `yaml-rust`/`yaml-rust2`, YAML 1.2, duplicate keys rejected) into
//! its `MarkedYaml` tree, copied into [`Node`]s that keep the line of every value and every key,
//! and read by [`MapReader`], which records a [`Problem`] for each missing, mistyped or unknown
//! field and carries on.

use std::fmt;
use std::path::{Path, PathBuf};

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

/// One thing wrong with a rubric (or judge) file, at one line and field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line of the offending value (or of its parent when the field is missing).
    pub line: usize,
    /// Dotted path of the field, e.g. `criteria[1].scale.anchors`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// A YAML value with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order: (key, key line, value).
    Map(Vec<(String, usize, Node)>),
}

impl Node {
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The node as plain JSON (for inline JSON Schemas and expected values).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, _, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Parses one YAML document. A syntax error is a single problem at its line.
pub fn parse(file: &Path, text: &str) -> Result<Node, Problem> {
    let problem = |line: usize, message: String| Problem {
        file: file.to_path_buf(),
        line,
        field: String::new(),
        message,
    };
    let docs = MarkedYaml::load_from_str(text)
        .map_err(|e| problem(e.marker().line(), format!("invalid YAML: {}", e.info())))?;
    match docs.len() {
        0 => Err(problem(1, "the file is empty".into())),
        1 => convert(&docs[0]).map_err(|(line, m)| problem(line, m)),
        n => Err(problem(1, format!("expected one YAML document, found {n}"))),
    }
}

fn convert(y: &MarkedYaml<'_>) -> Result<Node, (usize, String)> {
    let line = y.span.start.line();
    let value = match &y.data {
        YamlData::Value(s) => match s {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(i) => Value::Int(*i),
            Scalar::FloatingPoint(f) => Value::Float(f.into_inner()),
            Scalar::String(s) => Value::Str(s.to_string()),
        },
        YamlData::Representation(s, _, _) => Value::Str(s.to_string()),
        YamlData::Sequence(items) => {
            Value::Seq(items.iter().map(convert).collect::<Result<_, _>>()?)
        }
        YamlData::Mapping(map) => {
            let mut entries = Vec::with_capacity(map.len());
            for (k, v) in map {
                let key = match &k.data {
                    YamlData::Value(Scalar::String(s)) => s.to_string(),
                    YamlData::Value(Scalar::Integer(i)) => i.to_string(),
                    YamlData::Value(Scalar::Boolean(b)) => b.to_string(),
                    _ => return Err((k.span.start.line(), "keys must be plain scalars".into())),
                };
                entries.push((key, k.span.start.line(), convert(v)?));
            }
            Value::Map(entries)
        }
        YamlData::Tagged(_, inner) => return convert(inner),
        YamlData::Alias(_) => return Err((line, "YAML aliases are not supported".into())),
        YamlData::BadValue => return Err((line, "value does not match its tag".into())),
    };
    Ok(Node { line, value })
}

/// Collects problems for one file.
#[derive(Debug)]
pub struct Ctx {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl Ctx {
    pub fn new(file: &Path) -> Self {
        Self {
            file: file.to_path_buf(),
            problems: Vec::new(),
        }
    }

    pub fn problem(&mut self, line: usize, field: &str, message: impl fmt::Display) {
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            field: field.to_owned(),
            message: message.to_string(),
        });
    }
}

/// Joins a parent path and a key: `criteria[1]` + `scale` → `criteria[1].scale`.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Reads the fields of one mapping; every key asked for is "known", the rest are reported by
/// [`MapReader::finish`].
pub struct MapReader<'n> {
    pub path: String,
    pub line: usize,
    entries: &'n [(String, usize, Node)],
    known: Vec<&'static str>,
}

impl<'n> MapReader<'n> {
    /// `None` (with a problem) when `node` is not a mapping.
    pub fn new(cx: &mut Ctx, node: &'n Node, path: &str) -> Option<Self> {
        match &node.value {
            Value::Map(entries) => Some(Self {
                path: path.to_owned(),
                line: node.line,
                entries,
                known: Vec::new(),
            }),
            _ => {
                cx.problem(
                    node.line,
                    path,
                    format!("expected a mapping, found {}", node.type_name()),
                );
                None
            }
        }
    }

    pub fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The line of `key`, or of the mapping when the key is absent.
    pub fn line_of(&self, key: &str) -> usize {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map_or(self.line, |(_, line, _)| *line)
    }

    pub fn has(&mut self, key: &'static str) -> bool {
        self.get(key).is_some()
    }

    /// The value of `key`, if present (an explicit `null` counts as absent).
    pub fn get(&mut self, key: &'static str) -> Option<&'n Node> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, v)| v)
            .filter(|v| v.value != Value::Null)
    }

    /// Whether `key` is present and explicitly `null` (which [`get`](Self::get) treats as absent).
    pub fn is_explicit_null(&mut self, key: &'static str) -> bool {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        self.entries
            .iter()
            .any(|(k, _, v)| k == key && v.value == Value::Null)
    }

    /// Like [`get`](Self::get) but reports a missing field.
    pub fn require(&mut self, cx: &mut Ctx, key: &'static str) -> Option<&'n Node> {
        let node = self.get(key);
        if node.is_none() {
            cx.problem(self.line, &self.field(key), "missing required field");
        }
        node
    }

    pub fn str(&mut self, cx: &mut Ctx, key: &'static str) -> Option<String> {
        let node = self.get(key)?;
        as_str(cx, node, &self.field(key))
    }

    pub fn req_str(&mut self, cx: &mut Ctx, key: &'static str) -> Option<String> {
        let node = self.require(cx, key)?;
        as_str(cx, node, &self.field(key))
    }

    pub fn f64(&mut self, cx: &mut Ctx, key: &'static str) -> Option<f64> {
        let node = self.get(key)?;
        as_f64(cx, node, &self.field(key))
    }

    pub fn int(&mut self, cx: &mut Ctx, key: &'static str) -> Option<i64> {
        let node = self.get(key)?;
        as_int(cx, node, &self.field(key))
    }

    /// A non-negative integer.
    pub fn u64(&mut self, cx: &mut Ctx, key: &'static str) -> Option<u64> {
        let node = self.get(key)?;
        let field = self.field(key);
        let i = as_int(cx, node, &field)?;
        match u64::try_from(i) {
            Ok(u) => Some(u),
            Err(_) => {
                cx.problem(node.line, &field, format!("must not be negative, got {i}"));
                None
            }
        }
    }

    pub fn bool(&mut self, cx: &mut Ctx, key: &'static str) -> Option<bool> {
        let node = self.get(key)?;
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                let found = node.type_name();
                cx.problem(
                    node.line,
                    &self.field(key),
                    format!("expected true or false, found {found}"),
                );
                None
            }
        }
    }

    /// A list of strings; a single string is accepted as a list of one.
    pub fn str_list(&mut self, cx: &mut Ctx, key: &'static str) -> Vec<String> {
        let Some(node) = self.get(key) else {
            return Vec::new();
        };
        let field = self.field(key);
        match &node.value {
            Value::Str(s) => vec![s.clone()],
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, n)| as_str(cx, n, &format!("{field}[{i}]")))
                .collect(),
            _ => {
                cx.problem(
                    node.line,
                    &field,
                    format!("expected a list of strings, found {}", node.type_name()),
                );
                Vec::new()
            }
        }
    }

    /// A list of nodes with their paths (`field[i]`); anything else is a problem.
    pub fn seq(&mut self, cx: &mut Ctx, key: &'static str) -> Vec<(String, &'n Node)> {
        let Some(node) = self.get(key) else {
            return Vec::new();
        };
        let field = self.field(key);
        match &node.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("{field}[{i}]"), n))
                .collect(),
            _ => {
                cx.problem(
                    node.line,
                    &field,
                    format!("expected a list, found {}", node.type_name()),
                );
                Vec::new()
            }
        }
    }

    /// Reports every key that was never asked for.
    pub fn finish(self, cx: &mut Ctx) {
        for (key, line, _) in self.entries {
            if !self.known.contains(&key.as_str()) {
                let mut known = self.known.clone();
                known.sort_unstable();
                cx.problem(
                    *line,
                    &self.field(key),
                    format!("unknown key (expected one of: {})", known.join(", ")),
                );
            }
        }
    }
}

/// Whether `node` is absent or an empty list.
pub fn is_empty_list(node: Option<&Node>) -> bool {
    match node {
        None => true,
        Some(n) => matches!(&n.value, Value::Seq(items) if items.is_empty()),
    }
}

/// The string at `key` of a mapping node, with its line, without reporting anything.
pub fn peek_str(node: &Node, key: &str) -> Option<(String, usize)> {
    let Value::Map(entries) = &node.value else {
        return None;
    };
    entries
        .iter()
        .find(|(k, _, _)| k == key)
        .and_then(|(_, line, v)| match &v.value {
            Value::Str(s) => Some((s.clone(), *line)),
            _ => None,
        })
}

pub fn as_str(cx: &mut Ctx, node: &Node, field: &str) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        _ => {
            cx.problem(
                node.line,
                field,
                format!("expected a string, found {}", node.type_name()),
            );
            None
        }
    }
}

pub fn as_f64(cx: &mut Ctx, node: &Node, field: &str) -> Option<f64> {
    match node.value {
        Value::Int(i) => Some(i as f64),
        Value::Float(f) if f.is_finite() => Some(f),
        _ => {
            cx.problem(
                node.line,
                field,
                format!("expected a number, found {}", node.type_name()),
            );
            None
        }
    }
}

pub fn as_int(cx: &mut Ctx, node: &Node, field: &str) -> Option<i64> {
    match node.value {
        Value::Int(i) => Some(i),
        _ => {
            cx.problem(
                node.line,
                field,
                format!("expected an integer, found {}", node.type_name()),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_keys_and_items() {
        let text = "id: a\nlist:\n  - x: 1\n    y: 2\n  - x: 3\nmap:\n  k: v\n";
        let node = parse(Path::new("t.yaml"), text).unwrap();
        let Value::Map(entries) = &node.value else {
            panic!()
        };
        assert_eq!(entries[0].1, 1);
        let Value::Seq(items) = &entries[1].2.value else {
            panic!()
        };
        assert_eq!(items[0].line, 3);
        assert_eq!(items[1].line, 5);
        let Value::Map(inner) = &items[0].value else {
            panic!()
        };
        assert_eq!(inner[1].1, 4);
        assert_eq!(entries[2].2.line, 7);
    }

    #[test]
    fn syntax_error_and_duplicate_keys_have_lines() {
        let e = parse(Path::new("t.yaml"), "a: 1\nb: [1, 2\n").unwrap_err();
        assert!(e.message.starts_with("invalid YAML"), "{e}");
        let e = parse(Path::new("t.yaml"), "a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn unknown_keys_are_reported_with_known_ones() {
        let node = parse(Path::new("t.yaml"), "id: a\nidd: b\n").unwrap();
        let mut cx = Ctx::new(Path::new("t.yaml"));
        let mut m = MapReader::new(&mut cx, &node, "").unwrap();
        assert_eq!(m.req_str(&mut cx, "id").as_deref(), Some("a"));
        m.finish(&mut cx);
        assert_eq!(cx.problems.len(), 1);
        assert_eq!(
            cx.problems[0].to_string(),
            "t.yaml:2: idd: unknown key (expected one of: id)"
        );
    }
}
