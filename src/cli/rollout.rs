//! `canarist rollout start|status|promote|rollback|pause|resume|approve|log`: the actions, from the
//! command line, against the store named in the config (`storage.url`). Every replica serving
//! that database picks the change up within a second (the config-version bump). The CLI waits a
//! few seconds for a rollback's alert webhook to be delivered before it exits.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, LoadMode};
use crate::rollout::actions::{self, Actor, RolloutCtx, RolloutError};
use crate::rollout::alerts::{AlertOptions, Alerts};
use crate::store::{Store, redact_url};

#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub action: RolloutAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum RolloutAction {
    /// Start a rollout of the deployment's candidate at the ramp's first stage.
    Start(Target),
    /// Show state, stage, traffic, the gate's current decision and live counts.
    Status(Target),
    /// Advance one stage (past the last: the candidate becomes the new stable).
    Promote(Target),
    /// Send all traffic back to stable now.
    Rollback(Target),
    /// Freeze the stage clock and gate decisions.
    Pause(Target),
    Resume(Target),
    /// Approve a stage awaiting approval (`approval: required`): it advances like a promotion.
    Approve(Target),
    /// Print the audit log of the deployment's latest rollout.
    Log(Target),
}

#[derive(Debug, clap::Args)]
pub struct Target {
    /// The config file (YAML).
    #[arg(long, short, default_value = "canarist.yaml", env = "CANARIST_CONFIG")]
    pub config: PathBuf,
    /// The deployment's slug.
    #[arg(long, short)]
    pub deployment: String,
    /// Why (recorded in the audit log).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Who (recorded in the audit log).
    #[arg(long, default_value = "cli")]
    pub actor: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: RolloutArgs) -> anyhow::Result<ExitCode> {
    let t = match &args.action {
        RolloutAction::Start(t)
        | RolloutAction::Status(t)
        | RolloutAction::Promote(t)
        | RolloutAction::Rollback(t)
        | RolloutAction::Pause(t)
        | RolloutAction::Resume(t)
        | RolloutAction::Approve(t)
        | RolloutAction::Log(t) => t,
    };
    let config = match Config::load_with(&t.config, LoadMode::Store) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let store = Store::connect(&config.storage_url).await.map_err(|e| {
        anyhow::anyhow!(
            "{}: storage.url {}: {e}",
            config.source.display(),
            redact_url(&config.storage_url)
        )
    })?;
    let ctx = RolloutCtx {
        store: store.clone(),
        config: Arc::new(config),
        alerts: Alerts::spawn(AlertOptions {
            max_attempts: 3,
            ..AlertOptions::default()
        }),
        traffic: None,
    };
    let actor = Actor::new(t.actor.clone());
    let d = t.deployment.as_str();
    let reason = t.reason.as_str();
    let result = match &args.action {
        RolloutAction::Start(_) => actions::start(&ctx, d, &actor, reason).await.map(Some),
        RolloutAction::Promote(_) => actions::promote(&ctx, d, &actor, reason).await.map(Some),
        RolloutAction::Rollback(_) => actions::rollback(&ctx, d, &actor, reason).await.map(Some),
        RolloutAction::Pause(_) => actions::pause(&ctx, d, &actor, reason).await.map(Some),
        RolloutAction::Resume(_) => actions::resume(&ctx, d, &actor, reason).await.map(Some),
        RolloutAction::Approve(_) => actions::approve(&ctx, d, &actor, reason).await.map(Some),
        RolloutAction::Status(_) => match actions::status(&ctx, d).await {
            Ok(s) => {
                print_status(&s, t.json)?;
                Ok(None)
            }
            Err(e) => Err(e),
        },
        RolloutAction::Log(_) => match actions::audit_log(&ctx, d).await {
            Ok(log) => {
                for e in log {
                    if t.json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "at": e.at, "from_state": e.from_state, "to_state": e.to_state,
                                "from_stage": e.from_stage, "to_stage": e.to_stage,
                                "actor": e.actor, "reason": e.reason, "evidence": e.evidence,
                                "config_version": e.config_version,
                            })
                        );
                    } else {
                        println!(
                            "{}  {}/{} → {}/{}  by {}: {}",
                            e.at.to_rfc3339(),
                            e.from_state,
                            e.from_stage,
                            e.to_state,
                            e.to_stage,
                            e.actor,
                            e.reason
                        );
                    }
                }
                Ok(None)
            }
            Err(e) => Err(e),
        },
    };
    let code = match result {
        Ok(Some(r)) => {
            println!(
                "{}: rollout {} is {} at stage {} (config version {})",
                r.deployment, r.id, r.state, r.stage_index, r.config_version
            );
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                RolloutError::Storage(_) => ExitCode::FAILURE,
                _ => ExitCode::from(3),
            }
        }
    };
    ctx.alerts.drain(Duration::from_secs(10)).await;
    store.close().await;
    Ok(code)
}

fn print_status(s: &actions::RolloutStatus, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
        return Ok(());
    }
    let Some(r) = &s.rollout else {
        println!("{}: no rollout yet", s.deployment);
        return Ok(());
    };
    println!(
        "{}: rollout {} of `{}` is {} at stage {}/{} ({}, {} {}%), since {}",
        s.deployment,
        r.id,
        r.candidate,
        r.state,
        r.stage,
        r.stage_count,
        r.stage_label,
        r.mode,
        r.candidate_percent,
        r.stage_started_at.to_rfc3339()
    );
    if r.state == crate::rollout::stored::AWAITING_APPROVAL {
        println!(
            "  awaiting approval: the gate says promote; an admin approves with `canarist rollout \
             approve -d {} --reason …`, the dashboard or POST /v1/deployments/{}/rollout/approve",
            s.deployment, s.deployment
        );
    }
    for l in &s.live {
        println!(
            "  {} ({}): {} requests from {} units ({} served to {} units), {} errors",
            l.variant, l.role, l.requests, l.units, l.served, l.served_units, l.errors
        );
    }
    if let Some(d) = &s.decision {
        println!("  gate: {:?} — {}", d.action, d.reason);
        for e in &d.evidence {
            println!(
                "    {} [{}]: {} estimate {:?} interval {:?} bound {} ({}; per {}, {})",
                e.metric,
                e.cohort,
                e.verdict.as_str(),
                e.estimate,
                e.interval,
                e.bound,
                e.counts_text(),
                e.unit.as_str(),
                serde_json::to_value(e.method)?.as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}
