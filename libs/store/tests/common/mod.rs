//! Runs every store test against both databases.
//!
//! SQLite: a fresh file in a temporary directory per test. PostgreSQL: a
//! fresh database per test (`gatehouse_test_<random>`), created through the
//! maintenance database at `GATEHOUSE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and dropped afterwards.
//! An unreachable PostgreSQL skips the test with a `SKIPPED:` line, unless
//! `CI=true` or `GATEHOUSE_REQUIRE_POSTGRES=1`, where it fails.

#![allow(dead_code, unreachable_pub)]

pub mod proxy;

use std::future::Future;
use std::panic::{AssertUnwindSafe, resume_unwind};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use gatehouse_store::{Backend, Store, StoreOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tempfile::TempDir;

const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

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

/// The database of one test. Cloning shares it.
#[derive(Clone)]
pub struct TestDb(Arc<Inner>);

struct Inner {
    backend: Backend,
    url: String,
    _dir: Option<TempDir>,
    postgres: Option<(String, String)>,
}

impl TestDb {
    async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("gatehouse.db").display());
                Some(Self(Arc::new(Inner { backend, url, _dir: Some(dir), postgres: None })))
            }
            Backend::Postgres => {
                let admin =
                    std::env::var("GATEHOUSE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
                let mut conn = match connect_admin(&admin).await {
                    Ok(conn) => conn,
                    Err(err) if !postgres_required() => {
                        // Written to the stream directly, past the test harness's
                        // output capture, so the skip shows in every run.
                        let line = format!("SKIPPED: PostgreSQL not reachable at {}: {err}\n", redact(&admin));
                        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
                        return None;
                    }
                    Err(err) => panic!("PostgreSQL required (CI) but not reachable at {}: {err}", redact(&admin)),
                };
                let name = format!("gatehouse_test_{:016x}", fastrand::u64(..));
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("CREATE DATABASE");
                let url = with_database(&admin, &name);
                Some(Self(Arc::new(Inner { backend, url, _dir: None, postgres: Some((admin, name)) })))
            }
        }
    }

    async fn drop_database(&self) {
        if let Some((admin, name)) = &self.0.postgres {
            if let Ok(mut conn) = connect_admin(admin).await {
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                if let Err(err) = sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut conn).await {
                    eprintln!("could not drop test database {name}: {err}");
                }
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.0.backend
    }

    pub fn url(&self) -> &str {
        &self.0.url
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

/// Runs `test` on a fresh database of `backend`, then drops the database,
/// also when the test panics.
pub async fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Store, TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = db.store().await;
    let outcome = AssertUnwindSafe(test(store, db.clone())).catch_unwind().await;
    db.drop_database().await;
    if let Err(panic) = outcome {
        resume_unwind(panic);
    }
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

async fn connect_admin(url: &str) -> Result<PgConnection, sqlx::Error> {
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(url)).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}

fn postgres_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("GATEHOUSE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// `url` with its database path replaced by `name`, query string kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// `url` with host and port replaced, for connecting through a proxy.
pub fn with_authority(url: &str, addr: std::net::SocketAddr) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[scheme_end..].find('/').map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    let userinfo = authority.rsplit_once('@').map_or(String::new(), |(u, _)| format!("{u}@"));
    format!("{}{userinfo}{addr}{}", &url[..scheme_end], &url[authority_end..])
}

/// Hides a password in a URL before printing it.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let user = url[s + 3..at].split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The host and port a database URL points at.
pub fn socket_addr(url: &str) -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[scheme_end..].find('/').map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:5432") };
    host_port.to_socket_addrs().expect("resolve database address").next().expect("one address")
}
