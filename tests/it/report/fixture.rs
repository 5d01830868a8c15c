//! The fixture rollout of the report tests, written through the store API: stage 0 `shadow`
//! (20 pairs, a manual promotion without gate evidence) and stage 1 `canary-10` (400 stable
//! requests, 44 candidate requests of which 4 fail, 40 pairs with pointwise and pairwise
//! judgments and checks, a recorded gate rollback, and the gate's history of that stage: three
//! recorded evaluations per cell, the first unbounded). Every time and id the store picks itself is
//! pinned afterwards, so the reports are byte-for-byte reproducible.

use std::collections::BTreeMap;
use std::path::Path;

use canarist::capture::{
    CaptureEvent, Endpoint, ErrorClass, Observation, Pair, Purpose, Role, Usage,
};
use canarist::gate::{
    Action, AnalysisUnit, Decision, Direction, Evidence, GatePolicy, Method, MetricKind,
    MetricPolicy, Verdict,
};
use canarist::report::BuildOptions;
use canarist::rollout::Ramp;
use canarist::store::{
    GatePoint, NewCheckResult, NewJudgment, NewRollout, RolloutUpdate, Store, Verdict as Winner,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

pub(crate) const DEPLOYMENT: &str = "support";
pub(crate) const CANDIDATE: &str = "cand-v2";
pub(crate) const RUBRIC_HASH: &str = "sha256:0f1e2d";
pub(crate) const STAGE1_PAIRS: u32 = 40;

pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 10, 0, 0).unwrap()
}

pub(crate) fn uuid(kind: u128, i: u32) -> Uuid {
    Uuid::from_u128((kind << 64) | u128::from(i))
}

pub(crate) fn enterprise(i: u32) -> bool {
    i.is_multiple_of(4)
}

pub(crate) fn stable_helpfulness(i: u32) -> f64 {
    if i.is_multiple_of(3) { 5.0 } else { 4.0 }
}

/// Candidate scores: two points worse for enterprise, one point worse on every fifth free pair;
/// pair 39 abstains.
pub(crate) fn candidate_helpfulness(i: u32) -> Option<f64> {
    let s = stable_helpfulness(i);
    match i {
        39 => None,
        _ if enterprise(i) => Some(s - 2.0),
        _ if i.is_multiple_of(5) => Some(s - 1.0),
        _ => Some(s),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn obs(
    id: Uuid,
    request: Uuid,
    variant: &str,
    role: Role,
    purpose: Purpose,
    stage: &str,
    at: DateTime<Utc>,
    i: u32,
    tier: &str,
) -> Observation {
    let latency = match role {
        Role::Stable => 200.0 + f64::from(i * 37 % 300),
        Role::Candidate => 260.0 + f64::from(i * 53 % 400),
    };
    let completion = if role == Role::Stable { 50 } else { 60 };
    Observation {
        id,
        request_id: request,
        pair_id: None,
        at,
        deployment: DEPLOYMENT.into(),
        variant: variant.into(),
        role,
        purpose,
        stage: stage.into(),
        config_version: 7,
        endpoint: Endpoint::ChatCompletions,
        upstream_model: format!("{variant}-model"),
        stream: true,
        bucket: Some((i % 10_000) as u16),
        unit_key: Some(format!("user-{i}")),
        sticky: true,
        cohort: BTreeMap::from([("tier".to_owned(), tier.to_owned())]),
        status: Some(200),
        error: None,
        error_detail: None,
        ttft_ms: Some(latency / 4.0),
        latency_ms: latency,
        usage: Some(Usage {
            prompt_tokens: 100,
            completion_tokens: completion,
            total_tokens: 100 + completion,
            ..Usage::default()
        }),
        cost_usd: Some(if role == Role::Stable {
            0.0001
        } else {
            0.00008
        }),
        finish_reason: Some("stop".into()),
        response_text: Some(format!("{} answer to request {i}", role.as_str())),
        // What the client asked (the worst answers show it as their prompt).
        request_body: Some(
            serde_json::json!({
                "model": "support",
                "messages": [{ "role": "user", "content": format!("Where is my order #{i}? <b>now</b>") }],
            })
            .into(),
        ),
        response_body: None,
    }
}

pub(crate) fn judgment(
    pair: Uuid,
    criterion: &str,
    order: &str,
    side: Option<Role>,
) -> NewJudgment {
    NewJudgment {
        pair_id: pair,
        rubric_id: "support-chat".into(),
        rubric_version: "1.2.0".into(),
        rubric_hash: RUBRIC_HASH.into(),
        criterion: criterion.into(),
        mode: if side.is_some() {
            "pointwise"
        } else {
            "pairwise"
        }
        .into(),
        judge_model: "judge-large".into(),
        order: order.into(),
        side,
        score: None,
        label: None,
        winner: None,
        reasoning: None,
        abstain_reason: None,
        trace_id: None,
    }
}

pub(crate) fn check(
    pair: Uuid,
    name: &str,
    side: Role,
    passed: bool,
    severity: &str,
) -> NewCheckResult {
    NewCheckResult {
        pair_id: pair,
        rubric_id: "support-chat".into(),
        rubric_version: "1.2.0".into(),
        rubric_hash: RUBRIC_HASH.into(),
        name: name.into(),
        side,
        passed,
        score: None,
        severity: severity.into(),
        detail: (!passed).then(|| format!("{name} failed: expected value at line 1 column 1")),
    }
}

/// Stage 0 `shadow`: 20 pairs, candidate mirrored, helpfulness only.
pub(crate) async fn write_shadow(store: &Store) {
    let mut events = Vec::new();
    let mut judgments = Vec::new();
    for i in 0..20u32 {
        let at = t0() + Duration::minutes(i64::from(i) + 1);
        let (pair, req) = (uuid(1, i), uuid(2, i));
        let mut s = obs(
            uuid(3, i),
            req,
            "stable",
            Role::Stable,
            Purpose::Served,
            "shadow",
            at,
            i,
            "free",
        );
        let mut c = obs(
            uuid(4, i),
            req,
            CANDIDATE,
            Role::Candidate,
            Purpose::Mirrored,
            "shadow",
            at,
            i,
            "free",
        );
        s.pair_id = Some(pair);
        c.pair_id = Some(pair);
        events.push(CaptureEvent::Pair(Box::new(Pair {
            id: pair,
            request_id: req,
            deployment: DEPLOYMENT.into(),
            stage: "shadow".into(),
            config_version: 7,
            cohort: s.cohort.clone(),
            stable: s,
            candidate: c,
        })));
        for (side, score) in [
            (Role::Stable, 4.0),
            (Role::Candidate, 4.0 + f64::from(i % 2)),
        ] {
            let mut j = judgment(pair, "helpfulness", "single", Some(side));
            j.score = Some(score);
            j.reasoning = Some("Answers the question.".into());
            judgments.push(j);
        }
    }
    store.write_events(&events).await.unwrap();
    store.insert_judgments(&judgments).await.unwrap();
}

/// Stage 1 `canary-10`: 400 stable-served requests, 40 candidate-served requests each paired
/// with a mirrored stable call, 4 unpaired candidate errors.
pub(crate) async fn write_canary(store: &Store) {
    let stage = "canary-10";
    let start = t0() + Duration::hours(1);
    let mut events = Vec::new();
    for i in 0..400u32 {
        let at = start + Duration::seconds(i64::from(i) * 10);
        let tier = if enterprise(i) { "enterprise" } else { "free" };
        events.push(CaptureEvent::Observation(Box::new(obs(
            uuid(5, i),
            uuid(6, i),
            "stable",
            Role::Stable,
            Purpose::Served,
            stage,
            at,
            i,
            tier,
        ))));
    }
    for i in 0..4u32 {
        let mut c = obs(
            uuid(7, i),
            uuid(8, i),
            CANDIDATE,
            Role::Candidate,
            Purpose::Served,
            stage,
            start + Duration::minutes(5),
            i,
            "free",
        );
        c.error = Some(ErrorClass::Upstream5xx);
        c.status = Some(502);
        c.ttft_ms = None;
        c.usage = None;
        c.cost_usd = None;
        c.response_text = None;
        events.push(CaptureEvent::Observation(Box::new(c)));
    }
    let mut judgments = Vec::new();
    let mut checks = Vec::new();
    for i in 0..STAGE1_PAIRS {
        let at = start + Duration::minutes(i64::from(i) + 2);
        let tier = if enterprise(i) { "enterprise" } else { "free" };
        let (pair, req) = (uuid(9, i), uuid(10, i));
        let mut s = obs(
            uuid(11, i),
            req,
            "stable",
            Role::Stable,
            Purpose::Mirrored,
            stage,
            at,
            i,
            tier,
        );
        let mut c = obs(
            uuid(12, i),
            req,
            CANDIDATE,
            Role::Candidate,
            Purpose::Served,
            stage,
            at,
            i,
            tier,
        );
        if i == 4 {
            c.response_text = Some("```json\n{\"refund\": <b>maybe</b>\n``` trailing".into());
        }
        s.pair_id = Some(pair);
        c.pair_id = Some(pair);
        events.push(CaptureEvent::Pair(Box::new(Pair {
            id: pair,
            request_id: req,
            deployment: DEPLOYMENT.into(),
            stage: stage.into(),
            config_version: 7,
            cohort: s.cohort.clone(),
            stable: s,
            candidate: c,
        })));
        let mut js = judgment(pair, "helpfulness", "single", Some(Role::Stable));
        js.score = Some(stable_helpfulness(i));
        js.reasoning = Some("Complete and polite.".into());
        judgments.push(js);
        let mut jc = judgment(pair, "helpfulness", "single", Some(Role::Candidate));
        match candidate_helpfulness(i) {
            Some(score) => {
                jc.score = Some(score);
                jc.reasoning = Some(if enterprise(i) {
                    "<script>alert('x')</script> Ignores the **refund** policy | cites nothing"
                        .into()
                } else {
                    "Mostly complete.".into()
                });
            }
            None => jc.abstain_reason = Some("unparseable judge output after repair".into()),
        }
        judgments.push(jc);
        // Pairwise preference: enterprise prefers stable in both orders; on free pairs with
        // i % 3 == 1 the orders disagree (a tie); otherwise the candidate wins in both.
        let (ab, ba, combined) = if enterprise(i) {
            (Winner::Stable, Winner::Stable, Winner::Stable)
        } else if i % 3 == 1 {
            (Winner::Candidate, Winner::Stable, Winner::Tie)
        } else {
            (Winner::Candidate, Winner::Candidate, Winner::Candidate)
        };
        for (order, w) in [("ab", ab), ("ba", ba), ("combined", combined)] {
            let mut j = judgment(pair, "preference", order, None);
            j.winner = Some(w);
            j.reasoning = Some(format!("order {order}: {} preferred", w.as_str()));
            judgments.push(j);
        }
        checks.push(check(pair, "json_valid", Role::Stable, true, "hard"));
        checks.push(check(
            pair,
            "json_valid",
            Role::Candidate,
            !(i == 4 || i == 8),
            "hard",
        ));
        checks.push(check(pair, "length", Role::Stable, true, "soft"));
        checks.push(check(pair, "length", Role::Candidate, i % 10 != 3, "soft"));
    }
    store.write_events(&events).await.unwrap();
    store.insert_judgments(&judgments).await.unwrap();
    store.insert_check_results(&checks).await.unwrap();
}

pub(crate) fn rollback_decision() -> Decision {
    Decision {
        action: Action::Rollback,
        reason: "roll back: helpfulness in cohort tier=enterprise is worse than its bound −0.3000"
            .into(),
        evidence: vec![
            Evidence {
                metric: "helpfulness".into(),
                cohort: "tier=enterprise".into(),
                estimate: Some(-2.0),
                interval: Some((-2.0, -2.0)),
                margin: 0.3,
                bound: -0.3,
                direction: Direction::HigherIsBetter,
                candidate_n: 10,
                stable_n: 10,
                method: Method::PairedDeltaCs,
                unit: AnalysisUnit::Unit,
                units: Some((8, 8)),
                alpha: 0.0125,
                verdict: Verdict::Worse,
                note: None,
            },
            Evidence {
                metric: "errors".into(),
                cohort: "all".into(),
                estimate: Some(0.0909),
                interval: Some((0.01, 0.17)),
                margin: 0.02,
                bound: 0.02,
                direction: Direction::LowerIsBetter,
                candidate_n: 44,
                stable_n: 440,
                method: Method::ProportionDeltaCs,
                unit: AnalysisUnit::Unit,
                units: Some((40, 400)),
                alpha: 0.0125,
                verdict: Verdict::Inconclusive,
                note: Some("<i>4 upstream 5xx</i>".into()),
            },
        ],
        alerts: vec![],
    }
}

/// Writes the fixture rollout and pins every time and id the store picks itself.
pub(crate) async fn fixture(dir: &Path) -> Store {
    let url = format!("sqlite://{}", dir.join("report.db").display());
    let store = Store::connect(&url).await.unwrap();
    let rollout = store
        .create_rollout(&NewRollout {
            deployment: DEPLOYMENT.into(),
            candidate: CANDIDATE.into(),
            state: "shadow".into(),
            stage_index: 0,
            stage_name: "shadow".into(),
            actor: "alice".into(),
            reason: "start".into(),
        })
        .await
        .unwrap();
    store
        .transition_rollout(
            rollout.id,
            &RolloutUpdate {
                expected_state: "shadow".into(),
                expected_stage: 0,
                state: "canary".into(),
                stage_index: 1,
                stage_name: "canary-10".into(),
                actor: "alice".into(),
                reason: "manual promote after review".into(),
                evidence: serde_json::json!({"manual": true}),
            },
        )
        .await
        .unwrap();
    store
        .transition_rollout(
            rollout.id,
            &RolloutUpdate {
                expected_state: "canary".into(),
                expected_stage: 1,
                state: "rolled_back".into(),
                stage_index: 1,
                stage_name: "canary-10".into(),
                actor: "gate".into(),
                reason: "gate rollback".into(),
                evidence: serde_json::json!({ "decision": rollback_decision() }),
            },
        )
        .await
        .unwrap();
    // The stage starts are pinned before the traffic is written: the store keys its aggregates
    // by the stage start at or before each observation when it writes them.
    pin(&url, rollout.id).await;
    write_shadow(&store).await;
    write_canary(&store).await;
    write_history(&store).await;
    store
}

/// The controller's recorded evaluations of stage 1 (the decision's own evidence, at the
/// rollback, is the charts' last point): each cell unbounded at first, then narrowing.
pub(crate) async fn write_history(store: &Store) {
    let s2 = t0() + Duration::hours(1);
    let cells = [
        ("helpfulness", "tier=enterprise", "paired_delta_cs", -0.3),
        ("errors", "all", "proportion_delta_cs", 0.02),
    ];
    let mut points = Vec::new();
    for (minutes, iv, verdict) in [
        (5, None, "insufficient_data"),
        (30, Some((-1.5, 0.9)), "inconclusive"),
        (80, Some((-0.8, 0.3)), "inconclusive"),
    ] {
        for (metric, cohort, method, bound) in cells {
            let scale = if metric == "errors" { 0.1 } else { 1.0 };
            let (lo, hi) = iv.map_or((None, None), |(a, b): (f64, f64)| {
                (Some(a * scale), Some(b * scale))
            });
            points.push(GatePoint {
                rollout_id: uuid(0xFF, 1),
                deployment: DEPLOYMENT.into(),
                stage_index: 1,
                metric: metric.into(),
                cohort: cohort.into(),
                at: s2 + Duration::minutes(minutes),
                estimate: lo.zip(hi).map(|(a, b)| (a + b) / 2.0),
                lo,
                hi,
                bound: Some(bound),
                alpha: Some(0.0125),
                method: method.into(),
                verdict: verdict.into(),
                candidate_n: minutes as u64,
                stable_n: 10 * minutes as u64,
            });
        }
    }
    store.record_gate_points(&points).await.unwrap();
}

pub(crate) async fn pin(url: &str, id: Uuid) {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
    let fixed = uuid(0xFF, 1);
    let (s1, s2, end) = (t0(), t0() + Duration::hours(1), t0() + Duration::hours(3));
    let statements: Vec<(&str, Vec<DateTime<Utc>>)> = vec![
        (
            "UPDATE rollouts SET created_at = $1, updated_at = $2, stage_started_at = $3",
            vec![s1, end, s2],
        ),
        (
            "UPDATE rollout_stages SET started_at = $1, ended_at = $2 WHERE stage_index = 0",
            vec![s1, s2],
        ),
        (
            "UPDATE rollout_stages SET started_at = $1 WHERE stage_index = 1",
            vec![s2],
        ),
        (
            "UPDATE rollout_transitions SET at = $1 WHERE to_state = 'shadow'",
            vec![s1],
        ),
        (
            "UPDATE rollout_transitions SET at = $1 WHERE to_state = 'canary'",
            vec![s2],
        ),
        (
            "UPDATE rollout_transitions SET at = $1 WHERE to_state = 'rolled_back'",
            vec![end],
        ),
    ];
    for (sql, binds) in statements {
        let mut q = sqlx::query(sql);
        for b in binds {
            q = q.bind(b);
        }
        q.execute(&mut c).await.unwrap();
    }
    for sql in [
        "UPDATE rollouts SET id = $1 WHERE id = $2",
        "UPDATE rollout_stages SET rollout_id = $1 WHERE rollout_id = $2",
        "UPDATE rollout_transitions SET rollout_id = $1 WHERE rollout_id = $2",
    ] {
        sqlx::query(sql)
            .bind(fixed)
            .bind(id)
            .execute(&mut c)
            .await
            .unwrap();
    }
}

pub(crate) fn options() -> BuildOptions {
    let ramp = Ramp::from_yaml(
        Path::new("ramp.yaml"),
        "stages:\n  - { shadow: 100 }\n  - { percent: 10 }\n",
    )
    .unwrap();
    BuildOptions {
        policy: None,
        ramp: Some(ramp),
        now: t0() + Duration::hours(4),
        worst_limit: 3,
        sample_limit: 2000,
        models: Some(canarist::report::Models {
            stable: "gpt-4o-mini".into(),
            candidates: [(CANDIDATE.to_owned(), "gpt-4.1-mini".to_owned())].into(),
        }),
        links_base: Some(String::new()),
    }
}

pub(crate) fn policy() -> GatePolicy {
    GatePolicy::with_metrics(vec![MetricPolicy {
        name: "helpfulness".into(),
        kind: MetricKind::Mean {
            direction: Direction::HigherIsBetter,
            margin: 0.3,
        },
        rollback_margin: None,
    }])
}
