//! Databases for gateways under test: a SQLite file in a temporary
//! directory, or a fresh PostgreSQL database created for one test and
//! dropped afterwards.
//!
//! PostgreSQL is reached through the maintenance database at
//! `GATEHOUSE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it cannot be reached
//! the test is skipped with a `SKIPPED:` line on standard error, unless
//! `CI=true` or `GATEHOUSE_REQUIRE_POSTGRES=1`, where it fails instead.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::{AnyPool, AssertSqlSafe, Connection, PgConnection};

/// The maintenance database used to create and drop test databases.
pub const POSTGRES_URL_ENV: &str = "GATEHOUSE_TEST_POSTGRES_URL";
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which database a [`TestDatabase`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// One test's database, removed when dropped (also after a panic).
#[derive(Debug)]
pub struct TestDatabase {
    backend: Backend,
    url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Dir(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    /// A database of `backend`, or `None` (after printing why) when it is
    /// PostgreSQL and none is reachable and none is required.
    pub async fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite()),
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// A SQLite file (not created yet) in a fresh temporary directory.
    pub fn sqlite() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gatehouse-e2e-db-{}-{}-{:x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            random_u64()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let url = format!("sqlite://{}", dir.join("gatehouse.db").display());
        Self { backend: Backend::Sqlite, url, cleanup: Cleanup::Dir(dir) }
    }

    /// A fresh, empty PostgreSQL database `gatehouse_test_<random>`, or `None`
    /// when PostgreSQL is unreachable and not required (see the module docs).
    pub async fn postgres() -> Option<Self> {
        let admin_url = std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
        let mut conn = match connect_maintenance(&admin_url).await {
            Ok(conn) => conn,
            Err(err) if !postgres_required() => {
                // Straight to the stream, past the test harness's capture, so
                // the skip shows in every run.
                let line = format!("SKIPPED: PostgreSQL not reachable at {}: {err}\n", redact(&admin_url));
                let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
                return None;
            }
            Err(err) => panic!(
                "PostgreSQL is required (CI=true or GATEHOUSE_REQUIRE_POSTGRES=1) but not reachable at {}: {err}",
                redact(&admin_url)
            ),
        };
        let name = format!("gatehouse_test_{:016x}", random_u64());
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = conn.close().await;
        let url = with_database(&admin_url, &name);
        Some(Self { backend: Backend::Postgres, url, cleanup: Cleanup::Postgres { admin_url, name } })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL a gateway is given (`database.url`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL with its host and port replaced by `addr`, for reaching a
    /// PostgreSQL database through a [`TcpProxy`](crate::TcpProxy).
    pub fn url_via(&self, addr: SocketAddr) -> String {
        with_authority(&self.url, addr)
    }

    /// Where the PostgreSQL server listens (for a proxy in front of it).
    /// Panics for SQLite.
    pub fn server_addr(&self) -> SocketAddr {
        assert_eq!(self.backend, Backend::Postgres, "only PostgreSQL has a server address");
        let authority = authority(&self.url);
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host_port = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:5432") };
        host_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("resolving the PostgreSQL address {host_port}"))
    }

    /// A small pool on the database, for looking at or tampering with it
    /// behind the gateway's back. The database must exist (a gateway or
    /// `gatehouse migrate` creates the SQLite file).
    pub async fn pool(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test database {}: {e}", redact(&self.url)))
    }

    /// The config block that points a gateway at this database, indented for
    /// the top level of the YAML file; `extra` lines (such as
    /// `poll_interval: 100ms`) go inside it.
    pub fn config_block(&self, extra: &[&str]) -> String {
        self.config_block_for(&self.url, extra)
    }

    /// Like [`TestDatabase::config_block`] but with another URL to the same
    /// database (through a proxy, say).
    pub fn config_block_for(&self, url: &str, extra: &[&str]) -> String {
        let mut block = format!("database:\n  url: \"{url}\"\n");
        for line in extra {
            block.push_str("  ");
            block.push_str(line);
            block.push('\n');
        }
        block
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop may run inside the test's runtime, where blocking on
                // another runtime is not allowed; a thread of its own is.
                let dropped = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                    rt.block_on(async {
                        let mut conn = connect_maintenance(&admin_url).await.ok()?;
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await {
                            eprintln!("could not drop test database {name}: {e}");
                        }
                        Some(())
                    })
                });
                let _ = dropped.join();
            }
        }
    }
}

async fn connect_maintenance(url: &str) -> Result<PgConnection, sqlx::Error> {
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(url)).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}

/// Whether a missing PostgreSQL fails the test instead of skipping it.
pub fn postgres_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("GATEHOUSE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded randomly per instance; mixing in the time and a
    // counter keeps names distinct across processes and calls.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish()
}

fn authority(url: &str) -> &str {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    &rest[..end]
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

/// `url` with host and port replaced by `addr`, user kept.
fn with_authority(url: &str, addr: SocketAddr) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let authority = authority(url);
    let authority_end = scheme_end + authority.len();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_rewritten() {
        let addr: SocketAddr = "127.0.0.1:6000".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("postgres://u@h/postgres?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
        assert_eq!(with_authority("postgres://u:p@h:5432/x", addr), "postgres://u:p@127.0.0.1:6000/x");
        assert_eq!(with_authority("postgres://h/x", addr), "postgres://127.0.0.1:6000/x");
        assert_eq!(redact("postgres://u:secret@h/x"), "postgres://u:***@h/x");
    }
}
