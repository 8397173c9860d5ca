//! Errors the gateway itself answers with, and their one rendering for HTTP
//! (a JSON body) and one for gRPC (a trailers-only response).
//!
//! Each error knows which side caused it, which picks the status code, the
//! `gateway_requests_rejected_total{reason}` label and the access log's
//! `error_type`. Messages never include internals such as upstream addresses.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::GatewayBody;

/// What went wrong, from the client's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// No route takes the request.
    #[error("no route matches this request")]
    NoRoute,
    /// The route needs a valid API key and none was presented.
    #[error("a valid API key is required")]
    Unauthenticated,
    /// The key lacks a scope the route needs.
    #[error("the API key lacks a required scope")]
    Forbidden,
    /// The caller is over its rate limit.
    #[error("rate limit exceeded")]
    RateLimited,
    /// The gateway is shedding load.
    #[error("the gateway is overloaded")]
    Overloaded,
    /// The upstream's circuit breaker is open.
    #[error("the upstream is unavailable (circuit open)")]
    CircuitOpen,
    /// The request body exceeds the route's limit.
    #[error("the request body is larger than this route allows")]
    BodyTooLarge,
    /// The request header block exceeds the edge limits.
    #[error("the request headers are too large")]
    HeadersTooLarge,
    /// The request is malformed.
    #[error("the request is malformed")]
    BadRequest,
    /// The upstream did not answer within the route's timeout.
    #[error("the upstream did not answer in time")]
    UpstreamTimeout,
    /// No upstream endpoint could be reached, or it failed mid-request.
    #[error("the upstream is unreachable")]
    UpstreamUnavailable,
}

/// gRPC status codes the gateway produces.
mod grpc_code {
    pub(super) const DEADLINE_EXCEEDED: u8 = 4;
    pub(super) const PERMISSION_DENIED: u8 = 7;
    pub(super) const RESOURCE_EXHAUSTED: u8 = 8;
    pub(super) const INVALID_ARGUMENT: u8 = 3;
    pub(super) const UNIMPLEMENTED: u8 = 12;
    pub(super) const UNAVAILABLE: u8 = 14;
    pub(super) const UNAUTHENTICATED: u8 = 16;
}

impl GatewayError {
    /// Every variant, for pre-seeding metric series and for tests.
    pub const ALL: [GatewayError; 11] = [
        Self::NoRoute,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::RateLimited,
        Self::Overloaded,
        Self::CircuitOpen,
        Self::BodyTooLarge,
        Self::HeadersTooLarge,
        Self::BadRequest,
        Self::UpstreamTimeout,
        Self::UpstreamUnavailable,
    ];

    /// The stable machine-readable code: JSON `error.code` and log `error_type`.
    pub fn code(self) -> &'static str {
        match self {
            Self::NoRoute => "no_route",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::CircuitOpen => "circuit_open",
            Self::BodyTooLarge => "body_too_large",
            Self::HeadersTooLarge => "headers_too_large",
            Self::BadRequest => "bad_request",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamUnavailable => "upstream_unavailable",
        }
    }

    /// The HTTP status for non-gRPC clients.
    pub fn http_status(self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded | Self::CircuitOpen => StatusCode::SERVICE_UNAVAILABLE,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
        }
    }

    /// The gRPC status code for gRPC clients.
    pub fn grpc_status(self) -> u8 {
        use grpc_code::*;
        match self {
            Self::NoRoute => UNIMPLEMENTED,
            Self::Unauthenticated => UNAUTHENTICATED,
            Self::Forbidden => PERMISSION_DENIED,
            Self::RateLimited | Self::BodyTooLarge | Self::HeadersTooLarge => RESOURCE_EXHAUSTED,
            Self::Overloaded | Self::CircuitOpen | Self::UpstreamUnavailable => UNAVAILABLE,
            Self::BadRequest => INVALID_ARGUMENT,
            Self::UpstreamTimeout => DEADLINE_EXCEEDED,
        }
    }

    /// Renders the error for the client: JSON for HTTP, trailers-only for gRPC.
    pub fn into_response(self, grpc: bool, request_id: &HeaderValue) -> Response<GatewayBody> {
        if grpc { self.grpc_response() } else { self.http_response(request_id) }
    }

    fn http_response(self, request_id: &HeaderValue) -> Response<GatewayBody> {
        let body = serde_json::json!({
            "error": {
                "code": self.code(),
                "message": self.to_string(),
                "request_id": request_id.to_str().unwrap_or_default(),
            }
        });
        let mut res = Response::new(GatewayBody::full(Bytes::from(body.to_string())));
        *res.status_mut() = self.http_status();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res
    }

    /// A trailers-only response: status and message travel in the headers,
    /// with an empty body, as the gRPC over HTTP/2 spec allows for errors.
    fn grpc_response(self) -> Response<GatewayBody> {
        let mut res = Response::new(GatewayBody::empty());
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert("grpc-status", HeaderValue::from(u16::from(self.grpc_status())));
        // The messages are static ASCII without characters needing
        // percent-encoding, so they are valid header values as they are.
        h.insert("grpc-message", HeaderValue::from_static(self.static_message()));
        res
    }

    fn static_message(self) -> &'static str {
        match self {
            Self::NoRoute => "no route matches this request",
            Self::Unauthenticated => "a valid API key is required",
            Self::Forbidden => "the API key lacks a required scope",
            Self::RateLimited => "rate limit exceeded",
            Self::Overloaded => "the gateway is overloaded",
            Self::CircuitOpen => "the upstream is unavailable (circuit open)",
            Self::BodyTooLarge => "the request body is larger than this route allows",
            Self::HeadersTooLarge => "the request headers are too large",
            Self::BadRequest => "the request is malformed",
            Self::UpstreamTimeout => "the upstream did not answer in time",
            Self::UpstreamUnavailable => "the upstream is unreachable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_mapping() {
        let rows: Vec<(&str, u16, u8)> =
            GatewayError::ALL.iter().map(|e| (e.code(), e.http_status().as_u16(), e.grpc_status())).collect();
        assert_eq!(
            rows,
            vec![
                ("no_route", 404, 12),
                ("unauthenticated", 401, 16),
                ("forbidden", 403, 7),
                ("rate_limited", 429, 8),
                ("overloaded", 503, 14),
                ("circuit_open", 503, 14),
                ("body_too_large", 413, 8),
                ("headers_too_large", 431, 8),
                ("bad_request", 400, 3),
                ("upstream_timeout", 504, 4),
                ("upstream_unavailable", 502, 14),
            ]
        );
    }

    #[test]
    fn static_messages_match_display_and_are_header_safe() {
        for e in GatewayError::ALL {
            assert_eq!(e.static_message(), e.to_string());
            let res = e.into_response(true, &HeaderValue::from_static("id"));
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.headers()["grpc-status"], e.grpc_status().to_string().as_str());
        }
    }

    #[test]
    fn http_errors_are_json_with_the_request_id() {
        let res = GatewayError::NoRoute.into_response(false, &HeaderValue::from_static("abc"));
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    }
}
