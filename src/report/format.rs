//! Number and text formatting shared by the Markdown and HTML renderers, so both print the same
//! figures: missing values as `–`, rates as percentages, milliseconds, US dollars, intervals.
//! Pure.

use chrono::{DateTime, Utc};

use super::model::{Difference, StageReport};

pub const MISSING: &str = "–";

/// `x` with `decimals` decimals; `–` when missing or not finite.
pub fn num(x: Option<f64>, decimals: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => MISSING.to_owned(),
    }
}

/// A signed number (`+0.12`, `−0.30`).
pub fn signed(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return MISSING.to_owned();
    }
    if x < 0.0 {
        format!("−{:.decimals$}", -x)
    } else {
        format!("+{x:.decimals$}")
    }
}

/// A rate in 0–1 as a percentage.
pub fn pct(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{:.1}%", v * 100.0),
        _ => MISSING.to_owned(),
    }
}

/// A percentage already in 0–100 (stage shares), with as few decimals as it needs.
pub fn percent(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => {
            let s = format!("{v:.2}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            format!("{s}%")
        }
        _ => MISSING.to_owned(),
    }
}

pub fn ms(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() && v >= 100.0 => format!("{v:.0} ms"),
        Some(v) if v.is_finite() => format!("{v:.1} ms"),
        _ => MISSING.to_owned(),
    }
}

pub fn usd(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("${v:.6}"),
        _ => MISSING.to_owned(),
    }
}

pub fn p_value(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() && v < 0.0001 => format!("{v:.1e}"),
        Some(v) if v.is_finite() => format!("{v:.4}"),
        _ => MISSING.to_owned(),
    }
}

/// `[lo, hi]` with `decimals` decimals.
pub fn interval(iv: Option<(f64, f64)>, decimals: usize) -> String {
    match iv {
        Some((lo, hi)) => format!("[{}, {}]", signed(lo, decimals), signed(hi, decimals)),
        None => MISSING.to_owned(),
    }
}

/// `+0.12 [−0.05, +0.29]`.
pub fn difference(d: Option<&Difference>) -> String {
    match d {
        Some(d) => format!(
            "{} {}",
            signed(d.estimate, 3),
            interval(Some((d.lo, d.hi)), 3)
        ),
        None => MISSING.to_owned(),
    }
}

pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `1h 02m 03s`, `4m 05s`, `12.5s`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return MISSING.to_owned();
    }
    let whole = seconds.round() as u64;
    let (h, m, s) = (whole / 3600, whole / 60 % 60, whole % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{seconds:.1}s")
    }
}

/// The confidence level of the report's intervals, e.g. `95%`.
pub fn level(report: &StageReport) -> String {
    let l = (1.0 - report.interval_alpha) * 100.0;
    let s = format!("{l:.2}");
    format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
}

/// The A/A table's header and rows (`esc` escapes text for the output format): per criterion
/// and check, the pairs and the difference "second stable − stable" with its interval, and the
/// pairwise verdicts.
pub fn aa_rows(
    r: &StageReport,
    esc: impl Fn(&str) -> String,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let head = vec![
        "criterion or check",
        "n",
        "difference (aa − stable)",
        "win/tie/loss",
    ];
    let mut rows = Vec::new();
    for c in &r.aa.criteria {
        rows.push(vec![
            esc(&c.criterion),
            c.difference
                .map_or_else(|| c.stable_n.min(c.candidate_n), |d| d.n)
                .to_string(),
            difference(c.difference.as_ref()),
            c.win_tie_loss.as_ref().map_or(MISSING.into(), |w| {
                format!(
                    "{} / {} / {} (win rate {} {})",
                    w.wins,
                    w.ties,
                    w.losses,
                    num(w.win_rate, 3),
                    interval(w.interval, 3)
                )
            }),
        ]);
    }
    for c in &r.aa.checks {
        rows.push(vec![
            format!("{} (check)", esc(&c.check)),
            c.difference.map_or(c.stable_n, |d| d.n).to_string(),
            difference(c.difference.as_ref()),
            MISSING.into(),
        ]);
    }
    (head, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_missing_and_signed_values() {
        assert_eq!(num(None, 2), "–");
        assert_eq!(num(Some(f64::NAN), 2), "–");
        assert_eq!(signed(-0.3, 2), "−0.30");
        assert_eq!(percent(Some(0.5)), "0.5%");
        assert_eq!(percent(Some(100.0)), "100%");
        assert_eq!(pct(Some(0.125)), "12.5%");
        assert_eq!(duration(3723.0), "1h 02m 03s");
        assert_eq!(duration(12.46), "12.5s");
        assert_eq!(p_value(Some(0.00001)), "1.0e-5");
    }
}
