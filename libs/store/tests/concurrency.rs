//! Two replicas (two stores, two pools) writing to one database at once keep
//! one linear, verifiable audit chain.

mod common;

use std::collections::HashSet;

use common::TestDb;
use gatehouse_store::{NewAuditEvent, NewKey, Outcome, Store, StoreOptions};
use tokio::task::JoinSet;

backend_tests!(concurrent_appends_stay_linear);

const TASKS_PER_REPLICA: usize = 50;

async fn concurrent_appends_stay_linear(store: Store, db: TestDb) {
    let replica = db.store_with(StoreOptions { max_connections: 5, ..StoreOptions::default() }).await;
    let mut tasks = JoinSet::new();
    for (r, store) in [store.clone(), replica].into_iter().enumerate() {
        for i in 0..TASKS_PER_REPLICA {
            let store = store.clone();
            tasks.spawn(async move {
                // Half the writers change data (key + audit row), half only audit.
                if i % 2 == 0 {
                    let new = NewKey { principal: format!("svc-{r}-{i}"), scopes: vec![], expires_at: None };
                    store.create_key(&format!("replica-{r}"), new).await.map(|c| c.audit)
                } else {
                    let event = NewAuditEvent::new(
                        &format!("replica-{r}"),
                        "config.reload",
                        &format!("{r}-{i}"),
                        Outcome::Success,
                        "",
                    );
                    store.record_audit(event).await
                }
            });
        }
    }
    let mut returned = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        returned.push(joined.expect("task finished").expect("write succeeded"));
    }

    let total = 2 * TASKS_PER_REPLICA;
    let events = store.list_audit(0, 1000).await.expect("list");
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>(), "one seq per event, no gaps or repeats");
    let listed: HashSet<_> = events.iter().map(|e| e.event_id.clone()).collect();
    let committed: HashSet<_> = returned.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(listed, committed, "every returned event is in the chain");

    let report = store.verify_audit().await.expect("verify");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.checked, total as u64);

    let keys = store.list_keys().await.expect("list keys");
    assert_eq!(keys.len(), total / 2);
    let created_targets: HashSet<_> =
        events.iter().filter(|e| e.action == "key.create").map(|e| e.target.clone()).collect();
    let key_ids: HashSet<_> = keys.iter().map(|k| k.id.clone()).collect();
    assert_eq!(created_targets, key_ids, "every key has its key.create row");
}
