//! Traffic operations: pure functions from one deployment's [`TrafficState`] to the next — add,
//! remove or re-weight a challenger, switch shadow mode, start an API canary, take the
//! candidates' traffic away — and the rules every result must keep (at most 50% of units to
//! challengers in total, no challenger wider than its lane, only known challengers).
//!
//! Owns: those rules and their error type. Never: reads or writes the store or the live table
//! (`rollout::traffic` does, with compare-and-set, the audit entry and the reload).

use super::{CANARY_STAGE, CandidateState, TrafficState, VariantState, lane_width};
use crate::vocab::Mode;

/// Total challenger traffic may not exceed this many buckets (50%).
pub const MAX_CHALLENGER_BUCKETS: u32 = 5_000;

/// A traffic change that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrafficError {
    /// No challenger of the deployment has this id.
    #[error("challenger `{0}` not found")]
    UnknownChallenger(String),
    /// The challengers together would serve more than 50% of units.
    #[error(
        "total challenger traffic would be {:.2}%, above the 50% limit",
        f64::from(*.total_buckets) / 100.0
    )]
    AboveCap { total_buckets: u32 },
    /// One challenger's share would not fit its lane (with `n` challengers, 100/n percent).
    #[error(
        "challenger `{id}` would take {:.2}%, more than its lane of {:.2}% with {challengers} challengers",
        f64::from(*.buckets) / 100.0,
        f64::from(*.lane) / 100.0
    )]
    WiderThanLane {
        id: String,
        buckets: u16,
        lane: u16,
        challengers: usize,
    },
}

/// A change of a deployment's challengers or mode (`PATCH /v1/deployments/{slug}/traffic`).
#[derive(Debug, Clone, PartialEq)]
pub enum TrafficChange<'a> {
    /// A new challenger serving `model` of `provider`, at `buckets`; its id is derived from
    /// `model_id` (see [`fresh_id`]). Turns an `off` deployment `live`.
    AddChallenger {
        model_id: &'a str,
        provider: String,
        model: String,
        buckets: u16,
    },
    /// Removes the challenger; the last one gone turns the deployment `off`.
    RemoveChallenger { id: &'a str },
    /// Sets the challenger's share; a non-zero share turns an `off` deployment `live`.
    SetShare { id: &'a str, buckets: u16 },
    /// `shadow` (challengers scored silently) or `live`.
    SetShadow(bool),
}

/// The index of challenger `id` in `state`.
pub fn challenger(state: &TrafficState, id: &str) -> Result<usize, TrafficError> {
    state
        .candidates
        .iter()
        .position(|c| c.variant.name == id)
        .ok_or_else(|| TrafficError::UnknownChallenger(id.to_owned()))
}

/// Applies `change` to `state`; returns the new state and the index of the challenger the
/// change concerned in it (`None` when it was removed, or for a shadow switch without any), or
/// the rule it breaks.
pub fn apply(
    state: &TrafficState,
    change: &TrafficChange<'_>,
) -> Result<(TrafficState, Option<usize>), TrafficError> {
    let mut next = state.clone();
    let concerned = match change {
        TrafficChange::AddChallenger {
            model_id,
            provider,
            model,
            buckets,
        } => {
            let id = fresh_id(state, model_id);
            next.candidates.push(CandidateState {
                variant: VariantState {
                    name: id,
                    provider: provider.clone(),
                    model: model.clone(),
                    system_prompt: None,
                    params: serde_json::Map::new(),
                },
                buckets: *buckets,
            });
            if next.mode == Mode::Off {
                next.mode = Mode::Live;
            }
            Some(next.candidates.len() - 1)
        }
        TrafficChange::RemoveChallenger { id } => {
            next.candidates.remove(challenger(state, id)?);
            if next.candidates.is_empty() {
                next.mode = Mode::Off;
            }
            None
        }
        TrafficChange::SetShare { id, buckets } => {
            let i = challenger(state, id)?;
            next.candidates[i].buckets = *buckets;
            if next.mode == Mode::Off && *buckets > 0 {
                next.mode = Mode::Live;
            }
            Some(i)
        }
        TrafficChange::SetShadow(shadow) => {
            next.mode = if *shadow { Mode::Shadow } else { Mode::Live };
            (!next.candidates.is_empty()).then_some(0)
        }
    };
    check_challengers(&next)?;
    Ok((next, concerned))
}

/// The rules of challenger traffic: 50% in total, each within its lane.
pub fn check_challengers(state: &TrafficState) -> Result<(), TrafficError> {
    let total: u32 = state.candidates.iter().map(|c| u32::from(c.buckets)).sum();
    if total > MAX_CHALLENGER_BUCKETS {
        return Err(TrafficError::AboveCap {
            total_buckets: total,
        });
    }
    let lane = lane_width(state.candidates.len());
    if let Some(c) = state.candidates.iter().find(|c| c.buckets > lane) {
        return Err(TrafficError::WiderThanLane {
            id: c.variant.name.clone(),
            buckets: c.buckets,
            lane,
            challengers: state.candidates.len(),
        });
    }
    Ok(())
}

/// A live canary (`POST /api/v1/gateway/canary`): `candidate` (its name is chosen here) serves
/// `buckets` of units instead of the deployment's challengers, under the canary stage label.
/// The id, and so the bucket salt, of a challenger already running the same model of the same
/// provider is kept. A rollout stage's cohort exclusions do not carry over. Returns the new
/// state and the challenger's id. One challenger: its lane is the whole bucket space.
pub fn canary(
    state: &TrafficState,
    provider: &str,
    model: &str,
    buckets: u16,
    auto_rollback: bool,
) -> (TrafficState, String) {
    let mut next = state.clone();
    let same = next
        .candidates
        .iter()
        .find(|c| c.variant.model == model && c.variant.provider == provider)
        .map(|c| c.variant.name.clone());
    let id = same.unwrap_or_else(|| {
        next.candidates.clear();
        fresh_id(&next, model)
    });
    next.candidates = vec![CandidateState {
        variant: VariantState {
            name: id.clone(),
            provider: provider.to_owned(),
            model: model.to_owned(),
            system_prompt: None,
            params: serde_json::Map::new(),
        },
        buckets,
    }];
    next.mode = Mode::Live;
    next.stage = CANARY_STAGE.into();
    next.auto_rollback = auto_rollback;
    next.exclude_cohorts.clear();
    (next, id)
}

/// The traffic of a deployment no rollout owns yet, as an API canary starts it: stable only
/// (`provider`, `model`), under the canary stage label.
pub fn canary_base(provider: &str, model: &str) -> TrafficState {
    TrafficState {
        mode: Mode::Off,
        stage: CANARY_STAGE.into(),
        stable: VariantState {
            name: "stable".into(),
            provider: provider.to_owned(),
            model: model.to_owned(),
            system_prompt: None,
            params: serde_json::Map::new(),
        },
        candidates: Vec::new(),
        auto_rollback: true,
        exclude_cohorts: Vec::new(),
    }
}

/// The candidates' traffic taken away (mode `off`, every share zero), under stage label `stage`.
pub fn rolled_back(state: &TrafficState, stage: &str) -> TrafficState {
    let mut next = state.clone();
    next.mode = Mode::Off;
    next.stage = stage.to_owned();
    for c in &mut next.candidates {
        c.buckets = 0;
    }
    next
}

/// A challenger id for `model` that no variant of `state` uses yet.
pub fn fresh_id(state: &TrafficState, model: &str) -> String {
    let base: String = model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let base = if base.is_empty() {
        "challenger".to_owned()
    } else {
        base
    };
    let taken = |id: &str| id == "stable" || state.candidates.iter().any(|c| c.variant.name == id);
    let mut id = base.clone();
    let mut n = 2;
    while taken(&id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(candidates: &[(&str, u16)]) -> TrafficState {
        let mut s = canary_base("p", "m-stable");
        s.mode = if candidates.is_empty() {
            Mode::Off
        } else {
            Mode::Live
        };
        s.candidates = candidates
            .iter()
            .map(|(n, b)| CandidateState {
                variant: VariantState {
                    name: (*n).into(),
                    provider: "p".into(),
                    model: format!("m-{n}"),
                    system_prompt: None,
                    params: serde_json::Map::new(),
                },
                buckets: *b,
            })
            .collect();
        s
    }

    #[test]
    fn the_cap_counts_every_challenger() {
        let s = state(&[("a", 3_000)]);
        let add = |buckets| TrafficChange::AddChallenger {
            model_id: "b",
            provider: "p".into(),
            model: "b".into(),
            buckets,
        };
        assert!(apply(&s, &add(2_000)).is_ok());
        assert_eq!(
            apply(&s, &add(2_001)),
            Err(TrafficError::AboveCap {
                total_buckets: 5_001
            })
        );
        assert_eq!(
            TrafficError::AboveCap {
                total_buckets: 5_001
            }
            .to_string(),
            "total challenger traffic would be 50.01%, above the 50% limit"
        );
    }

    #[test]
    fn a_challenger_wider_than_its_lane_is_refused() {
        // Three challengers: lanes of 33.33%; 40% fits the cap but not the lane.
        let s = state(&[("a", 500), ("b", 500), ("c", 500)]);
        let r = apply(
            &s,
            &TrafficChange::SetShare {
                id: "a",
                buckets: 4_000,
            },
        );
        assert_eq!(
            r,
            Err(TrafficError::WiderThanLane {
                id: "a".into(),
                buckets: 4_000,
                lane: 3_333,
                challengers: 3,
            })
        );
        assert!(
            apply(
                &s,
                &TrafficChange::SetShare {
                    id: "a",
                    buckets: 3_333
                }
            )
            .is_ok()
        );
    }

    #[test]
    fn unknown_challengers_are_named() {
        let s = state(&[("a", 100)]);
        for change in [
            TrafficChange::RemoveChallenger { id: "zz" },
            TrafficChange::SetShare {
                id: "zz",
                buckets: 1,
            },
        ] {
            assert_eq!(
                apply(&s, &change),
                Err(TrafficError::UnknownChallenger("zz".into()))
            );
        }
    }

    #[test]
    fn a_canary_keeps_the_id_of_the_same_model_and_takes_the_whole_lane() {
        let s = state(&[("a", 100), ("b", 100)]);
        let (next, id) = canary(&s, "p", "m-a", 8_000, false);
        assert_eq!(id, "a");
        assert_eq!(next.candidates.len(), 1);
        assert_eq!(next.candidates[0].buckets, 8_000);
        assert_eq!((next.mode, next.stage.as_str()), (Mode::Live, CANARY_STAGE));
        assert!(!next.auto_rollback);
        let (_, other) = canary(&s, "p", "new", 100, true);
        assert_eq!(other, "new");
        let back = rolled_back(&next, "rolled_back");
        assert_eq!(back.mode, Mode::Off);
        assert!(back.candidates.iter().all(|c| c.buckets == 0));
    }
}
