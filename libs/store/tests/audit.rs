//! One audit row per change, committed in the change's transaction: if the
//! audit row cannot be written, the change does not happen.

mod common;

use common::TestDb;
use gatehouse_store::{Backend, NewAuditEvent, NewKey, Outcome, Store};

backend_tests!(one_row_per_change, paging_follows_seq, failed_audit_write_undoes_the_change);

fn key(principal: &str) -> NewKey {
    NewKey { principal: principal.into(), scopes: vec!["echo.read".into()], expires_at: None }
}

async fn one_row_per_change(store: Store, db: TestDb) {
    let a = store.create_key("admin-token", key("svc-a")).await.expect("create a");
    let b = store.create_key("admin-token", key("svc-b")).await.expect("create b");
    let revoked = store.revoke_key("key:abc", &a.info.id).await.expect("revoke a");
    let denied = NewAuditEvent::new("anonymous", "admin.denied", "DELETE /v1/keys", Outcome::Denied, "bad admin token");
    let denied = store.record_audit(denied).await.expect("record denied");

    let events = store.list_audit(0, 100).await.expect("list");
    assert_eq!(events, vec![a.audit.clone(), b.audit.clone(), revoked.audit.clone(), denied.clone()]);
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["key.create", "key.create", "key.revoke", "admin.denied"]);
    assert_eq!(events[0].reason, "principal=svc-a scopes=echo.read expires_at=never");
    assert_eq!(events[2].target, a.info.id);
    assert_eq!(events[3].outcome, Outcome::Denied);
    for pair in events.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash, "seq {} links to seq {}", pair[1].seq, pair[0].seq);
    }
    assert_eq!(db.count(&store, "audit_events").await, 4);
    assert_eq!(db.count(&store, "api_keys").await, 2);
}

async fn paging_follows_seq(store: Store, _db: TestDb) {
    for i in 0..5 {
        let event = NewAuditEvent::new("admin", "config.reload", &format!("v{i}"), Outcome::Success, "");
        store.record_audit(event).await.expect("record");
    }
    let page: Vec<u64> = store.list_audit(2, 2).await.expect("page").iter().map(|e| e.seq).collect();
    assert_eq!(page, [3, 4]);
    assert_eq!(store.list_audit(5, 10).await.expect("past end").len(), 0);
    assert_eq!(store.list_audit(0, 0).await.expect("zero limit").len(), 0);
    assert_eq!(store.list_audit(0, u32::MAX).await.expect("capped limit").len(), 5);
}

const BLOCK_SQLITE: &str = "CREATE TRIGGER audit_blocked BEFORE INSERT ON audit_events \
     BEGIN SELECT RAISE(ABORT, 'audit writes blocked by test'); END;";
const BLOCK_POSTGRES: &str = "CREATE FUNCTION audit_blocked() RETURNS trigger LANGUAGE plpgsql AS \
     $$ BEGIN RAISE EXCEPTION 'audit writes blocked by test'; END $$; \
     CREATE TRIGGER audit_blocked BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_blocked();";
const UNBLOCK: &str = "DROP TRIGGER audit_blocked ON audit_events";
const UNBLOCK_SQLITE: &str = "DROP TRIGGER audit_blocked";

async fn failed_audit_write_undoes_the_change(store: Store, db: TestDb) {
    let existing = store.create_key("admin", key("svc-a")).await.expect("create before blocking");
    let (block, unblock) = match db.backend() {
        Backend::Sqlite => (BLOCK_SQLITE, UNBLOCK_SQLITE),
        Backend::Postgres => (BLOCK_POSTGRES, UNBLOCK),
    };
    db.exec(&store, block).await;

    let created = store.create_key("admin", key("svc-b")).await;
    assert!(created.is_err(), "create must fail without its audit row: {created:?}");
    let revoked = store.revoke_key("admin", &existing.info.id).await;
    assert!(revoked.is_err(), "revoke must fail without its audit row: {revoked:?}");

    assert_eq!(db.count(&store, "api_keys").await, 1, "no key row without an audit row");
    assert_eq!(store.get_key(&existing.info.id).await.expect("get").revoked_at, None, "revocation rolled back");
    assert_eq!(db.count(&store, "audit_events").await, 1);

    db.exec(&store, unblock).await;
    store.revoke_key("admin", &existing.info.id).await.expect("revoke once audit works again");
    assert!(store.verify_audit().await.expect("verify").is_ok());
}
