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
fn forwarding_client_credentials_is_opt_in_and_only_for_providers_without_a_key() {
    let yaml = "providers:\n  p:\n    base_url: https://api.example.com/v1\n";
    let config = Config::from_yaml(Path::new("c.yaml"), yaml, &no_env).unwrap();
    assert!(!config.providers["p"].forward_client_auth, "off by default");

    let yaml = "providers:\n  p:\n    base_url: https://api.example.com/v1\n    forward_client_auth: true\n";
    let config = Config::from_yaml(Path::new("c.yaml"), yaml, &no_env).unwrap();
    assert!(config.providers["p"].forward_client_auth);

    let yaml = "providers:\n  p:\n    base_url: https://api.example.com/v1\n    \
                api_key_env: MY_KEY\n    forward_client_auth: true\n";
    let err =
        Config::from_yaml(Path::new("c.yaml"), yaml, &|_| Some("sk-test".to_owned())).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(err.problems[0].field, "providers.p.forward_client_auth");
    assert!(err.problems[0].message.contains("api_key_env"), "{err}");
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

/// Every secret-bearing string has an `…_env` sibling; an unset variable is a problem that
/// names the file, the field and the variable; `Debug` shows none of the values.
#[test]
fn secrets_come_from_the_environment_and_never_show_in_debug() {
    let yaml = r#"
providers:
  p: { base_url: "http://127.0.0.1:1/v1", api_key_env: P_KEY }
storage: { url_env: DB_URL }
deployments:
  - slug: chat
    stable: { provider: p, model: a }
    alerts: { webhook_url_env: HOOK }
"#;
    let env = |name: &str| match name {
        "P_KEY" => Some("sk-provider-secret".to_owned()),
        "DB_URL" => Some("postgres://u:db-secret@127.0.0.1/x".to_owned()),
        "HOOK" => Some("https://hooks.slack.com/services/hook-secret".to_owned()),
        _ => None,
    };
    let config = Config::from_yaml(Path::new("s.yaml"), yaml, &env).unwrap();
    assert_eq!(config.storage_url, "postgres://u:db-secret@127.0.0.1/x");
    assert_eq!(
        config.alerts_of("chat").map(|a| a.webhook_url.as_str()),
        Some("https://hooks.slack.com/services/hook-secret")
    );
    let debug = format!("{config:?}");
    for secret in ["sk-provider-secret", "db-secret", "hook-secret"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }

    let err = Config::from_yaml(Path::new("s.yaml"), yaml, &no_env).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("s.yaml: 3 problems"), "{text}");
    for line in [
        "providers.p.api_key_env: environment variable `P_KEY` is not set",
        "storage.url_env: environment variable `DB_URL` is not set",
        "deployments[0].alerts.webhook_url_env: environment variable `HOOK` is not set",
    ] {
        assert!(text.contains(line), "missing {line} in {text}");
    }

    let both = "storage: { url: \"sqlite://a.db\", url_env: DB_URL }\n";
    let err = Config::from_yaml(Path::new("s.yaml"), both, &env).unwrap_err();
    assert_eq!(err.problems[0].field, "storage.url");
    assert_eq!(err.problems[0].message, "give `url` or `url_env`, not both");
}

/// A bad storage URL is reported without echoing what may be a password.
#[test]
fn bad_storage_url_is_not_echoed() {
    let yaml = "storage: { url: \"mysql://root:hunter2@db/x\" }\n";
    let err = Config::from_yaml(Path::new("s.yaml"), yaml, &no_env).unwrap_err();
    assert_eq!(err.problems[0].field, "storage.url");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

/// Store-only commands load a config whose provider keys are not set; other secrets still count.
#[test]
fn store_mode_does_not_need_provider_keys() {
    let yaml = "providers:\n  p: { base_url: \"http://x/v1\", api_key_env: P_KEY }\n";
    assert!(Config::from_yaml(Path::new("s.yaml"), yaml, &no_env).is_err());
    let c = Config::from_yaml_with(Path::new("s.yaml"), yaml, &no_env, LoadMode::Store).unwrap();
    assert!(c.providers["p"].api_key.is_none());
    let yaml = format!("{yaml}storage: {{ url_env: DB_URL }}\n");
    let err =
        Config::from_yaml_with(Path::new("s.yaml"), &yaml, &no_env, LoadMode::Store).unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert_eq!(err.problems[0].field, "storage.url_env");
}

#[test]
fn the_capture_spool_lives_next_to_the_config_unless_told_otherwise() {
    let base = "providers: { p: { base_url: \"http://x/v1\" } }\n\
                deployments:\n  - slug: a\n    stable: {provider: p, model: m}\n";
    let config = Config::from_yaml(Path::new("/etc/canarist/c.yaml"), base, &no_env).unwrap();
    assert_eq!(
        config.capture.spool,
        Some(SpoolSettings {
            dir: PathBuf::from("/etc/canarist/canarist-spool"),
            max_bytes: 256 * 1024 * 1024,
        })
    );
    assert_eq!(config.capture.write_attempts, 3);

    let yaml = format!("{base}capture: {{ spool: {{ path: spool/here, max_bytes: 1024 }} }}\n");
    let config = Config::from_yaml(Path::new("/etc/canarist/c.yaml"), &yaml, &no_env).unwrap();
    let spool = config.capture.spool.unwrap();
    assert_eq!(spool.dir, PathBuf::from("/etc/canarist/spool/here"));
    assert_eq!(spool.max_bytes, 1024);

    let yaml = format!("{base}capture: {{ spool: {{ path: /var/spool/c, max_bytes: 0 }} }}\n");
    let config = Config::from_yaml(Path::new("c.yaml"), &yaml, &no_env).unwrap();
    assert_eq!(config.capture.spool, None, "max_bytes 0 turns it off");

    let yaml = format!("{base}capture: {{ write_attempts: 0, spool: {{ size: 1 }} }}\n");
    let err = Config::from_yaml(Path::new("c.yaml"), &yaml, &no_env).unwrap_err();
    assert!(err.to_string().contains("capture.spool.size"), "{err}");
    let yaml = format!("{base}capture: {{ write_attempts: 0 }}\n");
    let err = Config::from_yaml(Path::new("c.yaml"), &yaml, &no_env).unwrap_err();
    assert_eq!(err.problems[0].field, "capture.write_attempts", "{err}");
}

#[test]
fn row_less_observations_collect_for_the_aggregate_interval_never_shorter_than_a_flush() {
    let base = "providers: { p: { base_url: \"http://x/v1\" } }\n\
                deployments:\n  - slug: a\n    stable: {provider: p, model: m}\n";
    let at = |capture: &str| {
        let yaml = format!("{base}capture: {{ {capture} }}\n");
        Config::from_yaml(Path::new("c.yaml"), &yaml, &no_env)
    };
    let c = at("").unwrap().capture;
    assert_eq!(c.flush_interval, Duration::from_millis(200));
    assert_eq!(c.aggregate_interval, Duration::from_secs(1));
    let c = at("aggregate_interval: 5s").unwrap().capture;
    assert_eq!(c.aggregate_interval, Duration::from_secs(5));
    // A flush interval longer than the default aggregate interval carries them every flush.
    let c = at("flush_interval: 2s").unwrap().capture;
    assert_eq!(c.aggregate_interval, Duration::from_secs(2));
    let err = at("flush_interval: 2s, aggregate_interval: 500ms").unwrap_err();
    assert_eq!(err.problems[0].field, "capture.aggregate_interval", "{err}");
    assert!(err.to_string().contains("capture.flush_interval"), "{err}");
}

#[test]
fn unit_key_sources_default_are_set_globally_or_per_deployment_and_unknown_names_are_refused() {
    let base = "providers:\n  p: {base_url: 'http://x'}\n\
                deployments:\n  - slug: a\n    stable: {provider: p, model: m}\n";
    let config = Config::from_yaml(Path::new("c.yaml"), base, &no_env).unwrap();
    assert_eq!(config.unit_key_from, UnitSource::DEFAULT_ORDER.to_vec());
    let d = config.deployment("a").unwrap();
    assert_eq!(
        d.unit_key_order(&config.unit_key_from),
        UnitSource::DEFAULT_ORDER
    );

    let yaml = format!(
        "routing:\n  unit_key_from: [metadata.user_id, header]\n{base}\
         \x20 - slug: b\n    stable: {{provider: p, model: m}}\n    unit_key_from: [tenant]\n"
    );
    let config = Config::from_yaml(Path::new("c.yaml"), &yaml, &no_env).unwrap();
    let global = &config.unit_key_from;
    assert_eq!(global, &[UnitSource::MetadataUserId, UnitSource::Header]);
    let a = config.deployment("a").unwrap();
    assert_eq!(a.unit_key_order(global), global.as_slice());
    let b = config.deployment("b").unwrap();
    assert_eq!(b.unit_key_order(global), [UnitSource::Tenant]);

    let yaml = format!(
        "routing:\n  unit_key_from: [header, session_id, header]\n{base}\
         \x20   unit_key_from: []\n"
    );
    let err = Config::from_yaml(Path::new("conf/c.yaml"), &yaml, &no_env).unwrap_err();
    let problems: Vec<(&str, &str)> = err
        .problems
        .iter()
        .map(|p| (p.field.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(problems.len(), 3, "{err}");
    assert_eq!(problems[0].0, "routing.unit_key_from[1]");
    assert!(
        problems[0].1.contains(
            "`session_id` is not a unit key source; expected one of header, \
                               safety_identifier, user, prompt_cache_key, metadata.user_id, tenant"
        ),
        "{err}"
    );
    assert_eq!(problems[1].0, "routing.unit_key_from[2]");
    assert!(problems[1].1.contains("listed twice"), "{err}");
    assert_eq!(problems[2].0, "deployments[0].unit_key_from");
    assert!(
        err.to_string().starts_with("conf/c.yaml: 3 problems"),
        "{err}"
    );
}

#[test]
fn cache_tokens_are_priced_at_their_own_prices_or_the_input_price() {
    let p = Price {
        input_per_mtok: 3.0,
        output_per_mtok: 15.0,
        cache_write_per_mtok: 3.75,
        cache_read_per_mtok: 0.3,
    };
    // 1,000 input tokens of which 200 written to and 500 read from the cache, 100 output.
    let cost = p.cost_with_cache(1_000, 100, (200, 500));
    let expected = (300.0 * 3.0 + 200.0 * 3.75 + 500.0 * 0.3 + 100.0 * 15.0) / 1e6;
    assert!((cost - expected).abs() < 1e-15, "{cost} {expected}");
    assert_eq!(p.cost_with_cache(10, 5, (0, 0)), p.cost(10, 5));
    let plain = Price::new(1.0, 2.0);
    assert_eq!(plain.cost_with_cache(100, 0, (50, 50)), plain.cost(100, 0));
}

#[test]
fn a_cross_api_deployment_refuses_what_no_translation_can_carry() {
    let yaml = r#"
providers:
  openai: { base_url: "http://x" }
  claude: { base_url: "http://y", api: anthropic }
deployments:
  - slug: d
    mode: shadow
    shadow: { mirror_embeddings: true }
    stable: { provider: openai, model: m, params: { max_completion_tokens: 10 } }
    candidates:
      - { name: c, provider: claude, model: n, percent: 10,
          params: { max_completion_tokens: 10, n: 1, max_tokens: 512, top_k: 5 } }
"#;
    let err = Config::from_yaml(Path::new("c.yaml"), yaml, &no_env).unwrap_err();
    let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "deployments[0].candidates[0].params.max_completion_tokens",
            "deployments[0].candidates[0].params.n",
            "deployments[0].shadow.mirror_embeddings",
        ],
        "{err}"
    );
    // The same deployment without those is fine: the chat stable and the Messages candidate.
    let fine = yaml
        .replace("shadow: { mirror_embeddings: true }", "")
        .replace("max_completion_tokens: 10, n: 1, ", "");
    Config::from_yaml(Path::new("c.yaml"), &fine, &no_env).unwrap_or_else(|e| panic!("{e}"));
}
