//! The demo and test upstream behind Gatehouse.
//!
//! One port answers HTTP/1.1, cleartext HTTP/2 (prior knowledge) and gRPC.
//! Requests whose `content-type` starts with `application/grpc` go to the
//! `echo.v1.Echo` service; everything else goes to the HTTP routes, which
//! match on the path's last segments so that any prefix a gateway route adds
//! is ignored. Every response carries the `x-echo-name` header, so a test can
//! tell which endpoint a load balancer picked.
//!
//! The binary wraps [`serve`]; tests and benchmarks call [`serve`] or
//! [`router`] in-process.

use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;
use axum::routing::future::RouteFuture;
use axum::serve::ListenerExt;
use gatehouse_proto::echo::v1::echo_server::EchoServer;
// tonic re-exports tower's `Service` trait; axum does not.
use tonic::codegen::Service;

mod body;
mod grpc;
mod http;

/// The header (and gRPC metadata key) that names the answering endpoint.
pub const NAME_HEADER: &str = "x-echo-name";

const NAME: HeaderName = HeaderName::from_static(NAME_HEADER);

/// Builds the application: gRPC and HTTP behind one router, every response
/// stamped with `x-echo-name: {name}`.
///
/// Characters a header value cannot carry (anything outside printable ASCII)
/// are replaced with `_`, so any name yields a working router.
pub fn router(name: String) -> Router {
    let name = name_header(&name);
    let grpc =
        tonic::service::Routes::new(EchoServer::new(grpc::EchoService::new(name.clone()))).prepare().into_axum_router();
    let dispatch = Dispatch { grpc, http: http::router() };
    Router::new().fallback_service(dispatch).layer(axum::middleware::map_response_with_state(name, stamp_name))
}

/// Serves [`router`] on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish before returning.
pub async fn serve(
    listener: tokio::net::TcpListener,
    name: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Streaming routes send many small frames; Nagle's algorithm would hold
    // them back and blur the timings tests measure.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(name)).with_graceful_shutdown(shutdown).await
}

fn name_header(name: &str) -> HeaderValue {
    let printable: String = name.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '_' }).collect();
    HeaderValue::from_str(&printable).unwrap_or(HeaderValue::from_static("echo"))
}

async fn stamp_name(State(name): State<HeaderValue>, mut response: Response) -> Response {
    // `insert`, not `append`: the gRPC service already sets the same value in
    // its metadata, and the header must appear exactly once.
    response.headers_mut().insert(NAME, name);
    response
}

/// Routes by content type rather than path: gRPC requests to `/echo.v1.Echo/…`
/// and HTTP requests to any path must share one port, and an HTTP request may
/// well use a path that looks like a gRPC method.
#[derive(Clone)]
struct Dispatch {
    grpc: Router,
    http: Router,
}

impl Service<Request> for Dispatch {
    type Response = Response;
    type Error = Infallible;
    type Future = RouteFuture<Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A `Router` is always ready, so there is nothing to wait for.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if is_grpc(&request) { self.grpc.call(request) } else { self.http.call(request) }
    }
}

fn is_grpc(request: &Request<Body>) -> bool {
    request.headers().get(header::CONTENT_TYPE).is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}
