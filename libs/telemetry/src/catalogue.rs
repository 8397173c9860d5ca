//! Every metric the gateway exports, in one place: name, kind, unit, labels
//! and help text (DESIGN.md §3). Code records through cached handles built
//! from these definitions, never through name literals of its own.

use metrics::Unit;

/// What a metric is, and for histograms which bucket layout it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic counter.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A histogram with the given bucket layout.
    Histogram(BucketClass),
}

/// Which of the configured bucket layouts a histogram uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketClass {
    /// Request and query latencies: milliseconds to tens of seconds.
    Latency,
    /// Work inside the gateway: microseconds to a second.
    Internal,
}

/// One metric of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The exported name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// The base unit.
    pub unit: Unit,
    /// Label keys, in the order the gateway writes them.
    pub labels: &'static [&'static str],
    /// The `# HELP` text.
    pub help: &'static str,
}

const fn def(
    name: &'static str,
    kind: Kind,
    unit: Unit,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric { name, kind, unit, labels, help }
}

use BucketClass::{Internal, Latency};
use Kind::{Counter, Gauge, Histogram};

const GRPC_LABELS: &[&str] = &["grpc_service", "grpc_method", "grpc_type"];

/// `gateway_http_requests_total{route,method,code}`
pub const HTTP_REQUESTS: Metric = def(
    "gateway_http_requests_total",
    Counter,
    Unit::Count,
    &["route", "method", "code"],
    "HTTP (non-gRPC) requests served, counted when the response ends or the client goes away.",
);
/// `gateway_http_request_duration_seconds{route,method,code}`
pub const HTTP_REQUEST_DURATION: Metric = def(
    "gateway_http_request_duration_seconds",
    Histogram(Latency),
    Unit::Seconds,
    &["route", "method", "code"],
    "Time from request head to the end of the response body.",
);
/// `gateway_http_requests_in_flight{route}`
pub const HTTP_REQUESTS_IN_FLIGHT: Metric = def(
    "gateway_http_requests_in_flight",
    Gauge,
    Unit::Count,
    &["route"],
    "HTTP (non-gRPC) requests whose response has not ended yet.",
);
/// `gateway_grpc_server_started_total`
pub const GRPC_STARTED: Metric =
    def("gateway_grpc_server_started_total", Counter, Unit::Count, GRPC_LABELS, "gRPC calls started.");
/// `gateway_grpc_server_handled_total`
pub const GRPC_HANDLED: Metric = def(
    "gateway_grpc_server_handled_total",
    Counter,
    Unit::Count,
    &["grpc_service", "grpc_method", "grpc_type", "grpc_code"],
    "gRPC calls completed, by the status the client saw.",
);
/// `gateway_grpc_server_handling_seconds`
pub const GRPC_HANDLING: Metric = def(
    "gateway_grpc_server_handling_seconds",
    Histogram(Latency),
    Unit::Seconds,
    GRPC_LABELS,
    "Time from call start to its status.",
);
/// `gateway_grpc_server_msg_received_total`
pub const GRPC_MSG_RECEIVED: Metric = def(
    "gateway_grpc_server_msg_received_total",
    Counter,
    Unit::Count,
    GRPC_LABELS,
    "gRPC messages received from clients.",
);
/// `gateway_grpc_server_msg_sent_total`
pub const GRPC_MSG_SENT: Metric =
    def("gateway_grpc_server_msg_sent_total", Counter, Unit::Count, GRPC_LABELS, "gRPC messages sent to clients.");
/// `gateway_upstream_requests_total{upstream,code[,grpc_code]}`
pub const UPSTREAM_REQUESTS: Metric = def(
    "gateway_upstream_requests_total",
    Counter,
    Unit::Count,
    &["upstream", "code", "grpc_code"],
    "Requests sent to upstream clusters, by HTTP status (`error`: transport failure, `cancelled`: \
     abandoned before headers); gRPC clusters add grpc_code.",
);
/// `gateway_upstream_request_duration_seconds{upstream}`
pub const UPSTREAM_REQUEST_DURATION: Metric = def(
    "gateway_upstream_request_duration_seconds",
    Histogram(Latency),
    Unit::Seconds,
    &["upstream"],
    "Time from sending a request upstream to the end of its response body.",
);
/// `gateway_upstream_endpoints{upstream,state}`
pub const UPSTREAM_ENDPOINTS: Metric = def(
    "gateway_upstream_endpoints",
    Gauge,
    Unit::Count,
    &["upstream", "state"],
    "Endpoints of each upstream cluster by state (healthy, unhealthy, ejected).",
);
/// `gateway_upstream_circuit_breaker_state{upstream}`
pub const UPSTREAM_CIRCUIT_BREAKER_STATE: Metric = def(
    "gateway_upstream_circuit_breaker_state",
    Gauge,
    Unit::Count,
    &["upstream"],
    "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
);
/// `gateway_upstream_retries_total{upstream,reason}`
pub const UPSTREAM_RETRIES: Metric = def(
    "gateway_upstream_retries_total",
    Counter,
    Unit::Count,
    &["upstream", "reason"],
    "Requests retried against an upstream cluster, by reason.",
);
/// `gateway_requests_rejected_total{reason}`
pub const REQUESTS_REJECTED: Metric = def(
    "gateway_requests_rejected_total",
    Counter,
    Unit::Count,
    &["reason"],
    "Requests the gateway answered itself instead of forwarding, by reason.",
);
/// `gateway_overhead_seconds`
pub const OVERHEAD: Metric = def(
    "gateway_overhead_seconds",
    Histogram(Internal),
    Unit::Seconds,
    &[],
    "Time to response headers spent in the gateway itself, excluding the upstream's time to headers.",
);
/// `authorization_check_latency_seconds` (the name the platform's alerts use)
pub const AUTHORIZATION_CHECK_LATENCY: Metric = def(
    "authorization_check_latency_seconds",
    Histogram(Internal),
    Unit::Seconds,
    &[],
    "Time to authenticate and authorize one request that needs or presents a key.",
);
/// `gateway_db_pool_connections{state}`
pub const DB_POOL_CONNECTIONS: Metric = def(
    "gateway_db_pool_connections",
    Gauge,
    Unit::Count,
    &["state"],
    "Database pool connections by state (idle, in_use).",
);
/// `gateway_db_pool_max_connections`
pub const DB_POOL_MAX_CONNECTIONS: Metric =
    def("gateway_db_pool_max_connections", Gauge, Unit::Count, &[], "Largest size of the database pool.");
/// `gateway_db_pool_acquire_duration_seconds`
pub const DB_POOL_ACQUIRE_DURATION: Metric = def(
    "gateway_db_pool_acquire_duration_seconds",
    Histogram(Latency),
    Unit::Seconds,
    &[],
    "Time waiting for a database connection from the pool.",
);
/// `gateway_db_query_duration_seconds{operation}`
pub const DB_QUERY_DURATION: Metric = def(
    "gateway_db_query_duration_seconds",
    Histogram(Latency),
    Unit::Seconds,
    &["operation"],
    "Database query time by operation.",
);
/// `gateway_db_errors_total{operation}`
pub const DB_ERRORS: Metric =
    def("gateway_db_errors_total", Counter, Unit::Count, &["operation"], "Failed database operations.");
/// `gateway_build_info{version,commit}`
pub const BUILD_INFO: Metric = def(
    "gateway_build_info",
    Gauge,
    Unit::Count,
    &["version", "commit"],
    "Always 1; the labels name the running build.",
);
/// `gateway_start_time_seconds`
pub const START_TIME: Metric =
    def("gateway_start_time_seconds", Gauge, Unit::Seconds, &[], "Start time of the gateway, in Unix seconds.");
/// `gateway_ready`
pub const READY: Metric = def("gateway_ready", Gauge, Unit::Count, &[], "1 while /readyz answers 200, else 0.");
/// `gateway_draining`
pub const DRAINING: Metric =
    def("gateway_draining", Gauge, Unit::Count, &[], "1 once shutdown has begun and the gateway is draining.");
/// `gateway_config_reloads_total{result}`
pub const CONFIG_RELOADS: Metric = def(
    "gateway_config_reloads_total",
    Counter,
    Unit::Count,
    &["result"],
    "Configuration reload attempts by result (success, failure).",
);
/// `gateway_config_last_reload_success_timestamp_seconds`
pub const CONFIG_LAST_RELOAD_SUCCESS: Metric = def(
    "gateway_config_last_reload_success_timestamp_seconds",
    Gauge,
    Unit::Seconds,
    &[],
    "When the configuration was last loaded successfully, in Unix seconds.",
);

/// The whole catalogue, `process_*` aside (metrics-process describes those).
pub const ALL: &[Metric] = &[
    HTTP_REQUESTS,
    HTTP_REQUEST_DURATION,
    HTTP_REQUESTS_IN_FLIGHT,
    GRPC_STARTED,
    GRPC_HANDLED,
    GRPC_HANDLING,
    GRPC_MSG_RECEIVED,
    GRPC_MSG_SENT,
    UPSTREAM_REQUESTS,
    UPSTREAM_REQUEST_DURATION,
    UPSTREAM_ENDPOINTS,
    UPSTREAM_CIRCUIT_BREAKER_STATE,
    UPSTREAM_RETRIES,
    REQUESTS_REJECTED,
    OVERHEAD,
    AUTHORIZATION_CHECK_LATENCY,
    DB_POOL_CONNECTIONS,
    DB_POOL_MAX_CONNECTIONS,
    DB_POOL_ACQUIRE_DURATION,
    DB_QUERY_DURATION,
    DB_ERRORS,
    BUILD_INFO,
    START_TIME,
    READY,
    DRAINING,
    CONFIG_RELOADS,
    CONFIG_LAST_RELOAD_SUCCESS,
];

/// Hands every description to the current recorder, so `# HELP` lines and
/// OTLP descriptions are there from the first export.
pub fn describe_all() {
    for m in ALL {
        match m.kind {
            Counter => metrics::describe_counter!(m.name, m.unit, m.help),
            Gauge => metrics::describe_gauge!(m.name, m.unit, m.help),
            Histogram(_) => metrics::describe_histogram!(m.name, m.unit, m.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_follow_the_contract() {
        let mut names: Vec<_> = ALL.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for m in ALL {
            // The one exception is the name the platform's alert catalogue already uses.
            assert!(m.name.starts_with("gateway_") || m.name == "authorization_check_latency_seconds", "{}", m.name);
            match m.kind {
                Counter => assert!(m.name.ends_with("_total"), "{}", m.name),
                Histogram(_) => assert!(m.name.ends_with("_seconds"), "{}", m.name),
                Gauge => {}
            }
        }
    }
}
