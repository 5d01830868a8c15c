//! Paired requests' outcomes: every pair (one request answered by stable and by a candidate — a
//! shadow mirror or a live pair sample) gives the difference of their error indicators,
//! candidate − stable, in {−1, 0, 1}; and, when both sides succeeded, the difference of their
//! "slower than the rung" indicators at each latency rung (`capture::tail`). The differences are summed per unit (the
//! candidate observation's unit key; a pair without one is a unit of its own) and then over
//! units, in the database, so that a tick reads one row per cohort and candidate. The gate
//! compares error rates and latency tails on these pairs as well as between the two sides'
//! users ("pairs first"): the same prompts on both variants remove the between-user variation.
//!
//! Never: decides whether a metric uses them (that is `gate_input`). The A/A arm's pairs are
//! left out (they are never a candidate).

use sqlx::Row;

use super::aggregates::{Cohort, Moments, PAIR_LABELS, PAIR_SCOPE, cohort_of, fetch_rows};
use super::{Store, StoreError, UnitMoments, to_u64, with_pool};
use crate::capture::tail::{RUNGS, rung_bucket};
use crate::vocab::AA_VARIANT;

/// One cohort's and candidate's paired differences.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairedOutcomes {
    pub cohort: Cohort,
    pub candidate: String,
    /// Per pair: count, Σd and Σd² of d = e_c − e_s.
    pub pairs: Moments,
    /// Per unit: x = Σd over the unit's pairs, y = its pairs.
    pub units: UnitMoments,
    /// Per latency rung, over the pairs both sides answered without an error: d = 1[L_c above
    /// the rung] − 1[L_s above the rung].
    pub latency_tail: [PairedTail; RUNGS],
}

/// Paired differences at one latency rung: per pair, and summed per unit (x = Σd over the
/// unit's pairs, y = its pairs that both sides answered).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PairedTail {
    pub pairs: Moments,
    pub units: UnitMoments,
}

impl Store {
    /// Paired differences per cohort (overall and per label value) and candidate.
    pub(super) async fn paired_outcomes(
        &self,
        scope: super::SummaryScope<'_>,
    ) -> Result<Vec<PairedOutcomes>, StoreError> {
        let e =
            |side: &str| format!("(CASE WHEN {side}.error_class IS NOT NULL THEN 1 ELSE 0 END)");
        let d = format!("({} - {})", e("c"), e("s"));
        let ok = "(CASE WHEN c.error_class IS NULL AND s.error_class IS NULL THEN 1 ELSE 0 END)";
        // Per rung: Σd and Σ|d| over the unit's pairs both sides answered (d² = |d|).
        let slower = |side: &str, r: usize| {
            format!(
                "(CASE WHEN {side}.latency_bucket > {} THEN 1 ELSE 0 END)",
                rung_bucket(r)
            )
        };
        let inner_tail: String = (0..RUNGS)
            .map(|r| {
                let (c, s) = (slower("c", r), slower("s", r));
                format!(
                    ", CAST(SUM({ok} * ({c} - {s})) AS DOUBLE PRECISION) AS tx{r}, \
                     CAST(SUM({ok} * ({c} + {s} - 2 * {c} * {s})) AS DOUBLE PRECISION) AS tq{r}"
                )
            })
            .collect();
        let outer_tail: String = (0..RUNGS)
            .map(|r| {
                format!(
                    ", CAST(SUM(u.tx{r}) AS DOUBLE PRECISION), CAST(SUM(u.tq{r}) AS DOUBLE PRECISION), \
                     CAST(SUM(u.tx{r} * u.tx{r}) AS DOUBLE PRECISION), \
                     CAST(SUM(u.tx{r} * u.ok) AS DOUBLE PRECISION)"
                )
            })
            .collect();
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
                     CAST(SUM({d} * {d}) AS DOUBLE PRECISION) AS xx, \
                     CAST(SUM({ok}) AS DOUBLE PRECISION) AS ok{inner_tail} \
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
                 CAST(SUM(u.y * u.y) AS DOUBLE PRECISION), CAST(SUM(u.x * u.y) AS DOUBLE PRECISION), \
                 CAST(SUM(u.ok) AS DOUBLE PRECISION), CAST(SUM(u.ok * u.ok) AS DOUBLE PRECISION)\
                 {outer_tail} \
                 FROM ({} UNION ALL {}) u GROUP BY u.lk, u.lv, u.candidate",
                inner("c.unit_key", "NOT NULL"),
                inner("p.id", "NULL"),
            );
            let rows: Vec<PairedOutcomes> = fetch_rows!(self, sql, scope, |r| {
                let units: i64 = r.try_get(3)?;
                let f = |v: Option<f64>| v.unwrap_or(0.0);
                let (n, sq, x): (Option<f64>, Option<f64>, Option<f64>) =
                    (r.try_get(4)?, r.try_get(5)?, r.try_get(6)?);
                let (ok, ok_sq): (Option<f64>, Option<f64>) = (r.try_get(10)?, r.try_get(11)?);
                let mut latency_tail = [PairedTail::default(); RUNGS];
                for (i, t) in latency_tail.iter_mut().enumerate() {
                    let at = 12 + 4 * i;
                    let (tx, tq, txx, txy): (Option<f64>, Option<f64>, Option<f64>, Option<f64>) = (
                        r.try_get(at)?,
                        r.try_get(at + 1)?,
                        r.try_get(at + 2)?,
                        r.try_get(at + 3)?,
                    );
                    *t = PairedTail {
                        pairs: Moments {
                            count: f(ok).round() as u64,
                            sum: f(tx),
                            sum_sq: f(tq),
                        },
                        units: UnitMoments {
                            units: to_u64(units),
                            sum_x: f(tx),
                            sum_y: f(ok),
                            sum_xx: f(txx),
                            sum_yy: f(ok_sq),
                            sum_xy: f(txy),
                        },
                    };
                }
                PairedOutcomes {
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
                    latency_tail,
                }
            });
            out.extend(rows);
        }
        Ok(out)
    }
}
