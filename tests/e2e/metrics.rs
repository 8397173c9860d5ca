//! RED metrics through the real binary, read back from `/metrics` on the admin
//! port: known traffic gives exact counter values, histogram `_count`s and
//! message counts; every series of DESIGN.md §3 exists at zero before the
//! first request; and clients sending made-up paths, methods and gRPC
//! method names cannot add series.
//!
//! The gateway counts when a response body ends, a moment after the client
//! has read it, so each test scrapes until the totals it waits for have
//! settled ([`scrape_until`]) and then asserts every value exactly.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use gatehouse_proto::echo::v1::EchoRequest;
use gatehouse_proto::echo::v1::echo_client::EchoClient;
use gatehouse_test_support::{
    Echo, Exposition, Gateway, Signal, empty, full, http1_client, http2_client, scrape_metrics, scrape_until, send, url,
};
use http::{Method, Request};
use tonic::Code;
use tonic::transport::Channel;

const SERVICE: &str = "echo.v1.Echo";
const SETTLE: Duration = Duration::from_secs(10);

/// The configured `duration_buckets`, deliberately unlike any default so
/// the test sees the config take effect.
const BUCKETS: [f64; 7] = [0.001, 0.004, 0.016, 0.064, 0.256, 1.024, 4.096];

/// The four methods configured for `echo.v1.Echo`, with their `grpc_type`.
const METHODS: [(&str, &str); 4] = [
    ("Unary", "unary"),
    ("ServerStream", "server_stream"),
    ("ClientStream", "client_stream"),
    ("BidiStream", "bidi_stream"),
];

/// go-grpc-prometheus's code names, in numeric order.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// DESIGN.md §3's rejection reasons.
const REJECT_REASONS: [&str; 8] = [
    "no_route",
    "unauthenticated",
    "forbidden",
    "rate_limited",
    "overloaded",
    "circuit_open",
    "body_too_large",
    "bad_request",
];

struct Setup {
    gateway: Gateway,
    echo: Echo,
}

async fn setup() -> Setup {
    let echo = Echo::start("echo").await;
    let config = config(&echo, "");
    Setup { gateway: Gateway::start(&config).await, echo }
}

/// The test config, with `extra_routes` (YAML list items) appended to
/// `routes` and `extra_methods` (`, Name: type` pairs) to the
/// `grpc_methods` of `echo.v1.Echo`.
fn config_with(echo: &Echo, extra_routes: &str, extra_methods: &str) -> String {
    let buckets: Vec<String> = BUCKETS.iter().map(ToString::to_string).collect();
    // The gRPC route comes first: `/echo.v1.Echo/...` also starts with `/echo`.
    format!(
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
  - name: echo-grpc
    match: {{ grpc_service: {SERVICE} }}
    upstream: echo-grpc
    grpc_methods: {{ Unary: unary, ServerStream: server_stream, ClientStream: client_stream, BidiStream: bidi_stream{extra_methods} }}
  - name: echo-http
    match: {{ path_prefix: /echo }}
    upstream: echo
{extra_routes}
metrics:
  duration_buckets: [{buckets}]
"#,
        echo = echo.addr,
        buckets = buckets.join(", "),
    )
}

fn config(echo: &Echo, extra_routes: &str) -> String {
    config_with(echo, extra_routes, "")
}

impl Setup {
    async fn grpc(&self) -> EchoClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.gateway.public)).unwrap().connect().await.unwrap();
        EchoClient::new(channel)
    }

    async fn metrics(&self) -> Exposition {
        scrape_metrics(self.gateway.admin).await
    }

    /// Scrapes until `done`, then returns that scrape.
    async fn settled(&self, done: impl FnMut(&Exposition) -> bool) -> Exposition {
        scrape_until(self.gateway.admin, SETTLE, done).await
    }
}

fn message(text: &str) -> EchoRequest {
    EchoRequest { message: text.to_owned(), ..EchoRequest::default() }
}

/// `{grpc_service, grpc_method, grpc_type}` of a configured method.
fn method_labels<'a>(method: &'a str, ty: &'a str) -> [(&'a str, &'a str); 3] {
    [("grpc_service", SERVICE), ("grpc_method", method), ("grpc_type", ty)]
}

fn handled(m: &Exposition, method: &str, ty: &str, code: &str) -> f64 {
    let [s, me, t] = method_labels(method, ty);
    m.value("gateway_grpc_server_handled_total", &[s, me, t, ("grpc_code", code)])
}

fn handled_total(m: &Exposition, method: &str) -> f64 {
    m.sum("gateway_grpc_server_handled_total", &[("grpc_service", SERVICE), ("grpc_method", method)])
}

/// Every `handled_total` code of `method` other than those in `expected`
/// is 0; the listed ones have exactly their value.
fn assert_handled(m: &Exposition, method: &str, ty: &str, expected: &[(&str, f64)]) {
    for code in CODES {
        let want = expected.iter().find(|(c, _)| *c == code).map_or(0.0, |(_, n)| *n);
        assert_eq!(handled(m, method, ty, code), want, "handled_total {method} {code}");
    }
}

/// `started`, `handling_seconds_count` (and its `+Inf` bucket),
/// `msg_received` and `msg_sent` of a configured method.
fn assert_method_totals(m: &Exposition, method: &str, ty: &str, calls: f64, received: f64, sent: f64) {
    let l = method_labels(method, ty);
    assert_eq!(m.value("gateway_grpc_server_started_total", &l), calls, "started_total {method}");
    assert_eq!(m.value("gateway_grpc_server_handling_seconds_count", &l), calls, "handling_seconds_count {method}");
    let [a, b, c] = l;
    assert_eq!(
        m.value("gateway_grpc_server_handling_seconds_bucket", &[a, b, c, ("le", "+Inf")]),
        calls,
        "handling_seconds_bucket +Inf {method}"
    );
    assert_eq!(m.value("gateway_grpc_server_msg_received_total", &l), received, "msg_received_total {method}");
    assert_eq!(m.value("gateway_grpc_server_msg_sent_total", &l), sent, "msg_sent_total {method}");
}

// ---------------------------------------------------------------------------
// Every series at zero before the first request
// ---------------------------------------------------------------------------

/// DESIGN.md §3's families: name, `# TYPE`, and the label keys of every
/// series (`None`: the keys vary, checked separately).
const FAMILIES: &[(&str, &str, Option<&[&str]>)] = &[
    ("gateway_http_requests_total", "counter", Some(&["route", "method", "code"])),
    ("gateway_http_request_duration_seconds", "histogram", Some(&["route", "method", "code"])),
    ("gateway_http_requests_in_flight", "gauge", Some(&["route"])),
    ("gateway_grpc_server_started_total", "counter", Some(&["grpc_service", "grpc_method", "grpc_type"])),
    ("gateway_grpc_server_handled_total", "counter", Some(&["grpc_service", "grpc_method", "grpc_type", "grpc_code"])),
    ("gateway_grpc_server_handling_seconds", "histogram", Some(&["grpc_service", "grpc_method", "grpc_type"])),
    ("gateway_grpc_server_msg_received_total", "counter", Some(&["grpc_service", "grpc_method", "grpc_type"])),
    ("gateway_grpc_server_msg_sent_total", "counter", Some(&["grpc_service", "grpc_method", "grpc_type"])),
    ("gateway_upstream_requests_total", "counter", None),
    ("gateway_upstream_request_duration_seconds", "histogram", Some(&["upstream"])),
    ("gateway_upstream_endpoints", "gauge", Some(&["upstream", "state"])),
    ("gateway_upstream_circuit_breaker_state", "gauge", Some(&["upstream"])),
    ("gateway_upstream_retries_total", "counter", Some(&["upstream", "reason"])),
    ("gateway_requests_rejected_total", "counter", Some(&["reason"])),
    ("gateway_overhead_seconds", "histogram", Some(&[])),
    ("authorization_check_latency_seconds", "histogram", Some(&[])),
    ("gateway_db_pool_connections", "gauge", Some(&["state"])),
    ("gateway_db_pool_max_connections", "gauge", Some(&[])),
    ("gateway_db_pool_acquire_duration_seconds", "histogram", Some(&[])),
    ("gateway_db_query_duration_seconds", "histogram", Some(&["operation"])),
    ("gateway_db_errors_total", "counter", Some(&["operation"])),
    ("gateway_build_info", "gauge", Some(&["version", "commit"])),
    ("gateway_start_time_seconds", "gauge", Some(&[])),
    ("gateway_ready", "gauge", Some(&[])),
    ("gateway_draining", "gauge", Some(&[])),
    ("gateway_config_reloads_total", "counter", Some(&["result"])),
    ("gateway_config_last_reload_success_timestamp_seconds", "gauge", Some(&[])),
    ("process_cpu_seconds_total", "counter", Some(&[])),
    ("process_resident_memory_bytes", "gauge", Some(&[])),
    ("process_open_fds", "gauge", Some(&[])),
];

/// Sample names of a family: a histogram's three, else its own.
fn sample_names(family: &str, kind: &str) -> Vec<String> {
    if kind == "histogram" {
        ["_bucket", "_count", "_sum"].iter().map(|s| format!("{family}{s}")).collect()
    } else {
        vec![family.to_owned()]
    }
}

#[tokio::test]
async fn every_series_exists_at_zero_before_the_first_request() {
    let s = setup().await;
    let m = s.metrics().await;
    let text = m.text();
    assert!(m.problems().is_empty(), "unparseable /metrics lines: {:?}", m.problems());

    // Histograms are real histograms: buckets, never quantiles.
    assert!(!text.contains("quantile="), "a summary slipped in:\n{text}");
    assert!(m.types().values().all(|t| t != "summary"), "{:?}", m.types());

    for (family, kind, labels) in FAMILIES {
        assert_eq!(m.type_of(family), Some(*kind), "# TYPE of {family}");
        for name in sample_names(family, kind) {
            let series: Vec<_> = m.of(&name).collect();
            assert!(!series.is_empty(), "{name} is missing before the first request");
            if let Some(labels) = labels {
                for s in &series {
                    let mut want: Vec<&str> = labels.to_vec();
                    if name.ends_with("_bucket") {
                        want.push("le");
                    }
                    want.sort_unstable();
                    let have: Vec<&str> = s.labels.keys().map(String::as_str).collect();
                    assert_eq!(have, want, "label keys of {s}");
                }
            }
        }
    }
    // `code` is the HTTP status; gRPC clusters add `grpc_code`.
    for series in m.of("gateway_upstream_requests_total") {
        let keys: Vec<&str> = series.labels.keys().map(String::as_str).collect();
        let want: &[&str] = if series.labels["upstream"] == "echo-grpc" {
            &["code", "grpc_code", "upstream"]
        } else {
            &["code", "upstream"]
        };
        assert_eq!(keys, want, "label keys of {series}");
    }

    // Nothing has been counted yet: every traffic counter and histogram is 0.
    for name in [
        "gateway_http_requests_total",
        "gateway_http_request_duration_seconds_count",
        "gateway_http_request_duration_seconds_bucket",
        "gateway_http_requests_in_flight",
        "gateway_grpc_server_started_total",
        "gateway_grpc_server_handled_total",
        "gateway_grpc_server_handling_seconds_count",
        "gateway_grpc_server_msg_received_total",
        "gateway_grpc_server_msg_sent_total",
        "gateway_upstream_requests_total",
        "gateway_upstream_request_duration_seconds_count",
        "gateway_upstream_retries_total",
        "gateway_upstream_circuit_breaker_state",
        "gateway_requests_rejected_total",
        "gateway_overhead_seconds_count",
        "authorization_check_latency_seconds_count",
        "gateway_config_reloads_total",
        "gateway_draining",
    ] {
        for series in m.of(name) {
            assert_eq!(series.value, 0.0, "{series} before any request");
        }
    }

    // Each route with its success series.
    let ok = [("route", "echo-http"), ("method", "GET"), ("code", "200")];
    assert_eq!(m.get("gateway_http_requests_total", &ok), Some(0.0));
    assert_eq!(m.get("gateway_http_request_duration_seconds_count", &ok), Some(0.0));
    assert_eq!(m.get("gateway_http_request_duration_seconds_sum", &ok), Some(0.0));
    assert_eq!(m.get("gateway_http_requests_in_flight", &[("route", "echo-http")]), Some(0.0));
    // The configured buckets, then +Inf.
    let les: Vec<f64> = m
        .of("gateway_http_request_duration_seconds_bucket")
        .filter(|s| s.has_labels(&ok))
        .map(|s| s.labels["le"].parse::<f64>().unwrap())
        .collect();
    let mut want = BUCKETS.to_vec();
    want.push(f64::INFINITY);
    assert_eq!(les, want, "bucket bounds of gateway_http_request_duration_seconds");

    // Each configured gRPC method with all 17 codes, and its other series.
    for (method, ty) in METHODS {
        for code in CODES {
            assert_eq!(handled(&m, method, ty, code), 0.0, "{method} {code}");
        }
        assert_method_totals(&m, method, ty, 0.0, 0.0, 0.0);
        let labels = method_labels(method, ty);
        let per_method = m.matching("gateway_grpc_server_handled_total", &labels[..2]);
        assert_eq!(per_method.len(), 17, "{method}: {per_method:?}");
    }

    for reason in REJECT_REASONS {
        assert_eq!(m.get("gateway_requests_rejected_total", &[("reason", reason)]), Some(0.0), "{reason}");
    }

    // Each cluster: its success series, duration histogram, breaker and endpoint gauges.
    assert_eq!(m.get("gateway_upstream_requests_total", &[("upstream", "echo"), ("code", "200")]), Some(0.0));
    assert_eq!(
        m.get("gateway_upstream_requests_total", &[("upstream", "echo-grpc"), ("code", "200"), ("grpc_code", "OK")]),
        Some(0.0)
    );
    for upstream in ["echo", "echo-grpc"] {
        assert_eq!(m.get("gateway_upstream_request_duration_seconds_count", &[("upstream", upstream)]), Some(0.0));
        assert_eq!(m.get("gateway_upstream_circuit_breaker_state", &[("upstream", upstream)]), Some(0.0));
        for state in ["healthy", "unhealthy", "ejected"] {
            assert!(
                m.get("gateway_upstream_endpoints", &[("upstream", upstream), ("state", state)]).is_some(),
                "{upstream} {state}"
            );
        }
        assert!(
            !m.matching("gateway_upstream_retries_total", &[("upstream", upstream)]).is_empty(),
            "{upstream} retries"
        );
    }

    // Pool gauges, process state and build facts.
    for state in ["idle", "in_use"] {
        assert!(m.get("gateway_db_pool_connections", &[("state", state)]).is_some(), "pool {state}");
    }
    let build: Vec<_> = m.of("gateway_build_info").collect();
    assert_eq!(build.len(), 1, "{build:?}");
    assert_eq!(build[0].value, 1.0);
    assert!(!build[0].labels["version"].is_empty() && !build[0].labels["commit"].is_empty(), "{}", build[0]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let started = m.value("gateway_start_time_seconds", &[]);
    assert!(started > now - 120.0 && started <= now + 1.0, "gateway_start_time_seconds {started}, now {now}");
    for result in ["success", "failure"] {
        assert_eq!(m.get("gateway_config_reloads_total", &[("result", result)]), Some(0.0), "{result}");
    }
    assert!(m.value("process_resident_memory_bytes", &[]) > 0.0);
    assert!(m.value("process_open_fds", &[]) > 0.0);
}

// ---------------------------------------------------------------------------
// Known traffic, exact values
// ---------------------------------------------------------------------------

#[tokio::test]
async fn unary_calls_count_by_status_exactly() {
    const OK: usize = 7;
    const NOT_FOUND: usize = 3;
    let s = setup().await;
    let mut client = s.grpc().await;
    for i in 0..OK {
        let reply = client.unary(message(&format!("ok-{i}"))).await.unwrap().into_inner();
        assert_eq!(reply.message, format!("ok-{i}"));
    }
    for _ in 0..NOT_FOUND {
        let request = EchoRequest { status_code: Code::NotFound as i32, ..message("missing") };
        let status = client.unary(request).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }

    let calls = (OK + NOT_FOUND) as f64;
    // Each layer counts when it sees the end of the call; wait for all of them.
    let m = s
        .settled(|m| {
            handled_total(m, "Unary") >= calls
                && m.sum("gateway_upstream_requests_total", &[("upstream", "echo-grpc")]) >= calls
                && m.sum("gateway_upstream_request_duration_seconds_count", &[("upstream", "echo-grpc")]) >= calls
                && m.sum("gateway_overhead_seconds_count", &[]) >= calls
        })
        .await;
    assert_handled(&m, "Unary", "unary", &[("OK", OK as f64), ("NotFound", NOT_FOUND as f64)]);
    // Every call sends one request message. The echo answers NotFound with a
    // trailers-only response (tonic turns a handler's `Err` into one), so
    // only the OK calls carry a response message.
    assert_method_totals(&m, "Unary", "unary", calls, calls, OK as f64);
    for (method, ty) in &METHODS[1..] {
        assert_method_totals(&m, method, ty, 0.0, 0.0, 0.0);
    }

    // The upstream side saw the same calls, by HTTP status and grpc_code.
    let upstream = |grpc_code: &str| {
        m.value(
            "gateway_upstream_requests_total",
            &[("upstream", "echo-grpc"), ("code", "200"), ("grpc_code", grpc_code)],
        )
    };
    assert_eq!((upstream("OK"), upstream("NotFound")), (OK as f64, NOT_FOUND as f64));
    assert_eq!(m.sum("gateway_upstream_requests_total", &[("upstream", "echo-grpc")]), calls);
    assert_eq!(m.value("gateway_upstream_request_duration_seconds_count", &[("upstream", "echo-grpc")]), calls);
    // One overhead observation per call, none for anything else.
    assert_eq!(m.value("gateway_overhead_seconds_count", &[]), calls);
    // gRPC calls are not HTTP requests, and nothing was rejected.
    assert_eq!(m.sum("gateway_http_requests_total", &[]), 0.0);
    assert_eq!(m.sum("gateway_requests_rejected_total", &[]), 0.0);
    assert_eq!(m.sum("gateway_upstream_requests_total", &[("upstream", "echo")]), 0.0);
}

#[tokio::test]
async fn http_503s_count_exactly() {
    const K: usize = 4;
    let s = setup().await;
    let client = http1_client();
    for _ in 0..K {
        let request = Request::get(url(s.gateway.public, "/echo/status/503")).body(empty()).unwrap();
        let response = send(&client, request).await;
        assert_eq!(response.status, 503, "{}", response.text());
        assert_eq!(response.header("x-echo-name"), Some("echo"), "the 503 came from the upstream");
    }

    let k = K as f64;
    let labels = [("route", "echo-http"), ("method", "GET"), ("code", "503")];
    // Each layer counts when it sees the end of the response; wait for all of them.
    let m = s
        .settled(|m| {
            m.get("gateway_http_requests_total", &labels).is_some_and(|v| v >= k)
                && m.sum("gateway_upstream_requests_total", &[("upstream", "echo")]) >= k
                && m.sum("gateway_upstream_request_duration_seconds_count", &[("upstream", "echo")]) >= k
                && m.sum("gateway_overhead_seconds_count", &[]) >= k
        })
        .await;
    assert_eq!(m.value("gateway_http_requests_total", &labels), k);
    assert_eq!(m.value("gateway_http_request_duration_seconds_count", &labels), k);
    let [a, b, c] = labels;
    assert_eq!(m.value("gateway_http_request_duration_seconds_bucket", &[a, b, c, ("le", "+Inf")]), k);
    assert!(m.value("gateway_http_request_duration_seconds_sum", &labels) > 0.0);
    // The seeded success series is still 0, and nothing else was counted.
    assert_eq!(
        m.value("gateway_http_requests_total", &[("route", "echo-http"), ("method", "GET"), ("code", "200")]),
        0.0
    );
    assert_eq!(m.sum("gateway_http_requests_total", &[]), k);
    assert_eq!(m.value("gateway_http_requests_in_flight", &[("route", "echo-http")]), 0.0);

    assert_eq!(m.value("gateway_upstream_requests_total", &[("upstream", "echo"), ("code", "503")]), k);
    assert_eq!(m.sum("gateway_upstream_requests_total", &[("upstream", "echo")]), k, "no retries, no other codes");
    assert_eq!(m.value("gateway_upstream_request_duration_seconds_count", &[("upstream", "echo")]), k);
    assert_eq!(m.sum("gateway_upstream_retries_total", &[]), 0.0);
    assert_eq!(m.value("gateway_overhead_seconds_count", &[]), k);
    // An upstream's 503 is not a gateway rejection.
    assert_eq!(m.sum("gateway_requests_rejected_total", &[]), 0.0);
    assert_eq!(m.sum("gateway_grpc_server_started_total", &[]), 0.0);
}

#[tokio::test]
async fn a_cancelled_stream_counts_as_canceled_never_ok() {
    let s = setup().await;
    let mut client = s.grpc().await;
    let request = EchoRequest { count: 50, delay_ms: 50, ..message("tick") };
    let mut stream = client.server_stream(request).await.unwrap().into_inner();
    for i in 0..2 {
        let reply = stream.message().await.unwrap().expect("a message before cancelling");
        assert_eq!(reply.index, i);
    }
    // Dropping the response stream resets the HTTP/2 stream (RST_STREAM
    // CANCEL): the client has gone away mid-call.
    drop(stream);

    // The client went away, but the call must still end up in the counters,
    // on the server side and the upstream side.
    let m = s
        .settled(|m| {
            handled_total(m, "ServerStream") >= 1.0
                && m.sum("gateway_upstream_requests_total", &[("upstream", "echo-grpc")]) >= 1.0
        })
        .await;
    assert_handled(&m, "ServerStream", "server_stream", &[("Canceled", 1.0)]);
    let l = method_labels("ServerStream", "server_stream");
    assert_eq!(m.value("gateway_grpc_server_started_total", &l), 1.0);
    assert_eq!(m.value("gateway_grpc_server_handling_seconds_count", &l), 1.0);
    assert_eq!(m.value("gateway_grpc_server_msg_received_total", &l), 1.0);
    // At least the two messages the client read went through; how many more
    // were in flight when the reset arrived depends on timing, but never all.
    let sent = m.value("gateway_grpc_server_msg_sent_total", &l);
    println!("messages sent before the cancel reached the gateway: {sent}");
    assert!((2.0..50.0).contains(&sent), "msg_sent_total {sent}");
    // The upstream side counts the cut call as Canceled too, never as OK.
    let upstream = |grpc_code: &str| {
        m.value(
            "gateway_upstream_requests_total",
            &[("upstream", "echo-grpc"), ("code", "200"), ("grpc_code", grpc_code)],
        )
    };
    assert_eq!((upstream("OK"), upstream("Canceled")), (0.0, 1.0));
    assert_eq!(m.sum("gateway_upstream_requests_total", &[("upstream", "echo-grpc")]), 1.0);
}

#[tokio::test]
async fn a_bidi_stream_counts_five_messages_each_way() {
    let s = setup().await;
    let mut client = s.grpc().await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(message("m0")).await.unwrap();
    let mut replies = client.bidi_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    for i in 0..5u32 {
        if i > 0 {
            tx.send(message(&format!("m{i}"))).await.unwrap();
        }
        let reply = replies.message().await.unwrap().expect("one reply per message");
        assert_eq!((reply.message, reply.index), (format!("m{i}"), i));
    }
    drop(tx);
    assert_eq!(replies.message().await.unwrap(), None);

    let m = s.settled(|m| handled_total(m, "BidiStream") >= 1.0).await;
    assert_handled(&m, "BidiStream", "bidi_stream", &[("OK", 1.0)]);
    assert_method_totals(&m, "BidiStream", "bidi_stream", 1.0, 5.0, 5.0);
}

#[tokio::test]
async fn client_and_server_streams_count_their_messages() {
    let s = setup().await;
    let mut client = s.grpc().await;
    let reply = client.client_stream(tokio_stream::iter(["a", "b", "c"].map(message))).await.unwrap().into_inner();
    assert_eq!((reply.message.as_str(), reply.index), ("a,b,c", 3));
    let request = EchoRequest { count: 4, ..message("s") };
    let mut stream = client.server_stream(request).await.unwrap().into_inner();
    let mut n = 0;
    while stream.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 4);
    // A server stream that ends with an error status after two messages.
    let request = EchoRequest { count: 2, status_code: Code::Unavailable as i32, ..message("e") };
    let mut stream = client.server_stream(request).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().is_some());
    assert!(stream.message().await.unwrap().is_some());
    assert_eq!(stream.message().await.unwrap_err().code(), Code::Unavailable);

    let m = s.settled(|m| handled_total(m, "ClientStream") >= 1.0 && handled_total(m, "ServerStream") >= 2.0).await;
    assert_handled(&m, "ClientStream", "client_stream", &[("OK", 1.0)]);
    assert_method_totals(&m, "ClientStream", "client_stream", 1.0, 3.0, 1.0);
    // The status at the end of the stream (trailers), not the 200 head, decides.
    assert_handled(&m, "ServerStream", "server_stream", &[("OK", 1.0), ("Unavailable", 1.0)]);
    assert_method_totals(&m, "ServerStream", "server_stream", 2.0, 2.0, 6.0);
}

#[tokio::test]
async fn a_reload_seeds_new_routes_and_methods_and_keeps_counted_values() {
    let s = setup().await;
    let client = http1_client();
    for _ in 0..2 {
        let response =
            send(&client, Request::get(url(s.gateway.public, "/echo/status/200")).body(empty()).unwrap()).await;
        assert_eq!(response.status, 200);
    }
    let ok = [("route", "echo-http"), ("method", "GET"), ("code", "200")];
    let before = s.settled(|m| m.get("gateway_http_requests_total", &ok) == Some(2.0)).await;
    let extra_ok = [("route", "extra"), ("method", "GET"), ("code", "200")];
    assert_eq!(before.get("gateway_http_requests_total", &extra_ok), None);

    let extra_route = "  - name: extra\n    match: { path_prefix: /extra }\n    upstream: echo";
    s.gateway.rewrite_config(&config_with(&s.echo, extra_route, ", Extra: server_stream"));
    s.gateway.signal(Signal::Hup).unwrap();
    let m = s.settled(|m| m.get("gateway_config_reloads_total", &[("result", "success")]) == Some(1.0)).await;

    // The new route and method exist at zero, with every code...
    assert_eq!(m.get("gateway_http_requests_total", &extra_ok), Some(0.0));
    assert_eq!(m.get("gateway_http_request_duration_seconds_count", &extra_ok), Some(0.0));
    assert_eq!(m.get("gateway_http_requests_in_flight", &[("route", "extra")]), Some(0.0));
    for code in CODES {
        assert_eq!(handled(&m, "Extra", "server_stream", code), 0.0, "Extra {code}");
    }
    assert_method_totals(&m, "Extra", "server_stream", 0.0, 0.0, 0.0);
    // ...while what was counted before stays counted.
    assert_eq!(m.value("gateway_http_requests_total", &ok), 2.0);
    assert_eq!(m.value("gateway_http_request_duration_seconds_count", &ok), 2.0);
    assert_eq!(m.value("gateway_config_reloads_total", &[("result", "failure")]), 0.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let reloaded = m.value("gateway_config_last_reload_success_timestamp_seconds", &[]);
    assert!(reloaded > now - 60.0 && reloaded <= now + 1.0, "last reload success at {reloaded}, now {now}");
}

// ---------------------------------------------------------------------------
// Cardinality attack
// ---------------------------------------------------------------------------

/// xorshift64*: a reproducible stream of random numbers from a seed.
struct Rng(u64);

impl Rng {
    fn from_time() -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        Self((nanos as u64) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `len` characters from `alphabet`.
    fn token(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len).map(|_| char::from(alphabet[self.below(alphabet.len())])).collect()
    }
}

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_.~";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const IDENT: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_";

/// Methods with a label of their own; everything else is `other`.
const KNOWN_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// Where a random HTTP request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// A path no route matches.
    Unmatched,
    /// A random path under the `echo-http` route's prefix.
    Routed,
}

impl Target {
    fn route(self) -> &'static str {
        match self {
            Self::Unmatched => "unmatched",
            Self::Routed => "echo-http",
        }
    }
}

/// One random HTTP request: its method (a known one, or a random token),
/// target and path.
fn random_http(rng: &mut Rng, method: Option<Method>, target: Target) -> (Method, Target, String) {
    let method = method.unwrap_or_else(|| {
        if rng.below(2) == 0 {
            Method::from_bytes(KNOWN_METHODS[rng.below(KNOWN_METHODS.len())].as_bytes()).unwrap()
        } else {
            let len = 3 + rng.below(10);
            Method::from_bytes(format!("X{}", rng.token(UPPER, len)).as_bytes()).unwrap()
        }
    });
    let depth = 1 + rng.below(4);
    let segments: Vec<String> = (0..depth)
        .map(|_| {
            let len = 1 + rng.below(24);
            rng.token(LOWER, len)
        })
        .collect();
    let prefix = match target {
        Target::Unmatched => "/zz-",
        Target::Routed => "/echo/",
    };
    let query =
        if rng.below(3) == 0 { format!("?{}={}", rng.token(LOWER, 5), rng.token(LOWER, 8)) } else { String::new() };
    (method, target, format!("{prefix}{}{query}", segments.join("/")))
}

fn method_label(method: &Method) -> &str {
    if KNOWN_METHODS.contains(&method.as_str()) { method.as_str() } else { "other" }
}

/// A gRPC call with an empty message to `path`, over h2c, and the status it
/// ended with (from the trailers-only head or the trailers).
async fn raw_grpc(client: &gatehouse_test_support::Client, gateway: &Gateway, path: &str) -> String {
    let mut frame = BytesMut::new();
    frame.put_u8(0);
    frame.put_u32(0);
    let request = Request::post(url(gateway.public, path))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(full(Bytes::from(frame)))
        .unwrap();
    let response = send(client, request).await;
    response
        .header("grpc-status")
        .map(str::to_owned)
        .or_else(|| response.trailers.as_ref().and_then(|t| t.get("grpc-status")?.to_str().ok().map(str::to_owned)))
        .unwrap_or_else(|| panic!("{path}: no grpc-status: {response:?}"))
}

fn code_name(status: &str) -> &'static str {
    CODES[status.parse::<usize>().unwrap_or_else(|_| panic!("grpc-status {status:?}"))]
}

/// Every series key (name and labels) of a scrape, for showing what an
/// attack added.
fn keys(m: &Exposition) -> std::collections::BTreeSet<String> {
    m.series().iter().map(|s| format!("{}{:?}", s.name, s.labels)).collect()
}

#[tokio::test]
async fn random_paths_methods_and_grpc_names_leave_the_series_count_unchanged() {
    const HTTP_REQUESTS: usize = 10_000;
    const GRPC_METHODS: usize = 1_000;
    const GRPC_SERVICES: usize = 100;
    const CONCURRENCY: usize = 16;

    let s = setup().await;
    let mut rng = Rng::from_time();
    println!("cardinality attack seed: {}", rng.0);
    let h1 = http1_client();
    let h2 = http2_client();

    // Tallies, by the labels the gateway should use, of what clients saw.
    let mut http_seen: BTreeMap<(&'static str, String, u16), f64> = BTreeMap::new();
    let mut grpc_seen: BTreeMap<(String, String, &'static str), f64> = BTreeMap::new();

    // Warm-up: one request of each kind, so `unmatched`, `other` and
    // `unknown` (with whatever status each kind gets) exist before counting.
    let mut warm_up = Vec::new();
    for target in [Target::Unmatched, Target::Routed] {
        for method in KNOWN_METHODS
            .iter()
            .map(|m| Method::from_bytes(m.as_bytes()).unwrap())
            .chain([Method::from_bytes(b"FOO123").unwrap()])
        {
            warm_up.push(random_http(&mut rng, Some(method), target));
        }
    }
    for (method, target, path) in warm_up {
        let response = send(
            &h1,
            Request::builder().method(method.clone()).uri(url(s.gateway.public, &path)).body(empty()).unwrap(),
        )
        .await;
        *http_seen.entry((target.route(), method_label(&method).to_owned(), response.status.as_u16())).or_default() +=
            1.0;
    }
    let warm_grpc = [
        format!("/{SERVICE}/{}", rng.token(IDENT, 12)),
        format!("/{}.{}/{}", rng.token(LOWER, 6), rng.token(IDENT, 8), rng.token(IDENT, 12)),
    ];
    for (path, service) in warm_grpc.iter().zip([SERVICE, "unknown"]) {
        let status = raw_grpc(&h2, &s.gateway, path).await;
        *grpc_seen.entry((service.to_owned(), "unknown".to_owned(), code_name(&status))).or_default() += 1.0;
    }
    let http_total = |m: &Exposition| m.sum("gateway_http_requests_total", &[]);
    let grpc_total = |m: &Exposition| m.sum("gateway_grpc_server_handled_total", &[]);
    let (want_http, want_grpc) = (http_seen.values().sum::<f64>(), grpc_seen.values().sum::<f64>());
    // The upstream layer counts a trailers-only answer when its (empty) body
    // is dropped, a moment after the client has it: wait for that series too.
    let upstream_unimplemented =
        |m: &Exposition| m.sum("gateway_upstream_requests_total", &[("grpc_code", "Unimplemented")]) >= 1.0;
    let before =
        s.settled(|m| http_total(m) >= want_http && grpc_total(m) >= want_grpc && upstream_unimplemented(m)).await;

    // The attack: random paths with random methods, and random gRPC method
    // names on the routed service (plus some random services).
    let requests: Vec<_> = (0..HTTP_REQUESTS)
        .map(|i| random_http(&mut rng, None, if i % 2 == 0 { Target::Unmatched } else { Target::Routed }))
        .collect();
    let public = s.gateway.public;
    let results: Vec<(&'static str, String, u16)> = futures_util::stream::iter(requests)
        .map(|(method, target, path)| {
            let client = h1.clone();
            async move {
                let label = method_label(&method).to_owned();
                let request = Request::builder().method(method).uri(url(public, &path)).body(empty()).unwrap();
                let response = send(&client, request).await;
                (target.route(), label, response.status.as_u16())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for key in results {
        *http_seen.entry(key).or_default() += 1.0;
    }
    let mut grpc_paths: Vec<(String, &str)> = Vec::new();
    for _ in 0..GRPC_METHODS {
        let len = 1 + rng.below(30);
        grpc_paths.push((format!("/{SERVICE}/{}", rng.token(IDENT, len)), SERVICE));
    }
    for _ in 0..GRPC_SERVICES {
        let (package, version) = (rng.token(b"abcdefghijklmnopqrstuvwxyz", 8), rng.below(9));
        let (service, method) = (rng.token(IDENT, 10), rng.token(IDENT, 10));
        grpc_paths.push((format!("/{package}.v{version}.{service}/{method}"), "unknown"));
    }
    let gateway = &s.gateway;
    let results: Vec<(String, &'static str)> = futures_util::stream::iter(grpc_paths)
        .map(|(path, service)| {
            let client = h2.clone();
            async move {
                let status = raw_grpc(&client, gateway, &path).await;
                (service.to_owned(), code_name(&status))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for (service, code) in results {
        *grpc_seen.entry((service, "unknown".to_owned(), code)).or_default() += 1.0;
    }

    let (want_http, want_grpc) = (http_seen.values().sum::<f64>(), grpc_seen.values().sum::<f64>());
    let after = s.settled(|m| http_total(m) >= want_http && grpc_total(m) >= want_grpc).await;

    println!(
        "series: {} before, {} after\nHTTP (route, method, code): {http_seen:?}\ngRPC: {grpc_seen:?}",
        before.len(),
        after.len()
    );
    let (before_keys, after_keys) = (keys(&before), keys(&after));
    let added: Vec<&String> = after_keys.difference(&before_keys).collect();
    let removed: Vec<&String> = before_keys.difference(&after_keys).collect();
    assert_eq!(
        after.len(),
        before.len(),
        "the attack changed the number of series; added {} (first 20: {:#?}), removed {:?}",
        added.len(),
        &added[..added.len().min(20)],
        removed
    );
    assert!(added.is_empty() && removed.is_empty(), "added {added:?}, removed {removed:?}");

    // And every request was counted, exactly, under the bounded labels.
    assert_eq!(http_total(&after), want_http);
    for ((route, method, code), n) in &http_seen {
        let labels = [("route", *route), ("method", method.as_str()), ("code", &code.to_string())];
        assert_eq!(after.value("gateway_http_requests_total", &labels), *n, "{labels:?}");
        assert_eq!(after.value("gateway_http_request_duration_seconds_count", &labels), *n, "{labels:?}");
    }
    assert_eq!(grpc_total(&after), want_grpc);
    for ((service, method, code), n) in &grpc_seen {
        let labels = [
            ("grpc_service", service.as_str()),
            ("grpc_method", method.as_str()),
            ("grpc_type", "unknown"),
            ("grpc_code", code),
        ];
        assert_eq!(after.value("gateway_grpc_server_handled_total", &labels), *n, "{labels:?}");
    }
    let unmatched: f64 = http_seen.iter().filter(|((r, _, _), _)| *r == "unmatched").map(|(_, n)| n).sum();
    let no_route_grpc: f64 = grpc_seen.iter().filter(|((svc, _, _), _)| svc == "unknown").map(|(_, n)| n).sum();
    assert_eq!(after.value("gateway_requests_rejected_total", &[("reason", "no_route")]), unmatched + no_route_grpc);
}
