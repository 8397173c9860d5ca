//! Upstream clusters: a set of endpoints, a balancer that picks one, and a
//! pooled HTTP/1 or HTTP/2 client per cluster.
//!
//! The endpoint set is swapped atomically when DNS answers change, so the
//! request path reads it without a lock.

mod balance;
pub mod probe;
mod resolve;
mod set;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use gatehouse_telemetry::upstream::UpstreamMetrics;
use gatehouse_telemetry::{ClusterGauges, UpstreamMetricsLayer};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::Layer;

use crate::body::RequestBody;
use crate::config::{self, Balance, Protocol};

pub use balance::EndpointGuard;
pub use set::ClusterSet;

/// One resolved endpoint of a cluster.
#[derive(Debug)]
pub struct Endpoint {
    /// The address connections go to.
    pub addr: SocketAddr,
    /// `addr` as a URI authority, prepared once.
    pub authority: http::uri::Authority,
    /// Requests (and their response bodies) in flight to this endpoint.
    in_flight: AtomicUsize,
    /// The last probe's verdict; endpoints start healthy so traffic flows
    /// before the first probe round.
    healthy: AtomicBool,
}

impl Endpoint {
    fn new(addr: SocketAddr) -> Arc<Self> {
        let authority = addr.to_string().parse().expect("a socket address is a valid authority");
        Arc::new(Self { addr, authority, in_flight: AtomicUsize::new(0), healthy: AtomicBool::new(true) })
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
    service: UpstreamService,
    gauges: ClusterGauges,
}

/// The pooled client of a cluster, measured by the upstream RED layer.
pub type UpstreamService = UpstreamMetrics<Client<HttpConnector, RequestBody>>;

impl Cluster {
    /// Builds a cluster from config. Literal IP endpoints are usable at once;
    /// DNS names are filled in by [`Cluster::spawn_resolver`].
    pub fn new(name: &str, cfg: &config::Upstream) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(cfg.connect_timeout.0));
        connector.set_keepalive(Some(std::time::Duration::from_secs(60)));

        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout.0)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_endpoint)
            // The gateway sets Host itself; see `proxy::upstream_request`.
            .set_host(false);
        if cfg.protocol != Protocol::Http1 {
            builder.http2_only(true);
        }
        let client = builder.build(connector);
        let metrics = match cfg.protocol {
            Protocol::Grpc => UpstreamMetricsLayer::grpc(name),
            Protocol::Http1 | Protocol::Http2 => UpstreamMetricsLayer::http(name),
        };
        let gauges = ClusterGauges::new(name);
        gauges.seed();

        let literal: Vec<Arc<Endpoint>> =
            cfg.endpoints.iter().filter_map(|ep| ep.parse::<SocketAddr>().ok()).map(Endpoint::new).collect();
        Arc::new(Self {
            name: name.into(),
            protocol: cfg.protocol,
            balance: cfg.balance,
            next: AtomicUsize::new(0),
            endpoints: ArcSwap::from_pointee(literal),
            service: metrics.layer(client),
            gauges,
        })
    }

    /// The pooled, measured client for this cluster.
    pub fn service(&self) -> &UpstreamService {
        &self.service
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
            .map(|addr| current.iter().find(|e| e.addr == addr).cloned().unwrap_or_else(|| Endpoint::new(addr)))
            .collect();
        let changed = next.len() != current.len() || next.iter().zip(current.iter()).any(|(a, b)| a.addr != b.addr);
        if changed {
            tracing::info!(upstream = %self.name, endpoints = next.len(), "upstream endpoints changed");
            self.endpoints.store(Arc::new(next));
        }
    }
}
