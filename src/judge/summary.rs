//! The replay summary: per criterion and per check, the mean on each side, the difference,
//! wins/ties/losses of the candidate against stable on the same prompt, abstentions, and how
//! often the two pairwise orders agreed (position consistency). Built from the same rows the
//! worker stores; rendered as a text table or JSON. Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::capture::Role;
use crate::store::{NewCheckResult, NewJudgment, ORDER_COMBINED, Verdict};

/// One line of the table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Line {
    /// `criterion` or `check`.
    pub kind: &'static str,
    pub name: String,
    /// `pointwise`, `pairwise`, `reference`, or the check's severity.
    pub mode: String,
    pub stable_mean: Option<f64>,
    pub candidate_mean: Option<f64>,
    /// candidate − stable.
    pub difference: Option<f64>,
    pub wins: u64,
    pub ties: u64,
    pub losses: u64,
    pub stable_n: u64,
    pub candidate_n: u64,
    pub abstentions_stable: u64,
    pub abstentions_candidate: u64,
    /// Pairwise criteria: abstentions of the combined verdict.
    pub abstentions_pair: u64,
    /// Pairwise criteria: share of pairs whose two orders named the same winner.
    pub position_consistency: Option<f64>,
}

#[derive(Debug, Default)]
struct Acc {
    line: Line,
    stable: Vec<f64>,
    candidate: Vec<f64>,
    orders_agree: u64,
    orders_total: u64,
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

impl Acc {
    fn compare(&mut self, stable: Option<f64>, candidate: Option<f64>) {
        if let (Some(s), Some(c)) = (stable, candidate) {
            match c.partial_cmp(&s) {
                Some(std::cmp::Ordering::Greater) => self.line.wins += 1,
                Some(std::cmp::Ordering::Less) => self.line.losses += 1,
                _ => self.line.ties += 1,
            }
        }
        self.stable.extend(stable);
        self.candidate.extend(candidate);
    }

    fn finish(mut self) -> Line {
        let l = &mut self.line;
        l.stable_mean = mean(&self.stable);
        l.candidate_mean = mean(&self.candidate);
        l.stable_n = self.stable.len() as u64;
        l.candidate_n = self.candidate.len() as u64;
        l.difference = l.candidate_mean.zip(l.stable_mean).map(|(c, s)| c - s);
        l.position_consistency =
            (self.orders_total > 0).then(|| self.orders_agree as f64 / self.orders_total as f64);
        self.line
    }
}

/// Accumulates the rows of many pairs.
#[derive(Debug, Default)]
pub struct SummaryBuilder {
    criteria: BTreeMap<String, Acc>,
    checks: BTreeMap<String, Acc>,
}

impl SummaryBuilder {
    /// Adds the rows of one pair.
    pub fn add(&mut self, judgments: &[NewJudgment], checks: &[NewCheckResult]) {
        let mut by_criterion: BTreeMap<&str, Vec<&NewJudgment>> = BTreeMap::new();
        for j in judgments {
            by_criterion.entry(&j.criterion).or_default().push(j);
        }
        for (name, rows) in by_criterion {
            let acc = self.criteria.entry(name.to_owned()).or_insert_with(|| Acc {
                line: Line {
                    kind: "criterion",
                    name: name.to_owned(),
                    mode: rows[0].mode.clone(),
                    ..Line::default()
                },
                ..Acc::default()
            });
            let side = |role: Role| {
                rows.iter()
                    .find(|j| j.side == Some(role) && j.order == crate::store::ORDER_SINGLE)
            };
            if let Some(combined) = rows.iter().find(|j| j.order == ORDER_COMBINED) {
                match (combined.score, combined.abstain_reason.is_some()) {
                    (Some(s), false) => {
                        match combined.winner {
                            Some(Verdict::Candidate) => acc.line.wins += 1,
                            Some(Verdict::Stable) => acc.line.losses += 1,
                            _ => acc.line.ties += 1,
                        }
                        acc.candidate.push(s);
                        acc.stable.push(1.0 - s);
                    }
                    _ => acc.line.abstentions_pair += 1,
                }
                let winner = |o: &str| rows.iter().find(|j| j.order == o).and_then(|j| j.winner);
                if let (Some(ab), Some(ba)) = (winner("ab"), winner("ba")) {
                    acc.orders_total += 1;
                    if ab == ba {
                        acc.orders_agree += 1;
                    }
                }
                continue;
            }
            let (s, c) = (side(Role::Stable), side(Role::Candidate));
            for (row, counter) in [
                (s, &mut acc.line.abstentions_stable),
                (c, &mut acc.line.abstentions_candidate),
            ] {
                if row.is_some_and(|r| r.abstain_reason.is_some()) {
                    *counter += 1;
                }
            }
            acc.compare(s.and_then(|r| r.score), c.and_then(|r| r.score));
        }
        let mut by_check: BTreeMap<&str, [Option<&NewCheckResult>; 2]> = BTreeMap::new();
        for c in checks {
            let slot = by_check.entry(&c.name).or_default();
            slot[usize::from(c.side == Role::Candidate)] = Some(c);
        }
        for (name, [s, c]) in by_check {
            let severity = s.or(c).map_or_else(String::new, |r| r.severity.clone());
            let acc = self.checks.entry(name.to_owned()).or_insert_with(|| Acc {
                line: Line {
                    kind: "check",
                    name: name.to_owned(),
                    mode: severity,
                    ..Line::default()
                },
                ..Acc::default()
            });
            let pass = |r: Option<&NewCheckResult>| r.map(|r| if r.passed { 1.0 } else { 0.0 });
            acc.compare(pass(s), pass(c));
        }
    }

    /// Criteria first, then checks, each by name.
    pub fn lines(self) -> Vec<Line> {
        self.criteria
            .into_values()
            .chain(self.checks.into_values())
            .map(Acc::finish)
            .collect()
    }
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"))
}

/// The text table.
pub fn render_table(lines: &[Line]) -> String {
    let header = [
        "kind",
        "name",
        "mode",
        "stable",
        "candidate",
        "diff",
        "win",
        "tie",
        "loss",
        "abstain s/c/p",
        "consistent",
    ];
    let rows: Vec<[String; 11]> = lines
        .iter()
        .map(|l| {
            [
                l.kind.to_owned(),
                l.name.clone(),
                l.mode.clone(),
                num(l.stable_mean),
                num(l.candidate_mean),
                l.difference
                    .map_or_else(|| "-".to_owned(), |d| format!("{d:+.3}")),
                l.wins.to_string(),
                l.ties.to_string(),
                l.losses.to_string(),
                format!(
                    "{}/{}/{}",
                    l.abstentions_stable, l.abstentions_candidate, l.abstentions_pair
                ),
                num(l.position_consistency),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(&header.map(str::to_owned));
    for r in &rows {
        line(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn j(criterion: &str, mode: &str, order: &str, side: Option<Role>) -> NewJudgment {
        NewJudgment {
            pair_id: Uuid::nil(),
            rubric_id: "r".into(),
            rubric_version: "1.0.0".into(),
            rubric_hash: "h".into(),
            criterion: criterion.into(),
            mode: mode.into(),
            judge_model: "m".into(),
            order: order.into(),
            side,
            score: None,
            label: None,
            winner: None,
            reasoning: None,
            abstain_reason: None,
            trace_id: None,
        }
    }

    #[test]
    fn means_differences_wins_abstentions_and_consistency() {
        let mut b = SummaryBuilder::default();
        // Pair 1: stable 1.0, candidate 0.0 (loss); pairwise stable wins, orders agree.
        let p1 = vec![
            NewJudgment {
                score: Some(1.0),
                ..j("help", "pointwise", "single", Some(Role::Stable))
            },
            NewJudgment {
                score: Some(0.0),
                ..j("help", "pointwise", "single", Some(Role::Candidate))
            },
            NewJudgment {
                winner: Some(Verdict::Stable),
                ..j("pref", "pairwise", "ab", None)
            },
            NewJudgment {
                winner: Some(Verdict::Stable),
                ..j("pref", "pairwise", "ba", None)
            },
            NewJudgment {
                score: Some(0.0),
                winner: Some(Verdict::Stable),
                ..j("pref", "pairwise", "combined", None)
            },
        ];
        // Pair 2: candidate abstains; pairwise orders disagree (tie).
        let p2 = vec![
            NewJudgment {
                score: Some(0.5),
                ..j("help", "pointwise", "single", Some(Role::Stable))
            },
            NewJudgment {
                abstain_reason: Some("not_json".into()),
                ..j("help", "pointwise", "single", Some(Role::Candidate))
            },
            NewJudgment {
                winner: Some(Verdict::Stable),
                ..j("pref", "pairwise", "ab", None)
            },
            NewJudgment {
                winner: Some(Verdict::Candidate),
                ..j("pref", "pairwise", "ba", None)
            },
            NewJudgment {
                score: Some(0.5),
                winner: Some(Verdict::Tie),
                ..j("pref", "pairwise", "combined", None)
            },
        ];
        b.add(&p1, &[]);
        b.add(&p2, &[]);
        let lines = b.lines();
        let help = &lines[0];
        assert_eq!(help.name, "help");
        assert_eq!(help.stable_mean, Some(0.75));
        assert_eq!(help.candidate_mean, Some(0.0));
        assert_eq!((help.wins, help.ties, help.losses), (0, 0, 1));
        assert_eq!(help.abstentions_candidate, 1);
        let pref = &lines[1];
        assert_eq!((pref.wins, pref.ties, pref.losses), (0, 1, 1));
        assert_eq!(pref.candidate_mean, Some(0.25));
        assert_eq!(pref.position_consistency, Some(0.5));
        let table = render_table(&lines);
        assert!(table.starts_with("kind"), "{table}");
        assert!(table.contains("-0.750"), "{table}");
    }
}
