//! Upstream-side RED metrics, one layer per cluster around its client:
//! `gateway_upstream_requests_total{upstream,code}` (gRPC clusters add
//! `grpc_code`) and `gateway_upstream_request_duration_seconds{upstream}`.
//!
//! Both are recorded when the upstream's response body ends, fails or is
//! dropped, so the duration covers the whole exchange. `code` is the HTTP
//! status, `error` when the client failed (connect, reset, protocol), or
//! `cancelled` when the caller stopped waiting before the response head (a
//! route timeout, or the downstream client went away).
//!
//! The layer's response body also tells how long the upstream took to send
//! the response head, from which the server-side layers derive
//! `gateway_overhead_seconds`, and when the stream ended ([`Timed`]), so
//! the layers around it do not read the clock again.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use metrics::{Counter, Histogram};
use tower::{Layer, Service};

use crate::catalogue::{UPSTREAM_REQUEST_DURATION, UPSTREAM_REQUESTS};
use crate::grpc::GrpcCode;
use crate::series::{self, SeriesCache};
use crate::timing::Timed;

/// `code` values beyond HTTP statuses (which are 100..=999).
const ERROR: u16 = 1;
const CANCELLED: u16 = 2;

/// Adds [`UpstreamMetrics`] to one cluster's client.
#[derive(Clone, Debug)]
pub struct UpstreamMetricsLayer {
    series: Arc<UpstreamSeries>,
}

struct UpstreamSeries {
    name: Arc<str>,
    grpc: bool,
    duration: Histogram,
    outcomes: SeriesCache<Counter>,
}

impl UpstreamMetricsLayer {
    /// For a cluster spoken to over plain HTTP/1 or HTTP/2.
    pub fn http(upstream: impl Into<Arc<str>>) -> Self {
        Self::new(upstream.into(), false)
    }

    /// For a gRPC cluster: requests also carry `grpc_code`, read from the
    /// response head or trailers.
    pub fn grpc(upstream: impl Into<Arc<str>>) -> Self {
        Self::new(upstream.into(), true)
    }

    fn new(name: Arc<str>, grpc: bool) -> Self {
        let duration = series::histogram(&UPSTREAM_REQUEST_DURATION, [&name]);
        Self { series: Arc::new(UpstreamSeries { name, grpc, duration, outcomes: SeriesCache::new() }) }
    }

    /// Measures one upstream exchange: `exchange` resolves to the response
    /// head, whose body then records the outcome when it ends. The same as
    /// calling an [`UpstreamMetrics`] service, for callers that pick the
    /// connection themselves.
    pub fn measure<F>(&self, exchange: F) -> ResponseFuture<F> {
        ResponseFuture { inner: exchange, call: Some(Call::begin(&self.series)) }
    }

    /// Makes this cluster's success series exist at zero: `code="200"`
    /// (with `grpc_code="OK"` for gRPC clusters) and the duration histogram.
    pub fn seed(&self) {
        let ok = self.series.grpc.then_some(GrpcCode::Ok);
        self.series.with_counter(200, ok, |c| c.increment(0));
    }
}

impl UpstreamSeries {
    fn with_counter(&self, code: u16, grpc: Option<GrpcCode>, f: impl FnOnce(&Counter)) {
        let key = u32::from(code) << 8 | grpc.map_or(0xff, |g| g as u32);
        let make = || {
            let code = match code {
                ERROR => "error".to_owned(),
                CANCELLED => "cancelled".to_owned(),
                n => n.to_string(),
            };
            match grpc {
                Some(g) => series::counter(&UPSTREAM_REQUESTS, [&self.name, &code, g.as_str()]),
                None => series::counter(&UPSTREAM_REQUESTS, [&self.name, &code]),
            }
        };
        self.outcomes.with(key, make, f);
    }
}

impl fmt::Debug for UpstreamSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamSeries").field("name", &self.name).field("grpc", &self.grpc).finish()
    }
}

impl<S> Layer<S> for UpstreamMetricsLayer {
    type Service = UpstreamMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        UpstreamMetrics { inner, series: Arc::clone(&self.series) }
    }
}

/// Records upstream-side metrics for one cluster; see the module docs.
#[derive(Clone, Debug)]
pub struct UpstreamMetrics<S> {
    inner: S,
    series: Arc<UpstreamSeries>,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for UpstreamMetrics<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        ResponseFuture { inner: self.inner.call(req), call: Some(Call::begin(&self.series)) }
    }
}

/// One upstream request being measured; dropping it records the outcome it
/// holds, so every way an exchange can end is counted exactly once.
struct Call {
    series: Arc<UpstreamSeries>,
    start: Instant,
    code: u16,
    /// `None` for HTTP clusters.
    grpc: Option<GrpcCode>,
    /// Whether `grpc` is final (from the head or the trailers).
    settled: bool,
    /// Recorded already (by [`Call::end_at`]).
    done: bool,
}

impl Call {
    /// Counted as cancelled unless the exchange says otherwise.
    fn begin(series: &Arc<UpstreamSeries>) -> Self {
        let grpc = series.grpc.then_some(GrpcCode::Canceled);
        Self { series: Arc::clone(series), start: Instant::now(), code: CANCELLED, grpc, settled: false, done: false }
    }

    /// Records the exchange as ended at `ended`.
    fn end_at(mut self, ended: Instant) {
        self.record(ended);
        self.done = true;
    }

    fn record(&self, ended: Instant) {
        let s = &self.series;
        s.with_counter(self.code, self.grpc, |c| c.increment(1));
        s.duration.record(ended.saturating_duration_since(self.start).as_secs_f64());
    }

    fn settle(&mut self, code: GrpcCode) {
        if self.grpc.is_some() && !self.settled {
            self.grpc = Some(code);
            self.settled = true;
        }
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
    /// Response future of [`UpstreamMetrics`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut call = this.call.take();
        Poll::Ready(match result {
            Ok(res) => {
                let head = call.as_ref().map(|call| call.start.elapsed());
                if let Some(call) = call.as_mut() {
                    call.code = res.status().as_u16();
                    if call.grpc.is_some() {
                        if let Some(code) = GrpcCode::from_response_head(res.status(), res.headers()) {
                            call.settle(code);
                        }
                    }
                }
                Ok(res.map(|inner| ResponseBody { inner, call, head, ended: None }))
            }
            Err(e) => {
                if let Some(call) = call.as_mut() {
                    call.code = ERROR;
                    // A gRPC client reports a failed connection as UNAVAILABLE.
                    call.settle(GrpcCode::Unavailable);
                }
                Err(e)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// Response body of [`UpstreamMetrics`]: records the exchange when it
    /// ends, fails or is dropped, reading `grpc-status` from the trailers.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
        // Time to the response head.
        head: Option<Duration>,
        // When the stream ended, for the bodies around this one.
        ended: Option<Instant>,
    }
}

impl<B> Timed for ResponseBody<B> {
    fn upstream_elapsed(&self) -> Option<Duration> {
        self.head
    }

    fn ended_at(&self) -> Option<Instant> {
        self.ended
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let ended = match &frame {
            Some(Ok(f)) => match f.trailers_ref() {
                Some(trailers) => {
                    if let Some(call) = this.call.as_mut() {
                        call.settle(GrpcCode::from_headers(trailers).unwrap_or(GrpcCode::Unknown));
                    }
                    true
                }
                None => this.inner.is_end_stream(),
            },
            None | Some(Err(_)) => true,
        };
        if ended {
            if let Some(mut call) = this.call.take() {
                // Ended without a status anywhere: never count it as OK.
                call.settle(GrpcCode::Unknown);
                let now = Instant::now();
                *this.ended = Some(now);
                call.end_at(now);
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

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody").field("measuring", &self.call.is_some()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
