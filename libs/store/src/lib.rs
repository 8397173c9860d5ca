//! The SQL store: embedded migrations, hashed API keys, the audit hash chain and pool gauges.
//!
//! One [`Store`] wraps a connection pool on SQLite (the default, a local file)
//! or PostgreSQL (production); every operation runs the same queries on both.
//! The gateway uses it in four places:
//!
//! - start-up: [`Store::connect`], [`Store::migrate`], [`Store::seed_metrics`],
//!   [`Store::spawn_pool_sampler`];
//! - the request path: a [`KeyCache`] from [`Store::key_cache`], which answers
//!   [`KeyCache::authenticate`] from memory and follows changes made by any
//!   replica;
//! - readiness: [`Store::ping`];
//! - the admin API: key operations and the audit trail, each change committed
//!   together with its audit event, which is returned for the audit log line.

mod audit;
mod backend;
mod cache;
mod error;
mod keys;
mod metrics;
mod sampler;
mod store;
mod token;
mod validate;

pub use audit::{
    AuditEvent, BreakReason, BrokenLink, MAX_LIST as MAX_AUDIT_LIST, NewAuditEvent, Outcome, VerifyReport,
};
pub use backend::Backend;
pub use cache::{AuthOutcome, CacheStatus, CacheSync, Identity, KeyCache};
pub use error::{BoxError, StoreError};
pub use keys::{CreatedKey, KEYS_CHANNEL, KeyInfo, NewKey, RevokedKey};
pub use metrics::{DbMetrics, Operation};
pub use store::{Store, StoreOptions};
pub use token::ApiKey;

/// The `gateway_db_*` metric names, for catalogues and tests.
pub mod metric_names {
    pub use crate::metrics::{ERRORS, POOL_ACQUIRE_DURATION, POOL_CONNECTIONS, POOL_MAX_CONNECTIONS, QUERY_DURATION};
}

/// The shape of an API key, `gh_<id>_<secret>`: a presented credential that
/// starts with [`key_format::PREFIX`] is a key, anything else is not.
pub mod key_format {
    pub use crate::token::{ID_LEN, PREFIX, SECRET_LEN};
}

/// Limits enforced on admin input, for documentation and client-side checks.
pub mod limits {
    pub use crate::validate::{
        MAX_ACTION_LEN, MAX_PRINCIPAL_LEN, MAX_REASON_LEN, MAX_SCOPE_LEN, MAX_SCOPES, MAX_TARGET_LEN,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send<T: Send>(_: T) {}
    fn shared<T: Send + Sync + Clone + 'static>() {}

    /// The gateway awaits these inside spawned tasks and handlers, which
    /// need `Send` futures; this only has to compile.
    fn futures_are_send(store: &Store, key: NewKey, event: NewAuditEvent) {
        send(store.create_key("a", key));
        send(store.revoke_key("a", "id"));
        send(store.list_keys());
        send(store.get_key("id"));
        send(store.record_audit(event));
        send(store.list_audit(0, 1));
        send(store.verify_audit());
        send(store.ping());
        send(store.migrate());
        send(store.key_cache(CacheSync::default()));
        send(Store::connect("sqlite://x", StoreOptions::default()));
    }

    #[test]
    fn handles_are_shareable() {
        let _ = futures_are_send;
        shared::<Store>();
        shared::<KeyCache>();
        shared::<Identity>();
        shared::<DbMetrics>();
    }
}
