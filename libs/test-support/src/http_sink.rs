//! A real HTTP/1.1 server that records every request it receives, whole,
//! and answers each with a fixed status: a stand-in for an OTLP/HTTP
//! collector or any other endpoint the gateway pushes to.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One request as the sink received it.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// The method.
    pub method: Method,
    /// The request target.
    pub uri: Uri,
    /// The request headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl ReceivedRequest {
    /// A header as text; `None` if absent or not visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A running sink; stops serving when dropped.
#[derive(Debug)]
pub struct HttpSink {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<ReceivedRequest>>>,
    count: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl HttpSink {
    /// Listens on `127.0.0.1:0` and answers every request with 200 and an
    /// empty `application/x-protobuf` body (an empty protobuf message is a
    /// valid, fully successful OTLP export response).
    pub async fn start() -> Self {
        Self::start_with_status(StatusCode::OK).await
    }

    /// Like [`HttpSink::start`], answering with `status`.
    pub async fn start_with_status(status: StatusCode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let (tx, count) = watch::channel(0);
        let tx = Arc::new(tx);
        let store = Arc::clone(&received);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (store, tx) = (Arc::clone(&store), Arc::clone(&tx));
                let service = service_fn(move |request: Request<Incoming>| {
                    let (store, tx) = (Arc::clone(&store), Arc::clone(&tx));
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        let len = {
                            let mut all = lock(&store);
                            all.push(ReceivedRequest {
                                method: parts.method,
                                uri: parts.uri,
                                headers: parts.headers,
                                body,
                            });
                            all.len()
                        };
                        tx.send_replace(len);
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = status;
                        response
                            .headers_mut()
                            .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/x-protobuf"));
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, received, count, task }
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        lock(&self.received).clone()
    }

    /// Waits up to `timeout` for a received request for which `f` returns
    /// `Some`, and returns that value. Requests are looked at in arrival
    /// order, each once.
    pub async fn wait_for<T>(&self, timeout: Duration, mut f: impl FnMut(&ReceivedRequest) -> Option<T>) -> Option<T> {
        let mut count = self.count.clone();
        let mut checked = 0;
        let search = async {
            loop {
                {
                    let all = lock(&self.received);
                    if let Some(found) = all[checked..].iter().find_map(&mut f) {
                        return Some(found);
                    }
                    checked = all.len();
                }
                if count.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, search).await.ok().flatten()
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(received: &Mutex<Vec<ReceivedRequest>>) -> MutexGuard<'_, Vec<ReceivedRequest>> {
    received.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
