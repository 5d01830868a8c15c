//! Stage reports end to end: a deterministic fixture rollout written through the store API into
//! SQLite, built into reports, rendered in every format and compared with golden files under
//! `fixtures/reports/` (`UPDATE_GOLDEN=1 cargo test --test it report` rewrites them).
//! The numbers in the report are checked against what was written.

mod fixture;

use std::path::{Path, PathBuf};

use canarist::gate::sequential::{Moments, one_sample_cs};
use canarist::report::model::{DecisionSource, DifferenceMethod, StageMode};
use canarist::report::{self, BuildOptions, SCHEMA_VERSION};
use fixture::*;

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
    let wrong = json.replacen(
        &format!("\"schema_version\": {SCHEMA_VERSION}"),
        "\"schema_version\": 99",
        1,
    );
    assert_ne!(wrong, json);
    assert!(report::from_json(&wrong).is_err());

    // The HTML is self-contained and escapes LLM text.
    let html = report::to_html(&r);
    for bad in ["http://", "https://", "<script", "<link", "@import"] {
        assert!(!html.contains(bad), "HTML contains `{bad}`");
    }
    // The one `url(…)` is the ramp's hatch pattern, a fragment of the page itself.
    assert_eq!(
        html.matches("url(").count(),
        html.matches("url(#ramp-hatch)").count()
    );
    assert!(html.contains(r#"<a href="/ui#/deployments/support/stages/1">"#));
    assert!(html.contains("&lt;script&gt;alert"));
    assert!(html.contains("&lt;i&gt;4 upstream 5xx&lt;/i&gt;"));
    // Ramp, the gate's forest plot, its history over the stage, latency.
    assert_eq!(html.matches("<svg").count(), 4);
    assert!(html.contains(r#"data-chart="forest""#) && html.contains(r#"data-chart="ramp""#));
    assert!(html.contains(r#"data-chart="history""#));
    // The chart over time: the three recorded evaluations per cell, then the decision's own
    // evidence at the rollback; its last interval is exactly the gate's final evidence interval.
    assert_eq!(r.gate_history.len(), 6);
    let history = report::history_chart(&r).unwrap();
    let decision = r.decision.as_ref().unwrap();
    for e in &decision.evidence {
        let (lo, hi) = e.interval.unwrap();
        let series = format!(
            r#"<g class="series" data-metric="{}" data-cohort="{}" data-points="4">"#,
            e.metric, e.cohort
        );
        let at = history
            .find(&series)
            .unwrap_or_else(|| panic!("{series} in {history}"));
        let last = &history[at..history[at..].find("</g>").unwrap() + at];
        assert!(
            last.contains(&format!(
                r#"data-metric="{}" data-cohort="{}" data-lo="{lo}" data-hi="{hi}" data-verdict="{}""#,
                e.metric,
                e.cohort,
                e.verdict.as_str()
            )),
            "{last}"
        );
        // The first evaluation had no interval: drawn unbounded.
        assert!(last.contains(r#"class="ci warn unbounded""#), "{last}");
    }
    let md = report::to_markdown(&r);
    assert!(md.find("**Decision: ROLLBACK**").unwrap() < md.find("## Gate evidence").unwrap());
    assert!(!md.contains("<script>"));

    golden("support-stage-1.json", &json);
    golden("support-stage-1.md", &md);
    golden("support-stage-1.html", &html);
}

#[tokio::test]
async fn the_aa_arm_has_its_own_section_only_when_the_stage_has_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture(dir.path()).await;
    let mut r = report::build_with(&store, DEPLOYMENT, 1, &options())
        .await
        .unwrap();
    // No A/A pairs in the fixture: no section, no key (the golden files hold).
    assert!(r.aa.is_empty());
    assert!(!report::to_json(&r).unwrap().contains("\"aa\""));
    assert!(!report::to_markdown(&r).contains("A/A"));
    assert!(!report::to_html(&r).contains("A/A"));

    // An arm: the criteria and checks rows as the sections make them, candidate `aa`.
    let mut criterion = r
        .criteria
        .iter()
        .find(|c| c.cohort == "all" && c.difference.is_some())
        .unwrap()
        .clone();
    criterion.candidate = "aa".into();
    criterion.criterion = "helpfulness".into();
    let mut check = r.checks.iter().find(|c| c.cohort == "all").unwrap().clone();
    check.candidate = "aa".into();
    r.aa = canarist::report::AaReport {
        pairs: 17,
        criteria: vec![criterion.clone()],
        checks: vec![check.clone()],
    };
    let json = report::to_json(&r).unwrap();
    assert_eq!(report::from_json(&json).unwrap(), r);
    let d = criterion.difference.unwrap();
    // As the report writes a signed number: a true minus sign.
    let shown = if d.estimate < 0.0 {
        format!("\u{2212}{:.3}", -d.estimate)
    } else {
        format!("+{:.3}", d.estimate)
    };
    for text in [report::to_markdown(&r), report::to_html(&r)] {
        assert!(text.contains("Judge noise floor (A/A arm)"), "{text}");
        assert!(text.contains("17 pairs of stable against a second stable"));
        assert!(text.contains("helpfulness"));
        assert!(text.contains(" (check)"), "{text}");
        assert!(text.contains(&shown), "{shown} in {text}");
    }
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
    for format in [
        canarist::cli::report::Format::Md,
        canarist::cli::report::Format::Json,
    ] {
        let args = canarist::cli::report::ReportArgs {
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
        canarist::cli::report::run(args).await.unwrap();
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
    let err = canarist::cli::report::load_policy(&gate)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gate.yaml") && err.contains("gate.metrics"),
        "{err}"
    );
}
