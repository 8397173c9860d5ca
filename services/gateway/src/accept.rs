//! The public listener: accepting connections under a cap, and serving each
//! with HTTP/1.1 or cleartext HTTP/2 under edge limits and timeouts.
//!
//! hyper's defaults are not enough at an edge. This module sets:
//! - HTTP/1 parser limits: the header block's size (`max_buf_size`) and
//!   field count (`max_headers`); hyper answers 431 beyond either;
//! - a header-read timeout, so slowloris clients are closed: enforced by
//!   the connection's own watchdog (see [`Metered`]) rather than by hyper's
//!   per-request timer, which allocated and registered a timer for every
//!   request head;
//! - an idle timeout: a connection with no request in flight for
//!   `idle_timeout` is closed gracefully (GOAWAY on HTTP/2);
//! - HTTP/2 stream and header-list limits.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::task::AtomicWaker;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::access_log;
use crate::config::Limits;
use crate::stack::PublicBody;
use crate::stack::{ClientAddr, RequestMeta};

/// Accepts connections until `shutdown` turns true, then asks every
/// connection to finish gracefully and returns once all have closed.
pub async fn serve<S>(listener: TcpListener, stack: S, limits: &Limits, mut shutdown: watch::Receiver<bool>)
where
    S: Service<Request<Incoming>, Response = Response<PublicBody>, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static,
{
    let builder = Arc::new(connection_builder(limits, true));
    let timeouts = Timeouts { idle: limits.idle_timeout.0, header_read: limits.header_read_timeout.0 };
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        // Over the cap, new connections wait in the kernel's backlog.
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => p.expect("the semaphore is never closed"),
            _ = stopped(&mut shutdown) => break,
        };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let builder = Arc::clone(&builder);
        let stack = stack.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, &builder, stack, timeouts, Some(shutdown)).await;
            drop(permit);
        });
    }
    // Connections the kernel completed before the stop are still in the
    // backlog; closing the listener would reset them. Each gets its one
    // request served, with `Connection: close` on HTTP/1.
    let last_call = Arc::new(connection_builder(limits, false));
    while let Some(Ok((stream, peer))) = listener.accept().now_or_never() {
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else { break };
        let _ = stream.set_nodelay(true);
        let (builder, stack) = (Arc::clone(&last_call), stack.clone());
        tokio::spawn(async move {
            serve_connection(stream, peer, &builder, stack, timeouts, None).await;
            drop(permit);
        });
    }
    // Refuse new connections now, not when the last one has drained:
    // clients must see a closed port, not a handshake nobody serves.
    drop(listener);
    // Wait for every connection to release its slot.
    let _ = slots.acquire_many(limits.max_connections as u32).await;
}

fn connection_builder(limits: &Limits, keep_alive: bool) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // `serve_connection` enforces `limits.header_read_timeout` itself.
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.0 as usize)
        .max_headers(limits.max_headers)
        .keep_alive(keep_alive);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_bytes.0 as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// The timeouts one connection's watchdog enforces.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// No request in flight for this long: closed gracefully.
    idle: Duration,
    /// An HTTP/1 connection's first request head not complete this long
    /// after it opened, or a later head this long after its first bytes:
    /// closed.
    header_read: Duration,
}

async fn serve_connection<S>(
    stream: TcpStream,
    peer: SocketAddr,
    builder: &auto::Builder<TokioExecutor>,
    stack: S,
    timeouts: Timeouts,
    // `None` for a connection taken from the backlog after the stop: it is
    // closed as soon as its first requests are answered.
    mut shutdown: Option<watch::Receiver<bool>>,
) where
    S: Service<Request<Incoming>, Response = Response<PublicBody>, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static,
{
    let activity = Arc::new(Activity::new());
    let client = ClientAddr::new(peer);
    let svc_activity = Arc::clone(&activity);
    let svc = hyper::service::service_fn(move |mut req| {
        let guard = InFlight::enter(Arc::clone(&svc_activity));
        RequestMeta::of(&mut req).client = Some(client.clone());
        let call = stack.clone().oneshot(req);
        async move {
            let res = call.await?;
            Ok::<_, Infallible>(res.map(|body| Tracked { inner: body, _guard: guard }))
        }
    });
    let io = Metered { inner: stream, activity: Arc::clone(&activity), sniffed: 0 };
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    let last_call = shutdown.is_none();
    let mut stop = std::pin::pin!(stopped_opt(&mut shutdown));
    // Starts fired, so the shutdown future is polled (and registers) once.
    let stop_signal = Arc::new(StopSignal { fired: AtomicBool::new(true), task: AtomicWaker::new() });
    let stop_waker = Waker::from(Arc::clone(&stop_signal));
    let check_every = if last_call { Duration::from_millis(20) } else { timeouts.idle };
    let mut timer = std::pin::pin!(tokio::time::sleep_until(Instant::now() + check_every));
    let mut closing = false;
    // When the request head now being read must be complete.
    let mut head_deadline: Option<Instant> = None;
    std::future::poll_fn(|cx| {
        loop {
            if let Poll::Ready(res) = conn.as_mut().poll(cx) {
                if let Err(e) = res {
                    tracing::debug!(client = %peer, error = %e, "connection ended with an error");
                    access_log::rejected_head(&*e, peer);
                }
                return Poll::Ready(());
            }
            if closing {
                return Poll::Pending;
            }
            if stop_signal.fired.swap(false, Ordering::AcqRel) {
                stop_signal.task.register(cx.waker());
                if stop.as_mut().poll(&mut Context::from_waker(&stop_waker)).is_ready() {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                    continue;
                }
            }
            // A head due and not finished. Checked after every poll, so the
            // deadline starts when the connection opens or with a later
            // head's first bytes; a whole head (the usual case) has already
            // become a request by now and arms nothing.
            match (activity.head_pending(), head_deadline) {
                (true, None) => {
                    let deadline = Instant::now() + timeouts.header_read;
                    head_deadline = Some(deadline);
                    if deadline < timer.deadline() {
                        timer.as_mut().reset(deadline);
                    }
                }
                (false, Some(_)) => head_deadline = None,
                _ => {}
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if head_deadline.is_some_and(|d| d <= now) {
                // Nothing is in flight; the partial head is dropped with
                // the connection.
                tracing::debug!(client = %peer, "request head not received within the header-read timeout");
                return Poll::Ready(());
            }
            if last_call
                && activity.served.load(Ordering::Acquire) > 0
                && activity.in_flight.load(Ordering::Acquire) == 0
            {
                closing = true;
                conn.as_mut().graceful_shutdown();
                continue;
            }
            let mut next = match activity.idle_deadline(timeouts.idle) {
                Some(deadline) if deadline > now => deadline,
                Some(_) => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                    continue;
                }
                None => now + check_every,
            };
            if last_call {
                next = next.min(now + check_every);
            }
            if let Some(d) = head_deadline {
                next = next.min(d);
            }
            timer.as_mut().reset(next);
        }
    })
    .await;
}

/// The waker the shutdown future is polled with: it notes that shutdown
/// woke the connection, so that future is polled only then, not on every
/// poll of a busy connection (it takes a lock each time).
struct StopSignal {
    fired: AtomicBool,
    task: AtomicWaker,
}

impl Wake for StopSignal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Like [`stopped`]; never resolves without a receiver.
async fn stopped_opt(rx: &mut Option<watch::Receiver<bool>>) {
    match rx {
        Some(rx) => stopped(rx).await,
        None => std::future::pending().await,
    }
}

/// Resolves once shutdown has been requested.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send; drop it here.
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

/// A connection's requests in flight, when the last one finished, and
/// whether a request head is being read.
#[derive(Debug)]
struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Requests started on this connection.
    served: AtomicUsize,
    /// Milliseconds after `started` when the last request finished.
    last_done_ms: AtomicU64,
    /// Bytes read from the client so far.
    read: AtomicU64,
    /// `read` when a request last started or finished: bytes beyond it,
    /// with no request in flight, are the start of the next head.
    read_at_request: AtomicU64,
    /// The client spoke HTTP/2, which has no request heads to time.
    http2: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            read: AtomicU64::new(0),
            read_at_request: AtomicU64::new(0),
            http2: AtomicBool::new(false),
        }
    }

    /// When the connection becomes idle too long; `None` while requests run.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.started + Duration::from_millis(self.last_done_ms.load(Ordering::Acquire)) + idle)
    }

    /// An HTTP/1 request head is due and not complete: the first one, from
    /// the moment the connection opens, and any later one whose first bytes
    /// have arrived.
    fn head_pending(&self) -> bool {
        if self.in_flight.load(Ordering::Acquire) > 0 || self.http2.load(Ordering::Relaxed) {
            return false;
        }
        self.served.load(Ordering::Relaxed) == 0
            || self.read.load(Ordering::Relaxed) > self.read_at_request.load(Ordering::Relaxed)
    }

    fn mark_request_boundary(&self) {
        self.read_at_request.store(self.read.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// One request in flight, from its head until its response body ends.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.served.fetch_add(1, Ordering::Relaxed);
        activity.mark_request_boundary();
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let now = a.started.elapsed().as_millis() as u64;
        a.last_done_ms.fetch_max(now, Ordering::AcqRel);
        // A request body read to its end is not the next head.
        a.mark_request_boundary();
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The client's TCP stream, counting the bytes read for the header-read
/// watchdog and noting an HTTP/2 connection preface.
struct Metered {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// Bytes of the first read compared with the HTTP/2 preface's "PRI";
    /// `u8::MAX` once decided.
    sniffed: u8,
}

impl Metered {
    fn sniff(&mut self, bytes: &[u8]) {
        const PREFACE: &[u8] = b"PRI";
        for &b in bytes {
            let at = usize::from(self.sniffed);
            if b != PREFACE[at] {
                self.sniffed = u8::MAX;
                return;
            }
            self.sniffed += 1;
            if usize::from(self.sniffed) == PREFACE.len() {
                self.activity.http2.store(true, Ordering::Relaxed);
                self.sniffed = u8::MAX;
                return;
            }
        }
    }
}

impl tokio::io::AsyncRead for Metered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            if self.sniffed != u8::MAX {
                self.sniff(read);
            }
            self.activity.read.fetch_add(read.len() as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Metered {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight.
    struct Tracked<B> {
        #[pin]
        inner: B,
        _guard: InFlight,
    }
}

impl<B: Body<Data = Bytes>> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
