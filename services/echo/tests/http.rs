//! The HTTP routes, driven through `router()` with `oneshot`: no sockets.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use bytes::Bytes;
use futures_util::stream;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::{Value, json};
use tower::ServiceExt;

async fn send(request: Request<Body>) -> Response<Body> {
    let router = gatehouse_echo::router("http-test".to_owned());
    match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

async fn get(uri: &str) -> Response<Body> {
    send(Request::get(uri).body(Body::empty()).expect("valid request")).await
}

async fn json_body(response: Response<Body>) -> Value {
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).expect("JSON body")
}

/// Every data frame's length, in order, and the trailers if any.
async fn frames(response: Response<Body>) -> (Vec<Bytes>, Option<HeaderMap>) {
    let mut body = response.into_body();
    let (mut data, mut trailers) = (Vec::new(), None);
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("frame");
        match frame.into_data() {
            Ok(bytes) => data.push(bytes),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    (data, trailers)
}

fn header<'r>(response: &'r Response<Body>, name: &str) -> Option<&'r str> {
    response.headers().get(name).map(|v| v.to_str().expect("ASCII header"))
}

#[tokio::test]
async fn status_answers_the_requested_code() {
    let response = get("/echo/status/503").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "x-echo-name"), Some("http-test"));
    assert_eq!(json_body(response).await, json!({ "status": 503 }));
}

#[tokio::test]
async fn bad_numbers_are_a_json_400() {
    let response = get("/status/600").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(&response, "x-echo-name"), Some("http-test"));
    assert_eq!(json_body(response).await, json!({ "error": "status must be an integer from 100 to 599, got \"600\"" }));

    let response = get("/x?delay_ms=soon").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_body(response).await, json!({ "error": "delay_ms must be a non-negative integer, got \"soon\"" }));
}

#[tokio::test]
async fn delay_waits_then_answers() {
    let started = Instant::now();
    let response = get("/a/delay/30").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_body(response).await, json!({ "delayed_ms": 30 }));
    assert!(started.elapsed() >= Duration::from_millis(30));

    let started = Instant::now();
    let response = get("/status/204?delay_ms=30").await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(started.elapsed() >= Duration::from_millis(30));
}

#[tokio::test]
async fn bytes_come_in_64k_frames_with_a_length() {
    let response = get("/x/bytes/200000").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-length"), Some("200000"));
    assert_eq!(header(&response, "content-type"), Some("application/octet-stream"));
    let (data, trailers) = frames(response).await;
    let sizes: Vec<usize> = data.iter().map(Bytes::len).collect();
    assert_eq!(sizes, [65536, 65536, 65536, 3392]);
    assert_eq!(trailers, None);
}

#[tokio::test]
async fn bytes_can_be_chunked_or_empty() {
    let response = get("/bytes/10?chunked=1").await;
    assert_eq!(header(&response, "content-length"), None);
    assert_eq!(frames(response).await.0, [Bytes::from_static(&[0; 10])]);

    let response = get("/bytes/0").await;
    assert_eq!(header(&response, "content-length"), Some("0"));
    assert_eq!(frames(response).await.0, Vec::<Bytes>::new());
}

#[tokio::test]
async fn stream_sends_one_frame_per_line() {
    let response = get("/echo/stream/3?interval_ms=1").await;
    assert_eq!(response.status(), StatusCode::OK);
    let (data, _) = frames(response).await;
    assert_eq!(data, ["{\"index\":0}\n", "{\"index\":1}\n", "{\"index\":2}\n"]);
}

#[tokio::test]
async fn headers_describes_the_request() {
    let request = Request::get("/x/headers?a=1")
        .header("x-foo", "a")
        .header("x-foo", "b")
        .header("x-bin", HeaderValue::from_bytes(b"caf\xe9").expect("header value"))
        .body(Body::empty())
        .expect("valid request");
    let response = send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        json_body(response).await,
        json!({
            "method": "GET",
            "path": "/x/headers",
            "query": "a=1",
            "version": "HTTP/1.1",
            "headers": { "x-bin": ["caf\u{fffd}"], "x-foo": ["a", "b"] },
        })
    );

    let json = json_body(get("/headers").await).await;
    assert_eq!(json["query"], Value::Null);
    assert_eq!(json["headers"], json!({}));
}

#[tokio::test]
async fn echo_streams_the_body_and_its_trailers_back() {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-t", HeaderValue::from_static("1"));
    let body = stream::iter([
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"hello "))),
        Ok(Frame::data(Bytes::from_static(b"world"))),
        Ok(Frame::trailers(trailers.clone())),
    ]);
    let request = Request::put("/any/path?q=1")
        .header(header::CONTENT_TYPE, "text/plain")
        .header(header::TRAILER, "x-t")
        .body(Body::new(StreamBody::new(body)))
        .expect("valid request");
    let response = send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-echo-method"), Some("PUT"));
    assert_eq!(header(&response, "x-echo-path"), Some("/any/path?q=1"));
    assert_eq!(header(&response, "content-type"), Some("text/plain"));
    assert_eq!(header(&response, "trailer"), Some("x-t"));
    assert_eq!(header(&response, "x-echo-name"), Some("http-test"));
    let (data, echoed) = frames(response).await;
    assert_eq!(data, ["hello ", "world"]);
    assert_eq!(echoed, Some(trailers));
}

#[tokio::test]
async fn trailers_route_ends_with_a_trailer() {
    let response = get("/echo/trailers").await;
    assert_eq!(response.status(), StatusCode::OK);
    let (data, trailers) = frames(response).await;
    assert_eq!(data, ["ok"]);
    let trailers = trailers.expect("trailers");
    assert_eq!(trailers.get("x-echo-trailer"), Some(&HeaderValue::from_static("yes")));
    assert_eq!(trailers.len(), 1);
}

#[tokio::test]
async fn sink_counts_the_body() {
    let chunks = stream::iter((0..5).map(|_| Ok::<_, Infallible>(Bytes::from(vec![7u8; 100_000]))));
    let request = Request::post("/upload/sink").body(Body::from_stream(chunks)).expect("valid request");
    let response = send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_body(response).await, json!({ "bytes": 500_000 }));
}

#[tokio::test]
async fn grpc_content_type_goes_to_grpc() {
    // An unknown method under a gRPC content type is tonic's to answer, even
    // though an HTTP request to the same path would be echoed.
    let request = Request::post("/other.v1.Svc/Call")
        .header(header::CONTENT_TYPE, "application/grpc")
        .body(Body::empty())
        .expect("valid request");
    let response = send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "grpc-status"), Some("12"));
    assert_eq!(header(&response, "x-echo-name"), Some("http-test"));
}
