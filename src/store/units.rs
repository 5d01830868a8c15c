//! Per-unit aggregate reads: the same sums as [`super::aggregates`], but first summed per unit
//! (the sticky key stored as `observations.unit_key`) and then over units, so that the gate can
//! treat units — not requests — as its independent draws. An observation without a unit key is
//! a unit of its own (it was routed at random). Everything is summed in the database: an inner
//! `GROUP BY unit` (a `UNION ALL` with the keyless rows, one unit each) under an outer
//! aggregate, so a tick reads one row per variant and cohort, never one per unit.
//!
//! Never: decides which of these a metric uses (that is `gate_input`).

use sqlx::Row;

use super::aggregates::{
    Cohort, OBS_LABELS, OBS_SCOPE, PAIR_LABELS, PAIR_SCOPE, VariantSummary, cohort_of, fetch_rows,
};
use super::{Store, StoreError, to_u64, with_pool};
use crate::capture::tail::{RUNGS, rung_bucket};
use crate::vocab::AA_VARIANT;

/// Sums over units of per-unit totals x and y: the number of units and Σx, Σy, Σx², Σy², Σxy.
/// Enough for a ratio Σx/Σy and its delta-method variance over units.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UnitMoments {
    pub units: u64,
    pub sum_x: f64,
    pub sum_y: f64,
    pub sum_xx: f64,
    pub sum_yy: f64,
    pub sum_xy: f64,
}

impl UnitMoments {
    /// Adds disjoint units.
    pub fn merge(&mut self, o: &UnitMoments) {
        self.units += o.units;
        self.sum_x += o.sum_x;
        self.sum_y += o.sum_y;
        self.sum_xx += o.sum_xx;
        self.sum_yy += o.sum_yy;
        self.sum_xy += o.sum_xy;
    }

    /// Takes a sub-population's units out of these (never below none).
    pub fn subtract(&mut self, o: &UnitMoments) {
        if o.units >= self.units {
            *self = UnitMoments::default();
            return;
        }
        self.units -= o.units;
        self.sum_x = (self.sum_x - o.sum_x).max(0.0);
        self.sum_y = (self.sum_y - o.sum_y).max(0.0);
        self.sum_xx = (self.sum_xx - o.sum_xx).max(0.0);
        self.sum_yy = (self.sum_yy - o.sum_yy).max(0.0);
        self.sum_xy = (self.sum_xy - o.sum_xy).max(0.0);
    }
}

/// Label columns of the inner per-unit query (aliased `lk`, `lv`) and its extra grouping.
fn unit_cohort_sql(by_label: bool, label_join: &str) -> (&'static str, String, &'static str) {
    if by_label {
        (
            "l.key AS lk, l.value AS lv, ",
            label_join.to_owned(),
            "l.key, l.value, ",
        )
    } else {
        (
            "CAST(NULL AS TEXT) AS lk, CAST(NULL AS TEXT) AS lv, ",
            String::new(),
            "",
        )
    }
}

/// The outer sums of `u.{x}` and `u.{y}` as five DOUBLE PRECISION columns.
fn sums(x: &str, y: &str) -> String {
    format!(
        "CAST(SUM(u.{x}) AS DOUBLE PRECISION), CAST(SUM(u.{y}) AS DOUBLE PRECISION), \
         CAST(SUM(u.{x} * u.{x}) AS DOUBLE PRECISION), CAST(SUM(u.{y} * u.{y}) AS DOUBLE PRECISION), \
         CAST(SUM(u.{x} * u.{y}) AS DOUBLE PRECISION)"
    )
}

fn unit_moments(units: i64, s: [Option<f64>; 5]) -> UnitMoments {
    UnitMoments {
        units: to_u64(units),
        sum_x: s[0].unwrap_or(0.0),
        sum_y: s[1].unwrap_or(0.0),
        sum_xx: s[2].unwrap_or(0.0),
        sum_yy: s[3].unwrap_or(0.0),
        sum_xy: s[4].unwrap_or(0.0),
    }
}

macro_rules! five {
    ($r:expr, $from:expr) => {
        [
            $r.try_get($from)?,
            $r.try_get($from + 1)?,
            $r.try_get($from + 2)?,
            $r.try_get($from + 3)?,
            $r.try_get($from + 4)?,
        ]
    };
}

struct UnitRow {
    cohort: Cohort,
    variant: String,
    units: u64,
    served_units: u64,
}

/// Per unit and side (candidates pooled, the A/A arm left out): the sums of one ratio metric.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JointMoments {
    /// Units seen on either side, and on each.
    pub units: u64,
    pub candidate_units: u64,
    pub stable_units: u64,
    /// Σ over units of (x_c, y_c, x_s, y_s).
    pub sums: [f64; 4],
    /// Σ over units of v_i · v_j for i ≤ j, row by row (00, 01, 02, 03, 11, 12, 13, 22, 23, 33).
    pub products: [f64; 10],
}

impl JointMoments {
    /// Takes a sub-population's units out of these (never below none).
    pub fn subtract(&mut self, o: &JointMoments) {
        if o.units >= self.units {
            *self = JointMoments::default();
            return;
        }
        self.units -= o.units;
        self.candidate_units = self.candidate_units.saturating_sub(o.candidate_units);
        self.stable_units = self.stable_units.saturating_sub(o.stable_units);
        for (a, b) in self.sums.iter_mut().zip(o.sums) {
            *a = (*a - b).max(0.0);
        }
        for (a, b) in self.products.iter_mut().zip(o.products) {
            *a = (*a - b).max(0.0);
        }
    }
}

/// Errors per request, cost per request and the latency tail, per unit and side, in one
/// cohort.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnitComparison {
    pub cohort: Cohort,
    /// x = errors, y = requests.
    pub errors: JointMoments,
    /// x = cost, y = requests with a cost.
    pub cost: JointMoments,
    /// Per latency rung (`capture::tail`): x = successful requests slower than the rung, y =
    /// successful requests. `units` is every unit of the cohort (as `errors.units`).
    pub latency_tail: [JointMoments; RUNGS],
}

impl UnitComparison {
    /// Takes a sub-population's units out of these (never below none).
    pub fn subtract(&mut self, o: &UnitComparison) {
        self.errors.subtract(&o.errors);
        self.cost.subtract(&o.cost);
        for (a, b) in self.latency_tail.iter_mut().zip(&o.latency_tail) {
            a.subtract(b);
        }
    }
}

/// The per-unit latency-tail columns of the inner per-unit queries (successes per side, then
/// those slower than each rung), in `store::deltas::side_cols` order after the errors and cost.
pub(super) fn tail_unit_cols() -> (Vec<String>, Vec<[String; 4]>) {
    let mut cols = vec!["tyc".to_owned(), "tys".to_owned()];
    cols.extend((0..RUNGS).map(|r| format!("tc{r}")));
    cols.extend((0..RUNGS).map(|r| format!("ts{r}")));
    let per_rung = (0..RUNGS)
        .map(|r| {
            [
                format!("tc{r}"),
                "tyc".to_owned(),
                format!("ts{r}"),
                "tys".to_owned(),
            ]
        })
        .collect();
    (cols, per_rung)
}

/// The outer sums of every rung's [`joint_sums`] (16 columns per rung, after the unit count).
pub(super) fn tail_joint_sums() -> String {
    let (_, per_rung) = tail_unit_cols();
    per_rung
        .iter()
        .map(|v| joint_sums([&v[0], &v[1], &v[2], &v[3]]))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decodes [`tail_joint_sums`] from column `from`, every rung over `units` units.
pub(super) fn tail_moments(
    units: i64,
    r: &impl RowLike,
    from: usize,
) -> Result<[JointMoments; RUNGS], sqlx::Error> {
    let mut out = [JointMoments::default(); RUNGS];
    for (i, m) in out.iter_mut().enumerate() {
        *m = joint_moments(units, r, from + 16 * i)?;
    }
    Ok(out)
}

/// The outer sums of per-unit columns `v[0..4]` (the unit count comes separately).
pub(super) fn joint_sums(v: [&str; 4]) -> String {
    let mut cols = vec![
        format!(
            "CAST(SUM(CASE WHEN u.{} > 0 THEN 1 ELSE 0 END) AS BIGINT)",
            v[1]
        ),
        format!(
            "CAST(SUM(CASE WHEN u.{} > 0 THEN 1 ELSE 0 END) AS BIGINT)",
            v[3]
        ),
    ];
    for c in v {
        cols.push(format!("CAST(SUM(u.{c}) AS DOUBLE PRECISION)"));
    }
    for i in 0..4 {
        for j in i..4 {
            cols.push(format!(
                "CAST(SUM(u.{} * u.{}) AS DOUBLE PRECISION)",
                v[i], v[j]
            ));
        }
    }
    cols.join(", ")
}

/// Decodes what [`joint_sums`] selected, starting at column `from` (after the unit count).
pub(super) fn joint_moments(
    units: i64,
    r: &impl RowLike,
    from: usize,
) -> Result<JointMoments, sqlx::Error> {
    let mut m = JointMoments {
        units: to_u64(units),
        candidate_units: to_u64(r.i64_at(from)?),
        stable_units: to_u64(r.i64_at(from + 1)?),
        ..JointMoments::default()
    };
    for (i, s) in m.sums.iter_mut().enumerate() {
        *s = r.f64_at(from + 2 + i)?.unwrap_or(0.0);
    }
    for (i, p) in m.products.iter_mut().enumerate() {
        *p = r.f64_at(from + 6 + i)?.unwrap_or(0.0);
    }
    Ok(m)
}

/// Column access shared by both backends' rows.
pub(super) trait RowLike {
    fn i64_at(&self, i: usize) -> Result<i64, sqlx::Error>;
    fn f64_at(&self, i: usize) -> Result<Option<f64>, sqlx::Error>;
}

impl RowLike for sqlx::sqlite::SqliteRow {
    fn i64_at(&self, i: usize) -> Result<i64, sqlx::Error> {
        self.try_get(i)
    }
    fn f64_at(&self, i: usize) -> Result<Option<f64>, sqlx::Error> {
        self.try_get(i)
    }
}

impl RowLike for sqlx::postgres::PgRow {
    fn i64_at(&self, i: usize) -> Result<i64, sqlx::Error> {
        self.try_get(i)
    }
    fn f64_at(&self, i: usize) -> Result<Option<f64>, sqlx::Error> {
        self.try_get(i)
    }
}

impl Store {
    /// Fills each variant summary's units and served units.
    pub(super) async fn add_unit_summaries(
        &self,
        scope: super::SummaryScope<'_>,
        out: &mut std::collections::BTreeMap<(Cohort, String), VariantSummary>,
    ) -> Result<(), StoreError> {
        for by_label in [false, true] {
            let (sel, join, group) = unit_cohort_sql(by_label, OBS_LABELS);
            let sql = format!(
                "SELECT u.lk, u.lv, u.variant, COUNT(*), CAST(SUM(u.served) AS BIGINT) FROM (\
                 SELECT {sel}o.variant AS variant, \
                 MAX(CASE WHEN o.purpose = 'served' THEN 1 ELSE 0 END) AS served \
                 FROM observations o{join}{OBS_SCOPE} AND o.unit_key IS NOT NULL \
                 GROUP BY {group}o.variant, o.unit_key \
                 UNION ALL \
                 SELECT {sel}o.variant AS variant, \
                 CASE WHEN o.purpose = 'served' THEN 1 ELSE 0 END AS served \
                 FROM observations o{join}{OBS_SCOPE} AND o.unit_key IS NULL\
                 ) u GROUP BY u.lk, u.lv, u.variant"
            );
            let rows: Vec<UnitRow> = fetch_rows!(self, sql, scope, |r| UnitRow {
                cohort: cohort_of(r.try_get(0)?, r.try_get(1)?),
                variant: r.try_get(2)?,
                units: to_u64(r.try_get(3)?),
                served_units: to_u64(r.try_get(4)?),
            });
            for row in rows {
                if let Some(s) = out.get_mut(&(row.cohort, row.variant)) {
                    s.units = row.units;
                    s.served_units = row.served_units;
                }
            }
        }
        Ok(())
    }

    /// Per cohort: errors and cost per unit and side (candidates pooled, the A/A arm left out),
    /// summed over units.
    pub(super) async fn unit_comparisons_from_rows(
        &self,
        scope: super::SummaryScope<'_>,
    ) -> Result<Vec<UnitComparison>, StoreError> {
        let mut out = Vec::new();
        let cand = format!("o.role = 'candidate' AND o.variant <> '{AA_VARIANT}'");
        let stab = "o.role = 'stable'";
        let one = "CAST(1 AS DOUBLE PRECISION)";
        let zero = "CAST(0 AS DOUBLE PRECISION)";
        let err = "o.error_class IS NOT NULL";
        let cost = "CAST(COALESCE(o.cost_usd, 0) AS DOUBLE PRECISION)";
        let has_cost = "o.cost_usd IS NOT NULL";
        // Successes per side, and those slower than each rung (a bucket above the rung's).
        let ok = "o.error_class IS NULL";
        let mut tail: Vec<(String, String)> = vec![
            (
                format!("CASE WHEN {cand} AND {ok} THEN {one} ELSE {zero} END"),
                "tyc".to_owned(),
            ),
            (
                format!("CASE WHEN {stab} AND {ok} THEN {one} ELSE {zero} END"),
                "tys".to_owned(),
            ),
        ];
        for (side, name) in [(cand.as_str(), "tc"), (stab, "ts")] {
            for r in 0..RUNGS {
                tail.push((
                    format!(
                        "CASE WHEN {side} AND {ok} AND o.latency_bucket > {} THEN {one} ELSE {zero} END",
                        rung_bucket(r)
                    ),
                    format!("{name}{r}"),
                ));
            }
        }
        let cols = |agg: bool| {
            let wrap = |e: String| if agg { format!("SUM({e})") } else { e };
            [
                (
                    format!("CASE WHEN {cand} AND {err} THEN {one} ELSE {zero} END"),
                    "exc",
                ),
                (
                    format!("CASE WHEN {cand} THEN {one} ELSE {zero} END"),
                    "eyc",
                ),
                (
                    format!("CASE WHEN {stab} AND {err} THEN {one} ELSE {zero} END"),
                    "exs",
                ),
                (
                    format!("CASE WHEN {stab} THEN {one} ELSE {zero} END"),
                    "eys",
                ),
                (
                    format!("CASE WHEN {cand} THEN {cost} ELSE {zero} END"),
                    "cxc",
                ),
                (
                    format!("CASE WHEN {cand} AND {has_cost} THEN {one} ELSE {zero} END"),
                    "cyc",
                ),
                (
                    format!("CASE WHEN {stab} THEN {cost} ELSE {zero} END"),
                    "cxs",
                ),
                (
                    format!("CASE WHEN {stab} AND {has_cost} THEN {one} ELSE {zero} END"),
                    "cys",
                ),
            ]
            .into_iter()
            .chain(tail.iter().map(|(e, name)| (e.clone(), name.as_str())))
            .map(|(e, name)| format!("{} AS {name}", wrap(e)))
            .collect::<Vec<_>>()
            .join(", ")
        };
        for by_label in [false, true] {
            let (sel, join, group) = unit_cohort_sql(by_label, OBS_LABELS);
            let scope_sql =
                format!("FROM observations o{join}{OBS_SCOPE} AND (o.role = 'stable' OR {cand})");
            let sql = format!(
                "SELECT u.lk, u.lv, COUNT(*), {}, {}, {} FROM (\
                 SELECT {sel}{} {scope_sql} AND o.unit_key IS NOT NULL \
                 GROUP BY {group}o.unit_key \
                 UNION ALL \
                 SELECT {sel}{} {scope_sql} AND o.unit_key IS NULL\
                 ) u GROUP BY u.lk, u.lv",
                joint_sums(["exc", "eyc", "exs", "eys"]),
                joint_sums(["cxc", "cyc", "cxs", "cys"]),
                tail_joint_sums(),
                cols(true),
                cols(false),
            );
            let rows: Vec<UnitComparison> = fetch_rows!(self, sql, scope, |r| UnitComparison {
                cohort: cohort_of(r.try_get(0)?, r.try_get(1)?),
                errors: joint_moments(r.try_get(2)?, r, 3)?,
                cost: joint_moments(r.try_get(2)?, r, 19)?,
                latency_tail: tail_moments(r.try_get(2)?, r, 35)?,
            });
            out.extend(rows);
        }
        Ok(out)
    }

    /// Per-unit sums of paired differences (x = Σ candidate − stable, y = pairs of the unit),
    /// per (cohort, candidate, rubric id, rubric hash, name), for judgments (`judgments`, score
    /// not null) or deterministic checks (`check_results`). A pair's unit is its candidate
    /// observation's unit key; a pair without one is a unit of its own.
    pub(super) async fn paired_units(
        &self,
        scope: super::SummaryScope<'_>,
        checks: bool,
    ) -> Result<Vec<(super::aggregates::GroupKey, UnitMoments)>, StoreError> {
        let (table, join_extra, filter) = if checks {
            ("check_results", "", "")
        } else {
            (
                "judgments",
                " AND s.judge_model = j.judge_model AND s.score IS NOT NULL",
                " AND j.score IS NOT NULL",
            )
        };
        let mut out = Vec::new();
        for by_label in [false, true] {
            let (sel, join, group) = unit_cohort_sql(by_label, PAIR_LABELS);
            let keys = "p.candidate, j.rubric_id, j.rubric_hash, j.name";
            let inner = |unit: &str, null: &str| {
                format!(
                    "SELECT {sel}p.candidate AS candidate, j.rubric_id AS rubric_id, \
                     j.rubric_hash AS rubric_hash, j.name AS name, \
                     CAST(SUM(j.score - s.score) AS DOUBLE PRECISION) AS x, \
                     CAST(COUNT(*) AS DOUBLE PRECISION) AS y \
                     FROM {table} j JOIN {table} s ON s.pair_id = j.pair_id \
                     AND s.rubric_hash = j.rubric_hash AND s.name = j.name \
                     AND s.side = 'stable'{join_extra} \
                     JOIN pairs p ON p.id = j.pair_id \
                     JOIN observations o ON o.id = p.candidate_observation_id{join}{PAIR_SCOPE} \
                     AND j.side = 'candidate'{filter} AND o.unit_key IS {null} \
                     GROUP BY {group}{keys}, {unit}"
                )
            };
            let sql = format!(
                "SELECT u.lk, u.lv, u.candidate, u.rubric_id, u.rubric_hash, u.name, COUNT(*), {} \
                 FROM ({} UNION ALL {}) u \
                 GROUP BY u.lk, u.lv, u.candidate, u.rubric_id, u.rubric_hash, u.name",
                sums("x", "y"),
                inner("o.unit_key", "NOT NULL"),
                inner("p.id", "NULL"),
            );
            let rows: Vec<(super::aggregates::GroupKey, UnitMoments)> =
                fetch_rows!(self, sql, scope, |r| (
                    super::aggregates::group_key(
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                        r.try_get(5)?
                    ),
                    unit_moments(r.try_get(6)?, five!(r, 7))
                ));
            out.extend(rows);
        }
        Ok(out)
    }
}
