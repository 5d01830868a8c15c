//! The ramp chart, shared by the HTML report and the dashboard (which fetches it from the
//! admin API): one column per stage of the ramp, so the axis ends at the last stage whatever
//! the time, the candidate's served share on a square-root scale (0.5% stays visible beside
//! 100%), shadow drawn as a hatched band at 0% ("mirrored, 0% served": clients always got
//! stable), stages not reached yet dashed, each stage's decision as a coloured marker, and
//! "you are here" on the rollout's current stage (or where it ended). Pure and deterministic.

use std::fmt::Write as _;

use html_escape::encode_text;

use super::format as f;
use super::model::{PlannedStage, RampPoint, StageMode};
use super::svg::{Scale, Transform, line, r1, text};

/// What the chart marks besides the stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    /// The rollout's current stage (or the one it ended in).
    pub here: Option<u32>,
    /// Whether the rollout is still running ("you are here") or ended there ("ended here").
    pub running: bool,
    /// The stage a report is about, outlined when it is not `here`.
    pub this_report: Option<u32>,
}

/// One column of the chart: a stage reached (with its point) or only planned.
struct Column<'a> {
    index: u32,
    name: String,
    mode: StageMode,
    percent: Option<f64>,
    reached: Option<&'a RampPoint>,
}

fn columns<'a>(points: &'a [RampPoint], plan: &[PlannedStage]) -> Vec<Column<'a>> {
    let n = plan.len().max(
        points
            .iter()
            .map(|p| p.index as usize + 1)
            .max()
            .unwrap_or(0),
    );
    (0..n as u32)
        .map(|i| {
            let point = points.iter().find(|p| p.index == i);
            let planned = plan.iter().find(|p| p.index == i);
            let mode = match (point.map(|p| p.mode), planned.map(|p| p.mode)) {
                (Some(m), _) if m != StageMode::Unknown => m,
                (_, Some(m)) => m,
                (m, None) => m.unwrap_or(StageMode::Unknown),
            };
            Column {
                index: i,
                name: point.map_or_else(
                    || match mode {
                        StageMode::Shadow => "shadow".to_owned(),
                        _ => format!("stage {i}"),
                    },
                    |p| p.name.clone(),
                ),
                mode,
                percent: point.and_then(|p| p.percent).or(planned.map(|p| p.percent)),
                reached: point,
            }
        })
        .collect()
}

/// The served share the chart draws: 0 for shadow (the candidate answered no client).
fn served(c: &Column<'_>) -> f64 {
    match c.mode {
        StageMode::Shadow => 0.0,
        _ => c.percent.unwrap_or(0.0).clamp(0.0, 100.0),
    }
}

fn marker_class(p: &RampPoint) -> &'static str {
    match (p.action.as_deref(), p.outcome.as_deref()) {
        (Some("promote"), _) => "ok",
        (Some("rollback"), _) | (_, Some("rolled_back")) => "bad",
        (Some("hold"), _) | (_, Some("paused")) => "warn",
        (_, Some(_)) => "ok",
        _ => "none",
    }
}

/// Shortens `s` to at most `max` characters, with an ellipsis.
fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The ramp chart (see the module comment).
pub fn ramp_chart(points: &[RampPoint], plan: &[PlannedStage], marks: Marks) -> String {
    let cols = columns(points, plan);
    let (w, h) = (720.0, 250.0);
    let (left, right, top, bottom) = (52.0, 708.0, 30.0, 190.0);
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg viewBox="0 0 {w} {h}" role="img" class="chart ramp-chart" data-chart="ramp" data-stages="{}"{}><title>Ramp: the candidate's served share per stage; shadow is mirrored, 0% served</title>"#,
        cols.len(),
        marks
            .here
            .map_or_else(String::new, |k| format!(r#" data-here="{k}""#))
    );
    o.push_str(
        r#"<defs><pattern id="ramp-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" class="hatch-line"/></pattern></defs>"#,
    );
    if cols.is_empty() {
        text(&mut o, w / 2.0, h / 2.0, "middle", "muted", "no stages");
        o.push_str("</svg>");
        return o;
    }
    let y = Scale::new((0.0, 100.0), (bottom, top), Transform::Sqrt);
    let band = (right - left) / cols.len() as f64;
    let x0 = |i: u32| left + band * f64::from(i);
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
    text(
        &mut o,
        4.0,
        14.0,
        "start",
        "axis",
        "candidate's served share",
    );
    // Highlights first, so that lines and labels draw over them.
    if let Some(k) = marks.this_report.filter(|k| Some(*k) != marks.here)
        && (k as usize) < cols.len()
    {
        let _ = write!(
            o,
            r#"<rect x="{}" y="{top}" width="{}" height="{}" class="this-report" data-stage="{k}"/>"#,
            r1(x0(k)),
            r1(band),
            r1(bottom - top)
        );
        text(
            &mut o,
            x0(k) + band / 2.0,
            top - 4.0,
            "middle",
            "axis",
            "this report",
        );
    }
    if let Some(k) = marks.here
        && (k as usize) < cols.len()
    {
        let label = if marks.running {
            "you are here"
        } else {
            "ended here"
        };
        let _ = write!(
            o,
            r#"<rect x="{}" y="{top}" width="{}" height="{}" class="here" data-stage="{k}"><title>{label}: stage {k}</title></rect>"#,
            r1(x0(k)),
            r1(band),
            r1(bottom - top)
        );
        text(
            &mut o,
            x0(k) + band / 2.0,
            top - 4.0,
            "middle",
            "here-label",
            label,
        );
    }
    let mut reached_path = String::new();
    let mut planned_path = String::new();
    let mut prev: Option<(f64, bool)> = None;
    for c in &cols {
        let (xa, xb) = (x0(c.index), x0(c.index) + band);
        let yy = y.map(served(c));
        let reached = c.reached.is_some();
        if c.mode == StageMode::Shadow {
            let _ = write!(
                o,
                r#"<rect x="{}" y="{}" width="{}" height="12" class="shadow-band{}" data-stage="{}" data-served="0"><title>stage {} {}: shadow, {}</title></rect>"#,
                r1(xa + 2.0),
                r1(bottom - 12.0),
                r1(band - 4.0),
                if reached { "" } else { " planned" },
                c.index,
                c.index,
                encode_text(&c.name),
                f::shadow_split(c.percent)
            );
            text(
                &mut o,
                (xa + xb) / 2.0,
                bottom - 18.0,
                "middle",
                "label",
                &fit(&f::shadow_split(c.percent), (band / 5.6) as usize),
            );
        } else {
            text(
                &mut o,
                (xa + xb) / 2.0,
                yy - 6.0,
                "middle",
                "label",
                &f::percent(c.percent),
            );
        }
        let path = if reached {
            &mut reached_path
        } else {
            &mut planned_path
        };
        match prev {
            // Continue the line from the previous column; a planned column starts its own
            // dashed path at the previous column's level.
            Some((_, was_reached)) if was_reached == reached => {
                let _ = write!(path, "L{} {} L{} {} ", r1(xa), r1(yy), r1(xb), r1(yy));
            }
            Some((py, _)) => {
                let _ = write!(
                    path,
                    "M{} {} L{} {} L{} {} ",
                    r1(xa),
                    r1(py),
                    r1(xa),
                    r1(yy),
                    r1(xb),
                    r1(yy)
                );
            }
            None => {
                let _ = write!(path, "M{} {} L{} {} ", r1(xa), r1(yy), r1(xb), r1(yy));
            }
        }
        prev = Some((yy, reached));
        // Labels under the axis: index and name, then how long it ran (or "planned").
        let chars = (band / 6.2) as usize;
        text(
            &mut o,
            (xa + xb) / 2.0,
            bottom + 16.0,
            "middle",
            "label",
            &fit(&format!("{} {}", c.index, c.name), chars),
        );
        let second = match c.reached {
            Some(p) => match p.ended_at {
                Some(end) => f::duration((end - p.started_at).num_milliseconds() as f64 / 1000.0),
                None => "running".to_owned(),
            },
            None => "planned".to_owned(),
        };
        text(
            &mut o,
            (xa + xb) / 2.0,
            bottom + 30.0,
            "middle",
            "axis",
            &fit(&second, chars),
        );
        if let Some(p) = c.reached.filter(|p| p.ended_at.is_some()) {
            let _ = write!(
                o,
                r#"<circle cx="{}" cy="{}" r="5" class="marker {}"><title>{}</title></circle>"#,
                r1(xb - 1.0),
                r1(yy),
                marker_class(p),
                encode_text(&format!(
                    "stage {} {}: {}{}, {} → {}",
                    p.index,
                    p.name,
                    p.action.as_deref().unwrap_or("no gate decision"),
                    p.outcome
                        .as_deref()
                        .map_or_else(String::new, |o| format!(" → {o}")),
                    f::time(p.started_at),
                    p.ended_at.map_or_else(|| "running".to_owned(), f::time)
                ))
            );
        }
    }
    let _ = write!(o, r#"<path d="{}" class="ramp"/>"#, reached_path.trim_end());
    if !planned_path.is_empty() {
        let _ = write!(
            o,
            r#"<path d="{}" class="ramp planned"/>"#,
            planned_path.trim_end()
        );
    }
    // The legend.
    let ly = h - 12.0;
    let _ = write!(
        o,
        r#"<rect x="{left}" y="{}" width="18" height="9" class="shadow-band"/>"#,
        r1(ly - 8.0)
    );
    text(
        &mut o,
        left + 24.0,
        ly,
        "start",
        "axis",
        "shadow: mirrored, 0% served",
    );
    line(
        &mut o,
        (left + 200.0, ly - 4.0),
        (left + 222.0, ly - 4.0),
        "ramp",
    );
    text(&mut o, left + 228.0, ly, "start", "axis", "live share");
    line(
        &mut o,
        (left + 300.0, ly - 4.0),
        (left + 322.0, ly - 4.0),
        "ramp planned",
    );
    text(&mut o, left + 328.0, ly, "start", "axis", "planned");
    for (i, (class, what)) in [("ok", "promoted"), ("bad", "rolled back"), ("warn", "held")]
        .into_iter()
        .enumerate()
    {
        let lx = left + 395.0 + 85.0 * i as f64;
        let _ = write!(
            o,
            r#"<circle cx="{}" cy="{}" r="4" class="marker {class}"/>"#,
            r1(lx),
            r1(ly - 4.0)
        );
        text(&mut o, lx + 8.0, ly, "start", "axis", what);
    }
    o.push_str("</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn point(i: u32, mode: StageMode, pct: f64, ended: bool, action: Option<&str>) -> RampPoint {
        let t = |m: i64| Utc.timestamp_opt(1_700_000_000 + m * 60, 0).unwrap();
        RampPoint {
            index: i,
            name: if mode == StageMode::Shadow {
                "shadow".into()
            } else {
                format!("canary-{pct}")
            },
            mode,
            percent: Some(pct),
            started_at: t(i64::from(i) * 30),
            ended_at: ended.then(|| t(i64::from(i) * 30 + 30)),
            outcome: None,
            action: action.map(str::to_owned),
        }
    }

    #[test]
    fn shadow_is_a_band_at_zero_and_the_axis_ends_at_the_last_planned_stage() {
        let points = vec![
            point(0, StageMode::Shadow, 100.0, true, Some("promote")),
            point(1, StageMode::Live, 10.0, false, None),
        ];
        let plan = vec![
            PlannedStage {
                index: 0,
                mode: StageMode::Shadow,
                percent: 100.0,
            },
            PlannedStage {
                index: 1,
                mode: StageMode::Live,
                percent: 10.0,
            },
            PlannedStage {
                index: 2,
                mode: StageMode::Live,
                percent: 50.0,
            },
        ];
        let marks = Marks {
            here: Some(1),
            running: true,
            this_report: Some(0),
        };
        let svg = ramp_chart(&points, &plan, marks);
        assert!(svg.contains(r#"data-stages="3""#), "{svg}");
        assert!(
            svg.contains(r#"class="shadow-band" data-stage="0" data-served="0""#),
            "{svg}"
        );
        assert!(svg.contains(r#"class="here" data-stage="1""#) && svg.contains("you are here"));
        assert!(svg.contains(r#"class="this-report" data-stage="0""#));
        assert!(svg.contains(r#"class="ramp planned""#) && svg.contains("planned"));
        // Shadow's line runs at 0% (y = bottom), never at its 100% mirror rate (y = top).
        assert!(svg.contains("M52 190 L270.7 190"), "{svg}");
        assert_eq!(
            svg.matches("<circle").count(),
            1 + 3,
            "one ended stage, three legend dots"
        );
    }

    #[test]
    fn long_names_are_shortened_not_clipped() {
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
        let svg = ramp_chart(
            &[],
            &[],
            Marks {
                here: None,
                running: false,
                this_report: None,
            },
        );
        assert!(svg.contains("no stages"));
    }
}
