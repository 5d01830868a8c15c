//! `routing`: who answers a request and who is mirrored. Pure: no I/O, no clocks, no global RNG
//! (callers pass the random draws in), so every decision can be tested and benched alone.
//!
//! Assignment (DESIGN.md, "Assignment"): a request's unit key is the first of its sources
//! ([`UnitSource`]: the `x-canarist-unit` header, the body's `safety_identifier`, `user`,
//! `prompt_cache_key`, `metadata.user_id`, the configured tenant header) that it carries, in the
//! order `routing.unit_key_from` (or the deployment's own) sets. Its bucket is
//! `xxh3(unit key, seed) mod 10000`, where the seed hashes the deployment's salt with its
//! candidates' names (so a new candidate reshuffles units). The bucket space is split into one
//! equal lane per candidate; candidate `i` owns `[i·lane, i·lane + buckets_i)`. Raising a
//! candidate's share therefore only adds buckets to it and never moves another candidate's units.
//! Requests without a unit key get a random bucket and are marked unsticky.

mod cohort;
pub mod ops;
mod state;
mod table;

use xxhash_rust::xxh3::xxh3_64_with_seed;

pub use cohort::{cohort_labels, eligible};
pub use state::{CandidateState, TrafficState, VariantState};
pub use table::{RoutedDeployment, TrafficTable};

use crate::config::{Deployment, Mode};

/// The stage label of a canary set through the admin API (`POST /api/v1/gateway/canary`),
/// outside any rollout.
pub const CANARY_STAGE: &str = "canary";

/// The header clients set to choose their unit key.
pub const UNIT_HEADER: &str = "x-canarist-unit";

pub use crate::vocab::{BUCKETS, UnitSource, lane_width};

/// The hash seed of a deployment: its salt and the names of its candidates, in order.
pub fn hash_seed<'a>(salt: &str, candidate_names: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut material = Vec::with_capacity(64);
    material.extend_from_slice(salt.as_bytes());
    for name in candidate_names {
        material.push(0);
        material.extend_from_slice(name.as_bytes());
    }
    xxh3_64_with_seed(&material, 0x6361_6e61_7269_7374)
}

/// A unit key's bucket, 0..10000.
pub fn bucket(seed: u64, unit_key: &str) -> u16 {
    (xxh3_64_with_seed(unit_key.as_bytes(), seed) % u64::from(BUCKETS)) as u16
}

/// The values a request carries for each [`UnitSource`] (absent or empty: not carried).
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitFields<'a> {
    pub header: Option<&'a str>,
    pub safety_identifier: Option<&'a str>,
    pub user: Option<&'a str>,
    pub prompt_cache_key: Option<&'a str>,
    pub metadata_user_id: Option<&'a str>,
    pub tenant: Option<&'a str>,
}

impl<'a> UnitFields<'a> {
    /// The value of `source`, when present and non-empty.
    pub fn get(&self, source: UnitSource) -> Option<&'a str> {
        let value = match source {
            UnitSource::Header => self.header,
            UnitSource::SafetyIdentifier => self.safety_identifier,
            UnitSource::User => self.user,
            UnitSource::PromptCacheKey => self.prompt_cache_key,
            UnitSource::MetadataUserId => self.metadata_user_id,
            UnitSource::Tenant => self.tenant,
        };
        value.filter(|v| !v.is_empty())
    }
}

/// The unit key: the first source in `order` that `fields` carries, and which one it was.
pub fn unit_key<'a>(
    order: &[UnitSource],
    fields: &UnitFields<'a>,
) -> Option<(&'a str, UnitSource)> {
    order
        .iter()
        .find_map(|&source| fields.get(source).map(|key| (key, source)))
}

/// Who a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Stable,
    /// Index into the deployment's candidates.
    Candidate(usize),
}

/// The routing decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Who answers the client.
    pub serve: Target,
    /// Who is called in the background for a matched pair.
    pub mirror: Option<Target>,
    pub bucket: u16,
    pub sticky: bool,
    /// A cohort rule kept this request out of the canary.
    pub excluded: bool,
}

/// Random draws a plan may need; the caller takes them from its RNG.
#[derive(Debug, Clone, Copy)]
pub struct Draws {
    /// Bucket for requests without a unit key (0..10000).
    pub unsticky_bucket: u16,
    /// Roll for the live pair sample (0..10000).
    pub pair_roll: u16,
}

/// The candidate whose lane holds `bucket`, if any.
pub fn candidate_for_bucket(deployment: &Deployment, bucket: u16) -> Option<usize> {
    let lane = lane_width(deployment.candidates.len());
    let index = usize::from(bucket / lane);
    let candidate = deployment.candidates.get(index)?;
    let offset = bucket - (index as u16) * lane;
    (offset < candidate.buckets).then_some(index)
}

/// Decides who serves and who is mirrored.
///
/// `unit_bucket` is the unit key's bucket (`None`: no key; `draws.unsticky_bucket` is used).
/// `is_eligible` says whether cohort rules allow this request into candidate `i`'s canary.
pub fn plan(
    deployment: &Deployment,
    unit_bucket: Option<u16>,
    draws: Draws,
    is_eligible: impl Fn(usize) -> bool,
) -> Plan {
    let sticky = unit_bucket.is_some();
    let bucket = unit_bucket.unwrap_or(draws.unsticky_bucket % BUCKETS);
    let mut plan = Plan {
        serve: Target::Stable,
        mirror: None,
        bucket,
        sticky,
        excluded: false,
    };
    if deployment.mode == Mode::Off {
        return plan;
    }
    let Some(index) = candidate_for_bucket(deployment, bucket) else {
        return plan;
    };
    if !is_eligible(index) {
        plan.excluded = true;
        return plan;
    }
    match deployment.mode {
        Mode::Off => {}
        Mode::Shadow => plan.mirror = Some(Target::Candidate(index)),
        Mode::Live => {
            plan.serve = Target::Candidate(index);
            if draws.pair_roll % BUCKETS < deployment.pair_sample_buckets {
                plan.mirror = Some(Target::Stable);
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests;
