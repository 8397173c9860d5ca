//! Per-cluster state the gateway reports outside the request path:
//! `gateway_upstream_endpoints{upstream,state}`,
//! `gateway_upstream_circuit_breaker_state{upstream}` and
//! `gateway_upstream_retries_total{upstream,reason}`.

use std::sync::Arc;

use metrics::{Counter, Gauge};

use crate::catalogue::{UPSTREAM_CIRCUIT_BREAKER_STATE, UPSTREAM_ENDPOINTS, UPSTREAM_RETRIES};
use crate::series;

/// An endpoint's state, the `state` label of `gateway_upstream_endpoints`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointState {
    /// Taking traffic.
    Healthy,
    /// Failing health checks.
    Unhealthy,
    /// Taken out by outlier detection.
    Ejected,
}

impl EndpointState {
    /// Every state, in label order.
    pub const ALL: [EndpointState; 3] = [Self::Healthy, Self::Unhealthy, Self::Ejected];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Ejected => "ejected",
        }
    }
}

/// A circuit breaker's state; the gauge holds its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed = 0,
    /// Probing whether the upstream recovered.
    HalfOpen = 1,
    /// Requests are refused.
    Open = 2,
}

/// Why a request was sent again, the `reason` label of retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// The connection could not be made.
    ConnectError,
    /// The upstream refused the stream before processing it (REFUSED_STREAM, GOAWAY).
    Refused,
    /// The upstream answered 503 or `UNAVAILABLE`.
    Unavailable,
    /// The per-try timeout passed.
    Timeout,
}

impl RetryReason {
    /// Every reason, in label order.
    pub const ALL: [RetryReason; 4] = [Self::ConnectError, Self::Refused, Self::Unavailable, Self::Timeout];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectError => "connect_error",
            Self::Refused => "refused",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
        }
    }
}

/// Cached handles for one cluster's endpoint, breaker and retry series.
/// Cloning shares them.
#[derive(Clone, Debug)]
pub struct ClusterGauges(Arc<Handles>);

#[derive(Debug)]
struct Handles {
    endpoints: [Gauge; 3],
    breaker: Gauge,
    retries: [Counter; 4],
}

impl ClusterGauges {
    /// Builds the handles for the cluster named `upstream`.
    pub fn new(upstream: &str) -> Self {
        Self(Arc::new(Handles {
            endpoints: EndpointState::ALL.map(|s| series::gauge(&UPSTREAM_ENDPOINTS, [upstream, s.as_str()])),
            breaker: series::gauge(&UPSTREAM_CIRCUIT_BREAKER_STATE, [upstream]),
            retries: RetryReason::ALL.map(|r| series::counter(&UPSTREAM_RETRIES, [upstream, r.as_str()])),
        }))
    }

    /// Sets how many endpoints are in `state`.
    pub fn set_endpoints(&self, state: EndpointState, count: usize) {
        self.0.endpoints[state as usize].set(count as f64);
    }

    /// Sets the breaker's state.
    pub fn set_breaker(&self, state: BreakerState) {
        self.0.breaker.set(f64::from(state as u8));
    }

    /// Counts one retry.
    pub fn retried(&self, reason: RetryReason) {
        self.0.retries[reason as usize].increment(1);
    }

    /// Makes every series exist, without changing values already set: a
    /// reload re-seeds while the gateway runs.
    pub fn seed(&self) {
        self.0.endpoints.iter().chain([&self.0.breaker]).for_each(|g| g.increment(0.0));
        self.0.retries.iter().for_each(|c| c.increment(0));
    }
}
