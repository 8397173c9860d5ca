//! The connection pool and what every operation shares: connecting, migrations,
//! the readiness ping, serialized write transactions and per-operation metrics.
//!
//! One code path serves both databases through `sqlx::Any`: queries are
//! written once with `$N` placeholders, which PostgreSQL reads natively and
//! sqlx's SQLite driver maps to argument N, and they use only types both
//! drivers share (BIGINT, TEXT). What does differ — how a write transaction
//! takes the global write lock, and change notification — is the handful of
//! `match self.backend` arms below and in the key cache. A typed enum of two
//! pools would buy compile-time types at the price of writing every query
//! twice; with runtime-checked queries that trade is not worth it.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Connection, Transaction};

use crate::backend::{Backend, sqlite_create_if_missing};
use crate::error::{OpError, StoreError};
use crate::metrics::{DbMetrics, Operation};

/// Both dialects run the same schema; should one ever need different SQL, the
/// directory splits into `migrations/sqlite` and `migrations/postgres`.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// PostgreSQL advisory lock taken by every write transaction, so that writers
/// in all gateway replicas append to the audit chain one at a time.
const WRITE_LOCK: &str = "SELECT 1 AS locked FROM pg_advisory_xact_lock(7146318201)";

/// Pool sizing and timeouts.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long an operation waits for a free connection before failing
    /// with `Unavailable`.
    pub acquire_timeout: Duration,
    /// Deadline of [`Store::ping`].
    pub ping_timeout: Duration,
    /// Metric handles; `None` registers them with the global recorder.
    pub metrics: Option<DbMetrics>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(2),
            metrics: None,
        }
    }
}

/// A handle on the database. Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct Store(Arc<Inner>);

struct Inner {
    pool: AnyPool,
    backend: Backend,
    // Kept for the PostgreSQL listener, which needs its own connection.
    url: String,
    metrics: DbMetrics,
    ping_timeout: Duration,
}

impl fmt::Debug for Store {
    // The URL may carry a password, so it is left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("backend", &self.0.backend).field("pool_size", &self.0.pool.size()).finish()
    }
}

impl Store {
    /// Opens a pool on `sqlite://PATH` (the file is created if missing) or
    /// `postgres://…`, and checks that one connection can be made.
    pub async fn connect(url: &str, opts: StoreOptions) -> Result<Self, StoreError> {
        install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = match backend {
            Backend::Sqlite => sqlite_create_if_missing(url),
            Backend::Postgres => url.to_owned(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            .connect(&url)
            .await
            .map_err(|e| StoreError::from_sqlx(Operation::Ping, e))?;
        if backend == Backend::Sqlite {
            // WAL lets the key cache read while a writer holds the write lock.
            // The mode is stored in the file, so setting it once is enough.
            sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_optional(&pool)
                .await
                .map_err(|e| StoreError::from_sqlx(Operation::Ping, e))?;
        }
        let metrics = opts.metrics.unwrap_or_else(DbMetrics::register);
        Ok(Self(Arc::new(Inner { pool, backend, url, metrics, ping_timeout: opts.ping_timeout })))
    }

    /// Applies the embedded migrations that have not run yet. Safe to call
    /// on every start and from several replicas at once (sqlx takes a lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.run(Operation::Migrate, async {
            MIGRATOR.run(&self.0.pool).await.map_err(|e| match e {
                MigrateError::Execute(e) => OpError::Db(e),
                other => OpError::Store(StoreError::internal(Operation::Migrate, other)),
            })
        })
        .await
    }

    /// `SELECT 1` within the ping timeout, for the readiness check. Returns
    /// the round-trip time, or `Unavailable`.
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let started = Instant::now();
        self.run(Operation::Ping, async {
            let query = async {
                let mut conn = self.acquire().await?;
                sqlx::query("SELECT 1").fetch_one(&mut *conn).await?;
                Ok::<_, sqlx::Error>(())
            };
            match tokio::time::timeout(self.0.ping_timeout, query).await {
                Ok(result) => result.map_err(OpError::from),
                Err(elapsed) => {
                    Err(StoreError::Unavailable { operation: Operation::Ping, source: Box::new(elapsed) }.into())
                }
            }
        })
        .await?;
        Ok(started.elapsed())
    }

    /// Closes the pool: waits for checked-out connections to come back, then
    /// every later operation fails with `Unavailable`.
    pub async fn close(&self) {
        self.0.pool.close().await;
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.0.backend
    }

    /// The pool itself, for maintenance tooling and tests. Work done through
    /// it bypasses validation, metrics and the audit trail.
    pub fn pool(&self) -> &AnyPool {
        &self.0.pool
    }

    pub(crate) fn url(&self) -> &str {
        &self.0.url
    }

    pub(crate) fn metrics(&self) -> &DbMetrics {
        &self.0.metrics
    }

    /// Takes a connection, timing the wait.
    pub(crate) async fn acquire(&self) -> Result<PoolConnection<Any>, sqlx::Error> {
        let started = Instant::now();
        let conn = self.0.pool.acquire().await;
        self.0.metrics.acquired(started.elapsed());
        conn
    }

    /// Opens a transaction that holds the database-wide write lock until it
    /// ends: `BEGIN IMMEDIATE` on SQLite, an advisory lock on PostgreSQL.
    /// Every write goes through here, which is what keeps the audit chain
    /// linear and `updated_at` strictly increasing across processes.
    pub(crate) async fn begin_write<'c>(
        &self,
        conn: &'c mut PoolConnection<Any>,
    ) -> Result<Transaction<'c, Any>, sqlx::Error> {
        match self.0.backend {
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => {
                let mut tx = conn.begin().await?;
                sqlx::query(WRITE_LOCK).fetch_one(&mut *tx).await?;
                Ok(tx)
            }
        }
    }

    /// Runs one operation, recording its duration and, if the database
    /// failed, its error.
    pub(crate) async fn run<T>(
        &self,
        op: Operation,
        work: impl Future<Output = Result<T, OpError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = work.await.map_err(|e| e.into_store(op));
        let failed = matches!(result, Err(StoreError::Unavailable { .. } | StoreError::Internal { .. }));
        self.0.metrics.record(op, started.elapsed(), failed);
        result
    }
}

/// Wall-clock time in unix milliseconds, the unit of every stored time.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
