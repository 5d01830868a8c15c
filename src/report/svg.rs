//! Inline SVG charts for the HTML report and the dashboard: scales and drawing primitives and
//! a forest plot of score-difference intervals at the report's level (the ramp is `svg_ramp`,
//! the gate's own intervals `svg_forest`, latency distributions `svg_latency`). Each chart is a string
//! holding one `<svg>` element with a `<title>`, sized by `viewBox` so that it scales with the
//! page and prints sharply (inline SVG in HTML needs no namespace, so the file names no URL). Labels are escaped. Pure: no I/O, no clock, deterministic output
//! (coordinates rounded to 0.1).

use std::fmt::Write as _;

use html_escape::encode_text;

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

    /// The domain's ends (after the transform; the identity for a linear scale).
    pub fn domain(&self) -> (f64, f64) {
        (self.d0, self.d1)
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
}
