//! The admin listener: operators, Prometheus and the kubelet talk to it,
//! never clients. It is a separate port so it can stay private.
//!
//! HTTP routes and gRPC services share the port: gRPC paths
//! (`/grpc.health.v1.Health/…`) never collide with the HTTP ones.

use axum::Router;
use gatehouse_health::{Health, Info};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The admin routes: `/healthz`, `/readyz`, `/info` and `grpc.health.v1`.
pub fn router(health: Health, info: Info) -> Router {
    let grpc = tonic::service::Routes::new(gatehouse_health::grpc_service(&health)).prepare().into_axum_router();
    gatehouse_health::router(health, info).merge(grpc)
}

/// Serves the admin port until `shutdown` turns true.
pub async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            crate::accept::stopped(&mut shutdown).await;
        })
        .await
}
