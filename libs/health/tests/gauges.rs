//! `gateway_ready` and `gateway_draining` follow the state, read from a
//! recorder built for the test (never the global one).

use std::time::Duration;

use gatehouse_health::{Health, gauges};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// The value of every gauge named `gateway_*`, sorted by name.
fn gauges(snapshotter: &Snapshotter) -> Vec<(String, f64)> {
    let mut out: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Gauge(v) => Some((key.key().name().to_owned(), v.into_inner())),
            _ => None,
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn expect(ready: f64, draining: f64) -> Vec<(String, f64)> {
    vec![(gauges::DRAINING.to_owned(), draining), (gauges::READY.to_owned(), ready)]
}

#[test]
fn gauges_follow_readiness_and_draining() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The handles bind to the recorder current when `Health` is built;
    // later updates land there without it being current.
    let health = metrics::with_local_recorder(&recorder, Health::new);

    // Both series exist from the start, at zero.
    assert_eq!(gauges(&snapshotter), expect(0.0, 0.0));

    health.set_config_loaded(true);
    assert_eq!(gauges(&snapshotter), expect(1.0, 0.0));

    let upstream = health.register("upstream:echo", true);
    assert_eq!(gauges(&snapshotter), expect(0.0, 0.0));
    upstream.report(Ok(()), Duration::from_millis(1));
    assert_eq!(gauges(&snapshotter), expect(1.0, 0.0));

    health.start_draining();
    assert_eq!(gauges(&snapshotter), expect(0.0, 1.0));

    upstream.report(Ok(()), Duration::from_millis(1));
    assert_eq!(gauges(&snapshotter), expect(0.0, 1.0));
}

#[test]
fn gauges_are_described() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _health = metrics::with_local_recorder(&recorder, Health::new);
    let mut described: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, description, _)| (key.key().name().to_owned(), description.is_some()))
        .collect();
    described.sort();
    assert_eq!(described, [(gauges::DRAINING.to_owned(), true), (gauges::READY.to_owned(), true)]);
}
