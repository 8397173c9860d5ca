//! The store's one error type, and how database failures are sorted into it.
//!
//! The gateway maps these to responses without looking inside:
//! `Validation` → 400 / INVALID_ARGUMENT, `NotFound` → 404 / NOT_FOUND,
//! `Conflict` → 409 / FAILED_PRECONDITION, `Unavailable` → 503 / UNAVAILABLE,
//! `Internal` → 500 / INTERNAL.

use std::error::Error as StdError;

use crate::metrics::Operation;

/// A boxed error source, so the variants keep the driver's error for logs.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The caller's input was refused before anything touched the database.
    #[error("invalid {field}: {reason}")]
    Validation {
        /// Which input, named as the admin API names it (`principal`, `scopes[2]`).
        field: &'static str,
        /// What was expected.
        reason: String,
    },
    /// The addressed row does not exist.
    #[error("{what} `{id}` not found")]
    NotFound {
        /// The kind of row (`api key`).
        what: &'static str,
        /// The identifier the caller gave.
        id: String,
    },
    /// The change contradicts the row's state (revoking a revoked key).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database did not answer: down, unreachable, pool exhausted or closed.
    /// Retrying later can succeed.
    #[error("database unavailable during {operation}")]
    Unavailable {
        /// What the store was doing.
        operation: Operation,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// The database answered with something the store did not expect.
    #[error("database error during {operation}")]
    Internal {
        /// What the store was doing.
        operation: Operation,
        /// The driver's error, or a description of the unexpected data.
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    pub(crate) fn validation(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Validation { field, reason: reason.into() }
    }

    pub(crate) fn internal(operation: Operation, source: impl Into<BoxError>) -> Self {
        Self::Internal { operation, source: source.into() }
    }

    /// Sorts a driver error: connection-level trouble becomes `Unavailable`
    /// (so the gateway answers 503 and callers may retry), unique-key
    /// violations become `Conflict`, anything else `Internal`.
    pub(crate) fn from_sqlx(operation: Operation, err: sqlx::Error) -> Self {
        if is_unavailable(&err) {
            return Self::Unavailable { operation, source: Box::new(err) };
        }
        if let sqlx::Error::Database(db) = &err {
            if db.is_unique_violation() {
                return Self::Conflict(format!("{operation}: {}", db.message()));
            }
        }
        Self::Internal { operation, source: Box::new(err) }
    }

    /// Whether this failure is the database being out of reach.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let postgres = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some();
            db.code().is_some_and(|code| unavailable_code(postgres, &code))
        }
        _ => false,
    }
}

/// SQLSTATE classes 08 (connection exception), 53 (insufficient resources)
/// and 57P0x (server shutting down or starting) on PostgreSQL; BUSY, LOCKED,
/// IOERR and CANTOPEN on SQLite, whose codes are numeric (the low byte is the
/// primary code).
fn unavailable_code(postgres: bool, code: &str) -> bool {
    if postgres {
        return code.starts_with("08") || code.starts_with("53") || code.starts_with("57P0");
    }
    code.parse::<u32>().is_ok_and(|code| matches!(code & 0xff, 5 | 6 | 10 | 14))
}

/// The error type inside an operation: driver errors convert with `?` and are
/// sorted once, when the operation ends and its metrics are recorded.
#[derive(Debug)]
pub(crate) enum OpError {
    Db(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for OpError {
    fn from(err: sqlx::Error) -> Self {
        Self::Db(err)
    }
}

impl From<StoreError> for OpError {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

impl OpError {
    pub(crate) fn into_store(self, operation: Operation) -> StoreError {
        match self {
            Self::Db(err) => StoreError::from_sqlx(operation, err),
            Self::Store(err) => err,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_unavailable() {
        assert!(StoreError::from_sqlx(Operation::Ping, sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(StoreError::from_sqlx(Operation::Ping, sqlx::Error::PoolClosed).is_unavailable());
        assert!(!StoreError::from_sqlx(Operation::Ping, sqlx::Error::RowNotFound).is_unavailable());
    }

    #[test]
    fn codes_sort_by_class() {
        assert!(unavailable_code(true, "08006"));
        assert!(unavailable_code(true, "57P01"));
        assert!(!unavailable_code(true, "23505"));
        assert!(unavailable_code(false, "5"));
        assert!(unavailable_code(false, "517"));
        assert!(!unavailable_code(false, "19"));
        assert!(!unavailable_code(false, "2067"));
    }
}
