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
use super::svg::{self, ForestRow};
use super::svg_latency::{self, Series};
use super::{svg_forest, svg_ramp};
use crate::gate::Method;

/// Escapes text for HTML element content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    // `&`, `<`, `>` and `"`: safe in element content and in double-quoted attributes.
    html_escape::encode_double_quoted_attribute(s).into_owned()
}

/// The charts' style, shared with the dashboard (served as `/ui/chart.css`).
pub const CHART_CSS: &str = include_str!("chart.css");

/// The page style (screen and print) and the charts' style, inlined into every report.
const CSS: &str = concat!(include_str!("report.css"), include_str!("chart.css"));

/// The `Content-Security-Policy` source that allows the report's one inline `<style>` block
/// (`'sha256-…'`), and nothing else inline.
pub fn style_source() -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(CSS.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

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
        "<header><h1>{} · stage {} <code>{}</code></h1>\n<p class=\"meta\">stage report · rollout \
         <code>{}</code> · generated {}</p></header>",
        esc(&r.deployment),
        r.stage.index,
        esc(&r.stage.name),
        r.rollout.id,
        f::time(r.generated_at)
    );
    if let Some(l) = &r.links {
        let _ = write!(
            o,
            "<nav class=\"links\"><a href=\"{}\">this stage in the dashboard</a>",
            esc(&l.dashboard)
        );
        if let Some(p) = &l.previous {
            let _ = write!(
                o,
                "<a href=\"{}\" rel=\"prev\">← previous stage's report</a>",
                esc(p)
            );
        }
        if let Some(n) = &l.next {
            let _ = write!(
                o,
                "<a href=\"{}\" rel=\"next\">next stage's report →</a>",
                esc(n)
            );
        }
        o.push_str("</nav>\n");
    }
    summary(&mut o, r);
    decision(&mut o, r);
    overview(&mut o, r);
    let _ = writeln!(o, "<section><h2>Ramp</h2>\n{}\n</section>", ramp_chart(r));
    evidence(&mut o, r);
    scores(&mut o, r);
    traffic(&mut o, r);
    judge(&mut o, r);
    if !r.aa.is_empty() {
        let _ = writeln!(
            o,
            "<section><h2>Judge noise floor (A/A arm)</h2>\n<p class=\"muted\">{} pairs of \
             stable against a second stable answer to the same request. A candidate's \
             difference smaller than these is noise.</p>",
            r.aa.pairs
        );
        let (head, rows) = f::aa_rows(r, esc);
        table(&mut o, &head, &rows);
        o.push_str("</section>\n");
    }
    super::html_answers::worst(&mut o, r);
    super::html_answers::reference(&mut o, r);
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

/// The ramp chart of a report: "you are here" on the rollout's current stage, this report's
/// stage outlined.
pub fn ramp_chart(r: &StageReport) -> String {
    svg_ramp::ramp_chart(
        &r.ramp,
        &r.plan,
        svg_ramp::Marks {
            here: Some(r.rollout.stage_index),
            running: r.summary.status == "running",
            this_report: Some(r.stage.index),
        },
    )
}

/// The latency chart of a report (cohort `all`, one line per variant).
pub fn latency_chart(r: &StageReport) -> String {
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
    svg_latency::latency_chart(
        &series,
        "Latency distribution per variant: successful requests, served and mirrored",
    )
}

pub(super) fn table(o: &mut String, head: &[&str], rows: &[Vec<String>]) {
    table_class(o, "", head, rows);
}

/// [`table`] with a class on the `<table>` (`""`: none).
pub(super) fn table_class(o: &mut String, class: &str, head: &[&str], rows: &[Vec<String>]) {
    if class.is_empty() {
        o.push_str("<table><thead><tr>");
    } else {
        let _ = write!(o, "<table class=\"{class}\"><thead><tr>");
    }
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

/// A one-line cell: `text` clipped to the column with an ellipsis, `title` (else the text) on
/// hover; both escaped here.
fn clip(text: &str, title: Option<&str>) -> String {
    format!(
        "<span class=\"clip\" title=\"{}\">{}</span>",
        esc(title.unwrap_or(text)),
        esc(text)
    )
}

/// A numeric cell (escaped, right-aligned).
pub(super) fn n(s: String) -> String {
    format!("#{}", esc(&s))
}

/// The summary card (`report::summary`): headline, this stage's line, key evidence, banners.
fn summary(o: &mut String, r: &StageReport) {
    let c = &r.summary;
    let _ = write!(
        o,
        "<section id=\"summary\" class=\"summary {0}\" data-status=\"{0}\">\
         <p class=\"headline\"><span class=\"badge {0}\">{1}</span> {2}</p>",
        esc(&c.status),
        esc(&c.status.replace('_', " ")),
        esc(&c.headline)
    );
    if let Some(line) = &c.stage_line {
        let _ = write!(o, "<p class=\"stage-line\">{}</p>", esc(line));
    }
    let _ = write!(
        o,
        "<p class=\"key-evidence\"><strong>Key evidence ({}):</strong> {}</p>",
        esc(&c.evidence_when),
        esc(&c.evidence)
    );
    for b in &c.banners {
        let _ = write!(o, "<p class=\"banner\" role=\"alert\">{}</p>", esc(b));
    }
    o.push_str("</section>\n");
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
    let ro = &r.rollout;
    let rows = vec![
        vec![
            "Rollout".into(),
            format!(
                "<code>{}</code> · stable <code>{}</code> → candidate <code>{}</code> (variant \
                 <code>{}</code>) · config v{} · state <code>{}</code>",
                ro.id,
                esc(ro.stable_model.as_deref().unwrap_or("?")),
                esc(ro.candidate_model.as_deref().unwrap_or("?")),
                esc(&ro.candidate),
                ro.config_version,
                esc(&ro.state)
            ),
        ],
        vec![
            "Stage".into(),
            format!("{} <code>{}</code> · {mode}", s.index, esc(&s.name)),
        ],
        vec!["Candidate".into(), esc(&f::stage_share(s))],
        vec![
            "Window".into(),
            format!(
                "{} → {} ({})",
                f::time(s.started_at),
                s.ended_at.map_or_else(|| "running".to_owned(), f::time),
                f::duration(s.duration_seconds)
            ),
        ],
        vec!["Ended as".into(), esc(&f::ended_as(s.outcome.as_deref()))],
        vec![
            "Judged pairs".into(),
            format!(
                "{} (pairs with a judgment or check result, to {})",
                r.judge.judged_pairs,
                s.ended_at.map_or_else(
                    || "report time".to_owned(),
                    |_| "the stage's end".to_owned()
                )
            ),
        ],
    ];
    o.push_str("<section><h2>Overview</h2>\n");
    table(o, &["", ""], &rows);
    o.push_str("</section>\n");
}

fn evidence(o: &mut String, r: &StageReport) {
    let Some(d) = &r.decision else { return };
    let when = d.transition.as_ref().map_or_else(
        || "recomputed now".to_owned(),
        |t| format!("at decision, {}", f::time(t.at)),
    );
    let _ = writeln!(
        o,
        "<section><h2>Gate evidence <span class=\"muted\">({when})</span></h2>"
    );
    let rows: Vec<Vec<String>> = d
        .evidence
        .iter()
        .map(|e| {
            let [metric, cohort, est, iv, bound, counts, method, alpha] = f::evidence_cells(e);
            vec![
                clip(&metric, None),
                clip(&cohort, None),
                n(est),
                n(iv),
                n(bound),
                clip(&counts, None),
                clip(&method, Some(e.method.describe())),
                n(alpha),
                // The note beside the verdict, clipped (whole on hover): one line per row.
                format!(
                    "<span class=\"verdict v-{}\">{}</span>{}",
                    esc(e.verdict.as_str()),
                    esc(&super::summary::verdict_words(e.verdict)),
                    e.note.as_deref().map_or_else(String::new, |note| format!(
                        " <span class=\"clip note\" title=\"{}\">{}</span>",
                        esc(note),
                        esc(note)
                    ))
                ),
            ]
        })
        .collect();
    if let Some(chart) = svg_forest::evidence_forest(&d.evidence) {
        o.push_str(&chart);
        o.push('\n');
    }
    // The verdict's note shares its cell (the Markdown table has a column for it).
    table_class(o, "evidence", &f::EVIDENCE_HEAD[..9], &rows);
    let _ = writeln!(o, "<p class=\"muted small\">{}</p>", esc(f::METHOD_LEGEND));
    if let Some(chart) = super::history_chart(r) {
        let _ = writeln!(
            o,
            "<h3>Over time <span class=\"muted\">({} recorded evaluations, then the \
             decision's evidence)</span></h3>\n{chart}",
            r.gate_history.len()
        );
    }
    o.push_str("</section>\n");
}

/// The gate's bound for a criterion in a cohort, when the evidence has a mean test of it.
fn bound_for(r: &StageReport, metric: &str, cohort: &str) -> Option<f64> {
    r.decision.as_ref()?.evidence.iter().find_map(|e| {
        (e.metric == metric
            && e.cohort == cohort
            && matches!(
                e.method,
                Method::PairedCs | Method::PairedDeltaCs | Method::TwoSampleCs
            ))
        .then_some(e.bound)
    })
}

fn scores(o: &mut String, r: &StageReport) {
    let _ = writeln!(
        o,
        "<section><h2>Score differences</h2>\n<p class=\"muted\">candidate − stable per criterion \
         and check, with {} anytime-valid confidence sequences (the report's level; the gate's \
         own intervals, at its Bonferroni-split α, are the gate evidence above).</p>",
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
    // With a decision the gate's forest plot is the chart; this one only when there is none.
    if r.decision.is_none() && !forest.is_empty() {
        o.push_str(&svg::forest_plot(
            &forest,
            "Score difference per criterion and cohort (report level)",
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
    o.push_str(&latency_chart(r));
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
                n(v.units.to_string()),
                n(v.served.to_string()),
                n(v.served_units.to_string()),
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
    // Eleven columns: wider than a 1200 px page, so the table scrolls in its own box.
    o.push_str("<div class=\"scroll\">");
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
    o.push_str("</div>\n");
    if !r.pairs.is_empty() {
        let rows: Vec<Vec<String>> = r
            .pairs
            .iter()
            .map(|p| vec![esc(&p.cohort), esc(&p.candidate), n(p.pairs.to_string())])
            .collect();
        table(o, &["cohort", "candidate", "matched pairs"], &rows);
    }
    let sr = &r.sample_ratio;
    let split = f::srm_split(r, esc);
    let requests: Vec<String> = sr.requests.iter().map(u64::to_string).collect();
    let _ = writeln!(
        o,
        "<p><strong>Sample-ratio check, {} (units):</strong> {} — {}; χ² {}, p {}, α {}. \
         Requests served (information only): {}; χ² {}, p {}.</p>\n</section>",
        esc(&f::srm_scope(r)),
        esc(&sr.note),
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
