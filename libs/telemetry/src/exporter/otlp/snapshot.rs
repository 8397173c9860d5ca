//! Everything a [`Store`] holds, as cumulative OTLP metrics.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use metrics::{Key, Unit};

use super::proto::{self, Data, Metric};
use crate::exporter::store::Store;

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

/// Everything recorded so far, as cumulative OTLP metrics.
pub(crate) fn snapshot(store: &Store, now: SystemTime) -> Vec<Metric> {
    let (start, time) = (unix_nano(store.started), unix_nano(now));
    let mut by_name: BTreeMap<String, Data> = BTreeMap::new();
    store.registry.visit_counters(|key, c| {
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
    store.registry.visit_gauges(|key, g| {
        let point = number_point(key, start, time, proto::Value::AsDouble(f64::from_bits(g.load(Ordering::Relaxed))));
        let entry =
            by_name.entry(key.name().to_owned()).or_insert_with(|| Data::Gauge(proto::Gauge { data_points: vec![] }));
        if let Data::Gauge(s) = entry {
            s.data_points.push(point);
        }
    });
    store.registry.visit_histograms(|key, h| {
        let bucket_counts: Vec<u64> = h.counts().collect();
        let point = proto::HistogramDataPoint {
            attributes: attributes(key),
            start_time_unix_nano: start,
            time_unix_nano: time,
            count: bucket_counts.iter().sum(),
            sum: Some(h.sum()),
            bucket_counts,
            explicit_bounds: h.bounds.to_vec(),
        };
        let entry = by_name.entry(key.name().to_owned()).or_insert_with(|| {
            Data::Histogram(proto::Histogram { data_points: vec![], aggregation_temporality: proto::CUMULATIVE })
        });
        if let Data::Histogram(s) = entry {
            s.data_points.push(point);
        }
    });
    let descriptions = store.descriptions();
    by_name
        .into_iter()
        .map(|(name, data)| {
            let (help, unit) = descriptions.get(&name).map_or(("", None), |d| (d.help.as_ref(), d.unit));
            Metric { description: help.to_owned(), unit: ucum(unit).to_owned(), name, data: Some(data) }
        })
        .collect()
}

fn number_point(key: &Key, start: u64, time: u64, value: proto::Value) -> proto::NumberDataPoint {
    proto::NumberDataPoint {
        attributes: attributes(key),
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(value),
    }
}
