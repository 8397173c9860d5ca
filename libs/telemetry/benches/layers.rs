//! Per-request cost of the server-side HTTP and gRPC metrics layers, against
//! the same inner service without them: request in, response head out, body
//! drained. The inner service answers at once, so what is measured is the
//! layers' own work (label lookup, handles, timing, body wrapping, frame
//! counting), recorded into the recorder the gateway installs.

use std::convert::Infallible;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;
use gatehouse_telemetry::{
    Buckets, GrpcCatalogue, GrpcMetricsLayer, GrpcType, HttpMetricsLayer, MetricsRecorder, RouteLabel,
};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame};
use tower::{Layer, Service, service_fn};

/// A small body: one data frame, then optional trailers.
#[derive(Default)]
struct Small {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl gatehouse_telemetry::Timed for Small {}

impl Body for Small {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.data.take() {
            Some(d) => Some(Frame::data(d)),
            None => self.trailers.take().map(Frame::trailers),
        };
        Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

fn drain<B: Body>(body: B) {
    let mut body = pin!(body);
    let mut cx = Context::from_waker(Waker::noop());
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
        black_box(frame.is_ok());
    }
}

/// One request through `svc`, which answers without waiting.
fn exchange<S, ReqB, ResB>(svc: &mut S, req: Request<ReqB>)
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Body,
{
    let mut cx = Context::from_waker(Waker::noop());
    let _ = svc.poll_ready(&mut cx);
    let mut fut = pin!(svc.call(req));
    if let Poll::Ready(Ok(res)) = fut.as_mut().poll(&mut cx) {
        drain(res.into_body());
    }
}

/// The inner service: drains the request body, answers with `make()`.
fn inner<ReqB: Body>(
    make: fn() -> Small,
) -> impl Service<
    Request<ReqB>,
    Response = Response<Small>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<Small>, Infallible>>,
> + Clone {
    service_fn(move |req: Request<ReqB>| {
        drain(req.into_body());
        std::future::ready(Ok(Response::new(make())))
    })
}

fn http_body() -> Small {
    Small { data: Some(Bytes::from_static(b"hello, world")), trailers: None }
}

fn grpc_body() -> Small {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    Small { data: Some(Bytes::from_static(b"\0\0\0\0\x07message")), trailers: Some(trailers) }
}

fn http_request() -> Request<Small> {
    Request::builder().uri("/echo/x").body(Small { data: None, trailers: None }).unwrap_or_default()
}

fn grpc_request() -> Request<Small> {
    Request::builder()
        .uri("/echo.v1.Echo/Unary")
        .header("content-type", "application/grpc")
        .body(Small { data: Some(Bytes::from_static(b"\0\0\0\0\x04ping")), trailers: None })
        .unwrap_or_default()
}

fn layers(c: &mut Criterion) {
    let Ok(recorder) = MetricsRecorder::new(&Buckets::default()) else { return };
    let _local = metrics::set_default_local_recorder(&recorder);
    let route = RouteLabel::new("echo");
    let catalogue = GrpcCatalogue::new().with_service("echo.v1.Echo", [("Unary", GrpcType::Unary)]);

    let mut group = c.benchmark_group("per_request");
    let mut bare = inner::<Small>(http_body);
    group.bench_function("http/without_layer", |b| b.iter(|| exchange(&mut bare, http_request())));
    // The gateway inserts the route's label for its access log anyway; this
    // separates that cost (an extensions map allocation) from the layer's.
    group.bench_function("http/without_layer_with_label", |b| {
        b.iter(|| {
            let mut req = http_request();
            req.extensions_mut().insert(route.clone());
            exchange(&mut bare, req)
        })
    });
    let mut measured = HttpMetricsLayer::new().layer(inner::<Small>(http_body));
    group.bench_function("http/with_layer", |b| {
        b.iter(|| {
            let mut req = http_request();
            req.extensions_mut().insert(route.clone());
            exchange(&mut measured, req)
        })
    });

    let mut bare = inner::<Small>(grpc_body);
    group.bench_function("grpc/without_layer", |b| b.iter(|| exchange(&mut bare, grpc_request())));
    let mut measured =
        GrpcMetricsLayer::new(catalogue).layer(inner::<gatehouse_telemetry::grpc::RequestBody<Small>>(grpc_body));
    group.bench_function("grpc/with_layer", |b| b.iter(|| exchange(&mut measured, grpc_request())));
    group.finish();
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    layers(&mut c);
    c.final_summary();
}
