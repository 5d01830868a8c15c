//! The layering of `ARCHITECTURE.md`, checked against the source tree.
//!
//! The test reads the table under `## Layers` in `ARCHITECTURE.md` (the modules of its rows, in
//! order, bottom row first) and scans every file of `src/` for `use crate::…` trees and
//! `crate::x::` / `super::x` paths. A module may use only modules that come before it in the
//! table; every other edge fails the test with the file, the line and both modules. `anyhow` is
//! allowed only in the subcommand glue (`src/cli/`) and `src/main.rs`. No source dependency is
//! needed: paths are read from the text (comment lines skipped).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Known upward edges: (from, to, reason). Every entry needs a one-line reason. Keep it empty.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

/// Where `anyhow` may appear: the subcommand glue and the binary.
const ANYHOW_ALLOWED: &[&str] = &["src/main.rs", "src/cli/"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A unit of the table: a top-level module of `src/`, or a submodule with a row of its own
/// (`rollout::machine`).
struct Unit {
    name: String,
    row: String,
}

/// The layer table: every unit in order (a unit may use only those before it).
fn layer_table() -> Vec<Unit> {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let section = doc
        .split("\n## Layers\n")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Layers` section");
    let section = section.split("\n## ").next().unwrap_or_default();
    let mut units = Vec::new();
    // A table row is `| row | modules | what they are |`; the header and the rule come first.
    for line in section.lines().filter(|l| l.starts_with('|')).skip(2) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert!(
            cells.len() >= 4,
            "ARCHITECTURE.md layer row has too few cells: {line}"
        );
        let row = cells[1].to_owned();
        for name in cells[2].split('`').skip(1).step_by(2) {
            units.push(Unit {
                name: name.to_owned(),
                row: row.clone(),
            });
        }
    }
    assert!(
        !units.is_empty(),
        "ARCHITECTURE.md's `## Layers` table names no module"
    );
    units
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `.rs` file of `src/`, as paths relative to the crate root (`src/gate/mod.rs`).
fn source_files() -> Vec<String> {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut files: Vec<String> = files
        .iter()
        .map(|p| {
            p.strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    files.sort();
    files
}

/// The module path of a file: `src/gate/mod.rs` → `[gate]`, `src/rollout/ramp.rs` →
/// `[rollout, ramp]`, `src/app.rs` → `[app]`; `src/lib.rs` and `src/main.rs` → `[]`.
fn module_path(file: &str) -> Vec<String> {
    let rel = file
        .strip_prefix("src/")
        .unwrap()
        .strip_suffix(".rs")
        .unwrap();
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod") || rel == "lib" || rel == "main" {
        parts.pop();
    }
    parts
}

/// The unit a module path belongs to: its first two segments when the table has them as a
/// unit, else its first segment.
fn unit_of<'t>(table: &'t [Unit], path: &[String]) -> Option<(usize, &'t Unit)> {
    let find = |name: &str| table.iter().enumerate().find(|(_, u)| u.name == name);
    if path.len() >= 2
        && let Some(u) = find(&format!("{}::{}", path[0], path[1]))
    {
        return Some(u);
    }
    path.first().and_then(|p| find(p))
}

/// The text with comment lines blanked (kept as empty lines, so line numbers stay right).
fn code_lines(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn skip_ws(s: &[u8], i: &mut usize) {
    while *i < s.len() && s[*i].is_ascii_whitespace() {
        *i += 1;
    }
}

/// Parses a use tree (or a plain path) at `i`, pushing every path it names (its first two
/// segments after `prefix`) into `out`.
fn parse_tree(s: &[u8], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    skip_ws(s, i);
    if s.get(*i) == Some(&b'{') {
        *i += 1;
        loop {
            skip_ws(s, i);
            match s.get(*i) {
                None => return,
                Some(b'}') => {
                    *i += 1;
                    return;
                }
                Some(b',') => *i += 1,
                Some(_) => {
                    let before = *i;
                    parse_tree(s, i, prefix, out);
                    if *i == before {
                        *i += 1;
                    }
                }
            }
        }
    }
    let start = *i;
    while *i < s.len() && is_ident(s[*i]) {
        *i += 1;
    }
    let mut path = prefix.to_vec();
    if *i > start {
        path.push(String::from_utf8_lossy(&s[start..*i]).into_owned());
        if s[*i..].starts_with(b"::") {
            *i += 2;
            return parse_tree(s, i, &path, out);
        }
    }
    out.push(path);
}

/// One use of another module: the line and the module path it names.
struct Use {
    line: usize,
    path: Vec<String>,
}

/// The inline `mod name { … }` blocks of a file: (start, end, name), by byte offset. Braces in
/// string and char literals are skipped.
fn inline_mods(s: &[u8]) -> Vec<(usize, usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Vec<(usize, Option<String>)> = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'"' => {
                i += 1;
                while i < s.len() && s[i] != b'"' {
                    i += if s[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'\'' if s.get(i + 2) == Some(&b'\'') => i += 2,
            b'{' => open.push((i, mod_name_before(s, i))),
            b'}' => {
                if let Some((start, Some(name))) = open.pop() {
                    blocks.push((start, i, name));
                }
            }
            _ => {}
        }
        i += 1;
    }
    blocks
}

/// `Some(name)` when the brace at `at` opens `mod name {`.
fn mod_name_before(s: &[u8], at: usize) -> Option<String> {
    let text = std::str::from_utf8(&s[..at]).ok()?.trim_end();
    let name_at = text.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))? + 1;
    let name = &text[name_at..];
    let before = text[..name_at].trim_end();
    let is_mod = before.ends_with("mod")
        && !before[..before.len() - 3].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
    (is_mod && !name.is_empty()).then(|| name.to_owned())
}

/// Every `crate::…` and `super::…` path of a file, resolved to a module path.
fn uses(file: &str, text: &str) -> Vec<Use> {
    let code = code_lines(text);
    let s = code.as_bytes();
    let here = module_path(file);
    let blocks = inline_mods(s);
    // The module at an offset: the file's, plus the inline modules around it.
    let module_at = |at: usize| {
        let mut path = here.clone();
        let mut around: Vec<&(usize, usize, String)> = blocks
            .iter()
            .filter(|(b, e, _)| *b < at && at < *e)
            .collect();
        around.sort_by_key(|(b, _, _)| *b);
        path.extend(around.iter().map(|(_, _, n)| n.clone()));
        path
    };
    let mut found = Vec::new();
    for keyword in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(keyword) {
            let at = from + at;
            from = at + keyword.len();
            if at > 0 && (is_ident(s[at - 1]) || s[at - 1] == b'$' || s[at - 1] == b':') {
                continue;
            }
            let base = if keyword == "crate::" {
                Vec::new()
            } else {
                // `super` of `src/a/b.rs` is `a`; of `src/a/mod.rs`, the crate root.
                let mut m = module_at(at);
                m.pop();
                m
            };
            let line = code[..at].matches('\n').count() + 1;
            let mut i = from;
            let mut paths = Vec::new();
            parse_tree(s, &mut i, &base, &mut paths);
            found.extend(paths.into_iter().map(|path| Use { line, path }));
        }
    }
    found.sort_by_key(|u| u.line);
    found
}

#[test]
fn no_module_uses_a_higher_layer() {
    let table = layer_table();
    let mut violations = Vec::new();
    let mut used_exceptions = BTreeSet::new();
    for file in source_files() {
        let here = module_path(&file);
        if here.is_empty() {
            continue; // lib.rs declares the modules; main.rs calls `cli::main`.
        }
        let Some((from_at, from)) = unit_of(&table, &here) else {
            violations.push(format!(
                "{file}: module `{}` is not in ARCHITECTURE.md's layer table",
                here[0]
            ));
            continue;
        };
        let text = std::fs::read_to_string(root().join(&file)).unwrap();
        for u in uses(&file, &text) {
            let Some((to_at, to)) = unit_of(&table, &u.path) else {
                continue; // a crate-root item or a name the table does not know
            };
            if to_at < from_at || to.name == from.name {
                continue;
            }
            if let Some(e) = EXCEPTIONS
                .iter()
                .find(|(f, t, _)| *f == from.name && *t == to.name)
            {
                used_exceptions.insert(e.0.to_owned() + " -> " + e.1);
                continue;
            }
            let v = format!(
                "{file}:{}: `{}` ({}) uses `{}` ({}), which is not below it in ARCHITECTURE.md's layer table",
                u.line, from.name, from.row, to.name, to.row
            );
            if !violations.contains(&v) {
                violations.push(v);
            }
        }
    }
    for (f, t, reason) in EXCEPTIONS {
        assert!(
            !reason.trim().is_empty(),
            "exception {f} -> {t} has no reason"
        );
        assert!(
            used_exceptions.contains(&format!("{f} -> {t}")),
            "exception {f} -> {t} is no longer needed: remove it"
        );
    }
    assert!(
        violations.is_empty(),
        "{} upward dependencies:\n{}",
        violations.len(),
        violations.join("\n")
    );
}

#[test]
fn every_module_has_a_layer() {
    let table = layer_table();
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .collect();
    let mut problems = Vec::new();
    for m in &modules {
        if !table.iter().any(|u| u.name == *m) {
            problems.push(format!(
                "module `{m}` (src/lib.rs) has no row in ARCHITECTURE.md's layer table"
            ));
        }
    }
    for u in &table {
        let top = u.name.split("::").next().unwrap_or_default();
        let exists = if let Some((_, sub)) = u.name.split_once("::") {
            root().join(format!("src/{top}/{sub}.rs")).exists()
                || root().join(format!("src/{top}/{sub}/mod.rs")).exists()
        } else {
            modules.contains(&top)
        };
        if !exists {
            problems.push(format!(
                "ARCHITECTURE.md's layer table names `{}`, which is no module",
                u.name
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for u in &table {
        if !seen.insert(&u.name) {
            problems.push(format!(
                "`{}` has two rows in ARCHITECTURE.md's layer table",
                u.name
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn anyhow_only_in_cli_and_main() {
    let mut found = Vec::new();
    for file in source_files() {
        if ANYHOW_ALLOWED
            .iter()
            .any(|a| file == *a || (a.ends_with('/') && file.starts_with(a)))
        {
            continue;
        }
        let text = std::fs::read_to_string(root().join(&file)).unwrap();
        for (n, line) in code_lines(&text).lines().enumerate() {
            if line.contains("anyhow") {
                found.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "anyhow belongs to the subcommand glue (src/cli/, src/main.rs); library modules return typed errors:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scan_reads_use_trees() {
    let text = "use crate::a::{b, c::{D, e}};\n// use crate::hidden;\nlet x = crate::f::g(super::h::I);\nuse super::{j, k::L};\nmod tests {\n    use super::M;\n}\n";
    let got: Vec<(usize, String)> = uses("src/top/file.rs", text)
        .into_iter()
        .map(|u| (u.line, u.path.join("::")))
        .collect();
    let want: Vec<(usize, String)> = [
        (1, "a::b"),
        (1, "a::c::D"),
        (1, "a::c::e"),
        (3, "f::g"),
        (3, "top::h::I"),
        (4, "top::j"),
        (4, "top::k::L"),
        (6, "top::file::M"),
    ]
    .into_iter()
    .map(|(l, p)| (l, p.to_owned()))
    .collect();
    assert_eq!(got, want);
}
