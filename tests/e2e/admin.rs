//! The admin API on the admin port, end to end: creating, listing and
//! revoking keys over HTTP JSON, gRPC and the `gatehouse` command line; who
//! may call it (the bootstrap token, keys with the `admin` scope) and the
//! audit row every denial leaves; input validation that changes nothing;
//! two gateways sharing one PostgreSQL (a revocation through one is refused
//! by the other within 1 s); the database going away and coming back; and
//! the pool gauges under load.
//!
//! PostgreSQL tests use a fresh database each and print `SKIPPED: …` when
//! none is reachable (they fail instead under `CI=true` or
//! `GATEHOUSE_REQUIRE_POSTGRES=1`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gatehouse_proto::gatehouse::admin::v1 as pb;
use gatehouse_proto::gatehouse::admin::v1::admin_client::AdminClient;
use gatehouse_test_support::{
    ADMIN_ENV, ADMIN_TOKEN, AdminHttp, Backend, Collected, Echo, Gateway, TcpProxy, TestDatabase, empty, get,
    http1_client, metric_value, poll_until, run_cli, run_cli_env_url, scrape, send, stdout_json, unused_addr, url,
};
use http::{Method, Request};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

/// How long a new key may take to reach a gateway's key cache (SQLite polls
/// every second by default; PostgreSQL notifies at once).
const CACHE_SYNC: Duration = Duration::from_secs(5);

/// A gateway config: `db` is a `database:` block (or empty for the
/// harness's own SQLite file), `/echo` needs a key with `echo.read`.
fn config(echo: SocketAddr, db: &str) -> String {
    format!(
        r#"
listeners:
  public: 127.0.0.1:0
  admin: 127.0.0.1:0
{db}
upstreams:
  echo:
    protocol: http1
    endpoints: ["{echo}"]
    probe_interval: 200ms
routes:
  - name: echo-http
    match: {{ path_prefix: /echo }}
    upstream: echo
    auth: {{ required: true, scopes: [echo.read] }}
"#
    )
}

async fn start(echo: &Echo, db: &str) -> Gateway {
    Gateway::start_with_env(&config(echo.addr, db), &ADMIN_ENV).await
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `GET /echo/status/200` on the public port with `key` as bearer.
async fn public_status(gateway: &Gateway, key: &str) -> u16 {
    let request = Request::get(url(gateway.public, "/echo/status/200"))
        .header("authorization", format!("Bearer {key}"))
        .body(empty())
        .unwrap();
    send(&http1_client(), request).await.status.as_u16()
}

/// Waits until `gateway` answers `want` for `key`; returns how long it took.
async fn wait_public(gateway: &Gateway, key: &str, want: u16, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let status = public_status(gateway, key).await;
        if status == want {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "the key still answered {status}, not {want}, after {limit:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn is_key_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

fn field_names(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Checks an admin error: status, JSON `{"error":{"code","message"}}`.
fn assert_admin_error(response: &Collected, status: u16, code: &str, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", response.text());
    assert!(
        response.header("content-type").is_some_and(|ct| ct.starts_with("application/json")),
        "{what}: content-type {:?}, body {:?}",
        response.header("content-type"),
        response.text()
    );
    let json = response.json();
    assert_eq!(json["error"]["code"], code, "{what}: {json}");
    let message = json["error"]["message"].as_str().unwrap_or_else(|| panic!("{what}: no message: {json}"));
    assert!(!message.is_empty() && message.len() < 1024, "{what}: message of {} bytes: {message}", message.len());
}

async fn grpc_admin(gateway: &Gateway) -> AdminClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", gateway.admin)).unwrap().connect().await.unwrap();
    AdminClient::new(channel)
}

/// `message` with `authorization: Bearer <token>` metadata, if any.
fn authed<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn grpc_code<T: std::fmt::Debug>(result: Result<T, tonic::Status>, what: &str) -> Code {
    match result {
        Ok(ok) => panic!("{what}: expected an error, got {ok:?}"),
        Err(status) => status.code(),
    }
}

// ---- HTTP ----------------------------------------------------------------

#[tokio::test]
async fn http_create_list_revoke_and_audit() {
    let echo = Echo::start("echo").await;
    let gateway = start(&echo, "").await;
    let admin = AdminHttp::admin(gateway.admin);

    let before = now_ms();
    let created = admin.create(&json!({ "principal": "alice", "scopes": ["echo.read", "x:y-z_1"] })).await;
    let after = now_ms();
    assert_eq!(created.status, 201, "{}", created.text());
    assert!(created.header("content-type").is_some_and(|ct| ct.starts_with("application/json")));
    let body = created.json();
    assert_eq!(
        field_names(&body),
        names(&["id", "key", "principal", "scopes", "created_at", "expires_at", "revoked_at"]),
        "{body}"
    );
    let id = body["id"].as_str().unwrap().to_owned();
    let key = body["key"].as_str().unwrap().to_owned();
    assert!(is_key_id(&id), "id {id:?}");
    let secret = key.strip_prefix(&format!("gh_{id}_")).unwrap_or_else(|| panic!("key {key:?} is not gh_<id>_…"));
    assert_eq!(secret.len(), 52, "secret of {key:?}");
    assert!(secret.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)), "{key:?}");
    assert_eq!(body["principal"], "alice");
    assert_eq!(body["scopes"], json!(["echo.read", "x:y-z_1"]));
    let created_at = body["created_at"].as_i64().unwrap();
    assert!((before..=after).contains(&created_at), "created_at {created_at} not in [{before}, {after}]");
    assert_eq!(body["expires_at"], Value::Null);
    assert_eq!(body["revoked_at"], Value::Null);

    // Expiry as unix milliseconds and as RFC 3339.
    let in_a_year = now_ms() + 365 * 24 * 3600 * 1000;
    let ms = admin.create(&json!({ "principal": "bob", "scopes": [], "expires_at": in_a_year })).await;
    assert_eq!(ms.status, 201, "{}", ms.text());
    assert_eq!(ms.json()["expires_at"], in_a_year);
    let rfc = admin.create(&json!({ "principal": "carol", "expires_at": "2100-01-01T00:00:00Z" })).await;
    assert_eq!(rfc.status, 201, "{}", rfc.text());
    assert_eq!(rfc.json()["expires_at"], 4_102_444_800_000_i64);
    assert_eq!(rfc.json()["scopes"], json!([]), "scopes default to none");

    // The list never shows a secret.
    let listed = admin.list().await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert!(!listed.text().contains(secret), "the list leaks a secret: {}", listed.text());
    let keys = listed.json()["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 3, "{keys:#?}");
    let alice = keys.iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert_eq!(field_names(alice), names(&["id", "principal", "scopes", "created_at", "expires_at", "revoked_at"]));
    assert_eq!(alice["principal"], "alice");
    assert_eq!(alice["created_at"], created_at);
    assert_eq!(alice["revoked_at"], Value::Null);

    // The key works, then is revoked.
    wait_public(&gateway, &key, 200, CACHE_SYNC).await;
    let t0 = now_ms();
    let revoked = admin.revoke(&id).await;
    let t1 = now_ms();
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    let revoked = revoked.json();
    assert_eq!(revoked["id"], id.as_str());
    assert_eq!(revoked["principal"], "alice");
    assert!(revoked.get("key").is_none(), "{revoked}");
    let revoked_at = revoked["revoked_at"].as_i64().unwrap();
    assert!((t0..=t1).contains(&revoked_at), "revoked_at {revoked_at} not in [{t0}, {t1}]");
    let listed = admin.keys().await;
    assert_eq!(listed.iter().find(|k| k["id"] == id.as_str()).unwrap()["revoked_at"], revoked_at);
    wait_public(&gateway, &key, 401, CACHE_SYNC).await;

    // Revoking twice conflicts; an unknown id is not found.
    assert_admin_error(&admin.revoke(&id).await, 409, "conflict", "revoking twice");
    assert_admin_error(&admin.revoke(&"a".repeat(16)).await, 404, "not_found", "an unknown id");
    // Reading one key is not part of the API.
    let one = admin.call(Method::GET, &format!("/v1/keys/{id}"), None).await;
    assert!(matches!(one.status.as_u16(), 404 | 405), "GET /v1/keys/{{id}}: {} {}", one.status, one.text());

    // One audit row per change, by the bootstrap token.
    let events = admin.audit_events().await;
    let summary: Vec<(String, String, String, String)> = events
        .iter()
        .map(|e| {
            let s = |f: &str| e[f].as_str().unwrap().to_owned();
            (s("actor"), s("action"), s("target"), s("outcome"))
        })
        .collect();
    let ms_id = ms.json()["id"].as_str().unwrap().to_owned();
    let rfc_id = rfc.json()["id"].as_str().unwrap().to_owned();
    let row = |action: &str, target: &str| {
        ("admin-token".to_owned(), action.to_owned(), target.to_owned(), "success".to_owned())
    };
    assert_eq!(
        summary,
        [row("key.create", &id), row("key.create", &ms_id), row("key.create", &rfc_id), row("key.revoke", &id)]
    );
    for e in &events {
        assert_eq!(
            field_names(e),
            names(&["seq", "event_id", "time", "actor", "action", "target", "outcome", "reason", "prev_hash", "hash"]),
            "{e}"
        );
        assert!(!e.to_string().contains(secret), "an audit event holds the secret: {e}");
    }
    assert_eq!(events.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3, 4]);
    // Paging.
    let page = admin.audit_page("after=1&limit=2").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let page: Vec<u64> = page.json()["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(page, [2, 3]);
    assert_eq!(admin.verify().await, json!({ "ok": true, "checked": 4, "first_broken": null }));
}

#[tokio::test]
async fn admin_callers_and_denials() {
    let echo = Echo::start("echo").await;
    let gateway = start(&echo, "").await;
    let admin = AdminHttp::admin(gateway.admin);
    let ops = admin.create_key("ops", &["admin"]).await;
    let ops_key = ops["key"].as_str().unwrap().to_owned();
    let ops_id = ops["id"].as_str().unwrap().to_owned();
    let user = admin.create_key("user", &["echo.read"]).await;
    let user_key = user["key"].as_str().unwrap().to_owned();
    let user_id = user["id"].as_str().unwrap().to_owned();
    // Both keys must be in the gateway's cache before they can be judged.
    wait_public(&gateway, &user_key, 200, CACHE_SYNC).await;
    wait_public(&gateway, &ops_key, 403, CACHE_SYNC).await;

    // A key with the admin scope is an admin; the audit names it.
    let as_ops = admin.with_token(Some(&ops_key));
    let made = as_ops.create_key("made-by-ops", &["echo.read"]).await;
    assert_eq!(as_ops.keys().await.len(), 3);

    let seq_before = admin.audit_events().await.len();
    // A key without it is forbidden, over HTTP and gRPC; each denial is audited.
    let as_user = admin.with_token(Some(&user_key));
    assert_admin_error(&as_user.create(&json!({"principal": "x"})).await, 403, "forbidden", "create as user");
    assert_admin_error(&as_user.list().await, 403, "forbidden", "list as user");
    assert_admin_error(&as_user.revoke(&ops_id).await, 403, "forbidden", "revoke as user");
    assert_admin_error(&as_user.audit_page("").await, 403, "forbidden", "audit as user");
    let mut grpc = grpc_admin(&gateway).await;
    let code = grpc_code(grpc.list_keys(authed(pb::ListKeysRequest {}, Some(&user_key))).await, "gRPC list as user");
    assert_eq!(code, Code::PermissionDenied);
    // No credential, a wrong token, a wrong key: unauthenticated.
    let anonymous = admin.with_token(None);
    assert_admin_error(&anonymous.list().await, 401, "unauthenticated", "no credential");
    assert_admin_error(&admin.with_token(Some("nope")).list().await, 401, "unauthenticated", "wrong token");
    let wrong_admin_token = format!("{ADMIN_TOKEN}x");
    assert_admin_error(
        &admin.with_token(Some(&wrong_admin_token)).create(&json!({"principal": "x"})).await,
        401,
        "unauthenticated",
        "a longer token",
    );
    let basic = anonymous.call(Method::GET, "/v1/keys", None).await.status.as_u16();
    assert_eq!(basic, 401);
    let code = grpc_code(grpc.list_keys(authed(pb::ListKeysRequest {}, None)).await, "gRPC without credential");
    assert_eq!(code, Code::Unauthenticated);

    let events = admin.audit_events().await;
    let denials: Vec<(String, String, String, String)> = events[seq_before..]
        .iter()
        .map(|e| {
            let s = |f: &str| e[f].as_str().unwrap().to_owned();
            (s("actor"), s("action"), s("target"), s("outcome"))
        })
        .collect();
    let user_actor = format!("key:{user_id}");
    let denied = |actor: &str, target: &str| {
        (actor.to_owned(), "admin.denied".to_owned(), target.to_owned(), "denied".to_owned())
    };
    assert_eq!(
        denials,
        [
            denied(&user_actor, "key.create"),
            denied(&user_actor, "key.list"),
            denied(&user_actor, "key.revoke"),
            denied(&user_actor, "audit.list"),
            denied(&user_actor, "key.list"),
            denied("anonymous", "key.list"),
            denied("anonymous", "key.list"),
            denied("anonymous", "key.create"),
            denied("anonymous", "key.list"),
            denied("anonymous", "key.list"),
        ],
        "{events:#?}"
    );
    // The admin key's own create is attributed to it.
    let made_row = events.iter().find(|e| e["action"] == "key.create" && e["target"] == made["id"]).unwrap();
    assert_eq!(made_row["actor"], format!("key:{ops_id}"));
    // No secret in any row or in the log.
    for secret in [&ops_key, &user_key, &ADMIN_TOKEN.to_owned()] {
        assert!(!events.iter().any(|e| e.to_string().contains(secret.as_str())), "an audit row holds a secret");
        assert!(!gateway.lines().iter().any(|l| l.contains(secret.as_str())), "a log line holds a secret");
    }

    // A revoked admin key is no longer an admin.
    assert_eq!(admin.revoke(&ops_id).await.status, 200);
    wait_public(&gateway, &ops_key, 401, CACHE_SYNC).await;
    assert_admin_error(&as_ops.list().await, 401, "unauthenticated", "revoked admin key");
    assert_eq!(admin.verify().await["ok"], true);
}

// ---- gRPC ----------------------------------------------------------------

#[tokio::test]
async fn grpc_create_list_revoke_and_audit() {
    let echo = Echo::start("echo").await;
    let gateway = start(&echo, "").await;
    let mut grpc = grpc_admin(&gateway).await;
    let token = Some(ADMIN_TOKEN);

    let before = now_ms();
    let request =
        pb::CreateKeyRequest { principal: "alice".into(), scopes: vec!["echo.read".into()], expires_at_ms: 0 };
    let created = grpc.create_key(authed(request, token)).await.unwrap().into_inner();
    let key = created.key.clone().unwrap();
    assert!(is_key_id(&key.id), "{key:?}");
    assert!(created.secret.starts_with(&format!("gh_{}_", key.id)) && created.secret.len() == 3 + 16 + 1 + 52);
    assert_eq!((key.principal.as_str(), key.scopes.as_slice()), ("alice", &["echo.read".to_owned()][..]));
    assert!(key.created_at_ms >= before && key.created_at_ms <= now_ms(), "{key:?}");
    assert_eq!((key.expires_at_ms, key.revoked_at_ms), (0, 0));

    let expires = now_ms() + 3_600_000;
    let request = pb::CreateKeyRequest { principal: "bob".into(), scopes: vec![], expires_at_ms: expires };
    let bob = grpc.create_key(authed(request, token)).await.unwrap().into_inner().key.unwrap();
    assert_eq!(bob.expires_at_ms, expires);

    // The gRPC and HTTP views agree, and the key works on the public port.
    let listed = grpc.list_keys(authed(pb::ListKeysRequest {}, token)).await.unwrap().into_inner().keys;
    assert_eq!(listed, [key.clone(), bob.clone()]);
    let http = AdminHttp::admin(gateway.admin).keys().await;
    assert_eq!(http.len(), 2);
    assert_eq!(http[0]["id"], key.id.as_str());
    wait_public(&gateway, &created.secret, 200, CACHE_SYNC).await;

    let revoked =
        grpc.revoke_key(authed(pb::RevokeKeyRequest { id: key.id.clone() }, token)).await.unwrap().into_inner();
    assert_eq!(revoked.id, key.id);
    assert!(revoked.revoked_at_ms >= key.created_at_ms, "{revoked:?}");
    wait_public(&gateway, &created.secret, 401, CACHE_SYNC).await;

    let again = grpc.revoke_key(authed(pb::RevokeKeyRequest { id: key.id.clone() }, token)).await;
    assert_eq!(grpc_code(again, "revoking twice"), Code::AlreadyExists);
    let unknown = grpc.revoke_key(authed(pb::RevokeKeyRequest { id: "a".repeat(16) }, token)).await;
    assert_eq!(grpc_code(unknown, "unknown id"), Code::NotFound);

    let events =
        grpc.list_audit(authed(pb::ListAuditRequest { after: 0, limit: 0 }, token)).await.unwrap().into_inner().events;
    let summary: Vec<(i64, &str, &str, &str, &str)> = events
        .iter()
        .map(|e| (e.seq, e.actor.as_str(), e.action.as_str(), e.target.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, "admin-token", "key.create", key.id.as_str(), "success"),
            (2, "admin-token", "key.create", bob.id.as_str(), "success"),
            (3, "admin-token", "key.revoke", key.id.as_str(), "success"),
        ]
    );
    assert_eq!(events[0].prev_hash, "0".repeat(64));
    assert_eq!(events[1].prev_hash, events[0].hash);
    assert_eq!(events[2].prev_hash, events[1].hash);
    let page =
        grpc.list_audit(authed(pb::ListAuditRequest { after: 1, limit: 1 }, token)).await.unwrap().into_inner().events;
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
    let verify = grpc.verify_audit(authed(pb::VerifyAuditRequest {}, token)).await.unwrap().into_inner();
    assert_eq!(verify, pb::VerifyAuditResponse { checked: 3, ok: true, broken_seq: 0, reason: String::new() });

    // Credentials as for HTTP.
    let code = grpc_code(grpc.verify_audit(authed(pb::VerifyAuditRequest {}, None)).await, "no credential");
    assert_eq!(code, Code::Unauthenticated);
    let code = grpc_code(grpc.verify_audit(authed(pb::VerifyAuditRequest {}, Some("nope"))).await, "wrong token");
    assert_eq!(code, Code::Unauthenticated);
}

// ---- validation ------------------------------------------------------------

/// Keys and audit events, counted through the API.
async fn counts(admin: &AdminHttp) -> (usize, usize) {
    (admin.keys().await.len(), admin.audit_events().await.len())
}

#[tokio::test]
async fn http_bad_input_is_400_and_changes_nothing() {
    let echo = Echo::start("echo").await;
    let gateway = start(&echo, "").await;
    let admin = AdminHttp::admin(gateway.admin);
    let existing = admin.create_key("alice", &["echo.read"]).await;
    let existing_id = existing["id"].as_str().unwrap().to_owned();
    let before = counts(&admin).await;

    let long = "a".repeat(10_000);
    let bodies: Vec<(&str, String)> = vec![
        ("a 10k-character principal", json!({ "principal": long }).to_string()),
        ("a 129-character principal", json!({ "principal": "p".repeat(129) }).to_string()),
        ("an empty principal", json!({ "principal": "" }).to_string()),
        ("SQL in the principal", json!({ "principal": "alice'); DROP TABLE api_keys;--" }).to_string()),
        ("a quote in the principal", json!({ "principal": "o'brien" }).to_string()),
        ("a NUL in the principal", json!({ "principal": "a\u{0}b" }).to_string()),
        ("non-ASCII in the principal", json!({ "principal": "ünïcode" }).to_string()),
        ("a space in the principal", json!({ "principal": "alice smith" }).to_string()),
        ("a scope with a space", json!({ "principal": "a", "scopes": ["echo read"] }).to_string()),
        (
            "SQL in a scope",
            json!({ "principal": "a", "scopes": ["echo.read; DROP TABLE audit_events;--"] }).to_string(),
        ),
        ("an upper-case scope", json!({ "principal": "a", "scopes": ["Echo.Read"] }).to_string()),
        ("an empty scope", json!({ "principal": "a", "scopes": [""] }).to_string()),
        ("a 65-character scope", json!({ "principal": "a", "scopes": ["s".repeat(65)] }).to_string()),
        (
            "33 scopes",
            json!({ "principal": "a", "scopes": (0..33).map(|i| format!("s{i}")).collect::<Vec<_>>() }).to_string(),
        ),
        ("a repeated scope", json!({ "principal": "a", "scopes": ["x", "x"] }).to_string()),
        ("scopes as a string", json!({ "principal": "a", "scopes": "echo.read" }).to_string()),
        ("a scope that is a number", json!({ "principal": "a", "scopes": [1] }).to_string()),
        ("an expiry in the past", json!({ "principal": "a", "expires_at": 1000 }).to_string()),
        ("an expiry of now-ish", json!({ "principal": "a", "expires_at": now_ms() - 1 }).to_string()),
        ("a negative expiry", json!({ "principal": "a", "expires_at": -1 }).to_string()),
        ("a fractional expiry", json!({ "principal": "a", "expires_at": 4_102_444_800_000.5 }).to_string()),
        ("an expiry in words", json!({ "principal": "a", "expires_at": "tomorrow" }).to_string()),
        (
            "an RFC 3339 expiry in the past",
            json!({ "principal": "a", "expires_at": "2000-01-01T00:00:00Z" }).to_string(),
        ),
        ("a boolean expiry", json!({ "principal": "a", "expires_at": true }).to_string()),
        ("an unknown field", json!({ "principal": "a", "admin": true }).to_string()),
        ("a client-chosen id", json!({ "principal": "a", "id": "a".repeat(16) }).to_string()),
        ("a client-chosen key", json!({ "principal": "a", "key": "gh_x_y" }).to_string()),
        ("a client-chosen revoked_at", json!({ "principal": "a", "revoked_at": null }).to_string()),
        ("no principal", json!({ "scopes": ["echo.read"] }).to_string()),
        ("a numeric principal", json!({ "principal": 5 }).to_string()),
        ("a null principal", json!({ "principal": null }).to_string()),
        ("truncated JSON", r#"{"principal":"#.to_owned()),
        ("not JSON", "principal=alice".to_owned()),
        ("an empty body", String::new()),
        ("a JSON array", "[]".to_owned()),
        ("JSON null", "null".to_owned()),
        ("two objects", r#"{"principal":"a"}{"principal":"b"}"#.to_owned()),
        ("invalid UTF-8 in a string", String::from_utf8_lossy(b"{\"principal\":\"\xff\"}").into_owned()),
    ];
    for (what, body) in &bodies {
        let response = admin.create_raw(body.clone()).await;
        assert_admin_error(&response, 400, "invalid_argument", what);
        assert!(!response.text().contains(&long), "{what}: the error echoes the input");
    }
    // Raw bytes that are not UTF-8 at all.
    let response = admin.create_raw(b"{\"principal\":\"\xff\xfe\"}".to_vec()).await;
    assert_admin_error(&response, 400, "invalid_argument", "bytes that are not UTF-8");

    // Revocation ids go into a path: anything but an id is refused.
    for (what, id) in [
        ("SQL", "1'%20OR%20'1'='1"),
        ("SQL without quotes", "1%3BDROP%20TABLE%20api_keys"),
        ("upper case", "AAAAAAAAAAAAAAAA"),
        ("too short", "aaaa"),
        ("too long", "aaaaaaaaaaaaaaaaa"),
        ("a full key", "gh_aaaaaaaaaaaaaaaa_bbbb"),
    ] {
        assert_admin_error(&admin.revoke(id).await, 400, "invalid_argument", what);
    }
    // Audit paging.
    for query in ["limit=abc", "limit=1001", "limit=-1", "after=-1", "after=x", "after=1;DROP%20TABLE%20x", "bogus=1"] {
        assert_admin_error(&admin.audit_page(query).await, 400, "invalid_argument", query);
    }

    assert_eq!(counts(&admin).await, before, "a refused input changed the keys or the audit trail");
    // Nothing happened to the existing key or the tables.
    let keys = admin.keys().await;
    assert_eq!(keys[0]["id"], existing_id.as_str());
    assert_eq!(keys[0]["revoked_at"], Value::Null);
    assert_eq!(admin.verify().await["ok"], true);
}

/// The body limit (16 KiB) answers 413, in the admin API's JSON error
/// shape like every other admin error, and changes nothing.
#[tokio::test]
async fn http_oversized_body_is_413_json_and_changes_nothing() {
    let echo = Echo::start("echo").await;
    let gateway = start(&echo, "").await;
    let admin = AdminHttp::admin(gateway.admin);
    let before = counts(&admin).await;
    let body = json!({ "principal": "a".repeat(20 * 1024) }).to_string();
    assert!(body.len() > 20 * 1024);
    let response = admin.create_raw(body).await;
    assert_eq!(counts(&admin).await, before);
    assert_eq!(response.status, 413, "{}", response.text());
    assert!(
        response.header("content-type").is_some_and(|ct| ct.starts_with("application/json")),
        "a 413 from the admin API should be JSON like its other errors; got content-type {:?}, body {:?}",
        response.header("content-type"),
        response.text()
    );
    let json = response.json();
    assert!(json["error"]["code"].as_str().is_some_and(|c| !c.is_empty()), "{json}");
    assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{json}");
}

#[tokio::test]
async fn grpc_bad_input_is_invalid_argument_and_changes_nothing() {
    let echo = Echo::start("echo").await;
    let gateway = start(&echo, "").await;
    let admin = AdminHttp::admin(gateway.admin);
    admin.create_key("alice", &["echo.read"]).await;
    let before = counts(&admin).await;
    let mut grpc = grpc_admin(&gateway).await;
    let token = Some(ADMIN_TOKEN);

    let create = |principal: &str, scopes: &[&str], expires_at_ms: i64| pb::CreateKeyRequest {
        principal: principal.to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        expires_at_ms,
    };
    let long = "a".repeat(10_000);
    let huge_scope = "s".repeat(20 * 1024);
    let cases = [
        ("a 10k-character principal", create(&long, &[], 0)),
        ("an empty principal", create("", &[], 0)),
        ("SQL in the principal", create("alice'); DROP TABLE api_keys;--", &[], 0)),
        ("a NUL in the principal", create("a\u{0}b", &[], 0)),
        ("a scope with a space", create("a", &["echo read"], 0)),
        ("SQL in a scope", create("a", &["x'; DELETE FROM audit_events;--"], 0)),
        ("a 20 KiB scope", create("a", &[&huge_scope], 0)),
        ("a repeated scope", create("a", &["x", "x"], 0)),
        ("an expiry in the past", create("a", &[], 1000)),
        ("a negative expiry", create("a", &[], -5)),
    ];
    for (what, request) in cases {
        let status = grpc.create_key(authed(request, token)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(!status.message().contains(&long), "{what}: the error echoes the input");
    }
    for id in ["1' OR '1'='1", "", "AAAAAAAAAAAAAAAA", "../../etc/passwd"] {
        let status = grpc.revoke_key(authed(pb::RevokeKeyRequest { id: id.to_owned() }, token)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "revoke {id:?}: {status:?}");
    }
    for (after, limit) in [(-1, 10), (0, 1001)] {
        let status = grpc.list_audit(authed(pb::ListAuditRequest { after, limit }, token)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "after {after} limit {limit}: {status:?}");
    }
    assert_eq!(counts(&admin).await, before, "a refused input changed the keys or the audit trail");
    assert_eq!(admin.verify().await["ok"], true);
}

// ---- the command line ---------------------------------------------------------

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn cli_keys_and_audit_against_a_running_gateway() {
    let echo = Echo::start("echo").await;
    let gateway = start(&echo, "").await;
    let admin_addr = Some(gateway.admin);
    let token = Some(ADMIN_TOKEN);

    let out = run_cli(
        admin_addr,
        token,
        &[
            "keys",
            "create",
            "--principal",
            "cli-user",
            "--scope",
            "echo.read",
            "--scope",
            "b",
            "--expires-at",
            "2100-01-01T00:00:00Z",
        ],
    )
    .await;
    assert!(out.status.success(), "keys create: {out:?}");
    let created = stdout_json(&out);
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("gh_{id}_")), "{created}");
    assert_eq!(created["principal"], "cli-user");
    assert_eq!(created["scopes"], json!(["echo.read", "b"]));
    assert_eq!(created["expires_at"], 4_102_444_800_000_i64);
    wait_public(&gateway, &key, 200, CACHE_SYNC).await;

    // The admin URL from the environment instead of the flag.
    let out = run_cli_env_url(gateway.admin, token, &["keys", "list"]).await;
    assert!(out.status.success(), "keys list: {out:?}");
    let listed = stdout_json(&out);
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["keys"][0]["id"], id.as_str());
    assert!(!text(&out.stdout).contains(&key[20..]), "keys list prints a secret");

    let out = run_cli(admin_addr, token, &["keys", "revoke", &id]).await;
    assert!(out.status.success(), "keys revoke: {out:?}");
    assert!(stdout_json(&out)["revoked_at"].as_i64().is_some(), "{out:?}");
    wait_public(&gateway, &key, 401, CACHE_SYNC).await;

    // Refusals exit 1 and say why on standard error.
    let out = run_cli(admin_addr, token, &["keys", "revoke", &id]).await;
    assert_eq!(out.status.code(), Some(1), "revoking twice: {out:?}");
    assert!(text(&out.stderr).contains("409") && text(&out.stderr).contains("conflict"), "{}", text(&out.stderr));
    let out = run_cli(admin_addr, token, &["keys", "create", "--principal", "bad principal"]).await;
    assert_eq!(out.status.code(), Some(1), "an invalid principal: {out:?}");
    assert!(text(&out.stderr).contains("invalid_argument"), "{}", text(&out.stderr));
    let out = run_cli(admin_addr, None, &["keys", "list"]).await;
    assert_eq!(out.status.code(), Some(1), "no token: {out:?}");
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    let out = run_cli(admin_addr, Some("wrong"), &["keys", "list"]).await;
    assert_eq!(out.status.code(), Some(1), "a wrong token: {out:?}");
    // A malformed id never reaches the server; an unreachable server exits 2.
    let out = run_cli(admin_addr, token, &["keys", "revoke", "../v1/audit"]).await;
    assert_eq!(out.status.code(), Some(2), "a malformed id: {out:?}");
    let out = run_cli(Some(unused_addr()), token, &["keys", "list"]).await;
    assert_eq!(out.status.code(), Some(2), "an unreachable admin API: {out:?}");

    let out = run_cli(admin_addr, token, &["audit", "list", "--after", "0", "--limit", "10"]).await;
    assert!(out.status.success(), "audit list: {out:?}");
    let events = stdout_json(&out)["events"].as_array().unwrap().clone();
    let actions: Vec<(&str, &str)> =
        events.iter().map(|e| (e["action"].as_str().unwrap(), e["target"].as_str().unwrap())).collect();
    assert_eq!(actions[..2], [("key.create", id.as_str()), ("key.revoke", id.as_str())], "{events:#?}");
    // The refused calls above were audited as denials (no token, wrong token).
    assert_eq!(actions[2..], [("admin.denied", "key.list"), ("admin.denied", "key.list")], "{events:#?}");
    let out = run_cli(admin_addr, token, &["audit", "list", "--after", "1", "--limit", "1"]).await;
    assert!(out.status.success(), "audit list page: {out:?}");
    let page = stdout_json(&out)["events"].as_array().unwrap().clone();
    assert_eq!(page.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), [2]);

    let out = run_cli(admin_addr, token, &["audit", "verify"]).await;
    assert!(out.status.success(), "audit verify: {out:?}");
    assert_eq!(stdout_json(&out), json!({ "ok": true, "checked": 4, "first_broken": null }));
}

/// `gatehouse migrate --config FILE` prepares a database that a gateway
/// with `migrate: false` then serves from.
#[tokio::test]
async fn migrate_command_on_sqlite() {
    migrate_command(Backend::Sqlite).await;
}

#[tokio::test]
async fn migrate_command_on_postgres() {
    migrate_command(Backend::Postgres).await;
}

async fn migrate_command(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let dir = std::env::temp_dir().join(format!("gatehouse-e2e-migrate-{}-{}", std::process::id(), now_ms()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gatehouse.yaml");
    let yaml = format!("listeners:\n  public: 127.0.0.1:0\n  admin: 127.0.0.1:0\n{}", db.config_block(&[]));
    std::fs::write(&file, &yaml).unwrap();
    let path = file.to_str().unwrap();
    for round in 0..2 {
        let out = run_cli(None, None, &["migrate", "--config", path]).await;
        assert!(out.status.success(), "migrate round {round}: {out:?}");
        assert_eq!(text(&out.stdout).trim(), "migrations applied", "{out:?}");
    }
    let pool = db.pool().await;
    let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys").fetch_one(&pool).await.unwrap();
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events").fetch_one(&pool).await.unwrap();
    assert_eq!((keys, events), (0, 0));
    pool.close().await;

    let echo = Echo::start("echo").await;
    let gateway = start(&echo, &db.config_block(&["migrate: false"])).await;
    let admin = AdminHttp::admin(gateway.admin);
    let key = admin.create_key("alice", &["echo.read"]).await;
    wait_public(&gateway, key["key"].as_str().unwrap(), 200, CACHE_SYNC).await;
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- several gateways, one database -----------------------------------------

/// Two gateways on one fresh PostgreSQL database: a key revoked through A
/// is refused by B within 1 s (LISTEN/NOTIFY), polled every 50 ms.
#[tokio::test]
async fn revocation_reaches_another_gateway_within_a_second_on_postgres() {
    let Some(db) = TestDatabase::postgres().await else { return };
    let echo = Echo::start("echo").await;
    let block = db.config_block(&["max_connections: 10", "migrate: true", "required: true", "poll_interval: 1s"]);
    let a = start(&echo, &block).await;
    let b = start(&echo, &block).await;
    let admin_a = AdminHttp::admin(a.admin);
    for round in 0..3 {
        let created = admin_a.create_key(&format!("svc-{round}"), &["echo.read"]).await;
        let key = created["key"].as_str().unwrap().to_owned();
        let id = created["id"].as_str().unwrap().to_owned();
        // B hears about the new key through NOTIFY as well.
        let learned = wait_public(&b, &key, 200, Duration::from_secs(1)).await;
        assert!(learned < Duration::from_secs(1), "B took {learned:?} to learn a new key");

        let revoked = admin_a.revoke(&id).await;
        assert_eq!(revoked.status, 200, "{}", revoked.text());
        let acknowledged = Instant::now();
        let mut polls = 0;
        loop {
            polls += 1;
            let status = public_status(&b, &key).await;
            if status == 401 {
                break;
            }
            assert_eq!(status, 200);
            assert!(
                acknowledged.elapsed() < Duration::from_secs(1),
                "round {round}: B still accepted the revoked key {:?} after the revocation ({polls} polls)",
                acknowledged.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = acknowledged.elapsed();
        assert!(took < Duration::from_secs(1), "round {round}: B refused the key only after {took:?}");
        eprintln!("round {round}: B refused the revoked key {took:?} after A acknowledged the revocation");
    }
    // And the other way round: revoked through B, refused by A.
    let admin_b = AdminHttp::admin(b.admin);
    let created = admin_b.create_key("svc-b", &["echo.read"]).await;
    let key = created["key"].as_str().unwrap().to_owned();
    wait_public(&a, &key, 200, Duration::from_secs(1)).await;
    assert_eq!(admin_b.revoke(created["id"].as_str().unwrap()).await.status, 200);
    let took = wait_public(&a, &key, 401, Duration::from_secs(1)).await;
    assert!(took < Duration::from_secs(1), "A refused the key only after {took:?}");
}

/// On SQLite the other gateway polls: a revocation reaches it within its
/// `poll_interval` (here 250 ms) plus the time of one poll.
#[tokio::test]
async fn revocation_reaches_another_gateway_within_the_poll_interval_on_sqlite() {
    let db = TestDatabase::sqlite();
    let echo = Echo::start("echo").await;
    let block = db.config_block(&["poll_interval: 250ms"]);
    let a = start(&echo, &block).await;
    let b = start(&echo, &block).await;
    let admin_a = AdminHttp::admin(a.admin);
    let created = admin_a.create_key("svc", &["echo.read"]).await;
    let key = created["key"].as_str().unwrap().to_owned();
    wait_public(&b, &key, 200, Duration::from_secs(2)).await;
    assert_eq!(admin_a.revoke(created["id"].as_str().unwrap()).await.status, 200);
    let took = wait_public(&b, &key, 401, Duration::from_secs(3)).await;
    assert!(took < Duration::from_millis(1250), "B refused the key only after {took:?} (poll interval 250 ms)");
}

// ---- the database going away ----------------------------------------------------

/// A gateway reaches PostgreSQL through a proxy the test cuts: readiness
/// turns 503 while liveness stays 200, requests with cached keys keep
/// flowing, admin writes fail with 503 `unavailable` (UNAVAILABLE over
/// gRPC) and change nothing; when the proxy is restored, everything recovers
/// without a restart.
#[tokio::test]
async fn database_outage_and_recovery_on_postgres() {
    let Some(db) = TestDatabase::postgres().await else { return };
    let proxy = TcpProxy::start(db.server_addr()).await;
    let echo = Echo::start("echo").await;
    let block = db.config_block_for(&db.url_via(proxy.addr()), &["max_connections: 10", "required: true"]);
    let gateway = start(&echo, &block).await;
    let admin = AdminHttp::admin(gateway.admin);
    let created = admin.create_key("alice", &["echo.read"]).await;
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    wait_public(&gateway, &key, 200, CACHE_SYNC).await;
    let ready = poll_until(gateway.admin, "/readyz", Duration::from_secs(10), |r| r.status == 200).await;
    assert!(ready.is_ok(), "ready before the outage: {:?}", ready.map_err(|r| r.text()));

    proxy.cut();
    let cut_at = Instant::now();
    let down = poll_until(gateway.admin, "/readyz", Duration::from_secs(15), |r| r.status == 503).await;
    let down = down.unwrap_or_else(|r| panic!("/readyz still {} {} 15 s into the outage", r.status, r.text()));
    eprintln!("/readyz turned 503 {:?} after the cut: {}", cut_at.elapsed(), down.text());
    let verbose = get(gateway.admin, "/readyz?verbose").await;
    assert_eq!(verbose.status, 503);
    assert!(verbose.text().contains("database"), "the verbose answer names the database: {}", verbose.text());
    assert_eq!(get(gateway.admin, "/healthz").await.status, 200, "liveness never depends on the database");

    // Cached keys keep working.
    for _ in 0..20 {
        assert_eq!(public_status(&gateway, &key).await, 200, "a cached key during the outage");
    }
    // Admin writes (and reads) fail cleanly, concurrently so the test does
    // not wait out each pool timeout in turn.
    let started = Instant::now();
    let mut grpc = grpc_admin(&gateway).await;
    let request = pb::CreateKeyRequest { principal: "bob".into(), scopes: vec![], expires_at_ms: 0 };
    let bob = json!({ "principal": "bob", "scopes": ["echo.read"] });
    let (create, revoke, list, grpc_create) = tokio::join!(
        admin.create(&bob),
        admin.revoke(&id),
        admin.list(),
        grpc.create_key(authed(request, Some(ADMIN_TOKEN))),
    );
    eprintln!("admin calls during the outage answered within {:?}", started.elapsed());
    assert_admin_error(&create, 503, "unavailable", "create during the outage");
    assert_admin_error(&revoke, 503, "unavailable", "revoke during the outage");
    assert_admin_error(&list, 503, "unavailable", "list during the outage");
    assert_eq!(grpc_code(grpc_create, "gRPC create during the outage"), Code::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(15), "the failures took {:?}", started.elapsed());
    // The failed revocation changed nothing.
    assert_eq!(public_status(&gateway, &key).await, 200, "a failed revocation must not revoke");
    assert_eq!(get(gateway.admin, "/healthz").await.status, 200);

    proxy.restore().await;
    let restored_at = Instant::now();
    let up = poll_until(gateway.admin, "/readyz", Duration::from_secs(20), |r| r.status == 200).await;
    assert!(up.is_ok(), "/readyz did not recover within 20 s: {:?}", up.map_err(|r| r.text()));
    eprintln!("/readyz back to 200 {:?} after the restore", restored_at.elapsed());
    let created = admin.create(&json!({ "principal": "bob", "scopes": ["echo.read"] })).await;
    assert_eq!(created.status, 201, "create after recovery: {}", created.text());
    let new_key = created.json()["key"].as_str().unwrap().to_owned();
    // The key cache's listener reconnects with backoff; the new key must
    // arrive without a restart.
    let took = wait_public(&gateway, &new_key, 200, Duration::from_secs(40)).await;
    eprintln!("a key created after the restore worked {took:?} later");
    assert_eq!(admin.keys().await.len(), 2, "only the key created after recovery was added");
    assert_eq!(admin.revoke(&id).await.status, 200);
    wait_public(&gateway, &key, 401, CACHE_SYNC).await;
    assert_eq!(admin.verify().await["ok"], true);
}

// ---- pool gauges -------------------------------------------------------------

#[tokio::test]
async fn pool_gauges_show_the_pool_under_load_on_postgres() {
    let Some(db) = TestDatabase::postgres().await else { return };
    pool_gauges_under_load(&db).await;
}

#[tokio::test]
async fn pool_gauges_show_the_pool_under_load_on_sqlite() {
    pool_gauges_under_load(&TestDatabase::sqlite()).await;
}

/// 50 concurrent admin list calls, again and again for 3 s, while
/// `/metrics` is scraped every 100 ms: some scrape shows connections in
/// use, none shows more than the pool's maximum, and the maximum is the
/// configured 10. Afterwards the pool is seen idle again.
async fn pool_gauges_under_load(db: &TestDatabase) {
    let echo = Echo::start("echo").await;
    let gateway = start(&echo, &db.config_block(&["max_connections: 10"])).await;
    let admin = AdminHttp::admin(gateway.admin);
    for i in 0..50 {
        admin.create_key(&format!("svc-{i}"), &["echo.read"]).await;
    }
    let gauges = |text: &str| {
        let get = |name: &str, labels: &[(&str, &str)]| {
            metric_value(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in /metrics"))
        };
        (
            get("gateway_db_pool_connections", &[("state", "in_use")]),
            get("gateway_db_pool_connections", &[("state", "idle")]),
            get("gateway_db_pool_max_connections", &[]),
        )
    };

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let admin = admin.clone();
        let stop = std::sync::Arc::clone(&stop);
        load.spawn(async move {
            let mut calls = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let response = admin.list().await;
                assert_eq!(response.status, 200, "{}", response.text());
                calls += 1;
            }
            calls
        });
    }
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        seen.push(gauges(&scrape(gateway.admin, "/metrics").await));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut calls = 0;
    while let Some(done) = load.join_next().await {
        calls += done.unwrap();
    }
    eprintln!("{calls} list calls; (in_use, idle, max) per scrape: {seen:?}");
    for &(in_use, idle, max) in &seen {
        assert_eq!(max, 10.0, "gateway_db_pool_max_connections");
        assert!(in_use >= 0.0 && idle >= 0.0, "{seen:?}");
        assert!(in_use + idle <= max, "in_use {in_use} + idle {idle} > max {max}: {seen:?}");
    }
    assert!(seen.iter().any(|&(in_use, _, _)| in_use > 0.0), "no scrape saw a connection in use: {seen:?}");
    assert!(seen.iter().any(|&(in_use, idle, _)| in_use + idle > 1.0), "the pool never grew past one: {seen:?}");

    // Idle again once the load is gone (the gauges are sampled every second).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (in_use, idle, _) = gauges(&scrape(gateway.admin, "/metrics").await);
        if in_use == 0.0 {
            assert!(idle >= 1.0, "the pool keeps its connections: idle {idle}");
            break;
        }
        assert!(Instant::now() < deadline, "in_use still {in_use} 5 s after the load stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
