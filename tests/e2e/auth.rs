//! API key authentication and route scopes, end to end through the gateway:
//! no key, a wrong key, an expired key, a revoked key and a key without the
//! route's scope, each over HTTP and gRPC, with the status and gRPC code the
//! design fixes (401 / UNAUTHENTICATED, 403 / PERMISSION_DENIED), the
//! rejection reason in metrics, and `identity_id` in the access line. A
//! valid key reaches the upstream as `x-gatehouse-identity`, never itself,
//! and a client cannot forge that header.
//!
//! Keys are made through the admin API with the bootstrap token. The
//! gateway's key cache learns about a new key on its next poll of the
//! database (SQLite, `poll_interval`, 1 s by default), so each test waits
//! for a new key to be accepted before relying on it.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use gatehouse_proto::echo::v1::EchoRequest;
use gatehouse_proto::echo::v1::echo_client::EchoClient;
use gatehouse_test_support::{
    ADMIN_ENV, AdminHttp, Collected, Echo, Gateway, RecordingGrpcUpstream, empty, full, http1_client, http2_client,
    metric_value, scrape, send, url,
};
use http::Request;
use prost::Message;
use serde_json::Value;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// How long a new or revoked key may take to reach the gateway's key cache:
/// the default SQLite poll interval (1 s) plus slack for a loaded machine.
const CACHE_SYNC: Duration = Duration::from_secs(5);
/// How long an access line may take to appear after its response.
const LINE_TIMEOUT: Duration = Duration::from_secs(5);

/// The gateway under test, its echo upstream and an admin client.
struct Setup {
    gateway: Gateway,
    admin: AdminHttp,
    _echo: Echo,
}

/// A gateway (on its own SQLite file) with an open route `/open`, an
/// HTTP route `/echo` and a gRPC route for `echo.v1.Echo` that both need a
/// key with `echo.read`.
async fn setup() -> Setup {
    let echo = Echo::start("echo").await;
    let config = format!(
        r#"
listeners:
  public: 127.0.0.1:0
  admin: 127.0.0.1:0
upstreams:
  echo:
    protocol: http1
    endpoints: ["{echo}"]
  echo-grpc:
    protocol: grpc
    endpoints: ["{echo}"]
routes:
  - name: open
    match: {{ path_prefix: /open }}
    upstream: echo
  - name: echo-http
    match: {{ path_prefix: /echo }}
    upstream: echo
    auth: {{ required: true, scopes: [echo.read] }}
  - name: echo-grpc
    match: {{ grpc_service: echo.v1.Echo }}
    upstream: echo-grpc
    auth: {{ required: true, scopes: [echo.read] }}
"#,
        echo = echo.addr,
    );
    let gateway = Gateway::start_with_env(&config, &ADMIN_ENV).await;
    let admin = AdminHttp::admin(gateway.admin);
    Setup { gateway, admin, _echo: echo }
}

/// How a request presents its key.
#[derive(Clone, Copy, Debug)]
enum Cred<'a> {
    None,
    Bearer(&'a str),
    ApiKey(&'a str),
    /// Any `Authorization` value, as it is.
    Authorization(&'a str),
}

impl Cred<'_> {
    fn header(self) -> Option<(&'static str, String)> {
        match self {
            Cred::None => None,
            Cred::Bearer(key) => Some(("authorization", format!("Bearer {key}"))),
            Cred::ApiKey(key) => Some(("x-api-key", key.to_owned())),
            Cred::Authorization(value) => Some(("authorization", value.to_owned())),
        }
    }
}

/// `GET path` on the public port with `cred`, a chosen request id and
/// `extra` headers, over HTTP/1.1.
async fn http_get(
    gateway: &Gateway,
    path: &str,
    cred: Cred<'_>,
    request_id: &str,
    extra: &[(&str, &str)],
) -> Collected {
    let mut request = Request::get(url(gateway.public, path)).header("x-request-id", request_id);
    if let Some((name, value)) = cred.header() {
        request = request.header(name, value);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    send(&http1_client(), request.body(empty()).unwrap()).await
}

async fn grpc_client(gateway: &Gateway) -> EchoClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", gateway.public)).unwrap().connect().await.unwrap();
    EchoClient::new(channel)
}

/// One unary call to `echo.v1.Echo/Unary` with `cred` as metadata.
async fn grpc_unary(
    client: &mut EchoClient<Channel>,
    cred: Cred<'_>,
    request_id: &str,
    extra: &[(&'static str, &str)],
) -> Result<tonic::Response<gatehouse_proto::echo::v1::EchoResponse>, Status> {
    let mut request = tonic::Request::new(EchoRequest { message: "hi".to_owned(), ..EchoRequest::default() });
    let metadata = request.metadata_mut();
    metadata.insert("x-request-id", request_id.parse().unwrap());
    if let Some((name, value)) = cred.header() {
        metadata.insert(name, value.parse().unwrap());
    }
    for (name, value) in extra {
        metadata.insert(*name, value.parse().unwrap());
    }
    client.unary(request).await
}

/// Checks the gateway's JSON error: status, `error.code`, and the request id.
fn assert_rejected(response: &Collected, status: u16, code: &str, request_id: &str, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", response.text());
    assert!(
        response.header("content-type").is_some_and(|ct| ct.starts_with("application/json")),
        "{what}: content-type {:?}",
        response.header("content-type")
    );
    let json = response.json();
    assert_eq!(json["error"]["code"], code, "{what}: {json}");
    assert_eq!(json["error"]["request_id"], request_id, "{what}: {json}");
    assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {json}");
}

fn assert_grpc_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, what: &str) {
    match result {
        Ok(response) => panic!("{what}: expected {code:?}, the call succeeded: {response:?}"),
        Err(status) => assert_eq!(status.code(), code, "{what}: {status:?}"),
    }
}

/// Waits until the gateway's key cache knows `key` (the protected route
/// stops answering 401 for it); returns the first other answer.
async fn wait_until_known(gateway: &Gateway, key: &str) -> Collected {
    let deadline = Instant::now() + CACHE_SYNC;
    loop {
        let response = http_get(gateway, "/echo/status/200", Cred::Bearer(key), "wait-known", &[]).await;
        if response.status != 401 {
            return response;
        }
        assert!(Instant::now() < deadline, "the gateway did not learn a new key within {CACHE_SYNC:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Creates a key through the admin API and waits until the gateway
/// accepts it (answers anything but 401 on the protected route).
async fn new_key(s: &Setup, principal: &str, scopes: &[&str]) -> (String, String) {
    let created = s.admin.create_key(principal, scopes).await;
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    wait_until_known(&s.gateway, &key).await;
    (id, key)
}

/// A well-formed key that no one created: `gh_` + 16 + `_` + 52 base32 characters.
fn unknown_key() -> String {
    format!("gh_{}_{}", "a".repeat(16), "b".repeat(52))
}

/// `key` with the last character of its secret changed.
fn wrong_secret(key: &str) -> String {
    let mut wrong = key.to_owned();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'a' { 'b' } else { 'a' });
    wrong
}

/// A gRPC code as go-grpc-prometheus (and the access line) names it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Unauthenticated => "Unauthenticated",
        Code::PermissionDenied => "PermissionDenied",
        other => panic!("no name listed for {other:?}"),
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The access line of the request with `request_id`.
async fn access_line(gateway: &Gateway, request_id: &str) -> Value {
    gateway
        .wait_for_log(LINE_TIMEOUT, |v| v["target"] == "access" && v["request_id"] == request_id)
        .await
        .unwrap_or_else(|| panic!("no access line for request {request_id}: {:#?}", gateway.lines()))
}

/// The echo upstream's view of a request (`/echo/headers`, `/open/headers`):
/// the values of header `name` it received.
fn upstream_header(response: &Collected, name: &str) -> Vec<String> {
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["headers"][name]
        .as_array()
        .map(|values| values.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

// ---- rejections --------------------------------------------------------

#[tokio::test]
async fn http_no_key_and_wrong_keys_are_401() {
    let s = setup().await;
    let (_, key) = new_key(&s, "alice", &["echo.read"]).await;
    let unknown = unknown_key();
    let wrong = wrong_secret(&key);
    let basic = format!("Basic {key}");
    let cases: [(&str, Cred<'_>); 8] = [
        ("no key", Cred::None),
        ("a bearer token that is not a key", Cred::Bearer("not-a-key")),
        ("an unknown key as bearer", Cred::Bearer(&unknown)),
        ("an unknown key as x-api-key", Cred::ApiKey(&unknown)),
        ("the wrong secret as bearer", Cred::Bearer(&wrong)),
        ("the wrong secret as x-api-key", Cred::ApiKey(&wrong)),
        ("a valid key under another scheme", Cred::Authorization(&basic)),
        ("an empty x-api-key", Cred::ApiKey("")),
    ];
    for (i, (what, cred)) in cases.into_iter().enumerate() {
        let id = format!("unauth-{i}");
        let response = http_get(&s.gateway, "/echo/headers", cred, &id, &[]).await;
        assert_rejected(&response, 401, "unauthenticated", &id, what);
        let line = access_line(&s.gateway, &id).await;
        assert_eq!(line["status"], 401, "{what}: {line}");
        assert_eq!(line["error_type"], "unauthenticated", "{what}: {line}");
        assert!(line.get("identity_id").is_none_or(Value::is_null), "{what}: no identity on a 401: {line}");
    }
    // The valid key itself still works, by either header.
    for cred in [Cred::Bearer(&key), Cred::ApiKey(&key)] {
        let response = http_get(&s.gateway, "/echo/status/200", cred, "valid", &[]).await;
        assert_eq!(response.status, 200, "{cred:?}: {}", response.text());
    }
}

#[tokio::test]
async fn http_key_without_the_scope_is_403() {
    let s = setup().await;
    let (_, other) = new_key(&s, "bob", &["other.read"]).await;
    let (_, admin_only) = new_key(&s, "carol", &["admin"]).await;
    let (_, none) = new_key(&s, "dave", &[]).await;
    let cases = [
        ("another scope, bearer", Cred::Bearer(&other)),
        ("another scope, x-api-key", Cred::ApiKey(&other)),
        ("admin scope only", Cred::Bearer(&admin_only)),
        ("no scopes", Cred::ApiKey(&none)),
    ];
    for (i, (what, cred)) in cases.into_iter().enumerate() {
        let id = format!("forbidden-{i}");
        let response = http_get(&s.gateway, "/echo/headers", cred, &id, &[]).await;
        assert_rejected(&response, 403, "forbidden", &id, what);
        let line = access_line(&s.gateway, &id).await;
        assert_eq!(line["status"], 403, "{what}: {line}");
        assert_eq!(line["error_type"], "forbidden", "{what}: {line}");
    }
    // The same keys pass a route that needs no scope.
    let response = http_get(&s.gateway, "/open/status/200", Cred::Bearer(&other), "open", &[]).await;
    assert_eq!(response.status, 200, "{}", response.text());
}

/// DESIGN §4: the access line carries `identity_id` "when authenticated". A
/// key without the route's scope did authenticate; who was refused is what
/// an operator looks for in the log.
#[tokio::test]
async fn forbidden_access_line_names_the_authenticated_identity() {
    let s = setup().await;
    let (_, other) = new_key(&s, "bob", &["other.read"]).await;
    let response = http_get(&s.gateway, "/echo/headers", Cred::Bearer(&other), "forbidden-who", &[]).await;
    assert_eq!(response.status, 403, "{}", response.text());
    let line = access_line(&s.gateway, "forbidden-who").await;
    assert_eq!(line["identity_id"], "bob", "{line}");
}

#[tokio::test]
async fn grpc_no_key_wrong_key_and_missing_scope() {
    let s = setup().await;
    let (_, key) = new_key(&s, "alice", &["echo.read"]).await;
    let (_, other) = new_key(&s, "bob", &["other.read"]).await;
    let unknown = unknown_key();
    let wrong = wrong_secret(&key);
    let mut client = grpc_client(&s.gateway).await;
    let cases: [(&str, Cred<'_>, Code); 9] = [
        ("no key", Cred::None, Code::Unauthenticated),
        ("not a key", Cred::Bearer("not-a-key"), Code::Unauthenticated),
        ("unknown key, bearer", Cred::Bearer(&unknown), Code::Unauthenticated),
        ("unknown key, x-api-key", Cred::ApiKey(&unknown), Code::Unauthenticated),
        ("wrong secret, bearer", Cred::Bearer(&wrong), Code::Unauthenticated),
        ("wrong secret, x-api-key", Cred::ApiKey(&wrong), Code::Unauthenticated),
        ("another scope, bearer", Cred::Bearer(&other), Code::PermissionDenied),
        ("another scope, x-api-key", Cred::ApiKey(&other), Code::PermissionDenied),
        ("the right key", Cred::Bearer(&key), Code::Ok),
    ];
    for (i, (what, cred, code)) in cases.into_iter().enumerate() {
        let id = format!("grpc-{i}");
        let result = grpc_unary(&mut client, cred, &id, &[]).await;
        if code == Code::Ok {
            assert_eq!(result.unwrap().into_inner().message, "hi", "{what}");
        } else {
            assert_grpc_code(result, code, what);
        }
        let line = access_line(&s.gateway, &id).await;
        assert_eq!(line["grpc_code"], code_name(code), "{what}: {line}");
        if code == Code::Ok {
            assert_eq!(line["identity_id"], "alice", "{what}: {line}");
        }
    }
    let response = grpc_unary(&mut client, Cred::ApiKey(&key), "grpc-ok-2", &[]).await.unwrap();
    assert_eq!(response.into_inner().message, "hi");
}

/// A gRPC rejection is trailers-only: HTTP 200, `grpc-status` in the
/// headers, no body.
#[tokio::test]
async fn grpc_rejections_are_trailers_only() {
    let s = setup().await;
    let (_, other) = new_key(&s, "bob", &["other.read"]).await;
    for (cred, status) in [(Cred::None, "16"), (Cred::ApiKey(&other), "7")] {
        let message = EchoRequest { message: "hi".to_owned(), ..EchoRequest::default() }.encode_to_vec();
        let mut framed = BytesMut::new();
        framed.put_u8(0);
        framed.put_u32(message.len() as u32);
        framed.put_slice(&message);
        let mut request = Request::post(url(s.gateway.public, "/echo.v1.Echo/Unary"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some((name, value)) = cred.header() {
            request = request.header(name, value);
        }
        let response = send(&http2_client(), request.body(full(Bytes::from(framed))).unwrap()).await;
        assert_eq!(response.status, 200, "{cred:?}");
        assert_eq!(response.header("grpc-status"), Some(status), "{cred:?}: {:?}", response.headers);
        assert!(response.header("content-type").is_some_and(|ct| ct.starts_with("application/grpc")));
        assert!(response.body.is_empty(), "{cred:?}: trailers-only has no body: {:?}", response.body);
    }
}

#[tokio::test]
async fn expired_keys_are_refused_over_http_and_grpc() {
    let s = setup().await;
    // Long enough to see the key work first on a loaded machine, short
    // enough to keep the test quick.
    let expires_at = now_ms() + 4000;
    let created = s
        .admin
        .create(&serde_json::json!({ "principal": "erin", "scopes": ["echo.read"], "expires_at": expires_at }))
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["expires_at"], expires_at);
    let key = created.json()["key"].as_str().unwrap().to_owned();
    let first = wait_until_known(&s.gateway, &key).await;
    assert_eq!(first.status, 200, "the key works before it expires: {}", first.text());
    let mut client = grpc_client(&s.gateway).await;
    assert!(now_ms() < expires_at, "the machine is too slow for this test's 4 s window");
    grpc_unary(&mut client, Cred::Bearer(&key), "before-expiry", &[]).await.unwrap();

    // Time passing is the point here: wait until just past the expiry.
    let left = u64::try_from(expires_at - now_ms()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(left + 50)).await;

    for (i, cred) in [Cred::Bearer(&key), Cred::ApiKey(&key)].into_iter().enumerate() {
        let id = format!("expired-http-{i}");
        let response = http_get(&s.gateway, "/echo/headers", cred, &id, &[]).await;
        assert_rejected(&response, 401, "unauthenticated", &id, "expired key");
        let result = grpc_unary(&mut client, cred, &format!("expired-grpc-{i}"), &[]).await;
        assert_grpc_code(result, Code::Unauthenticated, "expired key over gRPC");
    }
}

#[tokio::test]
async fn expiry_given_as_rfc3339_is_enforced_too() {
    let s = setup().await;
    // Whole seconds: RFC 3339 as written here has no fraction.
    let expires_secs = (now_ms() / 1000) + 4;
    let rfc3339 = humantime::format_rfc3339(UNIX_EPOCH + Duration::from_secs(expires_secs as u64)).to_string();
    let created = s
        .admin
        .create(&serde_json::json!({ "principal": "erin", "scopes": ["echo.read"], "expires_at": rfc3339 }))
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["expires_at"], expires_secs * 1000, "{rfc3339}");
    let key = created.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(wait_until_known(&s.gateway, &key).await.status, 200);
    let left = u64::try_from(expires_secs * 1000 - now_ms()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(left + 50)).await;
    let response = http_get(&s.gateway, "/echo/headers", Cred::Bearer(&key), "expired-rfc", &[]).await;
    assert_rejected(&response, 401, "unauthenticated", "expired-rfc", "expired key");
}

#[tokio::test]
async fn revoked_keys_are_refused_over_http_and_grpc() {
    let s = setup().await;
    let (id, key) = new_key(&s, "frank", &["echo.read"]).await;
    let mut client = grpc_client(&s.gateway).await;
    grpc_unary(&mut client, Cred::ApiKey(&key), "before-revoke", &[]).await.unwrap();

    let revoked = s.admin.revoke(&id).await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    let revoked_at = Instant::now();
    // The revocation reaches the cache on its next poll (1 s by default).
    let deadline = revoked_at + CACHE_SYNC;
    loop {
        let response = http_get(&s.gateway, "/echo/status/200", Cred::Bearer(&key), "revoking", &[]).await;
        if response.status == 401 {
            break;
        }
        assert_eq!(response.status, 200, "{}", response.text());
        assert!(Instant::now() < deadline, "a revoked key still worked {CACHE_SYNC:?} after the revocation");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let took = revoked_at.elapsed();
    assert!(took < Duration::from_millis(2500), "the revocation took {took:?} to apply (poll interval 1 s)");

    for (i, cred) in [Cred::Bearer(&key), Cred::ApiKey(&key)].into_iter().enumerate() {
        let id = format!("revoked-http-{i}");
        let response = http_get(&s.gateway, "/echo/headers", cred, &id, &[]).await;
        assert_rejected(&response, 401, "unauthenticated", &id, "revoked key");
        let result = grpc_unary(&mut client, cred, &format!("revoked-grpc-{i}"), &[]).await;
        assert_grpc_code(result, Code::Unauthenticated, "revoked key over gRPC");
    }
}

// ---- what the upstream sees ---------------------------------------------

#[tokio::test]
async fn upstream_gets_the_identity_never_the_key() {
    let s = setup().await;
    let (_, key) = new_key(&s, "alice", &["echo.read"]).await;
    let forged = [("x-gatehouse-identity", "mallory")];
    for (i, cred) in [Cred::Bearer(&key), Cred::ApiKey(&key)].into_iter().enumerate() {
        for extra in [&[][..], &forged[..]] {
            let id = format!("identity-{i}-{}", extra.len());
            let response = http_get(&s.gateway, "/echo/headers", cred, &id, extra).await;
            assert_eq!(upstream_header(&response, "x-gatehouse-identity"), ["alice"], "{cred:?} {extra:?}");
            assert_eq!(upstream_header(&response, "authorization"), Vec::<String>::new(), "{cred:?}");
            assert_eq!(upstream_header(&response, "x-api-key"), Vec::<String>::new(), "{cred:?}");
            assert!(!response.text().contains(&key), "the key reached the upstream: {}", response.text());
            let line = access_line(&s.gateway, &id).await;
            assert_eq!(line["identity_id"], "alice", "{line}");
            assert_eq!(line["status"], 200, "{line}");
            assert!(!line.to_string().contains(&key), "the key is in the access line: {line}");
        }
    }
    // Over HTTP/2 as well.
    let request = Request::get(url(s.gateway.public, "/echo/headers"))
        .header("x-api-key", key.as_str())
        .header("x-gatehouse-identity", "mallory")
        .body(empty())
        .unwrap();
    let response = send(&http2_client(), request).await;
    assert_eq!(upstream_header(&response, "x-gatehouse-identity"), ["alice"]);
    assert_eq!(upstream_header(&response, "x-api-key"), Vec::<String>::new());
    // Nothing the gateway logged contains the key.
    assert!(!s.gateway.lines().iter().any(|l| l.contains(&key)), "a log line contains the key");
}

#[tokio::test]
async fn a_forged_identity_never_passes_on_an_open_route() {
    let s = setup().await;
    let (_, key) = new_key(&s, "alice", &["echo.read"]).await;
    let forged = [("x-gatehouse-identity", "mallory")];

    // No key: the forged header is dropped and nothing is logged as identity.
    let response = http_get(&s.gateway, "/open/headers", Cred::None, "open-forged", &forged).await;
    assert_eq!(upstream_header(&response, "x-gatehouse-identity"), Vec::<String>::new());
    let line = access_line(&s.gateway, "open-forged").await;
    assert!(line.get("identity_id").is_none_or(Value::is_null), "{line}");

    // An invalid key on an open route is ignored, and still not passed on.
    let unknown = unknown_key();
    let response = http_get(&s.gateway, "/open/headers", Cred::ApiKey(&unknown), "open-unknown", &forged).await;
    assert_eq!(upstream_header(&response, "x-gatehouse-identity"), Vec::<String>::new());
    assert_eq!(upstream_header(&response, "x-api-key"), Vec::<String>::new());

    // A valid key on an open route authenticates.
    let response = http_get(&s.gateway, "/open/headers", Cred::Bearer(&key), "open-valid", &forged).await;
    assert_eq!(upstream_header(&response, "x-gatehouse-identity"), ["alice"]);
    assert_eq!(upstream_header(&response, "authorization"), Vec::<String>::new());
    assert_eq!(access_line(&s.gateway, "open-valid").await["identity_id"], "alice");
}

/// gRPC metadata: the upstream (a recording gRPC server) gets the identity,
/// never the key, and never a client's own `x-gatehouse-identity`.
#[tokio::test]
async fn grpc_upstream_gets_the_identity_never_the_key() {
    let upstream = RecordingGrpcUpstream::start().await;
    let gateway = grpc_gateway_to(upstream.addr).await;
    let admin = AdminHttp::admin(gateway.admin);
    let created = admin.create_key("alice", &["echo.read"]).await;
    let key = created["key"].as_str().unwrap().to_owned();
    let mut client = grpc_client(&gateway).await;
    // Wait for the key cache.
    let deadline = Instant::now() + CACHE_SYNC;
    while grpc_unary(&mut client, Cred::Bearer(&key), "wait", &[]).await.is_err() {
        assert!(Instant::now() < deadline, "the gateway did not learn the key within {CACHE_SYNC:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let before = upstream.calls().len();
    for cred in [Cred::Bearer(&key), Cred::ApiKey(&key)] {
        grpc_unary(&mut client, cred, "grpc-identity", &[("x-gatehouse-identity", "mallory")]).await.unwrap();
    }
    // A rejected call never reaches the upstream.
    assert_grpc_code(grpc_unary(&mut client, Cred::None, "grpc-none", &[]).await, Code::Unauthenticated, "no key");
    let calls = upstream.calls();
    assert_eq!(calls.len(), before + 2, "exactly the two accepted calls reached the upstream: {calls:#?}");
    for call in &calls[before..] {
        assert_eq!(call.path, "/echo.v1.Echo/Unary");
        let identity: Vec<_> = call.headers.get_all("x-gatehouse-identity").iter().collect();
        assert_eq!(identity, ["alice"], "{:?}", call.headers);
        assert!(call.headers.get("authorization").is_none(), "{:?}", call.headers);
        assert!(call.headers.get("x-api-key").is_none(), "{:?}", call.headers);
    }
    let line = gateway
        .wait_for_log(LINE_TIMEOUT, |v| v["target"] == "access" && v["request_id"] == "grpc-identity")
        .await
        .unwrap();
    assert_eq!(line["identity_id"], "alice", "{line}");
}

async fn grpc_gateway_to(upstream: SocketAddr) -> Gateway {
    let config = format!(
        r#"
listeners:
  public: 127.0.0.1:0
  admin: 127.0.0.1:0
upstreams:
  recorder:
    protocol: grpc
    endpoints: ["{upstream}"]
routes:
  - name: recorder
    match: {{ grpc_service: echo.v1.Echo }}
    upstream: recorder
    auth: {{ required: true, scopes: [echo.read] }}
"#
    );
    Gateway::start_with_env(&config, &ADMIN_ENV).await
}

// ---- metrics -------------------------------------------------------------

/// Every 401 and 403 the clients saw, counted by reason in
/// `gateway_requests_rejected_total`, exactly.
#[tokio::test]
async fn rejections_are_counted_by_reason() {
    let s = setup().await;
    let (id, key) = new_key(&s, "alice", &["echo.read"]).await;
    let (_, other) = new_key(&s, "bob", &["other.read"]).await;
    let unknown = unknown_key();
    let wrong = wrong_secret(&key);
    let mut client = grpc_client(&s.gateway).await;

    // Counted from what came back, so the cache-sync waits above (401s
    // while a new key was unknown) are included: read the counter first.
    let before = scrape(s.gateway.admin, "/metrics").await;
    let unauth_before = rejected(&before, "unauthenticated");
    let forbidden_before = rejected(&before, "forbidden");

    let (mut unauthenticated, mut forbidden) = (0.0, 0.0);
    let mut tally = |status: u16| match status {
        401 => unauthenticated += 1.0,
        403 => forbidden += 1.0,
        200 => {}
        other => panic!("unexpected status {other}"),
    };
    let http_cases =
        [Cred::None, Cred::Bearer(&unknown), Cred::ApiKey(&wrong), Cred::Bearer(&other), Cred::ApiKey(&other)];
    for cred in http_cases {
        tally(http_get(&s.gateway, "/echo/status/200", cred, "m", &[]).await.status.as_u16());
    }
    for cred in [Cred::None, Cred::ApiKey(&unknown), Cred::Bearer(&wrong), Cred::Bearer(&other)] {
        let code = match grpc_unary(&mut client, cred, "m", &[]).await {
            Ok(_) => 200,
            Err(status) if status.code() == Code::Unauthenticated => 401,
            Err(status) if status.code() == Code::PermissionDenied => 403,
            Err(status) => panic!("unexpected {status:?}"),
        };
        tally(code);
    }
    // A revoked key: 401s until the answer changes, all counted.
    assert_eq!(s.admin.revoke(&id).await.status, 200);
    let deadline = Instant::now() + CACHE_SYNC;
    loop {
        let status = http_get(&s.gateway, "/echo/status/200", Cred::Bearer(&key), "m", &[]).await.status.as_u16();
        tally(status);
        if status == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "revocation did not apply");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // An open route's successes count nothing.
    assert_eq!(http_get(&s.gateway, "/open/status/200", Cred::None, "m", &[]).await.status, 200);

    let after = scrape(s.gateway.admin, "/metrics").await;
    assert_eq!(rejected(&after, "unauthenticated") - unauth_before, unauthenticated, "unauthenticated");
    assert_eq!(rejected(&after, "forbidden") - forbidden_before, forbidden, "forbidden");
    assert_eq!((unauthenticated, forbidden), (7.0, 3.0), "the cases above");
    // The check itself is timed.
    let checks = metric_value(&after, "authorization_check_latency_seconds_count", &[]).unwrap_or(0.0);
    assert!(checks >= unauthenticated + forbidden, "authorization_check_latency_seconds_count is {checks}");
}

/// Every rejection reason exists from start-up, at zero.
#[tokio::test]
async fn rejection_series_start_at_zero() {
    let s = setup().await;
    let text = scrape(s.gateway.admin, "/metrics").await;
    for reason in ["unauthenticated", "forbidden"] {
        assert_eq!(rejected_opt(&text, reason), Some(0.0), "{reason}");
    }
}

fn rejected_opt(text: &str, reason: &str) -> Option<f64> {
    metric_value(text, "gateway_requests_rejected_total", &[("reason", reason)])
}

fn rejected(text: &str, reason: &str) -> f64 {
    rejected_opt(text, reason)
        .unwrap_or_else(|| panic!("no gateway_requests_rejected_total{{reason=\"{reason}\"}} in:\n{text}"))
}
