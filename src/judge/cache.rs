//! The judgment cache: an identical question to the same judge is answered once.
//!
//! The key is (rubric content hash, criterion, judge model and parameters, order, inputs), where
//! the inputs are the rendered prompt (system and user text), which holds the conversation, the
//! answer(s) and, for pairwise prompts, which answer is shown first. It is bounded (LRU).
//!
//! Only parsed answers are stored: failures and abstentions are never cached, so they are asked
//! again next time. In memory only; a restart starts empty.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;
use xxhash_rust::xxh3::xxh3_128;

use crate::rubric::{JudgeAnswer, JudgeModel, JudgePrompt};

/// What a cached answer is keyed by (hashed: the prompt text is not kept twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(u128);

impl CacheKey {
    /// `order` is `single`, `ab` or `ba`.
    pub fn new(rubric_hash: &str, judge: &JudgeModel, order: &str, prompt: &JudgePrompt) -> Self {
        let mut material = Vec::with_capacity(prompt.system.len() + prompt.user.len() + 256);
        for part in [
            rubric_hash,
            &prompt.criterion_id,
            &judge.base_url,
            &judge.model,
            &judge.temperature.to_string(),
            &judge.seed.map(|s| s.to_string()).unwrap_or_default(),
            &judge.max_tokens.to_string(),
            order,
            &prompt.system,
            &prompt.user,
        ] {
            material.extend_from_slice(&(part.len() as u64).to_le_bytes());
            material.extend_from_slice(part.as_bytes());
        }
        Self(xxh3_128(&material))
    }
}

/// A bounded LRU of parsed judge answers.
#[derive(Debug)]
pub struct JudgeCache {
    inner: Option<Mutex<LruCache<CacheKey, JudgeAnswer>>>,
}

impl JudgeCache {
    /// `capacity` 0 disables the cache.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
        }
    }

    pub fn get(&self, key: &CacheKey) -> Option<JudgeAnswer> {
        let mut lru = self
            .inner
            .as_ref()?
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        lru.get(key).cloned()
    }

    /// Stores a parsed answer (the only kind there is to store).
    pub fn put(&self, key: CacheKey, answer: JudgeAnswer) {
        if let Some(inner) = &self.inner {
            let mut lru = inner.lock().unwrap_or_else(|p| p.into_inner());
            lru.put(key, answer);
        }
    }

    pub fn len(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |m| m.lock().unwrap_or_else(|p| p.into_inner()).len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rubric::Verdict;

    fn judge(model: &str, temperature: f64) -> JudgeModel {
        JudgeModel {
            name: "inline".into(),
            base_url: "http://x/v1".into(),
            api_key_env: "K".into(),
            model: model.into(),
            temperature,
            send_temperature: true,
            seed: Some(1),
            max_tokens: 100,
            token_limit_field: crate::rubric::TokenLimitField::MaxTokens,
            requests_per_minute: 60,
            tokens_per_minute: None,
            spend_cap_usd: None,
        }
    }

    fn prompt(user: &str) -> JudgePrompt {
        JudgePrompt {
            criterion_id: "c".into(),
            system: "s".into(),
            user: user.into(),
            response_format: serde_json::Value::Null,
        }
    }

    #[test]
    fn key_covers_every_part_and_lru_is_bounded() {
        let j = judge("m", 0.0);
        let k = CacheKey::new("h", &j, "single", &prompt("u"));
        assert_eq!(k, CacheKey::new("h", &j, "single", &prompt("u")));
        for other in [
            CacheKey::new("h2", &j, "single", &prompt("u")),
            CacheKey::new("h", &judge("m2", 0.0), "single", &prompt("u")),
            CacheKey::new("h", &judge("m", 0.5), "single", &prompt("u")),
            CacheKey::new("h", &j, "ab", &prompt("u")),
            CacheKey::new("h", &j, "single", &prompt("u2")),
        ] {
            assert_ne!(k, other);
        }
        let cache = JudgeCache::new(2);
        let answer = JudgeAnswer {
            reasoning: "r".into(),
            verdict: Verdict::Score {
                score: 5,
                normalized: 1.0,
            },
        };
        for u in ["a", "b", "c"] {
            cache.put(CacheKey::new("h", &j, "single", &prompt(u)), answer.clone());
        }
        assert_eq!(cache.len(), 2);
        assert!(
            cache
                .get(&CacheKey::new("h", &j, "single", &prompt("a")))
                .is_none()
        );
        assert_eq!(
            cache.get(&CacheKey::new("h", &j, "single", &prompt("c"))),
            Some(answer)
        );
        assert!(JudgeCache::new(0).is_empty());
    }
}
