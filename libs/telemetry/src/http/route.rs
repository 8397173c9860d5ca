//! The `route` label: a configured route's name with its cached handles.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use metrics::{Counter, Gauge, Histogram};

use crate::catalogue::{HTTP_REQUEST_DURATION, HTTP_REQUESTS, HTTP_REQUESTS_IN_FLIGHT, OVERHEAD};
use crate::series::{self, SeriesCache};

/// Method label values; anything else is `other`, so clients cannot mint series.
const METHODS: [&str; 10] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other"];

/// The matched route, as the `route` label, with its cached handles.
///
/// The gateway builds one per configured route when it loads the config
/// (after the recorder is installed) and inserts a clone into each request's
/// extensions *before* the request reaches [`HttpMetrics`](super::HttpMetrics). Cloning is one
/// reference-count increment.
#[derive(Clone)]
pub struct RouteLabel(Arc<RouteSeries>);

struct RouteSeries {
    name: Arc<str>,
    in_flight: Gauge,
    overhead: Histogram,
    outcomes: SeriesCache<Outcome>,
}

#[derive(Clone)]
struct Outcome {
    requests: Counter,
    duration: Histogram,
}

impl RouteLabel {
    /// Builds the label and its handles for a configured route.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        let name = name.into();
        Self(Arc::new(RouteSeries {
            in_flight: series::gauge(&HTTP_REQUESTS_IN_FLIGHT, [&name]),
            overhead: series::histogram(&OVERHEAD, []),
            outcomes: SeriesCache::new(),
            name,
        }))
    }

    /// The route's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Makes `{route, method, code}` exist at zero, and the route's
    /// in-flight gauge, without touching values already counted.
    pub fn seed(&self, method: &Method, code: u16) {
        self.0.in_flight.increment(0.0);
        self.0.with_outcome(method_index(method), code, |o| o.requests.increment(0));
    }

    /// Counts a request as started.
    pub(super) fn started(&self) {
        self.0.in_flight.increment(1.0);
    }

    pub(super) fn overhead(&self) -> &Histogram {
        &self.0.overhead
    }

    /// Records a request that ended with `code` after `elapsed`.
    pub(super) fn finish(&self, method: u8, code: u16, elapsed: Duration) {
        let s = &self.0;
        s.in_flight.decrement(1.0);
        s.with_outcome(method, code, |o| {
            o.requests.increment(1);
            o.duration.record(elapsed.as_secs_f64());
        });
    }
}

impl RouteSeries {
    fn with_outcome(&self, method: u8, code: u16, f: impl FnOnce(&Outcome)) {
        let key = u32::from(method) * 1000 + u32::from(code);
        let make = || {
            let (m, c) = (METHODS[usize::from(method)], code.to_string());
            Outcome {
                requests: series::counter(&HTTP_REQUESTS, [&self.name, m, &c]),
                duration: series::histogram(&HTTP_REQUEST_DURATION, [&self.name, m, &c]),
            }
        };
        self.outcomes.with(key, make, f);
    }
}

impl fmt::Debug for RouteLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RouteLabel").field(&self.0.name).finish()
    }
}

/// The method's index in [`METHODS`]; `other` for extension methods.
pub(super) fn method_index(method: &Method) -> u8 {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_indexes_its_own_label() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
            Method::CONNECT,
            Method::TRACE,
        ] {
            assert_eq!(METHODS[usize::from(method_index(&m))], m.as_str());
        }
        let purge = Method::from_bytes(b"PURGE").expect("token");
        assert_eq!(METHODS[usize::from(method_index(&purge))], "other");
    }
}
