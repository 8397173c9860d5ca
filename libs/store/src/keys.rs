//! API keys in the database: create, list, read and revoke. Every change
//! writes its audit row and its change notification inside the same
//! transaction, so a committed change always has both.

use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::{self, AuditEvent, NewAuditEvent, Outcome};
use crate::backend::Backend;
use crate::error::{OpError, StoreError};
use crate::metrics::Operation;
use crate::store::{Store, now_ms};
use crate::token::{self, ApiKey};
use crate::validate;

/// The PostgreSQL channel on which key changes are announced; the payload is
/// the key id.
pub const KEYS_CHANNEL: &str = "gatehouse_keys";

/// The columns of [`KeyInfo`], as a macro so queries stay `&'static str`.
macro_rules! key_columns {
    () => {
        "id, principal, scopes, created_at, expires_at, revoked_at"
    };
}
pub(crate) use key_columns;

/// What a caller asks for when creating a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewKey {
    /// The identity the key authenticates as (`identity_id` in logs).
    pub principal: String,
    /// Scopes granted; routes require some of them.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Expiry in unix milliseconds; `None` never expires.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// A key as the admin API shows it: never the secret, never its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// The public id, the middle part of `gh_<id>_<secret>`.
    pub id: String,
    /// The identity the key authenticates as.
    pub principal: String,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Expiry, unix milliseconds.
    pub expires_at: Option<i64>,
    /// Revocation time, unix milliseconds.
    pub revoked_at: Option<i64>,
}

/// A key just created: its description, the key to show once, and the audit
/// event committed with it (for the caller's audit log line).
#[derive(Debug, Clone)]
pub struct CreatedKey {
    /// The stored key.
    pub info: KeyInfo,
    /// The whole key; it is not stored and cannot be shown again.
    pub key: ApiKey,
    /// The `key.create` audit event.
    pub audit: AuditEvent,
}

/// A key just revoked, with the audit event committed with the revocation.
#[derive(Debug, Clone)]
pub struct RevokedKey {
    /// The key as it is now.
    pub info: KeyInfo,
    /// The `key.revoke` audit event.
    pub audit: AuditEvent,
}

impl Store {
    /// Creates a key for `new.principal`, on behalf of `actor`.
    pub async fn create_key(&self, actor: &str, new: NewKey) -> Result<CreatedKey, StoreError> {
        validate::actor(actor)?;
        validate::principal(&new.principal)?;
        validate::scopes(&new.scopes)?;
        validate::expires_at(new.expires_at, now_ms())?;
        let generated = token::generate().map_err(|e| StoreError::internal(Operation::KeyCreate, e))?;
        self.run(Operation::KeyCreate, async {
            let mut conn = self.acquire().await?;
            let mut tx = self.begin_write(&mut conn).await?;
            let now = now_ms();
            let updated_at = next_updated_at(&mut tx, now).await?;
            sqlx::query(
                "INSERT INTO api_keys \
                 (id, secret_hash, principal, scopes, created_at, expires_at, revoked_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)",
            )
            .bind(&generated.id)
            .bind(hex::encode(generated.hash))
            .bind(&new.principal)
            .bind(new.scopes.join(" "))
            .bind(now)
            .bind(new.expires_at)
            .bind(updated_at)
            .execute(&mut *tx)
            .await?;
            let info = KeyInfo {
                id: generated.id.clone(),
                principal: new.principal,
                scopes: new.scopes,
                created_at: now,
                expires_at: new.expires_at,
                revoked_at: None,
            };
            let event = NewAuditEvent::new(actor, "key.create", &info.id, Outcome::Success, grant_summary(&info));
            let audit = audit::append(&mut tx, &event, now).await?;
            self.notify_key_change(&mut tx, &info.id).await?;
            tx.commit().await?;
            Ok(CreatedKey { info, key: generated.key, audit })
        })
        .await
    }

    /// Revokes key `id` on behalf of `actor`. A key already revoked is a
    /// `Conflict`, so the audit trail holds exactly one revocation per key.
    pub async fn revoke_key(&self, actor: &str, id: &str) -> Result<RevokedKey, StoreError> {
        validate::actor(actor)?;
        validate::key_id(id)?;
        self.run(Operation::KeyRevoke, async {
            let mut conn = self.acquire().await?;
            let mut tx = self.begin_write(&mut conn).await?;
            let mut info = fetch_key(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
            if info.revoked_at.is_some() {
                return Err(StoreError::Conflict(format!("api key `{id}` is already revoked")).into());
            }
            let now = now_ms();
            let updated_at = next_updated_at(&mut tx, now).await?;
            sqlx::query("UPDATE api_keys SET revoked_at = $1, updated_at = $2 WHERE id = $3")
                .bind(now)
                .bind(updated_at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            info.revoked_at = Some(now);
            let event =
                NewAuditEvent::new(actor, "key.revoke", id, Outcome::Success, format!("principal={}", info.principal));
            let audit = audit::append(&mut tx, &event, now).await?;
            self.notify_key_change(&mut tx, id).await?;
            tx.commit().await?;
            Ok(RevokedKey { info, audit })
        })
        .await
    }

    /// Every key, oldest first, without secrets.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, StoreError> {
        self.run(Operation::KeyList, async {
            let mut conn = self.acquire().await?;
            let rows = sqlx::query(concat!("SELECT ", key_columns!(), " FROM api_keys ORDER BY created_at, id"))
                .fetch_all(&mut *conn)
                .await?;
            Ok(rows.iter().map(key_info).collect::<Result<_, _>>()?)
        })
        .await
    }

    /// One key by id.
    pub async fn get_key(&self, id: &str) -> Result<KeyInfo, StoreError> {
        validate::key_id(id)?;
        self.run(Operation::KeyList, async {
            let mut conn = self.acquire().await?;
            Ok(fetch_key(&mut conn, id).await?.ok_or_else(|| not_found(id))?)
        })
        .await
    }

    /// Announces a change to every replica's key cache when the transaction
    /// commits (PostgreSQL delivers NOTIFY only on commit). SQLite caches poll.
    async fn notify_key_change(&self, conn: &mut AnyConnection, id: &str) -> Result<(), sqlx::Error> {
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT 1 AS sent FROM pg_notify($1, $2)").bind(KEYS_CHANNEL).bind(id).fetch_one(conn).await?;
        }
        Ok(())
    }
}

/// What a `key.create` audit row says was granted.
fn grant_summary(info: &KeyInfo) -> String {
    let expires = info.expires_at.map_or_else(|| "never".to_owned(), |at| at.to_string());
    format!("principal={} scopes={} expires_at={expires}", info.principal, info.scopes.join(","))
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound { what: "api key", id: id.to_owned() }
}

async fn fetch_key(conn: &mut AnyConnection, id: &str) -> Result<Option<KeyInfo>, OpError> {
    let row = sqlx::query(concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.as_ref().map(key_info).transpose()?)
}

/// The next `updated_at`: the clock, but always past every earlier value, so
/// pollers never miss a change committed with a lagging clock. Callers hold
/// the write lock, so no two writers can compute the same value.
async fn next_updated_at(conn: &mut AnyConnection, now: i64) -> Result<i64, sqlx::Error> {
    let last: Option<i64> = sqlx::query_scalar("SELECT MAX(updated_at) FROM api_keys").fetch_one(conn).await?;
    Ok(last.map_or(now, |last| now.max(last + 1)))
}

pub(crate) fn key_info(row: &AnyRow) -> Result<KeyInfo, sqlx::Error> {
    let scopes: String = row.try_get("scopes")?;
    Ok(KeyInfo {
        id: row.try_get("id")?,
        principal: row.try_get("principal")?,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}
