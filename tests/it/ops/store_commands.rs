//! `rollout`, `report`, `keys` and `migrate` need the store, not provider keys; `serve` still
//! refuses to start without them. The store's URL comes from the environment (`url_env`).

use std::path::Path;
use std::process::Output;

const CONFIG: &str = r#"
providers:
  openai: { base_url: "https://api.openai.example/v1", api_key_env: CANARIST_TEST_OPS_UNSET_KEY }
storage: { url_env: CANARIST_TEST_OPS_DB }
deployments:
  - slug: chat
    mode: live
    stable: { provider: openai, model: a }
    candidates: [{ name: cand, provider: openai, model: b }]
    ramp:
      stages:
        - { percent: 10, min_duration: 1m, min_judged_pairs: 5 }
        - { percent: 50 }
    gate:
      metrics: [{ name: error_rate, kind: error_rate, margin: 0.02, ceiling: 0.1 }]
"#;

fn canarist(args: &[&str], config: &Path, db: Option<&str>) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_canarist"));
    cmd.args(args).arg("--config").arg(config);
    cmd.env_remove("CANARIST_TEST_OPS_UNSET_KEY");
    cmd.env_remove("DATABASE_URL");
    match db {
        Some(url) => cmd.env("CANARIST_TEST_OPS_DB", url),
        None => cmd.env_remove("CANARIST_TEST_OPS_DB"),
    };
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn store_commands_run_without_provider_keys_and_report_uses_the_configs_ramp_and_gate() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("canarist.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let db = format!("sqlite://{}", dir.path().join("c.db").display());
    let db = Some(db.as_str());

    let out = canarist(&["migrate"], &config, db);
    assert!(out.status.success(), "{}", text(&out));
    let out = canarist(&["keys", "list"], &config, db);
    assert!(out.status.success(), "{}", text(&out));
    let out = canarist(&["rollout", "start", "--deployment", "chat"], &config, db);
    assert!(out.status.success(), "{}", text(&out));
    let out = canarist(&["rollout", "status", "--deployment", "chat"], &config, db);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is canary at stage 0/2"),
        "{}",
        text(&out)
    );

    let reports = dir.path().join("reports");
    let out = canarist(
        &[
            "report",
            "--deployment",
            "chat",
            "--stage",
            "0",
            "--format",
            "md",
            "--out",
            reports.to_str().unwrap(),
        ],
        &config,
        db,
    );
    assert!(out.status.success(), "{}", text(&out));
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let md = std::fs::read_to_string(&path).unwrap();
    assert!(!md.contains("no ramp given"), "{md}");
    assert!(!md.contains("no gate policy given"), "{md}");
    assert!(md.contains("10%"), "the configured split is shown: {md}");

    // `serve` needs the provider key; its error names the file, field and variable.
    let out = canarist(&["serve", "--listen", "127.0.0.1:0"], &config, db);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("canarist.yaml"), "{}", text(&out));
    assert!(
        err.contains("providers.openai.api_key_env: environment variable `CANARIST_TEST_OPS_UNSET_KEY` is not set"),
        "{}",
        text(&out)
    );

    // Without the store's variable no command runs, and the error says which variable.
    let out = canarist(
        &["rollout", "status", "--deployment", "chat"],
        &config,
        None,
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("storage.url_env: environment variable `CANARIST_TEST_OPS_DB` is not set"),
        "{}",
        text(&out)
    );
}
