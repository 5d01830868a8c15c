//! `canarist demo`: the whole product in one process with nothing else installed. It starts the
//! mock upstream (stable, a candidate chosen by `--scenario`, and a SIMULATED judge), the
//! gateway on a fresh SQLite database, the judge workers and the rollout controller, drives
//! traffic through the gateway over HTTP, starts a rollout and shows it live — shadow, then the
//! ramp stages — until the gate promotes or rolls back; then writes the stage reports and prints
//! their paths and the dashboard URL. `--keep-running` leaves it all up and prints, as the last
//! line, a JSON object with the gateway URL, the model alias and two API keys.
//!
//! Owns: the scenario table and templates (`scenario`), the started parts (`stack`), the traffic
//! (`traffic`), the progress display (`progress`). Never: changes how any part works; it starts
//! them exactly as `canarist serve` does. Fails closed: the exit code is 0 only when the rollout
//! ended as the scenario expects.

pub mod progress;
pub mod scenario;
pub mod stack;
pub mod traffic;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

pub use scenario::{Ending, Scenario};

use crate::rollout::actions::{self, Actor};
use progress::{Display, Snapshot};
use scenario::{DEPLOYMENT, Pace};
use stack::Stack;
use traffic::{Counters, TrafficPlan};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// What the candidate does: good (promoted), regression (rolled back on the judge
    /// metric), cohort-regression (rolled back in one cohort), errors (rolled back on errors).
    #[arg(long, value_enum, default_value = "good")]
    pub scenario: Scenario,
    /// Compress stage durations so that a scenario ends in well under a minute (for CI).
    #[arg(long)]
    pub fast: bool,
    /// Leave everything running afterwards and print connection details as the last line.
    #[arg(long)]
    pub keep_running: bool,
    /// The demo's directory: config, rubric, database and reports (a fresh database each run).
    #[arg(long, default_value = "canarist-demo")]
    pub dir: PathBuf,
    /// The gateway's listen address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Requests per second of the traffic generator.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Concurrent clients of the traffic generator.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Seed of the mock upstream's draws.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let pace = Pace::new(args.fast);
    let scenario = args.scenario;
    let stack = Stack::start(&args.dir, scenario, pace, args.listen, args.seed).await?;
    let url = stack.runtime.url();
    println!("canarist demo — scenario `{}`", scenario.name());
    println!(
        "  mock upstream   {} (stable `mock-stable`, candidate `{}`)",
        stack.mock.base_url(),
        scenario.candidate_model()
    );
    println!(
        "  judge           SIMULATED: `mock-judge` on the mock upstream grades against the dataset's reference answers; it is not a language model"
    );
    println!("  gateway         {url} (model `{DEPLOYMENT}`)");
    println!("  database        {}", stack.dir.join("demo.db").display());
    println!("  expected        {}", scenario.expectation());

    let entries = Arc::new(crate::mock::Dataset::builtin()?.entries().to_vec());
    let rate = args.rate.unwrap_or(if args.fast { 80.0 } else { 40.0 });
    let traffic = traffic::start(
        TrafficPlan {
            gateway_url: url.clone(),
            model: DEPLOYMENT.to_owned(),
            clients: args.clients,
            rate,
            users: 5000,
        },
        entries,
    );
    let reason = format!("canarist demo --scenario {}", scenario.name());
    actions::start(&stack.rollouts, DEPLOYMENT, &Actor::new("demo"), &reason).await?;
    let percents: Vec<String> = pace.percents.iter().map(|p| format!("{p}%")).collect();
    println!(
        "  rollout         started: shadow, then {} of traffic ({rate:.0} requests/s from {} clients)\n",
        percents.join(", "),
        args.clients
    );

    let ending = watch(&stack, &traffic.counters, pace).await;
    traffic.stop().await;
    stack.drain_judge(Duration::from_secs(5)).await;

    println!();
    let reports = stack.write_reports().await?;
    for p in reports
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e != "md"))
    {
        println!("report: {}", p.display());
    }
    println!("dashboard: {url}/ui");
    let expected = scenario.expects(&ending);
    if let Ending::RolledBack { reason, .. } = &ending {
        println!("reason: {reason}");
    }
    println!("{}", outcome_line(scenario, &ending, expected));
    if args.keep_running {
        let (admin_key, viewer_key) = stack.create_keys().await?;
        let details = json!({
            "gateway_url": url,
            "model": DEPLOYMENT,
            "admin_key": admin_key,
            "viewer_key": viewer_key,
            "dashboard_url": format!("{url}/ui"),
        });
        eprintln!("everything stays up; Ctrl-C stops it");
        println!("{details}");
        crate::app::shutdown_signal().await;
    }
    stack.shutdown().await;
    Ok(if expected {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Shows the rollout about once a second until it ends or the pace's deadline passes.
async fn watch(stack: &Stack, counters: &Counters, pace: Pace) -> Ending {
    let ctx = &stack.rollouts;
    let mut display = Display::new(std::io::stdout().is_terminal());
    let start = tokio::time::Instant::now();
    let mut last_stage = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = match actions::status(ctx, DEPLOYMENT).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "demo: reading the rollout status failed");
                continue;
            }
        };
        let stage = status.rollout.as_ref().map(|r| r.stage);
        if last_stage.is_some() && stage != last_stage {
            display.keep();
        }
        last_stage = stage;
        display.update(&Snapshot {
            elapsed_secs: start.elapsed().as_secs_f64(),
            status: &status,
            pairs_judged: stack.pairs_judged(),
            requests_sent: Counters::get(&counters.sent),
            requests_failed: Counters::get(&counters.failed),
        });
        let Some(r) = &status.rollout else { continue };
        match r.state.as_str() {
            "promoted" => return Ending::Promoted,
            "rolled_back" => return rolled_back(stack).await,
            _ if start.elapsed() >= pace.deadline => {
                return Ending::Unfinished {
                    state: r.state.clone(),
                    stage: r.stage_label.clone(),
                };
            }
            _ => {}
        }
    }
}

/// The rollback's stage, failing metric and cohort, from the audit log.
async fn rolled_back(stack: &Stack) -> Ending {
    let log = actions::audit_log(&stack.rollouts, DEPLOYMENT)
        .await
        .unwrap_or_default();
    let Some(t) = log.iter().rev().find(|t| t.to_state == "rolled_back") else {
        return Ending::RolledBack {
            stage: String::new(),
            metric: None,
            cohort: None,
            reason: "rolled back (no audit entry found)".into(),
        };
    };
    let failing = &t.evidence["failing"];
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    let stage = stack.config.rollouts.get(DEPLOYMENT).map_or_else(
        || t.from_stage.to_string(),
        |s| crate::rollout::stored::stage_label(&s.ramp, t.from_stage as usize),
    );
    Ending::RolledBack {
        stage,
        metric: text(&failing["metric"]),
        cohort: text(&failing["cohort"]),
        reason: t.reason.clone(),
    }
}

/// The final line: the outcome, the failing metric and cohort, and whether it was expected.
pub fn outcome_line(scenario: Scenario, ending: &Ending, expected: bool) -> String {
    let verdict = if expected {
        format!("as expected for scenario `{}`", scenario.name())
    } else {
        format!(
            "NOT as expected for scenario `{}` (expected: {})",
            scenario.name(),
            scenario.expectation()
        )
    };
    match ending {
        Ending::Promoted => {
            format!("outcome: promoted — the candidate is the new stable; {verdict}")
        }
        Ending::RolledBack {
            stage,
            metric,
            cohort,
            ..
        } => format!(
            "outcome: rolled back at stage `{stage}` — failing metric `{}` in cohort `{}`; {verdict}",
            metric.as_deref().unwrap_or("unknown"),
            cohort.as_deref().unwrap_or("unknown"),
        ),
        Ending::Unfinished { state, stage } => format!(
            "outcome: unfinished — still `{state}` at stage `{stage}` when the demo's time ran out; {verdict}"
        ),
    }
}
