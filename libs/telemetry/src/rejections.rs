//! `gateway_requests_rejected_total{reason}`: requests the gateway answered
//! itself instead of forwarding. The reasons are a closed set (DESIGN.md §3),
//! so the label cannot grow with traffic.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Histogram};

use crate::catalogue::{AUTHORIZATION_CHECK_LATENCY, REQUESTS_REJECTED};
use crate::series;

/// Why the gateway refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// No route matched.
    NoRoute,
    /// Missing or invalid credentials.
    Unauthenticated,
    /// Authenticated, but without the route's scopes.
    Forbidden,
    /// Over the identity's rate limit.
    RateLimited,
    /// Load shedding or the concurrency limit.
    Overloaded,
    /// The upstream's circuit breaker is open.
    CircuitOpen,
    /// The request body exceeds the route's limit.
    BodyTooLarge,
    /// A malformed request (e.g. no Host, two Hosts, a bad chunk).
    BadRequest,
}

impl RejectReason {
    /// Every reason, in label order.
    pub const ALL: [RejectReason; 8] = [
        Self::NoRoute,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::RateLimited,
        Self::Overloaded,
        Self::CircuitOpen,
        Self::BodyTooLarge,
        Self::BadRequest,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoRoute => "no_route",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::CircuitOpen => "circuit_open",
            Self::BodyTooLarge => "body_too_large",
            Self::BadRequest => "bad_request",
        }
    }
}

/// Cached rejection counters, one per reason. Cloning shares them.
#[derive(Clone, Debug)]
pub struct Rejections {
    counters: Arc<[Counter; 8]>,
}

impl Rejections {
    /// Builds the handles.
    pub fn new() -> Self {
        Self { counters: Arc::new(RejectReason::ALL.map(|r| series::counter(&REQUESTS_REJECTED, [r.as_str()]))) }
    }

    /// Counts one rejected request.
    pub fn reject(&self, reason: RejectReason) {
        self.counters[reason as usize].increment(1);
    }

    /// Makes every reason exist at zero.
    pub fn seed(&self) {
        self.counters.iter().for_each(|c| c.increment(0));
    }
}

impl Default for Rejections {
    fn default() -> Self {
        Self::new()
    }
}

/// The cached `authorization_check_latency_seconds` handle, for the auth
/// stage to record each check's duration.
#[derive(Clone, Debug)]
pub struct AuthorizationLatency(Histogram);

impl AuthorizationLatency {
    /// Builds the handle.
    pub fn new() -> Self {
        Self(series::histogram(&AUTHORIZATION_CHECK_LATENCY, []))
    }

    /// Records one check.
    pub fn record(&self, elapsed: Duration) {
        self.0.record(elapsed.as_secs_f64());
    }
}

impl Default for AuthorizationLatency {
    fn default() -> Self {
        Self::new()
    }
}
