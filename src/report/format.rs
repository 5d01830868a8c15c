//! Number and text formatting shared by the Markdown and HTML renderers, so both print the same
//! figures: missing values as `–`, rates as percentages, milliseconds, US dollars, intervals.
//! Pure.

use chrono::{DateTime, Utc};

use super::model::{Difference, StageInfo, StageMode, StageReport};
use crate::gate::{Evidence, Method};

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

/// `[lo, hi]` with `decimals` decimals; an unbounded side (too little data) is `−∞` / `+∞`.
pub fn interval(iv: Option<(f64, f64)>, decimals: usize) -> String {
    let end = |v: f64| {
        if v.is_infinite() {
            if v < 0.0 { "−∞" } else { "+∞" }.to_owned()
        } else {
            signed(v, decimals)
        }
    };
    match iv {
        Some((lo, hi)) => format!("[{}, {}]", end(lo), end(hi)),
        None => MISSING.to_owned(),
    }
}

/// A shadow stage's split as the config says it: `mirrored 100% / served 0%`.
pub fn shadow_split(mirrored: Option<f64>) -> String {
    match mirrored {
        Some(_) => format!("mirrored {} / served 0%", percent(mirrored)),
        None => "mirrored / served 0%".to_owned(),
    }
}

/// The sample-ratio section's split, one entry per variant, saying what each share is: a live
/// stage's configured served shares, or a shadow stage's mirror rate with nothing served
/// (`cand 0 units served (mirrored 100% / served 0%)`). `name` escapes for the format.
pub fn srm_split(r: &StageReport, name: impl Fn(&str) -> String) -> Vec<String> {
    let sr = &r.sample_ratio;
    sr.variants
        .iter()
        .enumerate()
        .map(|(i, (v, units, share))| {
            let what = match (r.stage.mode, i) {
                (StageMode::Shadow, 0) => shadow_split(r.stage.configured_percent),
                (StageMode::Shadow, _) => "served 100%".to_owned(),
                _ => format!("configured {}", pct(*share)),
            };
            format!("{} {units} units served ({what})", name(v))
        })
        .collect()
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

/// The one time format of every report: ISO 8601 in UTC, to the second (`2025-03-01T13:00:00Z`).
/// The dashboard prints the same and shows local time on hover.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The headers of the gate evidence table (both renderers), and [`evidence_cells`] per row
/// (unescaped text, in the same order, without the verdict and note).
pub const EVIDENCE_HEAD: [&str; 10] = [
    "metric",
    "cohort",
    "estimate",
    "interval (at the cell's α)",
    "bound",
    "counts",
    "unit · method",
    "α",
    "verdict",
    "note",
];

/// The note under the evidence table that spells out the short method names.
pub const METHOD_LEGEND: &str = "CS: anytime-valid confidence sequence; delta: delta-method \
     variance over units. α is each cell's share after the Bonferroni split over metrics × \
     cohorts; the interval is the one the verdict rests on.";

/// The counts behind an evidence row, saying what they count (the sample-ratio row tests the
/// units each variant served, its requests beside them; the abstention row abstentions of
/// attempts).
pub fn evidence_counts(e: &Evidence) -> String {
    match e.method {
        Method::ChiSquareSrm => match e.units {
            Some((c, s)) => format!(
                "units cand {c} / stable {s} (requests {} / {})",
                e.candidate_n, e.stable_n
            ),
            None => format!("requests cand {} / stable {}", e.candidate_n, e.stable_n),
        },
        Method::AbstentionRate => {
            format!("{} of {} attempts abstained", e.candidate_n, e.stable_n)
        }
        _ => match e.units {
            Some((c, s)) => format!(
                "cand {} / stable {} ({c} / {s} units)",
                e.candidate_n, e.stable_n
            ),
            None => format!("cand {} / stable {}", e.candidate_n, e.stable_n),
        },
    }
}

/// A short method name (the full one is [`Method::describe`]).
pub fn method_short(m: Method) -> &'static str {
    match m {
        Method::None => "no data",
        Method::PairedCs => "paired CS",
        Method::TwoSampleCs => "two-sample CS",
        Method::ProportionCs => "rate difference CS",
        Method::WinRateCs => "win-rate CS",
        Method::ExceedanceCs => "exceedance CS",
        Method::RatioCs => "ratio CS",
        Method::Ceiling => "ceiling CS",
        Method::ChiSquareSrm => "χ² of the split",
        Method::AbstentionRate => "rate vs threshold",
        Method::ProportionDeltaCs => "rate difference CS, delta",
        Method::PairedDeltaCs => "paired CS, delta",
        Method::ExceedanceDeltaCs => "exceedance CS, delta",
        Method::RatioDeltaCs => "ratio CS, delta",
        Method::CeilingDelta => "ceiling CS, delta",
        Method::PairedRequestsDeltaCs => "paired requests ∩ two-sample CS, delta",
        Method::ExceedanceDifferenceDeltaCs => "exceedance difference CS, delta",
    }
}

/// A cell's α: `–` for a threshold check (no α), scientific notation when tiny.
pub fn alpha(e: &Evidence) -> String {
    if e.method == Method::AbstentionRate || e.alpha.is_nan() || e.alpha <= 0.0 {
        return MISSING.to_owned();
    }
    if e.alpha < 0.0001 {
        format!("{:.1e}", e.alpha)
    } else {
        format!("{:.4}", e.alpha)
    }
}

/// The estimate of an evidence row: χ² for the split, a rate for abstentions.
pub fn evidence_estimate(e: &Evidence) -> String {
    match e.method {
        Method::ChiSquareSrm => format!("χ² {}", num(e.estimate, 3)),
        Method::AbstentionRate => pct(e.estimate),
        _ => num(e.estimate, 4),
    }
}

/// The text cells of one evidence row, in [`EVIDENCE_HEAD`] order up to `α`.
pub fn evidence_cells(e: &Evidence) -> [String; 8] {
    let bound = match e.method {
        Method::ChiSquareSrm => format!("p < {}", e.bound),
        Method::AbstentionRate => format!("≤ {}", pct(Some(e.bound))),
        _ => signed(e.bound, 4),
    };
    [
        e.metric.clone(),
        e.cohort.clone(),
        evidence_estimate(e),
        interval(e.interval, 4),
        bound,
        evidence_counts(e),
        format!("{} · {}", e.unit.as_str(), method_short(e.method)),
        alpha(e),
    ]
}

/// Which data the traffic section's sample-ratio check covers, so that it is not read as the
/// gate's row (computed when the gate decided, on the data until then).
pub fn srm_scope(r: &StageReport) -> String {
    let span = if r.stage.ended_at.is_some() {
        "over the whole stage (to its end)"
    } else {
        "over the stage so far (at report time)"
    };
    match r.decision.as_ref().and_then(|d| d.transition.as_ref()) {
        Some(t) => format!(
            "{span}; the gate's row was computed at decision, {}",
            time(t.at)
        ),
        None => span.to_owned(),
    }
}

/// The candidate's share in a stage, saying what it is: shadow serves 0% whatever its mirror
/// rate (`shadow: mirrored 100% / served 0%`).
pub fn stage_share(s: &StageInfo) -> String {
    match s.mode {
        StageMode::Shadow => format!(
            "shadow: {} (observed mirror rate {})",
            shadow_split(s.configured_percent),
            percent(s.observed_percent)
        ),
        _ => format!(
            "served: configured {} · observed {}",
            percent(s.configured_percent),
            percent(s.observed_percent)
        ),
    }
}

/// How a stage ended, from its outcome (the state the rollout moved to).
pub fn ended_as(outcome: Option<&str>) -> String {
    match outcome {
        None => "running".to_owned(),
        Some("rolled_back") => "rolled back".to_owned(),
        Some("promoted") => "promoted (the rollout is done)".to_owned(),
        Some("paused") => "paused".to_owned(),
        Some(next) => format!("promoted → {}", next.replace('_', " ")),
    }
}

/// The ramp as one line of text (the Markdown report's chart): every stage, shadow as
/// "mirrored 100% / served 0%", each decision, "you are here" on the current stage.
pub fn ramp_line(r: &StageReport) -> String {
    let n = r.plan.len().max(r.ramp.len());
    (0..n as u32)
        .map(|i| {
            let point = r.ramp.iter().find(|p| p.index == i);
            let planned = r.plan.iter().find(|p| p.index == i);
            let mode = point
                .map(|p| p.mode)
                .filter(|m| *m != StageMode::Unknown)
                .or(planned.map(|p| p.mode));
            let pct = point.and_then(|p| p.percent).or(planned.map(|p| p.percent));
            let name = point.map_or_else(|| format!("stage {i}"), |p| p.name.clone());
            let share = match mode {
                Some(StageMode::Shadow) => shadow_split(pct),
                _ => format!("{} served", percent(pct)),
            };
            let status = match point {
                None => " (planned)".to_owned(),
                Some(p) => match (&p.action, &p.outcome) {
                    (Some(a), _) => format!(" ({a})"),
                    (None, Some(o)) => format!(" ({})", ended_as(Some(o))),
                    _ => String::new(),
                },
            };
            let here = if i == r.rollout.stage_index {
                if r.summary.status == "running" {
                    " ← you are here"
                } else {
                    " ← ended here"
                }
            } else {
                ""
            };
            format!("{i} {name}: {share}{status}{here}")
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

/// What the worst-answers section shows, counted: "3 of 218 matched pairs shown (…)".
pub fn worst_caption(r: &StageReport) -> String {
    let total: u64 = r
        .pairs
        .iter()
        .filter(|p| p.cohort == "all")
        .map(|p| p.pairs)
        .sum();
    let repeats: u64 = r.worst_answers.iter().map(|w| w.repeats).sum();
    let mut s = format!(
        "{} of {total} matched pairs shown: failed hard checks first, then the lowest candidate \
         scores below stable's",
        r.worst_answers.len()
    );
    if repeats > 0 {
        s.push_str(&format!(
            "; {repeats} more with the same prompt and answers are counted, not repeated"
        ));
    }
    s.push('.');
    s
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
