use super::*;
use crate::routing::VariantState;

fn state(candidates: &[(&str, u16)]) -> TrafficState {
    let v = |name: &str| VariantState {
        name: name.into(),
        provider: "p".into(),
        model: format!("m-{name}"),
        system_prompt: None,
        params: serde_json::Map::new(),
    };
    TrafficState {
        mode: if candidates.is_empty() {
            Mode::Off
        } else {
            Mode::Live
        },
        stage: "s".into(),
        stable: v("stable"),
        candidates: candidates
            .iter()
            .map(|(n, b)| CandidateState {
                variant: v(n),
                buckets: *b,
            })
            .collect(),
        auto_rollback: true,
        exclude_cohorts: Vec::new(),
    }
}

fn req(action: TrafficAction) -> TrafficRequest {
    TrafficRequest {
        action,
        model_id: None,
        traffic_pct: None,
        challenger_id: None,
        shadow_mode: None,
    }
}

fn none(_: &str) -> Option<(String, String)> {
    None
}

fn code(r: Result<(TrafficState, Option<Challenger>), AdminError>) -> String {
    match r {
        Err(AdminError::InvalidTraffic { param, .. }) => {
            format!("422 {}", param.unwrap_or_default())
        }
        Err(AdminError::NotFound { code, .. }) => format!("404 {code}"),
        Err(e) => format!("{e:?}"),
        Ok(_) => "ok".into(),
    }
}

#[test]
fn add_challenger_takes_buckets_and_goes_live() {
    let s = state(&[]);
    let r = TrafficRequest {
        model_id: Some("gpt-x".into()),
        traffic_pct: Some(12.5),
        ..req(TrafficAction::AddChallenger)
    };
    let (next, ch) = apply(&s, &r, &none).unwrap();
    assert_eq!(next.mode, Mode::Live);
    assert_eq!(next.candidates.len(), 1);
    assert_eq!(next.candidates[0].buckets, 1250);
    assert_eq!(next.candidates[0].variant.provider, "p");
    let ch = ch.unwrap();
    assert_eq!(
        (
            ch.id.as_str(),
            ch.model_id.as_str(),
            ch.traffic_pct,
            ch.is_active
        ),
        ("gpt-x", "gpt-x", 12.5, true)
    );
    // Same model again gets a distinct id.
    let (next2, ch2) = apply(&next, &r, &none).unwrap();
    assert_eq!(ch2.unwrap().id, "gpt-x-2");
    assert_eq!(next2.candidates.len(), 2);
}

#[test]
fn provider_prefix_is_split_when_configured() {
    let r = TrafficRequest {
        model_id: Some("other/big".into()),
        traffic_pct: Some(1.0),
        ..req(TrafficAction::AddChallenger)
    };
    let split = |m: &str| m.split_once('/').map(|(a, b)| (a.to_owned(), b.to_owned()));
    let (next, _) = apply(&state(&[]), &r, &split).unwrap();
    assert_eq!(next.candidates[0].variant.provider, "other");
    assert_eq!(next.candidates[0].variant.model, "big");
}

#[test]
fn total_above_fifty_percent_is_refused() {
    let s = state(&[("a", 3000)]);
    let add = |pct| TrafficRequest {
        model_id: Some("b".into()),
        traffic_pct: Some(pct),
        ..req(TrafficAction::AddChallenger)
    };
    assert_eq!(code(apply(&s, &add(20.01), &none)), "422 traffic_pct");
    assert_eq!(code(apply(&s, &add(20.0), &none)), "ok");
    let upd = |pct| TrafficRequest {
        challenger_id: Some("a".into()),
        traffic_pct: Some(pct),
        ..req(TrafficAction::UpdateTraffic)
    };
    assert_eq!(
        code(apply(
            &state(&[("a", 3000), ("b", 2000)]),
            &upd(30.01),
            &none
        )),
        "422 traffic_pct"
    );
    assert_eq!(
        code(apply(&state(&[("a", 3000), ("b", 2000)]), &upd(0.0), &none)),
        "ok"
    );
    assert_eq!(code(apply(&s, &upd(50.5), &none)), "422 traffic_pct");
    assert_eq!(code(apply(&s, &add(0.5), &none)), "422 traffic_pct");
    assert_eq!(code(apply(&s, &add(1.005), &none)), "422 traffic_pct");
}

#[test]
fn missing_conditional_fields_are_422_and_unknown_ids_404() {
    let s = state(&[("a", 100)]);
    assert_eq!(
        code(apply(&s, &req(TrafficAction::AddChallenger), &none)),
        "422 model_id"
    );
    let no_pct = TrafficRequest {
        model_id: Some("m".into()),
        ..req(TrafficAction::AddChallenger)
    };
    assert_eq!(code(apply(&s, &no_pct, &none)), "422 traffic_pct");
    assert_eq!(
        code(apply(&s, &req(TrafficAction::RemoveChallenger), &none)),
        "422 challenger_id"
    );
    assert_eq!(
        code(apply(&s, &req(TrafficAction::UpdateTraffic), &none)),
        "422 challenger_id"
    );
    assert_eq!(
        code(apply(&s, &req(TrafficAction::ToggleShadow), &none)),
        "422 shadow_mode"
    );
    let ghost = TrafficRequest {
        challenger_id: Some("zz".into()),
        ..req(TrafficAction::RemoveChallenger)
    };
    assert_eq!(code(apply(&s, &ghost, &none)), "404 challenger_not_found");
}

#[test]
fn remove_returns_traffic_to_champion_and_toggle_switches_mode() {
    let s = state(&[("a", 100)]);
    let rm = TrafficRequest {
        challenger_id: Some("a".into()),
        ..req(TrafficAction::RemoveChallenger)
    };
    let (next, ch) = apply(&s, &rm, &none).unwrap();
    assert!(next.candidates.is_empty());
    assert_eq!(next.mode, Mode::Off);
    assert!(!ch.unwrap().is_active);
    let t = TrafficRequest {
        shadow_mode: Some(true),
        ..req(TrafficAction::ToggleShadow)
    };
    let (next, ch) = apply(&s, &t, &none).unwrap();
    assert_eq!(next.mode, Mode::Shadow);
    assert_eq!(ch.unwrap().id, "a");
}

#[test]
fn percent_grid() {
    assert_eq!(percent_to_buckets(0.01), Some(1));
    assert_eq!(percent_to_buckets(50.0), Some(5000));
    assert_eq!(percent_to_buckets(100.0), Some(10000));
    assert_eq!(percent_to_buckets(0.015), None);
    assert_eq!(percent_to_buckets(-1.0), None);
}
