//! The report as ONE self-contained HTML file: inline CSS and inline SVG charts (`svg`), no
//! script, no font, image or stylesheet from anywhere else, so it opens offline, attaches to a
//! ticket and prints (print CSS: no backgrounds wasted, sections kept whole where possible).
//!
//! Every text that is not a literal of this file goes through [`esc`] (`html-escape`): names,
//! labels, reasons, answers and judge reasoning may contain markup. Pure.

use std::fmt::Write as _;

use super::format as f;
use super::model::*;
use super::sections::wtl_text;
use super::svg::{self, ForestRow, Series};
use crate::gate::Method;

/// Escapes text for HTML element content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    // `&`, `<`, `>` and `"`: safe in element content and in double-quoted attributes.
    html_escape::encode_double_quoted_attribute(s).into_owned()
}

const CSS: &str = r#"
:root { --ok: #1a7f37; --bad: #c62828; --warn: #b26a00; --none: #6b7280; --ink: #1f2328;
  --muted: #57606a; --line: #d0d7de; --bg: #f6f8fa; --stable: #2563eb; --candidate: #d9480f; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.5em; margin: 0 0 4px; } h2 { font-size: 1.15em; margin: 0 0 8px; }
h3 { font-size: 1em; margin: 12px 0 6px; }
section { margin: 20px 0; }
.meta, .muted { color: var(--muted); }
code, pre { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { white-space: pre-wrap; word-break: break-word; background: var(--bg); border: 1px solid var(--line);
  border-radius: 6px; padding: 8px; margin: 0; max-height: 24em; overflow: auto; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
td.n { text-align: right; white-space: nowrap; }
.decision { border-left: 6px solid var(--none); background: var(--bg); padding: 10px 14px; border-radius: 4px; }
.decision.promote { border-color: var(--ok); } .decision.rollback { border-color: var(--bad); }
.decision.hold { border-color: var(--warn); }
.decision h2 { margin: 0 0 4px; font-size: 1.3em; }
.alert { color: var(--bad); font-weight: 600; }
.verdict { font-weight: 600; } .v-non_inferior, .v-passed { color: var(--ok); }
.v-worse, .v-invalid, .v-blocked { color: var(--bad); } .v-inconclusive, .v-insufficient_data { color: var(--warn); }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
article { border-top: 1px solid var(--line); padding-top: 6px; }
svg.chart { width: 100%; height: auto; display: block; }
svg .grid { stroke: #e5e7eb; stroke-width: 1; } svg .zero { stroke: var(--ink); stroke-width: 1.5; }
svg .bound { stroke: var(--warn); stroke-width: 2; stroke-dasharray: 3 2; }
svg .axis { font-size: 11px; fill: var(--muted); } svg .label { font-size: 11px; fill: var(--ink); }
svg .muted { font-size: 13px; fill: var(--muted); }
svg .ramp { fill: none; stroke: var(--candidate); stroke-width: 2.5; }
svg .marker { stroke: #fff; stroke-width: 1.5; }
svg .marker.ok, svg .est.ok { fill: var(--ok); } svg .marker.bad, svg .est.bad { fill: var(--bad); }
svg .marker.warn { fill: var(--warn); } svg .marker.none, svg .est.none { fill: var(--none); }
svg .ci { stroke-width: 2.5; } svg .ci.ok { stroke: var(--ok); } svg .ci.bad { stroke: var(--bad); }
svg .ci.none { stroke: var(--none); }
svg .hist { fill: none; stroke-width: 1.8; } svg .hist.stable { stroke: var(--stable); }
svg .hist.candidate { stroke: var(--candidate); }
.reference { border: 1px dashed var(--line); padding: 8px 12px; border-radius: 6px; }
footer { margin-top: 28px; font-size: 12px; color: var(--muted); }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  section, article, figure, tr, svg { break-inside: avoid; }
  h2 { break-after: avoid; }
  pre { max-height: none; overflow: visible; }
  .decision, th, .v-worse, svg * { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
  @page { margin: 14mm; }
}
"#;

pub fn to_html(r: &StageReport) -> String {
    let mut o = String::with_capacity(32 * 1024);
    let title = format!(
        "{} · stage {} {} · canarist report",
        r.deployment, r.stage.index, r.stage.name
    );
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        esc(&title)
    );
    let _ = writeln!(
        o,
        "<header><h1>Stage report: {} · stage {} <code>{}</code></h1>\n<p class=\"meta\">candidate \
         <code>{}</code> · rollout <code>{}</code> ({}) · generated {}</p></header>",
        esc(&r.deployment),
        r.stage.index,
        esc(&r.stage.name),
        esc(&r.rollout.candidate),
        r.rollout.id,
        esc(&r.rollout.state),
        f::time(r.generated_at)
    );
    decision(&mut o, r);
    overview(&mut o, r);
    let _ = writeln!(
        o,
        "<section><h2>Ramp</h2>\n{}\n</section>",
        svg::ramp_curve(&r.ramp, r.generated_at)
    );
    evidence(&mut o, r);
    scores(&mut o, r);
    traffic(&mut o, r);
    judge(&mut o, r);
    worst(&mut o, r);
    reference(&mut o, r);
    o.push_str("<footer>");
    for n in &r.notes {
        let _ = write!(o, "<p>{}</p>", esc(n));
    }
    let _ = writeln!(
        o,
        "<p>canarist report schema v{}.</p></footer>\n</body>\n</html>",
        r.schema_version
    );
    o
}

fn table(o: &mut String, head: &[&str], rows: &[Vec<String>]) {
    o.push_str("<table><thead><tr>");
    for h in head {
        let _ = write!(o, "<th>{}</th>", esc(h));
    }
    o.push_str("</tr></thead><tbody>\n");
    for r in rows {
        o.push_str("<tr>");
        for c in r {
            // Cells are pre-escaped; a leading `#` marks a numeric (right-aligned) cell.
            match c.strip_prefix('#') {
                Some(n) => {
                    let _ = write!(o, "<td class=\"n\">{n}</td>");
                }
                None => {
                    let _ = write!(o, "<td>{c}</td>");
                }
            }
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</tbody></table>\n");
}

/// A numeric cell (escaped, right-aligned).
fn n(s: String) -> String {
    format!("#{}", esc(&s))
}

fn decision(o: &mut String, r: &StageReport) {
    let Some(d) = &r.decision else {
        o.push_str(
            "<section class=\"decision\"><h2>Decision: none recorded</h2>\
             <p class=\"muted\">No gate decision was recorded for this stage and no gate policy \
             was given.</p></section>\n",
        );
        return;
    };
    let source = match (d.source, &d.transition) {
        (DecisionSource::Transition, Some(t)) => format!(
            "recorded {} by {}, {} → {} (stage {} → {})",
            f::time(t.at),
            esc(&t.actor),
            esc(&t.from_state),
            esc(&t.to_state),
            t.from_stage,
            t.to_stage
        ),
        _ => "recomputed by this report with gate::evaluate".to_owned(),
    };
    let _ = write!(
        o,
        "<section class=\"decision {}\"><h2>Decision: {}</h2><p>{}</p><p class=\"meta\">{source}</p>",
        esc(&d.action),
        esc(&d.action.to_uppercase()),
        esc(&d.reason)
    );
    for a in &d.alerts {
        let _ = write!(o, "<p class=\"alert\">Alert: {}</p>", esc(&a.message));
    }
    o.push_str("</section>\n");
}

fn overview(o: &mut String, r: &StageReport) {
    let s = &r.stage;
    let mode = match s.mode {
        StageMode::Shadow => "shadow",
        StageMode::Live => "live",
        StageMode::Unknown => "unknown",
    };
    let rows = vec![
        vec![
            "Stage".into(),
            format!("{} <code>{}</code> · {mode}", s.index, esc(&s.name)),
        ],
        vec![
            "Candidate percentage".into(),
            format!(
                "configured {} · observed {}",
                f::percent(s.configured_percent),
                f::percent(s.observed_percent)
            ),
        ],
        vec![
            "Window".into(),
            format!(
                "{} → {} ({})",
                f::time(s.started_at),
                s.ended_at.map_or_else(|| "running".to_owned(), f::time),
                f::duration(s.duration_seconds)
            ),
        ],
        vec![
            "Outcome".into(),
            esc(s.outcome.as_deref().unwrap_or(f::MISSING)),
        ],
        vec!["Judged pairs".into(), r.judge.judged_pairs.to_string()],
    ];
    o.push_str("<section><h2>Overview</h2>\n");
    table(o, &["", ""], &rows);
    o.push_str("</section>\n");
}

fn evidence(o: &mut String, r: &StageReport) {
    let Some(d) = &r.decision else { return };
    o.push_str("<section><h2>Gate evidence</h2>\n");
    let rows: Vec<Vec<String>> = d
        .evidence
        .iter()
        .map(|e| {
            vec![
                esc(&e.metric),
                esc(&e.cohort),
                n(f::num(e.estimate, 4)),
                n(f::interval(e.interval, 4)),
                n(f::signed(e.bound, 4)),
                n(format!("{} / {}", e.candidate_n, e.stable_n)),
                esc(e.method.describe()),
                n(format!("{:.4}", e.alpha)),
                format!(
                    "<span class=\"verdict v-{0}\">{0}</span>",
                    esc(e.verdict.as_str())
                ),
                esc(e.note.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    table(
        o,
        &[
            "metric",
            "cohort",
            "estimate",
            "interval",
            "bound",
            "n cand / stable",
            "method",
            "α",
            "verdict",
            "note",
        ],
        &rows,
    );
    o.push_str("</section>\n");
}

/// The gate's bound for a criterion in a cohort, when the evidence has a mean test of it.
fn bound_for(r: &StageReport, metric: &str, cohort: &str) -> Option<f64> {
    r.decision.as_ref()?.evidence.iter().find_map(|e| {
        (e.metric == metric
            && e.cohort == cohort
            && matches!(e.method, Method::PairedCs | Method::TwoSampleCs))
        .then_some(e.bound)
    })
}

fn scores(o: &mut String, r: &StageReport) {
    let _ = writeln!(
        o,
        "<section><h2>Score differences</h2>\n<p class=\"muted\">candidate − stable, {} \
         anytime-valid confidence sequences (valid however often they are looked at); dashed: the \
         gate's bound.</p>",
        f::level(r)
    );
    let forest: Vec<ForestRow> = r
        .criteria
        .iter()
        .filter_map(|c| {
            c.difference.map(|d| ForestRow {
                label: format!("{} · {}", c.criterion, c.cohort),
                estimate: d.estimate,
                lo: d.lo,
                hi: d.hi,
                bound: bound_for(r, &c.criterion, &c.cohort),
            })
        })
        .collect();
    if forest.is_empty() {
        o.push_str("<p class=\"muted\">No scored criterion with enough data.</p>\n");
    } else {
        o.push_str(&svg::forest_plot(
            &forest,
            "Score difference per criterion and cohort",
        ));
        o.push('\n');
    }
    if !r.criteria.is_empty() {
        let rows: Vec<Vec<String>> = r
            .criteria
            .iter()
            .map(|c| {
                vec![
                    esc(&c.criterion),
                    esc(&c.cohort),
                    n(f::num(c.stable_mean, 3)),
                    n(f::num(c.candidate_mean, 3)),
                    n(f::difference(c.difference.as_ref())),
                    n(c.difference.map_or_else(
                        || format!("{} / {}", c.candidate_n, c.stable_n),
                        |d| d.n.to_string(),
                    )),
                    c.win_tie_loss.as_ref().map_or(f::MISSING.into(), |w| {
                        esc(&format!(
                            "{} · win rate {} {}",
                            wtl_text(w),
                            f::num(w.win_rate, 3),
                            f::interval(w.interval, 3)
                        ))
                    }),
                    n(f::pct(c.abstention_rate)),
                ]
            })
            .collect();
        o.push_str("<h3>Judge criteria</h3>\n");
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
        let rows: Vec<Vec<String>> = r
            .checks
            .iter()
            .map(|c| {
                vec![
                    esc(&c.check),
                    esc(&c.cohort),
                    n(format!("{} of {}", f::pct(c.stable_pass_rate), c.stable_n)),
                    n(format!(
                        "{} of {}",
                        f::pct(c.candidate_pass_rate),
                        c.candidate_n
                    )),
                    n(f::difference(c.difference.as_ref())),
                    n(c.regressions.to_string()),
                    n(c.improvements.to_string()),
                ]
            })
            .collect();
        o.push_str("<h3>Checks</h3>\n");
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
    o.push_str("</section>\n");
}

fn traffic(o: &mut String, r: &StageReport) {
    o.push_str("<section><h2>Traffic, errors, latency and cost</h2>\n");
    let overall: Vec<&VariantStats> = r.variants.iter().filter(|v| v.cohort == "all").collect();
    let series: Vec<Series<'_>> = overall
        .iter()
        .map(|v| Series {
            name: &v.variant,
            class: if v.role == "stable" {
                "stable"
            } else {
                "candidate"
            },
            buckets: &v.latency_ms.histogram,
        })
        .collect();
    o.push_str(&svg::latency_chart(
        &series,
        "Latency distribution per variant (successful requests)",
    ));
    o.push('\n');
    let rows: Vec<Vec<String>> = r
        .variants
        .iter()
        .map(|v| {
            let classes: Vec<String> = v
                .errors_by_class
                .iter()
                .map(|(k, c)| format!("{k} {c}"))
                .collect();
            vec![
                esc(&v.cohort),
                format!(
                    "{} <span class=\"muted\">{}</span>",
                    esc(&v.variant),
                    esc(&v.role)
                ),
                n(v.requests.to_string()),
                n(v.served.to_string()),
                n(format!("{} {}", f::pct(v.error_rate), classes.join(", "))
                    .trim()
                    .to_owned()),
                n(format!(
                    "{} / {} / {}",
                    f::ms(v.latency_ms.p50),
                    f::ms(v.latency_ms.p95),
                    f::ms(v.latency_ms.p99)
                )),
                n(format!(
                    "{} / {} / {}",
                    f::ms(v.ttft_ms.p50),
                    f::ms(v.ttft_ms.p95),
                    f::ms(v.ttft_ms.p99)
                )),
                n(format!(
                    "{} / {}",
                    f::num(v.prompt_tokens_per_request, 1),
                    f::num(v.completion_tokens_per_request, 1)
                )),
                n(f::usd(v.cost_per_request)),
            ]
        })
        .collect();
    table(
        o,
        &[
            "cohort",
            "variant",
            "requests",
            "served",
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
            .map(|p| vec![esc(&p.cohort), esc(&p.candidate), n(p.pairs.to_string())])
            .collect();
        table(o, &["cohort", "candidate", "matched pairs"], &rows);
    }
    let sr = &r.sample_ratio;
    let split: Vec<String> = sr
        .variants
        .iter()
        .map(|(v, c, share)| format!("{} {c} served (configured {})", esc(v), f::pct(*share)))
        .collect();
    let _ = writeln!(
        o,
        "<p><strong>Sample-ratio check:</strong> {} — {}; χ² {}, p {}, α {}.</p>\n</section>",
        esc(&sr.note),
        split.join(", "),
        f::num(sr.chi_square, 3),
        f::p_value(sr.p_value),
        sr.alpha
    );
}

fn judge(o: &mut String, r: &StageReport) {
    let j = &r.judge;
    let _ = writeln!(
        o,
        "<section><h2>Judge</h2>\n<p>Abstention rate: stable {}, candidate {}, pairwise {}.</p>",
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
                    esc(&c.criterion),
                    n(c.consistent.to_string()),
                    n(c.inconsistent.to_string()),
                    n(f::pct(c.rate)),
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
    o.push_str("</section>\n");
}

fn worst(o: &mut String, r: &StageReport) {
    if r.worst_answers.is_empty() {
        return;
    }
    o.push_str("<section><h2>Worst candidate answers</h2>\n");
    for (i, w) in r.worst_answers.iter().enumerate() {
        let _ = write!(
            o,
            "<article><h3>{}. Request <code>{}</code> <span class=\"muted\">{}</span></h3><ul>",
            i + 1,
            w.request_id,
            esc(&w.cohort)
        );
        for reason in &w.reasons {
            let _ = write!(o, "<li>{}</li>", esc(reason));
        }
        o.push_str("</ul><div class=\"pair\">");
        for (who, answer, error) in [
            ("Candidate", &w.candidate_answer, &w.candidate_error),
            ("Stable", &w.stable_answer, &w.stable_error),
        ] {
            let _ = write!(
                o,
                "<figure><figcaption>{who}{}</figcaption><pre>{}</pre></figure>",
                error
                    .as_deref()
                    .map_or(String::new(), |e| format!(" (error: {})", esc(e))),
                esc(answer.as_deref().unwrap_or("(no answer)"))
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

fn reference(o: &mut String, r: &StageReport) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<img src="x" onerror=alert(1)>&"#),
            "&lt;img src=&quot;x&quot; onerror=alert(1)&gt;&amp;"
        );
    }
}
