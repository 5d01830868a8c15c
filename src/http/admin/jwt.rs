//! JWT bearer tokens for teams that issue tokens centrally: RS256 or ES256, verified with the
//! public key or JWKS from `admin.jwt`; `exp`, `sub`, `iss` and `aud` are required, `iss` and
//! `aud` must be the configured ones, and `exp`/`nbf` are checked (with the configured leeway);
//! the role comes from the configured claim and the subject is the actor.
//! Fails closed: any problem is a 401 (the reason is in the message, never the key material).

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};

use super::AdminError;
use super::auth::{Principal, Role};
use crate::config::JwtConfig;

/// Verifies `token` and returns who it names.
pub fn verify(cfg: &JwtConfig, token: &str) -> Result<Principal, AdminError> {
    let unauthorized = |m: &str| AdminError::Unauthorized(format!("invalid token: {m}"));
    let header = decode_header(token).map_err(|_| unauthorized("malformed"))?;
    if header.alg != cfg.algorithm {
        return Err(unauthorized("unexpected algorithm"));
    }
    let mut validation = Validation::new(cfg.algorithm);
    validation.leeway = cfg.leeway_seconds;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
    validation.set_audience(&[&cfg.audience]);
    validation.set_issuer(&[&cfg.issuer]);
    let keys = cfg.keys.iter().filter(|(kid, _)| match (&header.kid, kid) {
        (Some(want), Some(have)) => want == have,
        _ => true,
    });
    let mut last = ErrorKind::InvalidSignature;
    for (_, key) in keys {
        match decode::<serde_json::Map<String, serde_json::Value>>(token, key, &validation) {
            Ok(data) => return principal(cfg, &data.claims),
            Err(e) => {
                last = e.into_kind();
                if !matches!(last, ErrorKind::InvalidSignature) {
                    break;
                }
            }
        }
    }
    Err(unauthorized(match last {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not valid yet (nbf)",
        ErrorKind::InvalidSignature => "signature does not verify",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::MissingRequiredClaim(_) => "missing exp, sub, iss or aud claim",
        _ => "rejected",
    }))
}

fn principal(
    cfg: &JwtConfig,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Result<Principal, AdminError> {
    let sub = claims
        .get("sub")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AdminError::Unauthorized("invalid token: `sub` is not a string".into()))?;
    let role = claims
        .get(&cfg.role_claim)
        .and_then(|v| v.as_str())
        .and_then(Role::parse)
        .ok_or_else(|| {
            AdminError::Unauthorized(format!(
                "invalid token: claim `{}` is not one of client, viewer, admin, owner",
                cfg.role_claim
            ))
        })?;
    Ok(Principal {
        id: format!("jwt:{sub}"),
        role,
    })
}
