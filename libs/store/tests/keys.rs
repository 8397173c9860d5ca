//! Creating, listing, reading and revoking keys; secrets never come back out.

mod common;

use common::TestDb;
use gatehouse_store::{AuthOutcome, CacheSync, NewKey, Outcome, Store, StoreError};

backend_tests!(create_then_authenticate, list_never_returns_secrets, get_and_revoke);

fn new_key(principal: &str, scopes: &[&str]) -> NewKey {
    NewKey { principal: principal.into(), scopes: scopes.iter().map(|s| (*s).to_owned()).collect(), expires_at: None }
}

async fn create_then_authenticate(store: Store, _db: TestDb) {
    let created =
        store.create_key("admin-token", new_key("svc-a@team", &["echo.read", "admin"])).await.expect("create");
    assert_eq!(created.info.principal, "svc-a@team");
    assert_eq!(created.info.scopes, ["echo.read", "admin"]);
    assert_eq!(created.info.revoked_at, None);
    assert!(created.key.expose().starts_with(&format!("gh_{}_", created.info.id)));

    let cache = store.key_cache(CacheSync::default()).await.expect("cache");
    let AuthOutcome::Ok(identity) = cache.authenticate(created.key.expose()) else {
        panic!("fresh key must authenticate");
    };
    assert_eq!(&*identity.key_id, created.info.id);
    assert_eq!(&*identity.principal, "svc-a@team");
    assert_eq!(&*identity.scopes, ["echo.read", "admin"]);
    assert!(identity.has_scope("echo.read"));
    assert!(!identity.has_scope("echo.write"));

    assert_eq!(created.audit.action, "key.create");
    assert_eq!(created.audit.actor, "admin-token");
    assert_eq!(created.audit.target, created.info.id);
    assert_eq!(created.audit.outcome, Outcome::Success);
}

async fn list_never_returns_secrets(store: Store, _db: TestDb) {
    let a = store.create_key("admin", new_key("svc-a", &["echo.read"])).await.expect("create a");
    let b = store.create_key("admin", new_key("svc-b", &[])).await.expect("create b");
    let listed = store.list_keys().await.expect("list");
    assert_eq!(listed, vec![a.info.clone(), b.info.clone()]);

    let json = serde_json::to_string(&listed).expect("serialize");
    for created in [&a, &b] {
        let secret = created.key.expose().rsplit('_').next().expect("secret part");
        assert!(!json.contains(secret), "list leaked a secret");
        assert!(!format!("{created:?}").contains(secret), "Debug leaked a secret");
        assert!(!created.audit.reason.contains(secret), "audit reason leaked a secret");
    }
    assert!(!json.contains("hash"), "list exposes a hash field: {json}");
}

async fn get_and_revoke(store: Store, _db: TestDb) {
    let created = store.create_key("admin", new_key("svc-a", &["echo.read"])).await.expect("create");
    assert_eq!(store.get_key(&created.info.id).await.expect("get"), created.info);

    let revoked = store.revoke_key("ops:alice", &created.info.id).await.expect("revoke");
    assert!(revoked.info.revoked_at.is_some());
    assert_eq!(revoked.audit.action, "key.revoke");
    assert_eq!(revoked.audit.actor, "ops:alice");
    assert_eq!(revoked.audit.target, created.info.id);
    assert_eq!(store.get_key(&created.info.id).await.expect("get revoked"), revoked.info);

    let again = store.revoke_key("admin", &created.info.id).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");

    let missing = "aaaaaaaaaaaaaaaa";
    assert!(matches!(store.revoke_key("admin", missing).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(store.get_key(missing).await, Err(StoreError::NotFound { .. })));
}
