//! Runs every store test against both databases.
//!
//! The databases come from `gatehouse-test-support` (the same helper the
//! gateway's black-box tests use): SQLite, a fresh file in a temporary
//! directory per test; PostgreSQL, a fresh database per test, created
//! through the maintenance database at `GATEHOUSE_TEST_POSTGRES_URL` and
//! dropped afterwards, also when the test panics. An unreachable PostgreSQL
//! skips the test with a `SKIPPED:` line, unless `CI=true` or
//! `GATEHOUSE_REQUIRE_POSTGRES=1`, where it fails.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_store::{Backend, Store, StoreOptions};
use gatehouse_test_support::TestDatabase;

/// Generates `sqlite::NAME` and `postgres::NAME` tests, each calling the
/// async fn `NAME(store: Store, db: TestDb)` of the enclosing module.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::common::run(gatehouse_store::Backend::Sqlite, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::common::run(gatehouse_store::Backend::Postgres, super::$name).await;
                }
            )*
        }
    };
}

/// The database of one test. Cloning shares it; it is removed when the
/// last clone is dropped.
#[derive(Clone)]
pub struct TestDb(Arc<Inner>);

struct Inner {
    backend: Backend,
    db: TestDatabase,
}

impl TestDb {
    async fn create(backend: Backend) -> Option<Self> {
        let db = match backend {
            Backend::Sqlite => TestDatabase::sqlite(),
            Backend::Postgres => TestDatabase::postgres().await?,
        };
        Some(Self(Arc::new(Inner { backend, db })))
    }

    pub fn backend(&self) -> Backend {
        self.0.backend
    }

    pub fn url(&self) -> &str {
        self.0.db.url()
    }

    /// The database's URL through a TCP proxy at `addr`.
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        self.0.db.url_via(addr)
    }

    /// Where the PostgreSQL server listens.
    pub fn server_addr(&self) -> std::net::SocketAddr {
        self.0.db.server_addr()
    }

    /// Another store on the same database, as a second replica would open it.
    pub async fn store(&self) -> Store {
        self.store_with(StoreOptions::default()).await
    }

    pub async fn store_with(&self, opts: StoreOptions) -> Store {
        let store = Store::connect(self.url(), opts).await.expect("connect test store");
        store.migrate().await.expect("migrate test store");
        store
    }

    /// Runs SQL behind the store's back (tampering, triggers).
    pub async fn exec(&self, store: &Store, sql: &'static str) {
        sqlx::raw_sql(sql).execute(store.pool()).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Rows in `table`, counted behind the store's back.
    pub async fn count(&self, store: &Store, table: &str) -> i64 {
        let sql = match table {
            "api_keys" => "SELECT COUNT(*) FROM api_keys",
            "audit_events" => "SELECT COUNT(*) FROM audit_events",
            other => panic!("no count query for {other}"),
        };
        sqlx::query_scalar(sql).fetch_one(store.pool()).await.expect("count rows")
    }
}

/// Runs `test` on a fresh database of `backend`; the database is dropped
/// with the last [`TestDb`], also when the test panics.
pub async fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Store, TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = db.store().await;
    test(store, db).await;
}

/// Polls `check` every 10 ms until it holds or `limit` passes; returns how
/// long it took, or `None`.
pub async fn within(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    loop {
        if check() {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
