//! The one rule for secrets in the config file: every string field that can hold a secret
//! (`storage.url`, `alerts.webhook_url`, the `admin.jwt` settings) has an `…_env` sibling that
//! names the environment variable holding the value instead (`storage.url_env: DATABASE_URL`).
//! Give one or the other, not both. An `…_env` naming an unset (or empty) variable is a problem
//! at that field, naming the variable. Provider keys (`api_key_env`) and judge keys (the
//! rubric's `judge.api_key_env`) follow the same rule and exist only in the `_env` form.

use super::Problem;

/// Where environment variables come from (the process, or a test's table).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The value of the field `field` (a dotted path, e.g. `storage.url`) given its literal and its
/// `…_env` sibling. `Ok(None)`: neither is set. `Err(())`: a problem was pushed.
pub(super) fn resolve(
    field: &str,
    literal: Option<String>,
    env_name: Option<&str>,
    env: Env<'_>,
    problems: &mut Vec<Problem>,
) -> Result<Option<String>, ()> {
    match (literal, env_name) {
        (Some(_), Some(_)) => {
            problems.push(Problem {
                field: field.to_owned(),
                message: format!("give `{}` or `{}_env`, not both", last(field), last(field)),
            });
            Err(())
        }
        (Some(v), None) => Ok(Some(v)),
        (None, None) => Ok(None),
        (None, Some(var)) => match env(var) {
            Some(v) if !v.is_empty() => Ok(Some(v)),
            _ => {
                problems.push(Problem {
                    field: format!("{field}_env"),
                    message: format!("environment variable `{var}` is not set"),
                });
                Err(())
            }
        },
    }
}

fn last(field: &str) -> &str {
    field.rsplit('.').next().unwrap_or(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_env_both_and_unset() {
        let env = |name: &str| (name == "SET").then(|| "value".to_owned());
        let mut problems = Vec::new();
        assert_eq!(
            resolve("a.url", Some("lit".into()), None, &env, &mut problems),
            Ok(Some("lit".into()))
        );
        assert_eq!(
            resolve("a.url", None, Some("SET"), &env, &mut problems),
            Ok(Some("value".into()))
        );
        assert_eq!(resolve("a.url", None, None, &env, &mut problems), Ok(None));
        assert!(problems.is_empty());
        assert_eq!(
            resolve("a.url", None, Some("UNSET"), &env, &mut problems),
            Err(())
        );
        assert_eq!(
            resolve("a.url", Some("x".into()), Some("SET"), &env, &mut problems),
            Err(())
        );
        assert_eq!(problems[0].field, "a.url_env");
        assert_eq!(
            problems[0].message,
            "environment variable `UNSET` is not set"
        );
        assert_eq!(problems[1].field, "a.url");
        assert_eq!(problems[1].message, "give `url` or `url_env`, not both");
    }
}
