//! Cached metric handles for the request path.
//!
//! Building a handle (`metrics::counter!` with labels) hashes the key and
//! takes the registry's lock; doing that per request would cost more than the
//! rest of the layer. Series whose label values are only known at response
//! time (status codes) are built once on first use and then found in a
//! small sorted table that readers load without locking.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use arc_swap::ArcSwap;
use metrics::{Counter, Gauge, Histogram, Label};

use crate::catalogue::Metric;

/// How many series a cache keeps in its fixed slots. A route or cluster
/// sees a handful of status codes in practice (its success code, seeded at
/// start-up, is the first); the rest go to the sorted overflow table.
const FIXED: usize = 4;

/// Handles keyed by a small integer, built on first use.
///
/// The first [`FIXED`] keys live in fixed slots, found with a few plain
/// loads; later keys live in a sorted table behind an `ArcSwap`, whose load
/// (a thread-local debt slot) costs about as much as the rest of a metrics
/// record, so the common case does not pay for it.
#[derive(Debug)]
pub(crate) struct SeriesCache<V> {
    fixed: [OnceLock<(u32, V)>; FIXED],
    /// Fixed slots filled so far; each is set before this count covers it.
    filled: AtomicUsize,
    overflow: ArcSwap<Vec<(u32, V)>>,
    // Serializes inserts so two racing requests build one handle, not two.
    insert: Mutex<()>,
}

impl<V: Clone> SeriesCache<V> {
    pub(crate) fn new() -> Self {
        Self {
            fixed: std::array::from_fn(|_| OnceLock::new()),
            filled: AtomicUsize::new(0),
            overflow: ArcSwap::from_pointee(Vec::new()),
            insert: Mutex::new(()),
        }
    }

    fn find_fixed(&self, key: u32) -> Option<&V> {
        let filled = self.filled.load(Ordering::Acquire);
        self.fixed[..filled].iter().filter_map(OnceLock::get).find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Runs `f` on the handles for `key`, building them with `make` the
    /// first time. The steady state neither locks nor allocates.
    pub(crate) fn with<R>(&self, key: u32, make: impl FnOnce() -> V, f: impl FnOnce(&V) -> R) -> R {
        if let Some(v) = self.find_fixed(key) {
            return f(v);
        }
        if self.filled.load(Ordering::Acquire) == FIXED {
            let table = self.overflow.load();
            if let Ok(i) = table.binary_search_by_key(&key, |(k, _)| *k) {
                return f(&table[i].1);
            }
        }
        let _guard = self.insert.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = self.find_fixed(key) {
            return f(v);
        }
        let filled = self.filled.load(Ordering::Acquire);
        if filled < FIXED {
            let value = make();
            let result = f(&value);
            // Only the lock holder sets slots, so this one is empty.
            let _ = self.fixed[filled].set((key, value));
            self.filled.store(filled + 1, Ordering::Release);
            return result;
        }
        let current = self.overflow.load_full();
        if let Ok(i) = current.binary_search_by_key(&key, |(k, _)| *k) {
            return f(&current[i].1);
        }
        let value = make();
        let result = f(&value);
        let mut next = Vec::with_capacity(current.len() + 1);
        next.extend(current.iter().cloned());
        let at = next.partition_point(|(k, _)| *k < key);
        next.insert(at, (key, value));
        self.overflow.store(Arc::new(next));
        result
    }

    /// Every key built so far: the fixed slots in insertion order, then
    /// the overflow in key order.
    #[cfg(test)]
    fn keys(&self) -> Vec<u32> {
        let filled = self.filled.load(Ordering::Acquire);
        let fixed = self.fixed[..filled].iter().filter_map(OnceLock::get).map(|(k, _)| *k);
        fixed.chain(self.overflow.load().iter().map(|(k, _)| *k)).collect()
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
    fn builds_each_key_once_in_fixed_slots_then_the_overflow() {
        let cache = SeriesCache::<u32>::new();
        let mut built = 0;
        let keys = [503u32, 200, 404, 200, 503, 302, 500, 201, 100, 500, 201, 302, 404];
        for key in keys {
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
        assert_eq!(built, 7);
        // The first four keys in arrival order, the rest sorted.
        assert_eq!(cache.keys(), vec![503, 200, 404, 302, 100, 201, 500]);
    }

    #[test]
    fn racing_threads_build_a_key_once() {
        let cache = Arc::new(SeriesCache::<u32>::new());
        let built = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (cache, built) = (Arc::clone(&cache), Arc::clone(&built));
                std::thread::spawn(move || {
                    for i in 0..200u32 {
                        let key = (i * 7 + t) % 12;
                        let v = cache.with(
                            key,
                            || {
                                built.fetch_add(1, Ordering::Relaxed);
                                key + 1
                            },
                            |v| *v,
                        );
                        assert_eq!(v, key + 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        assert_eq!(built.load(Ordering::Relaxed), 12);
        let mut keys = cache.keys();
        keys.sort_unstable();
        assert_eq!(keys, (0..12).collect::<Vec<_>>());
    }
}
