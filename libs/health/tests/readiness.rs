//! `/healthz` and `/readyz` through every readiness transition, driven
//! through the router with `oneshot` (no sockets).

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use gatehouse_health::{ConfigHash, Health, Info};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn info() -> Info {
    Info {
        version: "0.1.0".into(),
        commit: "abc1234".into(),
        build_time: "2025-01-02T03:04:05Z".into(),
        config_hash: ConfigHash::new("sha256:00"),
        started_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        listeners: BTreeMap::from([
            ("admin".into(), "127.0.0.1:9090".into()),
            ("public".into(), "0.0.0.0:8080".into()),
        ]),
    }
}

async fn get(app: &Router, uri: &str) -> (StatusCode, String) {
    let request = Request::get(uri).body(Body::empty()).expect("valid request");
    let response = app.clone().oneshot(request).await.expect("the router is infallible");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("in-memory body").to_bytes();
    (status, String::from_utf8(bytes.to_vec()).expect("utf-8 body"))
}

/// Asserts `/readyz` (plain and verbose) and that liveness is unaffected.
async fn assert_ready(app: &Router, status: StatusCode, plain: &str, verbose: &str) {
    assert_eq!(get(app, "/readyz").await, (status, plain.to_owned()));
    assert_eq!(get(app, "/readyz?verbose").await, (status, verbose.to_owned()));
    assert_eq!(get(app, "/healthz").await, (StatusCode::OK, "ok\n".to_owned()));
}

#[tokio::test]
async fn readiness_follows_config_checks_and_draining() {
    let health = Health::new();
    let app = gatehouse_health::router(health.clone(), info());
    const UNAVAILABLE: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

    assert_ready(
        &app,
        UNAVAILABLE,
        "not ready: config_loaded\n",
        "[-]config_loaded failed: config not loaded\n[+]draining ok\nreadyz check failed\n",
    )
    .await;

    health.set_config_loaded(true);
    assert_ready(&app, StatusCode::OK, "ok\n", "[+]config_loaded ok\n[+]draining ok\nreadyz check passed\n").await;

    let upstream = health.register("upstream:echo", true);
    let cache = health.register("upstream:cache", false);
    assert_ready(
        &app,
        UNAVAILABLE,
        "not ready: upstream:echo\n",
        "[+]config_loaded ok\n[+]draining ok\n[-]upstream:echo failed: not yet checked\n\
         [-]upstream:cache failed: not yet checked (optional)\nreadyz check failed\n",
    )
    .await;

    upstream.report(Err("no endpoint answers".into()), Duration::from_millis(12));
    cache.report(Err("connection refused".into()), Duration::from_millis(3));
    assert_ready(
        &app,
        UNAVAILABLE,
        "not ready: upstream:echo\n",
        "[+]config_loaded ok\n[+]draining ok\n[-]upstream:echo failed: no endpoint answers (12ms)\n\
         [-]upstream:cache failed: connection refused (3ms) (optional)\nreadyz check failed\n",
    )
    .await;

    // The optional check still fails; it must not matter.
    upstream.report(Ok(()), Duration::from_millis(4));
    assert_ready(
        &app,
        StatusCode::OK,
        "ok\n",
        "[+]config_loaded ok\n[+]draining ok\n[+]upstream:echo ok (4ms)\n\
         [-]upstream:cache failed: connection refused (3ms) (optional)\nreadyz check passed\n",
    )
    .await;

    // A reload that failed.
    health.set_config_loaded(false);
    assert_eq!(get(&app, "/readyz").await, (UNAVAILABLE, "not ready: config_loaded\n".to_owned()));
    health.set_config_loaded(true);
    assert_eq!(get(&app, "/readyz").await, (StatusCode::OK, "ok\n".to_owned()));

    health.start_draining();
    let draining_verbose = "[+]config_loaded ok\n[-]draining failed: shutting down\n[+]upstream:echo ok (4ms)\n\
                            [-]upstream:cache failed: connection refused (3ms) (optional)\nreadyz check failed\n";
    assert_ready(&app, UNAVAILABLE, "not ready: draining\n", draining_verbose).await;

    // Nothing brings a draining process back.
    health.set_config_loaded(true);
    upstream.report(Ok(()), Duration::from_millis(4));
    cache.report(Ok(()), Duration::from_millis(1));
    assert!(!health.is_ready());
    assert_eq!(get(&app, "/readyz").await, (UNAVAILABLE, "not ready: draining\n".to_owned()));
    assert_eq!(get(&app, "/healthz").await, (StatusCode::OK, "ok\n".to_owned()));
}

#[tokio::test]
async fn verbose_flag_spellings() {
    let health = Health::new();
    health.set_config_loaded(true);
    let app = gatehouse_health::router(health, info());
    let verbose = "[+]config_loaded ok\n[+]draining ok\nreadyz check passed\n".to_owned();
    for uri in ["/readyz?verbose", "/readyz?verbose=1", "/readyz?verbose=true", "/readyz?exclude=x&verbose"] {
        assert_eq!(get(&app, uri).await, (StatusCode::OK, verbose.clone()), "{uri}");
    }
    for uri in ["/readyz?verbose=0", "/readyz?verbose=false", "/readyz?format=a&format=b"] {
        assert_eq!(get(&app, uri).await, (StatusCode::OK, "ok\n".to_owned()), "{uri}");
    }
}

#[tokio::test]
async fn readyz_json_lists_every_check() {
    let health = Health::new();
    let app = gatehouse_health::router(health.clone(), info());
    let upstream = health.register("upstream:echo", true);
    upstream.report(Err("no endpoint answers".into()), Duration::from_millis(12));
    let db = health.register("database", false);
    db.report(Ok(()), Duration::from_millis(2));

    let (status, body) = get(&app, "/readyz?format=json").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    let expected = serde_json::json!({
        "ready": false,
        "checks": [
            {"name": "config_loaded", "ok": false, "required": true, "message": "config not loaded", "latency_ms": null},
            {"name": "draining", "ok": true, "required": true, "message": null, "latency_ms": null},
            {"name": "upstream:echo", "ok": false, "required": true, "message": "no endpoint answers", "latency_ms": 12},
            {"name": "database", "ok": true, "required": false, "message": null, "latency_ms": 2},
        ]
    });
    assert_eq!(body, expected);
}

#[tokio::test]
async fn info_reports_build_config_and_listeners() {
    let info = info();
    let hash = info.config_hash.clone();
    let app = gatehouse_health::router(Health::new(), info);
    let expected = |hash: &str| {
        serde_json::json!({
            "version": "0.1.0",
            "commit": "abc1234",
            "build_time": "2025-01-02T03:04:05Z",
            "config_hash": hash,
            "started_at": "2023-11-14T22:13:20Z",
            "listeners": {"admin": "127.0.0.1:9090", "public": "0.0.0.0:8080"},
        })
    };
    let json = |body: &str| serde_json::from_str::<serde_json::Value>(body).expect("JSON body");

    let (status, body) = get(&app, "/info").await;
    assert_eq!((status, json(&body)), (StatusCode::OK, expected("sha256:00")));

    hash.set("sha256:11");
    let (status, body) = get(&app, "/info").await;
    assert_eq!((status, json(&body)), (StatusCode::OK, expected("sha256:11")));
}

#[tokio::test]
async fn subscribers_and_drain_waiters_see_changes() {
    let health = Health::new();
    let mut ready = health.subscribe();
    assert!(!*ready.borrow_and_update());

    health.set_config_loaded(true);
    assert!(ready.has_changed().expect("sender alive"));
    assert!(*ready.borrow_and_update());

    // A change that leaves readiness as it was notifies nobody.
    health.set_config_loaded(true);
    assert!(!ready.has_changed().expect("sender alive"));

    let drained = tokio::spawn(health.draining());
    tokio::task::yield_now().await;
    assert!(!drained.is_finished());
    health.start_draining();
    tokio::time::timeout(Duration::from_secs(5), drained).await.expect("resolves").expect("no panic");
    assert!(health.is_draining());
    assert!(!*ready.borrow_and_update());
    // Already draining: resolves at once.
    tokio::time::timeout(Duration::from_secs(5), health.draining()).await.expect("resolves");
}
