//! The storage suite: every test runs against SQLite (a file in a temp dir) and, when
//! `DATABASE_URL` is set, against Postgres (a fresh database per test, dropped afterwards).
// Helpers outside `#[test]` functions panic on setup failures too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The aggregate tables: equal to the sums over rows, replicas add up.
mod aggregates;
/// One bad row must not lose a batch: sanitizing, and rejected rows dropped alone.
mod bad_rows;
/// Captured bodies are the bytes sent and received, after redaction.
mod bodies;
/// Row-less observations: flushes of aggregates that add up, once each.
mod flushes;
/// The gate's evaluations over time: round trip and retention.
mod gate_history;
/// The real gateway over one of the suite's databases, and a TCP proxy to cut Postgres.
pub(crate) mod gateway;
/// Replica coordination and outages: NOTIFY, the leader lock, the database going away.
mod replicas;
/// A database outage under load: the capture spool.
mod spool;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canarist::capture::{
    CaptureEvent, Endpoint, ErrorClass, Observation, Pair, Purpose, Role, Sink, Usage,
};
use canarist::store::{
    NewCheckResult, NewJudgment, NewRollout, RetentionPolicy, RolloutUpdate, Store, StoreSink,
    SummaryScope, Verdict,
};
use chrono::{DateTime, TimeZone, Utc};
use sqlx::Connection;
use uuid::Uuid;

/// One database for one test.
pub(crate) struct TestDb {
    pub(crate) label: &'static str,
    pub(crate) url: String,
    pub(crate) pg: Option<(String, String)>, // (admin url, database name)
    _dir: Option<tempfile::TempDir>,
}

pub(crate) fn pg_url(base: &str, port: Option<u16>, db: &str) -> String {
    let (scheme, rest) = base.split_once("://").unwrap();
    let (authority, _) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
    let port = port.map_or_else(
        || {
            hostport
                .rsplit_once(':')
                .map_or("5432".into(), |(_, p)| p.to_string())
        },
        |p| p.to_string(),
    );
    format!("{scheme}://{userinfo}{host}:{port}/{db}")
}

pub(crate) async fn backends() -> Vec<TestDb> {
    let dir = tempfile::tempdir().unwrap();
    let mut dbs = vec![TestDb {
        label: "sqlite",
        url: format!("sqlite://{}", dir.path().join("canarist.db").display()),
        pg: None,
        _dir: Some(dir),
    }];
    if let Ok(admin) = std::env::var("DATABASE_URL") {
        let name = format!("canarist_t_{}", Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        dbs.push(TestDb {
            label: "postgres",
            url: pg_url(&admin, None, &name),
            pg: Some((admin, name)),
            _dir: None,
        });
    }
    dbs
}

impl TestDb {
    pub(crate) async fn store(&self) -> Store {
        Store::connect(&self.url).await.unwrap()
    }

    pub(crate) async fn cleanup(self) {
        if let Some((admin, name)) = &self.pg {
            let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
}

/// Microsecond precision: what both backends keep.
pub(crate) fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seconds, 123_456_000)
        .unwrap()
}

pub(crate) fn obs(variant: &str, role: Role, tier: &str, latency_ms: f64, i: i64) -> Observation {
    Observation {
        id: Uuid::new_v4(),
        request_id: Uuid::new_v4(),
        pair_id: None,
        at: at(i),
        deployment: "support".into(),
        variant: variant.into(),
        role,
        purpose: if role == Role::Stable {
            Purpose::Served
        } else {
            Purpose::Mirrored
        },
        stage: "shadow".into(),
        config_version: 3,
        endpoint: Endpoint::ChatCompletions,
        upstream_model: format!("{variant}-model"),
        stream: i % 2 == 0,
        bucket: Some((i % 10_000) as u16),
        unit_key: Some(format!("user-{i}")),
        sticky: true,
        cohort: BTreeMap::from([("tier".to_string(), tier.to_string())]),
        status: Some(200),
        error: None,
        error_detail: None,
        ttft_ms: Some(latency_ms / 4.0),
        latency_ms,
        usage: Some(Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            total_tokens: 15,
            ..Usage::default()
        }),
        cost_usd: Some(0.001),
        finish_reason: Some("stop".into()),
        response_text: Some(format!("answer {i}")),
        request_body: (i % 3 == 0).then(|| serde_json::json!({"model": "support", "i": i}).into()),
        response_body: None,
    }
}

pub(crate) fn pair_of(stable: &Observation, candidate: &Observation) -> Pair {
    let id = Uuid::new_v4();
    let mut s = stable.clone();
    let mut c = candidate.clone();
    s.pair_id = Some(id);
    c.pair_id = Some(id);
    c.request_id = s.request_id;
    Pair {
        id,
        request_id: s.request_id,
        deployment: s.deployment.clone(),
        stage: s.stage.clone(),
        config_version: s.config_version,
        cohort: s.cohort.clone(),
        stable: s,
        candidate: c,
    }
}

pub(crate) fn judgment(pair: Uuid, side: Option<Role>, score: Option<f64>) -> NewJudgment {
    NewJudgment {
        pair_id: pair,
        rubric_id: "support".into(),
        rubric_version: "1.0.0".into(),
        rubric_hash: "h1".into(),
        criterion: "helpful".into(),
        mode: "pointwise".into(),
        judge_model: "judge".into(),
        order: "single".into(),
        side,
        score,
        label: None,
        winner: None,
        reasoning: Some("because".into()),
        abstain_reason: score.is_none().then(|| "unparseable".into()),
        trace_id: None,
    }
}

#[tokio::test]
async fn migrations_are_idempotent() {
    for db in backends().await {
        let store = db.store().await;
        store.migrate().await.unwrap();
        let again = db.store().await;
        again.migrate().await.unwrap();
        assert_eq!(again.config_version().await.unwrap(), 0, "{}", db.label);
        assert_eq!(
            store.bump_config_version(None).await.unwrap(),
            1,
            "{}",
            db.label
        );
        store.close().await;
        again.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn batch_write_then_aggregates_match() {
    for db in backends().await {
        let store = db.store().await;
        let sink = StoreSink::new(store.clone());
        let mut events = Vec::new();
        let mut pairs = Vec::new();
        // 200 requests: stable always answers, the candidate is 10 ms slower and fails on every
        // 10th request; tier alternates free/enterprise.
        for i in 0..200_i64 {
            let tier = if i % 2 == 0 { "free" } else { "enterprise" };
            let s = obs("stable", Role::Stable, tier, 100.0 + i as f64, i);
            let mut c = obs("cand-a", Role::Candidate, tier, 110.0 + i as f64, i);
            if i % 10 == 0 {
                c.error = Some(ErrorClass::Upstream5xx);
                c.status = Some(500);
            }
            let pair = pair_of(&s, &c);
            events.push(CaptureEvent::Observation(Box::new(pair.stable.clone())));
            events.push(CaptureEvent::Observation(Box::new(pair.candidate.clone())));
            events.push(CaptureEvent::Pair(Box::new(pair.clone())));
            pairs.push(pair);
        }
        // In two batches, the second one retried (idempotent).
        let (a, b) = events.split_at(250);
        sink.write_batch(a).await.unwrap();
        sink.write_batch(b).await.unwrap();
        sink.write_batch(b).await.unwrap();

        // Judgments: stable scores 4, candidate 3 (abstains on every 20th pair); checks.
        let mut judgments = Vec::new();
        let mut checks = Vec::new();
        for (i, p) in pairs.iter().enumerate() {
            judgments.push(judgment(p.id, Some(Role::Stable), Some(4.0)));
            let c = (i % 20 != 0).then_some(3.0);
            judgments.push(judgment(p.id, Some(Role::Candidate), c));
            let mut combined = judgment(p.id, None, None);
            combined.abstain_reason = None;
            combined.mode = "pairwise".into();
            combined.order = "combined".into();
            combined.winner = Some([Verdict::Candidate, Verdict::Tie, Verdict::Stable][i % 3]);
            judgments.push(combined);
            for (side, passed) in [(Role::Stable, true), (Role::Candidate, i % 4 != 0)] {
                checks.push(NewCheckResult {
                    pair_id: p.id,
                    rubric_id: "support".into(),
                    rubric_version: "1.0.0".into(),
                    rubric_hash: "h1".into(),
                    name: "json_valid".into(),
                    side,
                    passed,
                    score: None,
                    severity: "hard".into(),
                    detail: None,
                });
            }
        }
        store.insert_judgments(&judgments).await.unwrap();
        store.insert_check_results(&checks).await.unwrap();

        let label = db.label;
        assert_eq!(
            store.count_observations(Some("support")).await.unwrap(),
            400,
            "{label}"
        );
        let back = store.pair(pairs[7].id).await.unwrap().unwrap();
        assert_eq!(back, pairs[7], "{label}: pair round trip");
        assert_eq!(
            store.job_counts().await.unwrap(),
            vec![("queued".into(), 200)],
            "{label}"
        );

        let summary = store
            .stage_summary(SummaryScope::new("support", "shadow"))
            .await
            .unwrap();
        let v = |cohort: Option<(&str, &str)>, variant: &str| {
            summary
                .variants
                .iter()
                .find(|s| {
                    s.variant == variant
                        && s.cohort.as_ref().map(|(k, v)| (k.as_str(), v.as_str())) == cohort
                })
                .unwrap()
                .clone()
        };
        let stable = v(None, "stable");
        assert_eq!(
            (stable.requests, stable.served, stable.error_count()),
            (200, 200, 0),
            "{label}"
        );
        let expected_sum: f64 = (0..200).map(|i| 100.0 + i as f64).sum();
        let expected_sq: f64 = (0..200).map(|i| (100.0 + i as f64).powi(2)).sum();
        assert_eq!(stable.latency.count, 200, "{label}");
        assert!((stable.latency.sum - expected_sum).abs() < 1e-6, "{label}");
        assert!(
            (stable.latency.sum_sq - expected_sq).abs() < 1e-3,
            "{label}"
        );
        assert_eq!(stable.prompt_tokens, 2000, "{label}");
        assert_eq!(stable.latency_histogram.total(), 200, "{label}");
        let p95 = stable.latency_histogram.quantile(0.95).unwrap();
        assert!((289.0..=289.0 * 1.05).contains(&p95), "{label}: p95 {p95}");
        let cand = v(None, "cand-a");
        assert_eq!((cand.requests, cand.served), (200, 0), "{label}");
        assert_eq!(
            cand.errors,
            BTreeMap::from([("upstream_5xx".into(), 20)]),
            "{label}"
        );
        assert_eq!(
            cand.latency.count, 180,
            "{label}: latency over successes only"
        );
        assert_eq!(cand.ttft_histogram.total(), 180, "{label}");
        assert!((cand.cost.sum - 0.2).abs() < 1e-9, "{label}");
        // Per cohort: even i are free; errors at i % 10 == 0 are all free.
        let free = v(Some(("tier", "free")), "cand-a");
        let ent = v(Some(("tier", "enterprise")), "cand-a");
        assert_eq!((free.requests, free.error_count()), (100, 20), "{label}");
        assert_eq!((ent.requests, ent.error_count()), (100, 0), "{label}");
        assert_eq!(summary.pairs[&(None, "cand-a".to_string())], 200, "{label}");
        let tier_free = Some(("tier".to_string(), "free".to_string()));
        assert_eq!(
            summary.pairs[&(tier_free.clone(), "cand-a".to_string())],
            100,
            "{label}"
        );

        let score = summary.scores.iter().find(|s| s.cohort.is_none()).unwrap();
        assert_eq!(score.stable.count, 200, "{label}");
        assert!((score.stable.sum - 800.0).abs() < 1e-9, "{label}");
        assert_eq!(
            (score.candidate_scores.count, score.candidate_abstentions),
            (190, 10),
            "{label}"
        );
        assert_eq!(score.paired.count, 190, "{label}");
        assert!((score.paired.sum + 190.0).abs() < 1e-9, "{label}");
        assert!((score.paired.sum_sq - 190.0).abs() < 1e-9, "{label}");
        assert_eq!(
            (score.wins, score.ties, score.losses),
            (67, 67, 66),
            "{label}"
        );
        let check = summary.checks.iter().find(|c| c.cohort.is_none()).unwrap();
        assert_eq!(
            (check.stable_passed, check.candidate_passed),
            (200, 150),
            "{label}"
        );
        assert_eq!((check.regressions, check.improvements), (50, 0), "{label}");
        assert!((check.paired.sum + 50.0).abs() < 1e-9, "{label}");
        let free_check = summary
            .checks
            .iter()
            .find(|c| c.cohort == tier_free)
            .unwrap();
        assert_eq!(
            free_check.regressions, 50,
            "{label}: i % 4 == 0 is always free"
        );

        // Retention: bodies older than the 100th second cleared, observations before the 50th gone.
        let now = at(150);
        let policy = RetentionPolicy {
            observations: Some(Duration::from_secs(100)),
            bodies: Some(Duration::from_secs(50)),
            gate_history: None,
            interval: Duration::from_secs(60),
        };
        let report = store.prune(&policy, now).await.unwrap();
        assert_eq!(report.observations_deleted, 100, "{label}");
        assert_eq!(report.bodies_cleared, 100, "{label}");
        assert_eq!(
            store.count_observations(None).await.unwrap(),
            300,
            "{label}"
        );
        let kept = store
            .observation(pairs[70].stable.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (kept.response_text, kept.request_body),
            (None, None),
            "{label}"
        );
        let fresh = store
            .observation(pairs[153].stable.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            fresh.request_body, pairs[153].stable.request_body,
            "{label}"
        );
        assert!(fresh.response_text.is_some(), "{label}");
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn judge_jobs_are_completed_exactly_once_across_workers() {
    for db in backends().await {
        let label = db.label;
        let a = db.store().await;
        let b = db.store().await;
        let dying = db.store().await;
        for i in 0..1000 {
            let cand = if i % 100 == 99 { "cand-x" } else { "cand-a" };
            assert!(
                a.enqueue_judge_job(Uuid::new_v4(), "support", cand)
                    .await
                    .unwrap()
            );
        }
        // A worker claims 30 jobs and dies without completing them.
        let abandoned = dying
            .claim("dying", 30, Duration::from_millis(800))
            .await
            .unwrap();
        assert_eq!(abandoned.len(), 30, "{label}");
        drop(dying);
        // Rollback of cand-x: its 10 pending jobs are cancelled.
        assert_eq!(
            a.cancel_for_candidate("support", "cand-x").await.unwrap(),
            10,
            "{label}"
        );

        let completions: Arc<Mutex<HashMap<i64, u32>>> = Arc::default();
        let mut workers = Vec::new();
        for (name, store) in [("w1", a.clone()), ("w2", b.clone())] {
            let completions = completions.clone();
            workers.push(tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                loop {
                    let jobs = store.claim(name, 7, Duration::from_secs(60)).await.unwrap();
                    if jobs.is_empty() {
                        let counts = store.job_counts().await.unwrap();
                        let pending = counts
                            .iter()
                            .filter(|(s, _)| s == "queued" || s == "running")
                            .map(|(_, n)| n)
                            .sum::<u64>();
                        if pending == 0 || tokio::time::Instant::now() > deadline {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    for job in jobs {
                        if store.complete(job.id, name).await.unwrap() {
                            *completions.lock().unwrap().entry(job.id).or_default() += 1;
                        }
                    }
                }
            }));
        }
        for w in workers {
            w.await.unwrap();
        }
        let completions = completions.lock().unwrap().clone();
        assert_eq!(completions.len(), 990, "{label}: every live job completed");
        assert!(completions.values().all(|&n| n == 1), "{label}: none twice");
        for job in abandoned.iter().filter(|j| j.candidate == "cand-a") {
            assert!(
                completions.contains_key(&job.id),
                "{label}: abandoned job reclaimed"
            );
            assert!(
                !a.complete(job.id, "dying").await.unwrap(),
                "{label}: stale owner"
            );
        }
        let counts: BTreeMap<String, u64> = a.job_counts().await.unwrap().into_iter().collect();
        assert_eq!(counts.get("done"), Some(&990), "{label}");
        assert_eq!(counts.get("cancelled"), Some(&10), "{label}");

        // A failing job goes back to the queue, then fails for good after MAX_ATTEMPTS.
        let pair = Uuid::new_v4();
        a.enqueue_judge_job(pair, "support", "cand-a")
            .await
            .unwrap();
        for attempt in 1..=canarist::store::MAX_ATTEMPTS as u32 {
            let job = a
                .claim("w1", 1, Duration::from_secs(60))
                .await
                .unwrap()
                .remove(0);
            assert_eq!((job.pair_id, job.attempts), (pair, attempt), "{label}");
            assert!(a.fail(job.id, "w1", "judge 500").await.unwrap(), "{label}");
        }
        assert!(
            a.claim("w1", 1, Duration::from_secs(60))
                .await
                .unwrap()
                .is_empty(),
            "{label}"
        );
        a.close().await;
        b.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn rollouts_persist_transitions_with_state() {
    for db in backends().await {
        let label = db.label;
        let store = db.store().await;
        let new = NewRollout {
            deployment: "support".into(),
            candidate: "cand-a".into(),
            state: "shadow".into(),
            stage_index: 0,
            stage_name: "shadow".into(),
            actor: "alice".into(),
            reason: "start".into(),
        };
        let r = store.create_rollout(&new).await.unwrap();
        assert_eq!(
            (r.state.as_str(), r.stage_index, r.config_version),
            ("shadow", 0, 1),
            "{label}"
        );
        let update = RolloutUpdate {
            expected_state: "shadow".into(),
            expected_stage: 0,
            state: "canary".into(),
            stage_index: 1,
            stage_name: "canary-2%".into(),
            actor: "controller".into(),
            reason: "non-inferior".into(),
            evidence: serde_json::json!({"metric": "helpful", "lower": -0.1}),
        };
        let r2 = store.transition_rollout(r.id, &update).await.unwrap();
        assert_eq!(
            (r2.state.as_str(), r2.stage_index, r2.config_version),
            ("canary", 1, 2),
            "{label}"
        );
        assert!(r2.stage_started_at > r.stage_started_at, "{label}");
        // A stale update is refused and changes nothing.
        assert!(
            store.transition_rollout(r.id, &update).await.is_err(),
            "{label}"
        );
        assert_eq!(store.rollout(r.id).await.unwrap().unwrap(), r2, "{label}");
        let log = store.transitions(r.id).await.unwrap();
        assert_eq!(log.len(), 2, "{label}");
        assert_eq!(
            (log[1].from_state.as_str(), log[1].to_state.as_str()),
            ("shadow", "canary"),
            "{label}"
        );
        assert_eq!(log[1].evidence, update.evidence, "{label}");
        assert_eq!(
            store.deployment_config_version("support").await.unwrap(),
            Some(2),
            "{label}"
        );
        assert_eq!(
            store.rollouts("support").await.unwrap(),
            vec![r2],
            "{label}"
        );
        store
            .upsert_variant("support", "cand-a", Role::Candidate, "gpt-x", 2.0, 2)
            .await
            .unwrap();
        store
            .upsert_variant("support", "cand-a", Role::Candidate, "gpt-x", 10.0, 3)
            .await
            .unwrap();
        let variants = store.variants("support").await.unwrap();
        assert_eq!(
            variants,
            vec![("cand-a".into(), "candidate".into(), "gpt-x".into(), 10.0, 3)],
            "{label}"
        );
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn api_keys_by_hash_and_revoked() {
    for db in backends().await {
        let label = db.label;
        let store = db.store().await;
        let k = store
            .insert_api_key("ci", "sha256:abc", "admin")
            .await
            .unwrap();
        assert!(
            store
                .insert_api_key("dup", "sha256:abc", "viewer")
                .await
                .is_err(),
            "{label}"
        );
        let found = store.api_key_by_hash("sha256:abc").await.unwrap().unwrap();
        assert_eq!(
            (found.id, found.role.as_str(), found.is_active()),
            (k.id, "admin", true),
            "{label}"
        );
        assert!(store.revoke_api_key(k.id).await.unwrap(), "{label}");
        assert!(!store.revoke_api_key(k.id).await.unwrap(), "{label}");
        assert!(
            !store
                .api_key_by_hash("sha256:abc")
                .await
                .unwrap()
                .unwrap()
                .is_active(),
            "{label}"
        );
        assert_eq!(store.api_keys().await.unwrap().len(), 1, "{label}");
        assert!(
            store.api_key_by_hash("nope").await.unwrap().is_none(),
            "{label}"
        );
        store.close().await;
        db.cleanup().await;
    }
}

/// Units per variant and the per-unit sums the gate's delta method reads: a heavy user, a light
/// one, keyless requests (a unit each) and a candidate-only user, computed by hand and read
/// back the same from both backends.
#[tokio::test]
async fn unit_sums_match_a_hand_computation_on_both_backends() {
    for db in backends().await {
        let store = db.store().await;
        let sink = StoreSink::new(store.clone());
        let mut events = Vec::new();
        let mut add = |variant: &str, role: Role, unit: Option<&str>, error: bool| {
            let i = events.len() as i64;
            let mut o = obs(variant, role, "free", 100.0, i);
            o.purpose = Purpose::Served;
            o.stage = "live".into();
            o.unit_key = unit.map(str::to_owned);
            if error {
                o.error = Some(ErrorClass::Upstream5xx);
                o.status = Some(500);
            }
            events.push(CaptureEvent::Observation(Box::new(o)));
        };
        for error in [true, false, false] {
            add("stable", Role::Stable, Some("heavy"), error);
        }
        add("stable", Role::Stable, Some("light"), false);
        add("stable", Role::Stable, None, true);
        add("stable", Role::Stable, None, false);
        add("cand", Role::Candidate, Some("heavy"), true);
        add("cand", Role::Candidate, Some("heavy"), false);
        add("cand", Role::Candidate, Some("other"), false);
        sink.write_batch(&events).await.unwrap();

        let s = store
            .stage_summary(SummaryScope::new("support", "live"))
            .await
            .unwrap();
        let v = |name: &str| {
            s.variants
                .iter()
                .find(|v| v.cohort.is_none() && v.variant == name)
                .unwrap()
        };
        // Stable: heavy, light and two keyless requests; the candidate: heavy and other.
        assert_eq!(
            (v("stable").units, v("stable").served_units),
            (4, 4),
            "{}",
            db.label
        );
        assert_eq!(
            (v("cand").units, v("cand").served_units),
            (2, 2),
            "{}",
            db.label
        );
        // Per unit (x_c, y_c, x_s, y_s) of errors/requests: heavy (1, 2, 1, 3), light
        // (0, 0, 0, 1), keyless (0, 0, 1, 1) and (0, 0, 0, 1), other (0, 1, 0, 0).
        for cohort in [None, Some(("tier".to_owned(), "free".to_owned()))] {
            let j = &s.units.iter().find(|u| u.cohort == cohort).unwrap().errors;
            assert_eq!(
                (j.units, j.candidate_units, j.stable_units),
                (5, 2, 4),
                "{}",
                db.label
            );
            assert_eq!(j.sums, [1.0, 3.0, 2.0, 6.0], "{}", db.label);
            assert_eq!(
                j.products,
                [1.0, 2.0, 1.0, 3.0, 5.0, 2.0, 6.0, 2.0, 4.0, 12.0],
                "{}",
                db.label
            );
            // Every request has a price of $0.001: y counts them, x sums them.
            let c = &s.units.iter().find(|u| u.cohort == cohort).unwrap().cost;
            assert_eq!(c.sums[1], 3.0, "{}", db.label);
            assert!((c.sums[2] - 0.006).abs() < 1e-12, "{}", db.label);
        }
        db.cleanup().await;
    }
}

/// Paired requests' latency-tail differences at each rung (1[candidate slower than the rung] −
/// 1[stable slower], over the pairs both sides answered) summed per unit, by hand: a heavy user's
/// pairs (300 vs 100 ms: +1 at the rungs between; 100 vs 300 ms: −1; one where stable failed,
/// left out), a light user's (300 vs 100 ms), a keyless one (100 vs 100 ms); the A/A arm's pair
/// is left out. Both backends read back the same sums.
#[tokio::test]
async fn paired_latency_tail_sums_per_unit_match_a_hand_computation_on_both_backends() {
    use canarist::capture::tail::{RUNGS, rung_ms};
    for db in backends().await {
        let store = db.store().await;
        let sink = StoreSink::new(store.clone());
        let mut events = Vec::new();
        let mut i = 0_i64;
        let mut add = |unit: Option<&str>, c_ms: f64, s_ms: f64, s_err: bool, candidate: &str| {
            i += 1;
            let mut s = obs("stable", Role::Stable, "free", s_ms, i);
            let mut c = obs(candidate, Role::Candidate, "free", c_ms, i);
            for o in [&mut s, &mut c] {
                o.stage = "live".into();
                o.unit_key = unit.map(str::to_owned);
            }
            if s_err {
                s.error = Some(ErrorClass::Upstream5xx);
                s.status = Some(500);
            }
            if candidate == "aa" {
                c.purpose = Purpose::Aa;
            }
            let pair = pair_of(&s, &c);
            events.push(CaptureEvent::Observation(Box::new(pair.stable.clone())));
            events.push(CaptureEvent::Observation(Box::new(pair.candidate.clone())));
            events.push(CaptureEvent::Pair(Box::new(pair)));
        };
        add(Some("heavy"), 300.0, 100.0, false, "cand");
        add(Some("heavy"), 100.0, 300.0, false, "cand");
        add(Some("heavy"), 300.0, 300.0, true, "cand");
        add(Some("light"), 300.0, 100.0, false, "cand");
        add(None, 100.0, 100.0, false, "cand");
        add(Some("light"), 300.0, 100.0, false, "aa");
        sink.write_batch(&events).await.unwrap();
        let s = store
            .stage_summary(SummaryScope::new("support", "live"))
            .await
            .unwrap();
        let p = s
            .paired_outcomes
            .iter()
            .find(|p| p.cohort.is_none())
            .unwrap();
        for r in 0..RUNGS {
            let t = p.latency_tail[r];
            let between = 100.0 * 1.05 < rung_ms(r) && rung_ms(r) < 300.0;
            let label = format!("{} rung {r} ({} ms)", db.label, rung_ms(r));
            assert_eq!(t.pairs.count, 4, "{label}");
            if between {
                // Units (x, y): heavy (+1 − 1, 2), light (+1, 1), keyless (0, 1).
                assert_eq!((t.pairs.sum, t.pairs.sum_sq), (1.0, 3.0), "{label}");
                let u = t.units;
                assert_eq!(
                    (u.units, u.sum_x, u.sum_y, u.sum_xx, u.sum_yy, u.sum_xy),
                    (3, 1.0, 4.0, 1.0, 6.0, 1.0),
                    "{label}"
                );
            } else if rung_ms(r) < 100.0 || rung_ms(r) > 300.0 * 1.05 {
                assert_eq!((t.pairs.sum, t.pairs.sum_sq), (0.0, 0.0), "{label}");
                assert_eq!(t.units.sum_xx, 0.0, "{label}");
            }
        }
        db.cleanup().await;
    }
}

/// Paired requests' error differences (candidate − stable per pair) summed per unit, by hand:
/// a heavy user's three pairs (+1, 0, −1), a light user's one (+1), a keyless pair (0, a unit
/// of its own); the A/A arm's pair is left out. Both backends read back the same sums.
#[tokio::test]
async fn paired_error_sums_per_unit_match_a_hand_computation_on_both_backends() {
    for db in backends().await {
        let store = db.store().await;
        let sink = StoreSink::new(store.clone());
        let mut events = Vec::new();
        let mut i = 0_i64;
        let mut add = |unit: Option<&str>, c_err: bool, s_err: bool, candidate: &str| {
            i += 1;
            let mut s = obs("stable", Role::Stable, "free", 100.0, i);
            let mut c = obs(candidate, Role::Candidate, "free", 100.0, i);
            for (o, err) in [(&mut s, s_err), (&mut c, c_err)] {
                o.stage = "live".into();
                o.unit_key = unit.map(str::to_owned);
                if err {
                    o.error = Some(ErrorClass::Upstream5xx);
                    o.status = Some(500);
                }
            }
            if candidate == "aa" {
                c.purpose = Purpose::Aa;
            }
            let pair = pair_of(&s, &c);
            events.push(CaptureEvent::Observation(Box::new(pair.stable.clone())));
            events.push(CaptureEvent::Observation(Box::new(pair.candidate.clone())));
            events.push(CaptureEvent::Pair(Box::new(pair)));
        };
        add(Some("heavy"), true, false, "cand");
        add(Some("heavy"), false, false, "cand");
        add(Some("heavy"), false, true, "cand");
        add(Some("light"), true, false, "cand");
        add(None, false, false, "cand");
        add(Some("light"), true, false, "aa");
        sink.write_batch(&events).await.unwrap();
        let s = store
            .stage_summary(SummaryScope::new("support", "live"))
            .await
            .unwrap();
        for cohort in [None, Some(("tier".to_owned(), "free".to_owned()))] {
            let rows: Vec<_> = s
                .paired_outcomes
                .iter()
                .filter(|p| p.cohort == cohort)
                .collect();
            assert_eq!(rows.len(), 1, "{} {rows:?}", db.label);
            let p = rows[0];
            assert_eq!(p.candidate, "cand", "{}", db.label);
            assert_eq!(
                (p.pairs.count, p.pairs.sum, p.pairs.sum_sq),
                (5, 1.0, 3.0),
                "{}",
                db.label
            );
            // Units (x, y): heavy (0, 3), light (1, 1), keyless (0, 1).
            let u = p.units;
            assert_eq!(
                (u.units, u.sum_x, u.sum_y, u.sum_xx, u.sum_yy, u.sum_xy),
                (3, 1.0, 5.0, 1.0, 11.0, 1.0),
                "{}",
                db.label
            );
        }
        db.cleanup().await;
    }
}
