//! Seeding: every series a dashboard or alert needs exists at zero from
//! start-up, before any traffic, and again after each config change (new
//! routes, methods and clusters). Seeding only ever adds zero, so running it
//! on a live gateway leaves counted values and set gauges as they are.
//!
//! What is seeded:
//! - each HTTP route with its success series `{route, method="GET",
//!   code="200"}` (counter and duration histogram) and its in-flight gauge.
//!   One method stands for the route because the dashboards aggregate by
//!   route; seeding every method would multiply series by ten for nothing.
//!   `route="unmatched"` is seeded with `code="404"`;
//! - each configured gRPC method, each known service's `unknown` method and
//!   the `unknown` service: started, all 17 handled codes, messages both
//!   ways and the handling histogram;
//! - each upstream cluster's `code="200"` (`grpc_code="OK"` for gRPC) and
//!   duration histogram, endpoint states, breaker gauge and retry reasons;
//! - every rejection reason, the overhead and authorization histograms, the
//!   readiness, draining and reload series, and the database pool's gauges
//!   and acquire histogram. The per-operation `gateway_db_*` series are
//!   seeded by gatehouse-store, which owns the list of operations.

use http::Method;

use crate::catalogue::{DB_POOL_ACQUIRE_DURATION, DB_POOL_CONNECTIONS, DB_POOL_MAX_CONNECTIONS};
use crate::cluster::ClusterGauges;
use crate::grpc::{GrpcCatalogue, GrpcType};
use crate::http::{RouteLabel, UNMATCHED};
use crate::rejections::{AuthorizationLatency, Rejections};
use crate::series;
use crate::state::GatewayState;
use crate::upstream::UpstreamMetricsLayer;

/// What the configuration names, for seeding.
#[derive(Debug, Clone, Default)]
pub struct SeedSpec {
    /// Names of routes that serve HTTP (not gRPC) traffic.
    pub http_routes: Vec<String>,
    /// gRPC services and their methods.
    pub grpc_services: Vec<GrpcServiceSpec>,
    /// Upstream clusters.
    pub upstreams: Vec<UpstreamSpec>,
}

/// One gRPC service for seeding.
#[derive(Debug, Clone)]
pub struct GrpcServiceSpec {
    /// Full service name, e.g. `echo.v1.Echo`.
    pub name: String,
    /// Its methods and their types.
    pub methods: Vec<(String, GrpcType)>,
}

/// One upstream cluster for seeding.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    /// The cluster's name.
    pub name: String,
    /// Whether it speaks gRPC (its requests carry `grpc_code`).
    pub grpc: bool,
}

impl SeedSpec {
    /// The catalogue of the spec's gRPC services, for [`crate::GrpcMetricsLayer`].
    pub fn grpc_catalogue(&self) -> GrpcCatalogue {
        self.grpc_services.iter().fold(GrpcCatalogue::new(), |cat, s| {
            cat.with_service(&s.name, s.methods.iter().map(|(m, t)| (m.as_str(), *t)))
        })
    }
}

/// Makes every series of `spec` exist. Handles built here are the same
/// series the request path records into: the recorder keys series by name
/// and labels, not by handle.
pub fn seed(spec: &SeedSpec) {
    RouteLabel::new(UNMATCHED).seed(&Method::GET, 404);
    for route in &spec.http_routes {
        RouteLabel::new(route.as_str()).seed(&Method::GET, 200);
    }
    spec.grpc_catalogue().seed();
    for up in &spec.upstreams {
        let layer = if up.grpc {
            UpstreamMetricsLayer::grpc(up.name.as_str())
        } else {
            UpstreamMetricsLayer::http(up.name.as_str())
        };
        layer.seed();
        ClusterGauges::new(&up.name).seed();
    }
    Rejections::new().seed();
    let _ = AuthorizationLatency::new();
    GatewayState::new().seed();
    for state in ["idle", "in_use"] {
        series::gauge(&DB_POOL_CONNECTIONS, [state]).increment(0.0);
    }
    series::gauge(&DB_POOL_MAX_CONNECTIONS, []).increment(0.0);
    // Registering a histogram is what makes it render, with `_count 0`.
    let _ = series::histogram(&DB_POOL_ACQUIRE_DURATION, []);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{self, Kind};
    use crate::testing::{recorder, sample, sample_count};

    fn spec() -> SeedSpec {
        SeedSpec {
            http_routes: vec!["echo-http".into()],
            grpc_services: vec![GrpcServiceSpec {
                name: "echo.v1.Echo".into(),
                methods: vec![("Unary".into(), GrpcType::Unary), ("Chat".into(), GrpcType::BidiStream)],
            }],
            upstreams: vec![
                UpstreamSpec { name: "echo".into(), grpc: false },
                UpstreamSpec { name: "echo-grpc".into(), grpc: true },
            ],
        }
    }

    #[test]
    fn every_series_exists_at_zero_before_the_first_request() {
        let recorder = recorder();
        let text = metrics::with_local_recorder(&recorder, || {
            seed(&spec());
            recorder.handle().render()
        });
        // Build info and start time are recorded by `install`, with real values;
        // the per-operation database series by gatehouse-store.
        let by_others = [
            "gateway_build_info",
            "gateway_start_time_seconds",
            "gateway_db_query_duration_seconds",
            "gateway_db_errors_total",
        ];
        let seeded = catalogue::ALL.iter().filter(|m| !by_others.contains(&m.name));
        for m in seeded {
            let name = match m.kind {
                Kind::Histogram(_) => format!("{}_count", m.name),
                _ => m.name.to_owned(),
            };
            let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&name)).collect();
            assert!(!lines.is_empty(), "{} is not seeded", m.name);
            assert!(lines.iter().all(|l| l.ends_with(" 0")), "{lines:?}");
            if let Kind::Histogram(_) = m.kind {
                assert!(text.contains(&format!("{}_bucket{{", m.name)), "{} has no buckets", m.name);
            }
        }
        let at = |s: &str| sample(&text, s);
        assert_eq!(at(r#"gateway_http_requests_total{route="echo-http",method="GET",code="200"}"#), Some(0.0));
        assert_eq!(at(r#"gateway_http_requests_total{route="unmatched",method="GET",code="404"}"#), Some(0.0));
        assert_eq!(
            at(r#"gateway_http_request_duration_seconds_count{route="echo-http",method="GET",code="200"}"#),
            Some(0.0)
        );
        assert_eq!(at(r#"gateway_http_requests_in_flight{route="echo-http"}"#), Some(0.0));
        let handled = |method: &str| {
            text.lines()
                .filter(|l| {
                    l.starts_with(&format!(
                        r#"gateway_grpc_server_handled_total{{grpc_service="echo.v1.Echo",grpc_method="{method}""#
                    ))
                })
                .count()
        };
        assert_eq!((handled("Unary"), handled("Chat"), handled("unknown")), (17, 17, 17));
        assert_eq!(at(r#"gateway_upstream_requests_total{upstream="echo",code="200"}"#), Some(0.0));
        assert_eq!(at(r#"gateway_upstream_requests_total{upstream="echo-grpc",code="200",grpc_code="OK"}"#), Some(0.0));
        for state in ["healthy", "unhealthy", "ejected"] {
            assert_eq!(at(&format!(r#"gateway_upstream_endpoints{{upstream="echo",state="{state}"}}"#)), Some(0.0));
        }
        assert_eq!(at(r#"gateway_upstream_circuit_breaker_state{upstream="echo-grpc"}"#), Some(0.0));
        assert_eq!(at(r#"gateway_upstream_retries_total{upstream="echo",reason="connect_error"}"#), Some(0.0));
        for reason in REJECT_REASONS {
            assert_eq!(at(&format!(r#"gateway_requests_rejected_total{{reason="{reason}"}}"#)), Some(0.0), "{reason}");
        }
        assert_eq!(at(r#"gateway_db_pool_connections{state="in_use"}"#), Some(0.0));
        assert_eq!(at("gateway_db_pool_max_connections"), Some(0.0));
    }

    /// DESIGN.md §3's list, written out so a change to the enum shows here.
    const REJECT_REASONS: [&str; 8] = [
        "no_route",
        "unauthenticated",
        "forbidden",
        "rate_limited",
        "overloaded",
        "circuit_open",
        "body_too_large",
        "bad_request",
    ];

    #[test]
    fn reseeding_keeps_live_values() {
        let recorder = recorder();
        let text = metrics::with_local_recorder(&recorder, || {
            seed(&spec());
            let state = GatewayState::new();
            state.config_reloaded(crate::ConfigReload::Success);
            ClusterGauges::new("echo").set_endpoints(crate::EndpointState::Healthy, 3);
            Rejections::new().reject(crate::RejectReason::NoRoute);
            let before = sample_count(&recorder.handle().render());
            seed(&spec());
            assert_eq!(sample_count(&recorder.handle().render()), before);
            recorder.handle().render()
        });
        assert_eq!(sample(&text, r#"gateway_config_reloads_total{result="success"}"#), Some(1.0));
        assert_eq!(sample(&text, r#"gateway_upstream_endpoints{upstream="echo",state="healthy"}"#), Some(3.0));
        assert_eq!(sample(&text, r#"gateway_requests_rejected_total{reason="no_route"}"#), Some(1.0));
    }
}
