//! The A/A arm end to end: the real gateway in front of the mock upstream, `aa_percent: 100` on a
//! deployment without candidates, the store (SQLite always, Postgres when `DATABASE_URL` is set)
//! behind the checking sink, and the judge worker against the simulated judge. Every client is
//! answered by stable; each request also asks stable a second time in the background; the pair
//! (stable, stable again) is checked and judged, and it stays out of every figure a candidate or
//! the gate reads.

use std::sync::Arc;
use std::time::Duration;

use canarist::capture::AA_VARIANT;
use canarist::config::Config;
use canarist::judge::{Checker, CheckingSink, Judge, JudgeStats, Worker, WorkerConfig};
use canarist::mock::{Dataset, MockConfig, MockServer};
use canarist::store::SummaryScope;

use crate::judge::{options, rubric};
use crate::store::backends;
use crate::support::{chat_body, config_yaml, gateway};

const DEPLOYMENT: &str = "support";
const REQUESTS: usize = 12;

#[tokio::test]
async fn the_aa_arm_judges_stable_against_itself_and_stays_out_of_the_candidate_figures() {
    let mock = MockServer::start(MockConfig::builtin().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rubric = rubric(dir.path(), &mock.base_url(), "mock-judge", 60_000);
    let prompts: Vec<String> = Dataset::builtin().unwrap().entries()[..REQUESTS]
        .iter()
        .map(|e| e.prompt.clone())
        .collect();
    for db in backends().await {
        let yaml = config_yaml(
            &mock.base_url(),
            &format!(
                "storage: {{ url: \"{}\" }}\ndeployments:\n  - slug: {DEPLOYMENT}\n    \
                 stable: {{ provider: mock, model: mock-stable }}\n    aa_percent: 100\n",
                db.url
            ),
        );
        let config = Config::from_yaml(std::path::Path::new("aa.yaml"), &yaml, &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        let stage = config.deployments[0].stage.clone();
        let store = db.store().await;
        let stats = JudgeStats::new();
        let checker = Arc::new(Checker::new(vec![rubric.clone()], stats.clone()));
        let server = gateway::start(
            config,
            gateway::gateway_only(&store, Arc::new(CheckingSink::new(store.clone(), checker))),
        )
        .await;
        let client = reqwest::Client::new();
        for prompt in &prompts {
            let r = client
                .post(format!("{}/v1/chat/completions", server.url()))
                .json(&chat_body(DEPLOYMENT, prompt))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{}", db.label);
            assert_eq!(
                r.headers()["x-canarist-variant"],
                "stable",
                "{}: the client is answered by stable",
                db.label
            );
        }
        let scope = SummaryScope::new(DEPLOYMENT, &stage);
        let mut summary = store.stage_summary(scope).await.unwrap();
        for _ in 0..500 {
            if summary.aa.pairs.get(&None) == Some(&(REQUESTS as u64)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            summary = store.stage_summary(scope).await.unwrap();
        }
        assert_eq!(
            summary.aa.pairs.get(&None),
            Some(&(REQUESTS as u64)),
            "{}: one A/A pair per request",
            db.label
        );
        // Read again: `stage_summary` reads the observations before the pairs, so the summary
        // that first saw the last pair may predate its observations' batch. A pair is committed
        // with both its sides, so everything is in now.
        let summary = store.stage_summary(scope).await.unwrap();

        // The second stable answers are the arm's, not stable's and not a candidate's.
        let overall: Vec<_> = summary
            .variants
            .iter()
            .filter(|v| v.cohort.is_none())
            .collect();
        assert_eq!(overall.len(), 1, "{}: {overall:?}", db.label);
        assert_eq!(
            (overall[0].role.as_str(), overall[0].requests),
            ("stable", REQUESTS as u64),
            "{}",
            db.label
        );
        let arm: Vec<_> = summary
            .aa
            .variants
            .iter()
            .filter(|v| v.cohort.is_none())
            .collect();
        assert_eq!(arm.len(), 1, "{}", db.label);
        assert_eq!(
            (arm[0].variant.as_str(), arm[0].requests, arm[0].served),
            (AA_VARIANT, REQUESTS as u64, 0),
            "{}",
            db.label
        );
        assert!(
            summary.pairs.is_empty(),
            "{}: {:?}",
            db.label,
            summary.pairs
        );
        // Checks ran at capture on both answers.
        let finished = summary
            .aa
            .checks
            .iter()
            .find(|c| c.cohort.is_none() && c.check == "finished")
            .unwrap_or_else(|| panic!("{}: {:?}", db.label, summary.aa.checks));
        assert_eq!(finished.paired.count, REQUESTS as u64, "{}", db.label);

        // The judge scores the arm like any pair; its rows stay in the arm.
        let judge = Arc::new(Judge::new(vec![rubric.clone()], options(8), stats.clone()).unwrap());
        let worker = Worker::new(store.clone(), judge, WorkerConfig::default());
        let mut done = 0;
        while let Ok(p) = worker.run_once().await {
            if p.claimed == 0 {
                break;
            }
            done += p.done;
        }
        assert_eq!(done, REQUESTS, "{}", db.label);
        let summary = store.stage_summary(scope).await.unwrap();
        assert!(
            summary.scores.is_empty(),
            "{}: {:?}",
            db.label,
            summary.scores
        );
        assert!(summary.checks.is_empty(), "{}", db.label);
        let helpfulness = summary
            .aa
            .scores
            .iter()
            .find(|s| s.cohort.is_none() && s.criterion == "helpfulness")
            .unwrap_or_else(|| panic!("{}: {:?}", db.label, summary.aa.scores));
        assert_eq!(helpfulness.paired.count, REQUESTS as u64, "{}", db.label);
        assert_eq!(
            (helpfulness.stable.count, helpfulness.candidate_scores.count),
            (REQUESTS as u64, REQUESTS as u64),
            "{}: both answers scored",
            db.label
        );
        let preference = summary
            .aa
            .scores
            .iter()
            .find(|s| s.cohort.is_none() && s.criterion == "preference")
            .unwrap();
        assert_eq!(
            preference.wins + preference.ties + preference.losses,
            REQUESTS as u64,
            "{}: {preference:?}",
            db.label
        );

        server.shutdown().await;
        db.cleanup().await;
    }
}

#[test]
fn a_candidate_may_not_take_the_aa_arms_name() {
    let yaml = config_yaml(
        "http://127.0.0.1:9/v1",
        "deployments:\n  - slug: d\n    mode: shadow\n    stable: { provider: mock, model: m }\n    \
         candidates: [ { name: aa, provider: mock, model: m2, percent: 10 } ]\n",
    );
    let err = Config::from_yaml(std::path::Path::new("aa.yaml"), &yaml, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("deployments[0].candidates[0].name"), "{err}");
    assert!(err.contains("reserved for the A/A arm"), "{err}");
}
