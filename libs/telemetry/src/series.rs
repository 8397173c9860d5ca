//! Cached metric handles for the request path.
//!
//! Building a handle (`metrics::counter!` with labels) hashes the key and
//! takes the registry's lock; doing that per request would cost more than the
//! rest of the layer. Series whose label values are only known at response
//! time (status codes) are built once on first use and then found in a
//! small sorted table that readers load without locking.

use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use metrics::{Counter, Gauge, Histogram, Label};

use crate::catalogue::Metric;

/// Handles keyed by a small integer, built on first use.
#[derive(Debug)]
pub(crate) struct SeriesCache<V> {
    table: ArcSwap<Vec<(u32, V)>>,
    // Serializes inserts so two racing requests build one handle, not two.
    insert: Mutex<()>,
}

impl<V: Clone> SeriesCache<V> {
    pub(crate) fn new() -> Self {
        Self { table: ArcSwap::from_pointee(Vec::new()), insert: Mutex::new(()) }
    }

    /// Runs `f` on the handles for `key`, building them with `make` the
    /// first time. The steady state neither locks nor allocates.
    pub(crate) fn with<R>(&self, key: u32, make: impl FnOnce() -> V, f: impl FnOnce(&V) -> R) -> R {
        {
            let table = self.table.load();
            if let Ok(i) = table.binary_search_by_key(&key, |(k, _)| *k) {
                return f(&table[i].1);
            }
        }
        let _guard = self.insert.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.table.load_full();
        if let Ok(i) = current.binary_search_by_key(&key, |(k, _)| *k) {
            return f(&current[i].1);
        }
        let value = make();
        let result = f(&value);
        let mut next = Vec::with_capacity(current.len() + 1);
        next.extend(current.iter().cloned());
        let at = next.partition_point(|(k, _)| *k < key);
        next.insert(at, (key, value));
        self.table.store(Arc::new(next));
        result
    }
}

/// Builds a label list from catalogue keys and values.
pub(crate) fn labels<const N: usize>(metric: &Metric, values: [&str; N]) -> Vec<Label> {
    metric.labels.iter().zip(values).map(|(k, v)| Label::new(*k, v.to_owned())).collect()
}

/// A counter of `metric` with these label values (in catalogue order).
pub(crate) fn counter<const N: usize>(metric: &Metric, values: [&str; N]) -> Counter {
    metrics::counter!(metric.name, labels(metric, values))
}

/// A gauge of `metric` with these label values (in catalogue order).
pub(crate) fn gauge<const N: usize>(metric: &Metric, values: [&str; N]) -> Gauge {
    metrics::gauge!(metric.name, labels(metric, values))
}

/// A histogram of `metric` with these label values (in catalogue order).
pub(crate) fn histogram<const N: usize>(metric: &Metric, values: [&str; N]) -> Histogram {
    metrics::histogram!(metric.name, labels(metric, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_once_and_keeps_keys_sorted() {
        let cache = SeriesCache::<u32>::new();
        let mut built = 0;
        for key in [503u32, 200, 404, 200, 503] {
            let v = cache.with(
                key,
                || {
                    built += 1;
                    key * 10
                },
                |v| *v,
            );
            assert_eq!(v, key * 10);
        }
        assert_eq!(built, 3);
        let keys: Vec<u32> = cache.table.load().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![200, 404, 503]);
    }
}
