//! The key cache: an in-memory copy of every key, which answers
//! [`KeyCache::authenticate`] without touching the database.
//!
//! The snapshot holds all keys, so it is authoritative: an id it does not
//! know does not exist (up to the sync delay), and random or forged keys are
//! answered `Unknown` from memory and never reach the database. That is why
//! there is no separate negative cache: a set of recently seen unknown ids
//! would make the same answer no cheaper, and would cost a write on the hot
//! path and memory driven by what attackers send. The snapshot's own size is
//! bounded by the keys table, never by traffic.
//!
//! Readers load the snapshot through an `ArcSwap`, lock-free; sync tasks
//! (see `sync.rs`) build a changed copy and swap it in.

mod snapshot;
mod sync;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use subtle::ConstantTimeEq;
use tokio::task::JoinHandle;

use crate::error::StoreError;
use crate::store::{Store, now_ms};
use crate::token;

use snapshot::Shared;
pub use snapshot::{CacheStatus, Identity};

/// How a [`KeyCache`] keeps up with the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSync {
    /// SQLite: how often to look for changed keys. This bounds how long a
    /// revocation takes to reach every process.
    pub poll_interval: Duration,
    /// PostgreSQL: how often to look for changed keys besides LISTEN/NOTIFY,
    /// in case a notification was lost. Revocations normally arrive within
    /// milliseconds through NOTIFY.
    pub notify_fallback_interval: Duration,
    /// Longest wait between retries while the database is unreachable.
    pub max_backoff: Duration,
}

impl Default for CacheSync {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            notify_fallback_interval: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// The answer to a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// A live key; the request runs as this identity.
    Ok(Identity),
    /// No key with this id, or the secret does not match.
    Unknown,
    /// Not shaped like `gh_<id>_<secret>`.
    Malformed,
    /// The key's expiry has passed.
    Expired,
    /// The key was revoked.
    Revoked,
}

impl AuthOutcome {
    /// A fixed label for logs: `ok`, `unknown`, `malformed`, `expired`, `revoked`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ok(_) => "ok",
            Self::Unknown => "unknown",
            Self::Malformed => "malformed",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

/// The hot-path key lookup. Cloning shares one snapshot; the sync tasks stop
/// when the last clone is dropped.
#[derive(Clone)]
pub struct KeyCache {
    shared: Arc<Shared>,
    _tasks: Arc<AbortOnDrop>,
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache").field("status", &self.status()).finish()
    }
}

impl KeyCache {
    /// Checks a presented key against the snapshot: memory only, with a
    /// constant-time comparison of the secret's hash. The secret is checked
    /// before revocation or expiry, so only its holder learns those.
    pub fn authenticate(&self, presented: &str) -> AuthOutcome {
        let Some((id, secret)) = token::parse(presented) else {
            return AuthOutcome::Malformed;
        };
        let keys = self.shared.keys();
        // Ids are not secret (they appear in logs and the audit trail), so
        // answering an unknown id early leaks nothing; the secret is what
        // must be compared in constant time.
        let Some(entry) = keys.get(id) else {
            return AuthOutcome::Unknown;
        };
        if !bool::from(token::hash_secret(secret).ct_eq(&entry.hash)) {
            return AuthOutcome::Unknown;
        }
        if entry.revoked {
            return AuthOutcome::Revoked;
        }
        if entry.expires_at.is_some_and(|at| at <= now_ms()) {
            return AuthOutcome::Expired;
        }
        AuthOutcome::Ok(entry.identity.clone())
    }

    /// Size and freshness of the snapshot.
    pub fn status(&self) -> CacheStatus {
        self.shared.status()
    }
}

impl Store {
    /// Loads every key and starts keeping the copy in sync: LISTEN/NOTIFY on
    /// PostgreSQL, polling on SQLite. Fails if the first load fails, since
    /// an empty cache would refuse every key. Must run inside a Tokio runtime.
    pub async fn key_cache(&self, sync: CacheSync) -> Result<KeyCache, StoreError> {
        let shared = Arc::new(Shared::default());
        sync::full_reload(self, &shared).await?;
        let tasks = sync::spawn(self.clone(), Arc::clone(&shared), sync);
        Ok(KeyCache { shared, _tasks: Arc::new(AbortOnDrop(tasks)) })
    }
}

struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.iter().for_each(JoinHandle::abort);
    }
}
