//! `canarist simulate`: the gate on seeded synthetic traffic, many times; prints the table (or
//! JSON) of `simulate::simulate`.

use std::process::ExitCode;

use crate::simulate::{SimConfig, SimulateArgs, TICK_SECS, render_table, simulate};

/// `canarist simulate`.
pub async fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let cfg = SimConfig::from_args(&args)?;
    let json = args.json;
    let rows = tokio::task::spawn_blocking(move || simulate(&cfg)).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", render_table(&rows));
        println!(
            "\nticks of {TICK_SECS}s; ramp shadow 20% → 5% → 25% → 50% (each ≥ 5 min and 500 judged pairs, ≤ 60 min then hold and alert);\n\
             canarist: asymptotic confidence sequences over units (delta method), α = 0.05 for promotion and for rollback split over 4 metrics × 3 cohorts, sample-ratio χ² on units, plus guardrails;\n\
             canarist_requests: the same gate on request-level summaries (every request independent, sample-ratio χ² on requests);\n\
             srm_blk: runs in which some tick would have promoted but for the sample-ratio check;\n\
             welch_rolling: Welch t-test p < 0.05 over the last 200 pairs every tick; mean_drop: mean score down > 5 points on 0–100 after 20 pairs;\n\
             the reference gates promote once a stage's minimums are met. Detection delay is over runs that rolled back."
        );
    }
    Ok(ExitCode::SUCCESS)
}
