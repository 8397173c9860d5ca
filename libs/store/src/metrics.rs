//! Database telemetry (DESIGN.md §3): the `gateway_db_*` names with their
//! help text, and handles registered once so no operation looks a name up.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};

/// `gateway_db_pool_connections{state}`: pool connections by state.
pub const POOL_CONNECTIONS: &str = "gateway_db_pool_connections";
/// `gateway_db_pool_max_connections`: the pool's configured ceiling.
pub const POOL_MAX_CONNECTIONS: &str = "gateway_db_pool_max_connections";
/// `gateway_db_pool_acquire_duration_seconds`: waiting for a connection.
pub const POOL_ACQUIRE_DURATION: &str = "gateway_db_pool_acquire_duration_seconds";
/// `gateway_db_query_duration_seconds{operation}`: time per store operation.
pub const QUERY_DURATION: &str = "gateway_db_query_duration_seconds";
/// `gateway_db_errors_total{operation}`: operations that failed in the database.
pub const ERRORS: &str = "gateway_db_errors_total";

/// The bounded set of values of the `operation` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Creating an API key (with its audit row).
    KeyCreate,
    /// Revoking an API key (with its audit row).
    KeyRevoke,
    /// Listing keys, or reading one.
    KeyList,
    /// The key cache loading or refreshing its snapshot.
    KeySync,
    /// A standalone audit event.
    AuditAppend,
    /// Reading audit events.
    AuditList,
    /// Walking the audit chain.
    AuditVerify,
    /// The readiness probe.
    Ping,
    /// Applying migrations.
    Migrate,
}

impl Operation {
    /// Every operation, in label order; seeding walks this.
    pub const ALL: [Operation; 9] = [
        Self::KeyCreate,
        Self::KeyRevoke,
        Self::KeyList,
        Self::KeySync,
        Self::AuditAppend,
        Self::AuditList,
        Self::AuditVerify,
        Self::Ping,
        Self::Migrate,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::KeyCreate => "key_create",
            Self::KeyRevoke => "key_revoke",
            Self::KeyList => "key_list",
            Self::KeySync => "key_sync",
            Self::AuditAppend => "audit_append",
            Self::AuditList => "audit_list",
            Self::AuditVerify => "audit_verify",
            Self::Ping => "ping",
            Self::Migrate => "migrate",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Cached handles for every `gateway_db_*` series. Cloning shares them.
///
/// Handles bind to the recorder that is current when [`DbMetrics::register`]
/// runs: build them after installing the exporter, or inside
/// `metrics::with_local_recorder` in tests.
#[derive(Clone)]
pub struct DbMetrics(Arc<Handles>);

struct Handles {
    idle: Gauge,
    in_use: Gauge,
    max: Gauge,
    acquire: Histogram,
    query: [Histogram; Operation::ALL.len()],
    errors: [Counter; Operation::ALL.len()],
}

impl fmt::Debug for DbMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbMetrics").finish_non_exhaustive()
    }
}

impl DbMetrics {
    /// Registers the handles with the current recorder.
    pub fn register() -> Self {
        let query = Operation::ALL.map(|op| metrics::histogram!(QUERY_DURATION, "operation" => op.as_str()));
        let errors = Operation::ALL.map(|op| metrics::counter!(ERRORS, "operation" => op.as_str()));
        Self(Arc::new(Handles {
            idle: metrics::gauge!(POOL_CONNECTIONS, "state" => "idle"),
            in_use: metrics::gauge!(POOL_CONNECTIONS, "state" => "in_use"),
            max: metrics::gauge!(POOL_MAX_CONNECTIONS),
            acquire: metrics::histogram!(POOL_ACQUIRE_DURATION),
            query,
            errors,
        }))
    }

    /// Gives the current recorder the help text and units of every name.
    pub fn describe() {
        metrics::describe_gauge!(POOL_CONNECTIONS, Unit::Count, "Database pool connections by state (idle, in_use).");
        metrics::describe_gauge!(POOL_MAX_CONNECTIONS, Unit::Count, "Largest size of the database pool.");
        metrics::describe_histogram!(
            POOL_ACQUIRE_DURATION,
            Unit::Seconds,
            "Time waiting for a database connection from the pool."
        );
        metrics::describe_histogram!(QUERY_DURATION, Unit::Seconds, "Database query time by operation.");
        metrics::describe_counter!(ERRORS, Unit::Count, "Failed database operations.");
    }

    /// Makes every counter exist at zero, without changing values already counted.
    pub(crate) fn seed_counters(&self) {
        self.0.errors.iter().for_each(|c| c.increment(0));
    }

    /// Sets the pool gauges from the pool's own counts.
    pub(crate) fn set_pool(&self, size: u32, idle: usize, max: u32) {
        let size = f64::from(size);
        // `num_idle` and `size` are read at slightly different moments, so
        // idle can briefly exceed size; clamp rather than export a negative.
        let idle = (idle as f64).min(size);
        self.0.idle.set(idle);
        self.0.in_use.set(size - idle);
        self.0.max.set(f64::from(max));
    }

    pub(crate) fn acquired(&self, elapsed: Duration) {
        self.0.acquire.record(elapsed.as_secs_f64());
    }

    /// Counts a failure that has no duration of its own (a lost listener).
    pub(crate) fn count_error(&self, op: Operation) {
        self.0.errors[op as usize].increment(1);
    }

    /// Records one operation; `failed` counts only database failures, not
    /// answers such as "not found".
    pub(crate) fn record(&self, op: Operation, elapsed: Duration, failed: bool) {
        let i = op as usize;
        self.0.query[i].record(elapsed.as_secs_f64());
        if failed {
            self.0.errors[i].increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_index_matches_all() {
        for (i, op) in Operation::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "{op}");
        }
    }
}
