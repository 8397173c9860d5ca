//! Bodies on the request path. Both directions stream frame by frame; nothing
//! here buffers a body.
//!
//! - [`RequestBody`] wraps the client's request body on its way upstream. It
//!   enforces the route's size limit and remembers when the *client* broke
//!   the body (a malformed chunk, a limit overrun), so the proxy answers 400
//!   or 413 instead of blaming the upstream with a 502.
//! - [`GatewayBody`] is every response body the gateway sends: an upstream's
//!   streamed body or a small body the gateway wrote itself.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

use crate::error::GatewayError;
use crate::upstream::EndpointGuard;
use crate::upstream::pool::PooledBody;

/// What, if anything, the client did wrong while sending its body. Shared
/// between the body (which sees the fault) and the proxy (which answers).
#[derive(Debug, Default)]
pub struct ClientFault(AtomicU8);

const NO_FAULT: u8 = 0;
const TOO_LARGE: u8 = 1;
const MALFORMED: u8 = 2;

impl ClientFault {
    /// The error to answer with, when the client broke its body.
    pub fn error(&self) -> Option<GatewayError> {
        match self.0.load(Ordering::Acquire) {
            TOO_LARGE => Some(GatewayError::BodyTooLarge),
            MALFORMED => Some(GatewayError::BadRequest),
            _ => None,
        }
    }

    fn set(&self, fault: u8) {
        // The first fault wins: a limit overrun followed by a reset is still 413.
        let _ = self.0.compare_exchange(NO_FAULT, fault, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// A boxed error from any body on the request path.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request body stopped.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    /// The body grew past the route's limit.
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(u64),
    /// The client's body could not be read (malformed chunk, reset).
    #[error("request body could not be read: {0}")]
    Client(#[source] BoxError),
}

/// The client's request body, streamed upstream under a size limit.
///
/// The inner body is boxed because the layers in front of the proxy (metrics,
/// access log) wrap it in their own types, and the upstream client's type must
/// not depend on which layers are on. A request that came without a body
/// (most GETs) boxes nothing and shares no fault record.
pub struct RequestBody {
    inner: Option<Streaming>,
    limit: u64,
    remaining: u64,
}

struct Streaming {
    body: UnsyncBoxBody<Bytes, BoxError>,
    fault: Arc<ClientFault>,
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody").field("limit", &self.limit).field("remaining", &self.remaining).finish()
    }
}

/// Whether a request body is known to hold nothing: hyper records a
/// request without a body (an HTTP/1.1 GET, an HTTP/2 stream that ended
/// with its headers, `Content-Length: 0`) as an exact length of 0. Asked
/// through the size hint because an HTTP/2 body's `is_end_stream` takes
/// the connection's stream lock.
pub fn known_empty(body: &impl Body) -> bool {
    body.size_hint().exact() == Some(0)
}

impl RequestBody {
    /// Wraps `inner`, allowing at most `limit` bytes.
    pub fn new<B>(inner: B, limit: u64) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let inner = (!known_empty(&inner))
            .then(|| Streaming { body: inner.map_err(Into::into).boxed_unsync(), fault: Arc::default() });
        Self { inner, limit, remaining: limit }
    }

    /// Where the body records what the client did wrong while sending it;
    /// `None` for a request without a body, which cannot break one.
    pub fn fault(&self) -> Option<Arc<ClientFault>> {
        self.inner.as_ref().map(|s| Arc::clone(&s.fault))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        match ready!(Pin::new(&mut inner.body).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        inner.fault.set(TOO_LARGE);
                        return Poll::Ready(Some(Err(RequestBodyError::TooLarge(this.limit))));
                    }
                    this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                inner.fault.set(MALFORMED);
                Poll::Ready(Some(Err(RequestBodyError::Client(e))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|s| s.body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), |s| s.body.size_hint())
    }
}

/// An upstream's response body, measured by the upstream RED layer.
pub type UpstreamBody = gatehouse_telemetry::upstream::ResponseBody<PooledBody>;

/// Every response body the gateway sends.
#[derive(Debug)]
pub struct GatewayBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Empty,
    Full(Option<Bytes>),
    /// The upstream's body; the guard keeps the endpoint counted as busy
    /// until the body ends, so load balancing sees streams as load. Boxed:
    /// it is most of the response's size, and the response is moved
    /// through every layer on its way out, several times per request.
    Upstream(Box<(UpstreamBody, Option<EndpointGuard>)>),
}

impl GatewayBody {
    /// An empty body.
    pub fn empty() -> Self {
        Self { kind: Kind::Empty }
    }

    /// A body the gateway wrote itself.
    pub fn full(bytes: Bytes) -> Self {
        Self { kind: Kind::Full(Some(bytes)) }
    }

    /// An upstream's body, streamed through.
    pub fn upstream(body: UpstreamBody, guard: Option<EndpointGuard>) -> Self {
        Self { kind: Kind::Upstream(Box::new((body, guard))) }
    }
}

impl gatehouse_telemetry::Timed for GatewayBody {
    fn upstream_elapsed(&self) -> Option<std::time::Duration> {
        match &self.kind {
            Kind::Upstream(up) => up.0.upstream_elapsed(),
            Kind::Empty | Kind::Full(_) => None,
        }
    }

    fn ended_at(&self) -> Option<std::time::Instant> {
        match &self.kind {
            Kind::Upstream(up) => up.0.ended_at(),
            Kind::Empty | Kind::Full(_) => None,
        }
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(up) => Pin::new(&mut up.0).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream(up) => up.0.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(up) => up.0.size_hint(),
        }
    }
}
