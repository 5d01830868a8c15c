//! The gate's evidence over time, shared by the HTML report and the dashboard: per gate cell
//! (metric × cohort), the interval the gate computed at each recorded tick as a band narrowing as
//! data arrives (what GrowthBook and Statsig show per metric), the estimate as a line, the bound
//! dashed and the reference (no difference) solid, on the time since the stage began. The last
//! point is the decision's own evidence (recorded at the transition, or recomputed for the
//! report), so the chart ends exactly where the forest plot is; it carries `data-metric`,
//! `data-cohort`, `data-lo`, `data-hi` and `data-verdict` (the evidence's numbers, unrounded;
//! `-inf`/`inf` on an unbounded side) so that a test can hold the chart to the gate. A side left
//! unbounded for lack of data is drawn to the panel's edge, dashed, with an arrow, and labelled.
//! The band takes the colour of the last verdict. Pure and deterministic.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use html_escape::{encode_double_quoted_attribute as attr, encode_text};

use super::format as f;
use super::model::GateHistoryPoint;
use super::svg::{Scale, Transform, line, r1, text, ticks};
use super::svg_forest::{axis_caption, reference, verdict_class};
use crate::gate::{Evidence, Method, Verdict};

/// One point of a cell's series.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    /// Seconds since the stage began.
    t: f64,
    estimate: Option<f64>,
    /// `None`: unbounded on that side.
    lo: Option<f64>,
    hi: Option<f64>,
    bound: Option<f64>,
    verdict: Verdict,
}

#[derive(Debug, Clone)]
struct Series {
    metric: String,
    cohort: String,
    method: Method,
    points: Vec<Point>,
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
}

fn charted(m: Method) -> bool {
    !matches!(m, Method::ChiSquareSrm | Method::AbstentionRate)
}

/// The series per cell: the recorded points, then the decision's evidence at `decided_at` (which
/// replaces a last recorded point that holds the same numbers). Cells in the decision's order,
/// then cells only the history has.
fn series(
    history: &[GateHistoryPoint],
    decision: Option<(DateTime<Utc>, &[Evidence])>,
    start: DateTime<Utc>,
) -> Vec<Series> {
    let secs = |t: DateTime<Utc>| ((t - start).num_milliseconds() as f64 / 1000.0).max(0.0);
    let mut out: Vec<Series> = Vec::new();
    let find = |out: &mut Vec<Series>, metric: &str, cohort: &str, method: Method| -> usize {
        match out
            .iter()
            .position(|s| s.metric == metric && s.cohort == cohort)
        {
            Some(i) => i,
            None => {
                out.push(Series {
                    metric: metric.to_owned(),
                    cohort: cohort.to_owned(),
                    method,
                    points: Vec::new(),
                });
                out.len() - 1
            }
        }
    };
    if let Some((_, evidence)) = decision {
        for e in evidence.iter().filter(|e| charted(e.method)) {
            find(&mut out, &e.metric, &e.cohort, e.method);
        }
    }
    for p in history.iter().filter(|p| charted(p.method)) {
        let i = find(&mut out, &p.metric, &p.cohort, p.method);
        out[i].points.push(Point {
            t: secs(p.at),
            estimate: finite(p.estimate),
            lo: finite(p.lo),
            hi: finite(p.hi),
            bound: finite(p.bound),
            verdict: p.verdict,
        });
    }
    if let Some((at, evidence)) = decision {
        for e in evidence.iter().filter(|e| charted(e.method)) {
            let i = find(&mut out, &e.metric, &e.cohort, e.method);
            let s = &mut out[i];
            s.method = e.method;
            let (lo, hi) = e
                .interval
                .map_or((None, None), |(a, b)| (finite(Some(a)), finite(Some(b))));
            let last = Point {
                t: secs(at),
                estimate: finite(e.estimate),
                lo,
                hi,
                bound: finite(Some(e.bound)),
                verdict: e.verdict,
            };
            if let Some(prev) = s.points.last()
                && (prev.estimate, prev.lo, prev.hi, prev.verdict)
                    == (last.estimate, last.lo, last.hi, last.verdict)
            {
                s.points.pop();
            }
            s.points.push(last);
        }
    }
    for s in &mut out {
        s.points.sort_by(|a, b| a.t.total_cmp(&b.t));
    }
    out.retain(|s| !s.points.is_empty());
    out
}

/// The chart, or `None` when no cell has a point. `decision`: when the stage's decision was made
/// (its transition, the stage's end, or the report's time) and its evidence.
pub fn history_chart(
    history: &[GateHistoryPoint],
    decision: Option<(DateTime<Utc>, &[Evidence])>,
    start: DateTime<Utc>,
) -> Option<String> {
    let series = series(history, decision, start);
    if series.is_empty() {
        return None;
    }
    let cols = if series.len() == 1 { 1 } else { 2 };
    let (width, gap, panel_h, legend_h) = (720.0, 16.0, 164.0, 26.0);
    let panel_w = (width - gap * (cols as f64 - 1.0)) / cols as f64;
    let rows = series.len().div_ceil(cols);
    let height = legend_h + rows as f64 * (panel_h + gap);
    let end = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.t))
        .fold(1.0f64, f64::max);
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg viewBox="0 0 {width} {}" role="img" class="chart history-chart" data-chart="history"><title>Gate evidence over time: each cell's interval at the gate's α as data arrived, the estimate, the bound dashed; the last point is the decision's evidence</title>"#,
        height.ceil()
    );
    legend(&mut o);
    for (i, s) in series.iter().enumerate() {
        let (col, row) = (i % cols, i / cols);
        let x0 = col as f64 * (panel_w + gap);
        let y0 = legend_h + row as f64 * (panel_h + gap);
        panel(&mut o, s, (x0, y0, panel_w, panel_h), end);
    }
    o.push_str("</svg>");
    Some(o)
}

fn legend(o: &mut String) {
    let y = 14.0;
    let _ = write!(
        o,
        r#"<rect x="8" y="{}" width="18" height="10" class="band warn"/>"#,
        r1(y - 9.0)
    );
    text(
        o,
        31.0,
        y,
        "start",
        "axis",
        "interval at the gate's α (colour: latest verdict)",
    );
    line(o, (300.0, y - 4.0), (318.0, y - 4.0), "est-line");
    text(o, 323.0, y, "start", "axis", "estimate");
    line(o, (386.0, y - 4.0), (404.0, y - 4.0), "bound");
    text(o, 409.0, y, "start", "axis", "bound");
    line(o, (456.0, y - 9.0), (456.0, y + 1.0), "ci warn unbounded");
    text(
        o,
        463.0,
        y,
        "start",
        "axis",
        "unbounded: too little data · x: time in stage",
    );
}

/// A number for a `data-` attribute: the value unrounded, `-inf`/`inf` for an unbounded side.
fn data_num(v: Option<f64>, neg: bool) -> String {
    match v {
        Some(v) => format!("{v}"),
        None if neg => "-inf".to_owned(),
        None => "inf".to_owned(),
    }
}

fn panel(o: &mut String, s: &Series, (x0, y0, w, h): (f64, f64, f64, f64), end: f64) {
    let (left, right, top, bottom) = (x0 + 48.0, x0 + w - 8.0, y0 + 22.0, y0 + h - 34.0);
    let Some(last) = s.points.last() else { return };
    let class = verdict_class(last.verdict);
    let _ = write!(
        o,
        r#"<g class="series" data-metric="{}" data-cohort="{}" data-points="{}">"#,
        attr(&s.metric),
        attr(&s.cohort),
        s.points.len()
    );
    let _ = write!(
        o,
        r#"<rect x="{}" y="{}" width="{}" height="{}" class="panel-frame"/>"#,
        r1(left),
        r1(top),
        r1(right - left),
        r1(bottom - top)
    );
    text(
        o,
        x0 + 2.0,
        y0 + 14.0,
        "start",
        "panel-title",
        &format!("{} · {}", s.metric, s.cohort),
    );
    text(
        o,
        x0 + w - 8.0,
        y0 + 14.0,
        "end",
        &format!("verdict-text {class}"),
        &super::summary::verdict_words(last.verdict),
    );
    // The y domain: every finite number of the series, the bound and the reference.
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in &s.points {
        for v in [p.lo, p.hi, p.estimate, p.bound].into_iter().flatten() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if let Some(z) = reference(s.method) {
        lo = lo.min(z);
        hi = hi.max(z);
    }
    if !lo.is_finite() {
        (lo, hi) = (-1.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(1e-6);
    let y = Scale::new((lo - pad, hi + pad), (bottom, top), Transform::Linear);
    let x = Scale::new((0.0, end), (left, right), Transform::Linear);
    for t in ticks(lo - pad, hi + pad, 4) {
        line(o, (left, y.map(t)), (right, y.map(t)), "grid");
        text(
            o,
            left - 4.0,
            y.map(t) + 4.0,
            "end",
            "axis",
            &format!("{t}"),
        );
    }
    for (t, anchor) in [(0.0, "start"), (end, "end")] {
        text(o, x.map(t), bottom + 14.0, anchor, "axis", &f::duration(t));
    }
    text(
        o,
        (left + right) / 2.0,
        bottom + 27.0,
        "middle",
        "axis caption",
        axis_caption(s.method),
    );
    if let Some(z) = reference(s.method) {
        line(o, (left, y.map(z)), (right, y.map(z)), "zero");
    }
    if let Some(b) = last.bound {
        line(o, (left, y.map(b)), (right, y.map(b)), "bound");
    }
    // The band: upper edge forwards, lower edge backwards; an unbounded side is the panel's edge.
    let up = |p: &Point| p.hi.map_or(top, |v| y.map(v));
    let down = |p: &Point| p.lo.map_or(bottom, |v| y.map(v));
    let mut d = String::new();
    for (i, p) in s.points.iter().enumerate() {
        let _ = write!(
            d,
            "{}{},{} ",
            if i == 0 { "M" } else { "L" },
            r1(x.map(p.t)),
            r1(up(p))
        );
    }
    for p in s.points.iter().rev() {
        let _ = write!(d, "L{},{} ", r1(x.map(p.t)), r1(down(p)));
    }
    let _ = write!(o, r#"<path d="{}Z" class="band {class}"/>"#, d.trim_end());
    // Each unbounded side: a dashed stroke to the edge with an arrow.
    let mut labelled = false;
    for p in &s.points {
        let px = x.map(p.t);
        for (side, edge, dir) in [(p.hi, top, -1.0), (p.lo, bottom, 1.0)] {
            if side.is_some() {
                continue;
            }
            let from = p.estimate.map_or((top + bottom) / 2.0, |e| y.map(e));
            line(o, (px, from), (px, edge), "ci warn unbounded");
            let _ = write!(
                o,
                r#"<path d="M{},{} l-3.5,{} l7,0 Z" class="arrow"/>"#,
                r1(px),
                r1(edge),
                r1(-dir * 6.0)
            );
            if !labelled {
                labelled = true;
                text(
                    o,
                    (px + 6.0).min(right - 4.0),
                    top + 12.0,
                    if px + 120.0 > right { "end" } else { "start" },
                    "axis",
                    "unbounded (too little data)",
                );
            }
        }
    }
    let est: Vec<String> = s
        .points
        .iter()
        .filter_map(|p| {
            p.estimate
                .map(|e| format!("{},{}", r1(x.map(p.t)), r1(y.map(e))))
        })
        .collect();
    if est.len() > 1 {
        let _ = write!(
            o,
            r#"<polyline points="{}" class="est-line"/>"#,
            est.join(" ")
        );
    }
    // The last point: the decision's interval, with the numbers a test compares.
    let lx = x.map(last.t);
    let tip = format!(
        "{} · {} at {}: estimate {} [{}, {}] — {}",
        s.metric,
        s.cohort,
        f::duration(last.t),
        last.estimate
            .map_or_else(|| f::MISSING.to_owned(), |v| f::signed(v, 4)),
        last.lo.map_or_else(|| "−∞".to_owned(), |v| f::signed(v, 4)),
        last.hi.map_or_else(|| "+∞".to_owned(), |v| f::signed(v, 4)),
        super::summary::verdict_words(last.verdict)
    );
    let unbounded = match (last.lo, last.hi) {
        (None, None) => r#" data-unbounded="both""#,
        (None, Some(_)) => r#" data-unbounded="lo""#,
        (Some(_), None) => r#" data-unbounded="hi""#,
        _ => "",
    };
    let _ = write!(
        o,
        r#"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" class="ci {class} last" data-metric="{3}" data-cohort="{4}" data-lo="{5}" data-hi="{6}" data-verdict="{7}"{unbounded}><title>{8}</title></line>"#,
        r1(lx),
        r1(down(last)),
        r1(up(last)),
        attr(&s.metric),
        attr(&s.cohort),
        data_num(last.lo, true),
        data_num(last.hi, false),
        last.verdict.as_str(),
        encode_text(&tip)
    );
    if let Some(e) = last.estimate {
        let _ = write!(
            o,
            r#"<rect x="{}" y="{}" width="6" height="6" class="est {class}"/>"#,
            r1(lx - 3.0),
            r1(y.map(e) - 3.0)
        );
    }
    o.push_str("</g>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{AnalysisUnit, Direction};
    use chrono::Duration;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_740_830_400, 0).unwrap()
    }

    fn point(s: i64, iv: Option<(f64, f64)>, verdict: Verdict) -> GateHistoryPoint {
        GateHistoryPoint {
            metric: "helpfulness".into(),
            cohort: "all".into(),
            at: t0() + Duration::seconds(s),
            estimate: iv.map(|(a, b)| (a + b) / 2.0),
            lo: iv.map(|v| v.0),
            hi: iv.map(|v| v.1),
            bound: Some(-0.3),
            method: Method::PairedDeltaCs,
            verdict,
            candidate_n: s as u64,
            stable_n: s as u64,
        }
    }

    fn evidence(iv: Option<(f64, f64)>, verdict: Verdict) -> Evidence {
        Evidence {
            metric: "helpfulness".into(),
            cohort: "all".into(),
            estimate: iv.map(|(a, b)| (a + b) / 2.0),
            interval: iv,
            margin: 0.3,
            bound: -0.3,
            direction: Direction::HigherIsBetter,
            candidate_n: 100,
            stable_n: 100,
            method: Method::PairedDeltaCs,
            unit: AnalysisUnit::Unit,
            units: None,
            alpha: 0.0125,
            verdict,
            note: None,
        }
    }

    fn attr_of<'a>(svg: &'a str, after: &str, name: &str) -> &'a str {
        let at = svg
            .find(after)
            .unwrap_or_else(|| panic!("{after} in {svg}"));
        let rest = &svg[at..];
        let key = format!(r#"{name}=""#);
        let start = rest.find(&key).unwrap() + key.len();
        &rest[start..start + rest[start..].find('"').unwrap()]
    }

    #[test]
    fn the_last_point_is_the_decisions_interval_and_unbounded_sides_are_drawn() {
        let history = vec![
            point(10, None, Verdict::InsufficientData),
            point(60, Some((-0.9, 0.7)), Verdict::Inconclusive),
            point(300, Some((-0.4, 0.3)), Verdict::Inconclusive),
        ];
        let mut srm = evidence(None, Verdict::Passed);
        srm.metric = "sample_ratio".into();
        srm.method = Method::ChiSquareSrm;
        let final_ = [
            evidence(Some((-0.2512345, 0.15)), Verdict::NonInferior),
            srm,
        ];
        let svg = history_chart(
            &history,
            Some((t0() + Duration::seconds(600), &final_)),
            t0(),
        )
        .unwrap();
        // One cell (the sample-ratio row has no interval), four points, the last the decision's.
        assert_eq!(svg.matches(r#"class="series""#).count(), 1, "{svg}");
        assert_eq!(attr_of(&svg, r#"class="series""#, "data-points"), "4");
        let last = r#"class="ci ok last""#;
        assert_eq!(attr_of(&svg, last, "data-lo"), "-0.2512345");
        assert_eq!(attr_of(&svg, last, "data-hi"), "0.15");
        assert_eq!(attr_of(&svg, last, "data-verdict"), "non_inferior");
        // The first point had no interval: drawn to both edges, dashed, labelled.
        assert_eq!(
            svg.matches(r#"class="ci warn unbounded""#).count(),
            3,
            "legend + 2 sides"
        );
        assert!(svg.contains("unbounded (too little data)"));
        assert!(svg.contains(r#"class="band ok""#) && svg.contains("10m 00s"));
        // A final point with the same numbers as the last recorded one replaces it.
        let same = [evidence(Some((-0.4, 0.3)), Verdict::Inconclusive)];
        let svg =
            history_chart(&history, Some((t0() + Duration::seconds(301), &same)), t0()).unwrap();
        assert_eq!(attr_of(&svg, r#"class="series""#, "data-points"), "3");
        // Nothing to draw: no chart.
        assert!(history_chart(&[], None, t0()).is_none());
        // An unbounded last point says so in its data.
        let open = [evidence(
            Some((f64::NEG_INFINITY, f64::INFINITY)),
            Verdict::InsufficientData,
        )];
        let svg = history_chart(&[], Some((t0(), &open)), t0()).unwrap();
        let last = r#"class="ci warn last""#;
        assert_eq!(
            (
                attr_of(&svg, last, "data-lo"),
                attr_of(&svg, last, "data-hi")
            ),
            ("-inf", "inf")
        );
        assert_eq!(attr_of(&svg, last, "data-unbounded"), "both");
    }
}
