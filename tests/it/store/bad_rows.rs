//! One bad row must not lose a batch: NUL characters are sanitized on the way into the store
//! (both backends alike), and a row the database rejects is dropped alone, counted, while the
//! innocent events of its batch are stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use canarist::store::Store;
use futures::future::join_all;

use super::backends;
use super::gateway::{StoreGateway, pair_of_request, prompt_of, rows_of, wait_stored};
use crate::support::metric_value;

/// A long flush interval and a large batch: every request of a test lands in one batch.
const ONE_BATCH: &str = "flush_interval: 1s, batch_size: 500";

#[tokio::test]
async fn nul_characters_are_sanitized_and_lose_no_innocent_event() {
    for db in backends().await {
        let label = db.label;
        let dir = tempfile::tempdir().unwrap();
        let store = db.store().await;
        let gw = StoreGateway::start(&db, &store, ONE_BATCH, &dir.path().join("c.yaml")).await;
        // The bad requests first: they open the batch the innocent ones join.
        let bad_user = gw.send("bad\0user", "free", "hello").await;
        let bad_tier = gw.send("u-tier", "pro\0plus", "hello").await;
        let bad_prompt = gw.send("u-prompt", "free", "say \0 nothing").await;
        let innocent: Vec<_> = join_all((0..10).map(|i| {
            let gw = &gw;
            async move { gw.send(&format!("user-{i}"), "free", "hello").await }
        }))
        .await;

        let all: Vec<_> = [bad_user, bad_tier, bad_prompt]
            .into_iter()
            .chain(innocent.iter().copied())
            .collect();
        let missing = wait_stored(&store, &db, &all, Duration::from_secs(20)).await;
        assert!(
            missing.is_empty(),
            "{label}: {} of {} requests lost events: {missing:?}",
            missing.len(),
            all.len()
        );

        let pair = pair_of_request(&store, &db, bad_user).await.unwrap();
        for side in [&pair.stable, &pair.candidate] {
            assert_eq!(side.unit_key.as_deref(), Some("bad\u{FFFD}user"), "{label}");
        }
        let pair = pair_of_request(&store, &db, bad_tier).await.unwrap();
        assert_eq!(pair.cohort["tier"], "pro\u{FFFD}plus", "{label}");
        assert_eq!(pair.stable.cohort["tier"], "pro\u{FFFD}plus", "{label}");
        let pair = pair_of_request(&store, &db, bad_prompt).await.unwrap();
        let body = pair
            .stable
            .request_body
            .as_ref()
            .expect("bodies are kept")
            .value();
        assert_eq!(prompt_of(&body), Some("say \u{FFFD} nothing"), "{label}");
        let tier = label_value(&store, &db, bad_tier).await;
        assert_eq!(tier, vec!["pro\u{FFFD}plus".to_string(); 2], "{label}");

        let metrics = gw.metrics().await;
        assert_eq!(
            metric_value(&metrics, "canarist_capture_dropped_total"),
            0.0,
            "{label}: {metrics}"
        );
        gw.server.shutdown().await;
        store.close().await;
        db.cleanup().await;
    }
}

/// The `tier` label rows stored for the observations of `request_id`.
async fn label_value(store: &Store, db: &super::TestDb, request_id: uuid::Uuid) -> Vec<String> {
    let (observations, _) = rows_of(store, db, request_id).await;
    let mut out = Vec::new();
    for id in observations {
        let q = "SELECT value FROM observation_labels WHERE observation_id = $1 AND key = 'tier'";
        let v: String = match store.pg_pool() {
            Some(pool) => sqlx::query_scalar(q)
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap(),
            None => {
                let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
                let v = sqlx::query_scalar(q)
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                v
            }
        };
        out.push(v);
    }
    out
}

/// Makes the database refuse any observation of unit `poison`: a CHECK constraint on Postgres,
/// a trigger that aborts on SQLite (both are constraint errors, as a real bad row would give).
async fn poison(store: &Store, db: &super::TestDb) {
    match store.pg_pool() {
        Some(pool) => {
            sqlx::query(
                "ALTER TABLE observations ADD CONSTRAINT no_poison \
                 CHECK (unit_key IS DISTINCT FROM 'poison')",
            )
            .execute(pool)
            .await
            .unwrap();
        }
        None => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query(
                "CREATE TRIGGER no_poison BEFORE INSERT ON observations \
                 WHEN NEW.unit_key = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
    }
}

#[tokio::test]
async fn a_row_the_database_rejects_is_dropped_alone_and_counted() {
    for db in backends().await {
        let label = db.label;
        let dir = tempfile::tempdir().unwrap();
        let store = db.store().await;
        poison(&store, &db).await;
        let gw = StoreGateway::start(&db, &store, ONE_BATCH, &dir.path().join("c.yaml")).await;
        let poisoned = gw.send("poison", "free", "hello").await;
        let innocent: Vec<_> = join_all((0..10).map(|i| {
            let gw = &gw;
            async move { gw.send(&format!("user-{i}"), "free", "hello").await }
        }))
        .await;
        let missing = wait_stored(&store, &db, &innocent, Duration::from_secs(20)).await;
        assert!(
            missing.is_empty(),
            "{label}: {} innocent requests lost events",
            missing.len()
        );
        // The poisoned request's two observations and its pair (which writes them too) are the
        // only rows refused: three events, counted as invalid rows.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let metrics = loop {
            let m = gw.metrics().await;
            if metric_value(&m, "canarist_capture_dropped_total{reason=\"invalid_row\"}") >= 3.0
                || tokio::time::Instant::now() >= deadline
            {
                break m;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            metric_value(
                &metrics,
                "canarist_capture_dropped_total{reason=\"invalid_row\"}"
            ),
            3.0,
            "{label}: {metrics}"
        );
        assert_eq!(
            metric_value(&metrics, "canarist_capture_dropped_total"),
            3.0,
            "{label}: nothing else is dropped"
        );
        assert_eq!(
            rows_of(&store, &db, poisoned).await,
            (vec![], vec![]),
            "{label}"
        );
        gw.server.shutdown().await;
        store.close().await;
        db.cleanup().await;
    }
}
