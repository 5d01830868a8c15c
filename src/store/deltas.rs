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

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::capture::aggregate::{
    CohortCell, JointDelta, KeylessUnits, MomentsDelta, SideSums, StageKey, TailSums, joint_step,
};
use crate::capture::tail::RUNGS;
use crate::capture::{Aggregates, Observation};

/// Rows per upsert statement (at most 36 columns: below SQLite's 32,766 bind parameters).
pub(super) const DELTAS_PER_STATEMENT: usize = 800;
/// Rows per `agg_unit_sides` upsert (56 columns each).
pub(super) const SIDES_PER_STATEMENT: usize = 500;

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

/// A unit's side sums in [`side_cols`] order.
pub(super) fn side_values(s: &SideSums) -> Vec<f64> {
    let t = &s.tail;
    let mut v: Vec<f64> = s.errors.iter().chain(&s.cost).copied().collect();
    v.extend(t.successes);
    v.extend(t.above.iter().map(|a| a[0]));
    v.extend(t.above.iter().map(|a| a[1]));
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

/// The stage starts of each (deployment, stage label), oldest first.
pub(super) type Epochs = HashMap<(String, String), Vec<DateTime<Utc>>>;

/// The epoch an observation belongs to: the latest start of its stage label at or before it.
pub(super) fn epoch_of(epochs: &Epochs, o: &Observation) -> DateTime<Utc> {
    epochs
        .get(&(o.deployment.clone(), o.stage.clone()))
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

/// Per (stage, cohort, variant): keyed units and served units that appeared, from the unit rows'
/// new totals (`requests`, `served`) and their deltas.
#[derive(Debug, Default)]
pub(super) struct UnitTally {
    pub variant_units: BTreeMap<(StageKey, CohortCell, String), (KeylessUnits, KeylessUnits)>,
    pub moments: BTreeMap<(StageKey, CohortCell), MomentsDelta>,
}

impl UnitTally {
    pub fn from_keyless(agg: &Aggregates) -> Self {
        let mut t = UnitTally::default();
        for (k, v) in &agg.keyless_units {
            t.variant_units.entry(k.clone()).or_default().1 = *v;
        }
        t
    }

    /// A unit row of `variant` now at `new` after adding `delta` (requests, served).
    pub fn unit_variant(
        &mut self,
        key: (StageKey, CohortCell, String),
        new: (u64, u64),
        delta: (u64, u64),
    ) {
        let keyed = &mut self.variant_units.entry(key).or_default().0;
        if new.0 == delta.0 && new.0 > 0 {
            keyed.units += 1;
        }
        if new.1 == delta.1 && new.1 > 0 {
            keyed.served_units += 1;
        }
    }

    /// A unit's side totals now at `new` after adding `delta`.
    pub fn unit_sides(&mut self, key: (StageKey, CohortCell), new: &SideSums, delta: &SideSums) {
        let step = joint_step(&new.minus(delta), new);
        self.moments.entry(key).or_default().merge(&step);
    }
}

/// Reads the stage starts of the (deployment, label) pairs in `$keys` inside transaction `$tx`.
macro_rules! read_epochs {
    ($tx:expr, $keys:expr) => {{
        let mut epochs = $crate::store::deltas::Epochs::new();
        for (deployment, stage) in $keys {
            let starts: Vec<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
                "SELECT s.started_at FROM rollout_stages s JOIN rollouts r ON r.id = s.rollout_id \
                 WHERE r.deployment = $1 AND s.name = $2 ORDER BY s.started_at",
            )
            .bind(deployment.as_str())
            .bind(stage.as_str())
            .fetch_all(&mut *$tx)
            .await?;
            epochs.insert((deployment, stage), starts);
        }
        epochs
    }};
}
pub(super) use read_epochs;

/// Binds a stage key and cohort (the first five columns of every table).
macro_rules! bind_scope {
    ($b:expr, $stage:expr, $cohort:expr) => {
        $b.push_bind($stage.deployment.as_str())
            .push_bind($stage.stage.as_str())
            .push_bind($stage.epoch)
            .push_bind($cohort.0.as_str())
            .push_bind($cohort.1.as_str())
    };
}
pub(super) use bind_scope;

/// Adds `$agg` to the aggregate tables inside transaction `$tx` on database type `$db`.
macro_rules! write_deltas {
    ($tx:expr, $db:ty, $agg:expr) => {{
        use sqlx::{QueryBuilder, Row};
        use $crate::store::deltas::{
            DELTAS_PER_STATEMENT, SCOPE_COLS, UnitTally, add_set, bind_scope, moment_cols,
            moment_values,
        };
        let agg: &$crate::capture::Aggregates = $agg;
        let err_str = |e: Option<$crate::capture::ErrorClass>| e.map_or("", |e| e.as_str());

        let mut variants: Vec<_> = agg.variants.iter().collect();
        variants.sort_by(|(a, _), (b, _)| {
            (&a.0, &a.1, &a.2, err_str(a.3)).cmp(&(&b.0, &b.1, &b.2, err_str(b.3)))
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
        for chunk in variants.chunks(DELTAS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<$db>::new(format!(
                "INSERT INTO agg_variants ({SCOPE_COLS}, variant, error_class, role, {}) ",
                sums.join(", ")
            ));
            qb.push_values(chunk, |mut b, ((stage, cohort, variant, error), d)| {
                bind_scope!(b, stage, cohort)
                    .push_bind(variant.as_str())
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
        timings.sort_by(|a, b| a.0.cmp(b.0));
        for chunk in timings.chunks(DELTAS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<$db>::new(format!(
                "INSERT INTO agg_timings ({SCOPE_COLS}, variant, timing, bucket, n) "
            ));
            qb.push_values(
                chunk,
                |mut b, ((stage, cohort, variant, timing, bucket), n)| {
                    bind_scope!(b, stage, cohort)
                        .push_bind(variant.as_str())
                        .push_bind(timing.as_str())
                        .push_bind(i32::try_from(*bucket).unwrap_or(i32::MAX))
                        .push_bind(to_i64(**n));
                },
            );
            qb.push(format!(
                " ON CONFLICT ({SCOPE_COLS}, variant, timing, bucket) DO UPDATE SET {}",
                add_set("agg_timings", &["n"])
            ));
            qb.build().execute(&mut *$tx).await?;
        }

        let mut tally = UnitTally::from_keyless(agg);
        let mut units: Vec<_> = agg.unit_variants.iter().collect();
        units.sort_by(|a, b| a.0.cmp(b.0));
        for chunk in units.chunks(DELTAS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<$db>::new(format!(
                "INSERT INTO agg_unit_variants ({SCOPE_COLS}, variant, unit_key, requests, served) "
            ));
            qb.push_values(chunk, |mut b, ((stage, cohort, variant, unit), c)| {
                bind_scope!(b, stage, cohort)
                    .push_bind(variant.as_str())
                    .push_bind(unit.as_str())
                    .push_bind(to_i64(c.requests))
                    .push_bind(to_i64(c.served));
            });
            qb.push(format!(
                " ON CONFLICT ({SCOPE_COLS}, variant, unit_key) DO UPDATE SET {} \
                 RETURNING {SCOPE_COLS}, variant, unit_key, requests, served",
                add_set("agg_unit_variants", &["requests", "served"])
            ));
            for r in qb.build().fetch_all(&mut *$tx).await? {
                let stage = $crate::capture::aggregate::StageKey {
                    deployment: r.try_get(0)?,
                    stage: r.try_get(1)?,
                    epoch: r.try_get(2)?,
                };
                let cohort: (String, String) = (r.try_get(3)?, r.try_get(4)?);
                let variant: String = r.try_get(5)?;
                let unit: String = r.try_get(6)?;
                let new = (to_u64(r.try_get(7)?), to_u64(r.try_get(8)?));
                let key = (stage, cohort, variant, unit);
                if let Some(d) = agg.unit_variants.get(&key) {
                    let (stage, cohort, variant, _) = key;
                    tally.unit_variant((stage, cohort, variant), new, (d.requests, d.served));
                }
            }
        }
        let counted: Vec<_> = tally.variant_units.iter().collect();
        for chunk in counted.chunks(DELTAS_PER_STATEMENT) {
            let cols = ["units", "served_units", "keyless_units", "keyless_served"];
            let mut qb = QueryBuilder::<$db>::new(format!(
                "INSERT INTO agg_variant_units ({SCOPE_COLS}, variant, {}) ",
                cols.join(", ")
            ));
            qb.push_values(
                chunk,
                |mut b, ((stage, cohort, variant), (keyed, keyless))| {
                    bind_scope!(b, stage, cohort)
                        .push_bind(variant.as_str())
                        .push_bind(to_i64(keyed.units))
                        .push_bind(to_i64(keyed.served_units))
                        .push_bind(to_i64(keyless.units))
                        .push_bind(to_i64(keyless.served_units));
                },
            );
            qb.push(format!(
                " ON CONFLICT ({SCOPE_COLS}, variant) DO UPDATE SET {}",
                add_set("agg_variant_units", &cols)
            ));
            qb.build().execute(&mut *$tx).await?;
        }

        let mut sides: Vec<_> = agg.unit_sides.iter().collect();
        sides.sort_by(|a, b| a.0.cmp(b.0));
        let side_cols = $crate::store::deltas::side_cols();
        let side_refs: Vec<&str> = side_cols.iter().map(String::as_str).collect();
        for chunk in sides.chunks($crate::store::deltas::SIDES_PER_STATEMENT) {
            let mut qb = QueryBuilder::<$db>::new(format!(
                "INSERT INTO agg_unit_sides ({SCOPE_COLS}, unit_key, {}) ",
                side_cols.join(", ")
            ));
            qb.push_values(chunk, |mut b, ((stage, cohort, unit), s)| {
                let b = bind_scope!(b, stage, cohort).push_bind(unit.as_str());
                for v in $crate::store::deltas::side_values(s) {
                    b.push_bind(v);
                }
            });
            qb.push(format!(
                " ON CONFLICT ({SCOPE_COLS}, unit_key) DO UPDATE SET {} \
                 RETURNING {SCOPE_COLS}, unit_key, {}",
                add_set("agg_unit_sides", &side_refs),
                side_cols.join(", ")
            ));
            for r in qb.build().fetch_all(&mut *$tx).await? {
                let stage = $crate::capture::aggregate::StageKey {
                    deployment: r.try_get(0)?,
                    stage: r.try_get(1)?,
                    epoch: r.try_get(2)?,
                };
                let cohort: (String, String) = (r.try_get(3)?, r.try_get(4)?);
                let unit: String = r.try_get(5)?;
                let mut values = Vec::with_capacity(side_cols.len());
                for i in 0..side_cols.len() {
                    values.push(r.try_get::<f64, _>(6 + i)?);
                }
                let new = $crate::store::deltas::side_sums_of(&values);
                let key = (stage, cohort, unit);
                if let Some(d) = agg.unit_sides.get(&key) {
                    let (stage, cohort, _) = key;
                    tally.unit_sides((stage, cohort), &new, d);
                }
            }
        }
        let mut moments: Vec<(_, bool, _)> = tally
            .moments
            .iter()
            .map(|(k, m)| (k, false, *m))
            .chain(agg.keyless_moments.iter().map(|(k, m)| (k, true, *m)))
            .collect();
        moments.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let cols = moment_cols();
        let col_refs: Vec<&str> = cols.iter().map(String::as_str).collect();
        for chunk in moments.chunks(DELTAS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<$db>::new(format!(
                "INSERT INTO agg_unit_moments ({SCOPE_COLS}, keyless, {}) ",
                cols.join(", ")
            ));
            qb.push_values(chunk, |mut b, ((stage, cohort), keyless, m)| {
                let values = moment_values(m);
                let b = bind_scope!(b, stage, cohort).push_bind(i32::from(*keyless));
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
            .flat_map(|(k, keyless, m)| {
                m.tail
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| !$crate::store::deltas::tail_delta_is_zero(d))
                    .map(move |(rung, d)| (*k, *keyless, rung, *d))
            })
            .collect();
        let tail_cols = $crate::store::deltas::TAIL_MOMENT_COLS;
        for chunk in tails.chunks(DELTAS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<$db>::new(format!(
                "INSERT INTO agg_tail_moments ({SCOPE_COLS}, keyless, rung, {}) ",
                tail_cols.join(", ")
            ));
            qb.push_values(chunk, |mut b, ((stage, cohort), keyless, rung, d)| {
                let b = bind_scope!(b, stage, cohort)
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
