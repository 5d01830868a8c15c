//! `canarist simulate` on small, seeded configurations (few runs each, so that the suite stays
//! fast): the real gate catches a regression confined to one cohort and trips the guardrail on
//! an error bump; the table is reproducible. (Identical variants, the sample-ratio checks on
//! units, clustered traffic and dropped candidate units are tested in `simulate::tests`, on
//! shortened runs; the rates come from `canarist simulate --runs 1000`.) (The sample-ratio checks on units, clustered traffic and
//! dropped candidate units are tested in `simulate::tests`, on shortened runs.)

use canarist::simulate::{
    Row, Scenario, SimConfig, SimulateArgs, SimulateError, TrafficModel, simulate,
};

fn run(scenario: Scenario, traffic: TrafficModel, runs: usize) -> Vec<Row> {
    simulate(&SimConfig {
        runs,
        seed: 7,
        scenarios: vec![scenario],
        traffic: vec![traffic],
        rollback_margin: canarist::simulate::SIM_QUALITY_ROLLBACK_MARGIN,
        guardrail_z: canarist::gate::guardrail::default_error_z(),
    })
}

fn row<'a>(rows: &'a [Row], gate: &str) -> &'a Row {
    match rows.iter().find(|r| r.gate == gate) {
        Some(r) => r,
        None => panic!("no row for gate {gate}"),
    }
}

#[test]
fn a_regression_in_one_cohort_is_rolled_back_because_of_that_cohort() {
    let rows = run(Scenario::CohortRegression, TrafficModel::Iid, 6);
    let canarist = row(&rows, "canarist");
    assert_eq!(canarist.rollback_rate, 1.0, "{canarist:?}");
    assert_eq!(canarist.false_promotion_rate, Some(0.0));
    // Every rollback is the quality drop's, most of them seen in the cohort itself (the
    // cohort's few units make its sequence wider than `all`'s, which the drop moves by 0.1).
    for cause in canarist.rollback_causes.keys() {
        assert!(
            cause == "quality/tier=enterprise" || cause == "quality/all",
            "{canarist:?}"
        );
    }
    assert!(
        canarist
            .rollback_causes
            .get("quality/tier=enterprise")
            .is_some_and(|&n| n >= 4),
        "{canarist:?}"
    );
    assert!(canarist.median_detection_pairs.is_some());
}

#[test]
fn an_error_bump_trips_the_guardrail() {
    // Clustered traffic: the candidate fails 13 points more often for every user. The
    // guardrail (its excess over stable judged over unit groups) or the gate's error check
    // rolls every run back, and nothing else does.
    let rows = run(Scenario::ErrorBump, TrafficModel::Clustered, 6);
    let canarist = row(&rows, "canarist");
    assert_eq!(canarist.rollback_rate, 1.0, "{canarist:?}");
    for (cause, runs) in &canarist.rollback_causes {
        assert!(
            cause == "guardrail" || cause.starts_with("errors/"),
            "{runs} rolled back by {cause}: {canarist:?}"
        );
    }
    assert!(canarist.guardrail_rollbacks >= 3, "{canarist:?}");
    // The guardrail needs 100 candidate outcomes in its window: 3 ticks of 40 mirrored calls.
    assert!(
        canarist.median_detection_pairs.unwrap() <= 120.0,
        "{canarist:?}"
    );
}

#[test]
fn the_same_seed_gives_the_same_table_and_json_has_the_documented_keys() {
    let a = run(Scenario::SmallDrop, TrafficModel::Iid, 2);
    let b = run(Scenario::SmallDrop, TrafficModel::Iid, 2);
    assert_eq!(a, b);
    let json = serde_json::to_value(&a).unwrap();
    let first = &json.as_array().unwrap()[0];
    for key in [
        "scenario",
        "traffic",
        "gate",
        "runs",
        "rollback_rate",
        "promotion_rate",
        "srm_blocked_rate",
        "median_detection_pairs",
    ] {
        assert!(first.get(key).is_some(), "missing {key}");
    }
    assert_eq!(first["scenario"], "small_drop");
    assert_eq!(first["gate"], "canarist");
}

#[test]
fn unknown_scenarios_traffic_and_zero_runs_are_refused() {
    let args = |runs: usize, scenario: &str, traffic: &str| SimulateArgs {
        runs,
        json: false,
        seed: 1,
        scenario: vec![scenario.to_owned()],
        traffic: vec![traffic.to_owned()],
        rollback_margin: 0.0,
        guardrail_z: 3.0,
    };
    assert_eq!(
        SimConfig::from_args(&args(10, "bogus", "iid")).unwrap_err(),
        SimulateError::UnknownScenario("bogus".into())
    );
    assert_eq!(
        SimConfig::from_args(&args(10, "aa", "lumpy")).unwrap_err(),
        SimulateError::UnknownTraffic("lumpy".into())
    );
    assert_eq!(
        SimConfig::from_args(&args(0, "aa", "iid")).unwrap_err(),
        SimulateError::NoRuns
    );
    let negative = SimulateArgs {
        rollback_margin: -0.1,
        ..args(10, "aa", "iid")
    };
    assert_eq!(
        SimConfig::from_args(&negative).unwrap_err(),
        SimulateError::BadRollbackMargin
    );
    let bad_z = SimulateArgs {
        guardrail_z: f64::NAN,
        ..args(10, "aa", "iid")
    };
    assert_eq!(
        SimConfig::from_args(&bad_z).unwrap_err(),
        SimulateError::BadGuardrailZ
    );
    let cfg = SimConfig::from_args(&args(10, "srm_drop", "clustered")).unwrap();
    assert_eq!(cfg.scenarios, vec![Scenario::SrmDrop]);
    assert_eq!(cfg.traffic, vec![TrafficModel::Clustered]);
}
