//! Active endpoint probing: a TCP connect to every endpoint each
//! `probe_interval`. Endpoints that do not answer are marked unhealthy, so
//! the balancer skips them, and the cluster's result feeds readiness.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gatehouse_telemetry::EndpointState;

use super::Cluster;

/// One probe round's outcome for a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReport {
    /// Endpoints that accepted a connection.
    pub healthy: usize,
    /// Endpoints known.
    pub total: usize,
    /// How long the round took.
    pub latency: Duration,
}

/// Probes every endpoint of `cluster` every `interval`, calling `report`
/// after each round.
pub fn spawn<F>(
    cluster: Arc<Cluster>,
    interval: Duration,
    connect_timeout: Duration,
    report: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(&Cluster, ProbeReport) + Send + 'static,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let r = probe_once(&cluster, connect_timeout).await;
            report(&cluster, r);
        }
    })
}

/// Probes every endpoint once, concurrently.
pub async fn probe_once(cluster: &Cluster, connect_timeout: Duration) -> ProbeReport {
    let started = Instant::now();
    let endpoints = cluster.endpoints.load_full();
    let probes = endpoints.iter().map(|ep| async move {
        let ok =
            matches!(tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(ep.addr)).await, Ok(Ok(_)));
        let was = ep.healthy.swap(ok, Ordering::Relaxed);
        ep.pool.sweep();
        if was != ok {
            tracing::info!(upstream = %cluster.name, endpoint = %ep.addr, healthy = ok, "endpoint health changed");
        }
        ok
    });
    let results = futures_util::future::join_all(probes).await;
    let healthy = results.iter().filter(|ok| **ok).count();
    let gauges = cluster.gauges();
    gauges.set_endpoints(EndpointState::Healthy, healthy);
    gauges.set_endpoints(EndpointState::Unhealthy, results.len() - healthy);
    ProbeReport { healthy, total: results.len(), latency: started.elapsed() }
}
