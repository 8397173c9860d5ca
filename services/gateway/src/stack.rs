//! The one place that composes the request path, in order. Each stage lives
//! in its own module; this file only decides the order and says why.
//!
//! ```text
//! accept (accept.rs: connection cap, HTTP/1 parser limits, header-read and idle timeouts)
//!   → request id            every later stage, log line and error body can name the request
//!   → [access log]          arrives with the logging issue; wraps everything below so
//!                           rejected requests are logged too
//!   → [RED metrics, server] arrives with the metrics issue; same reason
//!   → hygiene               malformed heads are the client's error, before any route counts them
//!   → route match           picks the route and its cluster; unmatched → 404 / UNIMPLEMENTED
//!   → [authenticate, rate limit, authorize]  arrive with the auth issue; need the route's rules
//!   → proxy                 timeout, balance, pooled client, streaming bodies
//! ```

use std::net::SocketAddr;

use http::{Request, Response, header};
use hyper::body::Incoming;

use crate::body::GatewayBody;
use crate::error::GatewayError;
use crate::hygiene::{self, HeadLimits};
use crate::proxy::{self, RequestContext};
use crate::request_id::{X_REQUEST_ID, request_id};
use crate::router::Router;

/// The public listener's request handler.
#[derive(Debug)]
pub struct Gateway {
    router: Router,
    limits: HeadLimits,
}

impl Gateway {
    /// Assembles the request path.
    pub fn new(router: Router, limits: HeadLimits) -> Self {
        Self { router, limits }
    }

    /// The route table.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Handles one request. Never fails: gateway errors become responses.
    pub async fn handle(&self, req: Request<Incoming>, client_addr: SocketAddr) -> Response<GatewayBody> {
        let ctx = RequestContext { request_id: request_id(req.headers()), client_addr };
        let grpc = is_grpc(&req);
        let mut res = match self.route_and_forward(req, &ctx).await {
            Ok(res) => res,
            Err(e) => e.into_response(grpc, &ctx.request_id),
        };
        res.headers_mut().insert(&X_REQUEST_ID, ctx.request_id);
        res
    }

    async fn route_and_forward(
        &self,
        req: Request<Incoming>,
        ctx: &RequestContext,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        hygiene::check(&req, self.limits)?;
        let route = self.router.find(&req).ok_or(GatewayError::NoRoute)?;
        proxy::forward(route, req, ctx).await
    }
}

/// gRPC requests get gRPC errors; everything else gets JSON.
pub fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers().get(header::CONTENT_TYPE).is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}
