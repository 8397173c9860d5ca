//! The tasks that keep a key cache in step with the database.
//!
//! SQLite: one task polls for rows with `updated_at` past the watermark.
//! PostgreSQL: one task LISTENs on [`KEYS_CHANNEL`] and reloads each
//! announced row (every write sends NOTIFY in its transaction, delivered on
//! commit), reloading everything whenever it (re)connects, because changes
//! made while it was not listening were announced to nobody; a second task
//! polls slowly in case a notification is lost anyway.
//!
//! While the database is out of reach every task retries with exponential
//! backoff and the snapshot keeps serving. A closed pool stops them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Row;
use sqlx::any::AnyRow;
use sqlx::postgres::PgListener;
use tokio::task::JoinHandle;

use super::CacheSync;
use super::snapshot::{KeyRow, Shared};
use crate::backend::Backend;
use crate::error::StoreError;
use crate::keys::{KEYS_CHANNEL, key_columns, key_info};
use crate::metrics::Operation;
use crate::store::Store;

/// First wait after a failed listener; doubles up to `max_backoff`.
const FIRST_RETRY: Duration = Duration::from_millis(200);

macro_rules! select_rows {
    ($where:literal) => {
        concat!("SELECT ", key_columns!(), ", secret_hash, updated_at FROM api_keys", $where)
    };
}

pub(super) fn spawn(store: Store, shared: Arc<Shared>, sync: CacheSync) -> Vec<JoinHandle<()>> {
    match store.backend() {
        Backend::Sqlite => vec![tokio::spawn(poll(store, shared, sync.poll_interval, sync.max_backoff))],
        Backend::Postgres => vec![
            tokio::spawn(listen(store.clone(), Arc::clone(&shared), sync.max_backoff)),
            tokio::spawn(poll(store, shared, sync.notify_fallback_interval, sync.max_backoff)),
        ],
    }
}

async fn poll(store: Store, shared: Arc<Shared>, every: Duration, max_backoff: Duration) {
    let mut delay = every;
    loop {
        tokio::time::sleep(delay).await;
        if store.pool().is_closed() {
            return;
        }
        delay = match poll_changes(&store, &shared).await {
            Ok(()) => every,
            Err(err) => {
                let failures = shared.failed();
                tracing::warn!(error = %err, failures, "key cache poll failed; serving the last snapshot");
                backoff(delay, max_backoff.max(every))
            }
        };
    }
}

async fn listen(store: Store, shared: Arc<Shared>, max_backoff: Duration) {
    let mut delay = FIRST_RETRY;
    loop {
        if store.pool().is_closed() {
            return;
        }
        match listen_until_lost(&store, &shared).await {
            Ok(()) => {
                tracing::info!("key change listener lost its connection; reconnecting");
                delay = FIRST_RETRY;
            }
            Err(err) => {
                let failures = shared.failed();
                tracing::warn!(error = %err, failures, "key change listener failed; serving the last snapshot");
            }
        }
        tokio::time::sleep(delay).await;
        delay = backoff(delay, max_backoff);
    }
}

/// Subscribes, catches up, then applies notifications until the connection
/// drops (`Ok`) or something fails (`Err`).
async fn listen_until_lost(store: &Store, shared: &Shared) -> Result<(), StoreError> {
    // Listener failures happen outside `Store::run`, so they are counted here.
    let sql = |e| {
        store.metrics().count_error(Operation::KeySync);
        StoreError::from_sqlx(Operation::KeySync, e)
    };
    let mut listener = PgListener::connect(store.url()).await.map_err(sql)?;
    listener.listen(KEYS_CHANNEL).await.map_err(sql)?;
    full_reload(store, shared).await?;
    while let Some(note) = listener.try_recv().await.map_err(sql)? {
        reload_one(store, shared, note.payload()).await?;
    }
    Ok(())
}

fn backoff(delay: Duration, max: Duration) -> Duration {
    delay.saturating_mul(2).min(max)
}

/// Loads every key and replaces the snapshot.
pub(super) async fn full_reload(store: &Store, shared: &Shared) -> Result<(), StoreError> {
    let rows = store
        .run(Operation::KeySync, async {
            let mut conn = store.acquire().await?;
            Ok(sqlx::query(select_rows!("")).fetch_all(&mut *conn).await?)
        })
        .await?;
    shared.replace(decode(&rows)?);
    Ok(())
}

/// Loads the rows changed since the watermark.
async fn poll_changes(store: &Store, shared: &Shared) -> Result<(), StoreError> {
    let since = shared.watermark();
    let started = Instant::now();
    let rows = store
        .run(Operation::KeySync, async {
            let mut conn = store.acquire().await?;
            Ok(sqlx::query(select_rows!(" WHERE updated_at > $1")).bind(since).fetch_all(&mut *conn).await?)
        })
        .await?;
    let rows = decode(&rows)?;
    let mark = rows.iter().map(|r| r.updated_at).max().unwrap_or(since);
    if !rows.is_empty() {
        tracing::debug!(changed = rows.len(), elapsed = ?started.elapsed(), "key cache applied changes");
    }
    shared.apply(rows, Some(mark));
    Ok(())
}

/// Loads one announced key.
async fn reload_one(store: &Store, shared: &Shared, id: &str) -> Result<(), StoreError> {
    let rows = store
        .run(Operation::KeySync, async {
            let mut conn = store.acquire().await?;
            Ok(sqlx::query(select_rows!(" WHERE id = $1")).bind(id).fetch_all(&mut *conn).await?)
        })
        .await?;
    shared.apply(decode(&rows)?, None);
    Ok(())
}

fn decode(rows: &[AnyRow]) -> Result<Vec<KeyRow>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let info = key_info(row).map_err(|e| StoreError::from_sqlx(Operation::KeySync, e))?;
        let stored: String = row.try_get("secret_hash").map_err(|e| StoreError::from_sqlx(Operation::KeySync, e))?;
        let updated_at: i64 = row.try_get("updated_at").map_err(|e| StoreError::from_sqlx(Operation::KeySync, e))?;
        let mut hash = [0u8; 32];
        // One damaged row must not stop every other key from loading.
        if hex::decode_to_slice(&stored, &mut hash).is_err() {
            tracing::warn!(key_id = %info.id, "skipping api key whose secret_hash is not 64 hex digits");
            continue;
        }
        out.push(KeyRow { info, hash, updated_at });
    }
    Ok(out)
}
