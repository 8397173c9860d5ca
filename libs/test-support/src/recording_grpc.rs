//! A gRPC upstream (cleartext HTTP/2) that records the metadata of every
//! call and answers each with one empty message and status OK, for checking
//! what the gateway passes upstream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A recorded call: its path and request headers (gRPC metadata).
#[derive(Clone, Debug)]
pub struct RecordedCall {
    /// `/package.Service/Method`.
    pub path: String,
    /// The request headers as the upstream received them.
    pub headers: HeaderMap,
}

/// A gRPC server that records calls; every call gets an empty message (all
/// fields at their defaults) and `grpc-status: 0`.
#[derive(Debug)]
pub struct RecordingGrpcUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<RecordedCall>>>,
    task: JoinHandle<()>,
}

impl RecordingGrpcUpstream {
    /// Listens on `127.0.0.1:0` for HTTP/2 with prior knowledge.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&calls);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = Arc::clone(&record);
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let record = Arc::clone(&record);
                        async move {
                            let (parts, body) = request.into_parts();
                            // Read the request to its end, as a real server would.
                            let _ = body.collect().await;
                            record
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(RecordedCall { path: parts.uri.path().to_owned(), headers: parts.headers });
                            Ok::<_, Infallible>(ok_response())
                        }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, calls, task }
    }

    /// Every call received so far.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Drop for RecordingGrpcUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type ReplyBody = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn ok_response() -> Response<ReplyBody> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    // One uncompressed, empty message: flag 0, length 0.
    let frames = vec![Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))), Ok(Frame::trailers(trailers))];
    let mut response = Response::new(StreamBody::new(stream::iter(frames)));
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
    response
}
