//! `gatehouse serve`: builds the runtime, binds both listeners, serves until
//! SIGTERM or SIGINT, then drains.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::hygiene::HeadLimits;
use crate::router::Router;
use crate::stack::{self, Gateway};
use crate::upstream::Cluster;
use crate::{accept, admin};

/// How long in-flight requests may take to finish after a shutdown signal.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the gateway; returns the process exit code.
pub fn run(config: Config) -> ExitCode {
    gatehouse_telemetry::logging::init(&config.logging.level, config.logging.format == crate::config::LogFormat::Json);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = config.runtime.worker_threads {
        rt.worker_threads(n);
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "gateway failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> std::io::Result<()> {
    let clusters: Vec<Arc<Cluster>> = config.upstreams.iter().map(|(name, up)| Cluster::new(name, up)).collect();
    let resolvers: Vec<_> =
        clusters.iter().zip(config.upstreams.values()).filter_map(|(c, up)| c.spawn_resolver(up)).collect();
    let router = Router::new(&config.routes, &clusters);
    let limits = HeadLimits {
        max_headers: config.limits.max_headers,
        max_header_bytes: config.limits.max_header_bytes.0 as usize,
    };
    let gateway = Arc::new(Gateway::new(router, limits));

    // Validation already parsed both addresses.
    let public = TcpListener::bind(&config.listeners.public).await?;
    let admin_listener = TcpListener::bind(&config.listeners.admin).await?;
    tracing::info!(
        public = %public.local_addr()?,
        admin = %admin_listener.local_addr()?,
        routes = config.routes.len(),
        upstreams = clusters.len(),
        "listening"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let admin_task = tokio::spawn(admin::serve(admin_listener, stop_rx.clone()));
    let public_task = tokio::spawn({
        let limits = config.limits.clone();
        async move { accept::serve(public, stack::public_service(gateway), &limits, stop_rx).await }
    });

    wait_for_signal().await;
    tracing::info!("shutdown signal received; draining");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_TIMEOUT, public_task).await;
    if drained.is_err() {
        tracing::warn!("in-flight requests did not finish within the shutdown timeout");
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), admin_task).await;
    for r in resolvers {
        r.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers, only a kill stops the process.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
