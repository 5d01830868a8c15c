//! The `admin:` section of the config file: per-key rate limits of the admin API, whether proxy
//! endpoints require client keys, and JWT verification (algorithm, public key PEM or JWKS file,
//! the claim that carries the role).
//!
//! Owns: the raw form (`RawAdmin`), its validation and the validated [`AdminConfig`]. Key files
//! are read and parsed here so that a bad key is a config error naming the file and field, not a
//! 401 at run time. Never: touches the network (a JWKS is a local file). Fails closed: a section
//! with any problem makes the whole config unusable.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::Problem;
use super::secret::{Env, resolve};

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Requests per minute allowed to one API key (or token subject). Default 600.
    #[serde(default)]
    pub rate_limit_per_minute: Option<u32>,
    /// Requests a key may make at once before the per-minute rate applies. Default 60.
    #[serde(default)]
    pub rate_limit_burst: Option<u32>,
    /// When true, `/v1/chat/completions` and the other proxy routes need a valid key or token.
    #[serde(default)]
    pub proxy_keys_required: Option<bool>,
    /// Failed authentications (a key or token presented and refused) allowed per minute from
    /// one client address; beyond them the address gets 429 before any key is looked up.
    /// Default 30.
    #[serde(default)]
    pub auth_failures_per_minute: Option<u32>,
    /// Failed authentications one address may make at once before the per-minute rate
    /// applies. Default 10.
    #[serde(default)]
    pub auth_failure_burst: Option<u32>,
    #[serde(default)]
    pub jwt: Option<RawJwt>,
    /// The HMAC key that signs the dashboard's short-lived report links. Give every replica
    /// behind one URL the same one (prefer `link_secret_env`); default: a random key per process.
    #[serde(default)]
    pub link_secret: Option<String>,
    /// Name of the environment variable that holds `link_secret`.
    #[serde(default)]
    pub link_secret_env: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    /// `RS256` or `ES256`.
    pub algorithm: String,
    /// PEM file with the issuer's public key (relative to the config file).
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// Name of the environment variable that holds `public_key_file`.
    #[serde(default)]
    pub public_key_file_env: Option<String>,
    /// JWKS file (`{"keys": [...]}`) with the issuer's public keys (relative to the config file).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Name of the environment variable that holds `jwks_file`.
    #[serde(default)]
    pub jwks_file_env: Option<String>,
    /// Claim whose value is the role (`viewer`, `admin`, `owner`, `client`). Default `role`.
    #[serde(default)]
    pub role_claim: Option<String>,
    /// The `iss` every token must carry (required).
    #[serde(default)]
    pub issuer: Option<String>,
    /// Name of the environment variable that holds `issuer`.
    #[serde(default)]
    pub issuer_env: Option<String>,
    /// The `aud` every token must carry (required).
    #[serde(default)]
    pub audience: Option<String>,
    /// Name of the environment variable that holds `audience`.
    #[serde(default)]
    pub audience_env: Option<String>,
    /// Clock skew tolerated on `exp`/`nbf`, in seconds. Default 30.
    #[serde(default)]
    pub leeway_seconds: Option<u64>,
}

/// The validated `admin:` section.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub rate_limit_per_minute: NonZeroU32,
    pub rate_limit_burst: NonZeroU32,
    pub proxy_keys_required: bool,
    pub auth_failures_per_minute: NonZeroU32,
    pub auth_failure_burst: NonZeroU32,
    pub jwt: Option<JwtConfig>,
    /// `admin.link_secret`: the report links' HMAC key; `None`: a random one per process.
    pub link_secret: Option<LinkSecret>,
}

/// A secret that never shows in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkSecret(pub String);

impl std::fmt::Debug for LinkSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            rate_limit_per_minute: default_rate_limit_per_minute(),
            rate_limit_burst: default_rate_limit_burst(),
            proxy_keys_required: false,
            auth_failures_per_minute: default_auth_failures_per_minute(),
            auth_failure_burst: default_auth_failure_burst(),
            jwt: None,
            link_secret: None,
        }
    }
}

pub fn default_rate_limit_per_minute() -> NonZeroU32 {
    NonZeroU32::new(600).unwrap_or(NonZeroU32::MIN)
}
pub fn default_rate_limit_burst() -> NonZeroU32 {
    NonZeroU32::new(60).unwrap_or(NonZeroU32::MIN)
}
pub fn default_auth_failures_per_minute() -> NonZeroU32 {
    NonZeroU32::new(30).unwrap_or(NonZeroU32::MIN)
}
pub fn default_auth_failure_burst() -> NonZeroU32 {
    NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN)
}

/// How bearer tokens that are not API keys are verified.
#[derive(Clone)]
pub struct JwtConfig {
    pub algorithm: Algorithm,
    /// Verification keys with their `kid` (a PEM file gives one key without a kid).
    pub keys: Arc<Vec<(Option<String>, DecodingKey)>>,
    pub role_claim: String,
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry.
    pub audience: String,
    pub leeway_seconds: u64,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("algorithm", &self.algorithm)
            .field("keys", &self.keys.len())
            .field("role_claim", &self.role_claim)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

/// Validates the section; problems are returned (with their field), never thrown.
pub(super) fn validate(
    path: &Path,
    raw: Option<RawAdmin>,
    env: Env<'_>,
    problems: &mut Vec<Problem>,
) -> AdminConfig {
    let Some(mut raw) = raw else {
        return AdminConfig::default();
    };
    let link_secret = super::secret::resolve(
        "admin.link_secret",
        raw.link_secret.take(),
        raw.link_secret_env.as_deref(),
        env,
        problems,
    )
    .ok()
    .flatten();
    if link_secret.as_ref().is_some_and(|s| s.len() < 16) {
        problems.push(Problem {
            field: "admin.link_secret".into(),
            message: "must be at least 16 characters".into(),
        });
    }
    let jwt_secrets = raw
        .jwt
        .as_mut()
        .map(|j| JwtSecrets::resolve(j, env, problems));
    let mut push = |field: &str, message: String| {
        problems.push(Problem {
            field: format!("admin.{field}"),
            message,
        });
    };
    let positive =
        |v: Option<u32>, default: NonZeroU32, field: &str, push: &mut dyn FnMut(&str, String)| {
            match v {
                None => default,
                Some(n) => NonZeroU32::new(n).unwrap_or_else(|| {
                    push(field, "must be greater than 0".into());
                    default
                }),
            }
        };
    let rate_limit_per_minute = positive(
        raw.rate_limit_per_minute,
        default_rate_limit_per_minute(),
        "rate_limit_per_minute",
        &mut push,
    );
    let rate_limit_burst = positive(
        raw.rate_limit_burst,
        default_rate_limit_burst(),
        "rate_limit_burst",
        &mut push,
    );
    let auth_failures_per_minute = positive(
        raw.auth_failures_per_minute,
        default_auth_failures_per_minute(),
        "auth_failures_per_minute",
        &mut push,
    );
    let auth_failure_burst = positive(
        raw.auth_failure_burst,
        default_auth_failure_burst(),
        "auth_failure_burst",
        &mut push,
    );
    let jwt = match (raw.jwt, jwt_secrets) {
        (Some(j), Some(Ok(secrets))) => jwt(path, j, secrets, &mut push),
        _ => None,
    };
    AdminConfig {
        rate_limit_per_minute,
        rate_limit_burst,
        proxy_keys_required: raw.proxy_keys_required.unwrap_or(false),
        auth_failures_per_minute,
        auth_failure_burst,
        jwt,
        link_secret: link_secret.map(LinkSecret),
    }
}

/// The `admin.jwt` fields that may come from the environment, resolved.
struct JwtSecrets {
    public_key_file: Option<PathBuf>,
    jwks_file: Option<PathBuf>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl JwtSecrets {
    /// `Err(())` when any of them has a problem (pushed to `problems`).
    fn resolve(raw: &mut RawJwt, env: Env<'_>, problems: &mut Vec<Problem>) -> Result<Self, ()> {
        let path = |p: Option<PathBuf>| p.map(|p| p.to_string_lossy().into_owned());
        let mut one = |field: &str, literal: Option<String>, var: &Option<String>| {
            resolve(
                &format!("admin.jwt.{field}"),
                literal,
                var.as_deref(),
                env,
                problems,
            )
        };
        let public_key_file = one(
            "public_key_file",
            path(raw.public_key_file.take()),
            &raw.public_key_file_env,
        );
        let jwks_file = one("jwks_file", path(raw.jwks_file.take()), &raw.jwks_file_env);
        let issuer = one("issuer", raw.issuer.take(), &raw.issuer_env);
        let audience = one("audience", raw.audience.take(), &raw.audience_env);
        Ok(Self {
            public_key_file: public_key_file?.map(PathBuf::from),
            jwks_file: jwks_file?.map(PathBuf::from),
            issuer: issuer?,
            audience: audience?,
        })
    }
}

fn jwt(
    path: &Path,
    raw: RawJwt,
    secrets: JwtSecrets,
    push: &mut dyn FnMut(&str, String),
) -> Option<JwtConfig> {
    let algorithm = match raw.algorithm.as_str() {
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        other => {
            push(
                "jwt.algorithm",
                format!("`{other}` is not supported (use RS256 or ES256)"),
            );
            None
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let keys = match (&secrets.public_key_file, &secrets.jwks_file) {
        (Some(_), Some(_)) => {
            push("jwt", "give public_key_file or jwks_file, not both".into());
            None
        }
        (None, None) => {
            push("jwt", "give public_key_file or jwks_file".into());
            None
        }
        (Some(file), None) => algorithm.and_then(|alg| {
            let full = dir.join(file);
            let pem = read(&full, "jwt.public_key_file", push)?;
            let key = match alg {
                Algorithm::ES256 => DecodingKey::from_ec_pem(&pem),
                _ => DecodingKey::from_rsa_pem(&pem),
            };
            match key {
                Ok(k) => Some(vec![(None, k)]),
                Err(e) => {
                    push(
                        "jwt.public_key_file",
                        format!("{}: not a {alg:?} public key PEM: {e}", full.display()),
                    );
                    None
                }
            }
        }),
        (None, Some(file)) => {
            let full = dir.join(file);
            read(&full, "jwt.jwks_file", push).and_then(|bytes| jwks(&full, &bytes, push))
        }
    };
    let role_claim = raw.role_claim.unwrap_or_else(|| "role".to_owned());
    if role_claim.is_empty() {
        push("jwt.role_claim", "must not be empty".into());
    }
    // Without them any token the key ever signed (for any service) would be accepted.
    let mut required = |field: &str, value: Option<String>| {
        let value = value.filter(|v| !v.is_empty());
        if value.is_none() {
            push(
                &format!("jwt.{field}"),
                format!("is required: tokens must name this gateway (`{field}` or `{field}_env`)"),
            );
        }
        value
    };
    let issuer = required("issuer", secrets.issuer);
    let audience = required("audience", secrets.audience);
    Some(JwtConfig {
        algorithm: algorithm?,
        keys: Arc::new(keys?),
        role_claim,
        issuer: issuer?,
        audience: audience?,
        leeway_seconds: raw.leeway_seconds.unwrap_or(30),
    })
}

fn read(full: &Path, field: &str, push: &mut dyn FnMut(&str, String)) -> Option<Vec<u8>> {
    std::fs::read(full)
        .map_err(|e| push(field, format!("cannot read {}: {e}", full.display())))
        .ok()
}

fn jwks(
    full: &Path,
    bytes: &[u8],
    push: &mut dyn FnMut(&str, String),
) -> Option<Vec<(Option<String>, DecodingKey)>> {
    let set: jsonwebtoken::jwk::JwkSet = match serde_json::from_slice(bytes) {
        Ok(s) => s,
        Err(e) => {
            push(
                "jwt.jwks_file",
                format!("{}: not a JWKS document: {e}", full.display()),
            );
            return None;
        }
    };
    let mut keys = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        match DecodingKey::from_jwk(jwk) {
            Ok(k) => keys.push((jwk.common.key_id.clone(), k)),
            Err(e) => push(
                "jwt.jwks_file",
                format!("{}: keys[{i}] is not usable: {e}", full.display()),
            ),
        }
    }
    if keys.is_empty() {
        push(
            "jwt.jwks_file",
            format!("{}: no usable key", full.display()),
        );
        return None;
    }
    Some(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_jwt() -> RawJwt {
        RawJwt {
            algorithm: "ES256".into(),
            public_key_file: None,
            public_key_file_env: None,
            jwks_file: None,
            jwks_file_env: None,
            role_claim: None,
            issuer: None,
            issuer_env: None,
            audience: None,
            audience_env: None,
            leeway_seconds: None,
        }
    }

    #[test]
    fn jwt_settings_come_from_the_environment() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/admin/c.yaml");
        let env = |name: &str| match name {
            "JWT_KEY" => Some("jwt-es256-public.pem".to_owned()),
            "JWT_ISS" => Some("https://issuer.example".to_owned()),
            _ => None,
        };
        let raw = RawAdmin {
            jwt: Some(RawJwt {
                public_key_file_env: Some("JWT_KEY".into()),
                issuer_env: Some("JWT_ISS".into()),
                audience_env: Some("JWT_AUD_UNSET".into()),
                ..raw_jwt()
            }),
            ..RawAdmin::default()
        };
        let mut problems = Vec::new();
        let cfg = validate(&dir, Some(raw), &env, &mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "admin.jwt.audience_env");
        assert!(problems[0].message.contains("`JWT_AUD_UNSET`"));
        assert!(cfg.jwt.is_none());

        let raw = RawAdmin {
            jwt: Some(RawJwt {
                public_key_file_env: Some("JWT_KEY".into()),
                issuer_env: Some("JWT_ISS".into()),
                audience: Some("canarist".into()),
                ..raw_jwt()
            }),
            ..RawAdmin::default()
        };
        let mut problems = Vec::new();
        let cfg = validate(&dir, Some(raw), &env, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let jwt = cfg.jwt.unwrap();
        assert_eq!(jwt.issuer, "https://issuer.example");
        assert_eq!(jwt.audience, "canarist");
        assert_eq!(jwt.keys.len(), 1);
    }

    #[test]
    fn defaults_and_bad_values_name_their_fields() {
        let mut problems = Vec::new();
        let cfg = validate(Path::new("c.yaml"), None, &|_| None, &mut problems);
        assert!(problems.is_empty());
        assert!(!cfg.proxy_keys_required);
        assert_eq!(cfg.rate_limit_per_minute.get(), 600);

        let raw = RawAdmin {
            rate_limit_per_minute: Some(0),
            proxy_keys_required: Some(true),
            jwt: Some(RawJwt {
                algorithm: "HS256".into(),
                public_key_file: Some("missing.pem".into()),
                issuer: Some("iss".into()),
                audience: Some("aud".into()),
                ..raw_jwt()
            }),
            link_secret: Some("short".into()),
            ..RawAdmin::default()
        };
        let cfg = validate(Path::new("c.yaml"), Some(raw), &|_| None, &mut problems);
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "admin.link_secret",
                "admin.rate_limit_per_minute",
                "admin.jwt.algorithm"
            ]
        );
        assert!(cfg.proxy_keys_required);
        assert!(cfg.jwt.is_none());
    }

    #[test]
    fn unreadable_key_file_is_reported_with_its_path() {
        let mut problems = Vec::new();
        let raw = RawAdmin {
            jwt: Some(RawJwt {
                algorithm: "ES256".into(),
                jwks_file: Some("nope.json".into()),
                issuer: Some("iss".into()),
                audience: Some("aud".into()),
                ..raw_jwt()
            }),
            ..RawAdmin::default()
        };
        validate(
            Path::new("/etc/x/c.yaml"),
            Some(raw),
            &|_| None,
            &mut problems,
        );
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "admin.jwt.jwks_file");
        assert!(
            problems[0].message.contains("/etc/x/nope.json"),
            "{}",
            problems[0].message
        );
    }
}
