//! Who is calling: `Authorization: Bearer <credential>`, where the credential is an API key
//! (`cnr_…`, looked up by its SHA-256 and compared in constant time) or, when `admin.jwt` is
//! configured, a JWT. The [`Principal`] extractor authenticates and then charges the caller's
//! rate limit; handlers check the role with [`Principal::require`].
//!
//! Fails closed: anything that is not a valid, active credential is a 401; a role below the
//! one required is a 403. Keys are never logged, and only their hash is stored.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::{Admin, AdminError};

/// Every API key starts with this, so that leaked keys are recognisable (secret scanners).
pub const KEY_PREFIX: &str = crate::upstream::credentials::GATEWAY_KEY_PREFIX;

/// What a caller may do. Ordered: each role may do what the roles below it may.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Calls the proxy routes only (when `admin.proxy_keys_required`).
    Client,
    /// Reads the admin API.
    Viewer,
    /// Reads and acts on rollouts and traffic.
    Admin,
    /// Everything, including key management.
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Viewer => "viewer",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "client" => Some(Role::Client),
            "viewer" => Some(Role::Viewer),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `key:<key id>` or `jwt:<subject>`: the actor recorded in the audit log.
    pub id: String,
    pub role: Role,
}

impl Principal {
    /// `Ok` when the caller's role is at least `role`, else 403.
    pub fn require(&self, role: Role) -> Result<(), AdminError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(AdminError::Forbidden)
        }
    }
}

/// A new random API key (32 bytes, base64url) with its prefix. Shown once, never stored.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    use base64::Engine as _;
    format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The stored form of a key: hex SHA-256 (keys are high-entropy, so no slow hash is needed).
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn bearer(parts: &Parts) -> Result<&str, AdminError> {
    let value = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        AdminError::Unauthorized("missing `Authorization: Bearer <key>` header".into())
    })?;
    let value = value
        .to_str()
        .map_err(|_| AdminError::Unauthorized("malformed Authorization header".into()))?;
    let (scheme, credential) = value
        .split_once(' ')
        .ok_or_else(|| AdminError::Unauthorized("expected `Authorization: Bearer <key>`".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || credential.trim().is_empty() {
        return Err(AdminError::Unauthorized(
            "expected `Authorization: Bearer <key>`".into(),
        ));
    }
    Ok(credential.trim())
}

/// Authenticates the request's bearer credential (no per-caller rate limit charged). A
/// credential from a client address past its failed-authentication limit is refused with 429
/// before it is looked up; a refused credential is charged to its address.
pub async fn authenticate(admin: &Admin, parts: &Parts) -> Result<Principal, AdminError> {
    let credential = bearer(parts)?;
    checked(admin, parts, credential).await
}

/// Authenticates the bearer credential of `parts` or, when the request has no `Authorization`
/// header at all, `fallback` (a key a progressive-delivery hook carries in its body because
/// its controller cannot send headers) — under the same failed-authentication limit — then
/// charges the caller's rate limit.
pub(super) async fn principal_or(
    admin: &Admin,
    parts: &Parts,
    fallback: Option<&str>,
) -> Result<Principal, AdminError> {
    let principal = match fallback {
        Some(key) if !parts.headers.contains_key(AUTHORIZATION) => {
            checked(admin, parts, key.trim()).await?
        }
        _ => authenticate(admin, parts).await?,
    };
    charge(admin, &principal)?;
    Ok(principal)
}

/// `credential` verified under its client address's failed-authentication limit.
async fn checked(admin: &Admin, parts: &Parts, credential: &str) -> Result<Principal, AdminError> {
    let addr = client_addr(parts);
    if let Some(addr) = addr {
        admin
            .failures
            .admit(addr)
            .inspect_err(|_| auth_limited(admin))?;
    }
    let result = verify(admin, credential).await;
    if let (Err(AdminError::Unauthorized(_)), Some(addr)) = (&result, addr) {
        admin
            .failures
            .failed(addr)
            .inspect_err(|_| auth_limited(admin))?;
    }
    result
}

/// The peer address of the connection (`None` outside a served connection, e.g. `oneshot`).
fn client_addr(parts: &Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

fn auth_limited(admin: &Admin) {
    admin.gateway.metrics.rollout.auth_failures_limited.inc();
}

/// One credential: an API key, or a JWT when `admin.jwt` is configured.
async fn verify(admin: &Admin, credential: &str) -> Result<Principal, AdminError> {
    if credential.starts_with(KEY_PREFIX) {
        return api_key(admin, credential).await;
    }
    match &admin.gateway.config.admin.jwt {
        Some(jwt) if credential.matches('.').count() == 2 => super::jwt::verify(jwt, credential),
        _ => Err(AdminError::Unauthorized("invalid API key".into())),
    }
}

async fn api_key(admin: &Admin, key: &str) -> Result<Principal, AdminError> {
    let Some(store) = &admin.gateway.store else {
        return Err(AdminError::Unauthorized(
            "API keys need the gateway's database, which is not configured".into(),
        ));
    };
    let hash = hash_key(key);
    let invalid = || AdminError::Unauthorized("invalid API key".into());
    let stored = store.api_key_by_hash(&hash).await?.ok_or_else(invalid)?;
    // The lookup is by hash; the comparison confirms it without a data-dependent early exit.
    let equal: bool = stored.key_hash.as_bytes().ct_eq(hash.as_bytes()).into();
    if !equal || !stored.is_active() {
        return Err(invalid());
    }
    let role = Role::parse(&stored.role).ok_or_else(|| {
        AdminError::Internal(format!(
            "key {} has unknown role `{}`",
            stored.id, stored.role
        ))
    })?;
    Ok(Principal {
        id: format!("key:{}", stored.id),
        role,
    })
}

impl FromRequestParts<Arc<Admin>> for Principal {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, admin: &Arc<Admin>) -> Result<Self, AdminError> {
        let principal = authenticate(admin, parts).await?;
        charge(admin, &principal)?;
        Ok(principal)
    }
}

/// Charges the caller's rate limit (429 when exhausted, counted per role).
fn charge(admin: &Admin, principal: &Principal) -> Result<(), AdminError> {
    admin.limits.check(&principal.id).inspect_err(|_| {
        admin
            .gateway
            .metrics
            .rollout
            .admin_rate_limited
            .get_or_create(&crate::telemetry::RoleLabels {
                role: principal.role.as_str(),
            })
            .inc();
    })
}

/// Middleware for the proxy routes when `admin.proxy_keys_required`: only a key or token with
/// the `client` role may call them (a key for one job: an admin, owner or viewer credential is
/// refused with 403, so that it is never sent along with model traffic).
pub async fn require_client(
    State(admin): State<Arc<Admin>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    match authenticate(&admin, &parts).await {
        Ok(p) if p.role == Role::Client => next.run(Request::from_parts(parts, body)).await,
        Ok(p) => proxy_forbidden(p.role),
        Err(e) => e.into_response(),
    }
}

/// 403 for a credential of another role than `client` on a proxy route.
fn proxy_forbidden(role: Role) -> Response {
    let message = format!(
        "the proxy routes accept only keys with the `client` role; this credential has role `{}` \
         (create one with `canarist keys create --role client`)",
        role.as_str()
    );
    let body = crate::http::error_body(
        &message,
        "permission_error",
        None,
        Some("insufficient_role"),
    );
    (axum::http::StatusCode::FORBIDDEN, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_hash_stably() {
        let a = generate_key();
        let b = generate_key();
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 43);
        assert_ne!(a, b);
        assert_eq!(hash_key(&a), hash_key(&a));
        assert_ne!(hash_key(&a), hash_key(&b));
        // sha256("abc")
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn roles_are_ordered() {
        let p = Principal {
            id: "key:x".into(),
            role: Role::Admin,
        };
        assert!(p.require(Role::Viewer).is_ok());
        assert!(p.require(Role::Admin).is_ok());
        assert!(matches!(p.require(Role::Owner), Err(AdminError::Forbidden)));
        assert_eq!(Role::parse("owner"), Some(Role::Owner));
        assert_eq!(Role::parse("root"), None);
    }
}
