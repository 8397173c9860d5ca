//! Front-door hygiene over raw sockets: requests hyper alone would accept or
//! never time out get their answer, and the gateway keeps serving after each.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use gatehouse_test_support::{Echo, Gateway, RawResponse, RecordingUpstream, empty, http1_client, raw_http, send, url};
use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Setup {
    gateway: Gateway,
    recorder: RecordingUpstream,
    _echo: Echo,
}

/// A gateway with `limits` (YAML lines under `limits:`), `/echo` on the echo
/// upstream and `/rec` on an upstream that records every complete request.
async fn setup(limits: &str) -> Setup {
    let echo = Echo::start("echo").await;
    let recorder = RecordingUpstream::start(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
    let config = format!(
        r#"
listeners:
  public: 127.0.0.1:0
  admin: 127.0.0.1:0
limits:
  {limits}
upstreams:
  echo:
    protocol: http1
    endpoints: ["{echo}"]
  recorder:
    protocol: http1
    endpoints: ["{recorder}"]
routes:
  - name: recorder
    match: {{ path_prefix: /rec }}
    upstream: recorder
  - name: echo-http
    match: {{ path_prefix: /echo }}
    upstream: echo
"#,
        echo = echo.addr,
        recorder = recorder.addr,
    );
    let gateway = Gateway::start(&config).await;
    Setup { gateway, recorder, _echo: echo }
}

/// Defaults for every limit.
async fn default_setup() -> Setup {
    setup("max_connections: 10000").await
}

/// Sends `request` on a fresh connection and returns the parsed answer.
async fn answer(gateway: &Gateway, request: &[u8]) -> RawResponse {
    let raw = raw_http(gateway.public, request).await;
    RawResponse::parse(&raw).unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"))
}

/// A well-formed request through the gateway still gets 200.
async fn assert_still_serving(gateway: &Gateway) {
    let request = Request::get(url(gateway.public, "/echo/status/200")).body(empty()).unwrap();
    let response = send(&http1_client(), request).await;
    assert_eq!(response.status, 200, "after a bad request: {}", response.text());
    let raw =
        answer(gateway, b"GET /echo/status/200 HTTP/1.1\r\nHost: gatehouse.test\r\nConnection: close\r\n\r\n").await;
    assert_eq!(raw.status, 200, "{raw:?}");
}

#[tokio::test]
async fn malformed_request_lines_get_400() {
    let s = default_setup().await;
    let lines: [&[u8]; 4] = [
        b"GET /echo/headers HTTP/1.1 extra\r\nHost: gatehouse.test\r\n\r\n",
        b"GET /echo/headers\r\nHost: gatehouse.test\r\n\r\n",
        b"G(T /echo/headers HTTP/1.1\r\nHost: gatehouse.test\r\n\r\n",
        b"this is not http\r\n\r\n",
    ];
    for request in lines {
        let response = answer(&s.gateway, request).await;
        assert_eq!(response.status, 400, "{:?}: {response:?}", String::from_utf8_lossy(request));
        assert_still_serving(&s.gateway).await;
    }
}

#[tokio::test]
async fn missing_host_gets_400() {
    let s = default_setup().await;
    let response = answer(&s.gateway, b"GET /echo/headers HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(response.status, 400, "{response:?}");
    assert_still_serving(&s.gateway).await;
}

#[tokio::test]
async fn doubled_host_gets_400() {
    let s = default_setup().await;
    for hosts in ["Host: a.test\r\nHost: b.test\r\n", "Host: a.test\r\nHost: a.test\r\n"] {
        let request = format!("GET /echo/headers HTTP/1.1\r\n{hosts}Connection: close\r\n\r\n");
        let response = answer(&s.gateway, request.as_bytes()).await;
        assert_eq!(response.status, 400, "{hosts:?}: {response:?}");
        assert_still_serving(&s.gateway).await;
    }
}

#[tokio::test]
async fn bad_chunk_size_gets_400_and_no_request_reaches_the_upstream() {
    let s = default_setup().await;
    let request = b"POST /rec/sink HTTP/1.1\r\nHost: gatehouse.test\r\nTransfer-Encoding: chunked\r\n\
        Connection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    let response = answer(&s.gateway, request).await;
    assert_eq!(response.status, 400, "a malformed chunk is the client's error: {response:?}");
    assert_eq!(s.recorder.requests(), Vec::<String>::new(), "the upstream got a complete request");
    assert_still_serving(&s.gateway).await;

    // The same request with a valid chunk does reach the upstream.
    let request = b"POST /rec/sink HTTP/1.1\r\nHost: gatehouse.test\r\nTransfer-Encoding: chunked\r\n\
        Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let response = answer(&s.gateway, request).await;
    assert_eq!(response.status, 200, "{response:?}");
    let received = s.recorder.requests();
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(received[0].starts_with("POST /rec/sink HTTP/1.1\r\n"), "{received:?}");
}

#[tokio::test]
async fn oversized_header_block_gets_431() {
    let s = default_setup().await;
    // 100 KiB in one header, over the 60 KiB default.
    let request = format!(
        "GET /echo/headers HTTP/1.1\r\nHost: gatehouse.test\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let response = answer(&s.gateway, request.as_bytes()).await;
    assert_eq!(response.status, 431, "{response:?}");
    assert_still_serving(&s.gateway).await;
}

#[tokio::test]
async fn too_many_headers_get_431() {
    let s = default_setup().await;
    // 150 small headers, over the default of 100, in well under 60 KiB.
    let headers: String = (0..150).map(|i| format!("X-H-{i}: v\r\n")).collect();
    let request = format!("GET /echo/headers HTTP/1.1\r\nHost: gatehouse.test\r\n{headers}Connection: close\r\n\r\n");
    let response = answer(&s.gateway, request.as_bytes()).await;
    assert_eq!(response.status, 431, "{response:?}");
    assert_still_serving(&s.gateway).await;
}

#[tokio::test]
async fn configured_header_limits_apply() {
    let s = setup("max_header_bytes: 16KiB\n  max_headers: 20").await;
    let sized = |n: usize| {
        format!(
            "GET /echo/headers HTTP/1.1\r\nHost: gatehouse.test\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(n)
        )
    };
    assert_eq!(answer(&s.gateway, sized(8 * 1024).as_bytes()).await.status, 200);
    assert_eq!(answer(&s.gateway, sized(20 * 1024).as_bytes()).await.status, 431);

    let counted = |n: usize| {
        let headers: String = (0..n).map(|i| format!("X-H-{i}: v\r\n")).collect();
        format!("GET /echo/headers HTTP/1.1\r\nHost: gatehouse.test\r\n{headers}Connection: close\r\n\r\n")
    };
    assert_eq!(answer(&s.gateway, counted(10).as_bytes()).await.status, 200);
    assert_eq!(answer(&s.gateway, counted(30).as_bytes()).await.status, 431);
    assert_still_serving(&s.gateway).await;
}

/// Reads until the server closes the connection; returns when that was and
/// what it sent first.
async fn closed_at(mut stream: TcpStream, opened: Instant, deadline: Instant) -> Option<(Duration, Vec<u8>)> {
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some((opened.elapsed(), received)),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn slowloris_connections_are_closed_while_others_are_served() {
    const SLOW: usize = 300;
    const TIMEOUT: Duration = Duration::from_secs(2);
    let s = setup("header_read_timeout: 2s").await;

    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut stream = TcpStream::connect(s.gateway.public).await.unwrap();
        let opened = Instant::now();
        stream.write_all(b"GET /echo/headers HTTP/1.1\r\nHost: gatehouse.test\r\nX-Slow: ").await.unwrap();
        slow.push((stream, opened));
    }
    let first_opened = slow[0].1;

    // While all 300 hang, well-behaved clients are served.
    let client = http1_client();
    for _ in 0..5 {
        let request = Request::get(url(s.gateway.public, "/echo/status/200")).body(empty()).unwrap();
        assert_eq!(send(&client, request).await.status, 200);
    }
    let served_after = first_opened.elapsed();
    assert!(
        served_after < TIMEOUT,
        "opening the slow connections and serving the normal requests took {served_after:?}, \
         longer than the header-read timeout, so they did not overlap"
    );

    let deadline = first_opened + TIMEOUT + Duration::from_secs(5);
    let waits: Vec<_> =
        slow.into_iter().map(|(stream, opened)| tokio::spawn(closed_at(stream, opened, deadline))).collect();
    let mut open = 0;
    let mut earliest = Duration::MAX;
    let mut latest = Duration::ZERO;
    let mut answered = Vec::new();
    for wait in waits {
        match wait.await.unwrap() {
            None => open += 1,
            Some((after, received)) => {
                earliest = earliest.min(after);
                latest = latest.max(after);
                if !received.is_empty() {
                    answered.push(String::from_utf8_lossy(&received).lines().next().unwrap_or("").to_owned());
                }
            }
        }
    }
    eprintln!(
        "slowloris: {} of {SLOW} closed, {earliest:?} to {latest:?} after opening; {} got an answer first {:?}",
        SLOW - open,
        answered.len(),
        answered.first()
    );
    assert_eq!(open, 0, "{open} of {SLOW} slow connections still open 5 s after the {TIMEOUT:?} header-read timeout");
    assert!(
        earliest >= TIMEOUT - Duration::from_millis(100),
        "a slow connection was closed {earliest:?} after opening, before the {TIMEOUT:?} timeout"
    );
    assert_still_serving(&s.gateway).await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let s = setup("idle_timeout: 1s").await;
    let mut stream = TcpStream::connect(s.gateway.public).await.unwrap();
    stream.write_all(b"GET /echo/status/200 HTTP/1.1\r\nHost: gatehouse.test\r\n\r\n").await.unwrap();
    let opened = Instant::now();
    let closed = closed_at(stream, opened, opened + Duration::from_secs(5)).await;
    let (after, received) = closed.expect("an idle keep-alive connection is closed within 5 s");
    let response = RawResponse::parse(&String::from_utf8_lossy(&received)).unwrap();
    assert_eq!(response.status, 200);
    assert!(after >= Duration::from_millis(900), "closed after {after:?}, before the idle timeout");
    assert_still_serving(&s.gateway).await;
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_read_timeout() {
    let s = setup("header_read_timeout: 1s").await;
    let stream = TcpStream::connect(s.gateway.public).await.unwrap();
    let opened = Instant::now();
    let (after, received) = closed_at(stream, opened, opened + Duration::from_secs(5))
        .await
        .expect("a silent connection is closed within 5 s");
    assert!(received.is_empty(), "a silent connection got {:?}", String::from_utf8_lossy(&received));
    assert!(after >= Duration::from_millis(900), "closed after {after:?}, before the header-read timeout");
    assert_still_serving(&s.gateway).await;
}

#[tokio::test]
async fn a_keep_alive_connection_waits_for_its_next_request_but_not_for_a_slow_head() {
    const TIMEOUT: Duration = Duration::from_secs(1);
    let s = setup("header_read_timeout: 1s\n  idle_timeout: 30s").await;
    let mut stream = TcpStream::connect(s.gateway.public).await.unwrap();
    let request = b"GET /echo/status/200 HTTP/1.1\r\nHost: gatehouse.test\r\n\r\n";
    stream.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    // Idle without a byte for three header-read timeouts: still open, and
    // the next request is answered.
    tokio::time::sleep(3 * TIMEOUT).await;
    stream.write_all(request).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "an idle keep-alive connection was closed before its idle timeout"
    );

    // Half a head: closed one header-read timeout after its first bytes.
    stream.write_all(b"GET /echo/status/200 HTTP/1.1\r\nHost: ").await.unwrap();
    let started = Instant::now();
    let (after, received) = closed_at(stream, started, started + Duration::from_secs(5))
        .await
        .expect("a connection with a half-sent head is closed within 5 s");
    assert!(received.is_empty(), "got {:?}", String::from_utf8_lossy(&received));
    assert!(after >= TIMEOUT - Duration::from_millis(100), "closed after {after:?}, before the header-read timeout");
    assert_still_serving(&s.gateway).await;
}

#[tokio::test]
async fn an_idle_http2_connection_is_not_timed_as_a_request_head() {
    let s = setup("header_read_timeout: 1s\n  idle_timeout: 30s").await;
    let mut stream = TcpStream::connect(s.gateway.public).await.unwrap();
    // The connection preface and an empty SETTINGS frame, then silence.
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let opened = Instant::now();
    let closed = closed_at(stream, opened, opened + Duration::from_secs(3)).await;
    assert!(closed.is_none(), "an idle HTTP/2 connection was closed after {:?}", closed.map(|c| c.0));
}

#[tokio::test]
async fn the_first_head_is_due_one_timeout_after_the_connection_opens() {
    const TIMEOUT: Duration = Duration::from_secs(1);
    let s = setup("header_read_timeout: 1s").await;
    let mut stream = TcpStream::connect(s.gateway.public).await.unwrap();
    let opened = Instant::now();
    // The first bytes late, the rest never: the clock started at the open.
    tokio::time::sleep(TIMEOUT * 6 / 10).await;
    stream.write_all(b"GET /echo/status/200 HTTP/1.1\r\nHost: ").await.unwrap();
    let (after, _) = closed_at(stream, opened, opened + Duration::from_secs(5))
        .await
        .expect("a connection whose first head never completes is closed within 5 s");
    assert!(
        (TIMEOUT - Duration::from_millis(100)..TIMEOUT + Duration::from_millis(450)).contains(&after),
        "closed {after:?} after opening, with a {TIMEOUT:?} header-read timeout"
    );
    assert_still_serving(&s.gateway).await;
}
