//! The admin listener: operators, Prometheus and the kubelet talk to it,
//! never clients. It is a separate port so it can stay private.
//!
//! HTTP routes and gRPC services share the port: gRPC paths
//! (`/grpc.health.v1.Health/…`) never collide with the HTTP ones.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use gatehouse_health::{Health, Info};
use gatehouse_telemetry::{ExporterKind, Telemetry};
use tower::ServiceExt;

use crate::admin_api::{self, AdminApi};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The admin routes: `/healthz`, `/readyz`, `/info`, the admin API under
/// `/v1/`, and the gRPC services `grpc.health.v1.Health` and
/// `gatehouse.admin.v1.Admin`.
pub fn router(health: Health, info: Info, api: AdminApi, metrics: Arc<Telemetry>) -> Router {
    let grpc = tonic::service::Routes::new(gatehouse_health::grpc_service(&health))
        .add_service(admin_api::grpc::service(api.clone()))
        .prepare()
        .into_axum_router();
    let mut http = gatehouse_health::router(health, info).merge(admin_api::http::router(api));
    // `/metrics` lives here unless OTEL_EXPORTER_PROMETHEUS_HOST/PORT moved
    // it to its own listener, or the exporter is not Prometheus at all.
    if metrics.dedicated_listener().is_none() && metrics.kind() == ExporterKind::Prometheus {
        http = http.merge(metrics_router(metrics));
    }
    // gRPC by content type: tonic's router answers every path it does not
    // know with UNIMPLEMENTED, which must not shadow HTTP 404s.
    Router::new().fallback_service(tower::service_fn(move |req: Request<Body>| {
        let target = if is_grpc(req.headers()) { grpc.clone() } else { http.clone() };
        target.oneshot(req)
    }))
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// `GET /metrics` in the Prometheus text format.
pub fn metrics_router(metrics: Arc<Telemetry>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                match metrics.render() {
                    Some(text) => {
                        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
                    }
                    None => StatusCode::NOT_FOUND.into_response(),
                }
            }
        }),
    )
}

/// Serves the admin port until `shutdown` turns true.
pub async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            crate::accept::stopped(&mut shutdown).await;
        })
        .await
}
