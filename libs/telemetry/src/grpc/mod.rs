//! Server-side gRPC metrics, compatible with go-grpc-prometheus:
//! `gateway_grpc_server_started_total`, `_handled_total{grpc_code}`,
//! `_handling_seconds`, `_msg_received_total`, `_msg_sent_total`, plus
//! `gateway_overhead_seconds`.
//!
//! The status is read where it really is: the `grpc-status` header of a
//! trailers-only response, else the trailers at the end of the response
//! body. A non-200 response without one maps to a code as gRPC clients map
//! it; a body that ends without a status is `Unknown`; a call dropped before
//! its status (the client cancelled or went away) is `Canceled`. Messages
//! are counted from the length-prefixed frames in both bodies. Requests that
//! are not gRPC pass through untouched.

mod body;
mod catalogue;
mod code;
mod frames;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{HeaderMap, Request, Response, header};
use tower::{Layer, Service};

pub use body::{RequestBody, ResponseBody};
pub use catalogue::{GrpcCatalogue, GrpcType, UNKNOWN};
pub use code::GrpcCode;

use crate::timing::{ArrivalOf, Timed};
use body::Call;

/// Whether a request or response is gRPC, by its content type.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// Adds [`GrpcMetrics`] to a service.
///
/// Every service built from one layer shares its catalogue, so
/// [`GrpcMetricsLayer::update`] after a config change reaches them all.
#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer {
    catalogue: Arc<ArcSwap<GrpcCatalogue>>,
    arrival_of: ArrivalOf,
}

impl GrpcMetricsLayer {
    /// Builds the layer over the configured methods.
    pub fn new(catalogue: GrpcCatalogue) -> Self {
        Self { catalogue: Arc::new(ArcSwap::from_pointee(catalogue)), arrival_of: |_| None }
    }

    /// Measures from when the call arrived, as an earlier stage read it,
    /// rather than reading the clock again (see [`crate::timing`]).
    #[must_use]
    pub fn arrival_from(mut self, arrival_of: ArrivalOf) -> Self {
        self.arrival_of = arrival_of;
        self
    }

    /// Replaces the catalogue; calls already running keep their series.
    pub fn update(&self, catalogue: GrpcCatalogue) {
        self.catalogue.store(Arc::new(catalogue));
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner, catalogue: Arc::clone(&self.catalogue), arrival_of: self.arrival_of }
    }
}

/// Records server-side gRPC metrics; see the module docs.
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
    catalogue: Arc<ArcSwap<GrpcCatalogue>>,
    arrival_of: ArrivalOf,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for GrpcMetrics<S>
where
    S: Service<Request<RequestBody<ReqB>>, Response = Response<ResB>>,
    ResB: Timed,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        if !is_grpc(req.headers()) {
            return ResponseFuture { inner: self.inner.call(req.map(RequestBody::passthrough)), call: None };
        }
        let series = Arc::clone(self.catalogue.load().lookup(req.uri().path()));
        series.started.increment(1);
        let start = (self.arrival_of)(req.extensions()).unwrap_or_else(Instant::now);
        let req = req.map(|b| RequestBody::counting(b, series.received.clone()));
        let call = Call { series, start, code: GrpcCode::Canceled, done: false };
        ResponseFuture { inner: self.inner.call(req), call: Some(call) }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`GrpcMetrics`].
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
        let Some(call) = this.call.take() else {
            return Poll::Ready(result.map(|res| res.map(ResponseBody::passthrough)));
        };
        Poll::Ready(match result {
            Ok(res) => {
                let elapsed = call.start.elapsed();
                // Responses the gateway wrote itself carry no upstream time: all of it is overhead.
                let upstream = res.body().upstream_elapsed().unwrap_or(Duration::ZERO);
                call.series.overhead.record(elapsed.saturating_sub(upstream).as_secs_f64());
                match GrpcCode::from_response_head(res.status(), res.headers()) {
                    Some(code) => {
                        // Trailers-only: the call ends with its head.
                        call.finish(code, None);
                        Ok(res.map(ResponseBody::passthrough))
                    }
                    None => Ok(res.map(|b| ResponseBody::measuring(b, call))),
                }
            }
            Err(e) => {
                // No response at all: the client sees a reset, not a status.
                call.finish(GrpcCode::Unknown, None);
                Err(e)
            }
        })
    }
}

#[cfg(test)]
mod tests;
