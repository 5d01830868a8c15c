//! API keys: the owner-only endpoints (`GET/POST /v1/admin/keys`, `DELETE /v1/admin/keys/{id}`)
//! and [`create_key`], which `canarist keys create` (`cli::keys`) also calls. A key is shown once, when created; only its SHA-256
//! is stored. Creating and revoking are recorded in the admin audit log with the actor.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Principal, Role, generate_key, hash_key};
use super::body::{JsonBody, bad_field};
use super::{AdminError, AdminState};
use crate::store::{ApiKey, NewAuditEntry, Store, StoreError};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyView {
    pub id: uuid::Uuid,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl KeyView {
    fn of(k: &ApiKey) -> Option<Self> {
        Some(Self {
            id: k.id,
            name: k.name.clone(),
            role: Role::parse(&k.role)?,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        })
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CreateKey {
    /// A label for people (e.g. `ci-deployer`), 1–200 characters, not blank.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub info: KeyView,
    /// The key itself. It is shown only in this response.
    pub key: String,
}

/// Creates a key; returns it in clear (once) with its record.
pub async fn create_key(
    store: &Store,
    name: &str,
    role: Role,
    actor: &str,
) -> Result<(String, ApiKey), StoreError> {
    let key = generate_key();
    let record = store
        .insert_api_key(name, &hash_key(&key), role.as_str())
        .await?;
    store
        .record_audit(&NewAuditEntry {
            deployment: None,
            action: "key.create",
            actor,
            detail: serde_json::json!({"key_id": record.id, "name": name, "role": role}),
        })
        .await?;
    Ok((key, record))
}

/// List API keys (owner).
#[utoipa::path(
    get,
    path = "/v1/admin/keys",
    tag = "keys",
    responses((status = 200, description = "Every key, oldest first (no secrets)", body = KeyList)),
    security(("bearer" = []))
)]
pub async fn list(
    State(admin): State<AdminState>,
    principal: Principal,
) -> Result<axum::Json<KeyList>, AdminError> {
    principal.require(Role::Owner)?;
    let keys = admin.store()?.api_keys().await?;
    Ok(axum::Json(KeyList {
        keys: keys.iter().filter_map(KeyView::of).collect(),
    }))
}

/// Create an API key (owner). The key is in the response and nowhere else.
#[utoipa::path(
    post,
    path = "/v1/admin/keys",
    tag = "keys",
    request_body = CreateKey,
    responses(
        (status = 201, description = "Created", body = CreatedKey),
        (status = 400, description = "The body fails the schema", body = super::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(admin): State<AdminState>,
    principal: Principal,
    JsonBody(req): JsonBody<CreateKey>,
) -> Result<(StatusCode, axum::Json<CreatedKey>), AdminError> {
    principal.require(Role::Owner)?;
    if req.name.trim().is_empty() || req.name.chars().count() > 200 {
        return Err(bad_field("name", "must be 1–200 characters"));
    }
    let (key, record) = create_key(admin.store()?, &req.name, req.role, &principal.id).await?;
    let info = KeyView::of(&record)
        .ok_or_else(|| AdminError::Internal(format!("key {} stored with a bad role", record.id)))?;
    Ok((StatusCode::CREATED, axum::Json(CreatedKey { info, key })))
}

/// Revoke an API key (owner).
#[utoipa::path(
    delete,
    path = "/v1/admin/keys/{id}",
    tag = "keys",
    params(("id" = uuid::Uuid, Path, description = "The key's id")),
    responses(
        (status = 200, description = "Revoked", body = KeyView),
        (status = 400, description = "`id` is not a UUID", body = super::ErrorResponse),
        (status = 404, description = "`key_not_found`: no such active key", body = super::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn revoke(
    State(admin): State<AdminState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<KeyView>, AdminError> {
    principal.require(Role::Owner)?;
    let id = uuid::Uuid::parse_str(&id).map_err(|_| bad_field("id", "is not a UUID"))?;
    let store = admin.store()?;
    if !store.revoke_api_key(id).await? {
        return Err(AdminError::NotFound {
            code: "key_not_found",
            param: Some("id"),
            message: format!("no active key with id {id}"),
        });
    }
    store
        .record_audit(&NewAuditEntry {
            deployment: None,
            action: "key.revoke",
            actor: &principal.id,
            detail: serde_json::json!({"key_id": id}),
        })
        .await?;
    let keys = store.api_keys().await?;
    keys.iter()
        .find(|k| k.id == id)
        .and_then(KeyView::of)
        .map(axum::Json)
        .ok_or_else(|| AdminError::Internal(format!("key {id} vanished after revoking")))
}
