//! What background calls have spent per deployment and stage, against the stage's spend cap.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::SpendCap;

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Spent {
    pub tokens: u64,
    pub usd: f64,
}

impl Spent {
    /// Whether `cap` is reached.
    pub fn reached(&self, cap: &SpendCap) -> bool {
        cap.tokens.is_some_and(|t| self.tokens >= t) || cap.usd.is_some_and(|u| self.usd >= u)
    }
}

/// Spend of background calls, keyed by (deployment slug, stage). A new stage starts at zero.
#[derive(Debug, Default)]
pub struct SpendTracker {
    spent: Mutex<HashMap<(String, String), Spent>>,
}

impl SpendTracker {
    pub fn get(&self, deployment: &str, stage: &str) -> Spent {
        self.spent
            .lock()
            .ok()
            .and_then(|m| m.get(&(deployment.to_owned(), stage.to_owned())).copied())
            .unwrap_or_default()
    }

    /// Adds a finished call's spend and returns the new total.
    pub fn add(&self, deployment: &str, stage: &str, tokens: u64, usd: f64) -> Spent {
        let Ok(mut m) = self.spent.lock() else {
            return Spent::default();
        };
        let entry = m
            .entry((deployment.to_owned(), stage.to_owned()))
            .or_default();
        entry.tokens += tokens;
        entry.usd += usd;
        *entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_by_tokens_or_usd_per_stage() {
        let t = SpendTracker::default();
        let cap = SpendCap {
            tokens: Some(100),
            usd: Some(1.0),
        };
        assert!(!t.add("d", "s1", 60, 0.1).reached(&cap));
        assert!(t.add("d", "s1", 40, 0.1).reached(&cap));
        assert!(
            !t.get("d", "s2").reached(&cap),
            "a new stage starts at zero"
        );
        assert!(t.add("d", "s2", 0, 1.5).reached(&cap));
        assert!(!Spent::default().reached(&SpendCap::default()));
    }
}
