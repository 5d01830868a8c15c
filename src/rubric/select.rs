//! Whether a rubric applies to a pair, and whether the pair is in the LLM-judge sample.
//!
//! Pure and deterministic: the sample is decided from a hash of the pair id (salted with the
//! rubric id, so that rubrics sample independently), never from a random draw, so a replay or a
//! second replica makes the same choice. Raising the rate only adds pairs to the sample.

use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64;

use crate::capture::Pair;

use super::model::{AppliesTo, Rubric};
use super::prompt::metadata_string;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// Checks run on the pair.
    pub applies: bool,
    /// LLM criteria run on the pair too (only when `applies` and the rubric has criteria).
    pub judge_sampled: bool,
}

pub fn select(rubric: &Rubric, pair: &Pair) -> Selection {
    let applies = applies(&rubric.applies_to, pair);
    let judge_sampled = applies
        && !rubric.criteria.is_empty()
        && sampled(&rubric.id, pair.id, rubric.applies_to.sample_rate);
    Selection {
        applies,
        judge_sampled,
    }
}

pub fn applies(a: &AppliesTo, pair: &Pair) -> bool {
    let deployment =
        a.deployments.is_empty() || a.deployments.iter().any(|d| d == &pair.deployment);
    let path = pair.candidate.endpoint.path();
    let route = a.routes.is_empty() || a.routes.iter().any(|r| r == path);
    let cohort = a
        .cohort
        .iter()
        .all(|(k, values)| pair.cohort.get(k).is_some_and(|v| values.contains(v)));
    let metadata = a
        .metadata
        .iter()
        .all(|(k, values)| metadata_string(pair, k).is_some_and(|v| values.contains(&v)));
    deployment && route && cohort && metadata
}

/// Whether `pair_id` falls in the first `rate` of the hash space for this rubric.
pub fn sampled(rubric_id: &str, pair_id: Uuid, rate: f64) -> bool {
    let mut bytes = pair_id.as_bytes().to_vec();
    bytes.extend_from_slice(rubric_id.as_bytes());
    // The top 53 bits as a fraction in [0, 1).
    let fraction = (xxh3_64(&bytes) >> 11) as f64 / (1u64 << 53) as f64;
    fraction < rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_deterministic_nested_and_near_the_rate() {
        let ids: Vec<Uuid> = (0..20_000u128).map(Uuid::from_u128).collect();
        let at = |rate: f64| ids.iter().filter(|id| sampled("r", **id, rate)).count();
        assert_eq!(at(0.0), 0);
        assert_eq!(at(1.0), ids.len());
        let n = at(0.1);
        // Binomial(20000, 0.1): sd ≈ 42; 5 sd either side.
        assert!((1790..=2210).contains(&n), "{n}");
        for id in &ids {
            assert_eq!(sampled("r", *id, 0.3), sampled("r", *id, 0.3));
            if sampled("r", *id, 0.1) {
                assert!(sampled("r", *id, 0.2), "raising the rate dropped a pair");
            }
        }
    }
}
