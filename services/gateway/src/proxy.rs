//! Forwarding one request to its route's upstream cluster and streaming the
//! answer back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::Either;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use http_body::Body;

use crate::accept::TimedOut;
use crate::body::{BoxError, GatewayBody, RequestBody};
use crate::config::Protocol;
use crate::error::GatewayError;
use crate::head::{Field, Head};
use crate::headers::strip_hop_by_hop;
use crate::request_id::X_REQUEST_ID;
use crate::router::Route;
use crate::stack::RequestMeta;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Sends `req` to one endpoint of the route's cluster and returns its
/// response, or the error the client should see.
///
/// The request is rewritten and handed to the upstream client before the
/// future is built; the future holds the exchange and what the answer
/// needs, not the request (see [`crate::stack::Gateway::handle`]).
pub fn forward<B>(
    route: Arc<Route>,
    req: Request<B>,
    request_id: &HeaderValue,
    head: Option<&Head>,
) -> impl Future<Output = Result<Response<GatewayBody>, GatewayError>> + Send + use<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = req.into_parts();
    // What the head scan did not see is not looked up.
    let sent = |field| head.is_none_or(|h| h.has(field));

    // A declared length over the limit is refused before anything goes upstream;
    // a chunked body is counted as it streams (see `RequestBody`).
    let declared = sent(Field::ContentLength)
        .then(|| parts.headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse::<u64>().ok())
        .flatten();
    if declared.is_some_and(|len| len > route.max_body_bytes) {
        return Either::Left(std::future::ready(Err(GatewayError::BodyTooLarge)));
    }
    let timeout = if sent(Field::GrpcTimeout) { deadline(route.timeout, &parts.headers) } else { route.timeout };

    let Some(guard) = route.cluster.pick() else {
        return Either::Left(std::future::ready(Err(GatewayError::UpstreamUnavailable)));
    };
    let endpoint = guard.endpoint();

    let path = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    let original_authority = parts.uri.authority().cloned();
    let mut uri = http::uri::Parts::default();
    if route.cluster.protocol != Protocol::Http1 {
        // HTTP/2 sends scheme and authority as pseudo-headers; an HTTP/1
        // request line carries the path alone (origin-form).
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(endpoint.authority.clone());
    }
    uri.path_and_query = Some(path);
    parts.uri = match Uri::from_parts(uri) {
        Ok(uri) => uri,
        Err(_) => return Either::Left(std::future::ready(Err(GatewayError::BadRequest))),
    };

    if sent(Field::HopByHop) {
        strip_hop_by_hop(&mut parts.headers);
    }
    match route.cluster.protocol {
        Protocol::Http1 => {
            parts.version = Version::HTTP_11;
            // HTTP/2 clients name the host in :authority; HTTP/1 upstreams want Host.
            let has_host = head.map_or_else(|| parts.headers.contains_key(header::HOST), |h| h.hosts > 0);
            if !has_host {
                if let Some(a) = original_authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
                    parts.headers.insert(header::HOST, a);
                }
            }
        }
        Protocol::Http2 | Protocol::Grpc => {
            parts.version = Version::HTTP_2;
            // :authority carries the endpoint; a Host header is not allowed alongside.
            parts.headers.remove(header::HOST);
        }
    }
    parts.headers.insert(&X_REQUEST_ID, request_id.clone());
    let mut conn_deadline = None;
    let mut arrived = None;
    if let Some(meta) = parts.extensions.get_mut::<RequestMeta>() {
        conn_deadline = meta.deadline.take();
        arrived = meta.arrived;
        if let Some(client) = &meta.client {
            append_forwarded_for(&mut parts.headers, &client.ip, sent(Field::ForwardedFor));
        }
    }
    parts.headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));

    let body = RequestBody::new(body, route.max_body_bytes);
    let fault = body.fault();
    let upstream_req = Request::from_parts(parts, body);

    // The timeout runs from the request's arrival, whose clock reading the
    // telemetry layers share; the gateway's own time before this point is
    // microseconds.
    let due = due(arrived.unwrap_or_else(Instant::now), timeout);
    let exchange = route.cluster.metrics().measure(Arc::clone(&endpoint.pool).send(upstream_req));
    let answered = match conn_deadline {
        // HTTP/1: the connection's watchdog keeps the deadline, so the
        // request registers no timer of its own.
        Some(watch) => Either::Left(watch.timeout_at(due, exchange)),
        None => Either::Right(tokio::time::timeout_at(due.into(), exchange).map(|r| r.map_err(|_| TimedOut))),
    };
    Either::Right(answered.map(move |result| {
        let client_fault = || fault.as_ref().and_then(|f| f.error());
        match result {
            Err(TimedOut) => Err(GatewayError::UpstreamTimeout),
            Ok(Err(e)) => {
                // The client's own body fault explains the failure better than the upstream.
                let err = client_fault().unwrap_or(GatewayError::UpstreamUnavailable);
                tracing::debug!(upstream = %route.cluster.name, error = %e, error_type = err.code(), "upstream request failed");
                Err(err)
            }
            Ok(Ok(res)) => {
                if let Some(err) = client_fault() {
                    return Err(err);
                }
                let (mut parts, body) = res.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                // The client sees the version it spoke, whatever the upstream spoke.
                parts.version = Version::HTTP_11;
                Ok(Response::from_parts(parts, GatewayBody::upstream(body, Some(guard))))
            }
        }
    }))
}

/// Adds the client to `x-forwarded-for`; `sent` says whether the client
/// sent one to append to.
fn append_forwarded_for(headers: &mut http::HeaderMap, ip: &HeaderValue, sent: bool) {
    let value = match sent.then(|| headers.get(&X_FORWARDED_FOR)).flatten() {
        // The common case: no proxy in front, nothing to format.
        None => ip.clone(),
        Some(prev) => {
            let mut joined = Vec::with_capacity(prev.len() + 2 + ip.len());
            joined.extend_from_slice(prev.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(ip.as_bytes());
            match HeaderValue::from_bytes(&joined) {
                Ok(v) => v,
                Err(_) => return,
            }
        }
    };
    headers.insert(&X_FORWARDED_FOR, value);
}

/// `timeout` after `start`; a timeout too long for the clock (a config
/// may say `1000000y`) is the far future, never a panic.
fn due(start: Instant, timeout: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);
    start.checked_add(timeout).or_else(|| start.checked_add(FAR)).unwrap_or(start)
}

/// The route's timeout, shortened by a gRPC client's own `grpc-timeout`.
fn deadline(route_timeout: Duration, headers: &http::HeaderMap) -> Duration {
    headers
        .get(&GRPC_TIMEOUT)
        .and_then(|v| parse_grpc_timeout(v.as_bytes()))
        .map_or(route_timeout, |t| t.min(route_timeout))
}

/// Parses `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(v: &[u8]) -> Option<Duration> {
    let (unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_parses_and_shortens_the_route_timeout() {
        assert_eq!(parse_grpc_timeout(b"100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout(b"123456789S"), None);
        assert_eq!(parse_grpc_timeout(b"S"), None);
        assert_eq!(parse_grpc_timeout(b"10x"), None);
        let mut h = http::HeaderMap::new();
        h.insert(&GRPC_TIMEOUT, HeaderValue::from_static("50m"));
        assert_eq!(deadline(Duration::from_secs(5), &h), Duration::from_millis(50));
        h.insert(&GRPC_TIMEOUT, HeaderValue::from_static("50S"));
        assert_eq!(deadline(Duration::from_secs(5), &h), Duration::from_secs(5));
    }

    #[test]
    fn a_timeout_too_long_for_the_clock_is_the_far_future() {
        let now = Instant::now();
        assert_eq!(due(now, Duration::from_secs(2)), now + Duration::from_secs(2));
        assert!(due(now, Duration::MAX) > now + Duration::from_secs(365 * 86_400));
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = http::HeaderMap::new();
        append_forwarded_for(&mut h, &HeaderValue::from_static("10.0.0.1"), false);
        append_forwarded_for(&mut h, &HeaderValue::from_static("10.0.0.2"), true);
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 10.0.0.2");
    }
}
