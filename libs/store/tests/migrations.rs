//! Migrations apply once and are safe to run again, from any replica; the
//! readiness ping answers on a migrated database.

mod common;

use std::time::Duration;

use common::TestDb;
use gatehouse_store::{NewKey, Store};

backend_tests!(migrations_are_idempotent, ping_answers);

async fn migrations_are_idempotent(store: Store, db: TestDb) {
    let created = store
        .create_key("admin", NewKey { principal: "svc-a".into(), scopes: vec![], expires_at: None })
        .await
        .expect("create key");

    store.migrate().await.expect("second migrate on the same store");
    let replica = db.store().await;
    replica.migrate().await.expect("migrate from another replica");

    assert_eq!(db.count(&store, "api_keys").await, 1);
    assert_eq!(db.count(&store, "audit_events").await, 1);
    assert_eq!(replica.get_key(&created.info.id).await.expect("key survives"), created.info);
}

async fn ping_answers(store: Store, _db: TestDb) {
    let rtt = store.ping().await.expect("ping");
    assert!(rtt < Duration::from_secs(2), "ping took {rtt:?}");
}
