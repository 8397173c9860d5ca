//! Upstream clusters: a set of endpoints, a balancer that picks one, and a
//! connection pool per endpoint (HTTP/1 or HTTP/2).
//!
//! The endpoint set is swapped atomically when DNS answers change, so the
//! request path reads it without a lock.

mod balance;
pub mod pool;
pub mod probe;
mod resolve;
mod set;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use gatehouse_telemetry::{ClusterGauges, UpstreamMetricsLayer};

use crate::config::{self, Balance, Protocol};
use pool::{Pool, PoolConfig};

pub use balance::EndpointGuard;
pub use set::ClusterSet;

/// One resolved endpoint of a cluster.
#[derive(Debug)]
pub struct Endpoint {
    /// The address connections go to.
    pub addr: SocketAddr,
    /// `addr` as a URI authority, prepared once.
    pub authority: http::uri::Authority,
    /// Connections to `addr`.
    pub pool: Arc<Pool>,
    /// Requests (and their response bodies) in flight to this endpoint.
    in_flight: AtomicUsize,
    /// The last probe's verdict; endpoints start healthy so traffic flows
    /// before the first probe round.
    healthy: AtomicBool,
}

impl Endpoint {
    fn new(addr: SocketAddr, pool: PoolConfig) -> Arc<Self> {
        let authority = addr.to_string().parse().expect("a socket address is a valid authority");
        let pool = Arc::new(Pool::new(addr, pool));
        Arc::new(Self { addr, authority, pool, in_flight: AtomicUsize::new(0), healthy: AtomicBool::new(true) })
    }

    fn load(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the last probe reached this endpoint.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// An upstream cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The cluster's name from config: the `upstream` label.
    pub name: Arc<str>,
    /// The wire protocol towards it.
    pub protocol: Protocol,
    balance: Balance,
    next: AtomicUsize,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    pool: PoolConfig,
    metrics: UpstreamMetricsLayer,
    gauges: ClusterGauges,
}

impl Cluster {
    /// Builds a cluster from config. Literal IP endpoints are usable at once;
    /// DNS names are filled in by [`Cluster::spawn_resolver`].
    pub fn new(name: &str, cfg: &config::Upstream) -> Arc<Self> {
        let pool = PoolConfig {
            protocol: cfg.protocol,
            connect_timeout: cfg.connect_timeout.0,
            idle_timeout: cfg.pool_idle_timeout.0,
            max_idle: cfg.pool_max_idle_per_endpoint,
        };
        let metrics = match cfg.protocol {
            Protocol::Grpc => UpstreamMetricsLayer::grpc(name),
            Protocol::Http1 | Protocol::Http2 => UpstreamMetricsLayer::http(name),
        };
        let gauges = ClusterGauges::new(name);
        gauges.seed();

        let literal: Vec<Arc<Endpoint>> = cfg
            .endpoints
            .iter()
            .filter_map(|ep| ep.parse::<SocketAddr>().ok())
            .map(|addr| Endpoint::new(addr, pool))
            .collect();
        Arc::new(Self {
            name: name.into(),
            protocol: cfg.protocol,
            balance: cfg.balance,
            next: AtomicUsize::new(0),
            endpoints: ArcSwap::from_pointee(literal),
            pool,
            metrics,
            gauges,
        })
    }

    /// The cluster's upstream RED metrics.
    pub fn metrics(&self) -> &UpstreamMetricsLayer {
        &self.metrics
    }

    /// The cluster's endpoint and breaker gauges.
    pub fn gauges(&self) -> &ClusterGauges {
        &self.gauges
    }

    /// How many endpoints are currently known, and how many of them healthy.
    pub fn endpoint_counts(&self) -> (usize, usize) {
        let eps = self.endpoints.load();
        (eps.len(), eps.iter().filter(|e| e.is_healthy()).count())
    }

    /// Picks an endpoint for one request; `None` when the cluster has none.
    pub fn pick(&self) -> Option<EndpointGuard> {
        let endpoints = self.endpoints.load();
        balance::pick(self.balance, &endpoints, &self.next)
    }

    /// Resolves DNS names now and then every `resolve_interval`, so pods
    /// behind a headless Service are picked up as they come and go.
    pub fn spawn_resolver(self: &Arc<Self>, cfg: &config::Upstream) -> Option<tokio::task::JoinHandle<()>> {
        resolve::spawn(Arc::clone(self), cfg)
    }

    fn replace_endpoints(&self, addrs: Vec<SocketAddr>) {
        let current = self.endpoints.load();
        // Keep existing endpoints (and their load counters) that are still there.
        let next: Vec<Arc<Endpoint>> = addrs
            .into_iter()
            .map(|addr| {
                current.iter().find(|e| e.addr == addr).cloned().unwrap_or_else(|| Endpoint::new(addr, self.pool))
            })
            .collect();
        let changed = next.len() != current.len() || next.iter().zip(current.iter()).any(|(a, b)| a.addr != b.addr);
        if changed {
            tracing::info!(upstream = %self.name, endpoints = next.len(), "upstream endpoints changed");
            self.endpoints.store(Arc::new(next));
        }
    }
}
