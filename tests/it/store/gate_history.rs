//! The gate's history table (`gate_history`): what the controller writes comes back in order,
//! with an unbounded interval's sides as `None`, on both backends; retention prunes by age.

use canarist::store::{GatePoint, NewRollout, RetentionPolicy};
use std::time::Duration;

use super::{at, backends};

fn point(rollout: uuid::Uuid, stage: u32, cohort: &str, s: i64, iv: (f64, f64)) -> GatePoint {
    GatePoint {
        rollout_id: rollout,
        deployment: "support".into(),
        stage_index: stage,
        metric: "error_rate".into(),
        cohort: cohort.into(),
        at: at(s),
        estimate: Some((iv.0 + iv.1) / 2.0),
        lo: Some(iv.0),
        hi: Some(iv.1),
        bound: Some(0.15),
        alpha: Some(0.0125),
        method: "proportion_delta_cs".into(),
        verdict: "inconclusive".into(),
        candidate_n: s as u64,
        stable_n: 2 * s as u64,
    }
}

#[tokio::test]
async fn gate_history_round_trips_in_order_and_is_pruned_by_age_on_both_backends() {
    for db in backends().await {
        let label = db.label;
        let store = db.store().await;
        let r = store
            .create_rollout(&NewRollout {
                deployment: "support".into(),
                candidate: "cand".into(),
                state: "shadow".into(),
                stage_index: 0,
                stage_name: "shadow".into(),
                actor: "alice".into(),
                reason: "start".into(),
            })
            .await
            .unwrap();
        // Too little data: an unbounded interval (and a NaN estimate) is stored as NULLs.
        let mut first = point(r.id, 0, "all", 10, (f64::NEG_INFINITY, f64::INFINITY));
        first.estimate = Some(f64::NAN);
        first.verdict = "insufficient_data".into();
        let written = [
            first,
            point(r.id, 0, "tier=free", 20, (-0.4, 0.5)),
            point(r.id, 0, "all", 30, (-0.2, 0.25)),
            point(r.id, 1, "all", 200, (-0.1, 0.1)),
        ];
        store.record_gate_points(&written[..2]).await.unwrap();
        store.record_gate_points(&written[2..]).await.unwrap();
        store.record_gate_points(&[]).await.unwrap();
        let stage0 = store.gate_history(r.id, 0).await.unwrap();
        assert_eq!(stage0.len(), 3, "{label}");
        let mut expected_first = written[0].clone();
        (
            expected_first.estimate,
            expected_first.lo,
            expected_first.hi,
        ) = (None, None, None);
        assert_eq!(stage0[0], expected_first, "{label}");
        assert_eq!(stage0[1..], written[1..3], "{label}: in the order written");
        assert_eq!(
            store.gate_history(r.id, 1).await.unwrap(),
            written[3..],
            "{label}"
        );
        assert!(
            store
                .gate_history(uuid::Uuid::new_v4(), 0)
                .await
                .unwrap()
                .is_empty()
        );

        // Retention: rows older than 100 s at t = 150 go, the others stay.
        let policy = RetentionPolicy {
            observations: None,
            bodies: None,
            gate_history: Some(Duration::from_secs(100)),
            interval: Duration::from_secs(60),
        };
        let report = store.prune(&policy, at(150)).await.unwrap();
        assert_eq!(report.gate_points_deleted, 3, "{label}");
        assert!(
            store.gate_history(r.id, 0).await.unwrap().is_empty(),
            "{label}"
        );
        assert_eq!(
            store.gate_history(r.id, 1).await.unwrap().len(),
            1,
            "{label}"
        );
        store.close().await;
        db.cleanup().await;
    }
}
