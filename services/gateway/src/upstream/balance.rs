//! Load balancing: round robin, or power of two choices over in-flight load.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Endpoint;
use crate::config::Balance;

/// A picked endpoint, counted as busy until the guard is dropped.
#[derive(Debug)]
pub struct EndpointGuard(Arc<Endpoint>);

impl EndpointGuard {
    fn new(endpoint: Arc<Endpoint>) -> Self {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(endpoint)
    }

    /// The endpoint picked.
    pub fn endpoint(&self) -> &Endpoint {
        &self.0
    }
}

impl Drop for EndpointGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) fn pick(policy: Balance, endpoints: &[Arc<Endpoint>], next: &AtomicUsize) -> Option<EndpointGuard> {
    let n = endpoints.len();
    let chosen = match n {
        0 => return None,
        1 => &endpoints[0],
        _ => match policy {
            Balance::RoundRobin => {
                // The next healthy endpoint in turn; all of them when none is.
                let start = next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|i| &endpoints[(start + i) % n]).find(|e| e.is_healthy()).unwrap_or(&endpoints[start % n])
            }
            Balance::P2c => {
                // Two distinct random endpoints; a healthy one beats an
                // unhealthy one, then the less loaded wins.
                let a = fastrand::usize(..n);
                let b = (a + 1 + fastrand::usize(..n - 1)) % n;
                let (ea, eb) = (&endpoints[a], &endpoints[b]);
                match (ea.is_healthy(), eb.is_healthy()) {
                    (true, false) => ea,
                    (false, true) => eb,
                    (false, false) => endpoints.iter().find(|e| e.is_healthy()).unwrap_or(ea),
                    (true, true) => {
                        if eb.load() < ea.load() {
                            eb
                        } else {
                            ea
                        }
                    }
                }
            }
        },
    };
    Some(EndpointGuard::new(Arc::clone(chosen)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: u16) -> Vec<Arc<Endpoint>> {
        let cfg = super::super::pool::PoolConfig {
            protocol: crate::config::Protocol::Http1,
            connect_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(60),
            max_idle: 1,
        };
        (1..=n).map(|p| Endpoint::new(([127, 0, 0, 1], p).into(), cfg)).collect()
    }

    #[test]
    fn round_robin_takes_each_in_turn() {
        let eps = endpoints(3);
        let next = AtomicUsize::new(0);
        let ports: Vec<u16> = (0..6)
            .map(|_| pick(Balance::RoundRobin, &eps, &next).map(|g| g.endpoint().addr.port()).unwrap_or(0))
            .collect();
        assert_eq!(ports, vec![1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn p2c_avoids_the_loaded_endpoint() {
        let eps = endpoints(2);
        let next = AtomicUsize::new(0);
        let _busy: Vec<EndpointGuard> = (0..5).map(|_| EndpointGuard::new(Arc::clone(&eps[0]))).collect();
        for _ in 0..20 {
            let g = pick(Balance::P2c, &eps, &next).map(|g| g.endpoint().addr.port());
            assert_eq!(g, Some(2));
        }
    }

    #[test]
    fn unhealthy_endpoints_are_skipped_unless_all_are() {
        let eps = endpoints(3);
        let next = AtomicUsize::new(0);
        eps[1].healthy.store(false, Ordering::Relaxed);
        for policy in [Balance::RoundRobin, Balance::P2c] {
            for _ in 0..30 {
                let port = pick(policy, &eps, &next).map(|g| g.endpoint().addr.port());
                assert_ne!(port, Some(2), "{policy:?}");
            }
        }
        for e in &eps {
            e.healthy.store(false, Ordering::Relaxed);
        }
        assert!(pick(Balance::P2c, &eps, &next).is_some());
        assert!(pick(Balance::RoundRobin, &eps, &next).is_some());
    }

    #[test]
    fn guards_release_load() {
        let eps = endpoints(1);
        let next = AtomicUsize::new(0);
        let g = pick(Balance::P2c, &eps, &next);
        assert_eq!(eps[0].load(), 1);
        drop(g);
        assert_eq!(eps[0].load(), 0);
        assert!(pick(Balance::P2c, &[], &next).is_none());
    }
}
