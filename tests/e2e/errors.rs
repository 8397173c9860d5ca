//! The gateway's own errors, one test per row of the error mapping: a JSON
//! body for HTTP (`{"error":{"code","message","request_id"}}`) and a
//! trailers-only `grpc-status` for gRPC.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse_proto::echo::v1::EchoRequest;
use gatehouse_proto::echo::v1::echo_client::EchoClient;
use gatehouse_test_support::{
    Body, Collected, Echo, Gateway, RawResponse, body_with_trailers, empty, full, http1_client, http2_client, raw_http,
    send, unused_addr, url,
};
use http::Request;
use tonic::Code;
use tonic::transport::Channel;

/// A gateway with one HTTP route per error row, all on the echo upstream
/// except `/dead`, whose only endpoint has nothing listening.
async fn http_setup() -> (Gateway, Echo) {
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
  dead:
    protocol: http1
    endpoints: ["{dead}"]
    connect_timeout: 1s
routes:
  - name: slow
    match: {{ path_prefix: /slow }}
    upstream: echo
    timeout: 200ms
  - name: dead
    match: {{ path_prefix: /dead }}
    upstream: dead
  - name: small
    match: {{ path_prefix: /small }}
    upstream: echo
    max_body_bytes: 1KiB
  - name: echo-http
    match: {{ path_prefix: /echo }}
    upstream: echo
"#,
        echo = echo.addr,
        dead = unused_addr(),
    );
    (Gateway::start(&config).await, echo)
}

/// A gateway whose only gRPC route (for `echo.v1.Echo`) has `route_extra`
/// settings and goes to `endpoint`.
async fn grpc_gateway(endpoint: SocketAddr, route_extra: &str) -> Gateway {
    let config = format!(
        r#"
listeners:
  public: 127.0.0.1:0
  admin: 127.0.0.1:0
upstreams:
  echo-grpc:
    protocol: grpc
    endpoints: ["{endpoint}"]
routes:
  - name: echo-grpc
    match: {{ grpc_service: echo.v1.Echo }}
    upstream: echo-grpc
{route_extra}
"#
    );
    Gateway::start(&config).await
}

async fn grpc_client(gateway: &Gateway) -> EchoClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", gateway.public)).unwrap().connect().await.unwrap();
    EchoClient::new(channel)
}

fn request(method: http::Method, gateway: &Gateway, path: &str, id: &str, body: Body) -> Request<Body> {
    Request::builder().method(method).uri(url(gateway.public, path)).header("x-request-id", id).body(body).unwrap()
}

/// Checks the gateway's JSON error shape, with the request id the client sent.
fn assert_gateway_error(response: &Collected, status: u16, code: &str, request_id: &str) {
    assert_eq!(response.status, status, "body: {}", response.text());
    assert!(
        response.header("content-type").is_some_and(|ct| ct.starts_with("application/json")),
        "content-type: {:?}",
        response.header("content-type")
    );
    assert_eq!(response.header("x-request-id"), Some(request_id));
    let json = response.json();
    assert_eq!(json["error"]["code"], code, "{json}");
    assert_eq!(json["error"]["request_id"], request_id, "{json}");
    assert!(
        json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error.message must be a non-empty string: {json}"
    );
}

// ---- HTTP ----------------------------------------------------------------

#[tokio::test]
async fn http_no_route_is_404() {
    let (gateway, _echo) = http_setup().await;
    for client in [http1_client(), http2_client()] {
        let response = send(&client, request(http::Method::GET, &gateway, "/nowhere", "id-no-route", empty())).await;
        assert_gateway_error(&response, 404, "no_route", "id-no-route");
    }
}

#[tokio::test]
async fn http_upstream_timeout_is_504() {
    let (gateway, _echo) = http_setup().await;
    // HTTP/1.1 (the connection's watchdog keeps the deadline) and HTTP/2
    // (a timer per stream) alike: not before the 200ms route timeout, and
    // not long after it.
    for client in [http1_client(), http2_client()] {
        for _ in 0..2 {
            let started = Instant::now();
            let response =
                send(&client, request(http::Method::GET, &gateway, "/slow/delay/2000", "id-timeout", empty())).await;
            let elapsed = started.elapsed();
            assert_gateway_error(&response, 504, "upstream_timeout", "id-timeout");
            assert!(
                elapsed >= Duration::from_millis(200) && elapsed < Duration::from_millis(1000),
                "the 200ms route timeout answered after {elapsed:?}"
            );
            // The next request on the same client is not cut by the
            // deadline of the one before.
            let response =
                send(&client, request(http::Method::GET, &gateway, "/slow/delay/50", "id-in-time", empty())).await;
            assert_eq!(response.status, 200, "{}", response.text());
        }
    }
}

#[tokio::test]
async fn http_upstream_unreachable_is_502() {
    let (gateway, _echo) = http_setup().await;
    let response =
        send(&http1_client(), request(http::Method::GET, &gateway, "/dead/anything", "id-dead", empty())).await;
    assert_gateway_error(&response, 502, "upstream_unavailable", "id-dead");
}

#[tokio::test]
async fn http_body_too_large_is_413_with_content_length() {
    let (gateway, _echo) = http_setup().await;
    let client = http1_client();
    let too_large = full(vec![b'x'; 1025]);
    let response = send(&client, request(http::Method::POST, &gateway, "/small/sink", "id-big", too_large)).await;
    assert_gateway_error(&response, 413, "body_too_large", "id-big");

    // The limit itself is allowed.
    let at_limit = full(vec![b'x'; 1024]);
    let response = send(&client, request(http::Method::POST, &gateway, "/small/sink", "id-ok", at_limit)).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json(), serde_json::json!({ "bytes": 1024 }));
}

#[tokio::test]
async fn http_body_too_large_is_413_when_streamed() {
    let (gateway, _echo) = http_setup().await;
    // No content-length: chunked on HTTP/1.1, bare DATA frames on HTTP/2, so
    // the gateway can only find out by counting.
    for client in [http1_client(), http2_client()] {
        let chunks = vec![Bytes::from(vec![b'x'; 512]); 4];
        let body = body_with_trailers(chunks, None);
        let response = send(&client, request(http::Method::POST, &gateway, "/small/sink", "id-chunked", body)).await;
        assert_gateway_error(&response, 413, "body_too_large", "id-chunked");

        let chunks = vec![Bytes::from(vec![b'x'; 500]); 2];
        let body = body_with_trailers(chunks, None);
        let response = send(&client, request(http::Method::POST, &gateway, "/small/sink", "id-small", body)).await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.json(), serde_json::json!({ "bytes": 1000 }));
    }
}

#[tokio::test]
async fn http_bad_request_is_400() {
    let (gateway, _echo) = http_setup().await;
    // No Host header: the client's mistake, answered by the gateway.
    let raw =
        raw_http(gateway.public, b"GET /echo/headers HTTP/1.1\r\nx-request-id: id-bad\r\nconnection: close\r\n\r\n")
            .await;
    let response = RawResponse::parse(&raw).unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"));
    assert_eq!(response.status, 400, "{raw}");
    assert!(response.header("content-type").is_some_and(|ct| ct.starts_with("application/json")), "{raw}");
    let json = response.json();
    assert_eq!(json["error"]["code"], "bad_request", "{json}");
    assert_eq!(json["error"]["request_id"], "id-bad", "{json}");
}

// ---- gRPC ----------------------------------------------------------------

#[tokio::test]
async fn grpc_no_route_is_unimplemented() {
    let echo = Echo::start("echo").await;
    // Only an HTTP route: nothing serves echo.v1.Echo.
    let config = format!(
        r#"
listeners:
  public: 127.0.0.1:0
  admin: 127.0.0.1:0
upstreams:
  echo:
    protocol: http1
    endpoints: ["{}"]
routes:
  - name: http-only
    match: {{ path_prefix: /http-only }}
    upstream: echo
"#,
        echo.addr
    );
    let gateway = Gateway::start(&config).await;
    let status = grpc_client(&gateway).await.unary(EchoRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(!status.message().is_empty(), "{status:?}");

    // The same call on the wire: a trailers-only response, status in the headers.
    let grpc_request = Request::post(url(gateway.public, "/echo.v1.Echo/Unary"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(full(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let response = send(&http2_client(), grpc_request).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/grpc"));
    assert_eq!(response.header("grpc-status"), Some("12"));
    assert!(response.header("grpc-message").is_some_and(|m| !m.is_empty()));
    assert!(response.body.is_empty(), "body: {:?}", response.body);
    assert_eq!(response.trailers, None);
}

#[tokio::test]
async fn grpc_upstream_timeout_is_deadline_exceeded() {
    let echo = Echo::start("echo").await;
    let gateway = grpc_gateway(echo.addr, "    timeout: 200ms").await;
    let started = Instant::now();
    let status =
        grpc_client(&gateway).await.unary(EchoRequest { delay_ms: 2000, ..EchoRequest::default() }).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(elapsed < Duration::from_millis(1500), "the 200ms route timeout answered after {elapsed:?}");
}

#[tokio::test]
async fn grpc_upstream_unreachable_is_unavailable() {
    let gateway = grpc_gateway(unused_addr(), "").await;
    let status = grpc_client(&gateway).await.unary(EchoRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(!status.message().is_empty(), "{status:?}");
}

#[tokio::test]
async fn grpc_body_too_large_is_resource_exhausted() {
    let echo = Echo::start("echo").await;
    let gateway = grpc_gateway(echo.addr, "    max_body_bytes: 1KiB").await;
    let mut client = grpc_client(&gateway).await;

    let small = EchoRequest { payload: vec![7; 100], ..EchoRequest::default() };
    assert_eq!(client.unary(small).await.unwrap().into_inner().payload, vec![7; 100]);

    let large = EchoRequest { payload: vec![7; 2048], ..EchoRequest::default() };
    let status = client.unary(large).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // Four messages under the limit each, over it together.
    let stream = tokio_stream::iter((0..4).map(|_| EchoRequest { payload: vec![7; 400], ..EchoRequest::default() }));
    let status = client.client_stream(stream).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}
