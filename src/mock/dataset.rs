//! The mock's answer dataset: a JSONL file (`fixtures/datasets/support.jsonl`) where each line
//! is a prompt with a good and a degraded answer, an optional reference answer and metadata.
//!
//! Owns: parsing and prompt lookup. Never: touches the network. Fails closed: a file with a bad
//! line is not used; the error names the file, the line and the field.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::config::MockError;

/// The dataset compiled into the binary.
pub const BUILTIN_DATASET: &str = include_str!("../../fixtures/datasets/support.jsonl");
const BUILTIN_DATASET_NAME: &str = "<builtin>/fixtures/datasets/support.jsonl";

/// One prompt and its answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetEntry {
    pub id: String,
    pub prompt: String,
    pub good: String,
    pub degraded: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// E.g. `{"tier": "enterprise", "route": "billing"}`; sent by the demo as request metadata.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Entries in file order, with an index by prompt.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    entries: Vec<DatasetEntry>,
    by_prompt: HashMap<String, usize>,
}

impl Dataset {
    /// The dataset compiled into the binary.
    pub fn builtin() -> Result<Self, MockError> {
        Self::parse(BUILTIN_DATASET_NAME, BUILTIN_DATASET)
    }

    pub fn load(path: &Path) -> Result<Self, MockError> {
        let text = std::fs::read_to_string(path).map_err(|source| MockError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses JSONL `text`, named `file` in messages. Blank lines are skipped; ids and prompts
    /// must be unique.
    pub fn parse(file: &str, text: &str) -> Result<Self, MockError> {
        let mut out = Dataset::default();
        let mut ids = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let err = |message: String| MockError::Dataset {
                file: file.to_owned(),
                line: line_no,
                message,
            };
            let mut de = serde_json::Deserializer::from_str(line);
            let entry: DatasetEntry = serde_path_to_error::deserialize(&mut de)
                .map_err(|e| err(format!("{}: {}", e.path(), e.inner())))?;
            if let Some(first) = ids.insert(entry.id.clone(), line_no) {
                return Err(err(format!(
                    "id: {:?} already used on line {first}",
                    entry.id
                )));
            }
            let key = normalize(&entry.prompt).to_owned();
            if out.by_prompt.insert(key, out.entries.len()).is_some() {
                return Err(err("prompt: the same prompt appears twice".to_owned()));
            }
            out.entries.push(entry);
        }
        Ok(out)
    }

    pub fn entries(&self) -> &[DatasetEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry whose prompt equals `prompt` (ignoring leading and trailing whitespace).
    pub fn lookup(&self, prompt: &str) -> Option<&DatasetEntry> {
        self.by_prompt
            .get(normalize(prompt))
            .and_then(|&i| self.entries.get(i))
    }
}

fn normalize(prompt: &str) -> &str {
    prompt.trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_dataset_is_valid_and_realistic() {
        let d = Dataset::builtin().unwrap();
        assert!(d.len() >= 40, "{}", d.len());
        let extraction = d
            .entries()
            .iter()
            .filter(|e| e.metadata.get("route").and_then(|r| r.as_str()) == Some("extraction"))
            .count();
        assert!(extraction >= 10);
        for e in d.entries() {
            assert_ne!(e.good, e.degraded, "{}", e.id);
            assert!(e.metadata.contains_key("tier"), "{}", e.id);
            if e.id.starts_with("extract-") {
                serde_json::from_str::<serde_json::Value>(&e.good)
                    .unwrap_or_else(|err| panic!("{}: good answer is not JSON: {err}", e.id));
            }
        }
        let first = &d.entries()[0];
        assert_eq!(
            d.lookup(&format!("  {}\n", first.prompt)).map(|e| &e.id),
            Some(&first.id)
        );
        assert!(d.lookup("something else").is_none());
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let text = "{\"id\":\"a\",\"prompt\":\"p\",\"good\":\"g\",\"degraded\":\"d\"}\n\n{\"id\":\"b\",\"prompt\":\"q\",\"good\":\"g\"}\n";
        let e = Dataset::parse("d.jsonl", text).unwrap_err().to_string();
        assert!(e.starts_with("d.jsonl:3:"), "{e}");
        assert!(e.contains("degraded"), "{e}");

        let text =
            "{\"id\":\"a\",\"prompt\":\"p\",\"good\":\"g\",\"degraded\":\"d\",\"extra\":1}\n";
        let e = Dataset::parse("d.jsonl", text).unwrap_err().to_string();
        assert!(e.contains("d.jsonl:1:") && e.contains("extra"), "{e}");

        let text = "{\"id\":\"a\",\"prompt\":\"p\",\"good\":\"g\",\"degraded\":\"d\"}\n{\"id\":\"a\",\"prompt\":\"q\",\"good\":\"g\",\"degraded\":\"d\"}\n";
        let e = Dataset::parse("d.jsonl", text).unwrap_err().to_string();
        assert!(e.contains("d.jsonl:2: id"), "{e}");
    }
}
