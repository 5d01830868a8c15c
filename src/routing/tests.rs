use std::collections::BTreeMap;

use statrs::distribution::{Binomial, DiscreteCDF};

use super::*;
use crate::config::{Candidate, CohortAction, CohortRule, Cohorts, LabelSource, Mode, Variant};

fn variant(name: &str) -> Variant {
    Variant {
        name: name.to_owned(),
        provider: "p".to_owned(),
        model: format!("model-{name}"),
        system_prompt: None,
        params: serde_json::Map::new(),
    }
}

fn deployment(mode: Mode, percents: &[f64]) -> crate::config::Deployment {
    crate::config::Deployment {
        slug: "chat".to_owned(),
        model: "chat".to_owned(),
        mode,
        stage: "s".to_owned(),
        salt: "chat".to_owned(),
        stable: variant("stable"),
        candidates: percents
            .iter()
            .enumerate()
            .map(|(i, p)| Candidate {
                variant: variant(&format!("cand{i}")),
                buckets: (p * 100.0).round() as u16,
            })
            .collect(),
        shadow_timeout: std::time::Duration::from_secs(1),
        mirror_embeddings: false,
        pair_sample_buckets: 0,
        aa_buckets: 0,
        fallback_to_stable: false,
        spend_cap: Default::default(),
        cohorts: Cohorts::default(),
        unit_key_from: None,
    }
}

const NO_DRAWS: Draws = Draws {
    unsticky_bucket: 0,
    pair_roll: 9_999,
};

fn route(d: &crate::config::Deployment, unit: &str) -> Plan {
    let seed = RoutedDeployment::new(d.clone()).seed;
    plan(d, Some(bucket(seed, unit)), NO_DRAWS, |_| true)
}

#[test]
fn share_at_half_a_percent_is_within_the_binomial_interval() {
    let d = deployment(Mode::Live, &[0.5]);
    let n = 20_000u64;
    let hits = (0..n)
        .filter(|i| route(&d, &format!("user-{i}")).serve == Target::Candidate(0))
        .count() as u64;
    // Two-sided 99.9% interval of Binomial(20000, 0.005).
    let binomial = Binomial::new(0.005, n).unwrap();
    let lo = binomial.inverse_cdf(0.0005);
    let hi = binomial.inverse_cdf(0.9995);
    assert!(
        (lo..=hi).contains(&hits),
        "{hits} candidate units out of {n}, expected within [{lo}, {hi}]"
    );
}

#[test]
fn the_same_unit_always_gets_the_same_variant() {
    let d = deployment(Mode::Live, &[30.0]);
    for i in 0..2_000 {
        let unit = format!("tenant-{i}");
        let first = route(&d, &unit);
        for _ in 0..3 {
            assert_eq!(route(&d, &unit), first, "unit {unit} changed variant");
        }
    }
}

#[test]
fn raising_the_percentage_only_adds_units() {
    let units: Vec<String> = (0..20_000).map(|i| format!("u{i}")).collect();
    let mut previous: Vec<bool> = vec![false; units.len()];
    for percent in [0.5, 2.0, 10.0, 25.0, 50.0, 100.0] {
        let d = deployment(Mode::Live, &[percent]);
        let now: Vec<bool> = units
            .iter()
            .map(|u| route(&d, u).serve == Target::Candidate(0))
            .collect();
        for (i, (was, is)) in previous.iter().zip(&now).enumerate() {
            assert!(
                !was || *is,
                "unit u{i} left the candidate when ramping to {percent}%"
            );
        }
        let share = now.iter().filter(|b| **b).count() as f64 / units.len() as f64;
        assert!(
            (share * 100.0 - percent).abs() < percent.max(1.0) * 0.25 + 0.2,
            "{share} at {percent}%"
        );
        previous = now;
    }
}

#[test]
fn several_candidates_take_disjoint_lanes_and_keep_their_units() {
    let before = deployment(Mode::Live, &[5.0, 5.0]);
    let after = deployment(Mode::Live, &[5.0, 20.0]);
    let mut counts = [0usize; 2];
    for i in 0..20_000 {
        let unit = format!("k{i}");
        let a = route(&before, &unit);
        let b = route(&after, &unit);
        if let Target::Candidate(c) = a.serve {
            counts[c] += 1;
            // Raising candidate 1 never moves candidate 0's (or 1's) units.
            assert_eq!(b.serve, Target::Candidate(c), "unit {unit}");
        }
    }
    assert!(counts[0] > 800 && counts[0] < 1_200, "{counts:?}");
    assert!(counts[1] > 800 && counts[1] < 1_200, "{counts:?}");
    assert_eq!(candidate_for_bucket(&before, 0), Some(0));
    assert_eq!(candidate_for_bucket(&before, 5_000), Some(1));
    assert_eq!(candidate_for_bucket(&before, 500), None);
}

#[test]
fn a_new_candidate_gets_a_new_salt() {
    let one = RoutedDeployment::new(deployment(Mode::Live, &[10.0]));
    let mut renamed = deployment(Mode::Live, &[10.0]);
    renamed.candidates[0].variant.name = "other".to_owned();
    let two = RoutedDeployment::new(renamed);
    assert_ne!(one.seed, two.seed);
}

fn all_fields() -> UnitFields<'static> {
    UnitFields {
        header: Some("h"),
        safety_identifier: Some("s"),
        user: Some("u"),
        prompt_cache_key: Some("p"),
        metadata_user_id: Some("m"),
        tenant: Some("t"),
    }
}

#[test]
fn default_unit_key_order_is_header_safety_identifier_user_cache_key_metadata_tenant() {
    let order = UnitSource::DEFAULT_ORDER;
    let mut fields = all_fields();
    let mut seen = Vec::new();
    // Take each source away in turn: the next one in the default order answers.
    while let Some((key, source)) = unit_key(&order, &fields) {
        seen.push((key, source));
        match source {
            UnitSource::Header => fields.header = None,
            UnitSource::SafetyIdentifier => fields.safety_identifier = None,
            UnitSource::User => fields.user = None,
            UnitSource::PromptCacheKey => fields.prompt_cache_key = None,
            UnitSource::MetadataUserId => fields.metadata_user_id = None,
            UnitSource::Tenant => fields.tenant = None,
        }
    }
    assert_eq!(
        seen,
        vec![
            ("h", UnitSource::Header),
            ("s", UnitSource::SafetyIdentifier),
            ("u", UnitSource::User),
            ("p", UnitSource::PromptCacheKey),
            ("m", UnitSource::MetadataUserId),
            ("t", UnitSource::Tenant),
        ]
    );
    assert_eq!(unit_key(&order, &UnitFields::default()), None);
}

#[test]
fn unit_key_follows_the_configured_order_and_skips_empty_values() {
    let order = [
        UnitSource::Tenant,
        UnitSource::MetadataUserId,
        UnitSource::User,
    ];
    assert_eq!(
        unit_key(&order, &all_fields()),
        Some(("t", UnitSource::Tenant))
    );
    let fields = UnitFields {
        tenant: Some(""),
        ..all_fields()
    };
    assert_eq!(
        unit_key(&order, &fields),
        Some(("m", UnitSource::MetadataUserId))
    );
    // A source the order does not name is never used, even when it is the only one present.
    let only_header = UnitFields {
        header: Some("h"),
        ..UnitFields::default()
    };
    assert_eq!(unit_key(&order, &only_header), None);
    assert_eq!(unit_key(&[], &all_fields()), None);
}

#[test]
fn requests_without_a_unit_are_random_and_unsticky() {
    let d = deployment(Mode::Live, &[50.0]);
    let a = plan(
        &d,
        None,
        Draws {
            unsticky_bucket: 10,
            pair_roll: 0,
        },
        |_| true,
    );
    let b = plan(
        &d,
        None,
        Draws {
            unsticky_bucket: 9_000,
            pair_roll: 0,
        },
        |_| true,
    );
    assert!(!a.sticky && !b.sticky);
    assert_eq!(a.serve, Target::Candidate(0));
    assert_eq!(b.serve, Target::Stable);
}

#[test]
fn shadow_mirrors_and_stable_serves() {
    let d = deployment(Mode::Shadow, &[100.0]);
    let p = route(&d, "anyone");
    assert_eq!(p.serve, Target::Stable);
    assert_eq!(p.mirror, Some(Target::Candidate(0)));
    let off = deployment(Mode::Off, &[100.0]);
    assert_eq!(route(&off, "anyone").mirror, None);
}

#[test]
fn live_pair_sample_sends_stable_in_the_background() {
    let mut d = deployment(Mode::Live, &[100.0]);
    d.pair_sample_buckets = 1_000; // 10%
    let sampled = plan(
        &d,
        Some(1),
        Draws {
            unsticky_bucket: 0,
            pair_roll: 999,
        },
        |_| true,
    );
    let not = plan(
        &d,
        Some(1),
        Draws {
            unsticky_bucket: 0,
            pair_roll: 1_000,
        },
        |_| true,
    );
    assert_eq!(sampled.mirror, Some(Target::Stable));
    assert_eq!(not.mirror, None);
    assert_eq!(sampled.serve, Target::Candidate(0));
}

fn tier_cohorts(action: CohortAction) -> Cohorts {
    Cohorts {
        labels: vec![("tier".to_owned(), LabelSource::Metadata("tier".to_owned()))],
        rules: vec![CohortRule {
            matches: vec![("tier".to_owned(), "enterprise".to_owned())],
            action,
        }],
    }
}

#[test]
fn excluded_cohort_joins_only_from_its_percentage() {
    let cohorts = tier_cohorts(CohortAction::Exclude {
        until_buckets: Some(2_500),
    });
    let enterprise = BTreeMap::from([("tier".to_owned(), "enterprise".to_owned())]);
    let free = BTreeMap::from([("tier".to_owned(), "free".to_owned())]);
    assert!(!eligible(&cohorts, &enterprise, 1_000));
    assert!(eligible(&cohorts, &enterprise, 2_500));
    assert!(eligible(&cohorts, &free, 50));
    assert!(eligible(&cohorts, &BTreeMap::new(), 50));

    let mut d = deployment(Mode::Live, &[100.0]);
    d.cohorts = tier_cohorts(CohortAction::Exclude {
        until_buckets: None,
    });
    let p = plan(&d, Some(3), NO_DRAWS, |i| {
        eligible(&d.cohorts, &enterprise, d.candidates[i].buckets)
    });
    assert_eq!(p.serve, Target::Stable);
    assert!(p.excluded);
}

#[test]
fn include_rules_admit_only_matching_requests() {
    let cohorts = tier_cohorts(CohortAction::Include);
    let enterprise = BTreeMap::from([("tier".to_owned(), "enterprise".to_owned())]);
    assert!(eligible(&cohorts, &enterprise, 100));
    assert!(!eligible(&cohorts, &BTreeMap::new(), 100));
}

#[test]
fn labels_come_from_headers_and_metadata() {
    let cohorts = Cohorts {
        labels: vec![
            ("tier".to_owned(), LabelSource::Metadata("tier".to_owned())),
            (
                "region".to_owned(),
                LabelSource::Header(http::HeaderName::from_static("x-region")),
            ),
        ],
        rules: vec![],
    };
    let metadata = serde_json::json!({"tier": "pro", "other": 1});
    let labels = cohort_labels(
        &cohorts,
        |h| (h.as_str() == "x-region").then_some("eu"),
        metadata.as_object(),
    );
    assert_eq!(labels.get("tier").map(String::as_str), Some("pro"));
    assert_eq!(labels.get("region").map(String::as_str), Some("eu"));
}
