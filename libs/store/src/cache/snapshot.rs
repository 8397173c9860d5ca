//! The cache's shared state: the snapshot readers see, and the rules by which
//! sync tasks change it.
//!
//! Several tasks may load rows concurrently (a notification and a poll), so
//! a row replaces a cached one only if its `updated_at` is not older: every
//! change gets a strictly larger `updated_at`, which makes it a row version,
//! and a slow, stale load can never undo a revocation that arrived first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, Guard};
use serde::Serialize;

use crate::keys::KeyInfo;
use crate::store::now_ms;

/// Who a key authenticates as. Cloning is cheap (shared strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The key's public id.
    pub key_id: Arc<str>,
    /// The principal, logged as `identity_id` and sent upstream.
    pub principal: Arc<str>,
    /// Scopes granted to the key.
    pub scopes: Arc<[String]>,
}

impl Identity {
    /// Whether the key holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// How current a cache is, for readiness details and debugging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CacheStatus {
    /// Keys in the snapshot, revoked ones included.
    pub keys: usize,
    /// When a sync last succeeded, unix milliseconds.
    pub last_sync_ms: i64,
    /// Sync attempts that failed since the last success.
    pub consecutive_failures: u32,
}

/// A key row as the cache needs it.
pub(crate) struct KeyRow {
    pub(crate) info: KeyInfo,
    pub(crate) hash: [u8; 32],
    pub(crate) updated_at: i64,
}

#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) hash: [u8; 32],
    pub(crate) identity: Identity,
    pub(crate) expires_at: Option<i64>,
    pub(crate) revoked: bool,
    updated_at: i64,
}

impl From<KeyRow> for Entry {
    fn from(row: KeyRow) -> Self {
        let KeyInfo { id, principal, scopes, expires_at, revoked_at, .. } = row.info;
        Self {
            hash: row.hash,
            identity: Identity { key_id: id.into(), principal: principal.into(), scopes: scopes.into() },
            expires_at,
            revoked: revoked_at.is_some(),
            updated_at: row.updated_at,
        }
    }
}

type Keys = HashMap<String, Entry>;

#[derive(Default)]
pub(crate) struct Shared {
    keys: ArcSwap<Keys>,
    // Serializes writers so that no copy-and-swap loses another's update.
    write: Mutex<()>,
    // Every change with `updated_at` at or below this is in the snapshot.
    watermark: AtomicI64,
    last_sync_ms: AtomicI64,
    failures: AtomicU32,
}

impl Shared {
    pub(crate) fn keys(&self) -> Guard<Arc<Keys>> {
        self.keys.load()
    }

    pub(crate) fn watermark(&self) -> i64 {
        self.watermark.load(Ordering::Acquire)
    }

    /// Merges rows loaded by id or by `updated_at`; `seen_up_to` is the
    /// watermark those rows prove, if they were a complete delta.
    pub(crate) fn apply(&self, rows: Vec<KeyRow>, seen_up_to: Option<i64>) {
        if !rows.is_empty() {
            let _writer = self.write.lock().unwrap_or_else(PoisonError::into_inner);
            let mut keys = Keys::clone(&self.keys.load());
            for row in rows {
                let newer = keys.get(&row.info.id).is_none_or(|old| old.updated_at <= row.updated_at);
                if newer {
                    keys.insert(row.info.id.clone(), row.into());
                }
            }
            self.keys.store(Arc::new(keys));
        }
        if let Some(mark) = seen_up_to {
            self.watermark.fetch_max(mark, Ordering::AcqRel);
        }
        self.succeeded();
    }

    /// Replaces the snapshot with a full load, keeping any cached entry that
    /// is newer than what the load saw (it changed while the load ran).
    pub(crate) fn replace(&self, rows: Vec<KeyRow>) {
        let load_mark = rows.iter().map(|r| r.updated_at).max().unwrap_or(0);
        let _writer = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let mut fresh: Keys = rows.into_iter().map(|r| (r.info.id.clone(), r.into())).collect();
        let current = self.keys.load_full();
        for (id, old) in current.iter() {
            let loaded = fresh.get(id).map_or(load_mark, |e| e.updated_at);
            if old.updated_at > loaded {
                fresh.insert(id.clone(), old.clone());
            }
        }
        self.keys.store(Arc::new(fresh));
        self.watermark.fetch_max(load_mark, Ordering::AcqRel);
        self.succeeded();
    }

    fn succeeded(&self) {
        self.last_sync_ms.store(now_ms(), Ordering::Release);
        self.failures.store(0, Ordering::Release);
    }

    pub(crate) fn failed(&self) -> u32 {
        self.failures.fetch_add(1, Ordering::AcqRel) + 1
    }

    pub(crate) fn status(&self) -> CacheStatus {
        CacheStatus {
            keys: self.keys.load().len(),
            last_sync_ms: self.last_sync_ms.load(Ordering::Acquire),
            consecutive_failures: self.failures.load(Ordering::Acquire),
        }
    }
}
