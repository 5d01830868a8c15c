//! The aggregate tables the writer keeps: the stage summary read from them equals the one summed
//! from the observation rows (the gate sees nothing different), on both backends, for scopes of
//! one epoch and of several; replayed batches add nothing twice; and two replicas writing to one
//! database add up to the traffic sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use canarist::capture::{CaptureEvent, ErrorClass, Observation, Role};
use canarist::store::{
    JointMoments, NewRollout, RolloutUpdate, StageSummary, Store, SummaryScope, UnitComparison,
};
use chrono::{DateTime, Utc};

use super::gateway::{StoreGateway, wait_stored};
use super::{at, backends, obs, pair_of};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

fn same_joint(a: &JointMoments, b: &JointMoments) -> bool {
    a.units == b.units
        && a.candidate_units == b.candidate_units
        && a.stable_units == b.stable_units
        && a.sums.iter().zip(b.sums).all(|(x, y)| close(*x, y))
        && a.products.iter().zip(b.products).all(|(x, y)| close(*x, y))
}

fn same_units(a: &[UnitComparison], b: &[UnitComparison]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(|x, y| x.cohort.cmp(&y.cohort));
    b.sort_by(|x, y| x.cohort.cmp(&y.cohort));
    a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| {
            x.cohort == y.cohort
                && same_joint(&x.errors, &y.errors)
                && same_joint(&x.cost, &y.cost)
                && x.latency_tail
                    .iter()
                    .zip(&y.latency_tail)
                    .all(|(a, b)| same_joint(a, b))
        })
}

/// Equal up to floating-point summation order.
pub(super) fn assert_same(label: &str, what: &str, got: &StageSummary, want: &StageSummary) {
    let variants = |s: &StageSummary| {
        let mut v: Vec<_> = s.variants.iter().chain(&s.aa.variants).cloned().collect();
        v.sort_by(|x, y| (&x.cohort, &x.variant).cmp(&(&y.cohort, &y.variant)));
        v
    };
    let (g, w) = (variants(got), variants(want));
    assert_eq!(
        g.len(),
        w.len(),
        "{label} {what}: variants {g:#?} vs {w:#?}"
    );
    for (g, w) in g.iter().zip(&w) {
        let ctx = format!("{label} {what}: {:?} {}", w.cohort, w.variant);
        assert_eq!(
            (g.requests, g.served, &g.errors, g.units, g.served_units),
            (w.requests, w.served, &w.errors, w.units, w.served_units),
            "{ctx}"
        );
        assert_eq!(
            (g.prompt_tokens, g.completion_tokens, g.role),
            (w.prompt_tokens, w.completion_tokens, w.role),
            "{ctx}"
        );
        assert_eq!(g.latency_histogram, w.latency_histogram, "{ctx}");
        assert_eq!(g.ttft_histogram, w.ttft_histogram, "{ctx}");
        for (a, b) in [(g.latency, w.latency), (g.ttft, w.ttft), (g.cost, w.cost)] {
            assert_eq!(a.count, b.count, "{ctx}");
            assert!(
                close(a.sum, b.sum) && close(a.sum_sq, b.sum_sq),
                "{ctx}: {a:?} vs {b:?}"
            );
        }
    }
    assert!(
        same_units(&got.units, &want.units),
        "{label} {what}: units {:#?} vs {:#?}",
        got.units,
        want.units
    );
    assert_eq!(got.pairs, want.pairs, "{label} {what}");
}

/// Mixed traffic for stage `stage` at second `i0..`: stable served, a candidate, the A/A arm,
/// units without a key, several requests per unit, errors, a missing cost, two label keys.
fn traffic(stage: &str, i0: i64, n: i64) -> Vec<CaptureEvent> {
    let mut out = Vec::new();
    for i in i0..i0 + n {
        let tier = if i % 3 == 0 { "enterprise" } else { "free" };
        let mut s = obs(
            "stable",
            Role::Stable,
            tier,
            100.0 + (i % 17) as f64 * 13.0,
            i,
        );
        let mut c = obs(
            "cand",
            Role::Candidate,
            tier,
            90.0 + (i % 23) as f64 * 11.0,
            i,
        );
        for o in [&mut s, &mut c] {
            o.stage = stage.into();
            o.unit_key = (i % 7 != 0).then(|| format!("user-{}", i % 11));
            o.cohort
                .insert("region".into(), ["eu", "us"][(i % 2) as usize].into());
        }
        if i % 5 == 0 {
            c.error = Some(ErrorClass::Upstream5xx);
        }
        if i % 9 == 0 {
            s.error = Some(ErrorClass::Timeout);
            s.cost_usd = None;
        }
        if i % 4 == 0 {
            c.ttft_ms = None;
            c.purpose = canarist::capture::Purpose::Served;
        }
        if i % 6 == 0 {
            let mut aa = obs("aa", Role::Candidate, tier, 120.0, i);
            aa.stage = stage.into();
            aa.unit_key = s.unit_key.clone();
            aa.purpose = canarist::capture::Purpose::Aa;
            out.push(CaptureEvent::Observation(Box::new(aa)));
        }
        if i % 2 == 0 {
            out.push(CaptureEvent::Pair(Box::new(pair_of(&s, &c))));
        } else {
            out.push(CaptureEvent::Observation(Box::new(s)));
            out.push(CaptureEvent::Observation(Box::new(c)));
        }
    }
    out
}

async fn rollout_at(store: &Store, stage: &str) -> DateTime<Utc> {
    let r = store
        .create_rollout(&NewRollout {
            deployment: "support".into(),
            candidate: "cand".into(),
            state: "running".into(),
            stage_index: 0,
            stage_name: stage.into(),
            actor: "test".into(),
            reason: "test".into(),
        })
        .await
        .unwrap();
    r.stage_started_at
}

async fn compare(store: &Store, label: &str, stage: &str, since: DateTime<Utc>, what: &str) {
    let scope = SummaryScope {
        deployment: "support",
        stage,
        since,
    };
    let got = store.stage_summary(scope).await.unwrap();
    let want = store.stage_summary_from_rows(scope).await.unwrap();
    assert!(!want.variants.is_empty(), "{label} {what}: traffic");
    assert_same(label, what, &got, &want);
    // The per-unit latency tails are there to compare: some rung has slow requests on both
    // sides, and a rung below every latency counts every success.
    let overall = got.units.iter().find(|u| u.cohort.is_none()).unwrap();
    assert!(
        overall
            .latency_tail
            .iter()
            .any(|t| t.sums[0] > 0.0 && t.sums[2] > 0.0 && t.sums[0] < t.sums[1]),
        "{label} {what}: {:?}",
        overall.latency_tail
    );
    let lowest = &overall.latency_tail[0];
    assert_eq!(
        (lowest.sums[0], lowest.sums[2]),
        (lowest.sums[1], lowest.sums[3])
    );
    assert!(lowest.sums[1] > 0.0 && lowest.units == overall.errors.units);
}

#[tokio::test]
async fn aggregates_equal_the_sums_over_rows_on_one_or_several_epochs() {
    for db in backends().await {
        let label = db.label;
        let store = db.store().await;
        // Before any rollout: the Unix epoch. The observations are dated just after each rollout
        // start (a microsecond apart), before the next one.
        let shift = |events: Vec<CaptureEvent>, base: DateTime<Utc>| -> Vec<CaptureEvent> {
            let at0 = at(0);
            events
                .into_iter()
                .map(|e| {
                    let mv = |o: &mut Observation| o.at = base + (o.at - at0) / 1_000_000;
                    match e {
                        CaptureEvent::Observation(mut o) => {
                            mv(&mut o);
                            CaptureEvent::Observation(o)
                        }
                        CaptureEvent::Pair(mut p) => {
                            mv(&mut p.stable);
                            mv(&mut p.candidate);
                            CaptureEvent::Pair(p)
                        }
                    }
                })
                .collect()
        };
        let early = shift(
            traffic("shadow", 0, 40),
            Utc::now() - chrono::Duration::hours(1),
        );
        store.write_events(&early).await.unwrap();
        let first = rollout_at(&store, "shadow").await;
        let during = shift(
            traffic("shadow", 40, 60),
            first + chrono::Duration::milliseconds(5),
        );
        for chunk in during.chunks(17) {
            store.write_events(chunk).await.unwrap();
        }
        // A replayed batch adds nothing.
        store.write_events(&during[..20]).await.unwrap();
        compare(&store, label, "shadow", first, "one epoch").await;
        compare(
            &store,
            label,
            "shadow",
            DateTime::<Utc>::UNIX_EPOCH,
            "all epochs",
        )
        .await;

        // A second rollout reuses the label: a third epoch.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let second = rollout_at(&store, "shadow").await;
        let later = shift(
            traffic("shadow", 100, 50),
            second + chrono::Duration::milliseconds(5),
        );
        store.write_events(&later).await.unwrap();
        compare(&store, label, "shadow", second, "latest epoch").await;
        compare(&store, label, "shadow", first, "two epochs").await;
        compare(
            &store,
            label,
            "shadow",
            DateTime::<Utc>::UNIX_EPOCH,
            "three epochs",
        )
        .await;
        let s = store
            .stage_summary(SummaryScope {
                deployment: "support",
                stage: "shadow",
                since: second,
            })
            .await
            .unwrap();
        let stable = s
            .variants
            .iter()
            .find(|v| v.cohort.is_none() && v.variant == "stable")
            .unwrap();
        assert_eq!(stable.requests, 50, "{label}: only the latest epoch");
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn aggregates_of_two_replicas_add_up_to_the_traffic_sent() {
    for db in backends().await {
        let label = db.label;
        let dir = tempfile::tempdir().unwrap();
        let (store_a, store_b) = (db.store().await, db.store().await);
        let a = StoreGateway::start(&db, &store_a, "", &dir.path().join("a.yaml")).await;
        let b = StoreGateway::start(&db, &store_b, "", &dir.path().join("b.yaml")).await;
        let mut sent = Vec::new();
        // The same units on both replicas, concurrently.
        let per_replica = 40;
        for round in 0..per_replica {
            let user = format!("user-{}", round % 13);
            let tier = if round % 4 == 0 { "enterprise" } else { "free" };
            let (pa, pb) = (format!("a {round}"), format!("b {round}"));
            let (ra, rb) = tokio::join!(a.send(&user, tier, &pa), b.send(&user, tier, &pb));
            sent.extend([ra, rb]);
        }
        let missing = wait_stored(&store_a, &db, &sent, Duration::from_secs(20)).await;
        assert!(
            missing.is_empty(),
            "{label}: {} requests not stored",
            missing.len()
        );
        let scope = SummaryScope::new("chat", "s1");
        let got = store_a.stage_summary(scope).await.unwrap();
        let want = store_a.stage_summary_from_rows(scope).await.unwrap();
        assert_same(label, "two replicas", &got, &want);
        let overall = |variant: &str| {
            got.variants
                .iter()
                .find(|v| v.cohort.is_none() && v.variant == variant)
                .unwrap_or_else(|| panic!("{label}: {variant} in {:#?}", got.variants))
                .clone()
        };
        let (stable, cand) = (overall("stable"), overall("cand"));
        assert_eq!(stable.requests, sent.len() as u64, "{label}");
        assert_eq!(cand.requests, sent.len() as u64, "{label}");
        assert_eq!(stable.served, sent.len() as u64, "{label}");
        assert_eq!((stable.units, cand.units), (13, 13), "{label}");
        let all = got.units.iter().find(|u| u.cohort.is_none()).unwrap();
        assert_eq!(all.errors.units, 13, "{label}");
        assert_eq!(
            all.errors.sums[1],
            sent.len() as f64,
            "{label}: candidate requests"
        );
        a.server.shutdown().await;
        b.server.shutdown().await;
        store_a.close().await;
        store_b.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_new_stage_of_a_running_rollout_is_a_new_epoch() {
    for db in backends().await {
        let label = db.label;
        let store = db.store().await;
        let r = store
            .create_rollout(&NewRollout {
                deployment: "support".into(),
                candidate: "cand".into(),
                state: "running".into(),
                stage_index: 0,
                stage_name: "canary-0".into(),
                actor: "test".into(),
                reason: "test".into(),
            })
            .await
            .unwrap();
        let moved = store
            .transition_rollout(
                r.id,
                &RolloutUpdate {
                    expected_state: "running".into(),
                    expected_stage: 0,
                    state: "running".into(),
                    stage_index: 1,
                    stage_name: "canary-1".into(),
                    actor: "test".into(),
                    reason: "promote".into(),
                    evidence: serde_json::json!({}),
                },
            )
            .await
            .unwrap();
        let started = moved.stage_started_at;
        assert!(started > r.stage_started_at, "{label}");
        let mut events = traffic("canary-1", 0, 10);
        for e in &mut events {
            let mv = |o: &mut Observation| o.at = started + chrono::Duration::milliseconds(1);
            match e {
                CaptureEvent::Observation(o) => mv(o),
                CaptureEvent::Pair(p) => {
                    mv(&mut p.stable);
                    mv(&mut p.candidate);
                }
            }
        }
        store.write_events(&events).await.unwrap();
        compare(&store, label, "canary-1", started, "new stage").await;
        store.close().await;
        db.cleanup().await;
    }
}

/// Runs `sql` on the test's database.
async fn exec(store: &Store, db: &super::TestDb, sql: &str) {
    match store.pg_pool() {
        Some(pool) => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(pool)
                .await
                .unwrap();
        }
        None => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

#[tokio::test]
async fn observations_stored_before_the_upgrade_are_summed_once() {
    for db in backends().await {
        let label = db.label;
        let store = db.store().await;
        let first = rollout_at(&store, "shadow").await;
        let mut events = traffic("shadow", 0, 30);
        for e in &mut events {
            let mv = |o: &mut Observation| o.at = first + chrono::Duration::milliseconds(1);
            match e {
                CaptureEvent::Observation(o) => mv(o),
                CaptureEvent::Pair(p) => {
                    mv(&mut p.stable);
                    mv(&mut p.candidate);
                }
            }
        }
        store.write_events(&events).await.unwrap();
        // As if the rows had been written before migration 0005: no sums, the marker set.
        exec(
            &store,
            &db,
            "DELETE FROM agg_variants; DELETE FROM agg_timings; DELETE FROM agg_variant_units; \
             DELETE FROM agg_unit_variants; DELETE FROM agg_unit_sides; \
             DELETE FROM agg_unit_moments; DELETE FROM agg_tail_moments; \
             INSERT INTO agg_backfill (id) VALUES (1);",
        )
        .await;
        // Two replicas start: the first sums the rows, the second finds nothing left to do.
        let (a, b) = tokio::join!(db.store(), db.store());
        compare(&a, label, "shadow", first, "backfilled").await;
        compare(
            &b,
            label,
            "shadow",
            DateTime::<Utc>::UNIX_EPOCH,
            "backfilled",
        )
        .await;
        for s in [a, b, store] {
            s.close().await;
        }
        db.cleanup().await;
    }
}
