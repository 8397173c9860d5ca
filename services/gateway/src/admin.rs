//! The admin listener: operators, Prometheus and the kubelet talk to it,
//! never clients. It is a separate port so it can stay private.

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The admin routes. Readiness, `/info` and `/metrics` join as their
/// owners arrive; liveness only says the process serves this port.
pub fn router() -> Router {
    Router::new().route("/healthz", get(|| async { "ok\n" }))
}

/// Serves the admin port until `shutdown` turns true.
pub async fn serve(listener: TcpListener, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    axum::serve(listener, router())
        .with_graceful_shutdown(async move {
            crate::accept::stopped(&mut shutdown).await;
        })
        .await
}
