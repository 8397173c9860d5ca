//! Histogram bucket layouts: every histogram is a real Prometheus
//! histogram with explicit buckets (never a summary, which Prometheus
//! cannot aggregate across replicas).

use crate::Error;
use crate::catalogue::{self, BucketClass, Kind};

/// Upper bounds (seconds) for each bucket layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    /// Request, call and query latencies.
    pub latency: Vec<f64>,
    /// Time spent inside the gateway (overhead, authorization), which is
    /// usually far below a millisecond.
    pub internal: Vec<f64>,
}

impl Default for Buckets {
    fn default() -> Self {
        Self {
            latency: vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            internal: vec![
                0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
            ],
        }
    }
}

impl Buckets {
    /// The bounds for one layout.
    pub fn for_class(&self, class: BucketClass) -> &[f64] {
        match class {
            BucketClass::Latency => &self.latency,
            BucketClass::Internal => &self.internal,
        }
    }

    /// Checks that each layout is non-empty, finite and strictly increasing.
    pub fn validate(&self) -> Result<(), Error> {
        for (field, bounds) in [("latency", &self.latency), ("internal", &self.internal)] {
            let problem = if bounds.is_empty() {
                Some("must not be empty")
            } else if bounds.iter().any(|b| !b.is_finite() || *b <= 0.0) {
                Some("must be finite and positive")
            } else if bounds.windows(2).any(|w| w[0] >= w[1]) {
                Some("must be strictly increasing")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(Error::Buckets { field, problem });
            }
        }
        Ok(())
    }

    /// The bounds a histogram of this name uses: its catalogue layout, or
    /// the latency layout for names outside the catalogue.
    pub fn for_metric(&self, name: &str) -> &[f64] {
        let class = catalogue::ALL
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| match m.kind {
                Kind::Histogram(class) => Some(class),
                _ => None,
            })
            .unwrap_or(BucketClass::Latency);
        self.for_class(class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_layouts_are_named() {
        assert!(Buckets::default().validate().is_ok());
        let bad = Buckets { latency: vec![0.1, 0.1], ..Buckets::default() };
        let err = bad.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(err, "metrics.buckets.latency: must be strictly increasing");
        let empty = Buckets { internal: vec![], ..Buckets::default() };
        assert!(empty.validate().is_err());
    }

    #[test]
    fn histograms_pick_their_layout() {
        let b = Buckets::default();
        assert_eq!(b.for_metric(catalogue::OVERHEAD.name), b.internal.as_slice());
        assert_eq!(b.for_metric(catalogue::HTTP_REQUEST_DURATION.name), b.latency.as_slice());
        assert_eq!(b.for_metric("something_else_seconds"), b.latency.as_slice());
    }
}
