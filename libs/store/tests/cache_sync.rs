//! Changes made through one store reach another store's key cache: on
//! PostgreSQL through NOTIFY within 1 s, on SQLite within the poll interval.

mod common;

use std::time::Duration;

use common::{TestDb, within};
use gatehouse_store::{AuthOutcome, Backend, CacheSync, NewKey, Store};

backend_tests!(revocation_reaches_another_replica, new_key_reaches_another_replica);

const POLL: Duration = Duration::from_millis(250);

/// A cache on a second store (its own pool). The PostgreSQL safety-net poll
/// is pushed far out, so only NOTIFY can deliver within the limit.
async fn replica_cache(db: &TestDb) -> (Store, gatehouse_store::KeyCache) {
    let replica = db.store().await;
    let sync =
        CacheSync { poll_interval: POLL, notify_fallback_interval: Duration::from_secs(3600), ..CacheSync::default() };
    let cache = replica.key_cache(sync).await.expect("replica cache");
    (replica, cache)
}

/// How long a change may take to arrive.
fn limit(db: &TestDb) -> Duration {
    match db.backend() {
        Backend::Postgres => Duration::from_secs(1),
        // One poll interval, plus scheduling slack for a loaded CI machine.
        Backend::Sqlite => POLL + Duration::from_millis(150),
    }
}

async fn revocation_reaches_another_replica(store: Store, db: TestDb) {
    let new = NewKey { principal: "svc-a".into(), scopes: vec![], expires_at: None };
    let created = store.create_key("admin", new).await.expect("create");
    let (_replica, cache) = replica_cache(&db).await;
    assert!(matches!(cache.authenticate(created.key.expose()), AuthOutcome::Ok(_)));

    store.revoke_key("admin", &created.info.id).await.expect("revoke");
    let took = within(limit(&db), || cache.authenticate(created.key.expose()) == AuthOutcome::Revoked).await;
    let took = took.unwrap_or_else(|| panic!("revocation not seen within {:?}", limit(&db)));
    eprintln!("{:?}: revocation reached the other replica in {took:?}", db.backend());
}

async fn new_key_reaches_another_replica(store: Store, db: TestDb) {
    let (_replica, cache) = replica_cache(&db).await;
    let new = NewKey { principal: "svc-b".into(), scopes: vec!["echo.read".into()], expires_at: None };
    let created = store.create_key("admin", new).await.expect("create");
    let took = within(limit(&db), || matches!(cache.authenticate(created.key.expose()), AuthOutcome::Ok(_))).await;
    assert!(took.is_some(), "new key not seen within {:?}", limit(&db));
    assert_eq!(cache.status().keys, 1);
    assert_eq!(cache.status().consecutive_failures, 0);
}
