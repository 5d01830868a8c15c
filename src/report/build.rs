//! Builds a [`StageReport`] from the store: the deployment's latest rollout, its stages and audit
//! log, the stage's aggregate summary, and the few row-level reads (worst answers, bounded score
//! samples). All I/O of the report module except writing files lives here; the sections are
//! computed by pure functions (`sections`, `stats`, and `crate::gate_input` for a recomputed
//! decision, the controller's own converter).
//!
//! The decision shown for a stage is, in order of preference:
//! 1. the gate decision the controller recorded: the latest transition *out of* the stage
//!    (`from_stage` = the stage) whose evidence JSON is a `gate::Decision`, either at the top
//!    level or under a `decision` key (source `transition`);
//! 2. otherwise, when a gate policy was given, the controller's own evaluation
//!    (`gate_input::decide`) run now on the stage summary (source `recomputed`; the stage's
//!    exposure, excluded cohorts and minimums come from the ramp when one was given, else the
//!    stored stage with no exclusions and minimums 0);
//! 3. otherwise none, with a note.
//!
//! Fails closed: a store error fails the report; missing data shows as `null`, never as 0.

use super::model::*;
use super::sections::{self, Intervals, cohort_name, sides};
use super::{ReportError, stats};
use crate::capture::Role;
use std::time::Duration;

use crate::gate::{self, Action, Decision, GatePolicy};
use crate::gate_input;
use crate::rollout::{Exposure, OnTimeout, Ramp, Stage};
use crate::store::{
    Rollout, RolloutStage, StageSummary, Store, SummaryScope, Transition, VariantSummary,
};
use chrono::{DateTime, Utc};

/// What the builder may use beyond the store.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The deployment's gate policy: sets the interval α and target n, and lets a stage without a
    /// recorded decision be re-evaluated.
    pub policy: Option<GatePolicy>,
    /// The deployment's ramp: configured percentages and stage minimums.
    pub ramp: Option<Ramp>,
    /// `generated_at`, and the end of a running stage's duration.
    pub now: DateTime<Utc>,
    /// How many worst candidate answers to show.
    pub worst_limit: u32,
    /// Per-side bound on the scores fetched for Mann-Whitney U.
    pub sample_limit: u32,
    /// The upstream models of the deployment's variants (from its config), so that the report
    /// names them; `None` leaves them `null`.
    pub models: Option<Models>,
    /// Where the dashboard is (`public_url`, or `""` for links relative to the gateway that
    /// serves the report); `None`: the report carries no links.
    pub links_base: Option<String>,
}

/// The upstream model of each variant of a deployment, as configured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Models {
    pub stable: String,
    /// Candidate name → upstream model.
    pub candidates: std::collections::BTreeMap<String, String>,
}

impl Models {
    pub fn of(d: &crate::config::Deployment) -> Self {
        Self {
            stable: d.stable.model.clone(),
            candidates: d
                .candidates
                .iter()
                .map(|c| (c.variant.name.clone(), c.variant.model.clone()))
                .collect(),
        }
    }
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            policy: None,
            ramp: None,
            now: Utc::now(),
            worst_limit: 5,
            sample_limit: 2000,
            models: None,
            links_base: None,
        }
    }
}

/// α and target n of the report's intervals when no policy is given (the gate's defaults).
pub const DEFAULT_ALPHA: f64 = 0.05;
pub const DEFAULT_TARGET_N: f64 = 1000.0;

/// The deployment's latest rollout with its stages and audit log.
struct Context {
    rollout: Rollout,
    stages: Vec<RolloutStage>,
    transitions: Vec<Transition>,
}

async fn context(store: &Store, deployment: &str) -> Result<Context, ReportError> {
    let rollout = store
        .rollouts(deployment)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ReportError::NoRollout(deployment.to_owned()))?;
    let stages = store.rollout_stages(rollout.id).await?;
    let transitions = store.transitions(rollout.id).await?;
    Ok(Context {
        rollout,
        stages,
        transitions,
    })
}

/// The report of stage `stage` (index) of the deployment's latest rollout.
pub async fn build_with(
    store: &Store,
    deployment: &str,
    stage: u32,
    opts: &BuildOptions,
) -> Result<StageReport, ReportError> {
    let ctx = context(store, deployment).await?;
    stage_report(store, deployment, &ctx, stage, opts).await
}

/// One report per stage of the deployment's latest rollout, in stage order.
pub async fn build_all(
    store: &Store,
    deployment: &str,
    opts: &BuildOptions,
) -> Result<Vec<StageReport>, ReportError> {
    let ctx = context(store, deployment).await?;
    let mut out = Vec::with_capacity(ctx.stages.len());
    for s in &ctx.stages {
        out.push(stage_report(store, deployment, &ctx, s.index, opts).await?);
    }
    Ok(out)
}

/// The recorded gate evaluations of stage `stage` of the deployment's latest rollout.
pub async fn stage_history(
    store: &Store,
    deployment: &str,
    stage: u32,
) -> Result<StageHistory, ReportError> {
    let ctx = context(store, deployment).await?;
    let s = ctx
        .stages
        .iter()
        .find(|s| s.index == stage)
        .ok_or_else(|| ReportError::NoStage {
            deployment: deployment.to_owned(),
            stage,
            available: ctx.stages.iter().map(|s| s.index).collect(),
        })?;
    let (ended_at, _) = stage_end(&ctx.transitions, s);
    Ok(StageHistory {
        rollout_id: ctx.rollout.id,
        stage,
        name: s.name.clone(),
        started_at: s.started_at,
        ended_at,
        points: gate_history(store, ctx.rollout.id, stage).await?,
    })
}

/// The decision recorded when the stage was left (or last decided), with its transition.
pub fn recorded_decision(
    transitions: &[Transition],
    stage: u32,
) -> Option<(Decision, &Transition)> {
    transitions
        .iter()
        .rev()
        .filter(|t| t.from_stage == stage && !t.from_state.is_empty())
        .find_map(|t| {
            let parse = |v: &serde_json::Value| serde_json::from_value::<Decision>(v.clone()).ok();
            parse(&t.evidence)
                .or_else(|| t.evidence.get("decision").and_then(parse))
                .map(|d| (d, t))
        })
}

/// When and how a stage ended: as recorded on the stage, or — for the last stage of a rollout
/// that went terminal without changing stage (promoted or rolled back in place) — the terminal
/// transition's time and state.
fn stage_end(
    transitions: &[Transition],
    s: &RolloutStage,
) -> (Option<DateTime<Utc>>, Option<String>) {
    if s.ended_at.is_some() {
        return (s.ended_at, s.outcome.clone());
    }
    transitions
        .iter()
        .rev()
        .find(|t| {
            t.from_stage == s.index
                && !t.from_state.is_empty()
                && matches!(t.to_state.as_str(), "promoted" | "rolled_back")
        })
        .map_or((None, None), |t| (Some(t.at), Some(t.to_state.clone())))
}

fn action_str(a: Action) -> String {
    match a {
        Action::Promote => "promote",
        Action::Hold => "hold",
        Action::Rollback => "rollback",
    }
    .to_owned()
}

/// Mode, configured and observed percentage of a stage.
fn exposure(
    ramp: Option<&Ramp>,
    index: u32,
    variants: &[VariantSummary],
    candidate: &str,
) -> (StageMode, Option<f64>, Option<f64>) {
    let configured = ramp
        .and_then(|r| r.stages.get(index as usize))
        .map(|s| s.exposure);
    let (c, s) = sides(variants, candidate);
    let (c_served, c_req) = c.map_or((0, 0), |c| (c.served, c.requests));
    let (s_served, s_req) = s.map_or((0, 0), |s| (s.served, s.requests));
    let mode = match configured {
        Some(Exposure::Shadow { .. }) => StageMode::Shadow,
        Some(Exposure::Live { .. }) => StageMode::Live,
        None if c_served > 0 => StageMode::Live,
        None if c_req > 0 => StageMode::Shadow,
        None => StageMode::Unknown,
    };
    let observed = match mode {
        StageMode::Live => stats::rate(c_served, c_served + s_served).map(|r| r * 100.0),
        StageMode::Shadow => stats::rate(c_req, s_req).map(|r| r * 100.0),
        StageMode::Unknown => None,
    };
    let configured = configured.map(|e| match e {
        Exposure::Shadow { sample_rate } => sample_rate * 100.0,
        Exposure::Live { share } => share * 100.0,
    });
    (mode, configured, observed)
}

async fn stage_report(
    store: &Store,
    deployment: &str,
    ctx: &Context,
    index: u32,
    opts: &BuildOptions,
) -> Result<StageReport, ReportError> {
    let stage = ctx
        .stages
        .iter()
        .find(|s| s.index == index)
        .ok_or_else(|| ReportError::NoStage {
            deployment: deployment.to_owned(),
            stage: index,
            available: ctx.stages.iter().map(|s| s.index).collect(),
        })?;
    let candidate = ctx.rollout.candidate.as_str();
    let scope = SummaryScope {
        deployment,
        stage: &stage.name,
        since: stage.started_at,
    };
    let summary = store.stage_summary(scope).await?;
    let judged_pairs = store.judged_pairs(scope).await?;
    let iv = Intervals {
        alpha: opts
            .policy
            .as_ref()
            .map_or(DEFAULT_ALPHA, |p| p.alpha_promote),
        target_n: opts
            .policy
            .as_ref()
            .map_or(DEFAULT_TARGET_N, |p| p.target_n),
    };
    let mut notes = Vec::new();

    let (mode, configured, observed) =
        exposure(opts.ramp.as_ref(), index, &summary.variants, candidate);
    let (ended_at, outcome) = stage_end(&ctx.transitions, stage);
    let end = ended_at.unwrap_or(opts.now);
    let duration_seconds = (end - stage.started_at).num_milliseconds().max(0) as f64 / 1000.0;
    let ramp = ramp_points(store, deployment, ctx, opts).await?;

    let facts = StageFacts {
        mode,
        configured,
        duration_seconds,
    };
    let decision = decision(ctx, &summary, index, opts, &facts, &mut notes);
    let srm_alpha = opts
        .policy
        .as_ref()
        .map_or_else(gate::policy::default_srm_alpha, |p| p.srm_alpha);
    let sample_ratio = sections::sample_ratio(&summary, candidate, mode, configured, srm_alpha);

    let [stable_abst, candidate_abst, pairwise_abst] = sections::abstention_rates(&summary);
    let position_consistency = store
        .position_consistency(scope)
        .await?
        .into_iter()
        .map(|p| Consistency {
            rate: stats::rate(p.consistent, p.consistent + p.inconsistent),
            candidate: p.candidate,
            rubric_id: p.rubric_id,
            criterion: p.criterion,
            consistent: p.consistent,
            inconsistent: p.inconsistent,
        })
        .collect();

    let reference_tests = reference_tests(store, scope, &summary, candidate, opts).await?;
    if reference_tests.rows.iter().any(|r| r.sampled) {
        notes.push(format!(
            "Mann-Whitney U used the first {} scores per side (by pair id)",
            opts.sample_limit
        ));
    }
    let worst_answers = super::worst::worst_answers(store, scope, opts.worst_limit).await?;
    let gate_history = gate_history(store, ctx.rollout.id, index).await?;
    let models = opts.models.as_ref();

    let mut report = StageReport {
        schema_version: SCHEMA_VERSION,
        generated_at: opts.now,
        deployment: deployment.to_owned(),
        summary: Summary::default(),
        rollout: RolloutInfo {
            id: ctx.rollout.id,
            candidate: candidate.to_owned(),
            stable_model: models.map(|m| m.stable.clone()),
            candidate_model: models.and_then(|m| m.candidates.get(candidate).cloned()),
            state: ctx.rollout.state.clone(),
            stage_index: ctx.rollout.stage_index,
            config_version: ctx.rollout.config_version,
            created_at: ctx.rollout.created_at,
            last_transition: ctx
                .transitions
                .iter()
                .rev()
                .find(|t| !t.from_state.is_empty())
                .map(transition_ref),
        },
        stage: StageInfo {
            index,
            name: stage.name.clone(),
            mode,
            configured_percent: configured,
            observed_percent: observed,
            started_at: stage.started_at,
            ended_at,
            duration_seconds,
            outcome,
        },
        ramp,
        plan: plan(opts.ramp.as_ref()),
        links: opts
            .links_base
            .as_deref()
            .map(|base| links(base, deployment, index, &ctx.stages)),
        interval_alpha: iv.alpha,
        interval_target_n: iv.target_n,
        variants: sections::variants(&summary),
        pairs: sections::pairs(&summary),
        criteria: sections::criteria(&summary, iv),
        checks: sections::checks(&summary, iv),
        aa: sections::aa(&summary, iv),
        judge: JudgeQuality {
            stable_abstention_rate: stable_abst,
            candidate_abstention_rate: candidate_abst,
            pairwise_abstention_rate: pairwise_abst,
            position_consistency,
            judged_pairs,
        },
        sample_ratio,
        decision,
        gate_history,
        worst_answers,
        reference_tests,
        notes,
    };
    report.summary = super::summary::summarize(&report);
    Ok(report)
}

/// The stage's recorded gate evaluations; a row whose method or verdict this version does not
/// know is left out.
async fn gate_history(
    store: &Store,
    rollout: uuid::Uuid,
    index: u32,
) -> Result<Vec<GateHistoryPoint>, ReportError> {
    fn named<T: serde::de::DeserializeOwned>(s: String) -> Option<T> {
        serde_json::from_value(serde_json::Value::String(s)).ok()
    }
    Ok(store
        .gate_history(rollout, index)
        .await?
        .into_iter()
        .filter_map(|p| {
            Some(GateHistoryPoint {
                method: named(p.method)?,
                verdict: named(p.verdict)?,
                metric: p.metric,
                cohort: p.cohort,
                at: p.at,
                estimate: p.estimate,
                lo: p.lo,
                hi: p.hi,
                bound: p.bound,
                candidate_n: p.candidate_n,
                stable_n: p.stable_n,
            })
        })
        .collect())
}

/// The dashboard's URLs of this stage and its neighbours (each `…/report` URL opens that
/// stage's report under a fresh signed link once a key is entered).
fn links(base: &str, deployment: &str, index: u32, stages: &[RolloutStage]) -> Links {
    let base = base.trim_end_matches('/');
    let slug: String = url_escape(deployment);
    let stage = |k: u32| format!("{base}/ui#/deployments/{slug}/stages/{k}");
    let has = |k: u32| stages.iter().any(|s| s.index == k);
    Links {
        dashboard: stage(index),
        previous: index
            .checked_sub(1)
            .filter(|k| has(*k))
            .map(|k| format!("{}/report", stage(k))),
        next: Some(index + 1)
            .filter(|k| has(*k))
            .map(|k| format!("{}/report", stage(k))),
    }
}

/// Percent-encodes everything but unreserved characters (a slug in a URL fragment).
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn transition_ref(t: &Transition) -> TransitionRef {
    TransitionRef {
        at: t.at,
        actor: t.actor.clone(),
        from_state: t.from_state.clone(),
        to_state: t.to_state.clone(),
        from_stage: t.from_stage,
        to_stage: t.to_stage,
        reason: t.reason.clone(),
        gate_reason: serde_json::from_value::<Decision>(t.evidence.clone())
            .ok()
            .or_else(|| {
                t.evidence
                    .get("decision")
                    .and_then(|v| serde_json::from_value::<Decision>(v.clone()).ok())
            })
            .map(|d| d.reason),
    }
}

fn plan(ramp: Option<&Ramp>) -> Vec<PlannedStage> {
    ramp.map_or_else(Vec::new, |r| {
        r.stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (mode, percent) = match s.exposure {
                    Exposure::Shadow { sample_rate } => (StageMode::Shadow, sample_rate * 100.0),
                    Exposure::Live { share } => (StageMode::Live, share * 100.0),
                };
                PlannedStage {
                    index: i as u32,
                    mode,
                    percent,
                }
            })
            .collect()
    })
}

async fn ramp_points(
    store: &Store,
    deployment: &str,
    ctx: &Context,
    opts: &BuildOptions,
) -> Result<Vec<RampPoint>, ReportError> {
    let mut out = Vec::with_capacity(ctx.stages.len());
    for s in &ctx.stages {
        let variants = store
            .variant_summaries(SummaryScope {
                deployment,
                stage: &s.name,
                since: s.started_at,
            })
            .await?;
        let (mode, configured, observed) = exposure(
            opts.ramp.as_ref(),
            s.index,
            &variants,
            &ctx.rollout.candidate,
        );
        let (ended_at, outcome) = stage_end(&ctx.transitions, s);
        out.push(RampPoint {
            index: s.index,
            name: s.name.clone(),
            mode,
            percent: configured.or(observed),
            started_at: s.started_at,
            ended_at,
            outcome,
            action: recorded_decision(&ctx.transitions, s.index).map(|(d, _)| action_str(d.action)),
        });
    }
    Ok(out)
}

/// What the decision needs to know about the stage beyond its summary.
struct StageFacts {
    mode: StageMode,
    configured: Option<f64>,
    duration_seconds: f64,
}

fn decision(
    ctx: &Context,
    summary: &StageSummary,
    index: u32,
    opts: &BuildOptions,
    facts: &StageFacts,
    notes: &mut Vec<String>,
) -> Option<DecisionReport> {
    if let Some((d, t)) = recorded_decision(&ctx.transitions, index) {
        return Some(DecisionReport {
            source: DecisionSource::Transition,
            action: action_str(d.action),
            reason: d.reason,
            evidence: d.evidence,
            alerts: d.alerts,
            transition: Some(transition_ref(t)),
        });
    }
    if let Some(t) = ctx
        .transitions
        .iter()
        .rev()
        .find(|t| t.from_stage == index && !t.from_state.is_empty())
    {
        notes.push(format!(
            "the stage's last transition ({} → {}, by {}: {}) carries no gate decision",
            t.from_state, t.to_state, t.actor, t.reason
        ));
    }
    let Some(policy) = &opts.policy else {
        notes.push("no gate decision recorded for this stage and no gate policy given".into());
        return None;
    };
    // The ramp's stage when the report knows the ramp (its exclusions and minimums, as the
    // controller evaluates it); otherwise the stage as stored, with no exclusions or minimums.
    let stage = match opts
        .ramp
        .as_ref()
        .and_then(|r| r.stages.get(index as usize))
    {
        Some(s) => s.clone(),
        None => Stage {
            exposure: match (facts.mode, facts.configured) {
                (StageMode::Live, Some(p)) => Exposure::Live { share: p / 100.0 },
                _ => Exposure::Shadow { sample_rate: 1.0 },
            },
            min_duration: Duration::ZERO,
            min_judged_pairs: 0,
            max_duration: Duration::ZERO,
            on_timeout: OnTimeout::default(),
            exclude_cohorts: Vec::new(),
            approval_required: false,
        },
    };
    let elapsed = Duration::from_secs_f64(facts.duration_seconds.max(0.0));
    let d = gate_input::decide(policy, &stage, elapsed, summary);
    notes.push("decision recomputed now with gate::evaluate on the stage summary".into());
    Some(DecisionReport {
        source: DecisionSource::Recomputed,
        action: action_str(d.action),
        reason: d.reason,
        evidence: d.evidence,
        alerts: d.alerts,
        transition: None,
    })
}

async fn reference_tests(
    store: &Store,
    scope: SummaryScope<'_>,
    summary: &StageSummary,
    candidate: &str,
    opts: &BuildOptions,
) -> Result<ReferenceTests, ReportError> {
    let mut rows = Vec::new();
    let candidates: Vec<_> = summary
        .scores
        .iter()
        .filter(|s| s.candidate == candidate)
        .map(|s| (s.rubric_hash.clone(), s.criterion.clone()))
        .collect();
    for (mut row, hash) in sections::welch_rows(summary) {
        if !candidates.contains(&(hash.clone(), row.criterion.clone())) {
            continue;
        }
        let fetch = |side| {
            store.score_sample(
                scope,
                candidate,
                &hash,
                &row.criterion,
                side,
                opts.sample_limit,
            )
        };
        let c = fetch(Role::Candidate).await?;
        let s = fetch(Role::Stable).await?;
        let limit = opts.sample_limit as usize;
        row.sampled = c.len() >= limit || s.len() >= limit;
        row.mann_whitney_n = (c.len() as u64, s.len() as u64);
        if let Some((u, p)) = stats::mann_whitney(&c, &s) {
            row.mann_whitney_u = Some(u);
            row.mann_whitney_p = Some(p);
        }
        rows.push(row);
    }
    Ok(ReferenceTests {
        label: REFERENCE_LABEL.to_owned(),
        rows,
    })
}

/// `all`, or the pair's labels as `k=v, k=v`.
pub fn cohort_of_labels(labels: &std::collections::BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return cohort_name(&None);
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
