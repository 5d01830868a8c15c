//! Turning check outcomes and judge answers into store rows, following the conventions of
//! `store::judgments`: pointwise and reference rows are `single` with a side; a pairwise
//! criterion stores each order (`ab`: stable shown as answer A, `ba`: candidate shown as A) with
//! the winner that order saw, plus one `combined` row with the consolidated verdict (an
//! inconsistent pair is a tie). Scores are normalized to 0..=1 (labels: their mapped score;
//! combined pairwise rows: the candidate's score, win 1, tie 0.5, loss 0). An abstention has a
//! reason and no score. Pure: no I/O.

use crate::capture::{Pair, Role};
use crate::rubric::{
    Abstain, CheckReport, Criterion, JudgeAnswer, Order, PairChoice, PairOutcome, Rubric,
    SideResult, Verdict,
};
use crate::store::{NewCheckResult, NewJudgment, ORDER_COMBINED, ORDER_SINGLE, Verdict as Winner};

/// The store's `judge_order` of a pairwise order.
pub fn order_name(order: Order) -> &'static str {
    match order {
        Order::StableFirst => "ab",
        Order::CandidateFirst => "ba",
    }
}

/// Check rows for every side a check was evaluated on (skipped sides are not stored: an
/// errored call is counted by the gate on its own).
pub fn check_rows(rubric: &Rubric, pair: &Pair, report: &CheckReport) -> Vec<NewCheckResult> {
    let mut rows = Vec::new();
    for o in &report.outcomes {
        for role in [Role::Stable, Role::Candidate] {
            let (passed, detail) = match o.side(role) {
                SideResult::Pass => (true, None),
                SideResult::Fail { reason } => (false, Some(reason.clone())),
                SideResult::Skipped { .. } => continue,
            };
            rows.push(NewCheckResult {
                pair_id: pair.id,
                rubric_id: rubric.id.clone(),
                rubric_version: rubric.version.to_string(),
                rubric_hash: rubric.hash.0.clone(),
                name: o.check_id.clone(),
                side: role,
                passed,
                score: None,
                severity: match o.severity {
                    crate::rubric::Severity::Hard => "hard".to_owned(),
                    crate::rubric::Severity::Soft => "soft".to_owned(),
                },
                detail,
            });
        }
    }
    rows
}

/// A row with the stamps every judgment carries and nothing decided yet.
pub fn blank(
    rubric: &Rubric,
    pair: &Pair,
    c: &Criterion,
    judge_model: &str,
    order: &str,
) -> NewJudgment {
    let mode = match c.mode {
        crate::rubric::Mode::Pointwise => "pointwise",
        crate::rubric::Mode::Pairwise => "pairwise",
        crate::rubric::Mode::Reference => "reference",
    };
    NewJudgment {
        pair_id: pair.id,
        rubric_id: rubric.id.clone(),
        rubric_version: rubric.version.to_string(),
        rubric_hash: rubric.hash.0.clone(),
        criterion: c.id.clone(),
        mode: mode.to_owned(),
        judge_model: judge_model.to_owned(),
        order: order.to_owned(),
        side: None,
        score: None,
        label: None,
        winner: None,
        reasoning: None,
        abstain_reason: None,
        trace_id: Some(pair.request_id.to_string()),
    }
}

/// A pointwise or reference row for `side`.
pub fn side_row(
    mut row: NewJudgment,
    side: Role,
    result: &Result<JudgeAnswer, Abstain>,
) -> NewJudgment {
    row.side = Some(side);
    row.order = ORDER_SINGLE.to_owned();
    match result {
        Ok(a) => {
            row.reasoning = Some(a.reasoning.clone());
            match &a.verdict {
                Verdict::Score { normalized, .. } => row.score = Some(*normalized),
                Verdict::Label {
                    label, normalized, ..
                } => {
                    row.score = Some(*normalized);
                    row.label = Some(label.clone());
                }
                // A pairwise verdict on a side prompt cannot happen (the schema has no score);
                // record it as what it is: no score.
                Verdict::Pairwise { .. } => row.abstain_reason = Some("wrong_type".to_owned()),
            }
        }
        Err(a) => row.abstain_reason = Some(a.reason_code.clone()),
    }
    row
}

/// The choice in a pairwise answer.
pub fn choice(a: &JudgeAnswer) -> Result<PairChoice, Abstain> {
    match a.verdict {
        Verdict::Pairwise { choice } => Ok(choice),
        _ => Err(Abstain::new("wrong_type")),
    }
}

/// The variant an order's choice favours.
pub fn winner_of(order: Order, choice: PairChoice) -> Winner {
    match (order, choice) {
        (_, PairChoice::Tie) => Winner::Tie,
        (Order::StableFirst, PairChoice::A) | (Order::CandidateFirst, PairChoice::B) => {
            Winner::Stable
        }
        (Order::StableFirst, PairChoice::B) | (Order::CandidateFirst, PairChoice::A) => {
            Winner::Candidate
        }
    }
}

/// The row of one pairwise order.
pub fn order_row(
    mut row: NewJudgment,
    order: Order,
    result: &Result<JudgeAnswer, Abstain>,
) -> NewJudgment {
    row.order = order_name(order).to_owned();
    match result
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|a| Ok((a, choice(a)?)))
    {
        Ok((a, c)) => {
            row.reasoning = Some(a.reasoning.clone());
            row.winner = Some(winner_of(order, c));
        }
        Err(a) => row.abstain_reason = Some(a.reason_code),
    }
    row
}

/// The `combined` row of a pairwise criterion from the candidate's score (1, 0.5 or 0, or a
/// panel's aggregate of those).
pub fn combined_row(
    mut row: NewJudgment,
    outcome: &Result<f64, Abstain>,
    inconsistent: bool,
) -> NewJudgment {
    row.order = ORDER_COMBINED.to_owned();
    match outcome {
        Ok(score) => {
            row.score = Some(*score);
            row.winner = Some(if *score > 0.5 {
                Winner::Candidate
            } else if *score < 0.5 {
                Winner::Stable
            } else {
                Winner::Tie
            });
            if inconsistent {
                row.reasoning = Some("the two orders disagreed: counted as a tie".to_owned());
            }
        }
        Err(a) => row.abstain_reason = Some(a.reason_code.clone()),
    }
    row
}

/// Whether an outcome was an inconsistent tie.
pub fn is_inconsistent(outcome: &Result<PairOutcome, Abstain>) -> bool {
    matches!(outcome, Ok(PairOutcome::Tie { inconsistent: true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winners_follow_the_order_shown() {
        assert_eq!(winner_of(Order::StableFirst, PairChoice::A), Winner::Stable);
        assert_eq!(
            winner_of(Order::StableFirst, PairChoice::B),
            Winner::Candidate
        );
        assert_eq!(
            winner_of(Order::CandidateFirst, PairChoice::A),
            Winner::Candidate
        );
        assert_eq!(
            winner_of(Order::CandidateFirst, PairChoice::B),
            Winner::Stable
        );
        assert_eq!(
            winner_of(Order::CandidateFirst, PairChoice::Tie),
            Winner::Tie
        );
    }
}
