//! Oversized, malformed and SQL-laden admin input is refused before the
//! database sees it, and changes nothing; free text that passes is stored
//! verbatim, because every value is a bound parameter.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::TestDb;
use gatehouse_store::{NewAuditEvent, NewKey, Outcome, Store, StoreError};

backend_tests!(bad_input_changes_nothing, sql_in_free_text_is_stored_verbatim);

fn key(principal: &str, scopes: &[&str], expires_at: Option<i64>) -> NewKey {
    NewKey { principal: principal.into(), scopes: scopes.iter().map(|s| (*s).to_owned()).collect(), expires_at }
}

fn assert_validation<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>, field: &str) {
    match result {
        Err(StoreError::Validation { field: got, .. }) => assert_eq!(got, field, "{what}"),
        other => panic!("{what}: expected a validation error on {field}, got {other:?}"),
    }
}

async fn bad_input_changes_nothing(store: Store, db: TestDb) {
    let existing = store.create_key("admin", key("svc-a", &[], None)).await.expect("create");
    let keys_before = db.count(&store, "api_keys").await;
    let audit_before = db.count(&store, "audit_events").await;
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis()).expect("i64");

    let long = "a".repeat(129);
    let many: Vec<String> = (0..33).map(|i| format!("s{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let long_scope = "s".repeat(65);
    let bad_keys = [
        ("empty principal", key("", &[], None), "principal"),
        ("long principal", key(&long, &[], None), "principal"),
        ("sql principal", key("x'); DROP TABLE api_keys; --", &[], None), "principal"),
        ("space principal", key("svc a", &[], None), "principal"),
        ("too many scopes", key("svc-b", &many, None), "scopes"),
        ("long scope", key("svc-b", &[&long_scope], None), "scopes"),
        ("upper scope", key("svc-b", &["Echo.Read"], None), "scopes"),
        ("sql scope", key("svc-b", &["a' OR 1=1 --"], None), "scopes"),
        ("empty scope", key("svc-b", &[""], None), "scopes"),
        ("past expiry", key("svc-b", &[], Some(now - 1)), "expires_at"),
    ];
    for (what, new, field) in bad_keys {
        assert_validation(what, store.create_key("admin", new).await, field);
    }
    assert_validation("sql actor", store.create_key("admin'--", key("svc-b", &[], None)).await, "actor");
    assert_validation("empty actor", store.create_key("", key("svc-b", &[], None)).await, "actor");

    for id in ["", "short", "'; DELETE FROM api_keys; --", "AAAAAAAAAAAAAAAA", &"a".repeat(10_000)] {
        assert_validation("revoke id", store.revoke_key("admin", id).await, "id");
        assert_validation("get id", store.get_key(id).await, "id");
    }
    assert_validation("revoke actor", store.revoke_key("bad actor", &existing.info.id).await, "actor");

    let event = |action: &str, reason: String| NewAuditEvent::new("admin", action, "t", Outcome::Denied, reason);
    assert_validation(
        "sql action",
        store.record_audit(event("x'; DROP TABLE audit_events", String::new())).await,
        "action",
    );
    assert_validation("long reason", store.record_audit(event("admin.denied", "r".repeat(2049))).await, "reason");
    assert_validation("nul reason", store.record_audit(event("admin.denied", "a\0b".into())).await, "reason");

    assert_eq!(db.count(&store, "api_keys").await, keys_before);
    assert_eq!(db.count(&store, "audit_events").await, audit_before);
    let still = store.get_key(&existing.info.id).await.expect("existing key untouched");
    assert_eq!(still, existing.info);
}

async fn sql_in_free_text_is_stored_verbatim(store: Store, db: TestDb) {
    let reason = "'); DROP TABLE audit_events; DELETE FROM api_keys; --";
    let target = "/v1/keys?id=' OR '1'='1";
    let event = NewAuditEvent::new("anonymous", "admin.denied", target, Outcome::Denied, reason);
    let committed = store.record_audit(event).await.expect("record");
    let listed = store.list_audit(0, 10).await.expect("list");
    assert_eq!(listed, vec![committed]);
    assert_eq!(listed[0].reason, reason);
    assert_eq!(listed[0].target, target);
    assert_eq!(db.count(&store, "audit_events").await, 1);
}
