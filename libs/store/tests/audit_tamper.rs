//! `verify_audit` passes on an intact chain and names the first broken row
//! after an edit, a deletion or a reordering done directly in SQL.

mod common;

use common::TestDb;
use gatehouse_store::{BreakReason, BrokenLink, NewAuditEvent, Outcome, Store, VerifyReport};

backend_tests!(
    empty_chain_verifies,
    clean_chain_verifies,
    edited_row_is_named,
    deleted_row_is_named,
    reordered_rows_are_named
);

async fn five_events(store: &Store) {
    for i in 1..=5 {
        let event = NewAuditEvent::new("admin", "config.reload", &format!("config-v{i}"), Outcome::Success, "applied");
        store.record_audit(event).await.expect("record");
    }
}

fn broken(checked: u64, seq: u64, reason: BreakReason) -> VerifyReport {
    VerifyReport { checked, first_broken: Some(BrokenLink { seq, reason }) }
}

async fn empty_chain_verifies(store: Store, _db: TestDb) {
    assert_eq!(store.verify_audit().await.expect("verify"), VerifyReport { checked: 0, first_broken: None });
}

async fn clean_chain_verifies(store: Store, _db: TestDb) {
    five_events(&store).await;
    assert_eq!(store.verify_audit().await.expect("verify"), VerifyReport { checked: 5, first_broken: None });
}

async fn edited_row_is_named(store: Store, db: TestDb) {
    five_events(&store).await;
    db.exec(&store, "UPDATE audit_events SET outcome = 'denied' WHERE seq = 3").await;
    let report = store.verify_audit().await.expect("verify");
    assert_eq!(report, broken(2, 3, BreakReason::HashMismatch));
    let shown = report.first_broken.expect("broken link").to_string();
    assert!(shown.starts_with("seq 3:"), "{shown}");
}

async fn deleted_row_is_named(store: Store, db: TestDb) {
    five_events(&store).await;
    db.exec(&store, "DELETE FROM audit_events WHERE seq = 3").await;
    assert_eq!(store.verify_audit().await.expect("verify"), broken(2, 4, BreakReason::SeqGap { expected: 3 }));

    // Renumbering to hide the gap breaks the hashes instead.
    db.exec(&store, "UPDATE audit_events SET seq = seq - 1 WHERE seq > 3").await;
    assert_eq!(store.verify_audit().await.expect("verify"), broken(2, 3, BreakReason::PrevHashMismatch));
}

async fn reordered_rows_are_named(store: Store, db: TestDb) {
    five_events(&store).await;
    db.exec(&store, "UPDATE audit_events SET seq = 100 WHERE seq = 2").await;
    db.exec(&store, "UPDATE audit_events SET seq = 2 WHERE seq = 3").await;
    db.exec(&store, "UPDATE audit_events SET seq = 3 WHERE seq = 100").await;
    assert_eq!(store.verify_audit().await.expect("verify"), broken(1, 2, BreakReason::PrevHashMismatch));
}
