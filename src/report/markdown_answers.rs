//! The Markdown report's worst candidate answers (fenced so that they cannot break out, beside
//! stable's answer, with the judge's reasoning) and its classic fixed-sample tests section.
//! Pure.

use std::fmt::Write as _;

use super::format as f;
use super::markdown::{cell, cell_with_code, code, fenced, table};
use super::model::StageReport;

pub(super) fn worst(o: &mut String, r: &StageReport) {
    if r.worst_answers.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "## Worst candidate answers\n\n_{}_\n",
        f::worst_caption(r)
    );
    for (i, w) in r.worst_answers.iter().enumerate() {
        let _ = writeln!(
            o,
            "### {}. Request `{}` ({})\n",
            i + 1,
            w.request_id,
            cell(&w.cohort)
        );
        if w.repeats > 0 {
            let _ = writeln!(
                o,
                "_The same prompt and answers in {} more picked pair{}._\n",
                w.repeats,
                if w.repeats == 1 { "" } else { "s" }
            );
        }
        for reason in &w.reasons {
            let _ = writeln!(o, "- {}", cell_with_code(reason));
        }
        o.push('\n');
        if let Some(prompt) = &w.prompt {
            o.push_str("**Prompt**:\n\n");
            fenced(o, prompt);
            o.push('\n');
        }
        for (who, answer, error) in [
            ("Candidate", &w.candidate_answer, &w.candidate_error),
            ("Stable", &w.stable_answer, &w.stable_error),
        ] {
            let _ = writeln!(
                o,
                "**{who}**{}:\n",
                error
                    .as_deref()
                    .map_or(String::new(), |e| format!(" (error: {})", cell(e)))
            );
            fenced(o, answer.as_deref().unwrap_or("(no answer)"));
            o.push('\n');
        }
        if !w.judgments.is_empty() {
            o.push_str("Judge:\n\n");
            for j in &w.judgments {
                let verdict = match (&j.score, &j.winner, &j.abstain_reason) {
                    (_, _, Some(a)) => format!("abstained ({})", cell(a)),
                    (Some(s), _, _) => format!("score {}", f::num(Some(*s), 2)),
                    (None, Some(w), _) => format!("winner {}", cell(w)),
                    _ => f::MISSING.to_owned(),
                };
                let who = match &j.side {
                    Some(side) => format!("{} {}", cell(side), cell(&j.order)),
                    None => cell(&j.order),
                };
                let _ = writeln!(
                    o,
                    "- {} {who}: {verdict} — {}",
                    code(&j.criterion),
                    j.reasoning.as_deref().map_or(String::new(), cell)
                );
            }
            o.push('\n');
        }
    }
}

pub(super) fn reference(o: &mut String, r: &StageReport) {
    if r.reference_tests.rows.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "## Classic fixed-sample tests, for reference only\n\n_{}: not valid under continuous \
         monitoring; the gate never uses them._\n",
        cell(&r.reference_tests.label)
    );
    let rows: Vec<Vec<String>> = r
        .reference_tests
        .rows
        .iter()
        .map(|t| {
            vec![
                cell(&t.criterion),
                f::num(t.welch_t, 3),
                f::num(t.welch_df, 1),
                f::p_value(t.welch_p),
                f::num(t.mann_whitney_u, 1),
                f::p_value(t.mann_whitney_p),
                format!(
                    "{} / {}{}",
                    t.mann_whitney_n.0,
                    t.mann_whitney_n.1,
                    if t.sampled { " (sampled)" } else { "" }
                ),
            ]
        })
        .collect();
    table(
        o,
        &[
            "criterion",
            "Welch t",
            "df",
            "p",
            "Mann-Whitney U",
            "p",
            "n cand / stable",
        ],
        &rows,
    );
}
