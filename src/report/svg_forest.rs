//! The gate's forest plot, shared by the HTML report and the dashboard: every evidence row
//! with an interval (every gate metric — judge scores, checks, error rate, latency, cost — and
//! cohort), drawn with exactly the interval the verdict rests on (the cell's α after the
//! Bonferroni split; the rollback α when the verdict is `worse`), the bound dashed, and the
//! line coloured by verdict, with a legend. Metrics have their own scales, so each gets a panel.
//! An interval left unbounded for lack of data (no variance yet, or no data at all) is drawn too:
//! dashed, with arrows to the axis' edges, labelled "unbounded". Every interval carries
//! `data-metric`, `data-cohort`, `data-lo` and `data-hi` (the evidence's numbers, unrounded;
//! `-inf`/`inf` on an unbounded side, with `data-unbounded`) so that a test can hold the chart to
//! the gate. Pure and deterministic.

use std::fmt::Write as _;

use html_escape::{encode_double_quoted_attribute as attr, encode_text};

use super::format as f;
use super::svg::{Scale, Transform, line, r1, text, ticks};
use crate::gate::{Evidence, Method, Verdict};

/// The CSS class of a verdict's colour.
pub fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::NonInferior | Verdict::Passed => "ok",
        Verdict::Worse | Verdict::Invalid | Verdict::Blocked => "bad",
        Verdict::Inconclusive | Verdict::InsufficientData | Verdict::Deferred => "warn",
    }
}

/// What a panel's axis measures.
pub(super) fn axis_caption(m: Method) -> &'static str {
    match m {
        Method::Ceiling | Method::CeilingDelta => "the candidate's rate (bound: the ceiling)",
        Method::ExceedanceCs | Method::ExceedanceDeltaCs => {
            "the candidate's share above stable's quantile"
        }
        Method::ExceedanceDifferenceDeltaCs => {
            "1 − q + the candidate's share above the threshold − stable's"
        }
        Method::WinRateCs => "the candidate's pairwise win rate",
        Method::RatioCs | Method::RatioDeltaCs => "candidate ÷ stable",
        _ => "candidate − stable",
    }
}

/// The reference value drawn solid: no difference (0), or an equal ratio (1), or none.
pub(super) fn reference(m: Method) -> Option<f64> {
    match m {
        Method::RatioCs | Method::RatioDeltaCs => Some(1.0),
        Method::WinRateCs => Some(0.5),
        Method::Ceiling
        | Method::CeilingDelta
        | Method::ExceedanceCs
        | Method::ExceedanceDeltaCs
        | Method::ExceedanceDifferenceDeltaCs => None,
        _ => Some(0.0),
    }
}

/// Which sides of a row's interval are unbounded (too little data): `(lo, hi)`. A gate metric
/// with no data at all has no interval and is unbounded on both sides.
pub fn unbounded(e: &Evidence) -> Option<(bool, bool)> {
    match e.interval {
        Some((a, b)) if a.is_finite() && b.is_finite() => None,
        Some((a, b)) => Some((!a.is_finite(), !b.is_finite())),
        None if e.method == Method::None => Some((true, true)),
        None => None,
    }
}

/// Whether the plot draws a row: an interval, bounded or not (the sample-ratio and abstention
/// rows have none).
pub fn drawn(e: &Evidence) -> bool {
    e.interval.is_some() || e.method == Method::None
}

/// The rows the plot draws, grouped by metric in order.
fn panels(evidence: &[Evidence]) -> Vec<(&str, Vec<&Evidence>)> {
    let mut out: Vec<(&str, Vec<&Evidence>)> = Vec::new();
    for e in evidence.iter().filter(|e| drawn(e)) {
        match out.iter_mut().find(|(m, _)| *m == e.metric) {
            Some((_, rows)) => rows.push(e),
            None => out.push((&e.metric, vec![e])),
        }
    }
    out
}

/// The plot, or `None` when no evidence row has an interval.
pub fn evidence_forest(evidence: &[Evidence]) -> Option<String> {
    let panels = panels(evidence);
    if panels.is_empty() {
        return None;
    }
    let (label_w, right, row_h) = (170.0, 700.0, 22.0);
    let (head_h, axis_h, legend_h) = (22.0, 34.0, 26.0);
    let height = legend_h
        + panels
            .iter()
            .map(|(_, rows)| head_h + row_h * rows.len() as f64 + axis_h)
            .sum::<f64>();
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg viewBox="0 0 720 {}" role="img" class="chart forest-chart" data-chart="forest"><title>Gate evidence: each metric's interval at the gate's α, the bound dashed, coloured by verdict</title>"#,
        height.ceil()
    );
    legend(&mut o);
    let mut top = legend_h;
    for (metric, rows) in &panels {
        let first = rows[0];
        text(
            &mut o,
            8.0,
            top + 15.0,
            "start",
            "panel-title",
            &format!(
                "{metric} — {} · α per cell {}",
                f::method_short(first.method),
                f::alpha(first)
            ),
        );
        let body = top + head_h;
        let bottom = body + row_h * rows.len() as f64;
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for e in rows {
            let (a, b) = e.interval.unwrap_or((f64::NAN, f64::NAN));
            for v in [
                Some(a),
                Some(b),
                e.estimate,
                Some(e.bound),
                reference(e.method),
            ]
            .into_iter()
            .flatten()
            .filter(|v| v.is_finite())
            {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        if !lo.is_finite() {
            (lo, hi) = (-1.0, 1.0);
        }
        let pad = ((hi - lo) * 0.06).max(1e-6);
        let x = Scale::new(
            (lo - pad, hi + pad),
            (label_w + 10.0, right),
            Transform::Linear,
        );
        for t in ticks(lo - pad, hi + pad, 6) {
            line(&mut o, (x.map(t), body), (x.map(t), bottom), "grid");
            text(
                &mut o,
                x.map(t),
                bottom + 13.0,
                "middle",
                "axis",
                &format!("{t}"),
            );
        }
        if let Some(z) = reference(first.method) {
            line(&mut o, (x.map(z), body - 4.0), (x.map(z), bottom), "zero");
        }
        text(
            &mut o,
            (label_w + right) / 2.0,
            bottom + 27.0,
            "middle",
            "axis",
            axis_caption(first.method),
        );
        for (i, e) in rows.iter().enumerate() {
            row(&mut o, e, &x, body + row_h * (i as f64 + 0.5), label_w);
        }
        top = bottom + axis_h;
    }
    o.push_str("</svg>");
    Some(o)
}

fn row(o: &mut String, e: &Evidence, x: &Scale, cy: f64, label_w: f64) {
    let open = unbounded(e);
    let (lo, hi) = e.interval.unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
    let class = verdict_class(e.verdict);
    text(o, label_w, cy + 4.0, "end", "label", &e.cohort);
    line(
        o,
        (x.map(e.bound), cy - 8.0),
        (x.map(e.bound), cy + 8.0),
        "bound",
    );
    let shown = match open {
        Some(_) => format!(
            "[{}, {}] (unbounded: too little data)",
            if lo.is_finite() {
                f::signed(lo, 4)
            } else {
                "−∞".to_owned()
            },
            if hi.is_finite() {
                f::signed(hi, 4)
            } else {
                "+∞".to_owned()
            }
        ),
        None => f::interval(e.interval, 4),
    };
    let tip = format!(
        "{} · {}: estimate {} {} vs bound {} at α {} — {}",
        e.metric,
        e.cohort,
        e.estimate
            .map_or_else(|| f::MISSING.to_owned(), |v| f::signed(v, 4)),
        shown,
        f::signed(e.bound, 4),
        f::alpha(e),
        super::summary::verdict_words(e.verdict)
    );
    // An unbounded side runs to the axis' edge (the scale's range), with an arrow.
    let (left, right) = (x.map(x.domain().0), x.map(x.domain().1));
    let x1 = if lo.is_finite() { x.map(lo) } else { left };
    let x2 = if hi.is_finite() { x.map(hi) } else { right };
    let num = |v: f64| {
        if v.is_finite() {
            format!("{v}")
        } else if v < 0.0 {
            "-inf".to_owned()
        } else {
            "inf".to_owned()
        }
    };
    let (extra, data) = match open {
        Some((a, b)) => (
            " unbounded",
            format!(
                r#" data-unbounded="{}""#,
                match (a, b) {
                    (true, true) => "both",
                    (true, false) => "lo",
                    _ => "hi",
                }
            ),
        ),
        None => ("", String::new()),
    };
    let _ = write!(
        o,
        r#"<line x1="{}" y1="{}" x2="{}" y2="{}" class="ci {class}{extra}" data-metric="{}" data-cohort="{}" data-lo="{}" data-hi="{}" data-verdict="{}"{data}><title>{}</title></line>"#,
        r1(x1),
        r1(cy),
        r1(x2),
        r1(cy),
        attr(&e.metric),
        attr(&e.cohort),
        num(lo),
        num(hi),
        e.verdict.as_str(),
        encode_text(&tip)
    );
    if let Some((a, b)) = open {
        for (side, edge, dir) in [(a, left, 1.0), (b, right, -1.0)] {
            if side {
                let _ = write!(
                    o,
                    r#"<path d="M{},{} l{},-4 l0,8 Z" class="arrow"/>"#,
                    r1(edge),
                    r1(cy),
                    r1(dir * 7.0)
                );
            }
        }
        text(
            o,
            (x1 + x2) / 2.0,
            cy - 4.0,
            "middle",
            "axis",
            "unbounded (too little data)",
        );
    }
    if let Some(est) = e.estimate.filter(|v| v.is_finite()) {
        let _ = write!(
            o,
            r#"<rect x="{}" y="{}" width="6" height="6" class="est {class}"/>"#,
            r1(x.map(est) - 3.0),
            r1(cy - 3.0)
        );
    }
}

fn legend(o: &mut String) {
    let y = 14.0;
    let mut lx = 8.0;
    for (class, what) in [
        ("ok", "non-inferior (promotes)"),
        ("warn", "inconclusive / no data (holds)"),
        ("bad", "worse (rolls back)"),
    ] {
        line(
            o,
            (lx, y - 4.0),
            (lx + 18.0, y - 4.0),
            &format!("ci {class}"),
        );
        text(o, lx + 23.0, y, "start", "axis", what);
        lx += 24.0 + 6.2 * what.chars().count() as f64 + 14.0;
    }
    line(o, (lx + 8.0, y - 10.0), (lx + 8.0, y + 2.0), "bound");
    text(o, lx + 14.0, y, "start", "axis", "bound");
    line(
        o,
        (lx + 56.0, y - 4.0),
        (lx + 74.0, y - 4.0),
        "ci warn unbounded",
    );
    text(o, lx + 79.0, y, "start", "axis", "unbounded");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{AnalysisUnit, Direction};

    fn ev(metric: &str, cohort: &str, iv: Option<(f64, f64)>, verdict: Verdict) -> Evidence {
        Evidence {
            metric: metric.into(),
            cohort: cohort.into(),
            estimate: iv.map(|(a, b)| (a + b) / 2.0),
            interval: iv,
            margin: 0.3,
            bound: -0.3,
            direction: Direction::HigherIsBetter,
            candidate_n: 10,
            stable_n: 10,
            method: Method::PairedDeltaCs,
            unit: AnalysisUnit::Unit,
            units: Some((8, 8)),
            alpha: 0.0125,
            verdict,
            note: None,
        }
    }

    #[test]
    fn every_interval_is_the_evidence_interval_coloured_by_verdict() {
        let evidence = vec![
            ev(
                "helpfulness",
                "all",
                Some((-0.1234567, 0.2)),
                Verdict::NonInferior,
            ),
            ev(
                "helpfulness",
                "tier=<x>",
                Some((-2.0, -1.0)),
                Verdict::Worse,
            ),
            ev("sample_ratio", "all", None, Verdict::Passed),
            ev(
                "error_rate",
                "all",
                Some((-0.01, 0.05)),
                Verdict::Inconclusive,
            ),
        ];
        let svg = evidence_forest(&evidence).unwrap();
        assert!(
            svg.contains(
                r#"data-metric="helpfulness" data-cohort="all" data-lo="-0.1234567" data-hi="0.2""#
            ),
            "{svg}"
        );
        assert!(
            svg.contains(
                r#"class="ci bad" data-metric="helpfulness" data-cohort="tier=&lt;x&gt;""#
            ),
            "{svg}"
        );
        assert!(svg.contains(r#"class="ci warn" data-metric="error_rate""#));
        assert_eq!(
            svg.matches("data-lo=").count(),
            3,
            "rows without an interval are not drawn"
        );
        assert!(svg.contains("non-inferior (promotes)") && svg.contains("α per cell 0.0125"));
        assert!(evidence_forest(&evidence[2..3]).is_none());
    }

    #[test]
    fn unbounded_intervals_are_drawn_to_the_edges_and_labelled() {
        let mut none = ev("error_rate", "all", None, Verdict::InsufficientData);
        none.method = Method::None;
        none.estimate = None;
        let evidence = vec![
            ev(
                "helpfulness",
                "all",
                Some((f64::NEG_INFINITY, f64::INFINITY)),
                Verdict::InsufficientData,
            ),
            ev(
                "helpfulness",
                "tier=free",
                Some((-0.5, 0.25)),
                Verdict::Inconclusive,
            ),
            none,
        ];
        let svg = evidence_forest(&evidence).unwrap();
        assert_eq!(svg.matches("data-lo=").count(), 3, "{svg}");
        assert!(
            svg.contains(
                r#"class="ci warn unbounded" data-metric="helpfulness" data-cohort="all" data-lo="-inf" data-hi="inf" data-verdict="insufficient_data" data-unbounded="both""#
            ),
            "{svg}"
        );
        assert!(svg.contains(
            r#"class="ci warn unbounded" data-metric="error_rate" data-cohort="all" data-lo="-inf" data-hi="inf""#
        ));
        // The bounded row keeps its numbers; the unbounded ones reach the axis' edges (the
        // panel's range: 180 to 700) with arrows, labelled.
        assert!(svg.contains(r#"data-cohort="tier=free" data-lo="-0.5" data-hi="0.25""#));
        assert!(
            svg.contains(r#"<line x1="180" y1="59" x2="700" y2="59" class="ci warn unbounded""#),
            "{svg}"
        );
        assert_eq!(svg.matches(r#"class="arrow""#).count(), 4);
        assert_eq!(
            svg.matches("unbounded (too little data)").count(),
            2,
            "labels"
        );
        assert_eq!(
            svg.matches("(unbounded: too little data)").count(),
            2,
            "tooltips"
        );
    }

    #[test]
    fn an_unbounded_interval_survives_the_json_the_controller_records() {
        let e = ev(
            "helpfulness",
            "all",
            Some((f64::NEG_INFINITY, f64::INFINITY)),
            Verdict::InsufficientData,
        );
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["interval"], serde_json::json!([null, null]));
        let back: Evidence = serde_json::from_value(json).unwrap();
        assert_eq!(back.interval, e.interval);
        assert_eq!(unbounded(&back), Some((true, true)));
        // Evidence written without the field reads as no interval.
        let mut old = serde_json::to_value(&e).unwrap();
        old.as_object_mut().unwrap().remove("interval");
        assert_eq!(
            serde_json::from_value::<Evidence>(old).unwrap().interval,
            None
        );
    }
}
