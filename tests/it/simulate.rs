//! `canarist simulate` on small, seeded configurations: the real gate keeps its false-rollback
//! rate under α on identical variants while the rolling-Welch reference does not, catches a
//! regression confined to one cohort, and trips the guardrail on an error bump.

use canarist::simulate::{Row, Scenario, SimConfig, SimulateArgs, SimulateError, simulate};

fn run(scenario: Scenario, runs: usize) -> Vec<Row> {
    simulate(&SimConfig {
        runs,
        seed: 7,
        scenarios: vec![scenario],
    })
}

fn row<'a>(rows: &'a [Row], gate: &str) -> &'a Row {
    match rows.iter().find(|r| r.gate == gate) {
        Some(r) => r,
        None => panic!("no row for gate {gate}"),
    }
}

#[test]
fn aa_false_rollbacks_stay_under_alpha_while_rolling_welch_does_not() {
    let runs = 150;
    let rows = run(Scenario::Aa, runs);
    assert_eq!(rows.len(), 3);
    let canarist = row(&rows, "canarist");
    let welch = row(&rows, "welch_rolling");
    // α = 0.05 plus three Monte-Carlo standard errors: 0.05 + 3·sqrt(0.05·0.95/150) = 0.103.
    let bound = 0.05 + 3.0 * (0.05f64 * 0.95 / runs as f64).sqrt();
    assert!(
        canarist.false_rollback_rate.unwrap() <= bound,
        "{canarist:?}"
    );
    assert!(
        welch.false_rollback_rate.unwrap() > bound + 0.03,
        "{welch:?}"
    );
    assert!(
        row(&rows, "mean_drop").false_rollback_rate.unwrap() > bound,
        "{rows:?}"
    );
    // Identical variants are promoted through every stage, and no promotion is "false".
    assert!(canarist.promotion_rate > 0.9, "{canarist:?}");
    assert_eq!(canarist.false_promotion_rate, None);
    assert_eq!(canarist.runs, runs);
}

#[test]
fn a_regression_in_one_cohort_is_rolled_back_because_of_that_cohort() {
    let rows = run(Scenario::CohortRegression, 30);
    let canarist = row(&rows, "canarist");
    assert_eq!(canarist.rollback_rate, 1.0, "{canarist:?}");
    assert_eq!(canarist.false_promotion_rate, Some(0.0));
    assert_eq!(
        canarist.rollback_causes.get("quality/tier=enterprise"),
        Some(&30),
        "{canarist:?}"
    );
    assert!(canarist.median_detection_pairs.is_some());
}

#[test]
fn an_error_bump_trips_the_guardrail() {
    let rows = run(Scenario::ErrorBump, 30);
    let canarist = row(&rows, "canarist");
    assert_eq!(canarist.rollback_rate, 1.0, "{canarist:?}");
    assert_eq!(canarist.guardrail_rollbacks, 30, "{canarist:?}");
    // The guardrail needs 100 candidate outcomes in its window: 5 ticks of 20 pairs.
    assert!(
        canarist.median_detection_pairs.unwrap() <= 120.0,
        "{canarist:?}"
    );
}

#[test]
fn the_same_seed_gives_the_same_table_and_json_has_the_documented_keys() {
    let a = run(Scenario::SmallDrop, 5);
    let b = run(Scenario::SmallDrop, 5);
    assert_eq!(a, b);
    let json = serde_json::to_value(&a).unwrap();
    let first = &json.as_array().unwrap()[0];
    for key in [
        "scenario",
        "gate",
        "runs",
        "rollback_rate",
        "promotion_rate",
        "median_detection_pairs",
    ] {
        assert!(first.get(key).is_some(), "missing {key}");
    }
    assert_eq!(first["scenario"], "small_drop");
    assert_eq!(first["gate"], "canarist");
}

#[test]
fn unknown_scenarios_and_zero_runs_are_refused() {
    let args = |runs: usize, scenario: &str| SimulateArgs {
        runs,
        json: false,
        seed: 1,
        scenario: vec![scenario.to_owned()],
    };
    assert_eq!(
        SimConfig::from_args(&args(10, "bogus")).unwrap_err(),
        SimulateError::UnknownScenario("bogus".into())
    );
    assert_eq!(
        SimConfig::from_args(&args(0, "aa")).unwrap_err(),
        SimulateError::NoRuns
    );
    let cfg = SimConfig::from_args(&args(10, "srm")).unwrap();
    assert_eq!(cfg.scenarios, vec![Scenario::Srm]);
}
