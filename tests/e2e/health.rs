//! The admin port's health surface: `/healthz` (liveness), `/readyz`
//! (readiness, plain, verbose and JSON), `/info`, and `grpc.health.v1`,
//! through upstream outages and recoveries and config reloads (SIGHUP).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use gatehouse_test_support::{Collected, Echo, Gateway, Signal, empty, get, http1_client, poll_until, send, url};
use http::Request;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// How long a readiness change may take to show: a few 200 ms probe rounds.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// `echo` (required, answering) on `/echo`, and `extra` upstreams (YAML
/// lines under `upstreams:`); every upstream probed every 200 ms.
fn config(echo: SocketAddr, extra: &str) -> String {
    format!(
        r#"
listeners:
  public: 127.0.0.1:0
  admin: 127.0.0.1:0
shutdown: {{ drain_delay: 1s, shutdown_timeout: 2s }}
upstreams:
  echo:
    protocol: http1
    endpoints: ["{echo}"]
    probe_interval: 200ms
{extra}
routes:
  - name: echo-http
    match: {{ path_prefix: /echo }}
    upstream: echo
"#
    )
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The hex digest in `/info`'s `config_hash`, written bare or as `sha256:HEX`.
fn config_hash(info: &Value) -> &str {
    let hash = info["config_hash"].as_str().unwrap_or_else(|| panic!("no config_hash: {info}"));
    hash.strip_prefix("sha256:").unwrap_or(hash)
}

/// An upstream named `name` with one endpoint at `addr`, probed every 200 ms.
fn upstream(name: &str, addr: SocketAddr, required: bool) -> String {
    format!(
        "  {name}:\n    protocol: http1\n    endpoints: [\"{addr}\"]\n    required: {required}\n    \
         probe_interval: 200ms\n    connect_timeout: 200ms\n"
    )
}

/// The database's readiness line, when the gateway has one.
const DATABASE: &str = "[+]database ok (Nms)";

fn normalize_latency(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(open) = rest.find('(') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with("ms)") {
            out.push_str("(Nms)");
            rest = &after[digits + 3..];
        } else {
            out.push('(');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Whether `line` matches `pattern`, where one `*` in the pattern stands
/// for any text (the check's failure message, which the contract leaves open).
fn matches(pattern: &str, line: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == line,
        Some((head, tail)) => line.len() >= head.len() + tail.len() && line.starts_with(head) && line.ends_with(tail),
    }
}

/// Asserts `got` matches `patterns` line by line. [`DATABASE`] may appear
/// or not: the database check exists once the store is wired in.
fn assert_lines(what: &str, got: &[String], patterns: &[&str]) {
    let mut lines = got.iter().peekable();
    let mut ok = true;
    for pattern in patterns {
        if *pattern == DATABASE {
            lines.next_if(|line| *line == DATABASE);
            continue;
        }
        ok &= lines.next().is_some_and(|line| matches(pattern, line));
    }
    ok &= lines.next().is_none();
    assert!(ok, "{what}: /readyz?verbose is\n{}\nexpected\n{}", got.join("\n"), patterns.join("\n"));
}

/// Polls `/readyz?verbose` until its status is `status` and every probe has
/// reported; returns the normalised lines.
async fn wait_readiness(admin: SocketAddr, status: u16, what: &str) -> Vec<String> {
    let settled = |r: &Collected| r.status.as_u16() == status && !r.text().contains("not yet checked");
    match poll_until(admin, "/readyz?verbose", CHANGE_TIMEOUT, settled).await {
        Ok(r) => r.text().lines().map(normalize_latency).collect(),
        Err(r) => {
            panic!("{what}: /readyz did not turn {status} within {CHANGE_TIMEOUT:?}; last {}: {}", r.status, r.text())
        }
    }
}

async fn assert_live(admin: SocketAddr, when: &str) {
    let r = get(admin, "/healthz").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok\n"), "/healthz {when}");
}

async fn health_client(admin: SocketAddr) -> HealthClient<Channel> {
    HealthClient::new(Channel::from_shared(format!("http://{admin}")).unwrap().connect().await.unwrap())
}

async fn grpc_status(client: &mut HealthClient<Channel>, service: &str) -> ServingStatus {
    let response = client.check(HealthCheckRequest { service: service.to_owned() }).await.unwrap();
    ServingStatus::try_from(response.into_inner().status).unwrap()
}

/// The next status a `Watch` stream sends, within [`CHANGE_TIMEOUT`].
async fn next_watched(stream: &mut tonic::Streaming<HealthCheckResponse>) -> ServingStatus {
    let next = tokio::time::timeout(CHANGE_TIMEOUT, stream.message()).await;
    let message = next.expect("Watch sent nothing").unwrap().expect("Watch ended");
    ServingStatus::try_from(message.status).unwrap()
}

/// Accepts (and drops) connections on `addr` until aborted, so probes of
/// that endpoint succeed.
async fn answer_on(addr: SocketAddr) -> JoinHandle<()> {
    let listener = TcpListener::bind(addr).await.unwrap_or_else(|e| panic!("re-binding {addr}: {e}"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    })
}

/// A port that refuses connections now, chosen so the test can make it
/// answer later by binding it again.
fn refusing_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn when_ready_every_check_passes_in_every_format() {
    let echo = Echo::start("echo").await;
    let gateway = Gateway::start(&config(echo.addr, "")).await;
    let admin = gateway.admin;
    let lines = wait_readiness(admin, 200, "start-up").await;
    assert_lines(
        "ready",
        &lines,
        &["[+]config_loaded ok", "[+]draining ok", DATABASE, "[+]upstream:echo ok (Nms)", "readyz check passed"],
    );
    assert_live(admin, "when ready").await;
    let r = get(admin, "/readyz").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok\n"));

    let r = get(admin, "/readyz?format=json").await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["ready"], true, "{body}");
    let checks = body["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).filter(|n| *n != "database").collect();
    assert_eq!(names, ["config_loaded", "draining", "upstream:echo"], "{body}");
    for check in checks {
        assert_eq!((&check["ok"], &check["required"]), (&json!(true), &json!(true)), "{check}");
        assert!(check.get("message").is_none_or(Value::is_null), "{check}");
    }
    let upstream = checks.iter().find(|c| c["name"] == "upstream:echo").unwrap();
    assert!(upstream["latency_ms"].is_u64(), "an upstream probe has a latency: {body}");

    let mut grpc = health_client(admin).await;
    assert_eq!(grpc_status(&mut grpc, "").await, ServingStatus::Serving);
    let unknown = grpc.check(HealthCheckRequest { service: "no.such.Service".to_owned() }).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    // Operator endpoints live on the admin port only.
    let r = send(&http1_client(), Request::get(url(gateway.public, "/readyz")).body(empty()).unwrap()).await;
    assert_eq!(r.status, 404, "{}", r.text());
}

#[tokio::test]
async fn readiness_follows_required_upstreams_and_ignores_optional_ones() {
    let echo = Echo::start("echo").await;
    let down = refusing_addr();
    let optional = refusing_addr();
    let extra = upstream("down", down, true) + &upstream("optional", optional, false);
    let gateway = Gateway::start(&config(echo.addr, &extra)).await;
    let admin = gateway.admin;
    assert_live(admin, "before the first probe").await;

    // A required upstream with no answering endpoint: 503, naming only it.
    let lines = wait_readiness(admin, 503, "required upstream down").await;
    assert_lines(
        "required upstream down",
        &lines,
        &[
            "[+]config_loaded ok",
            "[+]draining ok",
            DATABASE,
            "[-]upstream:down failed: * (Nms)",
            "[+]upstream:echo ok (Nms)",
            "[-]upstream:optional failed: * (Nms) (optional)",
            "readyz check failed",
        ],
    );
    let r = get(admin, "/readyz").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (503, "not ready: upstream:down\n"));
    let json = get(admin, "/readyz?format=json").await.json();
    assert_eq!(json["ready"], false, "{json}");
    let down_check = json["checks"].as_array().unwrap().iter().find(|c| c["name"] == "upstream:down").unwrap();
    assert_eq!((&down_check["ok"], &down_check["required"]), (&json!(false), &json!(true)), "{json}");
    assert!(down_check["message"].as_str().is_some_and(|m| !m.is_empty()), "{json}");
    assert_live(admin, "while a required upstream is down").await;
    let mut grpc = health_client(admin).await;
    assert_eq!(grpc_status(&mut grpc, "").await, ServingStatus::NotServing);
    let mut watch = grpc.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(next_watched(&mut watch).await, ServingStatus::NotServing);
    // Readiness is for the load balancer: traffic to healthy routes still flows.
    let r = send(&http1_client(), Request::get(url(gateway.public, "/echo/status/200")).body(empty()).unwrap()).await;
    assert_eq!(r.status, 200);

    // The endpoint comes back: ready, although the optional upstream is still down.
    let answering = answer_on(down).await;
    let lines = wait_readiness(admin, 200, "required upstream back").await;
    assert_lines(
        "required upstream back, optional still down",
        &lines,
        &[
            "[+]config_loaded ok",
            "[+]draining ok",
            DATABASE,
            "[+]upstream:down ok (Nms)",
            "[+]upstream:echo ok (Nms)",
            "[-]upstream:optional failed: * (Nms) (optional)",
            "readyz check passed",
        ],
    );
    assert_eq!(get(admin, "/readyz").await.text(), "ok\n");
    assert_eq!(grpc_status(&mut grpc, "").await, ServingStatus::Serving);
    assert_eq!(next_watched(&mut watch).await, ServingStatus::Serving);
    assert_live(admin, "after the upstream came back").await;

    // And goes away again.
    answering.abort();
    let _ = answering.await;
    wait_readiness(admin, 503, "required upstream down again").await;
    assert_eq!(get(admin, "/readyz").await.text(), "not ready: upstream:down\n");
    assert_eq!(grpc_status(&mut grpc, "").await, ServingStatus::NotServing);
    assert_eq!(next_watched(&mut watch).await, ServingStatus::NotServing);
    assert_live(admin, "after the upstream went away again").await;
}

#[tokio::test]
async fn info_reports_build_config_start_and_listeners() {
    let before = SystemTime::now();
    let echo = Echo::start("echo").await;
    let text = config(echo.addr, "");
    let gateway = Gateway::start(&text).await;
    let r = get(gateway.admin, "/info").await;
    assert_eq!(r.status, 200);
    let info = r.json();
    let mut keys: Vec<&str> = info.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["build_time", "commit", "config_hash", "listeners", "started_at", "version"], "{info}");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"), "{info}");
    let commit = info["commit"].as_str().unwrap();
    assert!(
        commit == "unknown" || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "commit is a 12-digit hash: {info}"
    );
    let build_time = info["build_time"].as_str().unwrap();
    assert!(build_time.ends_with('Z') && humantime::parse_rfc3339(build_time).is_ok(), "{info}");
    assert_eq!(config_hash(&info), sha256_hex(&text), "sha256 of the file: {info}");
    let started = info["started_at"].as_str().unwrap();
    let started = humantime::parse_rfc3339(started).unwrap_or_else(|e| panic!("started_at: {e}: {info}"));
    let whole_second = Duration::from_secs(1);
    assert!(
        started + whole_second >= before && started <= SystemTime::now(),
        "started_at is when the gateway started: {info}"
    );
    assert_eq!(
        info["listeners"],
        json!({"admin": gateway.admin.to_string(), "public": gateway.public.to_string()}),
        "{info}"
    );
}

#[tokio::test]
async fn a_bad_reload_turns_readiness_503_while_traffic_flows_on_the_old_config() {
    let echo = Echo::start("echo").await;
    let good = config(echo.addr, "");
    let mut gateway = Gateway::start(&good).await;
    let admin = gateway.admin;
    wait_readiness(admin, 200, "start-up").await;
    let mut grpc = health_client(admin).await;
    let client = http1_client();
    let public = gateway.public;
    let get_public = |path: &str| Request::get(url(public, path)).body(empty()).unwrap();

    // An unparsable file: readiness fails on config_loaded only.
    gateway.rewrite_config("listeners: [this is not\n  valid: yaml");
    gateway.signal(Signal::Hup).unwrap();
    let failed = |r: &Collected| r.status == 503;
    let r = poll_until(admin, "/readyz?verbose", CHANGE_TIMEOUT, failed).await;
    if let Some(status) = gateway.wait_exit(Duration::from_millis(100)).await {
        panic!("gatehouse exited on SIGHUP ({status}) instead of reloading\nstdout:\n{}", gateway.lines().join("\n"));
    }
    let r = r.unwrap_or_else(|r| panic!("/readyz stayed {} after a bad reload: {}", r.status, r.text()));
    let lines: Vec<String> = r.text().lines().map(normalize_latency).collect();
    assert_lines(
        "bad reload",
        &lines,
        &["[-]config_loaded failed: *", "[+]draining ok", DATABASE, "[+]upstream:echo ok (Nms)", "readyz check failed"],
    );
    assert_eq!(get(admin, "/readyz").await.text(), "not ready: config_loaded\n");
    assert_live(admin, "after a bad reload").await;
    assert_eq!(grpc_status(&mut grpc, "").await, ServingStatus::NotServing);
    let info = get(admin, "/info").await.json();
    assert_eq!(config_hash(&info), sha256_hex(&good), "the old config stays in force: {info}");
    for _ in 0..3 {
        let r = send(&client, get_public("/echo/status/200")).await;
        assert_eq!(r.status, 200, "traffic on the old config after a bad reload: {}", r.text());
    }

    // A valid file, with a new route: ready again, and the new route serves.
    let new = good.replace("routes:\n", "routes:\n  - name: v2\n    match: { path_prefix: /v2 }\n    upstream: echo\n");
    assert_ne!(new, good);
    let r = send(&client, get_public("/v2/status/200")).await;
    assert_eq!(r.status, 404, "no /v2 route before the reload");
    gateway.rewrite_config(&new);
    gateway.signal(Signal::Hup).unwrap();
    let lines = wait_readiness(admin, 200, "good reload").await;
    assert_lines(
        "good reload",
        &lines,
        &["[+]config_loaded ok", "[+]draining ok", DATABASE, "[+]upstream:echo ok (Nms)", "readyz check passed"],
    );
    assert_eq!(grpc_status(&mut grpc, "").await, ServingStatus::Serving);
    let info = get(admin, "/info").await.json();
    assert_eq!(config_hash(&info), sha256_hex(&new), "the new config is in force: {info}");
    let r = send(&client, get_public("/v2/status/200")).await;
    assert_eq!(r.status, 200, "the reloaded config's new route: {}", r.text());
    let r = send(&client, get_public("/echo/status/200")).await;
    assert_eq!(r.status, 200);
    // Both reloads are privileged decisions: each has its audit line.
    for outcome in ["failure", "success"] {
        let line = gateway
            .wait_for_line(Duration::from_secs(5), |l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .is_ok_and(|v| v["audit"] == true && v["action"] == "config.reload" && v["outcome"] == outcome)
            })
            .await;
        assert!(line.is_some(), "an audit line for the {outcome} reload");
    }
    assert_live(admin, "after a good reload").await;
}
