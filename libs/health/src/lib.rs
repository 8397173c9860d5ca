//! Liveness and readiness checks, drain state and the `grpc.health.v1`
//! bridge for the admin port (DESIGN.md §5).
//!
//! One [`Health`] value holds the process's readiness: two built-in
//! conditions (config loaded, not draining) and the checks that other
//! parts register and feed from their own probe loops. Everything that
//! reports health reads it:
//! - [`router`]: `/healthz`, `/readyz` (with `?verbose`), `/info`;
//! - [`grpc_service`]: `grpc.health.v1.Health` `Check` and `Watch`;
//! - the `gateway_ready` and `gateway_draining` gauges ([`gauges`]);
//! - [`Health::subscribe`] and [`Health::draining`] for code that follows
//!   readiness or waits for shutdown.
//!
//! ```
//! use std::time::Duration;
//! let health = gatehouse_health::Health::new();
//! let upstream = health.register("upstream:echo", true);
//! health.set_config_loaded(true);
//! assert!(!health.is_ready(), "a check that never reported fails");
//! upstream.report(Ok(()), Duration::from_millis(3));
//! assert!(health.is_ready());
//! health.start_draining();
//! assert!(!health.is_ready());
//! ```

mod check;
pub mod gauges;
mod grpc;
mod http;
mod info;
mod state;

pub use check::CheckHandle;
pub use grpc::{GrpcHealth, SERVICE_NAMES, WatchResponses, grpc_service};
pub use http::router;
pub use info::{ConfigHash, Info};
pub use state::{CONFIG_LOADED, CheckStatus, DRAINING, Health, Snapshot};
