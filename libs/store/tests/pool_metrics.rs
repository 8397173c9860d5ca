//! The `gateway_db_*` series, read from a recorder built for the test: pool
//! gauges follow the pool's real state, operations are timed and failures
//! counted, and seeding creates every series.

mod common;

use std::time::Duration;

use common::{TestDb, within};
use gatehouse_store::{DbMetrics, NewKey, Operation, Store, StoreOptions, metric_names};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

backend_tests!(
    gauges_follow_connections_in_use,
    operations_are_timed_and_failures_counted,
    seeding_creates_every_series
);

const MAX: u32 = 8;

async fn instrumented(db: &TestDb) -> (Store, Snapshotter) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let metrics = metrics::with_local_recorder(&recorder, DbMetrics::register);
    let opts = StoreOptions { max_connections: MAX, metrics: Some(metrics), ..StoreOptions::default() };
    (db.store_with(opts).await, snapshotter)
}

/// Every series as (name, label values joined by ',', value).
fn series(snapshotter: &Snapshotter) -> Vec<(String, String, DebugValue)> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let labels: Vec<&str> = key.key().labels().map(|l| l.value()).collect();
            (key.key().name().to_owned(), labels.join(","), value)
        })
        .collect()
}

fn gauge(all: &[(String, String, DebugValue)], name: &str, labels: &str) -> Option<f64> {
    all.iter().find_map(|(n, l, v)| match v {
        DebugValue::Gauge(g) if n == name && l == labels => Some(g.into_inner()),
        _ => None,
    })
}

fn counter(all: &[(String, String, DebugValue)], name: &str, labels: &str) -> Option<u64> {
    all.iter().find_map(|(n, l, v)| match v {
        DebugValue::Counter(c) if n == name && l == labels => Some(*c),
        _ => None,
    })
}

fn samples(all: &[(String, String, DebugValue)], name: &str, labels: &str) -> usize {
    all.iter()
        .find_map(|(n, l, v)| match v {
            DebugValue::Histogram(h) if n == name && l == labels => Some(h.len()),
            _ => None,
        })
        .unwrap_or(0)
}

/// Waits until no connection is in use: connections (such as the
/// migration's) go back to the pool in the background after use.
async fn settle(store: &Store, snapshotter: &Snapshotter) {
    let idle = within(Duration::from_secs(2), || {
        store.sample_pool();
        gauge(&series(snapshotter), metric_names::POOL_CONNECTIONS, "in_use") == Some(0.0)
    });
    assert!(idle.await.is_some(), "in_use never returned to 0");
}

async fn gauges_follow_connections_in_use(_store: Store, db: TestDb) {
    let (store, snapshotter) = instrumented(&db).await;
    settle(&store, &snapshotter).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(store.pool().acquire().await.expect("hold a connection"));
    }
    store.sample_pool();
    let all = series(&snapshotter);
    assert_eq!(gauge(&all, metric_names::POOL_CONNECTIONS, "in_use"), Some(5.0));
    let idle = gauge(&all, metric_names::POOL_CONNECTIONS, "idle").expect("idle gauge");
    assert_eq!(idle, f64::from(store.pool().size()) - 5.0);
    assert_eq!(gauge(&all, metric_names::POOL_MAX_CONNECTIONS, ""), Some(f64::from(MAX)));

    // The sampler alone keeps the gauges current.
    let sampler = store.spawn_pool_sampler(Duration::from_millis(20));
    held.truncate(2);
    let in_use = || gauge(&series(&snapshotter), metric_names::POOL_CONNECTIONS, "in_use");
    assert!(within(Duration::from_secs(2), || in_use() == Some(2.0)).await.is_some(), "in_use = {:?}", in_use());
    drop(held);
    assert!(within(Duration::from_secs(2), || in_use() == Some(0.0)).await.is_some(), "in_use = {:?}", in_use());

    store.close().await;
    tokio::time::timeout(Duration::from_secs(2), sampler).await.expect("sampler stops").expect("sampler ran");
}

async fn operations_are_timed_and_failures_counted(_store: Store, db: TestDb) {
    let (store, snapshotter) = instrumented(&db).await;
    let new = || NewKey { principal: "svc-a".into(), scopes: vec![], expires_at: None };
    store.create_key("admin", new()).await.expect("create");
    store.list_keys().await.expect("list");
    let all = series(&snapshotter);
    assert_eq!(samples(&all, metric_names::QUERY_DURATION, "key_create"), 1);
    assert_eq!(samples(&all, metric_names::QUERY_DURATION, "key_list"), 1);
    assert!(samples(&all, metric_names::POOL_ACQUIRE_DURATION, "") >= 2);

    // A refused input is not a database failure; a closed pool is.
    assert!(store.create_key("bad actor", new()).await.is_err());
    store.close().await;
    assert!(store.create_key("admin", new()).await.is_err());
    let all = series(&snapshotter);
    assert_eq!(counter(&all, metric_names::ERRORS, "key_create"), Some(1));
}

async fn seeding_creates_every_series(_store: Store, db: TestDb) {
    let (store, snapshotter) = instrumented(&db).await;
    store.seed_metrics();
    let all = series(&snapshotter);
    for op in Operation::ALL {
        assert_eq!(counter(&all, metric_names::ERRORS, op.as_str()), Some(0), "{op}");
    }
    assert!(gauge(&all, metric_names::POOL_CONNECTIONS, "idle").is_some());
    settle(&store, &snapshotter).await;
    assert_eq!(gauge(&all, metric_names::POOL_MAX_CONNECTIONS, ""), Some(f64::from(MAX)));
}
