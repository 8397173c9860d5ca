//! gRPC status codes, named as go-grpc-prometheus writes them, and where a
//! call's status is read from.

use http::header::HeaderName;
use http::{HeaderMap, StatusCode};

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// A gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum GrpcCode {
    /// Not an error.
    Ok = 0,
    /// The call was cancelled, usually by the caller.
    Canceled = 1,
    /// An error with no better code, or a call that ended without a status.
    Unknown = 2,
    /// The client sent an invalid argument.
    InvalidArgument = 3,
    /// The deadline expired.
    DeadlineExceeded = 4,
    /// Something requested was not found.
    NotFound = 5,
    /// Something to be created already exists.
    AlreadyExists = 6,
    /// The caller may not do this.
    PermissionDenied = 7,
    /// A quota or resource ran out.
    ResourceExhausted = 8,
    /// The system is not in a state that allows this.
    FailedPrecondition = 9,
    /// Aborted, typically by a concurrency conflict.
    Aborted = 10,
    /// Out of the valid range.
    OutOfRange = 11,
    /// Not implemented or not supported.
    Unimplemented = 12,
    /// An internal invariant broke.
    Internal = 13,
    /// The service is unavailable right now.
    Unavailable = 14,
    /// Unrecoverable data loss.
    DataLoss = 15,
    /// The caller has no valid credentials.
    Unauthenticated = 16,
}

impl GrpcCode {
    /// All 17 codes, in numeric order.
    pub const ALL: [GrpcCode; 17] = [
        Self::Ok,
        Self::Canceled,
        Self::Unknown,
        Self::InvalidArgument,
        Self::DeadlineExceeded,
        Self::NotFound,
        Self::AlreadyExists,
        Self::PermissionDenied,
        Self::ResourceExhausted,
        Self::FailedPrecondition,
        Self::Aborted,
        Self::OutOfRange,
        Self::Unimplemented,
        Self::Internal,
        Self::Unavailable,
        Self::DataLoss,
        Self::Unauthenticated,
    ];

    /// The `grpc_code` label value (go-grpc-prometheus spelling, e.g. `Canceled`).
    pub fn as_str(self) -> &'static str {
        const NAMES: [&str; 17] = [
            "OK",
            "Canceled",
            "Unknown",
            "InvalidArgument",
            "DeadlineExceeded",
            "NotFound",
            "AlreadyExists",
            "PermissionDenied",
            "ResourceExhausted",
            "FailedPrecondition",
            "Aborted",
            "OutOfRange",
            "Unimplemented",
            "Internal",
            "Unavailable",
            "DataLoss",
            "Unauthenticated",
        ];
        NAMES[self as usize]
    }

    /// The code with this number; numbers outside 0..=16 are `Unknown`.
    pub fn from_number(n: u32) -> Self {
        usize::try_from(n).ok().and_then(|i| Self::ALL.get(i)).copied().unwrap_or(Self::Unknown)
    }

    /// The `grpc-status` in a header or trailer block, if any. A value that
    /// is not a number counts as `Unknown`, as a client would read it.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(&GRPC_STATUS)?;
        let n = std::str::from_utf8(value.as_bytes()).ok().and_then(|s| s.trim().parse::<u32>().ok());
        Some(n.map_or(Self::Unknown, Self::from_number))
    }

    /// The code a client derives from a non-200 HTTP status without a
    /// `grpc-status` (gRPC's HTTP-to-gRPC status mapping).
    pub fn from_http_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => Self::Internal,
            401 => Self::Unauthenticated,
            403 => Self::PermissionDenied,
            404 => Self::Unimplemented,
            429 | 502..=504 => Self::Unavailable,
            _ => Self::Unknown,
        }
    }

    /// The status a response head settles, if it settles one: a
    /// trailers-only response's `grpc-status`, or a non-200 HTTP status.
    /// `None` means the status comes in the trailers.
    pub(crate) fn from_response_head(status: StatusCode, headers: &HeaderMap) -> Option<Self> {
        Self::from_headers(headers).or_else(|| (status != StatusCode::OK).then(|| Self::from_http_status(status)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn names_numbers_and_mapping() {
        assert_eq!(GrpcCode::ALL.len(), 17);
        for (i, c) in GrpcCode::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            assert_eq!(GrpcCode::from_number(i as u32), *c);
        }
        assert_eq!(GrpcCode::Ok.as_str(), "OK");
        assert_eq!(GrpcCode::Canceled.as_str(), "Canceled");
        assert_eq!(GrpcCode::from_number(99), GrpcCode::Unknown);
        assert_eq!(GrpcCode::from_http_status(StatusCode::NOT_FOUND), GrpcCode::Unimplemented);
        assert_eq!(GrpcCode::from_http_status(StatusCode::SERVICE_UNAVAILABLE), GrpcCode::Unavailable);
        assert_eq!(GrpcCode::from_http_status(StatusCode::TOO_MANY_REQUESTS), GrpcCode::Unavailable);
        assert_eq!(GrpcCode::from_http_status(StatusCode::UNAUTHORIZED), GrpcCode::Unauthenticated);
        assert_eq!(GrpcCode::from_http_status(StatusCode::FORBIDDEN), GrpcCode::PermissionDenied);
        assert_eq!(GrpcCode::from_http_status(StatusCode::IM_A_TEAPOT), GrpcCode::Unknown);

        let mut h = HeaderMap::new();
        assert_eq!(GrpcCode::from_response_head(StatusCode::OK, &h), None);
        assert_eq!(GrpcCode::from_response_head(StatusCode::BAD_GATEWAY, &h), Some(GrpcCode::Unavailable));
        h.insert("grpc-status", HeaderValue::from_static("5"));
        assert_eq!(GrpcCode::from_response_head(StatusCode::OK, &h), Some(GrpcCode::NotFound));
        assert_eq!(GrpcCode::from_response_head(StatusCode::BAD_GATEWAY, &h), Some(GrpcCode::NotFound));
        h.insert("grpc-status", HeaderValue::from_static("x"));
        assert_eq!(GrpcCode::from_headers(&h), Some(GrpcCode::Unknown));
    }
}
