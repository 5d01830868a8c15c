//! The report as Markdown for a pull request or a ticket: the decision first, then tables.
//!
//! Text that came from users or LLMs (answers, reasoning, details) is either put in a fenced
//! block whose fence is longer than any backtick run inside it, or escaped for a table cell
//! (`|`, newlines, `<`, `>`), so it cannot break the layout or inject HTML. Pure.

use std::fmt::Write as _;

use super::format as f;
use super::model::*;
use super::sections::wtl_text;

/// Escapes text for one line of Markdown (a table cell or a list item).
pub fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '`' => out.push_str("\\`"),
            '*' | '_' | '[' | ']' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `text` as an inline code span: backslash escapes do not work inside one, so backticks become
/// `'`; `|` stays escaped (GitHub tables split on it even in code) and newlines become spaces.
pub fn code(s: &str) -> String {
    let inner: String = s
        .chars()
        .map(|c| match c {
            '`' => "'".to_owned(),
            '|' => "\\|".to_owned(),
            '\n' | '\r' => " ".to_owned(),
            c => c.to_string(),
        })
        .collect();
    format!("`{inner}`")
}

/// One line of text whose `` `code` `` spans stay code spans (through [`code`]) and whose
/// other parts are escaped with [`cell`]; an unmatched backtick is escaped.
pub fn cell_with_code(s: &str) -> String {
    let parts: Vec<&str> = s.split('`').collect();
    let matched = if parts.len() % 2 == 1 {
        parts.len()
    } else {
        parts.len() - 1
    };
    let mut out = String::with_capacity(s.len() + 8);
    for (i, p) in parts.iter().enumerate() {
        if i >= matched {
            out.push_str("\\`");
            out.push_str(&cell(p));
        } else if i % 2 == 1 {
            out.push_str(&code(p));
        } else {
            out.push_str(&cell(p));
        }
    }
    out
}

/// A fenced block that `text` cannot close early.
pub(super) fn fenced(out: &mut String, text: &str) {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let _ = writeln!(out, "{fence}text\n{}\n{fence}", text.trim_end());
}

pub(super) fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}", head.iter().map(|_| "---|").collect::<String>());
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out.push('\n');
}

pub fn to_markdown(r: &StageReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Stage report: {} · stage {} {}\n",
        cell(&r.deployment),
        r.stage.index,
        code(&r.stage.name)
    );
    if let Some(l) = &r.links {
        let mut parts = vec![format!("[this stage in the dashboard](<{}>)", l.dashboard)];
        if let Some(p) = &l.previous {
            parts.push(format!("[← previous stage's report](<{p}>)"));
        }
        if let Some(n) = &l.next {
            parts.push(format!("[next stage's report →](<{n}>)"));
        }
        let _ = writeln!(o, "{}\n", parts.join(" · "));
    }
    summary(&mut o, r);
    decision(&mut o, r);
    overview(&mut o, r);
    evidence(&mut o, r);
    scores(&mut o, r);
    traffic(&mut o, r);
    judge(&mut o, r);
    if !r.aa.is_empty() {
        let _ = writeln!(
            o,
            "## Judge noise floor (A/A arm)\n\n{} pairs of stable against a second stable \
             answer to the same request. A candidate's difference smaller than these is noise.\n",
            r.aa.pairs
        );
        let (head, rows) = f::aa_rows(r, cell);
        table(&mut o, &head, &rows);
    }
    super::markdown_answers::worst(&mut o, r);
    super::markdown_answers::reference(&mut o, r);
    if !r.notes.is_empty() {
        o.push_str("## Notes\n\n");
        for n in &r.notes {
            let _ = writeln!(o, "- {}", cell(n));
        }
        o.push('\n');
    }
    let _ = writeln!(
        o,
        "<sub>canarist report schema v{} · generated {}</sub>",
        r.schema_version,
        f::time(r.generated_at)
    );
    o
}

/// The summary card (`report::summary`) as a quote block.
fn summary(o: &mut String, r: &StageReport) {
    let c = &r.summary;
    let _ = writeln!(
        o,
        "> **{}** · {}\n>",
        c.status.replace('_', " ").to_uppercase(),
        cell(&c.headline)
    );
    if let Some(line) = &c.stage_line {
        let _ = writeln!(o, "> {}\n>", cell(line));
    }
    let _ = writeln!(
        o,
        "> **Key evidence ({}):** {}",
        cell(&c.evidence_when),
        cell(&c.evidence)
    );
    for b in &c.banners {
        let _ = writeln!(o, ">\n> ⚠ **{}**", cell(b));
    }
    o.push('\n');
}

fn decision(o: &mut String, r: &StageReport) {
    match &r.decision {
        Some(d) => {
            let source = match (d.source, &d.transition) {
                (DecisionSource::Transition, Some(t)) => format!(
                    "recorded {} by {}, {} → {}",
                    f::time(t.at),
                    cell(&t.actor),
                    code(&t.from_state),
                    code(&t.to_state)
                ),
                _ => "recomputed by this report with `gate::evaluate`".to_owned(),
            };
            let _ = writeln!(
                o,
                "**Decision: {}** ({source})\n\n> {}\n",
                d.action.to_uppercase(),
                cell(&d.reason)
            );
            for a in &d.alerts {
                let _ = writeln!(o, "> ⚠ **Alert:** {}\n", cell(&a.message));
            }
        }
        None => o.push_str("**Decision: none recorded**\n\n"),
    }
}

fn overview(o: &mut String, r: &StageReport) {
    let s = &r.stage;
    let mode = match s.mode {
        StageMode::Shadow => "shadow",
        StageMode::Live => "live",
        StageMode::Unknown => "unknown",
    };
    let end = s.ended_at.map_or_else(|| "running".to_owned(), f::time);
    let rows = vec![
        vec![
            "Rollout".into(),
            format!(
                "`{}` · stable {} → candidate {} (variant {}) · config v{} · state {}",
                r.rollout.id,
                code(r.rollout.stable_model.as_deref().unwrap_or("?")),
                code(r.rollout.candidate_model.as_deref().unwrap_or("?")),
                code(&r.rollout.candidate),
                r.rollout.config_version,
                code(&r.rollout.state)
            ),
        ],
        vec![
            "Stage".into(),
            format!(
                "{} {} · {mode} · {}",
                s.index,
                code(&s.name),
                cell(&f::stage_share(s))
            ),
        ],
        vec![
            "Window".into(),
            format!(
                "{} → {end} ({})",
                f::time(s.started_at),
                f::duration(s.duration_seconds)
            ),
        ],
        vec!["Ended as".into(), cell(&f::ended_as(s.outcome.as_deref()))],
        vec![
            "Judged pairs".into(),
            format!(
                "{} (pairs with a judgment or check result, to {})",
                r.judge.judged_pairs,
                s.ended_at.map_or("report time", |_| "the stage's end")
            ),
        ],
        vec!["Ramp".into(), cell(&f::ramp_line(r))],
    ];
    table(o, &["", ""], &rows);
}

fn evidence(o: &mut String, r: &StageReport) {
    let Some(d) = &r.decision else { return };
    if d.evidence.is_empty() {
        return;
    }
    let when = d.transition.as_ref().map_or_else(
        || "recomputed now".to_owned(),
        |t| format!("at decision, {}", f::time(t.at)),
    );
    let _ = writeln!(o, "## Gate evidence ({when})\n");
    let rows: Vec<Vec<String>> = d
        .evidence
        .iter()
        .map(|e| {
            let mut row: Vec<String> = f::evidence_cells(e).iter().map(|c| cell(c)).collect();
            row.push(format!("**{}**", super::summary::verdict_words(e.verdict)));
            row.push(e.note.as_deref().map_or(String::new(), cell));
            row
        })
        .collect();
    table(o, &f::EVIDENCE_HEAD, &rows);
    let _ = writeln!(o, "_{}_\n", f::METHOD_LEGEND);
}

fn scores(o: &mut String, r: &StageReport) {
    if !r.criteria.is_empty() {
        let _ = writeln!(
            o,
            "## Judge criteria\n\nDifferences are candidate − stable with {} anytime-valid \
             confidence sequences.\n",
            f::level(r)
        );
        let rows: Vec<Vec<String>> = r
            .criteria
            .iter()
            .map(|c| {
                vec![
                    cell(&c.criterion),
                    cell(&c.cohort),
                    f::num(c.stable_mean, 3),
                    f::num(c.candidate_mean, 3),
                    f::difference(c.difference.as_ref()),
                    c.difference.map_or_else(
                        || format!("{} / {}", c.candidate_n, c.stable_n),
                        |d| d.n.to_string(),
                    ),
                    c.win_tie_loss.as_ref().map_or(f::MISSING.into(), |w| {
                        format!(
                            "{} (win rate {} {})",
                            wtl_text(w),
                            f::num(w.win_rate, 3),
                            f::interval(w.interval, 3)
                        )
                    }),
                    f::pct(c.abstention_rate),
                ]
            })
            .collect();
        table(
            o,
            &[
                "criterion",
                "cohort",
                "stable",
                "candidate",
                "difference",
                "n",
                "win/tie/loss",
                "abstained",
            ],
            &rows,
        );
    }
    if !r.checks.is_empty() {
        o.push_str("## Checks\n\n");
        let rows: Vec<Vec<String>> = r
            .checks
            .iter()
            .map(|c| {
                vec![
                    cell(&c.check),
                    cell(&c.cohort),
                    format!("{} of {}", f::pct(c.stable_pass_rate), c.stable_n),
                    format!("{} of {}", f::pct(c.candidate_pass_rate), c.candidate_n),
                    f::difference(c.difference.as_ref()),
                    c.regressions.to_string(),
                    c.improvements.to_string(),
                ]
            })
            .collect();
        table(
            o,
            &[
                "check",
                "cohort",
                "stable pass",
                "candidate pass",
                "difference",
                "regressions",
                "improvements",
            ],
            &rows,
        );
    }
}

fn traffic(o: &mut String, r: &StageReport) {
    o.push_str("## Traffic, errors, latency and cost\n\n");
    let rows: Vec<Vec<String>> = r
        .variants
        .iter()
        .map(|v| {
            let classes: Vec<String> = v
                .errors_by_class
                .iter()
                .map(|(k, n)| format!("{} {n}", cell(k)))
                .collect();
            vec![
                cell(&v.cohort),
                format!("{} ({})", cell(&v.variant), v.role),
                v.requests.to_string(),
                v.units.to_string(),
                v.served.to_string(),
                v.served_units.to_string(),
                format!("{} {}", f::pct(v.error_rate), classes.join(", "))
                    .trim()
                    .to_owned(),
                format!(
                    "{} / {} / {}",
                    f::ms(v.latency_ms.p50),
                    f::ms(v.latency_ms.p95),
                    f::ms(v.latency_ms.p99)
                ),
                format!(
                    "{} / {} / {}",
                    f::ms(v.ttft_ms.p50),
                    f::ms(v.ttft_ms.p95),
                    f::ms(v.ttft_ms.p99)
                ),
                format!(
                    "{} / {}",
                    f::num(v.prompt_tokens_per_request, 1),
                    f::num(v.completion_tokens_per_request, 1)
                ),
                f::usd(v.cost_per_request),
            ]
        })
        .collect();
    table(
        o,
        &[
            "cohort",
            "variant",
            "requests",
            "units",
            "served",
            "served units",
            "errors",
            "latency p50/p95/p99",
            "TTFT p50/p95/p99",
            "tokens in/out per request",
            "cost per request",
        ],
        &rows,
    );
    if !r.pairs.is_empty() {
        let rows: Vec<Vec<String>> = r
            .pairs
            .iter()
            .map(|p| vec![cell(&p.cohort), cell(&p.candidate), p.pairs.to_string()])
            .collect();
        table(o, &["cohort", "candidate", "matched pairs"], &rows);
    }
    let sr = &r.sample_ratio;
    let split = f::srm_split(r, cell);
    let requests: Vec<String> = sr.requests.iter().map(u64::to_string).collect();
    let _ = writeln!(
        o,
        "**Sample-ratio check, {} (units):** {} — {}; χ² {}, p {}, α {}. Requests served \
         (information only): {}; χ² {}, p {}.\n",
        cell(&f::srm_scope(r)),
        cell(&sr.note),
        split.join(", "),
        f::num(sr.chi_square, 3),
        f::p_value(sr.p_value),
        sr.alpha,
        requests.join(" / "),
        f::num(sr.request_chi_square, 3),
        f::p_value(sr.request_p_value),
    );
}

fn judge(o: &mut String, r: &StageReport) {
    let j = &r.judge;
    let _ = writeln!(
        o,
        "## Judge\n\nAbstention rate: stable {}, candidate {}, pairwise {}.\n",
        f::pct(j.stable_abstention_rate),
        f::pct(j.candidate_abstention_rate),
        f::pct(j.pairwise_abstention_rate)
    );
    if !j.position_consistency.is_empty() {
        let rows: Vec<Vec<String>> = j
            .position_consistency
            .iter()
            .map(|c| {
                vec![
                    cell(&c.criterion),
                    c.consistent.to_string(),
                    c.inconsistent.to_string(),
                    f::pct(c.rate),
                ]
            })
            .collect();
        table(
            o,
            &[
                "pairwise criterion",
                "consistent",
                "inconsistent",
                "position consistency",
            ],
            &rows,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_and_fences_contain_hostile_text() {
        assert_eq!(cell("a|b\n<script>"), "a\\|b &lt;script&gt;");
        let mut o = String::new();
        fenced(&mut o, "x ``` y ````` z");
        assert!(o.starts_with("``````text\n"), "{o}");
        assert!(o.trim_end().ends_with("``````"));
        assert_eq!(code("a`b|c"), "`a'b\\|c`");
    }
}
