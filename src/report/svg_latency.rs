//! The latency chart of the HTML report: each variant's latency distribution (share of
//! successful requests per log-spaced bin) as a step line over a log millisecond axis. The
//! store's 5% buckets are merged into at most [`MAX_BINS`] bins with the same edges for every
//! variant, so the lines compare bin by bin. Pure, deterministic.

use std::fmt::Write as _;

use super::svg::{Scale, Transform, line, open, r1, text};

/// One variant's latency histogram: (bucket upper bound in ms, count).
#[derive(Debug, Clone, PartialEq)]
pub struct Series<'a> {
    pub name: &'a str,
    /// CSS class of the line (`stable` or `candidate`).
    pub class: &'a str,
    pub buckets: &'a [(f64, u64)],
}

/// At most this many bins in a latency chart: the 5% storage buckets are merged in groups.
pub const MAX_BINS: usize = 24;

/// The storage bucket index of a bucket's upper bound (`1.05^i`).
fn bucket_index(upper_ms: f64) -> i64 {
    (upper_ms.max(1.0).ln() / 1.05f64.ln()).round() as i64
}

/// Merges every series' buckets into at most [`MAX_BINS`] groups of equal log width over their
/// common range: (lower ms, upper ms, count) per group, the same edges for every series.
pub fn coarsen(series: &[&[(f64, u64)]]) -> Vec<Vec<(f64, f64, u64)>> {
    let idx: Vec<i64> = series
        .iter()
        .flat_map(|b| b.iter().map(|&(ub, _)| bucket_index(ub)))
        .collect();
    let (Some(&min), Some(&max)) = (idx.iter().min(), idx.iter().max()) else {
        return series.iter().map(|_| Vec::new()).collect();
    };
    let span = (max - min + 1) as usize;
    let group = span.div_ceil(MAX_BINS).max(1) as i64;
    let bins = (span as i64 + group - 1) / group;
    let edge = |i: i64| 1.05f64.powi(i as i32);
    series
        .iter()
        .map(|buckets| {
            let mut counts = vec![0u64; bins as usize];
            for &(ub, c) in buckets.iter() {
                let k = ((bucket_index(ub) - min) / group) as usize;
                if let Some(slot) = counts.get_mut(k) {
                    *slot += c;
                }
            }
            counts
                .into_iter()
                .enumerate()
                .map(|(k, c)| {
                    let k = k as i64;
                    (
                        edge(min + k * group - 1),
                        edge(min + (k + 1) * group - 1),
                        c,
                    )
                })
                .collect()
        })
        .collect()
}

/// Log-axis ticks at 1, 2 and 5 × 10^k inside `[lo, hi]`.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for d in (lo.log10().floor() as i32)..=(hi.log10().ceil() as i32) {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(d);
            if v >= lo && v <= hi {
                out.push(v);
            }
        }
    }
    out
}

fn ms_label(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} s", v / 1000.0)
    } else {
        format!("{v} ms")
    }
}

/// Latency distributions per variant: the share of requests per bin (log-spaced, at most
/// [`MAX_BINS`]) as step lines over a log millisecond axis.
pub fn latency_chart(series: &[Series<'_>], title: &str) -> String {
    let (left, right, top, bottom) = (52.0, 700.0, 34.0, 196.0);
    let mut o = String::new();
    open(&mut o, 720, 240, title);
    let binned = coarsen(&series.iter().map(|s| s.buckets).collect::<Vec<_>>());
    let edges: Vec<(f64, f64)> = binned.iter().flatten().map(|&(a, b, _)| (a, b)).collect();
    let (Some(lo), Some(hi)) = (
        edges.iter().map(|e| e.0).reduce(f64::min),
        edges.iter().map(|e| e.1).reduce(f64::max),
    ) else {
        text(
            &mut o,
            360.0,
            120.0,
            "middle",
            "muted",
            "no successful requests",
        );
        o.push_str("</svg>");
        return o;
    };
    let share = |bins: &[(f64, f64, u64)], c: u64| {
        c as f64 / bins.iter().map(|b| b.2).sum::<u64>().max(1) as f64
    };
    let peak = binned
        .iter()
        .flat_map(|bins| bins.iter().map(|b| share(bins, b.2)))
        .fold(0.0, f64::max);
    let x = Scale::new((lo.max(0.1), hi), (left, right), Transform::Log10);
    let y = Scale::new((0.0, peak.max(1e-9)), (bottom, top), Transform::Linear);
    for v in log_ticks(lo.max(0.1), hi) {
        line(&mut o, (x.map(v), top), (x.map(v), bottom), "grid");
        text(
            &mut o,
            x.map(v),
            bottom + 14.0,
            "middle",
            "axis",
            &ms_label(v),
        );
    }
    line(&mut o, (left, bottom), (right, bottom), "grid");
    // The y axis: the share of a variant's successful requests per bin.
    line(&mut o, (left, top), (left, bottom), "grid");
    for t in super::svg::ticks(0.0, peak, 3) {
        text(
            &mut o,
            left - 4.0,
            y.map(t) + 4.0,
            "end",
            "axis",
            &format!("{}%", (t * 1000.0).round() / 10.0),
        );
    }
    for (i, (s, bins)) in series.iter().zip(&binned).enumerate() {
        let total: u64 = bins.iter().map(|b| b.2).sum();
        let lx = left + 320.0 * i as f64;
        line(
            &mut o,
            (lx, 14.0),
            (lx + 20.0, 14.0),
            &format!("hist {}", s.class),
        );
        text(
            &mut o,
            lx + 26.0,
            18.0,
            "start",
            "label",
            &format!("{}: {total} successful requests", s.name),
        );
        if total == 0 {
            continue;
        }
        let mut d = String::new();
        for (j, &(a, b, c)) in bins.iter().enumerate() {
            let (xa, xb, yy) = (x.map(a), x.map(b), y.map(share(bins, c)));
            let _ = write!(
                d,
                "{}{} {} L{} {} L{} {} ",
                if j == 0 { "M" } else { "L" },
                r1(xa),
                r1(if j == 0 { bottom } else { yy }),
                r1(xa),
                r1(yy),
                r1(xb),
                r1(yy)
            );
        }
        let _ = write!(d, "L{} {}", r1(x.map(hi)), r1(bottom));
        let _ = write!(
            o,
            r#"<path d="{}" class="hist {}"/>"#,
            d.trim_end(),
            s.class
        );
    }
    text(
        &mut o,
        (left + right) / 2.0,
        bottom + 34.0,
        "middle",
        "axis",
        "latency (log scale), share of successful requests",
    );
    o.push_str("</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarsening_keeps_counts_and_shares_edges() {
        // Buckets 1.05^0 … 1.05^99 (100 buckets, one value each) → groups of 5: 20 bins.
        let a: Vec<(f64, u64)> = (0..100).map(|i| (1.05f64.powi(i), 1)).collect();
        let b = [(1.05f64.powi(50), 7)];
        let bins = coarsen(&[&a, &b]);
        assert_eq!(bins[0].len(), 20);
        assert!(bins[0].iter().all(|g| g.2 == 5));
        assert_eq!(bins[1].iter().map(|g| g.2).sum::<u64>(), 7);
        assert_eq!(bins[1][10].2, 7); // bucket 50 falls in group 50 / 5 = 10
        assert_eq!((bins[0][3].0, bins[0][3].1), (bins[1][3].0, bins[1][3].1));
        assert!((bins[0][0].1 - 1.05f64.powi(4)).abs() < 1e-12);
        assert_eq!(log_ticks(150.0, 700.0), vec![200.0, 500.0]);
    }

    #[test]
    fn latency_chart_draws_one_line_per_variant() {
        let a = [(10.0, 5), (100.0, 5)];
        let b = [(20.0, 10)];
        let svg = latency_chart(
            &[
                Series {
                    name: "stable",
                    class: "stable",
                    buckets: &a,
                },
                Series {
                    name: "cand",
                    class: "candidate",
                    buckets: &b,
                },
            ],
            "latency",
        );
        assert_eq!(svg.matches(r#"<path"#).count(), 2);
        assert!(
            svg.contains("stable: 10 successful requests")
                && svg.contains("50 ms")
                && svg.contains("20 ms")
        );
        assert!(latency_chart(&[], "x").contains("no successful requests"));
    }
}
