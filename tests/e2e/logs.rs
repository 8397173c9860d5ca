//! The gateway's log stream, read line by line: a mixed run of HTTP/1.1,
//! HTTP/2 and gRPC requests (served, rejected and cancelled) must leave
//! valid JSON lines only, exactly one access line per request with the right
//! fields, and no secret anywhere; the text format must serve too.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gatehouse_proto::echo::v1::echo_client::EchoClient;
use gatehouse_proto::echo::v1::{EchoRequest, EchoResponse};
use gatehouse_test_support::{
    Client, Collected, Echo, Gateway, RawResponse, Signal, body_with_trailers, empty, full, http1_client, http2_client,
    raw_http, send, strip_ansi, url,
};
use http::Request;
use http_body_util::BodyExt;
use prost::Message;
use serde_json::{Value, json};
use tonic::Code;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;

/// Values sent in query strings and credentials headers; none may be logged.
const SECRETS: [&str; 4] = ["secret123", "sk-super-secret-value", "key-super-secret", "cookie-secret"];
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// How long a cancelled request may take to get its access line.
const LINE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the gateway may take to exit after SIGTERM with the short
/// drain settings of [`config`].
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// `/small` allows 1 KiB bodies, `echo.v1.Echo` goes to `echo-grpc`,
/// `/echo` to `echo`; `logging` is the YAML inside `logging: { }`.
fn config(echo: SocketAddr, logging: &str) -> String {
    format!(
        r#"
listeners:
  public: 127.0.0.1:0
  admin: 127.0.0.1:0
logging: {{ {logging} }}
shutdown: {{ drain_delay: 100ms, shutdown_timeout: 2s }}
upstreams:
  echo:
    protocol: http1
    endpoints: ["{echo}"]
  echo-grpc:
    protocol: grpc
    endpoints: ["{echo}"]
routes:
  - name: small
    match: {{ path_prefix: /small }}
    upstream: echo
    max_body_bytes: 1KiB
  - name: echo-grpc
    match: {{ grpc_service: echo.v1.Echo }}
    upstream: echo-grpc
  - name: echo-http
    match: {{ path_prefix: /echo }}
    upstream: echo
"#
    )
}

/// What one field of an access line must be.
#[derive(Debug, Clone)]
enum Check {
    Eq(Value),
    Absent,
    /// Any value, or none: the contract leaves it open.
    Any,
    /// A number at least this large.
    AtLeast(u64),
}

/// What the access line of one request must say.
#[derive(Debug)]
struct Expected {
    what: &'static str,
    request_id: String,
    fields: Vec<(&'static str, Check)>,
}

impl Expected {
    /// A request that completed normally: `error_type`, `grpc_code`,
    /// `trace_id` and `identity_id` absent, nothing read from the client.
    fn new(what: &'static str, request_id: &str, method: &str, path: &str, protocol: &str) -> Self {
        let eq = |v: &str| Check::Eq(json!(v));
        Self {
            what,
            request_id: request_id.to_owned(),
            fields: vec![
                ("msg", eq("request")),
                ("method", eq(method)),
                ("path", eq(path)),
                ("protocol", eq(protocol)),
                ("client_ip", eq("127.0.0.1")),
                ("trace_id", Check::Absent),
                ("identity_id", Check::Absent),
                ("grpc_code", Check::Absent),
                ("error_type", Check::Absent),
                ("bytes_in", Check::Eq(json!(0))),
            ],
        }
    }

    /// Routed by `echo-http` to `echo`; the whole response was read.
    fn http(what: &'static str, r: &Collected, method: &str, path: &str, protocol: &str) -> Self {
        Self::new(what, id_of(r), method, path, protocol)
            .with("route", Check::Eq(json!("echo-http")))
            .with("upstream", Check::Eq(json!("echo")))
            .with("status", Check::Eq(json!(r.status.as_u16())))
            .with("bytes_out", Check::Eq(json!(r.body.len())))
    }

    /// Routed by `echo-grpc` to `echo-grpc`.
    fn grpc(what: &'static str, metadata: &MetadataMap, method: &str, code: &str) -> Self {
        let id = metadata.get("x-request-id").expect("gRPC responses carry x-request-id").to_str().unwrap();
        Self::new(what, id, "POST", &format!("/echo.v1.Echo/{method}"), "grpc")
            .with("route", Check::Eq(json!("echo-grpc")))
            .with("upstream", Check::Eq(json!("echo-grpc")))
            .with("status", Check::Eq(json!(200)))
            .with("grpc_code", Check::Eq(json!(code)))
    }

    fn with(mut self, field: &'static str, check: Check) -> Self {
        self.fields.retain(|(f, _)| *f != field);
        self.fields.push((field, check));
        self
    }

    fn eq(self, field: &'static str, value: impl Into<Value>) -> Self {
        self.with(field, Check::Eq(value.into()))
    }

    /// Every mismatch between `line` and what is expected.
    fn mismatches(&self, line: &Value) -> Vec<String> {
        let mut out = Vec::new();
        for (field, check) in &self.fields {
            let got = line.get(*field);
            let ok = match check {
                Check::Eq(want) => got == Some(want),
                Check::Absent => got.is_none(),
                Check::Any => true,
                Check::AtLeast(n) => got.and_then(Value::as_u64).is_some_and(|g| g >= *n),
            };
            if !ok {
                out.push(format!("{field}: expected {check:?}, got {got:?}"));
            }
        }
        out
    }
}

/// The `x-request-id` a response carries.
fn id_of(response: &Collected) -> &str {
    response.header("x-request-id").expect("every response carries x-request-id")
}

/// gRPC body bytes of `message`: the 5-byte frame header plus the message.
fn framed(message: &impl Message) -> u64 {
    5 + message.encoded_len() as u64
}

fn get(gateway: &Gateway, path: &str) -> http::request::Builder {
    Request::get(url(gateway.public, path))
}

/// Checks that `line` is a JSON object with the fields every line has.
fn check_common_fields(line: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let object = value.as_object().ok_or("not a JSON object")?;
    let text = |field: &str| object.get(field).and_then(Value::as_str).ok_or(format!("no string field {field:?}"));
    let time = text("time")?;
    if !time.ends_with('Z') || humantime::parse_rfc3339(time).is_err() {
        return Err(format!("time {time:?} is not RFC 3339 UTC"));
    }
    let level = text("level")?;
    if !["trace", "debug", "info", "warn", "error"].contains(&level) {
        return Err(format!("level {level:?} is not a level"));
    }
    if text("service")? != "gatehouse" {
        return Err("service is not \"gatehouse\"".to_owned());
    }
    text("msg")?;
    text("target")?;
    Ok(value)
}

/// An HTTP/1.1 client, an HTTP/2 client and a gRPC client of `gateway`.
async fn clients(gateway: &Gateway) -> (Client, Client, EchoClient<Channel>) {
    let channel = Channel::from_shared(format!("http://{}", gateway.public)).unwrap().connect().await.unwrap();
    (http1_client(), http2_client(), EchoClient::new(channel))
}

/// What is wrong with the access lines: a request with no line, or more
/// than one, or a line that says something else than expected, and lines
/// for requests never sent.
fn wrong_lines(expected: &[Expected], access: &[Value]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut by_id: HashMap<&str, Vec<&Value>> = HashMap::new();
    for line in access {
        let id = line["request_id"].as_str().unwrap_or_else(|| panic!("access line without request_id: {line}"));
        by_id.entry(id).or_default().push(line);
    }
    for e in expected {
        match by_id.remove(e.request_id.as_str()).as_deref() {
            None => failures.push(format!("{}: no access line with request_id {}", e.what, e.request_id)),
            Some([line]) => {
                let mismatches = e.mismatches(line);
                if !mismatches.is_empty() {
                    failures.push(format!("{}: {}\n    line: {line}", e.what, mismatches.join("; ")));
                }
            }
            Some(lines) => failures.push(format!("{}: {} access lines: {lines:?}", e.what, lines.len())),
        }
    }
    for (id, lines) in by_id {
        failures.push(format!("access line(s) for no request sent (request_id {id}): {lines:?}"));
    }
    failures
}

/// The access lines among `lines`, parsed.
fn access_lines(lines: &[String]) -> Vec<Value> {
    lines.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["target"] == "access").collect()
}

/// Stops the gateway with SIGTERM and returns its whole standard output.
async fn stop(gateway: &mut Gateway) -> Vec<String> {
    gateway.signal(Signal::Term).unwrap();
    let status = gateway.wait_exit(EXIT_TIMEOUT).await;
    assert!(status.is_some_and(|s| s.success()), "gatehouse did not exit 0 after SIGTERM: {status:?}");
    assert!(gateway.output_closed(EXIT_TIMEOUT).await, "gatehouse's output did not close");
    gateway.lines()
}

#[tokio::test]
async fn a_mixed_run_logs_one_valid_access_line_per_request_and_no_secret() {
    let echo = Echo::start("echo").await;
    let mut gateway = Gateway::start(&config(echo.addr, "level: info, format: json, access_log: true")).await;
    let (h1, h2, mut grpc) = clients(&gateway).await;
    let mut expected = Vec::new();

    // HTTP/1.1 GETs with a secret in the query string.
    let r = send(&h1, get(&gateway, "/echo/headers?token=secret123").body(empty()).unwrap()).await;
    assert_eq!(r.status, 200);
    expected.push(Expected::http("h1 GET with query", &r, "GET", "/echo/headers", "http1"));
    let r = send(&h1, get(&gateway, "/echo/status/204?token=secret123&x=1").body(empty()).unwrap()).await;
    assert_eq!(r.status, 204);
    expected.push(Expected::http("h1 GET 204", &r, "GET", "/echo/status/204", "http1"));

    // HTTP/1.1 POSTs: a body of known length and a chunked one.
    let body = vec![b'p'; 1234];
    let request = Request::post(url(gateway.public, "/echo/anything?token=secret123")).body(full(body)).unwrap();
    let r = send(&h1, request).await;
    assert_eq!((r.status.as_u16(), r.body.len()), (200, 1234));
    expected.push(Expected::http("h1 POST", &r, "POST", "/echo/anything", "http1").eq("bytes_in", 1234));
    let chunks = vec![Bytes::from_static(b"one,"), Bytes::from_static(b"two,"), Bytes::from_static(b"three")];
    let request = Request::post(url(gateway.public, "/echo/anything")).body(body_with_trailers(chunks, None)).unwrap();
    let r = send(&h1, request).await;
    assert_eq!(r.text(), "one,two,three");
    expected.push(Expected::http("h1 chunked POST", &r, "POST", "/echo/anything", "http1").eq("bytes_in", 13));

    // HTTP/2.
    let r = send(&h2, get(&gateway, "/echo/status/201").body(empty()).unwrap()).await;
    assert_eq!(r.status, 201);
    expected.push(Expected::http("h2 GET 201", &r, "GET", "/echo/status/201", "http2"));
    let request = Request::post(url(gateway.public, "/echo/anything")).body(full(vec![b'q'; 100])).unwrap();
    let r = send(&h2, request).await;
    assert_eq!(r.status, 200);
    expected.push(Expected::http("h2 POST", &r, "POST", "/echo/anything", "http2").eq("bytes_in", 100));

    // gRPC: unary OK, unary NotFound (trailers-only), a server stream with trace context.
    let request = EchoRequest { message: "hello".to_owned(), ..EchoRequest::default() };
    let response = grpc.unary(request.clone()).await.unwrap();
    let reply = EchoResponse { message: "hello".to_owned(), ..EchoResponse::default() };
    assert_eq!(response.get_ref(), &reply);
    expected.push(
        Expected::grpc("gRPC unary OK", response.metadata(), "Unary", "OK")
            .eq("bytes_in", framed(&request))
            .eq("bytes_out", framed(&reply)),
    );
    let request =
        EchoRequest { message: "missing".to_owned(), status_code: Code::NotFound as i32, ..Default::default() };
    let status = grpc.unary(request.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    expected.push(
        Expected::grpc("gRPC unary NotFound", status.metadata(), "Unary", "NotFound")
            .eq("bytes_in", framed(&request))
            .eq("bytes_out", 0),
    );
    let request = EchoRequest { message: "s".to_owned(), count: 3, ..EchoRequest::default() };
    let mut call = tonic::Request::new(request.clone());
    call.metadata_mut().insert("traceparent", TRACEPARENT.parse().unwrap());
    let response = grpc.server_stream(call).await.unwrap();
    let metadata = response.metadata().clone();
    let mut stream = response.into_inner();
    let mut bytes_out = 0;
    let mut got = 0;
    while let Some(reply) = stream.message().await.unwrap() {
        bytes_out += framed(&reply);
        got += 1;
    }
    assert_eq!(got, 3);
    expected.push(
        Expected::grpc("gRPC server stream with traceparent", &metadata, "ServerStream", "OK")
            .eq("bytes_in", framed(&request))
            .eq("bytes_out", bytes_out)
            .eq("trace_id", TRACE_ID),
    );

    // Rejected by the gateway: no route, body too large, no Host, too many headers on HTTP/2.
    let r = send(&h1, get(&gateway, "/nowhere?token=secret123").body(empty()).unwrap()).await;
    assert_eq!(r.status, 404);
    expected.push(
        Expected::new("no route", id_of(&r), "GET", "/nowhere", "http1")
            .eq("route", "unmatched")
            .with("upstream", Check::Absent)
            .eq("status", 404)
            .eq("error_type", "no_route")
            .eq("bytes_out", r.body.len()),
    );
    let request = Request::post(url(gateway.public, "/small/anything?token=secret123")).body(full(vec![b'b'; 2048]));
    let r = send(&h1, request.unwrap()).await;
    assert_eq!(r.status, 413, "{}", r.text());
    expected.push(
        Expected::new("body too large", id_of(&r), "POST", "/small/anything", "http1")
            .eq("route", "small")
            .eq("upstream", "echo")
            .eq("status", 413)
            .eq("error_type", "body_too_large")
            .with("bytes_in", Check::Any)
            .eq("bytes_out", r.body.len()),
    );
    let raw =
        raw_http(gateway.public, b"GET /echo/headers?token=secret123 HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    let r = RawResponse::parse(&raw).unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"));
    assert_eq!(r.status, 400, "{r:?}");
    let id = r.header("x-request-id").expect("a 400 carries x-request-id");
    expected.push(
        Expected::new("no Host", id, "GET", "/echo/headers", "http1")
            .with("route", Check::Any)
            .with("upstream", Check::Any)
            .eq("status", 400)
            .eq("error_type", "bad_request")
            .eq("bytes_out", r.body.len()),
    );
    let mut request = get(&gateway, "/echo/headers?token=secret123");
    for i in 0..150 {
        request = request.header(format!("x-h-{i}"), "v");
    }
    let r = send(&h2, request.body(empty()).unwrap()).await;
    assert_eq!(r.status, 431, "{}", r.text());
    expected.push(
        Expected::new("h2 with 150 headers", id_of(&r), "GET", "/echo/headers", "http2")
            .with("route", Check::Any)
            .with("upstream", Check::Any)
            .eq("status", 431)
            .eq("error_type", "headers_too_large")
            .eq("bytes_out", r.body.len()),
    );

    // Credentials and cookies, and trace context valid and not.
    let request = get(&gateway, "/echo/headers")
        .header("authorization", "Bearer sk-super-secret-value")
        .header("x-api-key", "key-super-secret")
        .header("cookie", "session=cookie-secret")
        .body(empty())
        .unwrap();
    let r = send(&h1, request).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("sk-super-secret-value"), "the upstream got the Authorization header: {}", r.text());
    expected.push(Expected::http("credentials", &r, "GET", "/echo/headers", "http1"));
    let r = send(&h1, get(&gateway, "/echo/headers").header("traceparent", TRACEPARENT).body(empty()).unwrap()).await;
    assert_eq!(r.status, 200);
    expected.push(Expected::http("traceparent", &r, "GET", "/echo/headers", "http1").eq("trace_id", TRACE_ID));
    let r = send(&h2, get(&gateway, "/echo/headers").header("traceparent", "garbage").body(empty()).unwrap()).await;
    assert_eq!(r.status, 200);
    expected.push(Expected::http("invalid traceparent", &r, "GET", "/echo/headers", "http2"));

    // Clients that go away: mid-body on HTTP/1.1, before the response head
    // on HTTP/2, mid-stream on gRPC. Each line must come while the gateway
    // still runs, not only when shutdown cuts the request.
    let quitter = http1_client();
    let response = quitter.request(get(&gateway, "/echo/stream/50?interval_ms=50").body(empty()).unwrap()).await;
    let response = response.unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let mut body = response.into_body();
    let first = loop {
        if let Ok(data) = body.frame().await.unwrap().unwrap().into_data() {
            break data;
        }
    };
    drop(body);
    drop(quitter);
    expected.push(
        Expected::new("h1 client gone mid-body", &id, "GET", "/echo/stream/50", "http1")
            .eq("route", "echo-http")
            .eq("upstream", "echo")
            .eq("status", 200)
            .eq("error_type", "client_cancelled")
            .with("bytes_out", Check::AtLeast(first.len() as u64)),
    );
    let id = "cancelled-before-head-1";
    let request = get(&gateway, "/echo/delay/3000").header("x-request-id", id).body(empty()).unwrap();
    let abandoned = tokio::time::timeout(Duration::from_millis(300), h2.request(request)).await;
    assert!(abandoned.is_err(), "the delayed response came early: {abandoned:?}");
    expected.push(
        Expected::new("h2 client gone before the head", id, "GET", "/echo/delay/3000", "http2")
            .eq("route", "echo-http")
            .with("upstream", Check::Any)
            .with("status", Check::Any)
            .eq("error_type", "client_cancelled")
            .with("bytes_out", Check::Any),
    );
    let request = EchoRequest { message: "c".to_owned(), count: 50, delay_ms: 50, ..EchoRequest::default() };
    let response = grpc.server_stream(request.clone()).await.unwrap();
    let metadata = response.metadata().clone();
    let mut stream = response.into_inner();
    let first = stream.message().await.unwrap().unwrap();
    drop(stream);
    expected.push(
        Expected::grpc("gRPC client gone mid-stream", &metadata, "ServerStream", "Canceled")
            .eq("bytes_in", framed(&request))
            .with("bytes_out", Check::AtLeast(framed(&first)))
            .eq("error_type", "client_cancelled"),
    );
    let mut failures = Vec::new();
    for what in ["h1 client gone mid-body", "h2 client gone before the head", "gRPC client gone mid-stream"] {
        let e = expected.iter().find(|e| e.what == what).unwrap();
        let line =
            gateway.wait_for_log(LINE_TIMEOUT, |v| v["target"] == "access" && v["request_id"] == *e.request_id).await;
        if line.is_none() {
            failures.push(format!("{what}: no access line within {LINE_TIMEOUT:?} of the client going away"));
        }
    }

    let lines = stop(&mut gateway).await;

    // Every line: JSON with the common fields, and no secret.
    let mut access = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let value = check_common_fields(line).unwrap_or_else(|e| panic!("stdout line {n}: {e}: {line}"));
        for secret in SECRETS {
            assert!(!line.contains(secret), "stdout line {n} contains {secret:?}: {line}");
        }
        if value["target"] == "access" {
            access.push(value);
        }
    }
    for line in gateway.stderr_lines() {
        for secret in SECRETS {
            assert!(!line.contains(secret), "a stderr line contains {secret:?}: {line}");
        }
    }

    // Exactly one access line per request, and the right one.
    for line in &access {
        assert!(
            line["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
            "duration_ms is not a non-negative number: {line}"
        );
        assert!(line["path"].as_str().is_some_and(|p| !p.contains('?')), "a path with a query: {line}");
    }
    failures.extend(wrong_lines(&expected, &access));
    assert!(
        failures.is_empty(),
        "{} of {} requests logged wrongly:\n  {}",
        failures.len(),
        expected.len(),
        failures.join("\n  ")
    );
    assert_eq!(access.len(), expected.len());
}

#[tokio::test]
async fn a_line_reused_on_one_worker_carries_nothing_over_from_the_request_before() {
    // One worker thread: every line after the first is one a finished
    // request left behind for reuse.
    let echo = Echo::start("echo").await;
    let config = config(echo.addr, "level: info, format: json, access_log: true") + "runtime: { worker_threads: 1 }\n";
    let mut gateway = Gateway::start(&config).await;
    let (h1, h2, mut grpc) = clients(&gateway).await;
    let mut expected = Vec::new();

    let r = send(&h1, get(&gateway, "/nowhere").body(empty()).unwrap()).await;
    expected.push(
        Expected::new("no route", id_of(&r), "GET", "/nowhere", "http1")
            .eq("route", "unmatched")
            .with("upstream", Check::Absent)
            .eq("status", 404)
            .eq("error_type", "no_route"),
    );
    let r = send(&h1, get(&gateway, "/echo/status/200").body(empty()).unwrap()).await;
    expected.push(Expected::http("GET after an error", &r, "GET", "/echo/status/200", "http1"));
    let request = Request::post(url(gateway.public, "/echo/anything")).body(full(vec![b'p'; 500])).unwrap();
    let r = send(&h1, request).await;
    expected.push(Expected::http("POST", &r, "POST", "/echo/anything", "http1").eq("bytes_in", 500));
    let r = send(&h1, get(&gateway, "/echo/headers").header("traceparent", TRACEPARENT).body(empty()).unwrap()).await;
    expected.push(Expected::http("GET with traceparent", &r, "GET", "/echo/headers", "http1").eq("trace_id", TRACE_ID));
    let r = send(&h1, get(&gateway, "/echo/status/200").body(empty()).unwrap()).await;
    expected.push(Expected::http("GET after a body and a trace", &r, "GET", "/echo/status/200", "http1"));
    let request =
        EchoRequest { message: "missing".to_owned(), status_code: Code::NotFound as i32, ..Default::default() };
    let status = grpc.unary(request.clone()).await.unwrap_err();
    expected.push(
        Expected::grpc("gRPC NotFound", status.metadata(), "Unary", "NotFound")
            .eq("bytes_in", framed(&request))
            .eq("bytes_out", 0),
    );
    let r = send(&h2, get(&gateway, "/echo/status/201").body(empty()).unwrap()).await;
    expected.push(Expected::http("h2 GET after gRPC", &r, "GET", "/echo/status/201", "http2"));

    let access = access_lines(&stop(&mut gateway).await);
    let failures = wrong_lines(&expected, &access);
    assert!(failures.is_empty(), "{}", failures.join("\n  "));
}

#[tokio::test]
async fn requests_the_http1_parser_rejects_get_an_access_line() {
    let echo = Echo::start("echo").await;
    let mut gateway = Gateway::start(&config(echo.addr, "format: json")).await;
    // 100 KiB in one header: over the 60 KiB default, so the HTTP/1.1
    // parser answers 431 before any request object exists.
    let request = format!(
        "GET /echo/headers?token=secret123 HTTP/1.1\r\nHost: gatehouse.test\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let raw = raw_http(gateway.public, request.as_bytes()).await;
    let r = RawResponse::parse(&raw).unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"));
    assert_eq!(r.status, 431, "{r:?}");

    let lines = stop(&mut gateway).await;
    let access = access_lines(&lines);
    assert_eq!(access.len(), 1, "one access line for the rejected request: {access:#?}");
    let line = &access[0];
    assert_eq!(
        (&line["status"], &line["error_type"], &line["protocol"]),
        (&json!(431), &json!("headers_too_large"), &json!("http1")),
        "{line}"
    );
    if let Some(id) = r.header("x-request-id") {
        assert_eq!(line["request_id"], id, "{line}");
    }
    assert!(lines.iter().all(|l| !l.contains("secret123")), "{lines:#?}");
}

#[tokio::test]
async fn text_format_writes_human_lines_and_still_serves() {
    let echo = Echo::start("echo").await;
    let mut gateway = Gateway::start(&config(echo.addr, "level: info, format: text")).await;
    let r = send(&http1_client(), get(&gateway, "/echo/status/200?token=secret123").body(empty()).unwrap()).await;
    assert_eq!(r.status, 200);
    let id = id_of(&r).to_owned();
    let access = gateway.wait_for_line(LINE_TIMEOUT, |l| l.contains(id.as_str())).await;
    let access = strip_ansi(&access.unwrap_or_else(|| panic!("no line names request {id}: {:#?}", gateway.lines())));
    for part in ["INFO", "access", "request", "/echo/status/200", "status=200"] {
        assert!(access.contains(part), "the text access line lacks {part:?}: {access}");
    }

    let lines = stop(&mut gateway).await;
    assert!(lines.len() >= 3, "listening, access and shutdown lines: {lines:#?}");
    for line in &lines {
        assert!(serde_json::from_str::<Value>(line).is_err(), "a JSON line in text format: {line}");
        assert!(!line.contains("secret123"), "a text line contains the query string: {line}");
    }
}

#[tokio::test]
async fn access_log_false_writes_no_access_lines() {
    let echo = Echo::start("echo").await;
    let mut gateway = Gateway::start(&config(echo.addr, "access_log: false")).await;
    let r = send(&http1_client(), get(&gateway, "/echo/status/200").body(empty()).unwrap()).await;
    assert_eq!(r.status, 200);
    let r = send(&http1_client(), get(&gateway, "/nowhere").body(empty()).unwrap()).await;
    assert_eq!(r.status, 404);

    let lines = stop(&mut gateway).await;
    let values: Vec<Value> =
        lines.iter().map(|l| check_common_fields(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(values.iter().any(|v| v["msg"] == "listening"), "{lines:#?}");
    let access: Vec<&Value> = values.iter().filter(|v| v["target"] == "access").collect();
    assert!(access.is_empty(), "access lines with access_log: false: {access:#?}");
}
