//! Server-side RED metrics for HTTP (non-gRPC) requests:
//! `gateway_http_requests_total`, `gateway_http_request_duration_seconds`,
//! `gateway_http_requests_in_flight` and `gateway_overhead_seconds`.
//!
//! A request is counted when its response body ends, fails or is dropped,
//! and a client that goes away before the response head still counts (as
//! `code="499"`, the status nginx made common for it). gRPC requests pass
//! through untouched: [`crate::grpc`] counts those.

mod route;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

pub use route::RouteLabel;

use crate::grpc::is_grpc;
use crate::timing::{Measure, Timed};
use route::method_index;

/// The `route` value of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";
/// The `code` of a request whose client went away before the response head.
pub const CLIENT_CLOSED: u16 = 499;
/// The `code` of a request the inner service failed without a response.
const NO_RESPONSE: u16 = 500;

/// Finds what the layer needs of a request in its extensions: its
/// [`RouteLabel`], and when it arrived if an earlier stage read the clock
/// (see [`crate::timing`]). One function for both, so an application that
/// keeps them in one extension looks it up once.
pub type RequestOf = fn(&http::Extensions) -> (Option<&RouteLabel>, Option<Instant>);

/// Adds [`HttpMetrics`] to a service.
#[derive(Clone, Debug)]
pub struct HttpMetricsLayer {
    unmatched: RouteLabel,
    request_of: RequestOf,
}

impl HttpMetricsLayer {
    /// Builds the layer and the `route="unmatched"` handles. The request's
    /// route is read from a [`RouteLabel`] extension, and the layer reads
    /// the clock when a request arrives.
    pub fn new() -> Self {
        Self { unmatched: RouteLabel::new(UNMATCHED), request_of: |ext| (ext.get::<RouteLabel>(), None) }
    }

    /// Reads the route and the arrival from wherever the application keeps
    /// them, so an application that already carries one request-metadata
    /// extension pays for neither a second one nor a second lookup, and the
    /// layer measures from the reading an earlier stage took rather than
    /// reading the clock again.
    #[must_use]
    pub fn request_from(mut self, request_of: RequestOf) -> Self {
        self.request_of = request_of;
        self
    }
}

impl Default for HttpMetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetrics { inner, unmatched: self.unmatched.clone(), request_of: self.request_of }
    }
}

/// Records server-side RED metrics for HTTP requests; see the module docs.
#[derive(Clone, Debug)]
pub struct HttpMetrics<S> {
    inner: S,
    unmatched: RouteLabel,
    request_of: RequestOf,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for HttpMetrics<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Timed,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let call = (!is_grpc(req.headers())).then(|| {
            let (route, arrived) = (self.request_of)(req.extensions());
            let route = route.unwrap_or(&self.unmatched).clone();
            route.started();
            let start = arrived.unwrap_or_else(Instant::now);
            Call { route, method: method_index(req.method()), start, code: CLIENT_CLOSED, done: false }
        });
        ResponseFuture { inner: self.inner.call(req), call }
    }
}

/// One request being measured. Dropping it records the request with the
/// `code` it holds, so every way a request can end is counted exactly once.
struct Call {
    route: RouteLabel,
    method: u8,
    start: Instant,
    code: u16,
    /// Recorded already (by [`Call::end_at`]).
    done: bool,
}

impl Call {
    /// Records the request as ended at `ended`, and gives its duration.
    fn end_at(mut self, ended: Instant) -> Duration {
        self.done = true;
        self.record(ended)
    }

    fn record(&self, ended: Instant) -> Duration {
        let elapsed = ended.saturating_duration_since(self.start);
        self.route.finish(self.method, self.code, elapsed);
        elapsed
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.done {
            self.record(Instant::now());
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`HttpMetrics`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Timed,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut call = this.call.take();
        Poll::Ready(match result {
            Ok(res) => {
                if let Some(call) = call.as_mut() {
                    let elapsed = call.start.elapsed();
                    // Responses the gateway wrote itself carry no upstream time: all of it is overhead.
                    let upstream = res.body().upstream_elapsed().unwrap_or(Duration::ZERO);
                    call.route.overhead().record(elapsed.saturating_sub(upstream).as_secs_f64());
                    call.code = res.status().as_u16();
                }
                Ok(res.map(|inner| ResponseBody { inner, call: Measure::new(call) }))
            }
            Err(e) => {
                if let Some(call) = call.as_mut() {
                    call.code = NO_RESPONSE;
                }
                Err(e)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// Response body of [`HttpMetrics`]: records the request when it ends,
    /// fails or is dropped.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        call: Measure<Call>,
    }
}

impl<B: Body + Timed> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        // hyper stops polling once `is_end_stream` says so, so the end is
        // noticed after the last frame, not only on `None`.
        if !matches!(frame, Some(Ok(_))) || this.inner.is_end_stream() {
            let inner = this.inner.as_ref();
            this.call.end(|call| call.end_at(inner.ended_at().unwrap_or_else(Instant::now)));
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

impl<B: Timed> Timed for ResponseBody<B> {
    fn upstream_elapsed(&self) -> Option<Duration> {
        self.inner.upstream_elapsed()
    }

    /// The inner body's reading only: this body's own is not kept, which
    /// would make every response it wraps larger to move.
    fn ended_at(&self) -> Option<Instant> {
        self.inner.ended_at()
    }

    /// The duration this layer recorded, so the access line shows the
    /// same one; the inner body's for a request it passed through.
    fn elapsed(&self) -> Option<Duration> {
        self.call.elapsed(|| self.inner.elapsed())
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody").field("measuring", &self.call.running().is_some()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
