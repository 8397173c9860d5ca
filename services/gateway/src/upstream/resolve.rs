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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_and_literals_resolve_sorted_without_duplicates() {
        let names = vec!["localhost:7001".to_owned(), "127.0.0.1:7001".to_owned(), "10.0.0.1:80".to_owned()];
        let addrs = resolve_all(&names, "test").await;
        assert!(addrs.contains(&SocketAddr::from(([127, 0, 0, 1], 7001))), "{addrs:?}");
        assert!(addrs.contains(&SocketAddr::from(([10, 0, 0, 1], 80))), "{addrs:?}");
        assert_eq!(addrs.iter().filter(|a| **a == SocketAddr::from(([127, 0, 0, 1], 7001))).count(), 1);
        let mut sorted = addrs.clone();
        sorted.sort();
        assert_eq!(addrs, sorted);
    }

    #[tokio::test]
    async fn the_resolver_fills_a_named_cluster() {
        let cfg: config::Upstream =
            serde_norway::from_str("{ protocol: http1, endpoints: ['localhost:7001'], resolve_interval: 50ms }")
                .expect("valid upstream");
        let cluster = Cluster::new("named", &cfg);
        assert_eq!(cluster.endpoint_counts().0, 0, "names are not resolved synchronously");
        let task = cluster.spawn_resolver(&cfg).expect("a resolver for a DNS name");
        for _ in 0..100 {
            if cluster.endpoint_counts().0 > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        task.abort();
        assert!(cluster.endpoint_counts().0 >= 1);
    }
}
