//! [`Judge`]: scores one pair against every rubric that applies to it — the deterministic
//! checks always, the LLM criteria when the pair is in the rubric's judge sample — and returns
//! the rows to store. Knows nothing of the job queue (`worker` does) and writes nothing.
//!
//! Pointwise criteria judge each side alone and blind; pairwise criteria run both orders and
//! combine them (an inconsistent verdict is a tie); reference criteria judge against stable's
//! answer or a reference from the request metadata. With a panel, every judge is asked and the
//! rubric's aggregation (majority or mean over normalized scores) makes one row per target,
//! stamped `panel:<model>+<model>`. All questions of a pair are asked concurrently, within each
//! endpoint's limits. Every judgment carries the request id as its trace id, and the work runs in
//! a `judge.pair` span carrying `request_id`, so a score lands on the request's trace.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::capture::{Pair, Role};
use crate::config::Price;
use crate::rubric::{
    Abstain, Criterion, JudgeAnswer, JudgeModel, Judging, Mode, Order, PairOutcome,
    ReferenceSource, Rubric, Target, aggregate_panel, combine_pairwise, render, run_checks, select,
};
use crate::store::{NewCheckResult, NewJudgment};

use super::cache::{CacheKey, JudgeCache};
use super::call::{AskContext, Asked, Endpoint, Unavailable, ask};
use super::client::{ClientError, JudgeClient};
use super::limits::{LimitSettings, Limits};
use super::rows;
use super::stats::JudgeStats;

/// Each judge's answers (by panel position) for every target of one criterion.
type Answers = BTreeMap<usize, Vec<(Target, Result<JudgeAnswer, Abstain>)>>;

/// How the judge runs, besides what the rubrics say.
#[derive(Debug, Clone)]
pub struct JudgeOptions {
    /// Most calls in flight per endpoint (the adaptive limit starts here).
    pub max_in_flight: usize,
    /// Successes after which a halved in-flight limit grows by one.
    pub grow_every: u32,
    /// Retries of a rate-limited or failed call.
    pub max_retries: u32,
    pub timeout: Duration,
    /// Cached answers (0: no cache).
    pub cache_capacity: usize,
    /// USD per million tokens by judge model name (the spend cap needs a price).
    pub prices: BTreeMap<String, Price>,
}

impl Default for JudgeOptions {
    fn default() -> Self {
        Self {
            max_in_flight: 8,
            grow_every: 10,
            max_retries: 3,
            timeout: super::call::default_timeout(),
            cache_capacity: 10_000,
            prices: BTreeMap::new(),
        }
    }
}

/// What judging a pair produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairOutput {
    pub checks: Vec<NewCheckResult>,
    pub judgments: Vec<NewJudgment>,
}

/// The rubrics, one endpoint per distinct judge, the cache and the counters.
#[derive(Debug)]
pub struct Judge {
    rubrics: Vec<Rubric>,
    endpoints: HashMap<(String, String, String), Arc<Endpoint>>,
    cache: JudgeCache,
    stats: Arc<JudgeStats>,
    options: JudgeOptions,
    /// The gateway's request spans, for linking `judge.pair` to its request's trace.
    traces: Option<crate::telemetry::TraceIndex>,
}

fn endpoint_key(m: &JudgeModel) -> (String, String, String) {
    (m.base_url.clone(), m.model.clone(), m.api_key_env.clone())
}

impl Judge {
    pub fn new(
        rubrics: Vec<Rubric>,
        options: JudgeOptions,
        stats: Arc<JudgeStats>,
    ) -> Result<Self, ClientError> {
        let mut endpoints = HashMap::new();
        for m in rubrics
            .iter()
            .filter_map(|r| r.judging.as_ref())
            .flat_map(|j| &j.judges)
        {
            if endpoints.contains_key(&endpoint_key(m)) {
                continue;
            }
            let limits = Limits::new(LimitSettings {
                requests_per_minute: m.requests_per_minute,
                tokens_per_minute: m.tokens_per_minute,
                max_in_flight: options.max_in_flight,
                grow_every: options.grow_every,
                spend_cap_usd: m.spend_cap_usd,
            });
            let price = options.prices.get(&m.model).copied();
            if m.spend_cap_usd.is_some() && price.is_none() {
                tracing::warn!(judge = %m.model, "the judge has a spend cap but no price in `prices`; its spend cannot be counted");
            }
            let ep = Endpoint {
                client: JudgeClient::new(m, options.timeout)?,
                limits,
                price,
            };
            endpoints.insert(endpoint_key(m), Arc::new(ep));
        }
        Ok(Self {
            rubrics,
            endpoints,
            cache: JudgeCache::new(options.cache_capacity),
            stats,
            options,
            traces: None,
        })
    }

    /// Links each pair's `judge.pair` span to its request's span when `traces` still knows it.
    pub fn with_traces(mut self, traces: crate::telemetry::TraceIndex) -> Self {
        self.traces = Some(traces);
        self
    }

    pub fn rubrics(&self) -> &[Rubric] {
        &self.rubrics
    }

    pub fn stats(&self) -> &Arc<JudgeStats> {
        &self.stats
    }

    pub fn cache(&self) -> &JudgeCache {
        &self.cache
    }

    /// The endpoint of a judge model (for tests and metrics).
    pub fn endpoint(&self, m: &JudgeModel) -> Option<&Arc<Endpoint>> {
        self.endpoints.get(&endpoint_key(m))
    }

    /// Judges `pair` against every rubric that applies: its checks, and its LLM criteria on
    /// each rubric's sample. (In `serve` the checks run at capture, see [`super::Checker`]; the
    /// worker asks for the criteria alone with [`Judge::judge_criteria`].)
    pub async fn judge_pair(&self, pair: &Pair) -> Result<PairOutput, Unavailable> {
        self.judge_sampled(pair, true).await
    }

    /// The LLM criteria of every rubric whose judge sample holds `pair`; no checks.
    pub async fn judge_criteria(&self, pair: &Pair) -> Result<Vec<NewJudgment>, Unavailable> {
        Ok(self.judge_sampled(pair, false).await?.judgments)
    }

    async fn judge_sampled(&self, pair: &Pair, checks: bool) -> Result<PairOutput, Unavailable> {
        let span = tracing::info_span!("judge.pair", request_id = %pair.request_id, pair_id = %pair.id, deployment = %pair.deployment, stage = %pair.stage);
        if let Some(request) = self.traces.as_ref().and_then(|t| t.get(pair.request_id)) {
            span.add_link(request);
        }
        let result = async {
            let mut out = PairOutput::default();
            for rubric in &self.rubrics {
                let s = select(rubric, pair);
                if checks && s.applies {
                    self.judge_rubric(rubric, pair, s.judge_sampled, &mut out)
                        .await?;
                } else if s.judge_sampled {
                    self.judge_rubric_criteria(rubric, pair, &mut out).await?;
                }
            }
            tracing::info!(
                checks = out.checks.len(),
                judgments = out.judgments.len(),
                "pair judged"
            );
            Ok(out)
        }
        .instrument(span.clone())
        .await;
        if let Ok(out) = &result {
            score_attributes(&span, out);
        }
        result
    }

    /// Checks of `rubric` on `pair`, and its criteria when `sampled` (replay judges every pair).
    pub async fn judge_rubric(
        &self,
        rubric: &Rubric,
        pair: &Pair,
        sampled: bool,
        out: &mut PairOutput,
    ) -> Result<(), Unavailable> {
        let report = run_checks(rubric, pair);
        out.checks.extend(rows::check_rows(rubric, pair, &report));
        if sampled {
            self.judge_rubric_criteria(rubric, pair, out).await?;
        }
        Ok(())
    }

    /// The LLM criteria of `rubric` on `pair`.
    async fn judge_rubric_criteria(
        &self,
        rubric: &Rubric,
        pair: &Pair,
        out: &mut PairOutput,
    ) -> Result<(), Unavailable> {
        let Some(judging) = rubric.judging.as_ref() else {
            return Ok(());
        };
        let results = join_all(
            rubric
                .criteria
                .iter()
                .map(|c| self.judge_criterion(rubric, judging, c, pair)),
        )
        .await;
        for r in results {
            out.judgments.extend(r?);
        }
        Ok(())
    }

    async fn judge_criterion(
        &self,
        rubric: &Rubric,
        judging: &Judging,
        c: &Criterion,
        pair: &Pair,
    ) -> Result<Vec<NewJudgment>, Unavailable> {
        let panel_name = if judging.judges.len() == 1 {
            judging.judges[0].model.clone()
        } else {
            let names: Vec<&str> = judging.judges.iter().map(|j| j.model.as_str()).collect();
            format!("panel:{}", names.join("+"))
        };
        let prompts = match render(c, pair) {
            Ok(p) => p,
            Err(e) => {
                let reason = Abstain::new(e.reason_code());
                return Ok(self.abstain_all(rubric, pair, c, &panel_name, &reason));
            }
        };
        let cx = AskContext {
            cache: &self.cache,
            stats: &self.stats,
            max_retries: self.options.max_retries,
            stage: &pair.stage,
        };
        // Every (judge, target) question, asked concurrently.
        let mut questions = Vec::new();
        for (j, m) in judging.judges.iter().enumerate() {
            let Some(ep) = self.endpoint(m) else { continue };
            for (target, prompt) in &prompts {
                let order = match target {
                    Target::Side(_) => "single",
                    Target::Pair(o) => rows::order_name(*o),
                };
                let key = CacheKey::new(&rubric.hash.0, m, order, prompt);
                questions.push(async move {
                    let asked = ask(cx, ep, c, prompt, key).await?;
                    Ok::<_, Unavailable>((j, *target, asked))
                });
            }
        }
        let mut answers: Answers = BTreeMap::new();
        for r in join_all(questions).await {
            let (j, target, asked) = r?;
            let result = match asked {
                Asked::Answer { answer, .. } => Ok(answer),
                Asked::Abstain(a) => Err(a),
            };
            answers.entry(j).or_default().push((target, result));
        }
        Ok(self.rows_for(rubric, judging, c, pair, &panel_name, &answers))
    }

    fn rows_for(
        &self,
        rubric: &Rubric,
        judging: &Judging,
        c: &Criterion,
        pair: &Pair,
        panel_name: &str,
        answers: &Answers,
    ) -> Vec<NewJudgment> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = Vec::new();
        let model_of = |j: usize| judging.judges.get(j).map_or("", |m| m.model.as_str());
        if c.mode == Mode::Pairwise {
            // Per judge: both order rows and that judge's combined score.
            let mut scores = Vec::new();
            let mut inconsistent = false;
            for (j, list) in answers {
                let find = |o: Order| {
                    list.iter()
                        .find(|(t, _)| *t == Target::Pair(o))
                        .map(|(_, r)| r.clone())
                        .unwrap_or_else(|| Err(Abstain::new("no_answer")))
                };
                let (ab, ba) = (find(Order::StableFirst), find(Order::CandidateFirst));
                for (o, r) in [(Order::StableFirst, &ab), (Order::CandidateFirst, &ba)] {
                    out.push(rows::order_row(
                        rows::blank(rubric, pair, c, model_of(*j), ""),
                        o,
                        r,
                    ));
                }
                let outcome: Result<PairOutcome, Abstain> = combine_pairwise(
                    ab.and_then(|a| rows::choice(&a)),
                    ba.and_then(|a| rows::choice(&a)),
                );
                inconsistent |= rows::is_inconsistent(&outcome);
                scores.push(outcome.map(PairOutcome::candidate_score));
            }
            let combined = if scores.len() == 1 {
                scores.remove(0)
            } else {
                aggregate_panel(judging.aggregate, &scores)
            };
            match &combined {
                Ok(_) => {
                    self.stats.verdicts.fetch_add(1, Relaxed);
                }
                Err(a) => self.stats.abstained(&a.reason_code, "pair"),
            }
            let blank = rows::blank(rubric, pair, c, panel_name, "");
            out.push(rows::combined_row(blank, &combined, inconsistent));
            return out;
        }
        for role in targets(c) {
            let per_judge: Vec<Result<JudgeAnswer, Abstain>> = answers
                .values()
                .map(|list| {
                    list.iter()
                        .find(|(t, _)| *t == Target::Side(role))
                        .map(|(_, r)| r.clone())
                        .unwrap_or_else(|| Err(Abstain::new("no_answer")))
                })
                .collect();
            let result = if per_judge.len() == 1 {
                per_judge[0].clone()
            } else {
                panel_answer(judging, &per_judge)
            };
            match &result {
                Ok(_) => {
                    self.stats.verdicts.fetch_add(1, Relaxed);
                }
                Err(a) => self.stats.abstained(&a.reason_code, role.as_str()),
            }
            let blank = rows::blank(rubric, pair, c, panel_name, "");
            out.push(rows::side_row(blank, role, &result));
        }
        out
    }

    fn abstain_all(
        &self,
        rubric: &Rubric,
        pair: &Pair,
        c: &Criterion,
        judge: &str,
        reason: &Abstain,
    ) -> Vec<NewJudgment> {
        if c.mode == Mode::Pairwise {
            self.stats.abstained(&reason.reason_code, "pair");
            let blank = rows::blank(rubric, pair, c, judge, "");
            return vec![rows::combined_row(blank, &Err(reason.clone()), false)];
        }
        targets(c)
            .into_iter()
            .map(|role| {
                self.stats.abstained(&reason.reason_code, role.as_str());
                rows::side_row(
                    rows::blank(rubric, pair, c, judge, ""),
                    role,
                    &Err(reason.clone()),
                )
            })
            .collect()
    }
}

/// The sides a pointwise or reference criterion scores.
fn targets(c: &Criterion) -> Vec<Role> {
    match (c.mode, &c.reference) {
        (Mode::Reference, Some(ReferenceSource::Stable)) => vec![Role::Candidate],
        _ => vec![Role::Stable, Role::Candidate],
    }
}

/// A panel's answer for one side: the aggregate of the judges' normalized scores, with their
/// reasoning joined.
fn panel_answer(
    judging: &Judging,
    per_judge: &[Result<JudgeAnswer, Abstain>],
) -> Result<JudgeAnswer, Abstain> {
    let scores: Vec<Result<f64, Abstain>> = per_judge
        .iter()
        .map(|r| {
            r.clone().and_then(|a| match a.verdict {
                crate::rubric::Verdict::Score { normalized, .. }
                | crate::rubric::Verdict::Label { normalized, .. } => Ok(normalized),
                crate::rubric::Verdict::Pairwise { .. } => Err(Abstain::new("wrong_type")),
            })
        })
        .collect();
    let score = aggregate_panel(judging.aggregate, &scores)?;
    let reasoning: Vec<String> = per_judge
        .iter()
        .zip(&judging.judges)
        .filter_map(|(r, m)| Some(format!("[{}] {}", m.model, r.as_ref().ok()?.reasoning)))
        .collect();
    // The label of a judge that gave the aggregate score, when the scale has labels.
    let label = per_judge
        .iter()
        .find_map(|r| match &r.as_ref().ok()?.verdict {
            crate::rubric::Verdict::Label {
                label, normalized, ..
            } if (normalized - score).abs() < 1e-9 => Some(label.clone()),
            _ => None,
        });
    Ok(JudgeAnswer {
        reasoning: reasoning.join("\n"),
        verdict: match label {
            Some(label) => crate::rubric::Verdict::Label {
                label,
                score,
                normalized: score,
            },
            None => crate::rubric::Verdict::Score {
                score: 0,
                normalized: score,
            },
        },
    })
}

/// The pair's scores on its span: `score.<rubric>.<criterion>.<side>` (0..=1) for pointwise and
/// reference judgments, `winner.<rubric>.<criterion>` for the combined pairwise verdict,
/// `abstained.<rubric>.<criterion>` with the reason, and the count of failed checks.
fn score_attributes(span: &tracing::Span, out: &PairOutput) {
    if span.is_disabled() {
        return;
    }
    for j in &out.judgments {
        let name = format!("{}.{}", j.rubric_id, j.criterion);
        if let Some(reason) = &j.abstain_reason {
            span.set_attribute(format!("abstained.{name}"), reason.clone());
        } else if let (Some(score), Some(side)) = (j.score, j.side) {
            span.set_attribute(format!("score.{name}.{}", side.as_str()), score);
        } else if let Some(winner) = j.winner.filter(|_| j.order == "combined") {
            span.set_attribute(format!("winner.{name}"), winner.as_str());
        }
    }
    let failed = out.checks.iter().filter(|c| !c.passed).count();
    span.set_attribute("checks.failed", i64::try_from(failed).unwrap_or(i64::MAX));
    span.set_attribute(
        "judgments",
        i64::try_from(out.judgments.len()).unwrap_or(i64::MAX),
    );
}
