//! The HTML report's worst candidate answers (beside stable's answer, with the judge's
//! reasoning) and its classic fixed-sample tests section. Every text is escaped with [`esc`].
//! Pure.

use std::fmt::Write as _;

use super::format as f;
use super::html::{esc, n, table};
use super::html_markdown::{blocks, inline};
use super::model::StageReport;

pub(super) fn worst(o: &mut String, r: &StageReport) {
    if r.worst_answers.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "<section><h2>Worst candidate answers</h2>\n<p class=\"muted\">{}</p>",
        esc(&super::format::worst_caption(r))
    );
    for (i, w) in r.worst_answers.iter().enumerate() {
        let _ = write!(
            o,
            "<article><h3>{}. Request <code>{}</code> <span class=\"muted\">{}</span></h3>",
            i + 1,
            w.request_id,
            esc(&w.cohort)
        );
        if w.repeats > 0 {
            let _ = write!(
                o,
                "<p class=\"muted\">The same prompt and answers in {} more picked pair{}.</p>",
                w.repeats,
                if w.repeats == 1 { "" } else { "s" }
            );
        }
        o.push_str("<ul>");
        for reason in &w.reasons {
            let _ = write!(o, "<li>{}</li>", inline(reason));
        }
        o.push_str("</ul>");
        if let Some(prompt) = &w.prompt {
            let _ = write!(
                o,
                "<figure class=\"prompt\"><figcaption>Prompt</figcaption><pre>{}</pre></figure>",
                esc(prompt)
            );
        }
        o.push_str("<div class=\"pair\">");
        for (who, answer, error) in [
            ("Candidate", &w.candidate_answer, &w.candidate_error),
            ("Stable", &w.stable_answer, &w.stable_error),
        ] {
            let _ = write!(
                o,
                "<figure><figcaption>{who}{}</figcaption><div class=\"answer\">{}</div></figure>",
                error
                    .as_deref()
                    .map_or(String::new(), |e| format!(" (error: {})", esc(e))),
                answer
                    .as_deref()
                    .map_or_else(|| "<p class=\"muted\">(no answer)</p>".to_owned(), blocks)
            );
        }
        o.push_str("</div>");
        if !w.judgments.is_empty() {
            o.push_str("<ul>");
            for j in &w.judgments {
                let verdict = match (&j.score, &j.winner, &j.abstain_reason) {
                    (_, _, Some(a)) => format!("abstained ({a})"),
                    (Some(s), _, _) => format!("score {}", f::num(Some(*s), 2)),
                    (None, Some(w), _) => format!("winner {w}"),
                    _ => f::MISSING.to_owned(),
                };
                let who = match &j.side {
                    Some(side) => format!("{side} {}", j.order),
                    None => j.order.clone(),
                };
                let _ = write!(
                    o,
                    "<li><code>{}</code> {}: <strong>{}</strong> — {}</li>",
                    esc(&j.criterion),
                    esc(&who),
                    esc(&verdict),
                    esc(j.reasoning.as_deref().unwrap_or(""))
                );
            }
            o.push_str("</ul>");
        }
        o.push_str("</article>\n");
    }
    o.push_str("</section>\n");
}

pub(super) fn reference(o: &mut String, r: &StageReport) {
    if r.reference_tests.rows.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "<section class=\"reference\"><h2>Classic fixed-sample tests, for reference only</h2>\n\
         <p class=\"muted\">{}: not valid under continuous monitoring; the gate never uses them.</p>",
        esc(&r.reference_tests.label)
    );
    let rows: Vec<Vec<String>> = r
        .reference_tests
        .rows
        .iter()
        .map(|t| {
            vec![
                esc(&t.criterion),
                n(f::num(t.welch_t, 3)),
                n(f::num(t.welch_df, 1)),
                n(f::p_value(t.welch_p)),
                n(f::num(t.mann_whitney_u, 1)),
                n(f::p_value(t.mann_whitney_p)),
                n(format!(
                    "{} / {}{}",
                    t.mann_whitney_n.0,
                    t.mann_whitney_n.1,
                    if t.sampled { " (sampled)" } else { "" }
                )),
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
    o.push_str("</section>\n");
}
