//! From config to the telemetry library's terms: bucket layouts, the gRPC
//! method catalogue, and the series to pre-seed.

use gatehouse_telemetry::grpc::GrpcType;
use gatehouse_telemetry::rejections::RejectReason;
use gatehouse_telemetry::seed::{GrpcServiceSpec, SeedSpec, UpstreamSpec};
use gatehouse_telemetry::{Buckets, MetricsConfig};

use crate::config::{self, Config, Protocol};
use crate::error::GatewayError;

/// The exporter's settings from `metrics` in the config.
pub fn metrics_config(cfg: &Config) -> MetricsConfig {
    let mut buckets = Buckets::default();
    if let Some(latency) = &cfg.metrics.duration_buckets {
        buckets.latency = latency.clone();
    }
    MetricsConfig { buckets }
}

/// Every series dashboards and alerts need, for this config.
pub fn seed_spec(cfg: &Config) -> SeedSpec {
    let grpc_services = cfg
        .routes
        .iter()
        .filter_map(|r| {
            let service = r.matcher.grpc_service.as_ref()?;
            let methods = r.grpc_methods.iter().map(|(m, t)| (m.clone(), grpc_type(*t))).collect();
            Some(GrpcServiceSpec { name: service.clone(), methods })
        })
        .collect();
    SeedSpec {
        http_routes: cfg.routes.iter().filter(|r| r.matcher.grpc_service.is_none()).map(|r| r.name.clone()).collect(),
        grpc_services,
        upstreams: cfg
            .upstreams
            .iter()
            .map(|(name, u)| UpstreamSpec { name: name.clone(), grpc: u.protocol == Protocol::Grpc })
            .collect(),
    }
}

fn grpc_type(t: config::GrpcType) -> GrpcType {
    match t {
        config::GrpcType::Unary => GrpcType::Unary,
        config::GrpcType::ClientStream => GrpcType::ClientStream,
        config::GrpcType::ServerStream => GrpcType::ServerStream,
        config::GrpcType::BidiStream => GrpcType::BidiStream,
    }
}

/// The `gateway_requests_rejected_total` reason of a gateway error, if it is
/// a rejection (upstream failures are counted by the upstream metrics).
pub fn reject_reason(e: GatewayError) -> Option<RejectReason> {
    Some(match e {
        GatewayError::NoRoute => RejectReason::NoRoute,
        GatewayError::Unauthenticated => RejectReason::Unauthenticated,
        GatewayError::Forbidden => RejectReason::Forbidden,
        GatewayError::RateLimited => RejectReason::RateLimited,
        GatewayError::Overloaded => RejectReason::Overloaded,
        GatewayError::CircuitOpen => RejectReason::CircuitOpen,
        GatewayError::BodyTooLarge => RejectReason::BodyTooLarge,
        // Oversized heads are malformed requests in the alert catalogue's terms.
        GatewayError::BadRequest | GatewayError::HeadersTooLarge => RejectReason::BadRequest,
        GatewayError::UpstreamTimeout | GatewayError::UpstreamUnavailable => return None,
    })
}
