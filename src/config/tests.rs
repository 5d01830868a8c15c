use std::path::Path;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn quickstart_fixture_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/quickstart.yaml");
    let config = Config::load(&path).unwrap();
    let d = config.deployment("quickstart").unwrap();
    assert_eq!(d.mode, Mode::Shadow);
    assert_eq!(d.candidates[0].buckets, 10_000);
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert!(matches!(config.capture.sink, SinkKind::Jsonl(_)));
}

#[test]
fn every_problem_is_reported_at_once_with_its_field() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/config/broken.yaml");
    let err = Config::load(&path).unwrap_err();
    let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    for expected in [
        "listen",
        "providers.mock.base_url",
        "providers.mock.api_key_env",
        "deployments[0].slug",
        "deployments[0].mode",
        "deployments[0].stable.provider",
        "deployments[0].stable.params.model",
        "deployments[0].candidates[0].percent",
        "deployments[0].candidates[1].name",
        "deployments[0].candidates[1].percent",
        "deployments[0].cohorts.rules[0].match.plan",
        "capture.redact[0]",
    ] {
        assert!(
            fields.contains(&expected),
            "missing {expected} in {fields:?}"
        );
    }
    let text = err.to_string();
    assert!(text.starts_with(&format!("{}: ", path.display())), "{text}");
    assert!(
        text.contains("unknown provider `nowhere` (known: mock)"),
        "{text}"
    );
    assert!(text.contains("CANARIST_TEST_MISSING_KEY"), "{text}");
}

#[test]
fn unknown_keys_and_wrong_types_name_the_field() {
    let yaml = "deployments:\n  - slug: a\n    stable: {provider: p, model: m}\n    colour: red\n";
    let err = Config::from_yaml(Path::new("c.yaml"), yaml, &no_env).unwrap_err();
    assert_eq!(err.problems[0].field, "deployments[0].colour");
    assert!(err.problems[0].message.contains("line 4"), "{err}");
    assert!(
        err.problems[0].message.contains("unknown field `colour`"),
        "{err}"
    );

    let yaml = "providers:\n  p:\n    base_url: http://x\n    timeout: soon\n";
    let err = Config::from_yaml(Path::new("c.yaml"), yaml, &no_env).unwrap_err();
    assert_eq!(err.problems[0].field, "providers.p.timeout");
}

#[test]
fn api_keys_come_from_the_named_variable() {
    let yaml =
        "providers:\n  p:\n    base_url: https://api.example.com/v1/\n    api_key_env: MY_KEY\n";
    let config = Config::from_yaml(Path::new("c.yaml"), yaml, &|name| {
        (name == "MY_KEY").then(|| "sk-test".to_owned())
    })
    .unwrap();
    let p = &config.providers["p"];
    assert_eq!(p.api_key.as_deref(), Some("sk-test"));
    assert_eq!(p.base_url, "https://api.example.com/v1");
    assert!(
        !format!("{p:?}").contains("sk-test"),
        "keys never appear in debug output"
    );
}

#[test]
fn percent_steps_and_lanes_are_enforced() {
    let yaml = r#"
providers: { p: { base_url: "http://x" } }
deployments:
  - slug: d
    mode: live
    stable: { provider: p, model: s }
    candidates:
      - { name: a, provider: p, model: a, percent: 0.5 }
      - { name: b, provider: p, model: b, percent: 50 }
    cohorts:
      labels: { tier: { header: x-tier } }
      rules: [ { match: { tier: enterprise }, action: exclude, until_percent: 25 } ]
"#;
    let config = Config::from_yaml(Path::new("c.yaml"), yaml, &no_env).unwrap();
    let d = &config.deployments[0];
    assert_eq!(d.candidates[0].buckets, 50);
    assert_eq!(d.candidates[1].buckets, 5_000);
    assert_eq!(
        d.cohorts.rules[0].action,
        CohortAction::Exclude {
            until_buckets: Some(2_500)
        }
    );
    let too_much = yaml.replace("percent: 50", "percent: 50.01");
    let err = Config::from_yaml(Path::new("c.yaml"), &too_much, &no_env).unwrap_err();
    assert!(err.to_string().contains("at most 50%"), "{err}");
}

#[test]
fn storage_defaults_to_sqlite_and_takes_retention() {
    let config = Config::from_yaml(Path::new("c.yaml"), "{}", &no_env).unwrap();
    assert_eq!(config.storage_url, "sqlite://canarist.db");
    assert_eq!(config.retention, Retention::default());
    let yaml = "storage: { url: \"postgres://db/x\", keep_observations: 30d, keep_bodies: 7d }";
    let config = Config::from_yaml(Path::new("c.yaml"), yaml, &no_env).unwrap();
    assert_eq!(
        config.retention.observations,
        Some(std::time::Duration::from_secs(30 * 86_400))
    );
    assert_eq!(
        config.retention.bodies,
        Some(std::time::Duration::from_secs(7 * 86_400))
    );
    let err = Config::from_yaml(
        Path::new("c.yaml"),
        "storage: { url: \"mysql://x\" }",
        &no_env,
    )
    .unwrap_err();
    assert_eq!(err.problems[0].field, "storage.url");
}
