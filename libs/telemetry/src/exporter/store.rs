//! The recorder behind every exporter, and its store.
//!
//! Counters and gauges are atomics; histograms are fixed-bucket atomic
//! counts over the configured bounds. Recording a sample is a bucket search
//! and two atomic updates: nothing is buffered, so memory is bounded by the
//! number of series and no upkeep task has to drain samples. Every exporter
//! reads the same typed values: [`super::text`] renders them as Prometheus
//! text (`prometheus`, `console`), `otlp` encodes them as protobuf.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use metrics::atomics::AtomicU64;
use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{Registry, Storage};

use crate::{Buckets, Error};

/// Counts per bucket (not cumulative) and the sum of the samples.
#[derive(Debug)]
pub(crate) struct FixedHistogram {
    pub(crate) bounds: Arc<[f64]>,
    /// One per bound (samples `<=` it and above the previous bound), plus
    /// the overflow bucket.
    counts: Box<[AtomicU64]>,
    /// An f64's bits.
    sum: AtomicU64,
}

impl FixedHistogram {
    fn new(bounds: Arc<[f64]>) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self { bounds, counts, sum: AtomicU64::new(0) }
    }

    /// The count of each bucket, the overflow bucket last. The total count
    /// is their sum, so a reader never sees a count that disagrees with
    /// the buckets.
    pub(crate) fn counts(&self) -> impl Iterator<Item = u64> + '_ {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed))
    }

    /// The sum of every sample recorded.
    pub(crate) fn sum(&self) -> f64 {
        f64::from_bits(self.sum.load(Ordering::Relaxed))
    }
}

impl HistogramFn for FixedHistogram {
    fn record(&self, value: f64) {
        // Bucket i holds (bounds[i-1], bounds[i]]; NaN goes to the overflow
        // bucket. A scan from the lowest bound rather than a binary search:
        // latencies, the samples recorded on every request, mostly fall in
        // the first few buckets, where the scan stops after a compare or two.
        let i = self.bounds.iter().position(|b| value <= *b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| Some((f64::from_bits(bits) + value).to_bits()));
    }
}

/// Creates storage with each histogram's configured bounds.
#[derive(Debug)]
pub(crate) struct FixedStorage {
    latency: Arc<[f64]>,
    by_name: HashMap<&'static str, Arc<[f64]>>,
}

impl Storage<Key> for FixedStorage {
    type Counter = Arc<AtomicU64>;
    type Gauge = Arc<AtomicU64>;
    type Histogram = Arc<FixedHistogram>;

    fn counter(&self, _: &Key) -> Self::Counter {
        Arc::new(AtomicU64::new(0))
    }

    fn gauge(&self, _: &Key) -> Self::Gauge {
        Arc::new(AtomicU64::new(0))
    }

    fn histogram(&self, key: &Key) -> Self::Histogram {
        let bounds = self.by_name.get(key.name()).unwrap_or(&self.latency);
        Arc::new(FixedHistogram::new(Arc::clone(bounds)))
    }
}

/// A metric's description, as given to `describe_*`.
#[derive(Debug)]
pub(crate) struct Description {
    pub(crate) help: SharedString,
    pub(crate) unit: Option<Unit>,
}

/// Every series recorded so far, shared by the recorder and the exporter.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) registry: Registry<Key, FixedStorage>,
    descriptions: Mutex<HashMap<String, Description>>,
    /// When recording started: the start of every cumulative OTLP point.
    pub(crate) started: SystemTime,
}

impl Store {
    /// Every description, by metric name. Descriptions are written at
    /// start-up only, so a reader may hold this for a whole render.
    pub(crate) fn descriptions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Description>> {
        self.descriptions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The Prometheus text exposition of every series.
    pub(crate) fn render(&self) -> String {
        super::text::render(self)
    }
}

/// A `metrics` recorder writing into a [`Store`]: the one every exporter
/// but `none` installs, and the one tests and benchmarks use.
#[derive(Debug, Clone)]
pub struct MetricsRecorder(pub(crate) Arc<Store>);

impl MetricsRecorder {
    /// A recorder whose histograms use `buckets`: each catalogue histogram
    /// its layout, any other histogram the latency layout.
    pub fn new(buckets: &Buckets) -> Result<Self, Error> {
        buckets.validate()?;
        let by_name = crate::catalogue::ALL
            .iter()
            .filter(|m| matches!(m.kind, crate::catalogue::Kind::Histogram(_)))
            .map(|m| (m.name, Arc::from(buckets.for_metric(m.name))))
            .collect();
        let storage = FixedStorage { latency: Arc::from(buckets.latency.as_slice()), by_name };
        Ok(Self(Arc::new(Store {
            registry: Registry::new(storage),
            descriptions: Mutex::new(HashMap::new()),
            started: SystemTime::now(),
        })))
    }

    /// A handle that renders what this recorder holds.
    pub fn handle(&self) -> MetricsHandle {
        MetricsHandle(Arc::clone(&self.0))
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.0.descriptions().entry(key.as_str().to_owned()).or_insert(Description { help, unit });
    }
}

/// Reads a [`MetricsRecorder`]'s store.
#[derive(Debug, Clone)]
pub struct MetricsHandle(pub(crate) Arc<Store>);

impl MetricsHandle {
    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        self.0.render()
    }
}

impl Recorder for MetricsRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe(key, unit, help);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe(key, unit, help);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe(key, unit, help);
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0.registry.get_or_create_counter(key, |c| Counter::from_arc(Arc::clone(c)))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0.registry.get_or_create_gauge(key, |g| Gauge::from_arc(Arc::clone(g)))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0.registry.get_or_create_histogram(key, |h| Histogram::from_arc(Arc::clone(h)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_the_first_bucket_whose_bound_holds_them() {
        let h = FixedHistogram::new(Arc::from([0.1, 1.0].as_slice()));
        for v in [0.05, 0.1, 0.5, 1.0, 7.0, f64::NAN] {
            h.record(v);
        }
        assert_eq!(h.counts().collect::<Vec<_>>(), [2, 2, 2]);
        assert!(h.sum().is_nan());
        let h = FixedHistogram::new(Arc::from([0.1].as_slice()));
        h.record(0.25);
        h.record(0.5);
        assert_eq!(h.sum(), 0.75);
    }

    #[test]
    fn bad_bucket_layouts_are_refused() {
        let bad = Buckets { latency: vec![1.0, 0.5], ..Buckets::default() };
        assert!(MetricsRecorder::new(&bad).is_err());
    }
}
