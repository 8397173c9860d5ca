//! HTTP/1.1 and HTTP/2 (prior knowledge) clients with bodies tests can shape.

use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Errors a request body may yield.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body type every client here sends.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A pooled cleartext client.
pub type Client = hyper_util::client::legacy::Client<HttpConnector, Body>;

/// A client that speaks HTTP/1.1.
pub fn http1_client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// A client that speaks HTTP/2 with prior knowledge (h2c).
pub fn http2_client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).http2_only(true).build_http()
}

/// `http://ADDR/PATH`, `path` starting with `/`.
pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body of known length, sent in one frame (with `content-length`).
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A body of unknown length (chunked on HTTP/1.1) made of `chunks`, followed
/// by `trailers` if given.
pub fn body_with_trailers(chunks: Vec<Bytes>, trailers: Option<HeaderMap>) -> Body {
    let frames = chunks.into_iter().map(Frame::data).chain(trailers.map(Frame::trailers)).map(Ok::<_, BoxError>);
    StreamBody::new(stream::iter(frames)).boxed_unsync()
}

/// A body of `total` bytes of unknown length (chunked on HTTP/1.1), produced
/// lazily in `chunk`-sized pieces so the sender never holds it whole.
pub fn generated(total: u64, chunk: usize) -> Body {
    let piece = Bytes::from(vec![b'x'; chunk]);
    let frames = stream::unfold(total, move |left| {
        let piece = piece.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = usize::try_from(left).map_or(piece.len(), |left| left.min(piece.len()));
            Some((Ok::<_, BoxError>(Frame::data(piece.slice(..n))), left - n as u64))
        }
    });
    StreamBody::new(frames).boxed_unsync()
}

/// A response read to its end.
#[derive(Debug)]
pub struct Collected {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// The trailers, if the response had any.
    pub trailers: Option<HeaderMap>,
}

impl Collected {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }

    /// A header as text; `None` if absent or not visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `request` and reads the whole response; panics if the exchange fails.
pub async fn send(client: &Client, request: Request<Body>) -> Collected {
    let what = format!("{} {}", request.method(), request.uri());
    let response = client.request(request).await.unwrap_or_else(|e| panic!("{what}: request failed: {e:?}"));
    collect(response, &what).await
}

async fn collect(response: Response<Incoming>, what: &str) -> Collected {
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap_or_else(|e| panic!("{what}: reading the response body failed: {e:?}"));
    let trailers = collected.trailers().cloned();
    Collected { status: parts.status, headers: parts.headers, body: collected.to_bytes(), trailers }
}
