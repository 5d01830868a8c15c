//! `canarist config check|schema`, the shipped JSON Schema, and `canarist rubric check FILE…`.

use std::path::{Path, PathBuf};
use std::process::Output;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn canarist(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_canarist"))
        .args(args)
        .current_dir(root())
        .env_remove("CANARIST_TEST_MISSING_KEY")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn yaml_to_json(path: &Path, yaml: &str) -> serde_json::Value {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn shipped_schema_is_up_to_date() {
    let out = canarist(&["config", "schema"]);
    assert!(out.status.success(), "{}", text(&out));
    let shipped = std::fs::read_to_string(root().join("docs/config.schema.json")).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout) == shipped,
        "docs/config.schema.json is stale: run `canarist config schema --out docs/config.schema.json`"
    );
}

/// Every config in `fixtures/` is valid under the schema; `fixtures/config/broken.yaml` is not.
#[test]
fn schema_accepts_every_fixture_config_and_rejects_the_broken_one() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("docs/config.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut configs: Vec<(PathBuf, String)> = [
        "fixtures/quickstart.yaml",
        "fixtures/admin/fuzz.yaml",
        "fixtures/ui/dashboard.yaml",
    ]
    .iter()
    .map(|p| {
        (
            root().join(p),
            std::fs::read_to_string(root().join(p)).unwrap(),
        )
    })
    .collect();
    // The demo's config is a template: validate it filled in, as the demo writes it.
    configs.push((
        root().join("fixtures/demo/canarist.yaml"),
        canarist::cli::demo::scenario::config_yaml(&canarist::cli::demo::scenario::Fill {
            mock_url: "http://127.0.0.1:9/v1",
            storage_url: "sqlite://demo.db",
            rubrics_dir: "rubrics",
            candidate: "mock-candidate-good",
            pace: canarist::cli::demo::scenario::Pace::new(true),
        }),
    ));
    for (path, yaml) in &configs {
        let value = yaml_to_json(path, yaml);
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
    let broken = root().join("fixtures/config/broken.yaml");
    let value = yaml_to_json(&broken, &std::fs::read_to_string(&broken).unwrap());
    assert!(!validator.is_valid(&value), "broken.yaml passes the schema");
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.instance_path().to_string())
        .collect();
    assert!(
        errors.iter().any(|p| p == "/deployments/0/mode"),
        "{errors:?}"
    );
}

#[test]
fn config_check_prints_every_problem_and_fails() {
    let out = canarist(&["config", "check", "--config", "fixtures/config/broken.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for field in [
        "listen:",
        "providers.mock.base_url:",
        "providers.mock.api_key_env: environment variable `CANARIST_TEST_MISSING_KEY` is not set",
        "deployments[0].mode:",
        "capture.redact[0]:",
    ] {
        assert!(stdout.contains(field), "missing {field}: {}", text(&out));
    }

    let out = canarist(&["config", "check", "--config", "fixtures/quickstart.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ok: "),
        "{}",
        text(&out)
    );

    // The rubrics the config's judge reads are checked too, each problem with file and line.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "judge: {{ rubrics_dir: \"{}\" }}\n",
            root().join("fixtures/rubrics/broken").display()
        ),
    )
    .unwrap();
    let out = canarist(&["config", "check", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("bad-regex.yaml:5: checks[0].pattern"),
        "{}",
        text(&out)
    );
}

#[test]
fn rubric_check_accepts_file_paths() {
    let out = canarist(&[
        "rubric",
        "check",
        "rubrics/support-chat.yaml",
        "rubrics/json-extraction.yaml",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("support-chat") && stdout.contains("ok: 2 rubric(s) valid"),
        "{}",
        text(&out)
    );

    let out = canarist(&[
        "rubric",
        "check",
        "rubrics/support-chat.yaml",
        "fixtures/rubrics/broken/bad-regex.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("fixtures/rubrics/broken/bad-regex.yaml:5: checks[0].pattern"),
        "{}",
        text(&out)
    );
}
