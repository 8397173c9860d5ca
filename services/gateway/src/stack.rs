//! The one place that composes the request path, in order. Each stage lives
//! in its own module; this file only decides the order and says why.
//!
//! ```text
//! accept.rs       connection cap, HTTP/1 parser limits, header-read and idle timeouts;
//!                 puts the client's address in the request
//!   → head, request id  first: one scan of the header names answers what later stages
//!                 would look up (head.rs); every later stage, log line and error body
//!                 names the request
//!   → route match annotates the request with its route before telemetry, so metrics and
//!                 logs are labelled by route name (never the raw path); rejects nothing yet
//!   → access log  (access_log.rs) one line per request, outermost so every answer,
//!                 rejection or cut is logged once
//!   → RED metrics HTTP and gRPC server layers (libs/telemetry); outside the stages that
//!                 reject, so rejected requests count too
//!   → hygiene     malformed heads are the client's error, answered before any upstream
//!   → no route    404 / UNIMPLEMENTED
//!   → authenticate, authorize (auth.rs)  need the route's rules, so after the match;
//!                 a per-identity rate limit would go between the two
//!   → proxy       timeout, balance, pooled client (with the upstream RED layer),
//!                 streaming bodies
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::Either;
use http::{HeaderValue, Request, Response, header};
use http_body::Body;
use hyper::body::Incoming;
use tower::{Service, ServiceBuilder};

use crate::access_log::{AccessLogLayer, IdentityId, LogBody};
use crate::auth::Auth;
use crate::body::{BoxError, GatewayBody};
use crate::error::GatewayError;
use crate::head::Head;
use crate::hygiene::{self, HeadLimits};
use crate::proxy;
use crate::request_id::{self, X_REQUEST_ID, request_id};
use crate::router::{Route, Router};
use crate::telemetry::reject_reason;
use gatehouse_telemetry::grpc as grpc_metrics;
use gatehouse_telemetry::http as http_metrics;
use gatehouse_telemetry::rejections::Rejections;
use gatehouse_telemetry::{GrpcMetricsLayer, HttpMetricsLayer};

/// The client's address, set by the accept stage. The IP is rendered once
/// per connection, so no request formats it again.
#[derive(Clone, Debug)]
pub struct ClientAddr {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The peer's IP as text, for `x-forwarded-for` and the access log.
    pub ip: HeaderValue,
}

impl ClientAddr {
    /// Renders `addr` once.
    pub fn new(addr: SocketAddr) -> Self {
        let ip = HeaderValue::from_str(&addr.ip().to_string()).expect("an IP address is a valid header value");
        Self { addr, ip }
    }
}

/// What the gateway knows of a request before it goes upstream, in one
/// extension (one allocation) filled in by the stages in turn: the accept
/// stage sets the client, the request-id stage the id, the route stage the
/// route.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    /// The client's address; `None` only for requests that did not come
    /// through the accept stage.
    pub client: Option<ClientAddr>,
    /// When the request arrived, read once by the accept stage for every
    /// layer that measures it (see `gatehouse_telemetry::timing`); `None`
    /// only for requests that did not come through it.
    pub arrived: Option<Instant>,
    /// The request's id (`x-request-id`, kept or generated).
    pub id: Option<HeaderValue>,
    /// What the client's head holds; taken by the gateway's own stages
    /// once the telemetry layers have read it.
    pub head: Option<Head>,
    /// The route that takes the request: the route of the config in force
    /// when the request arrived, even if a reload swaps the table while the
    /// request is in flight.
    pub route: Option<Arc<Route>>,
    /// The watchdog of the HTTP/1 connection the request came on, which
    /// enforces its upstream timeout; `None` on HTTP/2, whose streams run
    /// in tasks of their own and use a timer each.
    pub deadline: Option<crate::accept::ConnDeadline>,
}

impl RequestMeta {
    /// The request's metadata, created empty if no stage has set any yet.
    pub fn of<B>(req: &mut Request<B>) -> &mut Self {
        req.extensions_mut().get_or_insert_default::<Self>()
    }

    /// Whether this is a gRPC request: from the head scan, or from the
    /// headers for a request that did not pass the first stage.
    pub fn is_grpc<B>(req: &Request<B>) -> bool {
        match req.extensions().get::<Self>().and_then(|m| m.head.as_ref()) {
            Some(head) => head.grpc,
            None => is_grpc(req),
        }
    }

    /// When the request arrived, for the telemetry layers.
    pub fn arrival(ext: &http::Extensions) -> Option<Instant> {
        ext.get::<Self>()?.arrived
    }

    /// The route's metric label and the arrival, for the HTTP RED layer:
    /// one lookup for both.
    pub fn telemetry(ext: &http::Extensions) -> (Option<&gatehouse_telemetry::RouteLabel>, Option<Instant>) {
        match ext.get::<Self>() {
            Some(meta) => (meta.route.as_deref().map(|r| &r.label), meta.arrived),
            None => (None, None),
        }
    }
}

/// The response body the public listener sends.
pub type PublicBody = LogBody<http_metrics::ResponseBody<grpc_metrics::ResponseBody<GatewayBody>>>;

/// Builds the public listener's service: every stage in request order.
pub fn public_service(
    gateway: Arc<Gateway>,
    access_log: AccessLogLayer,
    grpc_metrics: GrpcMetricsLayer,
) -> impl Service<Request<Incoming>, Response = Response<PublicBody>, Error = Infallible, Future: Send + Unpin>
+ Clone
+ Send
+ Unpin
+ 'static {
    let router = Arc::clone(&gateway);
    ServiceBuilder::new()
        // One stage for both: each stage moves the request once more.
        .map_request(move |req| router.annotate_route(read_head(req)))
        .layer(access_log)
        // HTTP and gRPC RED metrics each pass the other's requests through.
        .layer(HttpMetricsLayer::new().request_from(RequestMeta::telemetry))
        .layer(grpc_metrics.arrival_from(RequestMeta::arrival))
        .service_fn(move |req| {
            // One allocation keeps every future above this one small: hyper
            // moves the request's future into a task (HTTP/2) and each layer
            // moves it into its own, so its size is copied several times.
            Box::pin(gateway.handle(req).map(Ok::<_, Infallible>))
        })
}

fn read_head<B>(mut req: Request<B>) -> Request<B> {
    let head = Head::scan(req.headers());
    let id = request_id::kept_or_generated(head.request_id.as_ref());
    let meta = RequestMeta::of(&mut req);
    meta.id = Some(id);
    meta.head = Some(head);
    req
}

/// The stages after the telemetry layers: hygiene, rejection, proxy.
#[derive(Debug)]
pub struct Gateway {
    router: ArcSwap<Router>,
    limits: HeadLimits,
    auth: Auth,
    rejections: Rejections,
}

impl Gateway {
    /// Assembles the request path.
    pub fn new(router: Router, limits: HeadLimits, auth: Auth) -> Self {
        Self { router: ArcSwap::from_pointee(router), limits, auth, rejections: Rejections::new() }
    }

    /// Puts a new route table in force; requests already routed keep theirs.
    pub fn replace_router(&self, router: Router) {
        self.router.store(Arc::new(router));
    }

    fn annotate_route<B>(&self, mut req: Request<B>) -> Request<B> {
        let router = self.router.load();
        if let Some(route) = router.find(&req).map(Arc::clone) {
            RequestMeta::of(&mut req).route = Some(route);
        }
        req
    }

    /// Handles one annotated request. Never fails: gateway errors become
    /// responses in the client's protocol.
    ///
    /// Everything up to the upstream exchange runs here, before the future
    /// is built, and the future holds only what the exchange and the answer
    /// need. An `async fn` would keep the request (and every caller's copy
    /// of it) in its state for the whole exchange, making the future that
    /// is boxed and moved per request kilobytes larger.
    pub fn handle<B>(
        self: &Arc<Self>,
        mut req: Request<B>,
    ) -> impl Future<Output = Response<GatewayBody>> + Send + use<B>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let grpc = RequestMeta::is_grpc(&req);
        let meta = req.extensions_mut().get_mut::<RequestMeta>();
        let id = meta.as_ref().and_then(|m| m.id.clone());
        let route = meta.as_ref().and_then(|m| m.route.clone());
        // The telemetry layers are done with the head; the stages below take it.
        let head = meta.and_then(|m| m.head.take());
        let id = id.unwrap_or_else(|| request_id(req.headers()));
        let mut identity = None;
        let forwarding = match (hygiene::check(&req, self.limits, head.as_ref()), route) {
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err(GatewayError::NoRoute),
            (Ok(()), Some(route)) => {
                let (who, verdict) = self.auth.check(&route, req.headers_mut(), head.as_ref());
                identity = who;
                verdict.map(|()| proxy::forward(route, req, &id, head.as_ref()))
            }
        };
        match forwarding {
            Err(e) => Either::Left(std::future::ready(self.respond(Err(e), grpc, id, identity))),
            Ok(exchange) => {
                let gateway = Arc::clone(self);
                Either::Right(exchange.map(move |result| gateway.respond(result, grpc, id, identity)))
            }
        }
    }

    /// The client's response: the upstream's, or the gateway's error.
    fn respond(
        &self,
        result: Result<Response<GatewayBody>, GatewayError>,
        grpc: bool,
        id: HeaderValue,
        identity: Option<gatehouse_store::Identity>,
    ) -> Response<GatewayBody> {
        let mut res = match result {
            Ok(res) => res,
            Err(e) => {
                if let Some(reason) = reject_reason(e) {
                    self.rejections.reject(reason);
                }
                let mut res = e.into_response(grpc, &id);
                res.extensions_mut().insert(e);
                res
            }
        };
        if let Some(identity) = identity {
            res.extensions_mut().insert(IdentityId(identity.principal));
        }
        res.headers_mut().insert(&X_REQUEST_ID, id);
        res
    }
}

/// gRPC requests get gRPC errors; everything else gets JSON.
pub fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers().get(header::CONTENT_TYPE).is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

#[cfg(test)]
mod tests {
    use super::PublicBody;
    use crate::body::GatewayBody;

    /// Every response is moved through each layer on its way out, several
    /// times per request, and a larger one is copied with `memcpy` instead
    /// of a few moves: 16 bytes more in one of these types has cost
    /// 100–400 instructions per request. Grow them only with a callgrind
    /// count (`tests/bench/run --rounds 0`) that says it is worth it.
    #[test]
    fn the_bodies_moved_per_request_stay_small() {
        assert!(size_of::<GatewayBody>() <= 40, "GatewayBody is {} bytes", size_of::<GatewayBody>());
        assert!(size_of::<PublicBody>() <= 136, "PublicBody is {} bytes", size_of::<PublicBody>());
    }
}
