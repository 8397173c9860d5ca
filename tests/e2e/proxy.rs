//! HTTP/1.1 and HTTP/2 requests through the gateway to the echo upstream:
//! paths, bodies, request ids, trace context, hop-by-hop headers, trailers,
//! round robin and streamed responses.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse_test_support::{
    Body, Client, Collected, Echo, Gateway, RecordingUpstream, body_with_trailers, empty, full, http1_client,
    http2_client, scrape, send, url,
};
use http::{HeaderMap, HeaderValue, Request, Version};
use http_body_util::BodyExt;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A response whose hop-by-hop headers the gateway must not pass on.
const HOP_BY_HOP_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
    Content-Length: 2\r\n\
    Connection: x-bar\r\n\
    X-Bar: 1\r\n\
    Keep-Alive: timeout=5\r\n\
    Proxy-Connection: keep-alive\r\n\
    Upgrade: foo\r\n\
    X-Kept: yes\r\n\
    \r\n\
    ok";

/// One echo behind three upstreams (HTTP/1.1, HTTP/2 and a two-endpoint
/// pair with a second echo), plus a raw upstream for response headers.
struct Setup {
    gateway: Gateway,
    _echo: Echo,
    _other: Echo,
    _raw: RecordingUpstream,
}

async fn setup() -> Setup {
    let echo = Echo::start("echo").await;
    let other = Echo::start("other").await;
    let raw = RecordingUpstream::start(HOP_BY_HOP_RESPONSE).await;
    let config = format!(
        r#"
listeners:
  public: 127.0.0.1:0
  admin: 127.0.0.1:0
upstreams:
  echo:
    protocol: http1
    endpoints: ["{echo}"]
  echo-h2:
    protocol: http2
    endpoints: ["{echo}"]
  pair:
    protocol: http1
    endpoints: ["{echo}", "{other}"]
    balance: round_robin
  raw:
    protocol: http1
    endpoints: ["{raw}"]
routes:
  - name: echo-h2
    match: {{ path_prefix: /h2 }}
    upstream: echo-h2
  - name: pair
    match: {{ path_prefix: /pair }}
    upstream: pair
  - name: raw
    match: {{ path_prefix: /raw }}
    upstream: raw
  - name: echo-http
    match: {{ path_prefix: /echo }}
    upstream: echo
"#,
        echo = echo.addr,
        other = other.addr,
        raw = raw.addr,
    );
    Setup { gateway: Gateway::start(&config).await, _echo: echo, _other: other, _raw: raw }
}

fn get(gateway: &Gateway, path: &str) -> http::request::Builder {
    Request::get(url(gateway.public, path))
}

/// What echo's `/headers` route saw, as JSON.
async fn seen_by_echo(client: &Client, request: Request<Body>) -> (Collected, serde_json::Value) {
    let response = send(client, request).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let json = response.json();
    (response, json)
}

#[tokio::test]
async fn http1_get_forwards_the_path_unchanged() {
    let s = setup().await;
    let request = get(&s.gateway, "/echo/headers?a=1").body(empty()).unwrap();
    let (response, seen) = seen_by_echo(&http1_client(), request).await;
    assert_eq!(response.header("x-echo-name"), Some("echo"));
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["path"], "/echo/headers");
    assert_eq!(seen["query"], "a=1");
    assert_eq!(seen["version"], "HTTP/1.1");
}

#[tokio::test]
async fn http2_get_forwards_the_path_unchanged() {
    let s = setup().await;
    let client = http2_client();

    let request = get(&s.gateway, "/echo/headers").body(empty()).unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    let seen: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(seen["path"], "/echo/headers");
    assert_eq!(seen["version"], "HTTP/1.1", "the echo upstream is configured as http1");

    let request = get(&s.gateway, "/h2/headers").body(empty()).unwrap();
    let (_, seen) = seen_by_echo(&client, request).await;
    assert_eq!(seen["path"], "/h2/headers");
    assert_eq!(seen["version"], "HTTP/2.0", "the echo-h2 upstream is configured as http2");
}

#[tokio::test]
async fn post_bodies_are_echoed_over_http1_and_http2() {
    let s = setup().await;
    for (client, version) in [(http1_client(), "HTTP/1.1"), (http2_client(), "HTTP/2")] {
        let request = Request::post(url(s.gateway.public, "/echo/anything?x=y"))
            .header("content-type", "text/plain")
            .body(full("hello gatehouse"))
            .unwrap();
        let response = send(&client, request).await;
        assert_eq!(response.status, 200, "{version}");
        assert_eq!(response.text(), "hello gatehouse", "{version}");
        assert_eq!(response.header("x-echo-method"), Some("POST"), "{version}");
        assert_eq!(response.header("x-echo-path"), Some("/echo/anything?x=y"), "{version}");
        assert_eq!(response.header("content-type"), Some("text/plain"), "{version}");

        // A body of unknown length: chunked on HTTP/1.1, plain DATA frames on HTTP/2.
        let chunks = vec![Bytes::from_static(b"one,"), Bytes::from_static(b"two,"), Bytes::from_static(b"three")];
        let request =
            Request::post(url(s.gateway.public, "/echo/anything")).body(body_with_trailers(chunks, None)).unwrap();
        let response = send(&client, request).await;
        assert_eq!(response.status, 200, "{version}");
        assert_eq!(response.text(), "one,two,three", "{version}");
    }
}

#[tokio::test]
async fn a_sent_request_id_is_kept() {
    let s = setup().await;
    for client in [http1_client(), http2_client()] {
        let request = get(&s.gateway, "/echo/headers").header("x-request-id", "req-12345").body(empty()).unwrap();
        let (response, seen) = seen_by_echo(&client, request).await;
        assert_eq!(response.header("x-request-id"), Some("req-12345"));
        assert_eq!(seen["headers"]["x-request-id"], serde_json::json!(["req-12345"]));
    }
}

#[tokio::test]
async fn a_missing_request_id_is_generated_and_returned() {
    let s = setup().await;
    let client = http1_client();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let request = get(&s.gateway, "/echo/headers").body(empty()).unwrap();
        let (response, seen) = seen_by_echo(&client, request).await;
        let id = response.header("x-request-id").expect("the response carries the generated x-request-id").to_owned();
        assert!(!id.is_empty());
        assert_eq!(seen["headers"]["x-request-id"], serde_json::json!([id]), "upstream gets the same id");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "each request gets its own id");
}

#[tokio::test]
async fn traceparent_passes_through() {
    let s = setup().await;
    for client in [http1_client(), http2_client()] {
        let request = get(&s.gateway, "/echo/headers").header("traceparent", TRACEPARENT).body(empty()).unwrap();
        let (_, seen) = seen_by_echo(&client, request).await;
        assert_eq!(seen["headers"]["traceparent"], serde_json::json!([TRACEPARENT]));
    }
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_stripped() {
    let s = setup().await;
    let request = get(&s.gateway, "/echo/headers")
        .header("connection", "keep-alive, x-foo")
        .header("x-foo", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "gzip")
        .header("x-kept", "yes")
        .body(empty())
        .unwrap();
    let (_, seen) = seen_by_echo(&http1_client(), request).await;
    let headers = &seen["headers"];
    assert_eq!(headers["x-kept"], serde_json::json!(["yes"]), "{headers}");
    for stripped in ["x-foo", "keep-alive", "proxy-connection", "te", "transfer-encoding"] {
        assert!(headers.get(stripped).is_none(), "upstream saw {stripped}: {headers}");
    }
    // The gateway may manage its own upstream connection, but never with the
    // client's connection options.
    if let Some(connection) = headers.get("connection") {
        assert!(!connection.to_string().contains("x-foo"), "upstream saw connection: {connection}");
    }
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_stripped() {
    let s = setup().await;
    let request = get(&s.gateway, "/raw/anything").body(empty()).unwrap();
    let response = send(&http1_client(), request).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "ok");
    assert_eq!(response.header("x-kept"), Some("yes"));
    for stripped in ["x-bar", "keep-alive", "proxy-connection", "upgrade"] {
        assert_eq!(response.headers.get(stripped), None, "client saw {stripped}");
    }
    if let Some(connection) = response.header("connection") {
        assert!(!connection.contains("x-bar"), "client saw connection: {connection}");
    }
}

#[tokio::test]
async fn http2_response_trailers_are_preserved() {
    let s = setup().await;
    let request = get(&s.gateway, "/h2/trailers").body(empty()).unwrap();
    let response = send(&http2_client(), request).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "ok");
    let trailers = response.trailers.expect("the response ends with trailers");
    assert_eq!(trailers.get("x-echo-trailer"), Some(&HeaderValue::from_static("yes")));
}

#[tokio::test]
async fn http2_request_trailers_are_preserved() {
    let s = setup().await;
    let mut trailers = HeaderMap::new();
    trailers.insert("x-client-trailer", HeaderValue::from_static("sent"));
    let chunks = vec![Bytes::from_static(b"hello "), Bytes::from_static(b"world")];
    let request =
        Request::post(url(s.gateway.public, "/h2/anything")).body(body_with_trailers(chunks, Some(trailers))).unwrap();
    let response = send(&http2_client(), request).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello world");
    let trailers = response.trailers.expect("echo answers with the request's trailers");
    assert_eq!(trailers.get("x-client-trailer"), Some(&HeaderValue::from_static("sent")));
}

#[tokio::test]
async fn round_robin_alternates_between_endpoints() {
    let s = setup().await;
    let client = http1_client();
    let mut names = Vec::new();
    for _ in 0..6 {
        let request = get(&s.gateway, "/pair/headers").body(empty()).unwrap();
        let response = send(&client, request).await;
        assert_eq!(response.status, 200);
        names.push(response.header("x-echo-name").unwrap().to_owned());
    }
    let first = names[0].clone();
    let second = if first == "echo" { "other" } else { "echo" };
    let expected: Vec<&str> = (0..6).map(|i| if i % 2 == 0 { first.as_str() } else { second }).collect();
    assert_eq!(names, expected);
}

#[tokio::test]
async fn streamed_responses_arrive_as_they_are_produced() {
    let s = setup().await;
    for client in [http1_client(), http2_client()] {
        // 5 lines, 300 ms apart: a gateway that buffered would deliver the
        // first line only with the last, 1.2 s in.
        let request = get(&s.gateway, "/echo/stream/5?interval_ms=300").body(empty()).unwrap();
        let started = Instant::now();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        if response.version() == Version::HTTP_11 {
            assert_eq!(response.headers().get("transfer-encoding"), Some(&HeaderValue::from_static("chunked")));
            assert_eq!(response.headers().get("content-length"), None);
        }
        let mut body = response.into_body();
        let mut text = String::new();
        let mut first_data = None;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                first_data.get_or_insert_with(|| started.elapsed());
                text.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
        let done = started.elapsed();
        assert_eq!(text, "{\"index\":0}\n{\"index\":1}\n{\"index\":2}\n{\"index\":3}\n{\"index\":4}\n");
        let first_data = first_data.unwrap();
        assert!(
            first_data + Duration::from_millis(600) < done,
            "first line after {first_data:?}, last after {done:?}: the body was buffered"
        );
    }
}

#[tokio::test]
async fn the_admin_listener_is_separate() {
    let s = setup().await;
    assert_ne!(s.gateway.admin, s.gateway.public);
    scrape(s.gateway.admin, "/healthz").await;
    // Operator endpoints are not served to the public.
    let response = send(&http1_client(), get(&s.gateway, "/healthz").body(empty()).unwrap()).await;
    assert_eq!(response.status, 404, "{}", response.text());
    assert_eq!(response.json()["error"]["code"], "no_route");
}
