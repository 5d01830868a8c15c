//! Cohort labels (from headers and request `metadata`) and the include/exclude rules over them.

use std::collections::BTreeMap;

use crate::config::{CohortAction, Cohorts, LabelSource};

/// The cohort labels of a request. `header` looks up a request header; `metadata` is the
/// request's `metadata` object when it has one.
pub fn cohort_labels<'h>(
    cohorts: &Cohorts,
    header: impl Fn(&http::HeaderName) -> Option<&'h str>,
    metadata: Option<&serde_json::Map<String, serde_json::Value>>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for (name, source) in &cohorts.labels {
        let value = match source {
            LabelSource::Header(h) => header(h).map(str::to_owned),
            LabelSource::Metadata(key) => metadata.and_then(|m| m.get(key)).and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }),
        };
        if let Some(value) = value {
            labels.insert(name.clone(), value);
        }
    }
    labels
}

/// Whether a request with `labels` may be in a canary whose candidate holds `candidate_buckets`.
pub fn eligible(
    cohorts: &Cohorts,
    labels: &BTreeMap<String, String>,
    candidate_buckets: u16,
) -> bool {
    let matches = |rule: &crate::config::CohortRule| {
        rule.matches
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
    };
    let mut has_include = false;
    let mut included = false;
    for rule in &cohorts.rules {
        match rule.action {
            CohortAction::Include => {
                has_include = true;
                included |= matches(rule);
            }
            CohortAction::Exclude { until_buckets } => {
                let still_excluded = until_buckets.is_none_or(|until| candidate_buckets < until);
                if still_excluded && matches(rule) {
                    return false;
                }
            }
        }
    }
    !has_include || included
}
