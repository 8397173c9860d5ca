//! The server on real sockets: HTTP/1.1 and cleartext HTTP/2 on one port,
//! graceful shutdown, and the binary's command line and start-up line.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use bytes::Bytes;
use futures_util::stream;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

/// Sends one HTTP/1.1 request with `connection: close` and returns the raw
/// response, so the test sees exactly what went over the wire.
fn http1(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<TestBody> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.expect("h2 handshake");
    tokio::spawn(connection);
    sender
}

#[tokio::test]
async fn http1_and_http2_share_the_port() {
    let (listener, addr) = bind().await;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(gatehouse_echo::serve(listener, "both".to_owned(), async {
        let _ = stopped.await;
    }));

    let raw = tokio::task::spawn_blocking(move || {
        http1(addr, "GET /x/trailers HTTP/1.1\r\nhost: a\r\nte: trailers\r\nconnection: close\r\n\r\n")
    })
    .await
    .expect("HTTP/1.1 request");
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert!(raw.contains("\r\nx-echo-name: both\r\n"), "{raw}");
    assert!(raw.ends_with("\r\n\r\n2\r\nok\r\n0\r\nx-echo-trailer: yes\r\n\r\n"), "{raw}");

    let mut h2 = h2_client(addr).await;
    let request = Request::get(format!("http://{addr}/h2/headers"))
        .header("x-foo", "bar")
        .body(TestBody::default())
        .expect("valid request");
    let response = h2.send_request(request).await.expect("h2 response");
    assert_eq!(response.version(), Version::HTTP_2);
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    let json: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(json["version"], "HTTP/2.0");
    assert_eq!(json["path"], "/h2/headers");
    assert_eq!(json["headers"], json!({ "x-foo": ["bar"] }));

    let mut trailers = HeaderMap::new();
    trailers.insert("x-t", HeaderValue::from_static("2"));
    let frames = stream::iter([
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"ping"))),
        Ok(Frame::trailers(trailers.clone())),
    ]);
    let request = Request::post(format!("http://{addr}/anything"))
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .expect("valid request");
    let response = h2.send_request(request).await.expect("h2 response");
    assert_eq!(response.headers()["x-echo-method"], "POST");
    let collected = response.into_body().collect().await.expect("body");
    assert_eq!(collected.trailers(), Some(&trailers));
    assert_eq!(collected.to_bytes(), "ping");

    stop.send(()).expect("server still running");
    server.await.expect("join").expect("clean shutdown");
}

#[test]
fn binary_prints_its_address_and_exits_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse-echo"))
        .args(["--listen", "127.0.0.1:0", "--name", "bin-1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("start-up line");
    let started: Value = serde_json::from_str(&line).expect("JSON line");
    let addr: SocketAddr = started["addr"].as_str().expect("addr").parse().expect("socket address");
    assert_ne!(addr.port(), 0);
    assert_eq!(started, json!({ "msg": "listening", "addr": addr.to_string(), "name": "bin-1" }));

    let raw = http1(addr, "GET /e/status/418 HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 418 I'm a teapot\r\n"), "{raw}");
    assert!(raw.contains("\r\nx-echo-name: bin-1\r\n"), "{raw}");
    assert!(raw.ends_with("\r\n\r\n{\"status\":418}"), "{raw}");

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("rest of stdout");
    assert_eq!(rest, "", "exactly one line on stdout");
}

#[test]
fn binary_rejects_a_name_that_is_no_header_value() {
    let output = Command::new(env!("CARGO_BIN_EXE_gatehouse-echo"))
        .args(["--listen", "127.0.0.1:0", "--name", "two words"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert_eq!(output.stdout, b"");
}
