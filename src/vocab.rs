//! `vocab`: the shared vocabulary every layer may use, and that depends on nothing in the crate:
//! a config [`Problem`] and [`ConfigError`], the deployment [`Mode`], a variant's [`Role`], why a
//! call was made ([`Purpose`], the A/A arm included), cohorts and their names, where a unit key
//! comes from ([`UnitSource`]), and the bucket space of routing.
//!
//! Owns: these types and their wire names (serde renames keep the stored and JSON spellings:
//! `off`/`shadow`/`live`, `stable`/`candidate`, `served`/`mirrored`/`fallback`/`aa`). Never:
//! does I/O or imports another module of the crate (the layering test checks it).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One thing wrong with a config file, at one field.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Dotted path of the field, e.g. `deployments[0].candidates[1].percent`.
    pub field: String,
    pub message: String,
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl ConfigError {
    pub fn single(file: &Path, field: &str, message: impl fmt::Display) -> Self {
        Self {
            file: file.to_path_buf(),
            problems: vec![Problem {
                field: field.to_owned(),
                message: message.to_string(),
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: {n} problem{}",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            if p.field.is_empty() {
                write!(f, "\n  - {}", p.message)?;
            } else {
                write!(f, "\n  - {}: {}", p.field, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// How a deployment uses its candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Stable serves everything; nothing is mirrored.
    Off,
    /// Stable serves everything; candidates are called in the background for their share.
    Shadow,
    /// Candidates serve their share.
    Live,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Shadow => "shadow",
            Mode::Live => "live",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which role a variant plays in its deployment.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    Stable,
    Candidate,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Stable => "stable",
            Role::Candidate => "candidate",
        }
    }

    /// `stable` or `candidate`; anything else is `None`.
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Stable, Role::Candidate]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a side of a request was called: it served the client, it was a background call, or it
/// is the A/A arm's second stable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// The answer the client received.
    Served,
    /// A background call whose answer nobody received (shadow mirror, live pair sample).
    Mirrored,
    /// A stable retry after the candidate failed in live mode (`fallback_to_stable`).
    Fallback,
    /// The A/A arm: stable asked a second time in the background (on the candidate side of its
    /// pair, under the reserved variant name [`AA_VARIANT`]), to measure the judge's noise
    /// floor. Never a candidate: the gate, the guardrails and the candidate's figures leave it
    /// out.
    Aa,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Served => "served",
            Purpose::Mirrored => "mirrored",
            Purpose::Fallback => "fallback",
            Purpose::Aa => "aa",
        }
    }

    pub fn parse(s: &str) -> Option<Purpose> {
        [
            Purpose::Served,
            Purpose::Mirrored,
            Purpose::Fallback,
            Purpose::Aa,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }

    /// A call whose answer nobody received (mirror spend counts it).
    pub fn is_background(self) -> bool {
        matches!(self, Purpose::Mirrored | Purpose::Aa)
    }
}

/// The variant name the A/A arm's calls are stored under. Reserved (a candidate cannot take
/// it); stored rows keep it so that pairs and judgments of the arm group apart. Only the store
/// reads it back (to keep the arm's rows apart in a summary); everything else branches on [`Purpose::Aa`] or on the summary's
/// own A/A section.
pub const AA_VARIANT: &str = "aa";

/// `(label key, label value)`; `None` for the whole stage.
pub type Cohort = Option<(String, String)>;

/// `all` or `key=value`, as the gate and the reports name cohorts.
pub fn cohort_name(cohort: &Cohort) -> String {
    match cohort {
        None => "all".to_owned(),
        Some((k, v)) => format!("{k}={v}"),
    }
}

/// Number of routing buckets: 0.01% steps.
pub const BUCKETS: u16 = 10_000;

/// Width of each candidate's lane in the bucket space.
pub fn lane_width(candidates: usize) -> u16 {
    if candidates <= 1 {
        BUCKETS
    } else {
        BUCKETS / candidates as u16
    }
}

/// Where a request's unit key may come from. `routing.unit_key_from` (or a deployment's own)
/// lists them in order of precedence; the first one a request carries is its unit key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnitSource {
    /// The `x-canarist-unit` header.
    Header,
    /// The body's `safety_identifier` (OpenAI's successor to `user`).
    SafetyIdentifier,
    /// The body's `user`.
    User,
    /// The body's `prompt_cache_key`.
    PromptCacheKey,
    /// The body's `metadata.user_id` (Anthropic's end-user id).
    MetadataUserId,
    /// The header named by `routing.tenant_header`.
    Tenant,
}

impl UnitSource {
    /// Every source, in the default order of precedence.
    pub const DEFAULT_ORDER: [UnitSource; 6] = [
        UnitSource::Header,
        UnitSource::SafetyIdentifier,
        UnitSource::User,
        UnitSource::PromptCacheKey,
        UnitSource::MetadataUserId,
        UnitSource::Tenant,
    ];

    /// The name `unit_key_from` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitSource::Header => "header",
            UnitSource::SafetyIdentifier => "safety_identifier",
            UnitSource::User => "user",
            UnitSource::PromptCacheKey => "prompt_cache_key",
            UnitSource::MetadataUserId => "metadata.user_id",
            UnitSource::Tenant => "tenant",
        }
    }

    pub fn parse(name: &str) -> Option<UnitSource> {
        Self::DEFAULT_ORDER.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for UnitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_the_stored_ones() {
        for (m, s) in [
            (Mode::Off, "\"off\""),
            (Mode::Shadow, "\"shadow\""),
            (Mode::Live, "\"live\""),
        ] {
            assert_eq!(serde_json::to_string(&m).unwrap(), s);
            assert_eq!(serde_json::from_str::<Mode>(s).unwrap(), m);
        }
        for r in [Role::Stable, Role::Candidate] {
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        for p in [
            Purpose::Served,
            Purpose::Mirrored,
            Purpose::Fallback,
            Purpose::Aa,
        ] {
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
            assert_eq!(Purpose::parse(p.as_str()), Some(p));
        }
        assert_eq!(Role::parse("aa"), None);
        for u in UnitSource::DEFAULT_ORDER {
            assert_eq!(UnitSource::parse(u.as_str()), Some(u));
        }
        assert_eq!(UnitSource::parse("metadata"), None);
    }
}
