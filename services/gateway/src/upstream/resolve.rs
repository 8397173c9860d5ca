//! Periodic DNS resolution of endpoint names.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Cluster;
use crate::config;
use crate::config::split_endpoint;

/// Starts the resolver task when any endpoint is a DNS name.
pub(super) fn spawn(cluster: Arc<Cluster>, cfg: &config::Upstream) -> Option<tokio::task::JoinHandle<()>> {
    let names: Vec<String> = cfg.endpoints.clone();
    if names.iter().all(|n| n.parse::<SocketAddr>().is_ok()) {
        return None;
    }
    let interval = cfg.resolve_interval.0;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let addrs = resolve_all(&names, &cluster.name).await;
            cluster.replace_endpoints(addrs);
        }
    }))
}

async fn resolve_all(names: &[String], upstream: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for name in names {
        if let Ok(addr) = name.parse::<SocketAddr>() {
            out.push(addr);
            continue;
        }
        let Some((host, port)) = split_endpoint(name) else { continue };
        match tokio::net::lookup_host((host, port)).await {
            Ok(addrs) => out.extend(addrs),
            Err(e) => tracing::warn!(upstream, endpoint = %name, error = %e, "DNS resolution failed"),
        }
    }
    out.sort();
    out.dedup();
    out
}
