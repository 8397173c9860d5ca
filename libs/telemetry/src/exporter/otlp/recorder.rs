//! The recorder behind the OTLP exporter.
//!
//! metrics-exporter-prometheus keeps its values private (it offers only
//! rendered text), so OTLP gets its own store rather than parsing text back:
//! counters and gauges are atomics, histograms are fixed-bucket atomic
//! counts over the same bounds Prometheus uses. Memory is bounded by the
//! number of series, with no upkeep, and a push reads typed values.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use metrics::atomics::AtomicU64;
use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{Registry, Storage};

use super::proto::{self, Data, Metric};
use crate::Buckets;

/// Counts per bucket (OTLP sends them per bucket, not cumulative), plus sum and count.
#[derive(Debug)]
pub(crate) struct FixedHistogram {
    bounds: Arc<[f64]>,
    /// One per bound, plus the overflow bucket.
    counts: Box<[AtomicU64]>,
    count: AtomicU64,
    /// An f64's bits.
    sum: AtomicU64,
}

impl FixedHistogram {
    fn new(bounds: Arc<[f64]>) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self { bounds, counts, count: AtomicU64::new(0), sum: AtomicU64::new(0) }
    }
}

impl HistogramFn for FixedHistogram {
    fn record(&self, value: f64) {
        // OTLP buckets are upper-inclusive: bucket i holds (bounds[i-1], bounds[i]].
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| Some((f64::from_bits(bits) + value).to_bits()));
    }
}

/// Creates storage with each histogram's configured bounds.
#[derive(Debug)]
struct FixedStorage {
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

/// The store shared by the recorder and the push task.
#[derive(Debug)]
pub(crate) struct Store {
    registry: Registry<Key, FixedStorage>,
    descriptions: Mutex<HashMap<String, (SharedString, Option<Unit>)>>,
    start_unix_nano: u64,
}

/// A `metrics` recorder writing into a [`Store`].
#[derive(Debug, Clone)]
pub(crate) struct OtlpRecorder(pub(crate) Arc<Store>);

impl OtlpRecorder {
    pub(crate) fn new(buckets: &Buckets) -> Self {
        let by_name = crate::catalogue::ALL
            .iter()
            .filter(|m| matches!(m.kind, crate::catalogue::Kind::Histogram(_)))
            .map(|m| (m.name, Arc::from(buckets.for_metric(m.name))))
            .collect();
        let storage = FixedStorage { latency: Arc::from(buckets.latency.as_slice()), by_name };
        Self(Arc::new(Store {
            registry: Registry::new(storage),
            descriptions: Mutex::new(HashMap::new()),
            start_unix_nano: unix_nano(SystemTime::now()),
        }))
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        let mut d = self.0.descriptions.lock().unwrap_or_else(PoisonError::into_inner);
        d.entry(key.as_str().to_owned()).or_insert((help, unit));
    }
}

impl Recorder for OtlpRecorder {
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

fn unix_nano(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn attributes(key: &Key) -> Vec<proto::KeyValue> {
    key.labels().map(|l| proto::kv(l.key(), l.value())).collect()
}

/// UCUM units, as OTLP expects them.
fn ucum(unit: Option<Unit>) -> &'static str {
    match unit {
        Some(Unit::Seconds) => "s",
        Some(Unit::Bytes) => "By",
        Some(Unit::Count) | None => "1",
        Some(other) => other.as_canonical_label(),
    }
}

impl Store {
    /// Everything recorded so far, as cumulative OTLP metrics.
    pub(crate) fn snapshot(&self, now: SystemTime) -> Vec<Metric> {
        let (start, time) = (self.start_unix_nano, unix_nano(now));
        let mut by_name: BTreeMap<String, Data> = BTreeMap::new();
        self.registry.visit_counters(|key, c| {
            let point = number_point(key, start, time, proto::Value::AsInt(c.load(Ordering::Relaxed) as i64));
            let entry = by_name.entry(key.name().to_owned()).or_insert_with(|| {
                Data::Sum(proto::Sum {
                    data_points: vec![],
                    aggregation_temporality: proto::CUMULATIVE,
                    is_monotonic: true,
                })
            });
            if let Data::Sum(s) = entry {
                s.data_points.push(point);
            }
        });
        self.registry.visit_gauges(|key, g| {
            let point =
                number_point(key, start, time, proto::Value::AsDouble(f64::from_bits(g.load(Ordering::Relaxed))));
            let entry = by_name
                .entry(key.name().to_owned())
                .or_insert_with(|| Data::Gauge(proto::Gauge { data_points: vec![] }));
            if let Data::Gauge(s) = entry {
                s.data_points.push(point);
            }
        });
        self.registry.visit_histograms(|key, h| {
            let point = proto::HistogramDataPoint {
                attributes: attributes(key),
                start_time_unix_nano: start,
                time_unix_nano: time,
                count: h.count.load(Ordering::Relaxed),
                sum: Some(f64::from_bits(h.sum.load(Ordering::Relaxed))),
                bucket_counts: h.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
                explicit_bounds: h.bounds.to_vec(),
            };
            let entry = by_name.entry(key.name().to_owned()).or_insert_with(|| {
                Data::Histogram(proto::Histogram { data_points: vec![], aggregation_temporality: proto::CUMULATIVE })
            });
            if let Data::Histogram(s) = entry {
                s.data_points.push(point);
            }
        });
        let descriptions = self.descriptions.lock().unwrap_or_else(PoisonError::into_inner);
        by_name
            .into_iter()
            .map(|(name, data)| {
                let (help, unit) = descriptions.get(&name).map_or(("", None), |(h, u)| (h.as_ref(), *u));
                Metric { description: help.to_owned(), unit: ucum(unit).to_owned(), name, data: Some(data) }
            })
            .collect()
    }
}

fn number_point(key: &Key, start: u64, time: u64, value: proto::Value) -> proto::NumberDataPoint {
    proto::NumberDataPoint {
        attributes: attributes(key),
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(value),
    }
}
