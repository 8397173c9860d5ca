//! Which database a URL names, and the URL adjustments each one needs.

use crate::error::StoreError;

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A local SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// Reads the scheme of a database URL.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::validation("database.url", "expected sqlite://PATH or postgres://…"))
        }
    }
}

/// `?mode=rwc` unless the URL already picks a mode: a default SQLite
/// database is created on first run.
pub(crate) fn sqlite_create_if_missing(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_from_urls() {
        assert_eq!(Backend::from_url("sqlite://gatehouse.db").ok(), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("postgresql://db/x").ok(), Some(Backend::Postgres));
        assert!(Backend::from_url("mysql://db").is_err());
    }

    #[test]
    fn sqlite_files_are_created() {
        assert_eq!(sqlite_create_if_missing("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert_eq!(sqlite_create_if_missing("sqlite://a.db?cache=shared"), "sqlite://a.db?cache=shared&mode=rwc");
        assert_eq!(sqlite_create_if_missing("sqlite://a.db?mode=ro"), "sqlite://a.db?mode=ro");
    }
}
