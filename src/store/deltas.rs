//! Adds capture deltas ([`Aggregates`]) to the aggregate tables (`migrations/*/0005_aggregates.sql`)
//! inside the writer's transaction. Every write is an upsert that adds
//! (`ON CONFLICT DO UPDATE SET n = t.n + excluded.n`), so deltas from several replicas add up.
//!
//! The per-unit tables return their new totals (`RETURNING`); a unit's old totals are the new
//! ones minus the delta, and [`joint_step`] turns the pair into the change of the sums over
//! units, which goes to `agg_unit_moments` — a tick reads that one row per cohort instead of
//! grouping units. On Postgres two replicas adding to the same unit serialize on its row lock,
//! and each sees the other's committed total, so the steps telescope; rows are written in key
//! order so that two writers never wait on each other in a cycle.
//!
//! Never: decides what a delta means (that is `capture::aggregate`); the stage epoch is read
//! from the stored rollout stages (the latest start of the label at or before the observation).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Encode, Postgres, Sqlite, Type};

use crate::capture::aggregate::{
    JointDelta, KeylessUnits, MomentsDelta, SideSums, TailSums, joint_step,
};
use crate::capture::cells::{Cells, Name, ScopeId};
use crate::capture::tail::RUNGS;
use crate::capture::{Aggregates, Observation};

/// `agg_unit_sides`' columns after its key: errors and cost, then the latency tail
/// ([`tail_side_values`] order).
pub(super) fn side_cols() -> Vec<String> {
    let mut cols: Vec<String> = [
        "exc", "eyc", "exs", "eys", "cxc", "cyc", "cxs", "cys", "tyc", "tys",
    ]
    .map(str::to_owned)
    .to_vec();
    cols.extend((0..RUNGS).map(|r| format!("tc{r}")));
    cols.extend((0..RUNGS).map(|r| format!("ts{r}")));
    cols
}

/// How many columns [`side_cols`] names.
pub(super) const SIDE_COLS: usize = 10 + 2 * RUNGS;

/// A unit's side sums in [`side_cols`] order.
pub(super) fn side_values(s: &SideSums) -> [f64; SIDE_COLS] {
    let t = &s.tail;
    let mut v = [0.0; SIDE_COLS];
    v[..4].copy_from_slice(&s.errors);
    v[4..8].copy_from_slice(&s.cost);
    v[8..10].copy_from_slice(&t.successes);
    for (r, above) in t.above.iter().enumerate() {
        v[10 + r] = above[0];
        v[10 + RUNGS + r] = above[1];
    }
    v
}

/// The inverse of [`side_values`].
pub(super) fn side_sums_of(v: &[f64]) -> SideSums {
    let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
    let mut s = SideSums::default();
    for i in 0..4 {
        s.errors[i] = at(i);
        s.cost[i] = at(4 + i);
    }
    let mut t = TailSums {
        successes: [at(8), at(9)],
        ..TailSums::default()
    };
    for r in 0..RUNGS {
        t.above[r] = [at(10 + r), at(10 + RUNGS + r)];
    }
    s.tail = t;
    s
}

/// The columns of `agg_tail_moments` after its key (scope, keyless, rung).
pub(super) const TAIL_MOMENT_COLS: [&str; 16] = [
    "cu", "su", "s0", "s1", "s2", "s3", "p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9",
];

/// One rung's delta: which rows of `agg_tail_moments` it changes (none when it is all zero).
pub(super) fn tail_delta_is_zero(d: &JointDelta) -> bool {
    d.candidate_units == 0
        && d.stable_units == 0
        && d.sums.iter().all(|x| *x == 0.0)
        && d.products.iter().all(|x| *x == 0.0)
}

/// The stage starts of each deployment's stage labels, oldest first.
pub(super) type Epochs = HashMap<String, HashMap<String, Vec<DateTime<Utc>>>>;

/// The epoch an observation belongs to: the latest start of its stage label at or before it.
pub(super) fn epoch_of(epochs: &Epochs, o: &Observation) -> DateTime<Utc> {
    epochs
        .get(o.deployment.as_str())
        .and_then(|stages| stages.get(o.stage.as_str()))
        .and_then(|starts| starts.iter().rev().find(|s| **s <= o.at).copied())
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// `t.c = t.c + excluded.c` for each column.
pub(super) fn add_set(table: &str, cols: &[&str]) -> String {
    cols.iter()
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) const SCOPE_COLS: &str = "deployment, stage, epoch, cohort_key, cohort_value";

/// The columns of `agg_unit_moments` after its key, in [`moment_values`] order.
pub(super) fn moment_cols() -> Vec<String> {
    let mut cols = vec!["units".to_owned()];
    for m in ["e", "c"] {
        cols.push(format!("{m}_cu"));
        cols.push(format!("{m}_su"));
        cols.extend((0..4).map(|i| format!("{m}_s{i}")));
        cols.extend((0..10).map(|i| format!("{m}_p{i}")));
    }
    cols
}

/// A moments delta as (units, then per metric: candidate units, stable units, 4 sums, 10
/// products); counts as f64 are exact far beyond any stage.
pub(super) fn moment_values(m: &MomentsDelta) -> Vec<f64> {
    let mut v = vec![m.units as f64];
    for j in [&m.errors, &m.cost] {
        v.push(j.candidate_units as f64);
        v.push(j.stable_units as f64);
        v.extend(j.sums);
        v.extend(j.products);
    }
    v
}

/// Per (scope, variant): keyed units and served units that appeared, from the unit rows'
/// new totals (`requests`, `served`) and their deltas, beside the keyless ones; per scope, the
/// change of the keyed units' moments.
#[derive(Debug, Default)]
pub(super) struct UnitTally {
    pub variant_units: HashMap<(ScopeId, Name), (KeylessUnits, KeylessUnits)>,
    pub moments: HashMap<ScopeId, MomentsDelta>,
}

impl UnitTally {
    pub fn from_keyless(agg: &Aggregates) -> Self {
        let mut t = UnitTally::default();
        for (k, v) in &agg.keyless_units {
            t.variant_units.entry(*k).or_default().1 = *v;
        }
        t
    }

    /// A unit row of `variant` now at `new` after adding `delta` (requests, served).
    pub fn unit_variant(&mut self, key: (ScopeId, Name), new: (u64, u64), delta: (u64, u64)) {
        let keyed = &mut self.variant_units.entry(key).or_default().0;
        if new.0 == delta.0 && new.0 > 0 {
            keyed.units += 1;
        }
        if new.1 == delta.1 && new.1 > 0 {
            keyed.served_units += 1;
        }
    }

    /// A unit's side totals now at `new` after adding `delta`.
    pub fn unit_sides(&mut self, scope: ScopeId, new: &SideSums, delta: &SideSums) {
        let step = joint_step(&new.minus(delta), new);
        self.moments.entry(scope).or_default().merge(&step);
    }
}

/// Reads the stage starts of the (deployment, label) pairs in `$keys` inside transaction `$tx`.
macro_rules! read_epochs {
    ($tx:expr, $keys:expr) => {{
        let mut epochs = $crate::store::deltas::Epochs::new();
        for (deployment, stage) in $keys {
            let (deployment, stage): (&str, &str) = (deployment, stage);
            let starts: Vec<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
                "SELECT s.started_at FROM rollout_stages s JOIN rollouts r ON r.id = s.rollout_id \
                 WHERE r.deployment = $1 AND s.name = $2 ORDER BY s.started_at",
            )
            .bind(deployment)
            .bind(stage)
            .fetch_all(&mut *$tx)
            .await?;
            epochs
                .entry(deployment.to_owned())
                .or_default()
                .insert(stage.to_owned(), starts);
        }
        epochs
    }};
}
pub(super) use read_epochs;

/// A stage epoch as a bind parameter in its stored form: on SQLite the text a `DateTime` is
/// stored as (formatted once per scope, then shared by every row), on Postgres a `timestamptz`.
#[derive(Debug, Clone)]
pub(super) struct EpochParam {
    at: DateTime<Utc>,
    text: Arc<str>,
}

impl EpochParam {
    pub fn new(at: DateTime<Utc>) -> Self {
        // sqlx's own encoding of a `DateTime` for SQLite.
        let text = at.to_rfc3339_opts(SecondsFormat::AutoSi, false).into();
        Self { at, text }
    }
}

impl Type<Sqlite> for EpochParam {
    fn type_info() -> <Sqlite as Database>::TypeInfo {
        <DateTime<Utc> as Type<Sqlite>>::type_info()
    }
}

impl Encode<'_, Sqlite> for EpochParam {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <Arc<str> as Encode<'_, Sqlite>>::encode(self.text.clone(), buf)
    }
}

impl Type<Postgres> for EpochParam {
    fn type_info() -> <Postgres as Database>::TypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for EpochParam {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<'_, Postgres>>::encode_by_ref(&self.at, buf)
    }
}

/// What every row of a scope binds first (the five key columns of every table), made once per
/// flush: the cells' shared strings (bound without a copy) and the epoch in its stored form.
#[derive(Debug, Clone)]
pub(super) struct ScopeBinds {
    pub deployment: Arc<str>,
    pub stage: Arc<str>,
    pub epoch: EpochParam,
    pub key: Arc<str>,
    pub value: Arc<str>,
}

/// The [`ScopeBinds`] of every scope of `cells`, by [`ScopeId::index`].
pub(super) fn scope_binds(cells: &Cells) -> Vec<ScopeBinds> {
    let mut epochs: HashMap<DateTime<Utc>, EpochParam> = HashMap::new();
    cells
        .scopes()
        .map(|(_, p)| ScopeBinds {
            deployment: cells.arc(p.deployment),
            stage: cells.arc(p.stage),
            epoch: epochs
                .entry(p.epoch)
                .or_insert_with(|| EpochParam::new(p.epoch))
                .clone(),
            key: cells.arc(p.key),
            value: cells.arc(p.value),
        })
        .collect()
}

/// Binds a scope's stage key and cohort cell (the first five columns of every table) from
/// `$binds` ([`scope_binds`] of the cells that gave `$scope`).
macro_rules! bind_scope {
    ($b:expr, $binds:expr, $scope:expr) => {{
        let s: &$crate::store::deltas::ScopeBinds = &$binds[$scope.index()];
        $b.push_bind(s.deployment.clone())
            .push_bind(s.stage.clone())
            .push_bind(&s.epoch)
            .push_bind(s.key.clone())
            .push_bind(s.value.clone())
    }};
}
pub(super) use bind_scope;

/// Slices of `rows` (sorted by scope) that share one stage, in [`super::statement_chunks`]: the
/// unit tables' upserts return rows without their stage's columns, known from the slice.
pub(super) fn stage_chunks<'a, K: Copy, V>(
    cells: &'a Cells,
    rows: &'a [(K, V)],
    scope: fn(K) -> ScopeId,
) -> impl Iterator<Item = (ScopeId, &'a [(K, V)])> + 'a {
    rows.chunk_by(move |a, b| cells.same_stage(scope(a.0), scope(b.0)))
        .flat_map(super::statement_chunks)
        .filter_map(move |chunk| chunk.first().map(|first| (scope(first.0), chunk)))
}

/// Adds `$agg` to the aggregate tables inside transaction `$tx` on database type `$db`. Every
/// table's rows are written in the order of their keys' strings (the cells' ranks).
macro_rules! write_deltas {
    ($tx:expr, $db:ty, $agg:expr) => {{
        use sqlx::{QueryBuilder, Row};
        use $crate::store::deltas::{
            SCOPE_COLS, SIDE_COLS, UnitTally, add_set, bind_scope, moment_cols, moment_values,
            scope_binds, stage_chunks,
        };
        let agg: &$crate::capture::Aggregates = $agg;
        let cells = &agg.cells;
        let ranks = cells.ranks();
        let binds = scope_binds(cells);
        let err_str = |e: Option<$crate::capture::ErrorClass>| e.map_or("", |e| e.as_str());

        let mut variants: Vec<_> = agg.variants.iter().collect();
        variants.sort_unstable_by_key(|((scope, variant, error), _)| {
            (ranks.scope(*scope), ranks.name(*variant), err_str(*error))
        });
        let sums = [
            "requests",
            "served",
            "latency_n",
            "latency_sum",
            "latency_sq",
            "ttft_n",
            "ttft_sum",
            "ttft_sq",
            "prompt_tokens",
            "completion_tokens",
            "cost_n",
            "cost_sum",
            "cost_sq",
        ];
        for chunk in $crate::store::statement_chunks(&variants) {
            let mut qb = QueryBuilder::<$db>::new(format!(
                "INSERT INTO agg_variants ({SCOPE_COLS}, variant, error_class, role, {}) ",
                sums.join(", ")
            ));
            qb.push_values(chunk, |mut b, ((scope, variant, error), d)| {
                bind_scope!(b, binds, *scope)
                    .push_bind(cells.arc(*variant))
                    .push_bind(err_str(*error))
                    .push_bind(d.role.as_str())
                    .push_bind(to_i64(d.requests))
                    .push_bind(to_i64(d.served))
                    .push_bind(to_i64(d.latency.n))
                    .push_bind(d.latency.sum)
                    .push_bind(d.latency.sum_sq)
                    .push_bind(to_i64(d.ttft.n))
                    .push_bind(d.ttft.sum)
                    .push_bind(d.ttft.sum_sq)
                    .push_bind(to_i64(d.prompt_tokens))
                    .push_bind(to_i64(d.completion_tokens))
                    .push_bind(to_i64(d.cost.n))
                    .push_bind(d.cost.sum)
                    .push_bind(d.cost.sum_sq);
            });
            qb.push(format!(
                " ON CONFLICT ({SCOPE_COLS}, variant, error_class) DO UPDATE SET {}",
                add_set("agg_variants", &sums)
            ));
            qb.build().execute(&mut *$tx).await?;
        }

        let mut timings: Vec<_> = agg.timings.iter().collect();
        timings.sort_unstable_by_key(|((scope, variant, timing, bucket), _)| {
            (ranks.scope(*scope), ranks.name(*variant), *timing, *bucket)
        });
        for chunk in $crate::store::statement_chunks(&timings) {
            let mut qb = QueryBuilder::<$db>::new(format!(
                "INSERT INTO agg_timings ({SCOPE_COLS}, variant, timing, bucket, n) "
            ));
            qb.push_values(chunk, |mut b, ((scope, variant, timing, bucket), n)| {
                bind_scope!(b, binds, *scope)
                    .push_bind(cells.arc(*variant))
                    .push_bind(timing.as_str())
                    .push_bind(i32::try_from(*bucket).unwrap_or(i32::MAX))
                    .push_bind(to_i64(**n));
            });
            qb.push(format!(
                " ON CONFLICT ({SCOPE_COLS}, variant, timing, bucket) DO UPDATE SET {}",
                add_set("agg_timings", &["n"])
            ));
            qb.build().execute(&mut *$tx).await?;
        }

        let mut tally = UnitTally::from_keyless(agg);
        let mut units: Vec<_> = agg.unit_variants.iter().collect();
        units.sort_unstable_by_key(|((scope, variant, unit), _)| {
            (ranks.scope(*scope), ranks.name(*variant), ranks.name(*unit))
        });
        for (first, chunk) in stage_chunks(cells, &units, |k| k.0) {
            let mut qb = QueryBuilder::<$db>::new(format!(
                "INSERT INTO agg_unit_variants ({SCOPE_COLS}, variant, unit_key, requests, served) "
            ));
            qb.push_values(chunk, |mut b, ((scope, variant, unit), c)| {
                bind_scope!(b, binds, *scope)
                    .push_bind(cells.arc(*variant))
                    .push_bind(cells.arc(*unit))
                    .push_bind(to_i64(c.requests))
                    .push_bind(to_i64(c.served));
            });
            // The chunk's rows share `first`'s stage: its columns need not come back.
            qb.push(format!(
                " ON CONFLICT ({SCOPE_COLS}, variant, unit_key) DO UPDATE SET {} \
                 RETURNING cohort_key, cohort_value, variant, unit_key, requests, served",
                add_set("agg_unit_variants", &["requests", "served"])
            ));
            for r in qb.build().fetch_all(&mut *$tx).await? {
                let key = cells
                    .find_cell(first, r.try_get(0)?, r.try_get(1)?)
                    .zip(cells.find_name(r.try_get(2)?))
                    .zip(cells.find_name(r.try_get(3)?))
                    .map(|((scope, variant), unit)| (scope, variant, unit));
                if let Some(((scope, variant, _), d)) =
                    key.and_then(|k| agg.unit_variants.get_key_value(&k))
                {
                    let new = (to_u64(r.try_get(4)?), to_u64(r.try_get(5)?));
                    tally.unit_variant((*scope, *variant), new, (d.requests, d.served));
                }
            }
        }
        let mut counted: Vec<_> = tally.variant_units.iter().collect();
        counted.sort_unstable_by_key(|((scope, variant), _)| {
            (ranks.scope(*scope), ranks.name(*variant))
        });
        for chunk in $crate::store::statement_chunks(&counted) {
            let cols = ["units", "served_units", "keyless_units", "keyless_served"];
            let mut qb = QueryBuilder::<$db>::new(format!(
                "INSERT INTO agg_variant_units ({SCOPE_COLS}, variant, {}) ",
                cols.join(", ")
            ));
            qb.push_values(chunk, |mut b, ((scope, variant), (keyed, keyless))| {
                bind_scope!(b, binds, *scope)
                    .push_bind(cells.arc(*variant))
                    .push_bind(to_i64(keyed.units))
                    .push_bind(to_i64(keyed.served_units))
                    .push_bind(to_i64(keyless.units))
                    .push_bind(to_i64(keyless.served_units));
            });
            qb.push(format!(
                " ON CONFLICT ({SCOPE_COLS}, variant) DO UPDATE SET {}",
                add_set("agg_variant_units", &cols)
            ));
            qb.build().execute(&mut *$tx).await?;
        }

        // Each unit's delta in the tables' form (per rung, the successes slower than it).
        let mut sides: Vec<_> = agg
            .unit_sides
            .iter()
            .map(|(&(scope, unit), d)| ((scope, unit), d.sums()))
            .collect();
        sides.sort_unstable_by_key(|((scope, unit), _)| (ranks.scope(*scope), ranks.name(*unit)));
        let side_deltas: std::collections::HashMap<_, _> =
            sides.iter().map(|(k, s)| (*k, s)).collect();
        let side_cols = $crate::store::deltas::side_cols();
        let side_refs: Vec<&str> = side_cols.iter().map(String::as_str).collect();
        for (first, chunk) in stage_chunks(cells, &sides, |k| k.0) {
            let mut qb = QueryBuilder::<$db>::new(format!(
                "INSERT INTO agg_unit_sides ({SCOPE_COLS}, unit_key, {}) ",
                side_cols.join(", ")
            ));
            qb.push_values(chunk, |mut b, ((scope, unit), s)| {
                let b = bind_scope!(b, binds, *scope).push_bind(cells.arc(*unit));
                for v in $crate::store::deltas::side_values(s) {
                    b.push_bind(v);
                }
            });
            // The chunk's rows share `first`'s stage: its columns need not come back.
            qb.push(format!(
                " ON CONFLICT ({SCOPE_COLS}, unit_key) DO UPDATE SET {} \
                 RETURNING cohort_key, cohort_value, unit_key, {}",
                add_set("agg_unit_sides", &side_refs),
                side_cols.join(", ")
            ));
            for r in qb.build().fetch_all(&mut *$tx).await? {
                let key = cells
                    .find_cell(first, r.try_get(0)?, r.try_get(1)?)
                    .zip(cells.find_name(r.try_get(2)?));
                if let Some((scope, d)) = key.and_then(|k| side_deltas.get(&k).map(|d| (k.0, *d))) {
                    let mut values = [0.0; SIDE_COLS];
                    for (i, v) in values.iter_mut().enumerate() {
                        *v = r.try_get::<f64, _>(3 + i)?;
                    }
                    let new = $crate::store::deltas::side_sums_of(&values);
                    tally.unit_sides(scope, &new, d);
                }
            }
        }
        let mut moments: Vec<(_, bool, _)> = tally
            .moments
            .iter()
            .map(|(k, m)| (*k, false, *m))
            .chain(agg.keyless_moments.iter().map(|(k, m)| (*k, true, *m)))
            .collect();
        moments.sort_unstable_by_key(|(scope, keyless, _)| (ranks.scope(*scope), *keyless));
        let cols = moment_cols();
        let col_refs: Vec<&str> = cols.iter().map(String::as_str).collect();
        for chunk in $crate::store::statement_chunks(&moments) {
            let mut qb = QueryBuilder::<$db>::new(format!(
                "INSERT INTO agg_unit_moments ({SCOPE_COLS}, keyless, {}) ",
                cols.join(", ")
            ));
            qb.push_values(chunk, |mut b, (scope, keyless, m)| {
                let values = moment_values(m);
                let b = bind_scope!(b, binds, *scope).push_bind(i32::from(*keyless));
                // The counts first (units, then each metric's two unit counts) as integers.
                for (i, v) in values.iter().enumerate() {
                    if i == 0 || i == 1 || i == 2 || i == 17 || i == 18 {
                        b.push_bind(*v as i64);
                    } else {
                        b.push_bind(*v);
                    }
                }
            });
            qb.push(format!(
                " ON CONFLICT ({SCOPE_COLS}, keyless) DO UPDATE SET {}",
                add_set("agg_unit_moments", &col_refs)
            ));
            qb.build().execute(&mut *$tx).await?;
        }

        // Each rung's moments, one row per (scope, keyless, rung) that changed.
        let tails: Vec<_> = moments
            .iter()
            .flat_map(|(scope, keyless, m)| {
                m.tail
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| !$crate::store::deltas::tail_delta_is_zero(d))
                    .map(move |(rung, d)| (*scope, *keyless, rung, *d))
            })
            .collect();
        let tail_cols = $crate::store::deltas::TAIL_MOMENT_COLS;
        for chunk in $crate::store::statement_chunks(&tails) {
            let mut qb = QueryBuilder::<$db>::new(format!(
                "INSERT INTO agg_tail_moments ({SCOPE_COLS}, keyless, rung, {}) ",
                tail_cols.join(", ")
            ));
            qb.push_values(chunk, |mut b, (scope, keyless, rung, d)| {
                let b = bind_scope!(b, binds, *scope)
                    .push_bind(i32::from(*keyless))
                    .push_bind(i32::try_from(*rung).unwrap_or(i32::MAX))
                    .push_bind(to_i64(d.candidate_units))
                    .push_bind(to_i64(d.stable_units));
                for v in d.sums.iter().chain(&d.products) {
                    b.push_bind(*v);
                }
            });
            qb.push(format!(
                " ON CONFLICT ({SCOPE_COLS}, keyless, rung) DO UPDATE SET {}",
                add_set("agg_tail_moments", &tail_cols)
            ));
            qb.build().execute(&mut *$tx).await?;
        }
    }};
}
pub(super) use write_deltas;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_epoch_param_is_stored_as_its_datetime_would_be() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        let now = Utc::now();
        let whole = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap();
        for at in [DateTime::<Utc>::UNIX_EPOCH, whole, now] {
            let (want, got): (String, String) = sqlx::query_as("SELECT $1, $2")
                .bind(at)
                .bind(EpochParam::new(at))
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(got, want);
        }
    }
}
