//! Inline SVG charts for the HTML report: scales and drawing primitives, the ramp curve over
//! time and a forest plot of score-difference intervals (latency distributions per variant are
//! in `svg_latency`). Each chart is a string
//! holding one `<svg>` element with a `<title>`, sized by `viewBox` so that it scales with the
//! page and prints sharply (inline SVG in HTML needs no namespace, so the file names no URL). Labels are escaped. Pure: no I/O, no clock, deterministic output
//! (coordinates rounded to 0.1).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use html_escape::encode_text;

use super::model::RampPoint;

/// How a scale transforms its domain before mapping it linearly onto its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    Linear,
    /// For percentages: small stages (0.5%, 2%) stay visible beside 100%.
    Sqrt,
    /// For latencies, whose histogram buckets are log-spaced.
    Log10,
}

/// Maps a data domain onto a pixel range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    d0: f64,
    d1: f64,
    r0: f64,
    r1: f64,
    t: Transform,
}

impl Scale {
    /// A degenerate domain (`lo == hi`) is widened so that its value maps to the middle.
    pub fn new(domain: (f64, f64), range: (f64, f64), t: Transform) -> Self {
        let f = |x: f64| match t {
            Transform::Linear => x,
            Transform::Sqrt => x.max(0.0).sqrt(),
            Transform::Log10 => x.max(1e-9).log10(),
        };
        let (mut d0, mut d1) = (f(domain.0), f(domain.1));
        if !(d1 - d0).is_normal() {
            let pad = if d0.abs() > 0.0 { d0.abs() * 0.5 } else { 1.0 };
            d0 -= pad;
            d1 += pad;
        }
        Self {
            d0,
            d1,
            r0: range.0,
            r1: range.1,
            t,
        }
    }

    pub fn map(&self, x: f64) -> f64 {
        let v = match self.t {
            Transform::Linear => x,
            Transform::Sqrt => x.max(0.0).sqrt(),
            Transform::Log10 => x.max(1e-9).log10(),
        };
        self.r0 + (v - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }
}

/// "Nice" tick values (1, 2 or 5 × 10^k apart) covering `[lo, hi]`, at most about `count`.
pub fn ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || count == 0 {
        return vec![lo];
    }
    let raw = (hi - lo) / count as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| (hi - lo) / s <= count as f64)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last)
        .map(|i| {
            let v = i as f64 * step;
            // Avoid −0 and float dust such as 0.30000000000000004.
            let v = (v / step).round() * step;
            if v == 0.0 {
                0.0
            } else {
                (v * 1e9).round() / 1e9
            }
        })
        .collect()
}

pub(super) fn r1(x: f64) -> String {
    let v = (x * 10.0).round() / 10.0;
    if v == 0.0 {
        "0".to_owned()
    } else {
        format!("{v}")
    }
}

pub(super) fn open(o: &mut String, w: u32, h: u32, title: &str) {
    let _ = write!(
        o,
        r#"<svg viewBox="0 0 {w} {h}" role="img" class="chart"><title>{}</title>"#,
        encode_text(title)
    );
}

pub(super) fn text(o: &mut String, x: f64, y: f64, anchor: &str, class: &str, s: &str) {
    let _ = write!(
        o,
        r#"<text x="{}" y="{}" text-anchor="{anchor}" class="{class}">{}</text>"#,
        r1(x),
        r1(y),
        encode_text(s)
    );
}

pub(super) fn line(o: &mut String, (x1, y1): (f64, f64), (x2, y2): (f64, f64), class: &str) {
    let _ = write!(
        o,
        r#"<line x1="{}" y1="{}" x2="{}" y2="{}" class="{class}"/>"#,
        r1(x1),
        r1(y1),
        r1(x2),
        r1(y2)
    );
}

/// The CSS class of a stage decision or outcome marker.
/// An outcome is the state the rollout moved to: a stage left for any state but rollback or
/// pause was promoted.
fn action_class(p: &RampPoint) -> &'static str {
    match (p.action.as_deref(), p.outcome.as_deref()) {
        (Some("promote"), _) => "ok",
        (Some("rollback"), _) => "bad",
        (Some("hold"), _) => "warn",
        (_, Some("rolled_back")) => "bad",
        (_, Some("paused")) => "warn",
        (_, Some(_)) => "ok",
        _ => "none",
    }
}

/// Candidate percentage per stage over time (square-root y axis), with each stage's decision
/// as a coloured marker at its end (green promote, red rollback, amber hold, grey none).
pub fn ramp_curve(points: &[RampPoint], now: DateTime<Utc>) -> String {
    let (w, h) = (720u32, 260u32);
    let (left, right, top, bottom) = (52.0, 700.0, 24.0, 214.0);
    let mut o = String::new();
    open(
        &mut o,
        w,
        h,
        "Ramp: candidate percentage per stage over time",
    );
    let Some(first) = points.first() else {
        text(&mut o, 360.0, 130.0, "middle", "muted", "no stages");
        o.push_str("</svg>");
        return o;
    };
    let end_of = |p: &RampPoint| p.ended_at.unwrap_or(now).max(p.started_at);
    let t0 = first.started_at.timestamp_millis() as f64;
    let t1 = points
        .iter()
        .map(|p| end_of(p).timestamp_millis() as f64)
        .fold(t0, f64::max);
    let x = Scale::new((t0, t1), (left, right), Transform::Linear);
    let y = Scale::new((0.0, 100.0), (bottom, top), Transform::Sqrt);
    for t in [0.0, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0] {
        line(&mut o, (left, y.map(t)), (right, y.map(t)), "grid");
        text(
            &mut o,
            left - 6.0,
            y.map(t) + 4.0,
            "end",
            "axis",
            &format!("{t}%"),
        );
    }
    let mut path = String::new();
    for (i, p) in points.iter().enumerate() {
        let pct = p.percent.unwrap_or(0.0).clamp(0.0, 100.0);
        let (xa, xb) = (
            x.map(p.started_at.timestamp_millis() as f64),
            x.map(end_of(p).timestamp_millis() as f64),
        );
        let _ = write!(
            path,
            "{}{} {} L{} {} ",
            if i == 0 { "M" } else { "L" },
            r1(xa),
            r1(y.map(pct)),
            r1(xb),
            r1(y.map(pct))
        );
    }
    let _ = write!(o, r#"<path d="{}" class="ramp"/>"#, path.trim_end());
    for p in points {
        let pct = p.percent.unwrap_or(0.0).clamp(0.0, 100.0);
        let xb = x.map(end_of(p).timestamp_millis() as f64);
        let pct_text = p.percent.map_or("?%".into(), |v| {
            let s = format!("{v:.2}");
            format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
        });
        let label = match (&p.action, &p.outcome) {
            (Some(a), _) => format!("{} {pct_text} · {a}", p.name),
            (None, Some(to)) => format!("{} {pct_text} → {to}", p.name),
            (None, None) => format!("{} {pct_text}", p.name),
        };
        let _ = write!(
            o,
            r#"<circle cx="{}" cy="{}" r="5" class="marker {}"><title>{}</title></circle>"#,
            r1(xb),
            r1(y.map(pct)),
            action_class(p),
            encode_text(&format!(
                "stage {} {}: {}% {}",
                p.index,
                p.name,
                p.percent.map_or("?".into(), |v| format!("{v}")),
                p.action
                    .as_deref()
                    .or(p.outcome.as_deref())
                    .unwrap_or("no decision")
            ))
        );
        let xa = x.map(p.started_at.timestamp_millis() as f64);
        text(&mut o, xa + 3.0, y.map(pct) - 8.0, "start", "label", &label);
    }
    let fmt = |t: DateTime<Utc>| t.format("%m-%d %H:%M").to_string();
    text(
        &mut o,
        left,
        bottom + 20.0,
        "start",
        "axis",
        &fmt(first.started_at),
    );
    if let Some(last) = points.last() {
        text(
            &mut o,
            right,
            bottom + 20.0,
            "end",
            "axis",
            &fmt(end_of(last)),
        );
    }
    text(
        &mut o,
        (left + right) / 2.0,
        bottom + 38.0,
        "middle",
        "axis",
        "time (UTC)",
    );
    o.push_str("</svg>");
    o
}

/// One interval of a forest plot.
#[derive(Debug, Clone, PartialEq)]
pub struct ForestRow {
    pub label: String,
    pub estimate: f64,
    pub lo: f64,
    pub hi: f64,
    /// The gate's bound for this row (e.g. −margin), drawn dashed when known.
    pub bound: Option<f64>,
}

/// The x scale of a forest plot: covers every interval, every bound and zero.
pub fn forest_scale(rows: &[ForestRow], range: (f64, f64)) -> Scale {
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for r in rows {
        for v in [r.lo, r.hi, r.estimate].into_iter().chain(r.bound) {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    let pad = (hi - lo) * 0.05;
    Scale::new((lo - pad, hi + pad), range, Transform::Linear)
}

/// Score differences (candidate − stable) with their intervals, one row each; green when the
/// interval lies above 0, red when below, grey when it straddles 0.
pub fn forest_plot(rows: &[ForestRow], title: &str) -> String {
    let (label_w, right, row_h, top) = (230.0, 700.0, 22.0, 16.0);
    let h = (top + row_h * rows.len() as f64 + 40.0).ceil() as u32;
    let mut o = String::new();
    open(&mut o, 720, h, title);
    let x = forest_scale(rows, (label_w + 10.0, right));
    let bottom = top + row_h * rows.len() as f64;
    let (lo, hi) = (x.d0, x.d1);
    for t in ticks(lo, hi, 6) {
        line(&mut o, (x.map(t), top), (x.map(t), bottom), "grid");
        text(
            &mut o,
            x.map(t),
            bottom + 14.0,
            "middle",
            "axis",
            &format!("{t}"),
        );
    }
    line(
        &mut o,
        (x.map(0.0), top - 6.0),
        (x.map(0.0), bottom),
        "zero",
    );
    for (i, r) in rows.iter().enumerate() {
        let cy = top + row_h * (i as f64 + 0.5);
        let class = if r.lo > 0.0 {
            "ok"
        } else if r.hi < 0.0 {
            "bad"
        } else {
            "none"
        };
        text(&mut o, label_w, cy + 4.0, "end", "label", &r.label);
        if let Some(b) = r.bound {
            line(&mut o, (x.map(b), cy - 8.0), (x.map(b), cy + 8.0), "bound");
        }
        line(
            &mut o,
            (x.map(r.lo), cy),
            (x.map(r.hi), cy),
            &format!("ci {class}"),
        );
        let _ = write!(
            o,
            r#"<rect x="{}" y="{}" width="6" height="6" class="est {class}"><title>{}</title></rect>"#,
            r1(x.map(r.estimate) - 3.0),
            r1(cy - 3.0),
            encode_text(&format!(
                "{}: {:.3} [{:.3}, {:.3}]",
                r.label, r.estimate, r.lo, r.hi
            ))
        );
    }
    text(
        &mut o,
        (label_w + right) / 2.0,
        bottom + 30.0,
        "middle",
        "axis",
        "candidate − stable",
    );
    o.push_str("</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn scales_map_domain_ends_onto_range_ends() {
        let s = Scale::new((-1.0, 1.0), (100.0, 300.0), Transform::Linear);
        assert_eq!(s.map(-1.0), 100.0);
        assert_eq!(s.map(0.0), 200.0);
        assert_eq!(s.map(1.0), 300.0);
        // Inverted range (SVG y grows downwards).
        let y = Scale::new((0.0, 100.0), (200.0, 0.0), Transform::Sqrt);
        assert_eq!(y.map(0.0), 200.0);
        assert_eq!(y.map(25.0), 100.0); // sqrt(25)/sqrt(100) = ½
        assert_eq!(y.map(100.0), 0.0);
        let l = Scale::new((1.0, 1000.0), (0.0, 300.0), Transform::Log10);
        assert!((l.map(10.0) - 100.0).abs() < 1e-9);
        // A degenerate domain maps its single value to the middle.
        let d = Scale::new((5.0, 5.0), (0.0, 100.0), Transform::Linear);
        assert_eq!(d.map(5.0), 50.0);
    }

    #[test]
    fn ticks_are_round_numbers_inside_the_domain() {
        assert_eq!(ticks(-0.3, 0.5, 5), vec![-0.2, 0.0, 0.2, 0.4]);
        assert_eq!(ticks(0.0, 100.0, 4), vec![0.0, 50.0, 100.0]);
        assert_eq!(ticks(1.0, 1.0, 5), vec![1.0]);
    }

    #[test]
    fn forest_plot_places_zero_and_colours_by_side() {
        let rows = vec![
            ForestRow {
                label: "helpfulness · all".into(),
                estimate: -0.5,
                lo: -0.9,
                hi: -0.1,
                bound: Some(-0.2),
            },
            ForestRow {
                label: "<b>x</b>".into(),
                estimate: 0.3,
                lo: 0.1,
                hi: 0.5,
                bound: None,
            },
        ];
        // Domain [−0.9, 0.5] padded by 5% of 1.4 each side → [−0.97, 0.57] over [240, 700].
        let s = forest_scale(&rows, (240.0, 700.0));
        let zero = 240.0 + 0.97 / 1.54 * 460.0;
        assert!((s.map(0.0) - zero).abs() < 1e-9);
        let svg = forest_plot(&rows, "t");
        assert!(
            svg.contains(&format!(r#"x1="{}" y1="10""#, r1(zero))),
            "{svg}"
        );
        assert!(svg.contains(r#"class="ci bad""#) && svg.contains(r#"class="ci ok""#));
        assert!(svg.contains("&lt;b&gt;x&lt;/b&gt;") && !svg.contains("<b>"));
    }

    #[test]
    fn ramp_curve_marks_every_stage_with_its_decision() {
        let t = |m: i64| Utc.timestamp_opt(1_700_000_000 + m * 60, 0).unwrap();
        let p = |i: u32, pct: f64, a: i64, b: Option<i64>, action: Option<&str>| RampPoint {
            index: i,
            name: format!("s{i}"),
            percent: Some(pct),
            started_at: t(a),
            ended_at: b.map(t),
            outcome: None,
            action: action.map(str::to_owned),
        };
        let points = vec![
            p(0, 100.0, 0, Some(30), Some("promote")),
            p(1, 1.0, 30, Some(90), Some("rollback")),
            p(2, 25.0, 90, None, None),
        ];
        let svg = ramp_curve(&points, t(120));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(
            svg.contains("marker ok") && svg.contains("marker bad") && svg.contains("marker none")
        );
        // Stage 1 (1%) ends at minute 90 of 120: x = 52 + 0.75·648 = 538; y = 214 − 0.1·190.
        assert!(svg.contains(r#"cx="538" cy="195""#), "{svg}");
        assert!(ramp_curve(&[], t(0)).contains("no stages"));
    }
}
