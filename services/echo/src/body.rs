//! Response bodies produced on the fly and the request-body sink. Nothing
//! here holds a whole body in memory: the gateway's streaming is what tests
//! measure, so the upstream must never be the one that buffers.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::json;

/// Size of each `/bytes` frame.
const CHUNK: usize = 64 * 1024;

/// Backs every `/bytes` frame, so a multi-gigabyte body costs one static
/// buffer rather than an allocation per frame.
static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// `n` lines of `{"index":i}\n`, each its own frame, `interval` apart.
pub(crate) fn lines(n: u64, interval: Duration) -> Response {
    let frames = stream::unfold(0, move |index| async move {
        if index >= n {
            return None;
        }
        if index > 0 && !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
        let line = Bytes::from(format!("{{\"index\":{index}}}\n"));
        Some((Ok::<_, Infallible>(Frame::data(line)), index + 1))
    });
    let mut response = Response::new(Body::new(StreamBody::new(frames)));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    response
}

/// `n` zero bytes in frames of at most 64 KiB, generated as the client reads.
pub(crate) fn bytes(n: u64, chunked: bool) -> Response {
    let mut left = n;
    let frames = stream::iter(std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let len = usize::try_from(left).map_or(CHUNK, |left| left.min(CHUNK));
        // `len` is at most CHUNK, so widening it back cannot truncate.
        left -= len as u64;
        Some(Ok::<_, Infallible>(Frame::data(Bytes::from_static(&ZEROS[..len]))))
    }));
    let mut response = Response::new(Body::new(StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    // A stream has no size hint, so without this header hyper would fall
    // back to chunked encoding; `chunked=1` asks for exactly that.
    if !chunked {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    response
}

/// `ok`, then the trailer `x-echo-trailer: yes`.
///
/// Over HTTP/1.1 hyper sends only the trailers the response's `trailer`
/// header declares, and only to clients that sent `te: trailers`; HTTP/2
/// always carries them.
pub(crate) fn trailers() -> Response {
    const NAME: HeaderName = HeaderName::from_static("x-echo-trailer");
    let mut trailers = HeaderMap::new();
    trailers.insert(NAME, HeaderValue::from_static("yes"));
    let frames =
        stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"ok"))), Ok(Frame::trailers(trailers))]);
    let mut response = Response::new(Body::new(StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(header::TRAILER, HeaderValue::from_static("x-echo-trailer"));
    response
}

/// Reads the request body frame by frame, counting data bytes, and answers
/// `{"bytes": N}`.
pub(crate) async fn sink(mut body: Body) -> Result<Response, axum::Error> {
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            total += data.len() as u64;
        }
    }
    Ok(Json(json!({ "bytes": total })).into_response())
}
