//! One JSON access line per request, written when the response body ends,
//! fails, or is dropped because the client went away, so every request is
//! logged exactly once, including those the gateway rejects or that are cut
//! at shutdown.
//!
//! Never logged: the query string, `Authorization`, API keys, cookies.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse_telemetry::Timed;
use gatehouse_telemetry::grpc::GrpcCode;
use gatehouse_telemetry::logging::LineSink;
use http::{HeaderValue, Method, Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

use crate::error::GatewayError;
use crate::router::Route;
use crate::stack::RequestMeta;

/// `,"key":"value"`, the key and its punctuation one constant.
macro_rules! string_field {
    ($out:expr, $key:literal, $value:expr, $push:path) => {{
        $out.extend_from_slice(concat!(",\"", $key, "\":\"").as_bytes());
        $push($out, $value);
        $out.push(b'"');
    }};
}

/// The authenticated principal; set by the auth stage on responses.
#[derive(Clone, Debug)]
pub struct IdentityId(pub Arc<str>);

/// Adds [`AccessLog`]. When disabled the layer stays in the stack (so the
/// stack's type does not depend on config) but records nothing.
#[derive(Clone, Debug)]
pub struct AccessLogLayer {
    enabled: bool,
    sink: Option<LineSink>,
}

impl AccessLogLayer {
    /// An access log that writes lines when `enabled`: straight into the
    /// log queue through `sink` when the JSON format is on, through tracing
    /// otherwise.
    ///
    /// The filter is fixed once logging starts, so whether it lets access
    /// lines through is asked here, once, rather than for every request.
    pub fn new(enabled: bool, sink: Option<LineSink>) -> Self {
        match sink {
            Some(_) if !tracing::enabled!(target: "access", tracing::Level::INFO) => {
                Self { enabled: false, sink: None }
            }
            sink => Self { enabled, sink },
        }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;
    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog { inner, enabled: self.enabled, sink: self.sink }
    }
}

/// Writes one access line per request.
#[derive(Clone, Debug)]
pub struct AccessLog<S> {
    inner: S,
    enabled: bool,
    sink: Option<LineSink>,
}

/// The request's protocol, as the access line names it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
    Grpc,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::Http2 => "http2",
            Self::Grpc => "grpc",
        }
    }
}

/// The request's fields, kept for tracing's `info!` (the text format, and
/// processes without a line sink such as tests).
struct Entry {
    method: Method,
    uri: Uri,
    request_id: Option<HeaderValue>,
    trace_id: Option<HeaderValue>,
    route: Option<Arc<Route>>,
    client_ip: Option<HeaderValue>,
}

/// Where the line goes.
enum Kind {
    /// The JSON format: the request's fields are rendered when it arrives
    /// (into [`Line::fields`]), so nothing of the request is kept (no URI,
    /// header values or route to hold and drop), and the line is finished
    /// straight in the log queue.
    Json(LineSink),
    Trace(Box<Entry>),
}

impl<S, B, ResB> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<CountBody<B>>, Response = Response<ResB>>,
    B: Body<Data = Bytes>,
    ResB: Body<Data = Bytes>,
{
    type Response = Response<LogBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !self.enabled {
            let req = req.map(|inner| CountBody { inner, bytes: None });
            return ResponseFuture { inner: self.inner.call(req), line: None };
        }
        let meta = req.extensions().get::<RequestMeta>();
        let head = meta.and_then(|m| m.head.as_ref());
        let protocol = if head.map_or_else(|| crate::stack::is_grpc(&req), |h| h.grpc) {
            Protocol::Grpc
        } else if req.version() == Version::HTTP_2 {
            Protocol::Http2
        } else {
            Protocol::Http1
        };
        let traceparent = match head {
            Some(head) => head.traceparent.as_ref(),
            None => req.headers().get(&TRACEPARENT),
        };
        let bytes_in = (!crate::body::known_empty(req.body())).then(|| Arc::new(AtomicU64::new(0)));
        let start = meta.and_then(|m| m.arrived).unwrap_or_else(Instant::now);
        let line = match self.sink {
            Some(sink) => {
                // A finished request's line, kept on this thread: taking it
                // and its field buffer saves both allocations.
                let mut line = spare_line().unwrap_or_else(|| Box::new(Line::new(Kind::Json(sink), start)));
                line.kind = Kind::Json(sink);
                line.begin(start, protocol, bytes_in.clone());
                let path = req.uri().path();
                line.fields.clear();
                line.fields.reserve(FIELDS_CAPACITY + path.len());
                render_fields(&mut line.fields, req.method(), path, meta, protocol, traceparent.and_then(trace_id));
                line
            }
            None => {
                let entry = Box::new(Entry {
                    method: req.method().clone(),
                    uri: req.uri().clone(),
                    request_id: meta.and_then(|m| m.id.clone()),
                    trace_id: traceparent.and_then(trace_id).and_then(|id| HeaderValue::from_bytes(id).ok()),
                    route: meta.and_then(|m| m.route.clone()),
                    client_ip: meta.and_then(|m| m.client.as_ref()).map(|c| c.ip.clone()),
                });
                let mut line = Box::new(Line::new(Kind::Trace(entry), start));
                line.begin(start, protocol, bytes_in.clone());
                line
            }
        };
        let req = req.map(|inner| CountBody { inner, bytes: bytes_in });
        ResponseFuture { inner: self.inner.call(req), line: Some(line) }
    }
}

/// W3C trace context; a constant name skips parsing and validating the
/// name on every lookup.
static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// `traceparent` is `version-traceid-parentid-flags`; the trace id is the
/// 32 hex digits after the first dash.
fn trace_id(v: &HeaderValue) -> Option<&[u8]> {
    let b = v.as_bytes();
    let id = b.get(3..35)?;
    (b.get(2) == Some(&b'-') && id.iter().all(u8::is_ascii_hexdigit)).then_some(id)
}

pin_project_lite::pin_project! {
    /// Waits for the response head, then hands the line to the body.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        line: Option<Box<Line>>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // The client went away (or the process is cutting requests at
            // shutdown) before the response head: still one line.
            if let Some(line) = this.project().line.take() {
                line.finish(End::Dropped, None, None);
            }
        }
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    ResB: Body,
{
    type Output = Result<Response<LogBody<ResB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx))?;
        let Some(mut line) = this.line.take() else {
            return Poll::Ready(Ok(res.map(|inner| LogBody { inner, line: None })));
        };
        let ext = res.extensions();
        line.status = res.status().as_u16();
        if line.protocol == Protocol::Grpc {
            line.grpc_code = GrpcCode::from_headers(res.headers());
        }
        line.error_type = ext.get::<GatewayError>().map(|e| e.code());
        line.identity = ext.get::<IdentityId>().map(|i| Arc::clone(&i.0));
        line.empty_body = res.body().is_end_stream();
        Poll::Ready(Ok(res.map(|inner| LogBody { inner, line: Some(line) })))
    }
}

/// Everything the access line says; written once.
struct Line {
    kind: Kind,
    /// The request's fields, rendered when it arrived (JSON only).
    fields: Vec<u8>,
    start: Instant,
    protocol: Protocol,
    status: u16,
    grpc_code: Option<GrpcCode>,
    error_type: Option<&'static str>,
    identity: Option<Arc<str>>,
    /// `None` when the request came without a body (most GETs): nothing to count.
    bytes_in: Option<Arc<AtomicU64>>,
    bytes_out: u64,
    /// The body was empty from the start.
    empty_body: bool,
}

/// Lines of finished requests kept for reuse, per thread, with their field
/// buffers: taking one costs a few instructions where a new line and its
/// buffer cost two allocations now and two frees at the end. A thread
/// keeps at most this many (a few hundred bytes each).
const SPARE_LINES: usize = 64;

thread_local! {
    // Boxed: the pool hands back the very allocation a request's future
    // and body carry, so taking a line moves a pointer, not the line.
    #[allow(clippy::vec_box)]
    static SPARE: std::cell::RefCell<Vec<Box<Line>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A line a finished request left on this thread, for its allocation and
/// its field buffer.
fn spare_line() -> Option<Box<Line>> {
    SPARE.try_with(|spare| spare.borrow_mut().pop()).ok().flatten()
}

impl Line {
    /// A blank line; [`Line::begin`] starts it for a request.
    fn new(kind: Kind, start: Instant) -> Self {
        Self {
            kind,
            fields: Vec::new(),
            start,
            protocol: Protocol::Http1,
            status: 0,
            grpc_code: None,
            error_type: None,
            identity: None,
            bytes_in: None,
            bytes_out: 0,
            empty_body: false,
        }
    }

    /// Makes this the line of a request that just arrived: until a
    /// response head arrives, it says the client went away. Field by
    /// field, so a reused line's buffer stays where it is.
    fn begin(&mut self, start: Instant, protocol: Protocol, bytes_in: Option<Arc<AtomicU64>>) {
        self.start = start;
        self.protocol = protocol;
        self.status = gatehouse_telemetry::http::CLIENT_CLOSED;
        self.grpc_code = None;
        self.error_type = None;
        self.identity = None;
        self.bytes_in = bytes_in;
        self.bytes_out = 0;
        self.empty_body = false;
    }

    /// Writes the line and keeps it for the thread's next request. `at`
    /// is when the response ended and `elapsed` the request's duration,
    /// if a layer inside took them.
    fn finish(mut self: Box<Self>, ended: End, at: Option<Instant>, elapsed: Option<Duration>) {
        let now = at.unwrap_or_else(Instant::now);
        self.write(ended, now, elapsed.unwrap_or_else(|| now.saturating_duration_since(self.start)));
        // A long path once must not pin a long buffer; text-format lines
        // have none to lend.
        if !matches!(self.kind, Kind::Json(_)) || self.fields.capacity() > 4 * FIELDS_CAPACITY {
            return;
        }
        // What the line refers to is let go now, not when it is reused.
        self.identity = None;
        self.bytes_in = None;
        // During thread teardown the pool may be gone: the line is freed.
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARE_LINES {
                spare.push(self);
            }
        });
    }

    fn write(&self, ended: End, now: Instant, elapsed: Duration) {
        match &self.kind {
            Kind::Json(sink) => sink.write_line(|out| {
                gatehouse_telemetry::logging::begin_line_at(out, LINE_PREFIX, now);
                out.extend_from_slice(&self.fields);
                self.render_outcome(out, ended, elapsed);
            }),
            Kind::Trace(entry) => self.outcome(ended, elapsed).trace(entry, self.protocol),
        }
    }

    /// The `grpc_code` of a gRPC request: its status, or what the end says
    /// of a stream without one.
    fn grpc_code(&self, ended: End) -> Option<GrpcCode> {
        match (self.protocol, self.grpc_code, ended) {
            (Protocol::Grpc, Some(code), _) => Some(code),
            // A stream cut short is never OK.
            (Protocol::Grpc, None, End::Dropped) => Some(GrpcCode::Canceled),
            (Protocol::Grpc, None, _) => Some(GrpcCode::Unknown),
            _ => None,
        }
    }

    fn error_type(&self, ended: End) -> Option<&'static str> {
        self.error_type.or(match ended {
            End::Complete => None,
            End::Dropped => Some("client_cancelled"),
            End::Failed => Some("stream_error"),
        })
    }

    fn bytes_in(&self) -> u64 {
        self.bytes_in.as_ref().map_or(0, |b| b.load(Ordering::Relaxed))
    }

    fn outcome(&self, ended: End, elapsed: Duration) -> Outcome<'_> {
        Outcome {
            status: self.status,
            grpc_code: self.grpc_code(ended).map(GrpcCode::as_str),
            identity_id: self.identity.as_deref(),
            elapsed,
            bytes_in: self.bytes_in(),
            bytes_out: self.bytes_out,
            error_type: self.error_type(ended),
        }
    }

    /// The rest of the JSON line, after the request's fields. Adjacent
    /// pieces of known size are appended together: each append checks the
    /// buffer's room once.
    fn render_outcome(&self, out: &mut Vec<u8>, ended: End, elapsed: Duration) {
        use gatehouse_telemetry::logging::{end_line, push_escaped, push_millis, push_plain, push_uint, three_digits};
        match self.status {
            status @ 100..=999 => {
                let mut field = *br#","status":000"#;
                field[10..].copy_from_slice(&three_digits(u32::from(status)));
                out.extend_from_slice(&field);
            }
            status => {
                out.extend_from_slice(br#","status":"#);
                push_uint(out, u64::from(status));
            }
        }
        if let Some(code) = self.grpc_code(ended) {
            string_field!(out, "grpc_code", code.as_str().as_bytes(), push_plain);
        }
        if let Some(v) = self.identity.as_deref() {
            string_field!(out, "identity_id", v, push_escaped);
        }
        out.extend_from_slice(br#","duration_ms":"#);
        push_millis(out, elapsed);
        match self.bytes_in() {
            // Most requests (every GET) send no body.
            0 => out.extend_from_slice(br#","bytes_in":0,"bytes_out":"#),
            n => {
                out.extend_from_slice(br#","bytes_in":"#);
                push_uint(out, n);
                out.extend_from_slice(br#","bytes_out":"#);
            }
        }
        push_uint(out, self.bytes_out);
        if let Some(v) = self.error_type(ended) {
            string_field!(out, "error_type", v.as_bytes(), push_plain);
        }
        end_line(out);
    }
}

/// Level, service, target and message of every access line, as
/// [`gatehouse_telemetry::logging::line_prefix`] renders them (a test keeps
/// the two equal): a constant, so it is copied without a call.
const LINE_PREFIX: &[u8] = br#"","level":"info","service":"gatehouse","target":"access","msg":"request""#;

/// Room for the request's fields besides the path: the keys, a request id,
/// a trace id, an IPv6 address, a route and upstream name.
const FIELDS_CAPACITY: usize = 320;

/// Renders the fields the request itself decides, as `,"key":value` pairs:
/// request id, trace id, method, path, route, upstream, protocol, client
/// IP.
///
/// Each key is one constant together with the punctuation around it, so a
/// line is a few dozen copies. Only the path can hold what a client chose;
/// every other value is a request id without quotes or backslashes, a
/// method token, names the config validated, a fixed string, hex digits or
/// an IP, checked where they were made, and written as bytes.
fn render_fields(
    out: &mut Vec<u8>,
    method: &Method,
    path: &str,
    meta: Option<&RequestMeta>,
    protocol: Protocol,
    trace_id: Option<&[u8]>,
) {
    use gatehouse_telemetry::logging::{push_escaped, push_plain};
    if let Some(id) = meta.and_then(|m| m.id.as_ref()) {
        string_field!(out, "request_id", id.as_bytes(), push_plain);
    }
    if let Some(id) = trace_id {
        string_field!(out, "trace_id", id, push_plain);
    }
    // Constants of known size are copied with a few moves; a slice whose
    // size is known only at run time costs a call.
    match *method {
        Method::GET => out.extend_from_slice(br#","method":"GET","path":""#),
        Method::POST => out.extend_from_slice(br#","method":"POST","path":""#),
        Method::PUT => out.extend_from_slice(br#","method":"PUT","path":""#),
        Method::DELETE => out.extend_from_slice(br#","method":"DELETE","path":""#),
        ref method => {
            out.extend_from_slice(br#","method":""#);
            push_plain(out, method.as_str().as_bytes());
            out.extend_from_slice(br#"","path":""#);
        }
    }
    push_escaped(out, path);
    out.push(b'"');
    match meta.and_then(|m| m.route.as_deref()) {
        Some(route) => out.extend_from_slice(&route.log_fields),
        None => out.extend_from_slice(br#","route":"unmatched""#),
    }
    match protocol {
        Protocol::Http1 => out.extend_from_slice(br#","protocol":"http1""#),
        Protocol::Http2 => out.extend_from_slice(br#","protocol":"http2""#),
        Protocol::Grpc => out.extend_from_slice(br#","protocol":"grpc""#),
    }
    if let Some(client) = meta.and_then(|m| m.client.as_ref()) {
        string_field!(out, "client_ip", client.ip.as_bytes(), push_plain);
    }
}

/// What the response decided, for a line written through tracing.
struct Outcome<'a> {
    status: u16,
    grpc_code: Option<&'a str>,
    identity_id: Option<&'a str>,
    elapsed: Duration,
    bytes_in: u64,
    bytes_out: u64,
    error_type: Option<&'a str>,
}

impl Outcome<'_> {
    /// Through tracing: text format, tests, no sink.
    #[cold]
    #[inline(never)]
    fn trace(&self, e: &Entry, protocol: Protocol) {
        fn text(v: Option<&HeaderValue>) -> Option<&str> {
            v.and_then(|v| v.to_str().ok())
        }
        tracing::info!(
            target: "access",
            request_id = text(e.request_id.as_ref()),
            trace_id = text(e.trace_id.as_ref()),
            identity_id = self.identity_id,
            method = e.method.as_str(),
            path = e.uri.path(),
            route = e.route.as_ref().map_or(gatehouse_telemetry::http::UNMATCHED, |r| &*r.name),
            protocol = protocol.as_str(),
            status = self.status,
            grpc_code = self.grpc_code,
            upstream = e.route.as_ref().map(|r| &*r.cluster.name),
            duration_ms = self.elapsed.as_secs_f64() * 1000.0,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            client_ip = text(e.client_ip.as_ref()),
            error_type = self.error_type,
            "request"
        );
    }
}

#[derive(Clone, Copy)]
enum End {
    Complete,
    Failed,
    Dropped,
}

pin_project_lite::pin_project! {
    /// The request body, counted for `bytes_in`.
    pub struct CountBody<B> {
        #[pin]
        inner: B,
        bytes: Option<Arc<AtomicU64>>,
    }
}

impl<B: Body<Data = Bytes>> Body for CountBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let (Some(Ok(f)), Some(bytes)) = (&frame, this.bytes.as_ref()) {
            if let Some(d) = f.data_ref() {
                bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
            }
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

pin_project_lite::pin_project! {
    /// The response body; writes the line at its end, failure or drop.
    pub struct LogBody<B> {
        #[pin]
        inner: B,
        line: Option<Box<Line>>,
    }

    impl<B> PinnedDrop for LogBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(line) = this.line.take() {
                // hyper never polls a body that is empty from the start
                // (trailers-only gRPC errors, 204s): that is a completed
                // response, not a client that went away.
                let end = if line.empty_body { End::Complete } else { End::Dropped };
                line.finish(end, None, None);
            }
        }
    }
}

impl<B: Body<Data = Bytes> + Timed> Body for LogBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let end = match &frame {
            Some(Ok(f)) => {
                if let Some(line) = this.line.as_mut() {
                    if let Some(d) = f.data_ref() {
                        line.bytes_out += d.len() as u64;
                    } else if let Some(t) = f.trailers_ref() {
                        line.grpc_code = GrpcCode::from_headers(t).or(line.grpc_code);
                    }
                }
                this.inner.is_end_stream().then_some(End::Complete)
            }
            Some(Err(_)) => Some(End::Failed),
            None => Some(End::Complete),
        };
        // Taken only at the end: a line taken is a line written.
        if let Some(end) = end {
            if let Some(line) = this.line.take() {
                // A body inside (the upstream's) may have read the clock for this end.
                line.finish(end, this.inner.ended_at(), this.inner.elapsed());
            }
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

impl<B: Timed> Timed for LogBody<B> {
    fn upstream_elapsed(&self) -> Option<Duration> {
        self.inner.upstream_elapsed()
    }

    /// The inner body's reading only, as the metrics layers' bodies.
    fn ended_at(&self) -> Option<Instant> {
        self.inner.ended_at()
    }

    fn elapsed(&self) -> Option<Duration> {
        self.inner.elapsed()
    }
}

/// Writes the access line (and counts the rejection) of a request that
/// hyper's HTTP/1 parser refused before the gateway saw it: hyper answered
/// 431 or 400 itself.
pub fn rejected_head(error: &(dyn std::error::Error + 'static), client: std::net::SocketAddr) {
    let Some(e) = error.downcast_ref::<hyper::Error>() else { return };
    let (status, error_type) = if e.is_parse_too_large() {
        (431, GatewayError::HeadersTooLarge.code())
    } else if e.is_parse() {
        (400, GatewayError::BadRequest.code())
    } else {
        return;
    };
    gatehouse_telemetry::rejections::Rejections::new()
        .reject(gatehouse_telemetry::rejections::RejectReason::BadRequest);
    tracing::info!(
        target: "access",
        request_id = %crate::request_id::request_id(&http::HeaderMap::new()).to_str().unwrap_or_default(),
        method = "other",
        route = gatehouse_telemetry::http::UNMATCHED,
        protocol = "http1",
        status,
        duration_ms = 0.0,
        bytes_in = 0u64,
        bytes_out = 0u64,
        client_ip = %client.ip(),
        error_type,
        "request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_prefix_is_the_one_the_subscriber_writes() {
        let rendered = gatehouse_telemetry::logging::line_prefix(&tracing::Level::INFO, "access", "request");
        assert_eq!(String::from_utf8_lossy(LINE_PREFIX), String::from_utf8_lossy(&rendered));
    }

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        let tp = HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(trace_id(&tp), Some(&b"4bf92f3577b34da6a3ce929d0e0e4736"[..]));
        assert_eq!(trace_id(&HeaderValue::from_static("garbage")), None);
        assert_eq!(trace_id(&HeaderValue::from_static("00-zzf92f3577b34da6a3ce929d0e0e4736-00f0-01")), None);
    }
}
