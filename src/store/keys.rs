//! API keys for the admin API: only a hash of each key is stored (the caller hashes; the store
//! never sees a key in clear). Lookups are by hash; revocation keeps the row for the audit trail.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError, with_pool};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub key_hash: String,
    /// `viewer`, `admin` or `owner`.
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

type KeyRow = (
    Uuid,
    String,
    String,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

fn key_from(r: KeyRow) -> ApiKey {
    ApiKey {
        id: r.0,
        name: r.1,
        key_hash: r.2,
        role: r.3,
        created_at: r.4,
        revoked_at: r.5,
    }
}

impl Store {
    /// Stores a new key by its hash. Fails when the hash is already stored.
    pub async fn insert_api_key(
        &self,
        name: &str,
        key_hash: &str,
        role: &str,
    ) -> Result<ApiKey, StoreError> {
        let key = ApiKey {
            id: Uuid::new_v4(),
            name: name.to_string(),
            key_hash: key_hash.to_string(),
            role: role.to_string(),
            created_at: Utc::now(),
            revoked_at: None,
        };
        with_pool!(self, p => {
            sqlx::query(
                "INSERT INTO api_keys (id, name, key_hash, role, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(key.id)
            .bind(&key.name)
            .bind(&key.key_hash)
            .bind(&key.role)
            .bind(key.created_at)
            .execute(p)
            .await?;
        });
        Ok(key)
    }

    /// The key with this hash, revoked or not (check [`ApiKey::is_active`]).
    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let row: Option<KeyRow> = with_pool!(self, p => {
            sqlx::query_as(
                "SELECT id, name, key_hash, role, created_at, revoked_at FROM api_keys \
                 WHERE key_hash = $1",
            )
            .bind(key_hash)
            .fetch_optional(p)
            .await?
        });
        Ok(row.map(key_from))
    }

    /// Every key, oldest first.
    pub async fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let rows: Vec<KeyRow> = with_pool!(self, p => {
            sqlx::query_as(
                "SELECT id, name, key_hash, role, created_at, revoked_at FROM api_keys \
                 ORDER BY created_at, id",
            )
            .fetch_all(p)
            .await?
        });
        Ok(rows.into_iter().map(key_from).collect())
    }

    /// Revokes a key; `false` when there is no such active key.
    pub async fn revoke_api_key(&self, id: Uuid) -> Result<bool, StoreError> {
        let n = with_pool!(self, p => {
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(Utc::now())
                .bind(id)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }
}
