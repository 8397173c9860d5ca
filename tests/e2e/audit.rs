//! The audit trail end to end, on SQLite and on PostgreSQL: durable through
//! `kill -9` in the middle of 100 concurrent admin calls (every key in the
//! table has its audit rows, every acknowledged change is there, and the
//! chain verifies), tamper-evident (`gatehouse audit verify` exits 1 and
//! names the row after an edit or a deletion made directly in SQL), linear
//! with two gateways writing at once, rebuildable from outside with the
//! documented hash encoding, and logged as JSON audit lines.
//!
//! PostgreSQL tests use a fresh database each and print `SKIPPED: …` when
//! none is reachable (they fail instead under `CI=true` or
//! `GATEHOUSE_REQUIRE_POSTGRES=1`).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gatehouse_proto::gatehouse::admin::v1 as pb;
use gatehouse_proto::gatehouse::admin::v1::admin_client::AdminClient;
use gatehouse_test_support::{
    ADMIN_ENV, ADMIN_TOKEN, AdminHttp, Backend, Gateway, Signal, TestDatabase, run_cli, stdout_json,
};
use http::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::AnyPool;
use tonic::transport::Channel;

/// A gateway with no routes on `db`: only its admin API matters here.
fn config(db: &TestDatabase) -> String {
    format!("listeners:\n  public: 127.0.0.1:0\n  admin: 127.0.0.1:0\n{}", db.config_block(&[]))
}

async fn start(db: &TestDatabase) -> Gateway {
    Gateway::start_with_env(&config(db), &ADMIN_ENV).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `gatehouse audit verify` against `gateway`.
async fn cli_verify(gateway: &Gateway) -> Output {
    run_cli(Some(gateway.admin), Some(ADMIN_TOKEN), &["audit", "verify"]).await
}

/// One audit row as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    seq: i64,
    event_id: String,
    time: i64,
    actor: String,
    action: String,
    target: String,
    outcome: String,
    reason: String,
    prev_hash: String,
    hash: String,
}

async fn audit_rows(pool: &AnyPool) -> Vec<Row> {
    type Tuple = (i64, String, i64, String, String, String, String, String, String, String);
    let rows: Vec<Tuple> = sqlx::query_as(
        "SELECT seq, event_id, occurred_at, actor, action, target, outcome, reason, prev_hash, hash \
         FROM audit_events ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(seq, event_id, time, actor, action, target, outcome, reason, prev_hash, hash)| Row {
            seq,
            event_id,
            time,
            actor,
            action,
            target,
            outcome,
            reason,
            prev_hash,
            hash,
        })
        .collect()
}

/// `id → revoked_at` for every key in the table.
async fn key_rows(pool: &AnyPool) -> BTreeMap<String, Option<i64>> {
    let rows: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT id, revoked_at FROM api_keys").fetch_all(pool).await.unwrap();
    rows.into_iter().collect()
}

/// The chain's hash as the store documents it: SHA-256 over the tag
/// `gatehouse-audit-v1`, then each of seq, event_id, time, actor, action,
/// target, outcome, reason, prev_hash as an 8-byte big-endian length and
/// its UTF-8 bytes, integers in decimal; lower-case hex.
fn chain_hash(r: &Row) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"gatehouse-audit-v1");
    let (seq, time) = (r.seq.to_string(), r.time.to_string());
    for field in [&seq, &r.event_id, &time, &r.actor, &r.action, &r.target, &r.outcome, &r.reason, &r.prev_hash] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Checks that `rows` form an unbroken chain from seq 1.
fn assert_chain(rows: &[Row]) {
    let mut prev = "0".repeat(64);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.seq, i as i64 + 1, "seq must run from 1 without gaps: {rows:#?}");
        assert_eq!(row.prev_hash, prev, "seq {}: prev_hash", row.seq);
        assert_eq!(row.hash, chain_hash(row), "seq {}: hash", row.seq);
        prev = row.hash.clone();
    }
}

// ---- kill -9 during concurrent admin calls --------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_100_admin_calls_loses_no_audit_row_on_sqlite() {
    kill_9_during_admin_calls(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_100_admin_calls_loses_no_audit_row_on_postgres() {
    kill_9_during_admin_calls(Backend::Postgres).await;
}

/// What one of the 100 calls was and how it ended.
#[derive(Debug)]
enum Call {
    Create { acked_id: Option<String> },
    Revoke { id: String, acked: bool },
}

async fn kill_9_during_admin_calls(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let mut first = start(&db).await;
    let admin = AdminHttp::admin(first.admin);
    let mut to_revoke = Vec::new();
    for i in 0..30 {
        to_revoke.push(admin.create_key(&format!("old-{i}"), &["echo.read"]).await["id"].as_str().unwrap().to_owned());
    }

    // 100 concurrent calls: 70 creates and 30 revocations, interleaved.
    let done = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut calls = tokio::task::JoinSet::new();
    let mut revokes = to_revoke.clone().into_iter();
    for i in 0..100 {
        let admin = admin.clone();
        let (done, progress) = (Arc::clone(&done), Arc::clone(&progress));
        let revoke = if i % 10 < 3 { revokes.next() } else { None };
        calls.spawn(async move {
            let call = match revoke {
                Some(id) => {
                    let result = admin.try_call(Method::DELETE, &format!("/v1/keys/{id}"), None).await;
                    let acked = result.as_ref().is_ok_and(|r| r.status == 200);
                    if let Ok(r) = &result {
                        assert!(r.status == 200, "revoke {id}: {} {}", r.status, r.text());
                    }
                    Call::Revoke { id, acked }
                }
                None => {
                    let body = json!({ "principal": format!("new-{i}"), "scopes": ["echo.read"] }).to_string();
                    let result = admin.try_call(Method::POST, "/v1/keys", Some(body.into_bytes())).await;
                    if let Ok(r) = &result {
                        assert!(r.status == 201, "create: {} {}", r.status, r.text());
                    }
                    let acked_id = result.ok().map(|r| r.json()["id"].as_str().unwrap().to_owned());
                    Call::Create { acked_id }
                }
            };
            done.fetch_add(1, Ordering::SeqCst);
            progress.notify_one();
            call
        });
    }
    // Kill once 40 calls have been answered: the rest are in flight.
    tokio::time::timeout(Duration::from_secs(30), async {
        while done.load(Ordering::SeqCst) < 40 {
            progress.notified().await;
        }
    })
    .await
    .expect("40 of the 100 admin calls answered within 30 s");
    first.signal(Signal::Kill).unwrap();
    let status = first.wait_exit(Duration::from_secs(10)).await.expect("the gateway died");
    assert!(!status.success(), "kill -9 ends the process by signal: {status:?}");

    let mut results = Vec::new();
    while let Some(call) = calls.join_next().await {
        results.push(call.unwrap());
    }
    let acked_creates: Vec<&String> = results
        .iter()
        .filter_map(|c| if let Call::Create { acked_id } = c { acked_id.as_ref() } else { None })
        .collect();
    let acked_revokes: Vec<&String> = results
        .iter()
        .filter_map(|c| match c {
            Call::Revoke { id, acked: true } => Some(id),
            _ => None,
        })
        .collect();
    let cut = results
        .iter()
        .filter(|c| matches!(c, Call::Create { acked_id: None } | Call::Revoke { acked: false, .. }))
        .count();
    eprintln!(
        "{backend:?}: {} creates and {} revocations acknowledged, {cut} calls cut by the kill",
        acked_creates.len(),
        acked_revokes.len()
    );
    assert!(cut > 0, "the kill came after every call had finished; the test proved nothing");

    // A fresh gateway on the same database.
    let second = start(&db).await;
    let pool = db.pool().await;
    let keys = key_rows(&pool).await;
    let rows = audit_rows(&pool).await;
    assert_chain(&rows);

    let mut creates: BTreeMap<&str, usize> = BTreeMap::new();
    let mut revocations: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &rows {
        assert_eq!((row.actor.as_str(), row.outcome.as_str()), ("admin-token", "success"), "{row:?}");
        match row.action.as_str() {
            "key.create" => *creates.entry(&row.target).or_default() += 1,
            "key.revoke" => *revocations.entry(&row.target).or_default() += 1,
            other => panic!("unexpected audit action {other}: {row:?}"),
        }
    }
    for (id, revoked_at) in &keys {
        assert_eq!(creates.get(id.as_str()), Some(&1), "key {id} must have exactly one key.create row");
        let want = usize::from(revoked_at.is_some());
        assert_eq!(revocations.get(id.as_str()).copied().unwrap_or(0), want, "key {id} (revoked_at {revoked_at:?})");
    }
    for id in creates.keys().chain(revocations.keys()) {
        assert!(keys.contains_key(*id), "an audit row names key {id}, which is not in the table");
    }
    for id in &acked_creates {
        assert!(keys.contains_key(id.as_str()), "acknowledged create {id} is missing");
    }
    for id in &acked_revokes {
        assert!(keys[id.as_str()].is_some(), "acknowledged revocation of {id} is missing");
    }
    assert!(keys.len() >= 30 + acked_creates.len());
    let revoked = keys.values().filter(|r| r.is_some()).count();
    eprintln!(
        "{backend:?}: after the kill the table holds {} new keys ({} acknowledged) and {revoked} revocations \
         ({} acknowledged), each with its audit row",
        keys.len() - 30,
        acked_creates.len(),
        acked_revokes.len()
    );

    let out = cli_verify(&second).await;
    assert!(out.status.success(), "audit verify after the kill: {}\n{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(stdout_json(&out), json!({ "ok": true, "checked": rows.len(), "first_broken": null }));
    // The survivor carries on appending to the same chain.
    AdminHttp::admin(second.admin).create_key("after-the-kill", &[]).await;
    assert_chain(&audit_rows(&pool).await);
    pool.close().await;
}

// ---- tampering ----------------------------------------------------------------

#[tokio::test]
async fn edited_and_deleted_rows_are_named_on_sqlite() {
    tampering_is_detected(Backend::Sqlite).await;
}

#[tokio::test]
async fn edited_and_deleted_rows_are_named_on_postgres() {
    tampering_is_detected(Backend::Postgres).await;
}

/// Six events, then tampering in SQL behind the gateway's back.
async fn tampering_is_detected(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let gateway = start(&db).await;
    let admin = AdminHttp::admin(gateway.admin);
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(admin.create_key(&format!("svc-{i}"), &["echo.read"]).await["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(admin.revoke(&ids[0]).await.status, 200);
    assert_eq!(admin.with_token(None).list().await.status, 401, "a denial is an event too");
    let out = cli_verify(&gateway).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout_json(&out), json!({ "ok": true, "checked": 6, "first_broken": null }));

    let pool = db.pool().await;
    let original = audit_rows(&pool).await;
    assert_eq!(original.len(), 6);
    assert_chain(&original);
    let set_row = |seq: i64, reason: String, hash: String| {
        let pool = pool.clone();
        async move {
            sqlx::query("UPDATE audit_events SET reason = $1, hash = $2 WHERE seq = $3")
                .bind(reason)
                .bind(hash)
                .bind(seq)
                .execute(&pool)
                .await
                .unwrap();
        }
    };

    // An edited row fails its own hash: verify names it.
    sqlx::query("UPDATE audit_events SET reason = 'nothing to see here' WHERE seq = 3").execute(&pool).await.unwrap();
    let out = cli_verify(&gateway).await;
    assert_broken(&out, 3, 2, "edited");
    assert!(text(&out.stderr).contains("audit chain broken at seq 3"), "{}", text(&out.stderr));
    let grpc = grpc_verify(&gateway).await;
    assert_eq!((grpc.ok, grpc.broken_seq, grpc.checked), (false, 3, 2), "{grpc:?}");

    // Put back as it was, it verifies again.
    set_row(3, original[2].reason.clone(), original[2].hash.clone()).await;
    let out = cli_verify(&gateway).await;
    assert!(out.status.success(), "restored: {out:?}");

    // An edit whose row hash is recomputed breaks the next link instead.
    let mut forged = original[2].clone();
    forged.reason = "rewritten".to_owned();
    forged.hash = chain_hash(&forged);
    set_row(3, forged.reason.clone(), forged.hash.clone()).await;
    let out = cli_verify(&gateway).await;
    assert_broken(&out, 4, 3, "prev_hash");
    set_row(3, original[2].reason.clone(), original[2].hash.clone()).await;
    assert!(cli_verify(&gateway).await.status.success());

    // A deleted middle row leaves a gap: verify stops at the next row and
    // names the missing one.
    sqlx::query("DELETE FROM audit_events WHERE seq = 4").execute(&pool).await.unwrap();
    let out = cli_verify(&gateway).await;
    assert_broken(&out, 5, 3, "expected seq 4");
    assert!(text(&out.stderr).contains("expected seq 4"), "verify names the deleted seq 4: {}", text(&out.stderr));
    pool.close().await;
}

/// `audit verify` exited 1, its report says the chain breaks at `seq`
/// after `checked` good rows, and the reason contains `reason`.
fn assert_broken(out: &Output, seq: u64, checked: u64, reason: &str) {
    assert_eq!(out.status.code(), Some(1), "verify must fail: {}\n{}", text(&out.stdout), text(&out.stderr));
    let report = stdout_json(out);
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["checked"], checked, "{report}");
    assert_eq!(report["first_broken"]["seq"], seq, "{report}");
    let why = report["first_broken"]["reason"].as_str().unwrap();
    assert!(why.contains(reason), "reason {why:?} lacks {reason:?}");
    assert!(text(&out.stderr).contains(&format!("seq {seq}")), "stderr names seq {seq}: {}", text(&out.stderr));
}

async fn grpc_verify(gateway: &Gateway) -> pb::VerifyAuditResponse {
    let channel = Channel::from_shared(format!("http://{}", gateway.admin)).unwrap().connect().await.unwrap();
    let mut request = tonic::Request::new(pb::VerifyAuditRequest {});
    request.metadata_mut().insert("authorization", format!("Bearer {ADMIN_TOKEN}").parse().unwrap());
    AdminClient::new(channel).verify_audit(request).await.unwrap().into_inner()
}

// ---- two replicas --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_writing_at_once_keep_one_chain_on_postgres() {
    two_writers(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_writing_at_once_keep_one_chain_on_sqlite() {
    two_writers(Backend::Sqlite).await;
}

/// 50 creates and 10 denied calls through each of two gateways, all at
/// once: the chain has no gap and verifies, from both gateways.
async fn two_writers(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let a = start(&db).await;
    let b = start(&db).await;
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..120 {
        let addr = if i % 2 == 0 { a.admin } else { b.admin };
        calls.spawn(async move {
            if i % 12 == 1 || i % 12 == 6 {
                let r = AdminHttp::new(addr, None).list().await;
                assert_eq!(r.status, 401, "{}", r.text());
            } else {
                let r = AdminHttp::admin(addr).create(&json!({ "principal": format!("svc-{i}") })).await;
                assert_eq!(r.status, 201, "{}", r.text());
            }
        });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap();
    }
    let pool = db.pool().await;
    let rows = audit_rows(&pool).await;
    assert_eq!(rows.len(), 120);
    assert_chain(&rows);
    let count = |action: &str| rows.iter().filter(|r| r.action == action).count();
    assert_eq!((count("key.create"), count("admin.denied")), (100, 20));
    let targets: BTreeSet<&str> = rows.iter().filter(|r| r.action == "key.create").map(|r| r.target.as_str()).collect();
    assert_eq!(targets, key_rows(&pool).await.keys().map(String::as_str).collect());
    for gateway in [&a, &b] {
        let out = cli_verify(gateway).await;
        assert!(out.status.success(), "{out:?}");
        assert_eq!(stdout_json(&out), json!({ "ok": true, "checked": 120, "first_broken": null }));
    }
    pool.close().await;
}

// ---- what the API and the log show -------------------------------------------------

/// The events the admin API lists are the stored rows, and they rebuild
/// with the documented hash encoding.
#[tokio::test]
async fn listed_events_match_the_stored_chain() {
    let db = TestDatabase::sqlite();
    let gateway = start(&db).await;
    let admin = AdminHttp::admin(gateway.admin);
    let id = admin.create_key("alice", &["echo.read", "admin"]).await["id"].as_str().unwrap().to_owned();
    assert_eq!(admin.revoke(&id).await.status, 200);
    assert_eq!(admin.with_token(Some("wrong")).list().await.status, 401);
    let listed = admin.audit_events().await;
    let pool = db.pool().await;
    let rows = audit_rows(&pool).await;
    assert_chain(&rows);
    let as_json: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "seq": r.seq, "event_id": r.event_id, "time": r.time, "actor": r.actor, "action": r.action,
                "target": r.target, "outcome": r.outcome, "reason": r.reason, "prev_hash": r.prev_hash, "hash": r.hash,
            })
        })
        .collect();
    assert_eq!(listed, as_json);
    let summary: Vec<(&str, &str, &str, &str)> =
        rows.iter().map(|r| (r.actor.as_str(), r.action.as_str(), r.target.as_str(), r.outcome.as_str())).collect();
    assert_eq!(
        summary,
        [
            ("admin-token", "key.create", id.as_str(), "success"),
            ("admin-token", "key.revoke", id.as_str(), "success"),
            ("anonymous", "admin.denied", "key.list", "denied"),
        ]
    );
    assert!(rows[0].reason.contains("principal=alice"), "{:?}", rows[0]);
    pool.close().await;
}

/// Each committed event is also one JSON log line with `audit: true`, the
/// same `event_id`, actor, action, target, outcome and reason, and no secret.
#[tokio::test]
async fn audit_events_are_logged_as_json_lines() {
    let db = TestDatabase::sqlite();
    let gateway = start(&db).await;
    let admin = AdminHttp::admin(gateway.admin);
    let created = admin.create_key("alice", &["echo.read"]).await;
    let (id, key) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
    assert_eq!(admin.revoke(id).await.status, 200);
    assert_eq!(admin.with_token(Some("wrong")).list().await.status, 401);
    let events = admin.audit_events().await;
    assert_eq!(events.len(), 3);
    for event in &events {
        let line = gateway
            .wait_for_log(Duration::from_secs(5), |v| v["audit"] == true && v["event_id"] == event["event_id"])
            .await
            .unwrap_or_else(|| panic!("no audit line for {event}: {:#?}", gateway.lines()));
        for field in ["actor", "action", "target", "outcome", "reason"] {
            assert_eq!(line[field], event[field], "{field}: line {line} event {event}");
        }
        for field in ["time", "level", "service", "msg", "target"] {
            assert!(line.get(field).is_some(), "the audit line lacks {field}: {line}");
        }
    }
    for secret in [key, ADMIN_TOKEN] {
        assert!(!gateway.lines().iter().any(|l| l.contains(secret)), "a log line holds a secret");
    }
}
