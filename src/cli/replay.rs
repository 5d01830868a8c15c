//! `canarist replay`: the offline pre-flight on a golden dataset. Sends every prompt of a JSONL
//! dataset (the mock's format: `id`, `prompt`, optional `metadata`) to the stable and the
//! candidate variant, judges each pair against one rubric — its checks and all of its criteria
//! (the rubric's `applies_to` and sample rate are ignored: every prompt is judged) — and prints a
//! summary table (or JSON with `--json`), with a progress bar on stderr.
//!
//! With `--aa`, stable is also asked a second time and judged against itself: the A/A lines show
//! the judge's noise floor (a difference that should be near zero) and its position consistency.
//!
//! Variants are `PROVIDER:MODEL`. The provider is looked up in `--config` when given, else every
//! variant is called at `--base-url`. The request metadata of a dataset line is kept in the
//! captured request (rubrics read it) but not sent upstream.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::capture::{Endpoint, ErrorClass, JsonBody, Observation, Pair, Purpose, Role, Usage};
use crate::judge::{
    Judge, JudgeOptions, JudgeStats, Line, PairOutput, SummaryBuilder, render_table,
};
use crate::mock::{Dataset, DatasetEntry};
use crate::rubric::{Rubric, load_file};

#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The golden dataset (JSONL: `id`, `prompt`, optional `metadata`, …).
    #[arg(long)]
    pub dataset: PathBuf,
    /// The rubric file to judge with.
    #[arg(long)]
    pub rubric: PathBuf,
    /// The stable variant, `PROVIDER:MODEL`.
    #[arg(long)]
    pub stable: String,
    /// The candidate variant, `PROVIDER:MODEL`.
    #[arg(long)]
    pub candidate: String,
    /// Where variants are called when `--config` does not name their provider.
    #[arg(long, default_value = "http://127.0.0.1:9090/v1")]
    pub base_url: String,
    /// Environment variable holding the API key for `--base-url`.
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// A canarist config whose `providers` (and `prices`) are used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Replaces the base URL of the rubric's judge(s) (not part of the rubric's hash).
    #[arg(long)]
    pub judge_base_url: Option<String>,
    /// Prompts replayed at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Replay only the first N prompts.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Also judge stable against a second stable answer (the judge's noise floor).
    #[arg(long)]
    pub aa: bool,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One prompt's outputs: main pair, A/A pair, and which sides errored (stable, candidate).
type Replayed = (PairOutput, Option<PairOutput>, [bool; 2]);

/// A variant to call.
#[derive(Debug, Clone)]
struct Variant {
    label: String,
    model: String,
    base_url: String,
    api_key: Option<String>,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct ReplayReport {
    pub dataset: String,
    pub rubric_id: String,
    pub rubric_version: String,
    pub rubric_hash: String,
    pub stable: String,
    pub candidate: String,
    pub prompts: usize,
    pub stable_errors: usize,
    pub candidate_errors: usize,
    pub lines: Vec<Line>,
    /// `--aa`: stable against stable.
    pub aa: Option<Vec<Line>>,
    pub judge_calls: u64,
    pub cache_hits: u64,
}

fn variant(spec: &str, args: &ReplayArgs, config: Option<&crate::config::Config>) -> Variant {
    let (provider, model) = spec.split_once(':').unwrap_or(("", spec));
    match config.and_then(|c| c.providers.get(provider)) {
        Some(p) => Variant {
            label: spec.to_owned(),
            model: model.to_owned(),
            base_url: p.base_url.clone(),
            api_key: p.api_key.clone(),
        },
        None => Variant {
            label: spec.to_owned(),
            model: model.to_owned(),
            base_url: args.base_url.trim_end_matches('/').to_owned(),
            api_key: args
                .api_key_env
                .as_ref()
                .and_then(|v| std::env::var(v).ok()),
        },
    }
}

/// Runs the replay and returns the report (the CLI prints it).
pub async fn replay(args: &ReplayArgs) -> anyhow::Result<ReplayReport> {
    let dataset = Dataset::load(&args.dataset)?;
    let mut rubric = load_file(&args.rubric)?;
    if let (Some(url), Some(judging)) = (&args.judge_base_url, rubric.judging.as_mut()) {
        for j in &mut judging.judges {
            j.base_url = url.trim_end_matches('/').to_owned();
        }
    }
    let config = match &args.config {
        Some(path) => Some(crate::config::Config::load(path)?),
        None => None,
    };
    let stable = variant(&args.stable, args, config.as_ref());
    let candidate = variant(&args.candidate, args, config.as_ref());
    let options = JudgeOptions {
        prices: config
            .as_ref()
            .map(|c| c.prices.clone())
            .unwrap_or_default(),
        ..JudgeOptions::default()
    };
    let stats = JudgeStats::new();
    let judge = Arc::new(Judge::new(vec![rubric.clone()], options, stats.clone())?);
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .context("building the HTTP client")?;
    let entries: Vec<&DatasetEntry> = dataset
        .entries()
        .iter()
        .take(args.limit.unwrap_or(usize::MAX))
        .collect();
    let bar = indicatif::ProgressBar::new(entries.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} prompts {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let rubric_ref = &rubric;
    let results: Vec<anyhow::Result<Replayed>> =
        futures::stream::iter(entries.iter().map(|entry| {
            let (http, judge, bar) = (&http, &judge, &bar);
            let (stable, candidate) = (&stable, &candidate);
            async move {
                let s = ask(http, stable, entry, Role::Stable).await;
                let c = ask(http, candidate, entry, Role::Candidate).await;
                let errors = [s.error.is_some(), c.error.is_some()];
                let main = judge_one(judge, rubric_ref, s.clone(), c).await?;
                let aa = if args.aa {
                    let again = ask(http, stable, entry, Role::Candidate).await;
                    Some(judge_one(judge, rubric_ref, s, again).await?)
                } else {
                    None
                };
                bar.inc(1);
                Ok((main, aa, errors))
            }
        }))
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    let (mut main, mut aa) = (SummaryBuilder::default(), SummaryBuilder::default());
    let (mut stable_errors, mut candidate_errors) = (0, 0);
    for r in results {
        let (m, a, [se, ce]) = r?;
        main.add(&m.judgments, &m.checks);
        if let Some(a) = a {
            aa.add(&a.judgments, &a.checks);
        }
        stable_errors += usize::from(se);
        candidate_errors += usize::from(ce);
    }
    use std::sync::atomic::Ordering::Relaxed;
    Ok(ReplayReport {
        dataset: args.dataset.display().to_string(),
        rubric_id: rubric.id.clone(),
        rubric_version: rubric.version.to_string(),
        rubric_hash: rubric.hash.0.clone(),
        stable: stable.label,
        candidate: candidate.label,
        prompts: entries.len(),
        stable_errors,
        candidate_errors,
        lines: main.lines(),
        aa: args.aa.then(|| aa.lines()),
        judge_calls: stats.calls.load(Relaxed),
        cache_hits: stats.cache_hits.load(Relaxed),
    })
}

async fn judge_one(
    judge: &Judge,
    rubric: &Rubric,
    stable: Observation,
    candidate: Observation,
) -> anyhow::Result<PairOutput> {
    let pair_id = Uuid::new_v4();
    let pair = Pair {
        id: pair_id,
        request_id: stable.request_id,
        deployment: "replay".to_owned(),
        stage: "replay".to_owned(),
        config_version: 0,
        cohort: Default::default(),
        stable: Observation {
            pair_id: Some(pair_id),
            ..stable
        },
        candidate: Observation {
            pair_id: Some(pair_id),
            role: Role::Candidate,
            ..candidate
        },
    };
    let mut out = PairOutput::default();
    judge.judge_rubric(rubric, &pair, true, &mut out).await?;
    Ok(out)
}

/// Calls one variant with one prompt and records what happened as an Observation.
async fn ask(http: &reqwest::Client, v: &Variant, entry: &DatasetEntry, role: Role) -> Observation {
    let sent = json!({"model": v.model, "messages": [{"role": "user", "content": entry.prompt}]});
    let mut captured = sent.clone();
    if let (Some(obj), false) = (captured.as_object_mut(), entry.metadata.is_empty()) {
        obj.insert("metadata".into(), Value::Object(entry.metadata.clone()));
    }
    let started = Instant::now();
    let mut req = http
        .post(format!("{}/chat/completions", v.base_url))
        .json(&sent);
    if let Some(key) = &v.api_key {
        req = req.bearer_auth(key);
    }
    let mut obs = Observation {
        id: Uuid::new_v4(),
        request_id: Uuid::new_v4(),
        pair_id: None,
        at: chrono::Utc::now(),
        deployment: "replay".to_owned(),
        variant: v.label.clone(),
        role,
        purpose: Purpose::Served,
        stage: "replay".to_owned(),
        config_version: 0,
        endpoint: Endpoint::ChatCompletions,
        upstream_model: v.model.clone(),
        stream: false,
        bucket: None,
        unit_key: None,
        sticky: false,
        cohort: Default::default(),
        status: None,
        error: None,
        error_detail: None,
        ttft_ms: None,
        latency_ms: 0.0,
        usage: None,
        cost_usd: None,
        finish_reason: None,
        response_text: None,
        request_body: Some(JsonBody::from(captured)),
        response_body: None,
    };
    let result = async {
        let resp = req
            .send()
            .await
            .map_err(|e| (ErrorClass::Unreachable, e.to_string()))?;
        let status = resp.status();
        obs.status = Some(status.as_u16());
        let body: Value = resp
            .json()
            .await
            .map_err(|e| (ErrorClass::Malformed, e.to_string()))?;
        if status.is_client_error() {
            return Err((ErrorClass::Upstream4xx, body.to_string()));
        }
        if !status.is_success() {
            return Err((ErrorClass::Upstream5xx, body.to_string()));
        }
        Ok(body)
    }
    .await;
    obs.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    obs.ttft_ms = Some(obs.latency_ms);
    match result {
        Ok(body) => {
            let choice = body.get("choices").and_then(|c| c.get(0));
            obs.response_text = choice
                .and_then(|c| c.pointer("/message/content"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            obs.finish_reason = choice
                .and_then(|c| c.get("finish_reason"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            obs.usage = body
                .get("usage")
                .and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok());
            if obs.response_text.is_none() {
                obs.error = Some(ErrorClass::Malformed);
                obs.error_detail = Some("no message content".to_owned());
            }
            obs.response_body = Some(JsonBody::from(body));
        }
        Err((class, detail)) => {
            obs.error = Some(class);
            obs.error_detail = Some(detail.chars().take(200).collect());
        }
    }
    obs
}

/// `canarist replay`.
pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let report = replay(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(
        if report.stable_errors + report.candidate_errors == 2 * report.prompts
            && report.prompts > 0
        {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// The human-readable report.
pub fn render(r: &ReplayReport) -> String {
    let mut out = format!(
        "replay of {} prompts from {}\nrubric {} {} ({})\nstable {} ({} errors), candidate {} ({} errors)\njudge calls {}, cache hits {}\n\n",
        r.prompts,
        r.dataset,
        r.rubric_id,
        r.rubric_version,
        r.rubric_hash,
        r.stable,
        r.stable_errors,
        r.candidate,
        r.candidate_errors,
        r.judge_calls,
        r.cache_hits,
    );
    out.push_str(&render_table(&r.lines));
    if let Some(aa) = &r.aa {
        out.push_str("\nA/A (stable against a second stable answer: the judge's noise floor)\n");
        out.push_str(&render_table(aa));
    }
    out
}
