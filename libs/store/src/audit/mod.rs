//! The audit trail: one row per privileged decision, appended to a hash chain.
//!
//! Appends run inside a write transaction (see `Store::begin_write`), which
//! holds a database-wide lock: reading the last row and inserting the next
//! cannot interleave between processes, so the chain stays linear with any
//! number of replicas. A change and its audit row commit together or not at
//! all.

mod chain;
mod verify;

use std::fmt;

use serde::Serialize;
use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;

pub use verify::{BreakReason, BrokenLink, VerifyReport};

use crate::error::{OpError, StoreError};
use crate::metrics::Operation;
use crate::store::{Store, now_ms};
use crate::{token, validate};

/// Most events one [`Store::list_audit`] call returns.
pub const MAX_LIST: u32 = 1000;

/// How a decision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The change or request went through.
    Success,
    /// The request was refused (authentication, authorization, validation).
    Denied,
    /// It was attempted and failed (a config reload that did not apply).
    Failure,
}

impl Outcome {
    /// The stored and logged spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::Failure => "failure",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        [Self::Success, Self::Denied, Self::Failure].into_iter().find(|o| o.as_str() == value)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event to record; the store assigns seq, id, time and hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    /// Who acted (`admin-token`, `key:<id>`); same alphabet as principals.
    pub actor: String,
    /// What was decided: `key.create`, `key.revoke`, `admin.denied`, `config.reload`.
    pub action: String,
    /// What it applied to (a key id, a config hash, a request path).
    pub target: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, in words; never a secret.
    pub reason: String,
}

impl NewAuditEvent {
    /// Builds an event from borrowed parts.
    pub fn new(actor: &str, action: &str, target: &str, outcome: Outcome, reason: impl Into<String>) -> Self {
        Self {
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome,
            reason: reason.into(),
        }
    }

    fn validate(&self) -> Result<(), StoreError> {
        validate::actor(&self.actor)?;
        validate::action(&self.action)?;
        validate::text("target", &self.target, validate::MAX_TARGET_LEN)?;
        validate::text("reason", &self.reason, validate::MAX_REASON_LEN)
    }
}

/// A committed audit event, as stored and as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// Position in the chain, from 1 without gaps.
    pub seq: u64,
    /// Random id in the UUID v4 layout, to find the event's log line.
    pub event_id: String,
    /// When it was committed, unix milliseconds.
    pub time: i64,
    /// Who acted.
    pub actor: String,
    /// What was decided.
    pub action: String,
    /// What it applied to.
    pub target: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why.
    pub reason: String,
    /// The previous event's hash (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over this event's fields and `prev_hash`, in hex.
    pub hash: String,
}

impl Store {
    /// Records a decision that changed no data (an admin request denied, a
    /// configuration reloaded or rejected). Returns the committed event.
    pub async fn record_audit(&self, event: NewAuditEvent) -> Result<AuditEvent, StoreError> {
        event.validate()?;
        self.run(Operation::AuditAppend, async {
            let mut conn = self.acquire().await?;
            let mut tx = self.begin_write(&mut conn).await?;
            let committed = append(&mut tx, &event, now_ms()).await?;
            tx.commit().await?;
            Ok(committed)
        })
        .await
    }

    /// Events with `seq > after_seq`, in order, at most `limit` (capped at
    /// [`MAX_LIST`]).
    pub async fn list_audit(&self, after_seq: u64, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        self.run(Operation::AuditList, async {
            let mut conn = self.acquire().await?;
            page(&mut conn, after_seq, limit.min(MAX_LIST)).await
        })
        .await
    }
}

/// Appends `event` after the chain's last row. The caller's transaction must
/// hold the write lock.
pub(crate) async fn append(conn: &mut AnyConnection, event: &NewAuditEvent, now: i64) -> Result<AuditEvent, OpError> {
    let last =
        sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetch_optional(&mut *conn).await?;
    let (seq, prev_hash) = match last {
        Some(row) => (row.try_get::<i64, _>("seq")? + 1, row.try_get::<String, _>("hash")?),
        None => (1, chain::GENESIS.to_owned()),
    };
    let event_id = token::event_id().map_err(|e| StoreError::internal(Operation::AuditAppend, e))?;
    let mut committed = AuditEvent {
        seq: u64::try_from(seq).map_err(|e| StoreError::internal(Operation::AuditAppend, e))?,
        event_id,
        time: now,
        actor: event.actor.clone(),
        action: event.action.clone(),
        target: event.target.clone(),
        outcome: event.outcome,
        reason: event.reason.clone(),
        prev_hash,
        hash: String::new(),
    };
    committed.hash = chain::hash(&committed);
    sqlx::query(
        "INSERT INTO audit_events \
         (seq, event_id, occurred_at, actor, action, target, outcome, reason, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(seq)
    .bind(&committed.event_id)
    .bind(now)
    .bind(&committed.actor)
    .bind(&committed.action)
    .bind(&committed.target)
    .bind(committed.outcome.as_str())
    .bind(&committed.reason)
    .bind(&committed.prev_hash)
    .bind(&committed.hash)
    .execute(conn)
    .await?;
    Ok(committed)
}

/// One page of the chain in seq order.
pub(crate) async fn page(conn: &mut AnyConnection, after_seq: u64, limit: u32) -> Result<Vec<AuditEvent>, OpError> {
    let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
    let rows = sqlx::query(
        "SELECT seq, event_id, occurred_at, actor, action, target, outcome, reason, prev_hash, hash \
         FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(event_from_row).collect()
}

fn event_from_row(row: &AnyRow) -> Result<AuditEvent, OpError> {
    let seq: i64 = row.try_get("seq")?;
    let outcome: String = row.try_get("outcome")?;
    let corrupt = |what: String| StoreError::internal(Operation::AuditList, what);
    Ok(AuditEvent {
        seq: u64::try_from(seq).map_err(|_| corrupt(format!("audit row has negative seq {seq}")))?,
        event_id: row.try_get("event_id")?,
        time: row.try_get("occurred_at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        outcome: Outcome::parse(&outcome).ok_or_else(|| corrupt(format!("audit row {seq} has outcome {outcome:?}")))?,
        reason: row.try_get("reason")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}
