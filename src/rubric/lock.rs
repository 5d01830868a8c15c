//! The rubric lock file (`rubrics/canarist.lock`): id → version and content hash, so that a
//! change to what a rubric judges cannot ship without a version bump.
//!
//! [`compare`] is pure; [`Lock::read`] and [`Lock::write`] do the file I/O. Fails closed: a
//! content change without a version bump (or a version that went backwards) is a violation.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::hash::ContentHash;
use super::model::Rubric;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read lock file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lock file {} is not valid: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("cannot write lock file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockEntry {
    pub version: semver::Version,
    pub hash: ContentHash,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub rubrics: BTreeMap<String, LockEntry>,
}

const HEADER: &str = "# Written by `canarist rubric check --update`; do not edit by hand.\n\
# A rubric whose content hash changes needs a new version.\n";

impl Lock {
    pub fn from_rubrics(rubrics: &[Rubric]) -> Self {
        let rubrics = rubrics
            .iter()
            .map(|r| {
                let entry = LockEntry {
                    version: r.version.clone(),
                    hash: r.hash.clone(),
                };
                (r.id.clone(), entry)
            })
            .collect();
        Self { rubrics }
    }

    /// `Ok(None)` when the file does not exist.
    pub fn read(path: &Path) -> Result<Option<Self>, LockError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LockError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        serde_yaml_ng::from_str(&text)
            .map(Some)
            .map_err(|e| LockError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
    }

    pub fn to_text(&self) -> String {
        // Serializing a map of strings and versions cannot fail; fall back to empty if it did.
        let body = serde_yaml_ng::to_string(self).unwrap_or_default();
        format!("{HEADER}{body}")
    }

    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        std::fs::write(path, self.to_text()).map_err(|source| LockError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// How one rubric stands against the lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockStatus {
    Unchanged,
    /// Not in the lock file yet.
    New,
    /// The version went up (the content may or may not have changed): the lock is out of date.
    Bumped {
        from: semver::Version,
    },
    /// Violation: same version, different content.
    ChangedWithoutBump {
        old: ContentHash,
        new: ContentHash,
    },
    /// Violation: the version is lower than the locked one.
    VersionWentBack {
        from: semver::Version,
    },
    /// In the lock file, but no rubric has this id any more.
    Removed,
}

impl LockStatus {
    pub fn is_violation(&self) -> bool {
        matches!(
            self,
            LockStatus::ChangedWithoutBump { .. } | LockStatus::VersionWentBack { .. }
        )
    }

    /// Whether the lock file should be rewritten to reflect this rubric.
    pub fn is_stale(&self) -> bool {
        !matches!(self, LockStatus::Unchanged)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockLine {
    pub id: String,
    pub version: semver::Version,
    /// The rubric file, when the rubric still exists.
    pub source: Option<PathBuf>,
    pub status: LockStatus,
}

impl fmt::Display for LockLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self
            .source
            .as_ref()
            .map(|p| format!("{}: ", p.display()))
            .unwrap_or_default();
        let (id, v) = (&self.id, &self.version);
        match &self.status {
            LockStatus::Unchanged => write!(f, "{at}{id} {v}: unchanged"),
            LockStatus::New => write!(f, "{at}{id} {v}: new (not in the lock file yet)"),
            LockStatus::Bumped { from } => write!(f, "{at}{id}: version {from} → {v}"),
            LockStatus::ChangedWithoutBump { old, new } => write!(
                f,
                "{at}{id} {v}: content changed without a version bump (hash {} → {}); bump `version`",
                old.short(),
                new.short()
            ),
            LockStatus::VersionWentBack { from } => {
                write!(f, "{at}{id}: version went back from {from} to {v}")
            }
            LockStatus::Removed => {
                write!(f, "{id} {v}: in the lock file but no rubric has this id")
            }
        }
    }
}

/// Compares rubrics with a lock file, one line per rubric (and per removed entry), by id.
pub fn compare(lock: &Lock, rubrics: &[Rubric]) -> Vec<LockLine> {
    let mut lines: Vec<LockLine> = rubrics
        .iter()
        .map(|r| {
            let status = match lock.rubrics.get(&r.id) {
                None => LockStatus::New,
                Some(e) if r.version < e.version => LockStatus::VersionWentBack {
                    from: e.version.clone(),
                },
                Some(e) if r.version > e.version => LockStatus::Bumped {
                    from: e.version.clone(),
                },
                Some(e) if e.hash != r.hash => LockStatus::ChangedWithoutBump {
                    old: e.hash.clone(),
                    new: r.hash.clone(),
                },
                Some(_) => LockStatus::Unchanged,
            };
            LockLine {
                id: r.id.clone(),
                version: r.version.clone(),
                source: Some(r.source.clone()),
                status,
            }
        })
        .collect();
    for (id, e) in &lock.rubrics {
        if !rubrics.iter().any(|r| &r.id == id) {
            lines.push(LockLine {
                id: id.clone(),
                version: e.version.clone(),
                source: None,
                status: LockStatus::Removed,
            });
        }
    }
    lines.sort_by(|a, b| a.id.cmp(&b.id));
    lines
}
