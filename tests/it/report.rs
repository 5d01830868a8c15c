//! Stage reports end to end: a deterministic fixture rollout written through the store API into
//! SQLite, built into reports, rendered in every format and compared with golden files under
//! `fixtures/reports/` (`UPDATE_GOLDEN=1 cargo test --test it report` rewrites them).
//! The numbers in the report are checked against what was written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use canarist::capture::{
    CaptureEvent, Endpoint, ErrorClass, Observation, Pair, Purpose, Role, Usage,
};
use canarist::gate::sequential::{Moments, one_sample_cs};
use canarist::gate::{
    Action, Decision, Direction, Evidence, GatePolicy, Method, MetricKind, MetricPolicy, Verdict,
};
use canarist::report::model::{DecisionSource, DifferenceMethod, StageMode};
use canarist::report::{self, BuildOptions, SCHEMA_VERSION};
use canarist::rollout::Ramp;
use canarist::store::{
    NewCheckResult, NewJudgment, NewRollout, RolloutUpdate, Store, Verdict as Winner,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

const DEPLOYMENT: &str = "support";
const CANDIDATE: &str = "cand-v2";
const RUBRIC_HASH: &str = "sha256:0f1e2d";
const STAGE1_PAIRS: u32 = 40;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 10, 0, 0).unwrap()
}

fn uuid(kind: u128, i: u32) -> Uuid {
    Uuid::from_u128((kind << 64) | u128::from(i))
}

fn enterprise(i: u32) -> bool {
    i.is_multiple_of(4)
}

fn stable_helpfulness(i: u32) -> f64 {
    if i.is_multiple_of(3) { 5.0 } else { 4.0 }
}

/// Candidate scores: two points worse for enterprise, one point worse on every fifth free pair;
/// pair 39 abstains.
fn candidate_helpfulness(i: u32) -> Option<f64> {
    let s = stable_helpfulness(i);
    match i {
        39 => None,
        _ if enterprise(i) => Some(s - 2.0),
        _ if i.is_multiple_of(5) => Some(s - 1.0),
        _ => Some(s),
    }
}

#[allow(clippy::too_many_arguments)]
fn obs(
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
        }),
        cost_usd: Some(if role == Role::Stable {
            0.0001
        } else {
            0.00008
        }),
        finish_reason: Some("stop".into()),
        response_text: Some(format!("{} answer to request {i}", role.as_str())),
        request_body: None,
        response_body: None,
    }
}

fn judgment(pair: Uuid, criterion: &str, order: &str, side: Option<Role>) -> NewJudgment {
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

fn check(pair: Uuid, name: &str, side: Role, passed: bool, severity: &str) -> NewCheckResult {
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
async fn write_shadow(store: &Store) {
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
async fn write_canary(store: &Store) {
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

fn rollback_decision() -> Decision {
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
                method: Method::PairedCs,
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
                method: Method::ProportionCs,
                alpha: 0.0125,
                verdict: Verdict::Inconclusive,
                note: Some("<i>4 upstream 5xx</i>".into()),
            },
        ],
        alerts: vec![],
    }
}

/// Writes the fixture rollout and pins every time and id the store picks itself.
async fn fixture(dir: &Path) -> Store {
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
    write_shadow(&store).await;
    write_canary(&store).await;
    pin(&url, rollout.id).await;
    store
}

async fn pin(url: &str, id: Uuid) {
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

fn options() -> BuildOptions {
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
    }
}

fn policy() -> GatePolicy {
    GatePolicy::with_metrics(vec![MetricPolicy {
        name: "helpfulness".into(),
        kind: MetricKind::Mean {
            direction: Direction::HigherIsBetter,
            margin: 0.3,
        },
    }])
}

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/reports")
        .join(name)
}

/// Compares `actual` with the golden file, or rewrites it when `UPDATE_GOLDEN=1`.
fn golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the rendered report at line {} \
             (UPDATE_GOLDEN=1 rewrites it):\n  golden: {:?}\n  actual: {:?}",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

#[tokio::test]
async fn stage_reports_match_golden_files_and_the_data_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture(dir.path()).await;
    let r = report::build_with(&store, DEPLOYMENT, 1, &options())
        .await
        .unwrap();

    // Stage facts: live 10%, rolled back in place, two hours long.
    assert_eq!(r.schema_version, SCHEMA_VERSION);
    assert_eq!(r.rollout.id, uuid(0xFF, 1));
    assert_eq!(r.stage.name, "canary-10");
    assert_eq!(r.stage.mode, StageMode::Live);
    assert_eq!(r.stage.configured_percent, Some(10.0));
    assert_eq!(r.stage.outcome.as_deref(), Some("rolled_back"));
    assert_eq!(r.stage.duration_seconds, 7200.0);
    assert!((r.stage.observed_percent.unwrap() - 100.0 * 44.0 / 444.0).abs() < 1e-9);
    assert_eq!(r.ramp.len(), 2);
    assert_eq!(r.ramp[1].action.as_deref(), Some("rollback"));

    // Counts per variant and cohort.
    let v = |cohort: &str, role: &str| {
        r.variants
            .iter()
            .find(|v| v.cohort == cohort && v.role == role)
            .unwrap()
    };
    assert_eq!(
        (v("all", "stable").requests, v("all", "stable").served),
        (440, 400)
    );
    assert_eq!(
        (v("all", "candidate").requests, v("all", "candidate").errors),
        (44, 4)
    );
    assert_eq!(v("all", "candidate").error_rate, Some(4.0 / 44.0));
    assert_eq!(v("tier=enterprise", "candidate").requests, 10);
    assert_eq!(v("all", "stable").prompt_tokens_per_request, Some(100.0));
    let pairs: Vec<(&str, u64)> = r
        .pairs
        .iter()
        .map(|p| (p.cohort.as_str(), p.pairs))
        .collect();
    assert_eq!(
        pairs,
        vec![("all", 40), ("tier=enterprise", 10), ("tier=free", 30)]
    );

    // Helpfulness means and the paired interval equal what was written.
    let h = r
        .criteria
        .iter()
        .find(|c| c.criterion == "helpfulness" && c.cohort == "all")
        .unwrap();
    let stable: Vec<f64> = (0..STAGE1_PAIRS).map(stable_helpfulness).collect();
    let cand: Vec<f64> = (0..STAGE1_PAIRS)
        .filter_map(candidate_helpfulness)
        .collect();
    let diffs: Vec<f64> = (0..STAGE1_PAIRS)
        .filter_map(|i| candidate_helpfulness(i).map(|c| c - stable_helpfulness(i)))
        .collect();
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    assert_eq!(h.stable_n, 40);
    assert_eq!(h.candidate_n, 39);
    assert!((h.stable_mean.unwrap() - mean(&stable)).abs() < 1e-12);
    assert!((h.candidate_mean.unwrap() - mean(&cand)).abs() < 1e-12);
    let d = h.difference.unwrap();
    assert_eq!((d.method, d.n), (DifferenceMethod::Paired, 39));
    let known = one_sample_cs(&Moments::from_values(&diffs).stats().unwrap(), 0.05, 1000.0);
    assert!((d.estimate - known.estimate).abs() < 1e-12);
    assert!((d.lo - known.lo).abs() < 1e-9 && (d.hi - known.hi).abs() < 1e-9);
    // At n = 39 the anytime-valid interval still straddles 0 although Welch's t (below) says
    // p < 0.05: the price of being allowed to look at every tick.
    assert!(
        d.lo < d.estimate && d.estimate < d.hi && d.hi > 0.0,
        "{d:?}"
    );
    assert_eq!(h.abstentions, [0, 1, 0]);
    let ent = r
        .criteria
        .iter()
        .find(|c| c.criterion == "helpfulness" && c.cohort == "tier=enterprise")
        .unwrap();
    assert_eq!(ent.difference.unwrap().estimate, -2.0);

    // Pairwise: 10 enterprise losses; free pairs i%3==1 are ties (10 of 30), the rest wins.
    let p = r
        .criteria
        .iter()
        .find(|c| c.criterion == "preference" && c.cohort == "all")
        .unwrap();
    let w = p.win_tie_loss.unwrap();
    assert_eq!((w.wins, w.ties, w.losses), (20, 10, 10));
    let pc = &r.judge.position_consistency[0];
    assert_eq!((pc.consistent, pc.inconsistent), (30, 10));

    // Checks: json_valid failed twice for the candidate, both regressions.
    let json = r
        .checks
        .iter()
        .find(|c| c.check == "json_valid" && c.cohort == "all")
        .unwrap();
    assert_eq!(json.candidate_pass_rate, Some(38.0 / 40.0));
    assert_eq!((json.regressions, json.improvements), (2, 0));

    // Sample ratio: 44 vs 400 served against 10/90 is no mismatch at α = 0.001.
    assert_eq!(r.sample_ratio.mismatch, Some(false));

    // The recorded decision with all its evidence.
    let dec = r.decision.as_ref().unwrap();
    assert_eq!(dec.source, DecisionSource::Transition);
    assert_eq!(dec.action, "rollback");
    assert_eq!(dec.evidence, rollback_decision().evidence);

    // Worst answers: hard-check failures first, each beside stable's answer with reasoning.
    assert_eq!(r.worst_answers.len(), 3);
    assert_eq!(r.worst_answers[0].request_id, uuid(10, 4));
    assert!(
        r.worst_answers[0].reasons[0].starts_with("hard check `json_valid` failed (stable passed)")
    );
    assert_eq!(
        r.worst_answers[0].stable_answer.as_deref(),
        Some("stable answer to request 4")
    );
    assert!(r.worst_answers[0].judgments.iter().any(|j| {
        j.reasoning
            .as_deref()
            .is_some_and(|s| s.contains("<script>"))
    }));

    // Reference tests are labelled and computed.
    let rt = &r.reference_tests;
    assert_eq!(rt.label, "classic fixed-sample tests, for reference only");
    assert_eq!(rt.rows[0].mann_whitney_n, (39, 40));
    assert!(rt.rows[0].welch_p.unwrap() < 0.05);

    // JSON round-trips through the model and carries the schema version.
    let json = report::to_json(&r).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["schema_version"], SCHEMA_VERSION);
    assert_eq!(report::from_json(&json).unwrap(), r);
    let wrong = json.replacen("\"schema_version\": 1", "\"schema_version\": 99", 1);
    assert!(report::from_json(&wrong).is_err());

    // The HTML is self-contained and escapes LLM text.
    let html = report::to_html(&r);
    for bad in ["http://", "https://", "<script", "<link", "@import", "url("] {
        assert!(!html.contains(bad), "HTML contains `{bad}`");
    }
    assert!(html.contains("&lt;script&gt;alert"));
    assert!(html.contains("&lt;i&gt;4 upstream 5xx&lt;/i&gt;"));
    assert_eq!(html.matches("<svg").count(), 3);
    let md = report::to_markdown(&r);
    assert!(md.find("**Decision: ROLLBACK**").unwrap() < md.find("## Gate evidence").unwrap());
    assert!(!md.contains("<script>"));

    golden("support-stage-1.json", &json);
    golden("support-stage-1.md", &md);
    golden("support-stage-1.html", &html);
}

#[tokio::test]
async fn a_stage_without_a_recorded_decision_is_re_evaluated_with_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture(dir.path()).await;
    let without = report::build_with(&store, DEPLOYMENT, 0, &options())
        .await
        .unwrap();
    assert!(without.decision.is_none());
    assert!(
        without
            .notes
            .iter()
            .any(|n| n.contains("manual promote after review"))
    );
    let opts = BuildOptions {
        policy: Some(policy()),
        ..options()
    };
    let r = report::build_with(&store, DEPLOYMENT, 0, &opts)
        .await
        .unwrap();
    assert_eq!(r.stage.mode, StageMode::Shadow);
    assert_eq!(r.sample_ratio.mismatch, None);
    let d = r.decision.as_ref().unwrap();
    assert_eq!(d.source, DecisionSource::Recomputed);
    // 20 pairs are below the policy's 30 minimum samples: the gate holds, it never promotes.
    assert_eq!(d.action, "hold");
    assert!(
        d.evidence
            .iter()
            .any(|e| e.metric == "helpfulness" && e.cohort == "all")
    );
    golden("support-stage-0.md", &report::to_markdown(&r));

    let all = report::build_all(&store, DEPLOYMENT, &opts).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.stage.index).collect::<Vec<_>>(),
        vec![0, 1]
    );
    let missing = report::build_with(&store, DEPLOYMENT, 7, &opts)
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("no stage 7"), "{missing}");
    assert!(report::build(&store, "nope", 0).await.is_err());
}

#[tokio::test]
async fn the_cli_writes_one_file_per_stage() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture(dir.path()).await;
    store.close().await;
    let config = dir.path().join("canarist.yaml");
    std::fs::write(
        &config,
        format!(
            "storage:\n  url: sqlite://{}\n",
            dir.path().join("report.db").display()
        ),
    )
    .unwrap();
    let gate = dir.path().join("gate.yaml");
    std::fs::write(&gate, "metrics:\n  - { name: helpfulness, kind: mean, direction: higher_is_better, margin: 0.3 }\n").unwrap();
    let out = dir.path().join("out");
    for format in [report::cli::Format::Md, report::cli::Format::Json] {
        let args = report::ReportArgs {
            config: config.clone(),
            deployment: DEPLOYMENT.into(),
            stage: None,
            all: true,
            format,
            out: out.clone(),
            gate: Some(gate.clone()),
            ramp: None,
            worst: 2,
        };
        report::run(args).await.unwrap();
    }
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "support-stage-0-shadow.json",
            "support-stage-0-shadow.md",
            "support-stage-1-canary-10.json",
            "support-stage-1-canary-10.md",
        ]
    );
    let text = std::fs::read_to_string(out.join("support-stage-1-canary-10.json")).unwrap();
    assert_eq!(report::from_json(&text).unwrap().worst_answers.len(), 2);
    // A bad policy file names the file and the field.
    std::fs::write(&gate, "metrics: []\n").unwrap();
    let err = report::cli::load_policy(&gate).unwrap_err().to_string();
    assert!(
        err.contains("gate.yaml") && err.contains("gate.metrics"),
        "{err}"
    );
}
