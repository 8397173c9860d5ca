//! Telemetry for Gatehouse: the metric catalogue, the RED layers on the
//! request path (server-side HTTP, server-side gRPC, upstream), the handles
//! for the gateway's own decisions and state, series seeding, exporter
//! selection by `OTEL_METRICS_EXPORTER`, and JSON logging.
//!
//! Metric handles bind to the recorder that is current when they are built,
//! so build layers, route labels and catalogues after [`exporter::install`]
//! (tests build them inside `metrics::with_local_recorder` or under
//! `metrics::set_default_local_recorder`).
//!
//! # Where the layers go
//!
//! - [`HttpMetricsLayer`] and [`GrpcMetricsLayer`] wrap everything that can
//!   answer a request (load shedding, route match, auth, proxy), so the
//!   gateway's own rejections are counted too. Each passes the other's
//!   requests through, so their order does not matter.
//! - The request's [`RouteLabel`] must be in its extensions before
//!   [`HttpMetrics`] sees it (in-flight is counted per route from the
//!   start), as an extension of its own or inside the application's own
//!   request metadata ([`HttpMetricsLayer::request_from`]), so route matching, which has no side effects, runs before the
//!   metrics layer and later stages act on its result.
//! - [`UpstreamMetricsLayer`] wraps each cluster's client, inside retries
//!   and the circuit breaker so every attempt is counted. Its response body
//!   tells the time to the response head and when the stream ended
//!   ([`Timed`]); the proxy keeps that body inside its own, which passes
//!   both on, so the server-side layers can compute the overhead and need
//!   not read the clock again at the end.
//! - The layers take the request's arrival from the first stage
//!   ([`HttpMetricsLayer::request_from`], [`GrpcMetricsLayer::arrival_from`])
//!   rather than each reading the clock ([`timing`]).

pub mod buckets;
pub mod catalogue;
pub mod cluster;
pub mod exporter;
pub mod grpc;
pub mod http;
pub mod logging;
pub mod rejections;
pub mod seed;
pub mod state;
pub mod timing;
pub mod upstream;

mod series;
#[cfg(test)]
mod testing;

pub use buckets::Buckets;
pub use cluster::{BreakerState, ClusterGauges, EndpointState, RetryReason};
pub use exporter::{
    BuildInfo, ExporterKind, MetricsConfig, MetricsHandle, MetricsRecorder, Telemetry, install, install_with_env,
};
pub use grpc::{GrpcCatalogue, GrpcCode, GrpcMetrics, GrpcMetricsLayer, GrpcType};
pub use http::{HttpMetrics, HttpMetricsLayer, RouteLabel};
pub use rejections::{AuthorizationLatency, RejectReason, Rejections};
pub use seed::{GrpcServiceSpec, SeedSpec, UpstreamSpec, seed};
pub use state::{ConfigReload, GatewayState};
pub use timing::{ArrivalOf, Timed};
pub use upstream::{UpstreamMetrics, UpstreamMetricsLayer};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An `OTEL_*` variable holds a value this gateway does not accept.
    #[error("{var}: {value:?} is not valid; expected {expected}")]
    Env {
        /// The variable's name.
        var: &'static str,
        /// What it holds.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// A histogram bucket layout is unusable.
    #[error("metrics.buckets.{field}: {problem}")]
    Buckets {
        /// Which layout.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Another metrics recorder was installed first.
    #[error("a global metrics recorder is already installed")]
    AlreadyInstalled,
    /// The exporter needs background tasks and was started outside a Tokio runtime.
    #[error("the {0} metrics exporter must be installed from within a Tokio runtime")]
    NoRuntime(&'static str),
}
