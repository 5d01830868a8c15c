//! Paired requests' error outcomes: every pair (one request answered by stable and by a
//! candidate — a shadow mirror or a live pair sample) gives the difference of their error
//! indicators, candidate − stable, in {−1, 0, 1}. The differences are summed per unit (the
//! candidate observation's unit key; a pair without one is a unit of its own) and then over
//! units, in the database, so that a tick reads one row per cohort and candidate. The gate
//! compares error rates on these pairs as well as between the two sides' users ("pairs
//! first"): the same prompts on both variants remove the between-user variation.
//!
//! Never: decides whether a metric uses them (that is `gate_input`). The A/A arm's pairs are
//! left out (they are never a candidate).

use sqlx::Row;

use super::aggregates::{Cohort, Moments, PAIR_LABELS, PAIR_SCOPE, cohort_of, fetch_rows};
use super::{Store, StoreError, UnitMoments, to_u64, with_pool};
use crate::vocab::AA_VARIANT;

/// One cohort's and candidate's paired error differences.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairedErrors {
    pub cohort: Cohort,
    pub candidate: String,
    /// Per pair: count, Σd and Σd² of d = e_c − e_s.
    pub pairs: Moments,
    /// Per unit: x = Σd over the unit's pairs, y = its pairs.
    pub units: UnitMoments,
}

impl Store {
    /// Paired error differences per cohort (overall and per label value) and candidate.
    pub(super) async fn paired_errors(
        &self,
        scope: super::SummaryScope<'_>,
    ) -> Result<Vec<PairedErrors>, StoreError> {
        let e =
            |side: &str| format!("(CASE WHEN {side}.error_class IS NOT NULL THEN 1 ELSE 0 END)");
        let d = format!("({} - {})", e("c"), e("s"));
        let mut out = Vec::new();
        for by_label in [false, true] {
            let (sel, join, group) = if by_label {
                (
                    "l.key AS lk, l.value AS lv, ",
                    PAIR_LABELS,
                    "l.key, l.value, ",
                )
            } else {
                (
                    "CAST(NULL AS TEXT) AS lk, CAST(NULL AS TEXT) AS lv, ",
                    "",
                    "",
                )
            };
            let inner = |unit: &str, null: &str| {
                format!(
                    "SELECT {sel}p.candidate AS candidate, \
                     CAST(SUM({d}) AS DOUBLE PRECISION) AS x, \
                     CAST(COUNT(*) AS DOUBLE PRECISION) AS y, \
                     CAST(SUM({d} * {d}) AS DOUBLE PRECISION) AS xx \
                     FROM pairs p \
                     JOIN observations c ON c.id = p.candidate_observation_id \
                     JOIN observations s ON s.id = p.stable_observation_id{join}{PAIR_SCOPE} \
                     AND p.candidate <> '{AA_VARIANT}' AND c.unit_key IS {null} \
                     GROUP BY {group}p.candidate, {unit}"
                )
            };
            let sql = format!(
                "SELECT u.lk, u.lv, u.candidate, COUNT(*), \
                 CAST(SUM(u.y) AS DOUBLE PRECISION), CAST(SUM(u.xx) AS DOUBLE PRECISION), \
                 CAST(SUM(u.x) AS DOUBLE PRECISION), CAST(SUM(u.x * u.x) AS DOUBLE PRECISION), \
                 CAST(SUM(u.y * u.y) AS DOUBLE PRECISION), CAST(SUM(u.x * u.y) AS DOUBLE PRECISION) \
                 FROM ({} UNION ALL {}) u GROUP BY u.lk, u.lv, u.candidate",
                inner("c.unit_key", "NOT NULL"),
                inner("p.id", "NULL"),
            );
            let rows: Vec<PairedErrors> = fetch_rows!(self, sql, scope, |r| {
                let units: i64 = r.try_get(3)?;
                let f = |v: Option<f64>| v.unwrap_or(0.0);
                let (n, sq, x): (Option<f64>, Option<f64>, Option<f64>) =
                    (r.try_get(4)?, r.try_get(5)?, r.try_get(6)?);
                PairedErrors {
                    cohort: cohort_of(r.try_get(0)?, r.try_get(1)?),
                    candidate: r.try_get(2)?,
                    pairs: Moments {
                        count: f(n).round() as u64,
                        sum: f(x),
                        sum_sq: f(sq),
                    },
                    units: UnitMoments {
                        units: to_u64(units),
                        sum_x: f(x),
                        sum_y: f(n),
                        sum_xx: f(r.try_get(7)?),
                        sum_yy: f(r.try_get(8)?),
                        sum_xy: f(r.try_get(9)?),
                    },
                }
            });
            out.extend(rows);
        }
        Ok(out)
    }
}
