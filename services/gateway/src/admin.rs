//! The admin listener: operators, Prometheus and the kubelet talk to it,
//! never clients. It is a separate port so it can stay private.
//!
//! HTTP routes and gRPC services share the port: gRPC paths
//! (`/grpc.health.v1.Health/…`) never collide with the HTTP ones.

use axum::Router;
use gatehouse_health::{Health, Info};

use crate::admin_api::{self, AdminApi};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The admin routes: `/healthz`, `/readyz`, `/info`, the admin API under
/// `/v1/`, and the gRPC services `grpc.health.v1.Health` and
/// `gatehouse.admin.v1.Admin`.
pub fn router(health: Health, info: Info, api: AdminApi) -> Router {
    let grpc = tonic::service::Routes::new(gatehouse_health::grpc_service(&health))
        .add_service(admin_api::grpc::service(api.clone()))
        .prepare()
        .into_axum_router();
    gatehouse_health::router(health, info).merge(admin_api::http::router(api)).merge(grpc)
}

/// Serves the admin port until `shutdown` turns true.
pub async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            crate::accept::stopped(&mut shutdown).await;
        })
        .await
}
