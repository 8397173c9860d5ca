//! With the database out of reach, the key cache keeps answering from its
//! snapshot, writes and the ping fail with `Unavailable`, and once the
//! database is back everything recovers without a restart.

mod common;

use std::time::Duration;

use common::{TestDb, within};
use gatehouse_store::{
    AuthOutcome, Backend, CacheSync, NewAuditEvent, NewKey, Outcome, Store, StoreError, StoreOptions,
};
use gatehouse_test_support::TcpProxy;

backend_tests!(cache_serves_after_pool_closes);

fn key(principal: &str) -> NewKey {
    NewKey { principal: principal.into(), scopes: vec![], expires_at: None }
}

fn assert_unavailable<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>) {
    assert!(matches!(&result, Err(StoreError::Unavailable { .. })), "{what}: expected Unavailable, got {result:?}");
}

async fn cache_serves_after_pool_closes(store: Store, _db: TestDb) {
    let live = store.create_key("admin", key("svc-a")).await.expect("create live");
    let revoked = store.create_key("admin", key("svc-b")).await.expect("create revoked");
    store.revoke_key("admin", &revoked.info.id).await.expect("revoke");
    let cache = store
        .key_cache(CacheSync { poll_interval: Duration::from_millis(50), ..CacheSync::default() })
        .await
        .expect("cache");

    store.close().await;
    tokio::time::sleep(Duration::from_millis(150)).await;

    assert!(matches!(cache.authenticate(live.key.expose()), AuthOutcome::Ok(_)));
    assert_eq!(cache.authenticate(revoked.key.expose()), AuthOutcome::Revoked);
    assert_unavailable("create", store.create_key("admin", key("svc-c")).await);
    assert_unavailable("revoke", store.revoke_key("admin", &live.info.id).await);
    assert_unavailable("list", store.list_keys().await);
    assert_unavailable("ping", store.ping().await);
    let event = NewAuditEvent::new("admin", "config.reload", "v2", Outcome::Success, "");
    assert_unavailable("audit", store.record_audit(event).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_and_recovery() {
    common::run(Backend::Postgres, outage_and_recovery).await;
}

/// One replica reaches PostgreSQL through a proxy that the test cuts and
/// restores; the other (`store`) keeps direct access throughout.
async fn outage_and_recovery(store: Store, db: TestDb) {
    let proxy = TcpProxy::start(db.server_addr()).await;
    let opts = StoreOptions {
        max_connections: 2,
        acquire_timeout: Duration::from_millis(500),
        ping_timeout: Duration::from_millis(500),
        ..StoreOptions::default()
    };
    let cut = Store::connect(&db.url_via(proxy.addr()), opts).await.expect("connect through proxy");
    let created = store.create_key("admin", key("svc-a")).await.expect("create");
    let sync = CacheSync {
        poll_interval: Duration::from_millis(200),
        notify_fallback_interval: Duration::from_millis(500),
        max_backoff: Duration::from_millis(400),
    };
    let cache = cut.key_cache(sync).await.expect("cache through proxy");
    assert!(matches!(cache.authenticate(created.key.expose()), AuthOutcome::Ok(_)));

    proxy.cut();
    assert_unavailable("create while down", cut.create_key("admin", key("svc-b")).await);
    assert_unavailable("ping while down", cut.ping().await);
    assert!(matches!(cache.authenticate(created.key.expose()), AuthOutcome::Ok(_)), "cache serves while down");
    let failing = within(Duration::from_secs(3), || cache.status().consecutive_failures > 0).await;
    assert!(failing.is_some(), "sync failures are visible: {:?}", cache.status());

    // Revoked elsewhere while this replica cannot hear about it.
    store.revoke_key("admin", &created.info.id).await.expect("revoke directly");

    proxy.restore().await;
    let seen =
        within(Duration::from_secs(5), || cache.authenticate(created.key.expose()) == AuthOutcome::Revoked).await;
    assert!(seen.is_some(), "revocation caught up after recovery: {:?}", cache.status());
    let mut ping = cut.ping().await;
    for _ in 0..50 {
        if ping.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        ping = cut.ping().await;
    }
    ping.expect("ping recovers");
    cut.create_key("admin", key("svc-c")).await.expect("writes recover");
    assert!(store.verify_audit().await.expect("verify").is_ok());
}
