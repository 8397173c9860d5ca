//! Connections to one endpoint: a stack of idle HTTP/1 connections, or one
//! shared HTTP/2 connection, built on hyper's connection-level client.
//!
//! The pool belongs to its [`Endpoint`](super::Endpoint), which the balancer
//! has already picked, so checking a connection out is a short critical
//! section over a `Vec` rather than a keyed pool lookup. An HTTP/1
//! connection goes back on the stack when its response body has been read
//! to the end (see [`PooledBody`]); one dropped half-read is closed, as its
//! remaining bytes would corrupt the next response.
//!
//! A request that an idle connection could not take (the upstream closed it
//! in the meantime) is sent again on another one: hyper hands such a request
//! back untouched, so nothing was written and the retry is safe for any
//! method.

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::Either;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::body::RequestBody;
use crate::config::Protocol;

/// How long upstream TCP connections may sit silent before the kernel
/// probes them.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Why an upstream request failed before a response head arrived.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The TCP connection could not be made.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The endpoint.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The TCP connection was not made within `connect_timeout`.
    #[error("connect to {0}: timed out")]
    ConnectTimeout(SocketAddr),
    /// The HTTP exchange failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// Settings shared by every endpoint of a cluster.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// The wire protocol.
    pub protocol: Protocol,
    /// Time allowed for the TCP connect.
    pub connect_timeout: Duration,
    /// Idle HTTP/1 connections older than this are closed.
    pub idle_timeout: Duration,
    /// At most this many idle HTTP/1 connections are kept.
    pub max_idle: usize,
}

struct Idle {
    tx: http1::SendRequest<RequestBody>,
    since: Instant,
}

/// The connections to one endpoint.
pub struct Pool {
    addr: SocketAddr,
    cfg: PoolConfig,
    idle: Mutex<Vec<Idle>>,
    h2: Mutex<Option<http2::SendRequest<RequestBody>>>,
    /// Held while an HTTP/2 connection is being made, so a burst of
    /// requests opens one connection, not one each.
    h2_connecting: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("addr", &self.addr).field("idle", &self.idle_count()).finish()
    }
}

impl Pool {
    /// An empty pool for `addr`.
    pub fn new(addr: SocketAddr, cfg: PoolConfig) -> Self {
        Self {
            addr,
            cfg,
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(None),
            h2_connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// Sends `req` on a pooled or new connection. Not an `async fn`: that
    /// would move the request into one more future before the one that
    /// sends it.
    pub fn send(
        self: Arc<Self>,
        req: Request<RequestBody>,
    ) -> impl Future<Output = Result<Response<PooledBody>, SendError>> + Send {
        match self.cfg.protocol {
            Protocol::Http1 => Either::Left(self.send_h1(req)),
            Protocol::Http2 | Protocol::Grpc => Either::Right(self.send_h2(req)),
        }
    }

    async fn send_h1(self: Arc<Self>, mut req: Request<RequestBody>) -> Result<Response<PooledBody>, SendError> {
        loop {
            let (mut tx, reused) = match self.checkout() {
                Some(tx) => (tx, true),
                // Boxed: the connect path is rare and large, and would
                // otherwise grow every request's future (moved on each poll
                // frame and spawn) by its size.
                None => (Box::pin(self.connect_h1()).await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(res) => {
                    let (parts, inner) = res.into_parts();
                    let mut body = PooledBody { inner, conn: Some((tx, Arc::clone(&self))) };
                    if body.inner.is_end_stream() {
                        body.release();
                    }
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut e) => match e.take_message() {
                    // Never written: an idle connection that had closed. Try another.
                    Some(back) if reused => req = back,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// The most recently used idle connection that can take a request now.
    /// Closed and expired ones are dropped on the way; one still finishing
    /// its last exchange (a request body still being written) stays.
    fn checkout(&self) -> Option<http1::SendRequest<RequestBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let timeout = self.cfg.idle_timeout;
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let conn = &idle[i];
            if conn.tx.is_closed() || conn.since.elapsed() >= timeout {
                idle.remove(i);
            } else if conn.tx.is_ready() {
                return Some(idle.remove(i).tx);
            }
        }
        None
    }

    fn checkin(&self, tx: http1::SendRequest<RequestBody>) {
        if tx.is_closed() || self.cfg.max_idle == 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() >= self.cfg.max_idle {
            idle.remove(0);
        }
        idle.push(Idle { tx, since: Instant::now() });
    }

    /// Closes idle connections past the idle timeout. Called periodically
    /// so a pool that stops being used does not hold connections forever.
    pub fn sweep(&self) {
        let timeout = self.cfg.idle_timeout;
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|i| !i.tx.is_closed() && i.since.elapsed() < timeout);
    }

    /// Idle HTTP/1 connections held.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    async fn connect_h1(&self) -> Result<http1::SendRequest<RequestBody>, SendError> {
        let io = self.connect_tcp().await?;
        let (tx, conn) = http1::Builder::new().handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection closed with an error");
            }
        });
        Ok(tx)
    }

    async fn send_h2(self: Arc<Self>, mut req: Request<RequestBody>) -> Result<Response<PooledBody>, SendError> {
        let mut fresh = false;
        loop {
            let mut tx = match self.shared_h2() {
                Some(tx) => tx,
                None => {
                    fresh = true;
                    Box::pin(self.connect_h2()).await?
                }
            };
            match tx.try_send_request(req).await {
                Ok(res) => {
                    return Ok(res.map(|inner| PooledBody { inner, conn: None }));
                }
                Err(mut e) => match e.take_message() {
                    // The shared connection was going away (GOAWAY, reset)
                    // before the stream opened: once more on a new one.
                    Some(back) if !fresh => {
                        self.forget_h2(&tx);
                        req = back;
                    }
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    fn shared_h2(&self) -> Option<http2::SendRequest<RequestBody>> {
        let shared = self.h2.lock().unwrap_or_else(PoisonError::into_inner);
        shared.as_ref().filter(|tx| !tx.is_closed()).cloned()
    }

    fn forget_h2(&self, tx: &http2::SendRequest<RequestBody>) {
        let mut shared = self.h2.lock().unwrap_or_else(PoisonError::into_inner);
        if shared.as_ref().is_some_and(|cur| cur.is_closed() || tx.is_closed()) {
            *shared = None;
        }
    }

    async fn connect_h2(&self) -> Result<http2::SendRequest<RequestBody>, SendError> {
        let _one_at_a_time = self.h2_connecting.lock().await;
        if let Some(tx) = self.shared_h2() {
            return Ok(tx);
        }
        let io = self.connect_tcp().await?;
        let (tx, conn) = http2::Builder::new(TokioExecutor::new()).timer(TokioTimer::new()).handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection closed with an error");
            }
        });
        *self.h2.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx.clone());
        Ok(tx)
    }

    async fn connect_tcp(&self) -> Result<TokioIo<TcpStream>, SendError> {
        let addr = self.addr;
        let stream = match tokio::time::timeout(self.cfg.connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(SendError::ConnectTimeout(addr)),
            Ok(Err(source)) => return Err(SendError::Connect { addr, source }),
            Ok(Ok(s)) => s,
        };
        // Small requests go out at once; silent connections are probed.
        let _ = stream.set_nodelay(true);
        let _ =
            socket2::SockRef::from(&stream).set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE));
        Ok(TokioIo::new(stream))
    }
}

/// An upstream response body that returns its HTTP/1 connection to the pool
/// when read to the end.
pub struct PooledBody {
    inner: Incoming,
    conn: Option<(http1::SendRequest<RequestBody>, Arc<Pool>)>,
}

impl fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBody").field("pooled", &self.conn.is_some()).finish()
    }
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((tx, pool)) = self.conn.take() {
            pool.checkin(tx);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() || this.inner.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Empty, Full};
    use hyper::service::service_fn;
    use tokio::net::TcpListener;

    use super::*;

    /// An upstream that counts the connections it accepts. `keep_alive:
    /// false` closes each connection after one response.
    async fn upstream(h2: bool, keep_alive: bool) -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        upstream_on("127.0.0.1:0".parse().expect("addr"), h2, keep_alive).await
    }

    /// Aborting the returned task closes every connection it accepted.
    async fn upstream_on(
        addr: SocketAddr,
        h2: bool,
        keep_alive: bool,
    ) -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let size: usize = req.uri().path().trim_start_matches('/').parse().unwrap_or(2);
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(vec![b'x'; size]))))
                });
                let io = TokioIo::new(stream);
                conns.spawn(async move {
                    if h2 {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, svc)
                            .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .keep_alive(keep_alive)
                            .serve_connection(io, svc)
                            .await;
                    }
                });
            }
        });
        (addr, accepted, task)
    }

    fn pool(addr: SocketAddr, protocol: Protocol) -> Arc<Pool> {
        let cfg = PoolConfig {
            protocol,
            connect_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
            max_idle: 4,
        };
        Arc::new(Pool::new(addr, cfg))
    }

    fn request(path: &str, protocol: Protocol) -> Request<RequestBody> {
        let body = RequestBody::new(Empty::<Bytes>::new(), 1024);
        let mut req = Request::builder().uri(path).body(body).expect("request");
        if protocol == Protocol::Http1 {
            req.headers_mut().insert(http::header::HOST, http::HeaderValue::from_static("upstream"));
        } else {
            *req.uri_mut() = format!("http://upstream{path}").parse().expect("uri");
            *req.version_mut() = http::Version::HTTP_2;
        }
        req
    }

    async fn get(pool: &Arc<Pool>, path: &str) -> Result<usize, SendError> {
        let res = Arc::clone(pool).send(request(path, pool.cfg.protocol)).await?;
        let body = res.into_body().collect().await?.to_bytes();
        Ok(body.len())
    }

    #[tokio::test]
    async fn sequential_http1_requests_share_one_connection() {
        let (addr, accepted, _server) = upstream(false, true).await;
        let pool = pool(addr, Protocol::Http1);
        for size in [2, 0, 100_000, 3] {
            assert_eq!(get(&pool, &format!("/{size}")).await.expect("response"), size);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_half_read_closes_its_connection() {
        let (addr, accepted, _server) = upstream(false, true).await;
        let pool = pool(addr, Protocol::Http1);
        let res = Arc::clone(&pool).send(request("/1000000", Protocol::Http1)).await.expect("response");
        drop(res);
        assert_eq!(pool.idle_count(), 0, "a connection with unread bytes is never reused");
        assert_eq!(get(&pool, "/5").await.expect("response"), 5);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn connections_the_upstream_closed_are_replaced_without_failing_a_request() {
        let (addr, accepted, _server) = upstream(false, false).await;
        let pool = pool(addr, Protocol::Http1);
        for _ in 0..5 {
            assert_eq!(get(&pool, "/7").await.expect("response"), 7);
            // Give the closing connection time to be noticed, or not: both must work.
            tokio::task::yield_now().await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn concurrent_http1_requests_open_one_connection_each_then_reuse_them() {
        let (addr, accepted, _server) = upstream(false, true).await;
        let pool = pool(addr, Protocol::Http1);
        for _ in 0..3 {
            let calls: Vec<_> = (0..4).map(|_| get(&pool, "/10")).collect();
            for r in futures_util::future::join_all(calls).await {
                assert_eq!(r.expect("response"), 10);
            }
        }
        let n = accepted.load(Ordering::SeqCst);
        assert!((1..=4).contains(&n), "{n} connections for 4 concurrent requests");
    }

    #[tokio::test]
    async fn http2_requests_share_one_connection_and_reconnect_after_the_upstream_restarts() {
        let (addr, accepted, server) = upstream(true, true).await;
        let pool = pool(addr, Protocol::Grpc);
        let calls: Vec<_> = (0..16).map(|_| get(&pool, "/4")).collect();
        for r in futures_util::future::join_all(calls).await {
            assert_eq!(r.expect("response"), 4);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        // The upstream goes away: the shared connection closes; requests
        // fail while nothing listens, and succeed on a new connection after.
        server.abort();
        let _ = server.await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while get(&pool, "/4").await.is_ok() {
            assert!(Instant::now() < deadline, "the old connection kept answering");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (_, accepted, _server) = upstream_on(addr, true, true).await;
        assert_eq!(get(&pool, "/6").await.expect("response after the restart"), 6);
        assert_eq!(get(&pool, "/6").await.expect("response"), 6);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_a_connect_error() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            l.local_addr().expect("addr")
        };
        let pool = pool(addr, Protocol::Http1);
        assert!(matches!(get(&pool, "/1").await, Err(SendError::Connect { .. })));
    }
}
