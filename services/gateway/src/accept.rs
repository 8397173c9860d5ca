//! The public listener: accepting connections under a cap, and serving each
//! with HTTP/1.1 or cleartext HTTP/2 under edge limits and timeouts.
//!
//! The protocol is told from the first bytes, peeked (HTTP/2's connection
//! preface starts with `PRI`), and each connection is served by hyper's
//! HTTP/1 or HTTP/2 connection directly. hyper's defaults are not enough at
//! an edge. This module sets:
//! - HTTP/1 parser limits: the header block's size (`max_buf_size` and
//!   `max_header_size`) and field count (`max_headers`); hyper answers 431
//!   beyond either;
//! - a header-read timeout, so slowloris clients are closed: enforced by
//!   the connection's own watchdog (see `Watchdog`, `Metered`) rather
//!   than by hyper's per-request timer, which allocated and registered a
//!   timer for every request head;
//! - an idle timeout: a connection with no request in flight for
//!   `idle_timeout` is closed gracefully (GOAWAY on HTTP/2);
//! - HTTP/2 stream and header-list limits.
//!
//! An HTTP/1 connection idle for `RELEASE_IDLE_AFTER` gives hyper's
//! buffers back and waits on its bare socket; its next request starts a
//! new hyper connection on the same socket.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::Either;
use futures_util::task::AtomicWaker;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::access_log;
use crate::config::Limits;
use crate::stack::PublicBody;
use crate::stack::{ClientAddr, RequestMeta};
use gatehouse_telemetry::Timed;

/// Accepts connections until `shutdown` turns true, then asks every
/// connection to finish gracefully and returns once all have closed.
pub async fn serve<S>(listener: TcpListener, stack: S, limits: &Limits, mut shutdown: watch::Receiver<bool>)
where
    S: Service<Request<Incoming>, Response = Response<PublicBody>, Error = Infallible, Future: Send + Unpin>
        + Clone
        + Send
        + Unpin
        + 'static,
{
    let builders = Arc::new(connection_builders(limits, true));
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
        let builders = Arc::clone(&builders);
        let stack = stack.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, &builders, stack, timeouts, Some(shutdown)).await;
            drop(permit);
        });
    }
    // Connections the kernel completed before the stop are still in the
    // backlog; closing the listener would reset them. Each gets its one
    // request served, with `Connection: close` on HTTP/1.
    let last_call = Arc::new(connection_builders(limits, false));
    while let Some(Ok((stream, peer))) = listener.accept().now_or_never() {
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else { break };
        let _ = stream.set_nodelay(true);
        let (builders, stack) = (Arc::clone(&last_call), stack.clone());
        tokio::spawn(async move {
            serve_connection(stream, peer, &builders, stack, timeouts, None).await;
            drop(permit);
        });
    }
    // Refuse new connections now, not when the last one has drained:
    // clients must see a closed port, not a handshake nobody serves.
    drop(listener);
    // Wait for every connection to release its slot.
    let _ = slots.acquire_many(limits.max_connections as u32).await;
}

/// An HTTP/1 connection with no request for this long hands its buffers
/// back: hyper's connection is taken apart, the socket waits on its own,
/// and the next request starts a fresh one. An idle keep-alive connection
/// then costs its socket and a small task instead of hyper's read and write
/// buffers (16 KiB or more).
const RELEASE_IDLE_AFTER: Duration = Duration::from_millis(250);

/// hyper's connection settings, one builder per protocol.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

fn connection_builders(limits: &Limits, keep_alive: bool) -> Builders {
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        // `serve_connection` enforces `limits.header_read_timeout` itself.
        .header_read_timeout(None)
        // Both: hyper checks the buffer limit only while a head is
        // incomplete, so a read that completes an oversized head would pass
        // it; the header-size limit is checked on every parsed head.
        .max_buf_size(limits.max_header_bytes.0 as usize)
        .max_header_size(limits.max_header_bytes.0 as usize)
        .max_headers(limits.max_headers)
        .keep_alive(keep_alive);
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_bytes.0 as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    Builders { http1, http2 }
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
    builders: &Builders,
    stack: S,
    timeouts: Timeouts,
    // `None` for a connection taken from the backlog after the stop: it is
    // closed as soon as its first requests are answered.
    mut shutdown: Option<watch::Receiver<bool>>,
) where
    S: Service<Request<Incoming>, Response = Response<PublicBody>, Error = Infallible, Future: Send + Unpin>
        + Clone
        + Send
        + Unpin
        + 'static,
{
    let opened = Instant::now();
    let activity = Arc::new(Activity::new());
    let client = ClientAddr::new(peer);
    let svc_activity = Arc::clone(&activity);
    let svc = move |http1: bool| {
        hyper::service::service_fn(move |mut req| {
            let guard = InFlight::enter(Arc::clone(&svc_activity));
            let meta = RequestMeta::of(&mut req);
            meta.client = Some(client.clone());
            meta.arrived = Some(std::time::Instant::now());
            // One request at a time on an HTTP/1 connection, polled by the
            // connection's own task: its watchdog keeps the upstream deadline.
            if http1 {
                meta.deadline = Some(ConnDeadline(Arc::clone(&svc_activity)));
            }
            // No stage of the public stack applies backpressure, so it is
            // called at once rather than through `Oneshot`'s state machine,
            // which moves the request into its state and out again. A stage
            // that does report `Pending` still works, through `Oneshot`.
            let mut stack = stack.clone();
            let called = match stack.poll_ready(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(Ok(())) => Either::Left(stack.call(req)),
                Poll::Ready(Err(e)) => match e {},
                Poll::Pending => Either::Right(stack.oneshot(req)),
            };
            // A named future (not an `async` block) so it is `Unpin`, which
            // taking an HTTP/1 connection apart requires.
            called.map(move |res| res.map(|res| res.map(|body| Tracked { inner: body, guard })))
        })
    };
    let last_call = shutdown.is_none();
    let mut stop = std::pin::pin!(stopped_opt(&mut shutdown));
    let check_every = if last_call { Duration::from_millis(20) } else { timeouts.idle };
    let mut timer = std::pin::pin!(tokio::time::sleep_until(Instant::now() + check_every));
    let mut watchdog = Watchdog {
        activity: Arc::clone(&activity),
        peer,
        timeouts,
        last_call,
        check_every,
        // Starts fired, so the shutdown future is polled (and registers) once.
        stop_signal: Arc::new(StopSignal { fired: AtomicBool::new(true), task: AtomicWaker::new() }),
        closing: false,
        head_deadline: None,
    };
    let stop_waker = Waker::from(Arc::clone(&watchdog.stop_signal));

    let http2 = match watchdog.protocol(&stream, stop.as_mut(), &stop_waker).await {
        Some(http2) => http2,
        None => return,
    };
    let mut io = Metered { inner: stream, activity: Arc::clone(&activity), unread: Bytes::new() };
    if http2 {
        let mut conn = Box::pin(builders.http2.serve_connection(TokioIo::new(io), svc(false)));
        watchdog.run(conn.as_mut(), stop.as_mut(), &stop_waker, timer.as_mut()).await;
        return;
    }
    // The first head is due one header-read timeout after the connection
    // opened, however long its first bytes took.
    let first_head = opened + timeouts.header_read;
    watchdog.head_deadline = Some(first_head);
    let first_check = Instant::now() + if last_call { check_every } else { RELEASE_IDLE_AFTER };
    timer.as_mut().reset(first_head.min(first_check));
    let svc = svc(true);
    loop {
        // Boxed, so a released connection's task does not keep room for it.
        let mut conn = Box::new(builders.http1.serve_connection(TokioIo::new(io), svc.clone()));
        if watchdog.run(Pin::new(&mut *conn), stop.as_mut(), &stop_waker, timer.as_mut()).await == Ended::Closed {
            return;
        }
        // Released: keep the socket and any bytes hyper had read already.
        tracing::debug!(client = %peer, "idle connection released its buffers");
        let parts = (*conn).into_parts();
        io = parts.io.into_inner();
        // Copied: even empty, hyper's remainder shares (and would keep
        // alive) the whole read buffer.
        io.unread = Bytes::copy_from_slice(&parts.read_buf);
        if io.unread.is_empty() && !watchdog.wait_for_bytes(&io.inner, stop.as_mut(), &stop_waker).await {
            return;
        }
    }
}

/// How a served connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Closed, by either side.
    Closed,
    /// An idle HTTP/1 connection taken apart to free its buffers.
    Released,
}

/// A hyper connection the watchdog can run: HTTP/1 or HTTP/2.
trait Served {
    /// HTTP/1: its request heads are timed, and when idle it can be taken
    /// apart and resumed later. HTTP/2 has neither.
    const HTTP1: bool;
    /// Drives the connection; an HTTP/1 connection keeps its socket open
    /// when it ends, so it can be released.
    fn poll_served(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<hyper::Result<()>>;
    /// Finishes what is in flight and ends; an idle HTTP/1 connection ends
    /// at once.
    fn finish(self: Pin<&mut Self>);
}

impl<S> Served for http1::Connection<TokioIo<Metered>, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = Tracked<PublicBody>> + Unpin,
    S::Future: Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    const HTTP1: bool = true;

    fn poll_served(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<hyper::Result<()>> {
        self.get_mut().poll_without_shutdown(cx)
    }

    fn finish(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<S> Served for http2::Connection<TokioIo<Metered>, S, TokioExecutor>
where
    S: hyper::service::HttpService<Incoming, ResBody = Tracked<PublicBody>>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    const HTTP1: bool = false;

    fn poll_served(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<hyper::Result<()>> {
        Future::poll(self, cx)
    }

    fn finish(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// One connection's timeouts, shutdown and release, across the hyper
/// connections that serve it in turn.
struct Watchdog {
    activity: Arc<Activity>,
    peer: SocketAddr,
    timeouts: Timeouts,
    last_call: bool,
    check_every: Duration,
    stop_signal: Arc<StopSignal>,
    /// Shutting down or closing idle: no more checks, hyper finishes.
    closing: bool,
    /// When the request head now being read must be complete.
    head_deadline: Option<Instant>,
}

type Stop<'a> = Pin<&'a mut (dyn Future<Output = ()> + Send)>;

impl Watchdog {
    /// Polls the shutdown future if its waker fired since the last poll.
    fn stopped(&self, stop: Stop<'_>, stop_waker: &Waker, cx: &mut Context<'_>) -> bool {
        if !self.stop_signal.fired.swap(false, Ordering::AcqRel) {
            return false;
        }
        self.stop_signal.task.register(cx.waker());
        stop.poll(&mut Context::from_waker(stop_waker)).is_ready()
    }

    /// Waits for the client's first bytes and tells HTTP/2 (its connection
    /// preface starts with `PRI`, a method no HTTP/1 request uses) from
    /// HTTP/1, reading nothing. `None`: closed, silent past the
    /// header-read timeout, or shutdown.
    async fn protocol(&self, stream: &TcpStream, mut stop: Stop<'_>, stop_waker: &Waker) -> Option<bool> {
        const PREFACE: &[u8] = b"PRI";
        let deadline = tokio::time::sleep(self.timeouts.header_read);
        let mut deadline = std::pin::pin!(deadline);
        let mut first = [0u8; 3];
        loop {
            let peeked = std::future::poll_fn(|cx| {
                if deadline.as_mut().poll(cx).is_ready() || self.stopped(stop.as_mut(), stop_waker, cx) {
                    return Poll::Ready(None);
                }
                stream.poll_peek(cx, &mut tokio::io::ReadBuf::new(&mut first)).map(|r| r.ok())
            })
            .await?;
            match peeked {
                0 => return None,
                n if first[..n] != PREFACE[..n] => return Some(false),
                n if n == PREFACE.len() => return Some(true),
                // "P" or "PR" so far: wait for the rest.
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    /// Waits until a released connection's client sends again. False:
    /// closed by the client, idle past the idle timeout, or shutdown.
    async fn wait_for_bytes(&self, stream: &TcpStream, mut stop: Stop<'_>, stop_waker: &Waker) -> bool {
        let Some(idle_until) = self.activity.idle_deadline(self.timeouts.idle) else { return true };
        let idle = tokio::time::sleep_until(idle_until);
        let mut idle = std::pin::pin!(idle);
        std::future::poll_fn(|cx| {
            if idle.as_mut().poll(cx).is_ready() || self.stopped(stop.as_mut(), stop_waker, cx) {
                return Poll::Ready(false);
            }
            // Readable also on EOF: the fresh hyper connection sees it and
            // ends.
            stream.poll_read_ready(cx).map(|r| r.is_ok())
        })
        .await
    }

    /// Runs `conn` until it closes or, idle, is released.
    async fn run<C: Served + ?Sized>(
        &mut self,
        mut conn: Pin<&mut C>,
        mut stop: Stop<'_>,
        stop_waker: &Waker,
        mut timer: Pin<&mut tokio::time::Sleep>,
    ) -> Ended {
        let activity = Arc::clone(&self.activity);
        let mut releasing = false;
        // Whether the timer must be polled: it was reset (a reset timer
        // registers when polled) or has not been polled in this run. Else
        // it is polled only once it has fired, not on every wake of a busy
        // connection.
        let mut poll_timer = true;
        std::future::poll_fn(|cx| {
            loop {
                if let Poll::Ready(res) = conn.as_mut().poll_served(cx) {
                    return Poll::Ready(match res {
                        Ok(()) if releasing => Ended::Released,
                        Ok(()) => Ended::Closed,
                        Err(e) => {
                            tracing::debug!(client = %self.peer, error = %e, "connection ended with an error");
                            access_log::rejected_head(&e, self.peer);
                            Ended::Closed
                        }
                    });
                }
                if self.closing || releasing {
                    // Only the request's upstream deadline is left to keep:
                    // the timer is now for it alone.
                    if C::HTTP1 && self.closing {
                        if let Some(d) = activity.request_deadline() {
                            if timer.deadline() != d {
                                timer.as_mut().reset(d);
                                poll_timer = true;
                            }
                            if (poll_timer || timer.is_elapsed()) && timer.as_mut().poll(cx).is_ready() {
                                activity.expire_request();
                                continue;
                            }
                            poll_timer = false;
                        }
                    }
                    return Poll::Pending;
                }
                if self.stopped(stop.as_mut(), stop_waker, cx) {
                    self.closing = true;
                    conn.as_mut().finish();
                    continue;
                }
                // A head due and not finished. Checked after every poll, so
                // the deadline starts when the connection opens or with a
                // later head's first bytes; a whole head (the usual case)
                // has already become a request by now and arms nothing.
                match (C::HTTP1 && activity.head_pending(), self.head_deadline) {
                    (true, None) => {
                        let deadline = Instant::now() + self.timeouts.header_read;
                        self.head_deadline = Some(deadline);
                        if deadline < timer.deadline() {
                            timer.as_mut().reset(deadline);
                            poll_timer = true;
                        }
                    }
                    (false, Some(_)) => {
                        // The head arrived (on a fresh connection, the first
                        // one): check for idleness from here, not at the
                        // head's deadline.
                        self.head_deadline = None;
                        let check = Instant::now() + RELEASE_IDLE_AFTER;
                        if C::HTTP1 && check < timer.deadline() {
                            timer.as_mut().reset(check);
                            poll_timer = true;
                        }
                    }
                    _ => {}
                }
                // The request in flight must hear of its upstream deadline
                // by then; seconds away, it is usually later than the next
                // check anyway and arms nothing.
                if C::HTTP1 {
                    if let Some(d) = activity.request_deadline() {
                        if d < timer.deadline() {
                            timer.as_mut().reset(d);
                            poll_timer = true;
                        }
                    }
                }
                if !poll_timer && !timer.is_elapsed() {
                    return Poll::Pending;
                }
                if timer.as_mut().poll(cx).is_pending() {
                    poll_timer = false;
                    return Poll::Pending;
                }
                let now = Instant::now();
                if self.head_deadline.is_some_and(|d| d <= now) {
                    // Nothing is in flight; the partial head is dropped
                    // with the connection.
                    tracing::debug!(client = %self.peer, "request head not received within the header-read timeout");
                    return Poll::Ready(Ended::Closed);
                }
                if C::HTTP1 && activity.request_deadline().is_some_and(|d| d <= now) {
                    // The request sees it when hyper polls it, right after
                    // this check re-arms the timer.
                    activity.expire_request();
                }
                let in_flight = activity.in_flight.load(Ordering::Acquire);
                if self.last_call && activity.served.load(Ordering::Acquire) > 0 && in_flight == 0 {
                    self.closing = true;
                    conn.as_mut().finish();
                    continue;
                }
                let mut next = match activity.idle_deadline(self.timeouts.idle) {
                    Some(deadline) if deadline > now => deadline,
                    Some(_) => {
                        self.closing = true;
                        conn.as_mut().finish();
                        continue;
                    }
                    None => now + self.check_every,
                };
                if C::HTTP1 && !self.last_call && activity.served.load(Ordering::Acquire) > 0 {
                    match activity.idle_since() {
                        Some(since) if since + RELEASE_IDLE_AFTER <= now && self.head_deadline.is_none() => {
                            releasing = true;
                            conn.as_mut().finish();
                            continue;
                        }
                        Some(since) => next = next.min(since + RELEASE_IDLE_AFTER),
                        None => next = next.min(now + RELEASE_IDLE_AFTER),
                    }
                }
                if self.last_call {
                    next = next.min(now + self.check_every);
                }
                if let Some(d) = self.head_deadline {
                    next = next.min(d);
                }
                // A request deadline sooner than `next` is brought forward
                // by the check above the timer's poll, on the next turn.
                timer.as_mut().reset(next);
                poll_timer = true;
            }
        })
        .await
    }
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
    /// Milliseconds after `started` by which the HTTP/1 request in flight
    /// must have its upstream response head; `NO_DEADLINE` when none.
    request_deadline_ms: AtomicU64,
    /// The watchdog found that deadline passed.
    request_expired: AtomicBool,
}

const NO_DEADLINE: u64 = u64::MAX;

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            read: AtomicU64::new(0),
            read_at_request: AtomicU64::new(0),
            request_deadline_ms: AtomicU64::new(NO_DEADLINE),
            request_expired: AtomicBool::new(false),
        }
    }

    /// When the request in flight must have its upstream response head;
    /// `None` when it has no deadline or the deadline has already passed.
    fn request_deadline(&self) -> Option<Instant> {
        match self.request_deadline_ms.load(Ordering::Acquire) {
            NO_DEADLINE => None,
            _ if self.request_expired.load(Ordering::Acquire) => None,
            ms => Some(self.started + Duration::from_millis(ms)),
        }
    }

    fn set_request_deadline(&self, due: Instant) {
        // Rounded up to the millisecond: never early.
        let at = due.saturating_duration_since(self.started);
        let ms = u64::try_from(at.as_micros().div_ceil(1000)).unwrap_or(NO_DEADLINE - 1).min(NO_DEADLINE - 1);
        self.request_expired.store(false, Ordering::Release);
        self.request_deadline_ms.store(ms, Ordering::Release);
    }

    fn expire_request(&self) {
        self.request_expired.store(true, Ordering::Release);
    }

    fn clear_request_deadline(&self) {
        self.request_deadline_ms.store(NO_DEADLINE, Ordering::Release);
        self.request_expired.store(false, Ordering::Release);
    }

    /// When the connection becomes idle too long; `None` while requests run.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        self.idle_since().map(|since| since + idle)
    }

    /// When the connection last became idle; `None` while requests run.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.started + Duration::from_millis(self.last_done_ms.load(Ordering::Acquire)))
    }

    /// An HTTP/1 request head is due and not complete: the first one, from
    /// the moment the connection opens, and any later one whose first bytes
    /// have arrived.
    fn head_pending(&self) -> bool {
        if self.in_flight.load(Ordering::Acquire) > 0 {
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
struct InFlight {
    activity: Arc<Activity>,
    /// When the response ended, as the body read it; read at drop if not.
    done_at: Option<std::time::Instant>,
}

impl InFlight {
    fn enter(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.served.fetch_add(1, Ordering::Relaxed);
        activity.mark_request_boundary();
        Self { activity, done_at: None }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.activity;
        let done = self.done_at.map_or_else(Instant::now, Instant::from_std);
        let now = done.saturating_duration_since(a.started).as_millis() as u64;
        a.last_done_ms.fetch_max(now, Ordering::AcqRel);
        // A request body read to its end is not the next head.
        a.mark_request_boundary();
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request's upstream deadline, kept by the watchdog of the HTTP/1
/// connection it came on.
///
/// A timer per request (`tokio::time::timeout`) registers in the runtime's
/// timer wheel when the exchange first waits and is removed again when it
/// ends, on every request. An HTTP/1 connection serves one request at a
/// time, polled by the connection's own task, and its watchdog already
/// keeps a timer that fires at least every `RELEASE_IDLE_AFTER` while a
/// request is in flight. The watchdog brings that timer forward to the
/// deadline when it is sooner, marks the request expired when it passes,
/// and hyper polls the request right after, which then ends with
/// [`TimedOut`].
#[derive(Clone)]
pub struct ConnDeadline(Arc<Activity>);

impl std::fmt::Debug for ConnDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnDeadline")
    }
}

/// The upstream did not answer within the route's timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

impl ConnDeadline {
    /// Runs `inner` until it finishes or `due` has passed.
    pub fn timeout_at<F: Future>(self, due: std::time::Instant, inner: F) -> Deadline<F> {
        self.0.set_request_deadline(due.into());
        Deadline { inner, activity: self.0 }
    }
}

pin_project_lite::pin_project! {
    /// See [`ConnDeadline::timeout_at`].
    pub struct Deadline<F> {
        #[pin]
        inner: F,
        activity: Arc<Activity>,
    }

    impl<F> PinnedDrop for Deadline<F> {
        fn drop(this: Pin<&mut Self>) {
            this.project().activity.clear_request_deadline();
        }
    }
}

impl<F: Future> Future for Deadline<F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if this.activity.request_expired.load(Ordering::Acquire) {
            return Poll::Ready(Err(TimedOut));
        }
        this.inner.poll(cx).map(Ok)
    }
}

/// The client's TCP stream, counting the bytes read for the header-read
/// watchdog.
struct Metered {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// Bytes a released hyper connection had read and not used, given to
    /// the next one first (already counted).
    unread: Bytes,
}

impl tokio::io::AsyncRead for Metered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            // This stream is the only writer: no read-modify-write needed.
            let total = self.activity.read.load(Ordering::Relaxed) + read as u64;
            self.activity.read.store(total, Ordering::Relaxed);
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
        guard: InFlight,
    }
}

impl<B: Body<Data = Bytes> + Timed> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) || this.inner.is_end_stream() {
            // The connection's idle time starts from the reading the layers
            // inside took for the end, if they took one.
            this.guard.done_at = this.inner.ended_at();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
