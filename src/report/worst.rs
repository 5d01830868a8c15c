//! The worst candidate answers of a stage, beside stable's answer to the same request, with every
//! judgment of the pair (and its reasoning).
//!
//! Selection: pairs where the candidate failed a hard check come first (those where stable
//! passed it before those where both failed), then pairs with the lowest candidate judge scores
//! among those where the candidate scored below stable (or stable has no score). Each pair is
//! listed once, with every reason it was picked; a pair with the same prompt and the same two
//! answers as one already listed (a popular question answered the same way again) is not shown
//! again but counted in that entry's `repeats`. At most `limit` entries.
//! I/O: store reads only, each bounded. Fails closed on store errors.

use uuid::Uuid;

use super::ReportError;
use super::build::cohort_of_labels;
use super::model::{JudgmentNote, WorstAnswer};
use crate::store::{Store, SummaryScope};

/// Why a pair was picked, before its answers are fetched.
struct Pick {
    pair_id: Uuid,
    reasons: Vec<String>,
    lowest_score: Option<f64>,
}

fn fmt_score(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

pub async fn worst_answers(
    store: &Store,
    scope: SummaryScope<'_>,
    limit: u32,
) -> Result<Vec<WorstAnswer>, ReportError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut picks: Vec<Pick> = Vec::new();
    let mut pick = |pair_id: Uuid, reason: String, score: Option<f64>| {
        if let Some(p) = picks.iter_mut().find(|p| p.pair_id == pair_id) {
            p.reasons.push(reason);
            p.lowest_score = match (p.lowest_score, score) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        } else {
            picks.push(Pick {
                pair_id,
                reasons: vec![reason],
                lowest_score: score,
            });
        }
    };
    let fetch = limit.saturating_mul(4);
    for f in store.failed_hard_checks(scope, fetch).await? {
        let stable = match f.stable_passed {
            Some(true) => "stable passed",
            Some(false) => "stable failed too",
            None => "stable not checked",
        };
        let detail = f.detail.map(|d| format!(": {d}")).unwrap_or_default();
        pick(
            f.pair_id,
            format!("hard check `{}` failed ({stable}){detail}", f.check),
            None,
        );
    }
    for l in store.lowest_candidate_scores(scope, fetch).await? {
        if l.stable_score.is_some_and(|s| l.candidate_score >= s) {
            continue;
        }
        let stable = l.stable_score.map_or_else(
            || "no stable score".to_owned(),
            |s| format!("stable {}", fmt_score(s)),
        );
        pick(
            l.pair_id,
            format!(
                "`{}` scored {} ({stable})",
                l.criterion,
                fmt_score(l.candidate_score)
            ),
            Some(l.candidate_score),
        );
    }
    let mut out: Vec<WorstAnswer> = Vec::new();
    for p in picks {
        // A pair whose observations were pruned (retention) cannot be shown.
        let Some(pair) = store.pair(p.pair_id).await? else {
            continue;
        };
        let prompt = crate::rubric::prompt::conversation(&pair);
        // What the judge saw: the text, and tool calls with their arguments.
        let candidate_answer = crate::rubric::answer_for_judge(&pair.candidate);
        let stable_answer = crate::rubric::answer_for_judge(&pair.stable);
        if let Some(same) = out.iter_mut().find(|w| {
            w.prompt == prompt
                && w.candidate_answer == candidate_answer
                && w.stable_answer == stable_answer
        }) {
            same.repeats += 1;
            continue;
        }
        if out.len() >= limit as usize {
            continue;
        }
        let judgments = store
            .pair_judgments(p.pair_id)
            .await?
            .into_iter()
            .map(|j| JudgmentNote {
                criterion: j.criterion,
                judge_model: j.judge_model,
                order: j.order,
                side: j.side,
                score: j.score,
                winner: j.winner,
                reasoning: j.reasoning,
                abstain_reason: j.abstain_reason,
            })
            .collect();
        out.push(WorstAnswer {
            pair_id: p.pair_id,
            request_id: pair.request_id,
            cohort: cohort_of_labels(&pair.cohort),
            reasons: p.reasons,
            lowest_score: p.lowest_score,
            prompt,
            repeats: 0,
            candidate_answer,
            stable_answer,
            candidate_error: pair.candidate.error.map(|e| e.as_str().to_owned()),
            stable_error: pair.stable.error.map(|e| e.as_str().to_owned()),
            judgments,
        });
    }
    Ok(out)
}
