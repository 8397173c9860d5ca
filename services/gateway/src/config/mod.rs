//! The configuration file: one typed struct, parsed, then validated as a
//! whole so that every problem is reported with its field path before any
//! port is bound.
//!
//! Every default is documented next to its field and in the README.

mod units;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub use units::{Bytes, Secs};
pub(crate) use validate::split_endpoint;

/// The environment variable that overrides `database.url`.
pub const DATABASE_URL_ENV: &str = "GATEHOUSE_DATABASE_URL";

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the gateway listens.
    pub listeners: Listeners,
    /// The SQL database (used by the store).
    #[serde(default)]
    pub database: Database,
    /// Async runtime sizing.
    #[serde(default)]
    pub runtime: Runtime,
    /// Edge limits applied to every client connection.
    #[serde(default)]
    pub limits: Limits,
    /// Log level and format.
    #[serde(default)]
    pub logging: Logging,
    /// Metrics options.
    #[serde(default)]
    pub metrics: Metrics,
    /// Graceful shutdown timing.
    #[serde(default)]
    pub shutdown: Shutdown,
    /// Upstream clusters by name.
    #[serde(default)]
    pub upstreams: BTreeMap<String, Upstream>,
    /// Routes, matched in order: the first match wins.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// SHA-256 of the file's text, shown by `/info` (not a config key).
    #[serde(skip)]
    pub source_hash: String,
}

/// The two listeners.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Listeners {
    /// Public traffic: HTTP/1.1, cleartext HTTP/2 and gRPC on one port.
    pub public: String,
    /// Operators and Prometheus: health, metrics, admin API.
    pub admin: String,
}

/// The SQL database.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// `sqlite://…` (default `sqlite://gatehouse.db`, created on first run)
    /// or `postgres://…`; `GATEHOUSE_DATABASE_URL` overrides it.
    #[serde(default = "default_database_url")]
    pub url: String,
    /// Pool size (default 10).
    #[serde(default = "default_db_max_connections")]
    pub max_connections: u32,
    /// Run pending migrations at start-up (default true); `gatehouse
    /// migrate` runs them on demand.
    #[serde(default = "default_true")]
    pub migrate: bool,
    /// Whether readiness needs the database to answer (default true).
    #[serde(default = "default_true")]
    pub required: bool,
    /// On SQLite, how often the key cache looks for changes made by other
    /// processes (default 1s). PostgreSQL pushes changes with NOTIFY.
    #[serde(default = "default_db_poll_interval")]
    pub poll_interval: Secs,
}

impl Default for Database {
    fn default() -> Self {
        Self {
            url: default_database_url(),
            max_connections: default_db_max_connections(),
            migrate: true,
            required: true,
            poll_interval: default_db_poll_interval(),
        }
    }
}

fn default_db_max_connections() -> u32 {
    10
}
fn default_db_poll_interval() -> Secs {
    Secs(Duration::from_secs(1))
}

fn default_database_url() -> String {
    "sqlite://gatehouse.db".to_owned()
}

/// Async runtime sizing.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// `auto` (default): one thread when the process may use one core (or
    /// `worker_threads: 1`), a work-stealing pool otherwise;
    /// `current_thread`; or `multi_thread`.
    #[serde(default)]
    pub flavor: RuntimeFlavor,
    /// Worker threads of the `multi_thread` flavour; default: one per
    /// available core.
    pub worker_threads: Option<usize>,
}

/// The async runtime's flavour.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeFlavor {
    /// Decide from the cores available and `worker_threads`.
    #[default]
    Auto,
    /// Everything on one thread: no cross-thread wake-ups or work stealing,
    /// the cheapest per request when the gateway has one core.
    CurrentThread,
    /// A work-stealing pool of `worker_threads`.
    MultiThread,
}

/// Edge limits: what a client connection may cost the gateway.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Time a client has to send a complete HTTP/1 header block (default 10s).
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: Secs,
    /// A connection with no request in flight for this long is closed (default 60s).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Secs,
    /// Largest request header block, in bytes, answered with 431 beyond (default 60 KiB).
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: Bytes,
    /// Most header fields in one request, answered with 431 beyond (default 100).
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Most client connections open at once; further ones wait in the
    /// listen backlog (default 10000).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most concurrent HTTP/2 streams per client connection (default 256).
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            max_connections: default_max_connections(),
            max_concurrent_streams: default_max_concurrent_streams(),
        }
    }
}

fn default_header_read_timeout() -> Secs {
    Secs(Duration::from_secs(10))
}
fn default_idle_timeout() -> Secs {
    Secs(Duration::from_secs(60))
}
fn default_max_header_bytes() -> Bytes {
    Bytes(60 * 1024)
}
fn default_max_headers() -> usize {
    100
}
fn default_max_connections() -> usize {
    10_000
}
fn default_max_concurrent_streams() -> u32 {
    256
}

/// Metrics options. The exporter itself is chosen by `OTEL_METRICS_EXPORTER`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Histogram buckets, in seconds, for every duration histogram (default
    /// 0.5 ms to 30 s, see the README).
    pub duration_buckets: Option<Vec<f64>>,
}

/// Graceful shutdown on SIGTERM or SIGINT.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Shutdown {
    /// How long the gateway keeps serving after readiness turns 503, so
    /// load balancers and Kubernetes endpoints stop sending (default 5s).
    #[serde(default = "default_drain_delay")]
    pub drain_delay: Secs,
    /// How long in-flight requests may take to finish after that; the rest
    /// are cut (default 20s; with the drain delay it stays under
    /// Kubernetes' default 30 s grace period).
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: Secs,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self { drain_delay: default_drain_delay(), shutdown_timeout: default_shutdown_timeout() }
    }
}

fn default_drain_delay() -> Secs {
    Secs(Duration::from_secs(5))
}
fn default_shutdown_timeout() -> Secs {
    Secs(Duration::from_secs(20))
}

/// Log output.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    /// A tracing filter such as `info` or `gatehouse=debug,info` (default
    /// `info`); `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `json` (default) or `text`.
    #[serde(default)]
    pub format: LogFormat,
    /// One line per request (default true).
    #[serde(default = "default_true")]
    pub access_log: bool,
}

impl Default for Logging {
    fn default() -> Self {
        Self { level: default_log_level(), format: LogFormat::default(), access_log: true }
    }
}

fn default_log_level() -> String {
    "info".to_owned()
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line, for Loki.
    #[default]
    Json,
    /// Human-readable lines for local development.
    Text,
}

/// One upstream cluster.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Wire protocol towards the cluster.
    pub protocol: Protocol,
    /// `host:port` endpoints; DNS names are re-resolved every `resolve_interval`.
    pub endpoints: Vec<String>,
    /// Load-balancing policy (default `p2c`).
    #[serde(default)]
    pub balance: Balance,
    /// Time allowed to open a TCP connection to an endpoint (default 1s).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Secs,
    /// How often DNS names are resolved again (default 5s).
    #[serde(default = "default_resolve_interval")]
    pub resolve_interval: Secs,
    /// Idle pooled connections are closed after this long (default 90s).
    #[serde(default = "default_pool_idle_timeout")]
    pub pool_idle_timeout: Secs,
    /// Most idle pooled connections kept per endpoint (default 256).
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle_per_endpoint: usize,
    /// Whether readiness needs at least one answering endpoint (default true).
    #[serde(default = "default_true")]
    pub required: bool,
    /// How often each endpoint is probed with a TCP connect (default 5s);
    /// endpoints that do not answer are skipped by the balancer.
    #[serde(default = "default_probe_interval")]
    pub probe_interval: Secs,
}

fn default_true() -> bool {
    true
}
fn default_probe_interval() -> Secs {
    Secs(Duration::from_secs(5))
}

fn default_connect_timeout() -> Secs {
    Secs(Duration::from_secs(1))
}
fn default_resolve_interval() -> Secs {
    Secs(Duration::from_secs(5))
}
fn default_pool_idle_timeout() -> Secs {
    Secs(Duration::from_secs(90))
}
fn default_pool_max_idle() -> usize {
    256
}

/// Wire protocol towards an upstream cluster.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// Cleartext HTTP/2 with prior knowledge.
    Http2,
    /// gRPC: cleartext HTTP/2.
    Grpc,
}

/// Load-balancing policy.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each endpoint in turn.
    RoundRobin,
    /// Power of two choices: the less loaded of two random endpoints.
    #[default]
    P2c,
}

/// One route.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique name: the `route` label in metrics and logs.
    pub name: String,
    /// What requests this route takes.
    #[serde(rename = "match")]
    pub matcher: Match,
    /// The upstream cluster's name.
    pub upstream: String,
    /// Time allowed from the request's arrival until the upstream's
    /// response headers (default 15s).
    #[serde(default = "default_route_timeout")]
    pub timeout: Secs,
    /// Largest request body, answered with 413 beyond (default 100 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: Bytes,
    /// Authentication and authorization requirements.
    #[serde(default)]
    pub auth: Auth,
    /// For `grpc_service` routes: the service's methods and their call
    /// types. Metrics label listed methods by name; others count as
    /// `grpc_method="unknown"`, so clients cannot grow the series.
    #[serde(default)]
    pub grpc_methods: BTreeMap<String, GrpcType>,
}

/// A gRPC method's call type, as go-grpc-prometheus names it.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GrpcType {
    /// One request, one response.
    Unary,
    /// A stream of requests, one response.
    ClientStream,
    /// One request, a stream of responses.
    ServerStream,
    /// Streams both ways.
    BidiStream,
}

fn default_route_timeout() -> Secs {
    Secs(Duration::from_secs(15))
}
fn default_max_body_bytes() -> Bytes {
    Bytes(100 * 1024 * 1024)
}

/// A route's match rule: `host` alone, one of the path rules alone, or
/// `host` with one path rule.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// The request's host (from `Host` or `:authority`, port ignored).
    pub host: Option<String>,
    /// An exact path.
    pub path: Option<String>,
    /// A path prefix, matched on whole segments: `/echo` takes `/echo` and
    /// `/echo/x`, not `/echoes`.
    pub path_prefix: Option<String>,
    /// A fully qualified gRPC service such as `echo.v1.Echo`.
    pub grpc_service: Option<String>,
}

/// Authentication and authorization requirements of a route.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Whether a valid API key is required.
    #[serde(default)]
    pub required: bool,
    /// Scopes the key must all hold.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// Every problem found in a configuration, each with its field path.
#[derive(Debug, Default)]
pub struct ConfigErrors(pub Vec<FieldError>);

/// One problem at one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted field path, e.g. `routes[1].upstream`.
    pub path: String,
    /// What was wrong and what was expected.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl Config {
    /// Reads, parses and validates a config file, then applies environment
    /// overrides.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![FieldError {
                path: String::new(),
                message: format!("cannot read config file {}: {e}", path.display()),
            }])
        })?;
        let mut config = Self::parse(&text)?;
        config.source_hash = sha256_hex(text.as_bytes());
        if let Ok(url) = std::env::var(DATABASE_URL_ENV) {
            config.database.url = url;
        }
        Ok(config)
    }

    /// Parses and validates YAML text.
    pub fn parse(text: &str) -> Result<Self, ConfigErrors> {
        let de = serde_norway::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let mut message = e.into_inner().to_string();
            // The YAML parser prefixes the enclosing mapping's path; ours is more precise.
            if let Some((head, rest)) = message.split_once(": ") {
                if path.starts_with(head) {
                    message = rest.to_owned();
                }
            }
            ConfigErrors(vec![FieldError { path, message }])
        })?;
        let errors = validate::validate(&config);
        if errors.is_empty() { Ok(config) } else { Err(ConfigErrors(errors)) }
    }
}
