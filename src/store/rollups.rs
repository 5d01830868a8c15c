//! Reads of the aggregate tables the writer keeps (`store::deltas`): the variants' and units'
//! part of [`Store::stage_summary`], one row per variant, error class and cohort (and per bucket
//! for the histograms) instead of a scan of observations.
//!
//! A scope selects the epochs at or after its `since` (see `capture::cells::ScopeParts`). When
//! that is one epoch — a stage's tick — distinct units and the per-unit moments come from their
//! incremental sums; when it spans several (a summary since the Unix epoch of a label reused by
//! several rollouts), a unit may appear in more than one, so they are summed again per unit from
//! the per-unit tables.
//!
//! Never: reads observation rows.

use std::collections::BTreeMap;

use sqlx::Row;

use super::aggregates::{Cohort, SummaryScope, VariantRow, VariantSummary, fetch_rows};
use super::deltas::moment_cols;
use super::units::{
    JointMoments, RowLike, UnitComparison, joint_moments, joint_sums, tail_joint_sums,
    tail_moments, tail_unit_cols,
};
use super::{Store, StoreError, to_u64, with_pool};
use crate::capture::LatencyHistogram;
use crate::capture::tail::RUNGS;

const SCOPE: &str = " WHERE deployment = $1 AND stage = $2 AND epoch >= $3";

/// `("", "")` is the whole stage.
fn cohort_of_cell(key: String, value: String) -> Cohort {
    (!(key.is_empty() && value.is_empty())).then_some((key, value))
}

fn add_joint(a: &mut JointMoments, b: &JointMoments) {
    a.units += b.units;
    a.candidate_units += b.candidate_units;
    a.stable_units += b.stable_units;
    for (x, y) in a.sums.iter_mut().zip(b.sums) {
        *x += y;
    }
    for (x, y) in a.products.iter_mut().zip(b.products) {
        *x += y;
    }
}

/// The sums of `agg_unit_moments` columns, counts as BIGINT and the rest as DOUBLE PRECISION.
fn moment_sums() -> String {
    moment_cols()
        .iter()
        .map(|c| {
            let int = c == "units" || c.ends_with("_cu") || c.ends_with("_su");
            let ty = if int { "BIGINT" } else { "DOUBLE PRECISION" };
            format!("CAST(SUM({c}) AS {ty})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The sums of `agg_tail_moments`' columns.
fn tail_sums() -> String {
    crate::store::deltas::TAIL_MOMENT_COLS
        .iter()
        .map(|c| {
            let ty = if *c == "cu" || *c == "su" {
                "BIGINT"
            } else {
                "DOUBLE PRECISION"
            };
            format!("CAST(SUM({c}) AS {ty})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decodes [`tail_sums`] from column `from` (units left at zero).
fn decode_tail(r: &impl RowLike, from: usize) -> Result<JointMoments, sqlx::Error> {
    let mut m = JointMoments {
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

/// Decodes [`moment_sums`] from column `from`: (errors, cost).
fn decode_moments(
    r: &impl RowLike,
    from: usize,
) -> Result<(JointMoments, JointMoments), sqlx::Error> {
    let units = to_u64(r.i64_at(from)?);
    let joint = |at: usize| -> Result<JointMoments, sqlx::Error> {
        let mut m = JointMoments {
            units,
            candidate_units: to_u64(r.i64_at(at)?),
            stable_units: to_u64(r.i64_at(at + 1)?),
            ..JointMoments::default()
        };
        for (i, s) in m.sums.iter_mut().enumerate() {
            *s = r.f64_at(at + 2 + i)?.unwrap_or(0.0);
        }
        for (i, p) in m.products.iter_mut().enumerate() {
            *p = r.f64_at(at + 6 + i)?.unwrap_or(0.0);
        }
        Ok(m)
    };
    Ok((joint(from + 1)?, joint(from + 17)?))
}

impl Store {
    /// How many epochs the scope spans.
    async fn scope_epochs(&self, scope: SummaryScope<'_>) -> Result<u64, StoreError> {
        let sql = format!("SELECT COUNT(DISTINCT epoch) FROM agg_variants{SCOPE}");
        let n: Vec<i64> = fetch_rows!(self, sql, scope, |r| r.try_get(0)?);
        Ok(n.first().copied().map_or(0, to_u64))
    }

    /// Per variant (overall and per cohort label value).
    pub async fn variant_summaries(
        &self,
        scope: SummaryScope<'_>,
    ) -> Result<Vec<VariantSummary>, StoreError> {
        let mut out: BTreeMap<(Cohort, String), VariantSummary> = BTreeMap::new();
        let sql = format!(
            "SELECT cohort_key, cohort_value, variant, MAX(role), error_class, \
             CAST(SUM(requests) AS BIGINT), CAST(SUM(served) AS BIGINT), \
             CAST(SUM(latency_sum) AS DOUBLE PRECISION), CAST(SUM(latency_sq) AS DOUBLE PRECISION), \
             CAST(SUM(ttft_n) AS BIGINT), CAST(SUM(ttft_sum) AS DOUBLE PRECISION), \
             CAST(SUM(ttft_sq) AS DOUBLE PRECISION), CAST(SUM(prompt_tokens) AS BIGINT), \
             CAST(SUM(completion_tokens) AS BIGINT), CAST(SUM(cost_n) AS BIGINT), \
             CAST(SUM(cost_sum) AS DOUBLE PRECISION), CAST(SUM(cost_sq) AS DOUBLE PRECISION) \
             FROM agg_variants{SCOPE} GROUP BY cohort_key, cohort_value, variant, error_class"
        );
        let rows: Vec<VariantRow> = fetch_rows!(self, sql, scope, |r| {
            let error: String = r.try_get(4)?;
            VariantRow {
                cohort: cohort_of_cell(r.try_get(0)?, r.try_get(1)?),
                variant: r.try_get(2)?,
                role: r.try_get(3)?,
                error: (!error.is_empty()).then_some(error),
                count: to_u64(r.try_get(5)?),
                served: to_u64(r.try_get(6)?),
                latency: (r.try_get(7)?, r.try_get(8)?),
                ttft: (to_u64(r.try_get(9)?), r.try_get(10)?, r.try_get(11)?),
                tokens: (to_u64(r.try_get(12)?), to_u64(r.try_get(13)?)),
                cost: (to_u64(r.try_get(14)?), r.try_get(15)?, r.try_get(16)?),
            }
        });
        for row in rows {
            row.add_to(&mut out)?;
        }
        let sql = format!(
            "SELECT cohort_key, cohort_value, variant, timing, bucket, CAST(SUM(n) AS BIGINT) \
             FROM agg_timings{SCOPE} GROUP BY cohort_key, cohort_value, variant, timing, bucket"
        );
        let rows: Vec<(Cohort, String, String, i32, i64)> = fetch_rows!(self, sql, scope, |r| (
            cohort_of_cell(r.try_get(0)?, r.try_get(1)?),
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(4)?,
            r.try_get(5)?
        ));
        for (cohort, variant, timing, bucket, n) in rows {
            if let Some(s) = out.get_mut(&(cohort, variant)) {
                let h: &mut LatencyHistogram = if timing == "ttft" {
                    &mut s.ttft_histogram
                } else {
                    &mut s.latency_histogram
                };
                h.add(u32::try_from(bucket).unwrap_or(0), to_u64(n));
            }
        }
        let one_epoch = self.scope_epochs(scope).await? <= 1;
        let units = if one_epoch {
            format!(
                "SELECT cohort_key, cohort_value, variant, \
                 CAST(SUM(units + keyless_units) AS BIGINT), \
                 CAST(SUM(served_units + keyless_served) AS BIGINT) \
                 FROM agg_variant_units{SCOPE} GROUP BY cohort_key, cohort_value, variant"
            )
        } else {
            // Keyed units recounted across epochs, plus the keyless ones.
            format!(
                "SELECT u.lk, u.lv, u.variant, CAST(SUM(u.units) AS BIGINT), \
                 CAST(SUM(u.served) AS BIGINT) FROM (\
                 SELECT k.lk AS lk, k.lv AS lv, k.variant AS variant, COUNT(*) AS units, \
                 SUM(CASE WHEN k.served > 0 THEN 1 ELSE 0 END) AS served FROM (\
                 SELECT cohort_key AS lk, cohort_value AS lv, variant, SUM(served) AS served \
                 FROM agg_unit_variants{SCOPE} GROUP BY cohort_key, cohort_value, variant, unit_key\
                 ) k GROUP BY k.lk, k.lv, k.variant \
                 UNION ALL \
                 SELECT cohort_key AS lk, cohort_value AS lv, variant, SUM(keyless_units) AS units, \
                 SUM(keyless_served) AS served FROM agg_variant_units{SCOPE} \
                 GROUP BY cohort_key, cohort_value, variant\
                 ) u GROUP BY u.lk, u.lv, u.variant"
            )
        };
        let rows: Vec<(Cohort, String, i64, i64)> = fetch_rows!(self, units, scope, |r| (
            cohort_of_cell(r.try_get(0)?, r.try_get(1)?),
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(4)?
        ));
        for (cohort, variant, units, served) in rows {
            if let Some(s) = out.get_mut(&(cohort, variant)) {
                s.units = to_u64(units);
                s.served_units = to_u64(served);
            }
        }
        Ok(out.into_values().collect())
    }

    /// Per cohort: errors and cost per unit and side (candidates pooled, the A/A arm left out),
    /// summed over units.
    pub(super) async fn unit_comparisons(
        &self,
        scope: SummaryScope<'_>,
    ) -> Result<Vec<UnitComparison>, StoreError> {
        let one_epoch = self.scope_epochs(scope).await? <= 1;
        let filter = if one_epoch { "" } else { " AND keyless = 1" };
        let sql = format!(
            "SELECT cohort_key, cohort_value, {} FROM agg_unit_moments{SCOPE}{filter} \
             GROUP BY cohort_key, cohort_value",
            moment_sums()
        );
        let rows: Vec<(Cohort, (JointMoments, JointMoments))> =
            fetch_rows!(self, sql, scope, |r| (
                cohort_of_cell(r.try_get(0)?, r.try_get(1)?),
                decode_moments(r, 2)?
            ));
        let mut out: BTreeMap<Cohort, UnitComparison> = BTreeMap::new();
        let mut add = |cohort: Cohort,
                       errors: &JointMoments,
                       cost: &JointMoments,
                       tail: Option<&[JointMoments; RUNGS]>| {
            let c = out.entry(cohort.clone()).or_insert_with(|| UnitComparison {
                cohort,
                ..UnitComparison::default()
            });
            add_joint(&mut c.errors, errors);
            add_joint(&mut c.cost, cost);
            for (a, b) in c.latency_tail.iter_mut().zip(tail.into_iter().flatten()) {
                add_joint(a, b);
            }
        };
        for (cohort, (errors, cost)) in &rows {
            add(cohort.clone(), errors, cost, None);
        }
        // The rungs' moments (their unit count is the cohort's, set below).
        let sql = format!(
            "SELECT cohort_key, cohort_value, rung, {} FROM agg_tail_moments{SCOPE}{filter} \
             GROUP BY cohort_key, cohort_value, rung",
            tail_sums()
        );
        let rows: Vec<(Cohort, i32, JointMoments)> = fetch_rows!(self, sql, scope, |r| (
            cohort_of_cell(r.try_get(0)?, r.try_get(1)?),
            r.try_get(2)?,
            decode_tail(r, 3)?
        ));
        for (cohort, rung, m) in &rows {
            let mut tail = [JointMoments::default(); RUNGS];
            if let Some(t) = usize::try_from(*rung).ok().and_then(|r| tail.get_mut(r)) {
                *t = *m;
            }
            add(
                cohort.clone(),
                &JointMoments::default(),
                &JointMoments::default(),
                Some(&tail),
            );
        }
        if !one_epoch {
            let (tail_cols, _) = tail_unit_cols();
            let sides = ["exc", "eyc", "exs", "eys", "cxc", "cyc", "cxs", "cys"]
                .iter()
                .copied()
                .chain(tail_cols.iter().map(String::as_str))
                .map(|c| format!("SUM({c}) AS {c}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT u.lk, u.lv, COUNT(*), {}, {}, {} FROM (\
                 SELECT cohort_key AS lk, cohort_value AS lv, {sides} FROM agg_unit_sides{SCOPE} \
                 GROUP BY cohort_key, cohort_value, unit_key) u GROUP BY u.lk, u.lv",
                joint_sums(["exc", "eyc", "exs", "eys"]),
                joint_sums(["cxc", "cyc", "cxs", "cys"]),
                tail_joint_sums(),
            );
            let rows: Vec<(Cohort, JointMoments, JointMoments, [JointMoments; RUNGS])> =
                fetch_rows!(self, sql, scope, |r| (
                    cohort_of_cell(r.try_get(0)?, r.try_get(1)?),
                    joint_moments(r.try_get(2)?, r, 3)?,
                    joint_moments(r.try_get(2)?, r, 19)?,
                    tail_moments(r.try_get(2)?, r, 35)?
                ));
            for (cohort, errors, cost, tail) in &rows {
                add(cohort.clone(), errors, cost, Some(tail));
            }
        }
        // Every rung counts the cohort's units (the tail rows carry none of their own).
        for c in out.values_mut() {
            let units = c.errors.units;
            for t in &mut c.latency_tail {
                t.units = units;
            }
        }
        Ok(out.into_values().collect())
    }
}
