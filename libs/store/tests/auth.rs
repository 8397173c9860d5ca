//! Every answer of `KeyCache::authenticate`, from memory.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::TestDb;
use gatehouse_store::{AuthOutcome, CacheSync, CreatedKey, NewKey, Store};

backend_tests!(wrong_secret_is_unknown, unknown_id_is_unknown, malformed_keys, expired_key, revoked_key);

async fn create(store: &Store, expires_at: Option<i64>) -> CreatedKey {
    let new = NewKey { principal: "svc-a".into(), scopes: vec!["echo.read".into()], expires_at };
    store.create_key("admin", new).await.expect("create key")
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    i64::try_from(since_epoch.as_millis()).expect("millis fit i64")
}

/// The same key with its last secret character changed (still well-formed).
fn with_wrong_secret(key: &str) -> String {
    let mut wrong = key.to_owned();
    let last = wrong.pop().expect("non-empty key");
    wrong.push(if last == 'a' { 'b' } else { 'a' });
    wrong
}

async fn wrong_secret_is_unknown(store: Store, _db: TestDb) {
    let created = create(&store, None).await;
    let cache = store.key_cache(CacheSync::default()).await.expect("cache");
    assert!(matches!(cache.authenticate(created.key.expose()), AuthOutcome::Ok(_)));
    assert_eq!(cache.authenticate(&with_wrong_secret(created.key.expose())), AuthOutcome::Unknown);
}

async fn unknown_id_is_unknown(store: Store, _db: TestDb) {
    let created = create(&store, None).await;
    let cache = store.key_cache(CacheSync::default()).await.expect("cache");
    let secret = created.key.expose().rsplit('_').next().expect("secret part");
    assert_eq!(cache.authenticate(&format!("gh_aaaaaaaaaaaaaaaa_{secret}")), AuthOutcome::Unknown);
    let random = format!("gh_{}_{}", "z".repeat(16), "q".repeat(52));
    assert_eq!(cache.authenticate(&random), AuthOutcome::Unknown);
}

async fn malformed_keys(store: Store, _db: TestDb) {
    let created = create(&store, None).await;
    let cache = store.key_cache(CacheSync::default()).await.expect("cache");
    let key = created.key.expose();
    let malformed = [
        String::new(),
        "Bearer".to_owned(),
        key.replacen("gh_", "gx_", 1),
        key.to_uppercase(),
        format!("{key}a"),
        key[..key.len() - 1].to_owned(),
        key.replacen('_', "-", 2),
        format!("{key}' OR '1'='1"),
        "gh_".repeat(10_000),
    ];
    for presented in &malformed {
        let shown = &presented[..presented.len().min(40)];
        assert_eq!(cache.authenticate(presented), AuthOutcome::Malformed, "{shown}");
    }
}

async fn expired_key(store: Store, _db: TestDb) {
    let created = create(&store, Some(now_ms() + 300)).await;
    let cache = store.key_cache(CacheSync::default()).await.expect("cache");
    assert!(matches!(cache.authenticate(created.key.expose()), AuthOutcome::Ok(_)));
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(cache.authenticate(created.key.expose()), AuthOutcome::Expired);
    // Expiry is only revealed to the holder of the secret.
    assert_eq!(cache.authenticate(&with_wrong_secret(created.key.expose())), AuthOutcome::Unknown);
}

async fn revoked_key(store: Store, _db: TestDb) {
    let created = create(&store, None).await;
    store.revoke_key("admin", &created.info.id).await.expect("revoke");
    let cache = store.key_cache(CacheSync::default()).await.expect("cache");
    assert_eq!(cache.authenticate(created.key.expose()), AuthOutcome::Revoked);
    assert_eq!(cache.authenticate(&with_wrong_secret(created.key.expose())), AuthOutcome::Unknown);
    assert_eq!(cache.status().keys, 1);
}
