//! [`Cells`]: the strings and scopes an [`Aggregates`](super::Aggregates) keys its deltas by,
//! each stored once and named by a small id, so that adding an observation to cells it has seen
//! allocates nothing and hashes a few integers instead of the cells' strings.
//!
//! Owns: the interned strings (deployments, stage labels, cohort keys and values, variants, unit
//! keys), the interned scopes (a stage and a cohort cell), and their [`Ranks`]: the order of the
//! strings themselves, so that rows written in rank order are written in key order. A string is
//! kept as an `Arc<str>`, so that a store can bind it to every row that names it without a copy.
//!
//! Never: does I/O. An id means something only to the `Cells` that gave it.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// An interned string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(u32);

/// An interned scope: a stage (deployment, label, epoch) and a cohort cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeId(u32);

impl ScopeId {
    /// Its place in [`Cells::scopes`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The scope a delta adds up under: a deployment's stage label since one stage start, and a
/// cohort cell (label key and value; both empty for the whole stage). The epoch is the start of
/// the latest rollout stage of that name at or before the observation (the Unix epoch when no
/// rollout ever ran one), so that `epoch >= since` selects exactly the rows with `at >= since`
/// whenever `since` is a stage start. Ranked as (deployment, stage, epoch, key, value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScopeParts {
    pub deployment: Name,
    pub stage: Name,
    pub epoch: DateTime<Utc>,
    pub key: Name,
    pub value: Name,
}

/// The interned strings and scopes.
#[derive(Debug, Clone, Default)]
pub struct Cells {
    ids: HashMap<Arc<str>, Name>,
    names: Vec<Arc<str>>,
    scope_ids: HashMap<ScopeParts, ScopeId>,
    scopes: Vec<ScopeParts>,
}

/// The next id of a table of `len` entries. A flush holds far fewer than 2^32 strings (each is
/// at least a few bytes of an observation in memory); past that, ids would stop being unique,
/// never panic.
fn next_id(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

impl Cells {
    /// The id of `s`, interned on first sight.
    pub fn name(&mut self, s: &str) -> Name {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = Name(next_id(self.names.len()));
        let s: Arc<str> = s.into();
        self.names.push(s.clone());
        self.ids.insert(s, id);
        id
    }

    /// The id of `s`, if it was interned.
    pub fn find_name(&self, s: &str) -> Option<Name> {
        self.ids.get(s).copied()
    }

    pub fn str(&self, name: Name) -> &str {
        self.names.get(name.0 as usize).map_or("", |s| s)
    }

    /// The shared string of `name` (empty for an id these cells never gave).
    pub fn arc(&self, name: Name) -> Arc<str> {
        self.names
            .get(name.0 as usize)
            .cloned()
            .unwrap_or_else(|| "".into())
    }

    /// The id of the scope of stage (`deployment`, `stage`, `epoch`) and cohort cell
    /// (`key`, `value`), interned on first sight.
    pub fn scope(
        &mut self,
        deployment: Name,
        stage: Name,
        epoch: DateTime<Utc>,
        key: Name,
        value: Name,
    ) -> ScopeId {
        let parts = ScopeParts {
            deployment,
            stage,
            epoch,
            key,
            value,
        };
        if let Some(&id) = self.scope_ids.get(&parts) {
            return id;
        }
        let id = ScopeId(next_id(self.scopes.len()));
        self.scopes.push(parts);
        self.scope_ids.insert(parts, id);
        id
    }

    /// The scope of `of`'s stage and the cohort cell (`key`, `value`), if it was interned.
    pub fn find_cell(&self, of: ScopeId, key: &str, value: &str) -> Option<ScopeId> {
        let parts = ScopeParts {
            key: self.find_name(key)?,
            value: self.find_name(value)?,
            ..*self.parts(of)?
        };
        self.scope_ids.get(&parts).copied()
    }

    /// Whether two scopes are of the same stage (deployment, label and epoch).
    pub fn same_stage(&self, a: ScopeId, b: ScopeId) -> bool {
        match (self.parts(a), self.parts(b)) {
            (Some(a), Some(b)) => {
                (a.deployment, a.stage, a.epoch) == (b.deployment, b.stage, b.epoch)
            }
            _ => false,
        }
    }

    /// What a scope is made of.
    pub fn parts(&self, scope: ScopeId) -> Option<&ScopeParts> {
        self.scopes.get(scope.0 as usize)
    }

    /// Every scope, by id.
    pub fn scopes(&self) -> impl Iterator<Item = (ScopeId, &ScopeParts)> {
        (0..).map(ScopeId).zip(&self.scopes)
    }

    /// Every id's place in the order of what it names.
    pub fn ranks(&self) -> Ranks {
        fn ranks_of<T: Ord>(items: &[T]) -> Vec<u32> {
            let mut order: Vec<usize> = (0..items.len()).collect();
            order.sort_unstable_by(|&a, &b| items[a].cmp(&items[b]));
            let mut ranks = vec![0; items.len()];
            for (rank, i) in order.into_iter().enumerate() {
                ranks[i] = next_id(rank);
            }
            ranks
        }
        let names = ranks_of(&self.names);
        let rank = |n: Name| names.get(n.0 as usize).copied().unwrap_or(u32::MAX);
        let scopes: Vec<_> = (self.scopes.iter())
            .map(|p| {
                (
                    rank(p.deployment),
                    rank(p.stage),
                    p.epoch,
                    rank(p.key),
                    rank(p.value),
                )
            })
            .collect();
        Ranks {
            scopes: ranks_of(&scopes),
            names,
        }
    }
}

/// The order of interned strings and scopes: comparing ranks compares what they name (a scope as
/// its stage key, then its cohort cell).
#[derive(Debug, Clone, Default)]
pub struct Ranks {
    names: Vec<u32>,
    scopes: Vec<u32>,
}

impl Ranks {
    pub fn name(&self, name: Name) -> u32 {
        self.names.get(name.0 as usize).copied().unwrap_or(u32::MAX)
    }

    pub fn scope(&self, scope: ScopeId) -> u32 {
        self.scopes
            .get(scope.0 as usize)
            .copied()
            .unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_scopes_are_interned_once_and_ranked_in_key_order() {
        let mut cells = Cells::default();
        let b = cells.name("b");
        let a = cells.name("a");
        assert_eq!(cells.name("b"), b);
        assert_eq!(cells.find_name("a"), Some(a));
        assert_eq!(cells.find_name("c"), None);
        assert_eq!((cells.str(a), cells.str(b)), ("a", "b"));
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        let later = epoch + chrono::Duration::seconds(1);
        let s_b = cells.scope(a, a, later, b, b);
        let s_a = cells.scope(a, a, epoch, b, b);
        let s_c = cells.scope(a, a, later, a, b);
        assert_eq!(cells.scope(a, a, later, b, b), s_b);
        assert_eq!(cells.find_cell(s_b, "a", "b"), Some(s_c));
        assert_eq!(cells.find_cell(s_a, "a", "b"), None);
        assert!(cells.same_stage(s_b, s_c) && !cells.same_stage(s_a, s_b));
        let parts = cells.parts(s_c).unwrap();
        assert_eq!((parts.epoch, parts.key, parts.value), (later, a, b));
        assert_eq!(&*cells.arc(parts.value), "b");
        let ranks = cells.ranks();
        assert!(ranks.name(a) < ranks.name(b));
        // Epoch before cohort cell: (a, a, epoch, b, b) < (a, a, later, a, b) < (a, a, later, b, b).
        assert!(ranks.scope(s_a) < ranks.scope(s_c));
        assert!(ranks.scope(s_c) < ranks.scope(s_b));
    }
}
