//! What a client's request head holds, read in one pass over its header
//! names when the request arrives.
//!
//! Every later stage asks the head something: is there a request id, a
//! key, a `Host`, a `grpc-timeout`, a hop-by-hop header? Each `HeaderMap`
//! lookup hashes the name and probes, about 100 instructions, and most of
//! the answers are "no". One walk over the names compares without hashing,
//! so a stage looks a header up only when the scan saw it.

use http::header::{HeaderMap, HeaderValue};

/// The scan's findings. Headers the gateway itself adds later (the
/// identity, forwarding headers) are not in it: it describes what the
/// client sent.
#[derive(Clone, Debug, Default)]
pub struct Head {
    /// The client's `x-request-id`, if any (validated by the request-id stage).
    pub request_id: Option<HeaderValue>,
    /// The client's `traceparent`, if any.
    pub traceparent: Option<HeaderValue>,
    /// A gRPC request: `content-type: application/grpc…`.
    pub grpc: bool,
    /// How many `Host` fields (two or more is the client's error).
    pub hosts: usize,
    present: u16,
}

/// Names the scan records as present or absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Field {
    /// `authorization`.
    Authorization = 1,
    /// `x-api-key`.
    ApiKey = 1 << 1,
    /// `x-gatehouse-identity`, which clients may not send.
    Identity = 1 << 2,
    /// Any hop-by-hop header, `te` included (`headers::strip_hop_by_hop`
    /// decides what goes).
    HopByHop = 1 << 3,
    /// `content-length`.
    ContentLength = 1 << 4,
    /// `grpc-timeout`.
    GrpcTimeout = 1 << 5,
    /// `x-forwarded-for`.
    ForwardedFor = 1 << 6,
}

impl Head {
    /// Scans `headers` once.
    pub fn scan(headers: &HeaderMap) -> Self {
        let mut head = Self::default();
        for (name, value) in headers {
            let field = match name.as_str() {
                "host" => {
                    head.hosts += 1;
                    continue;
                }
                "content-type" => {
                    head.grpc = value.as_bytes().starts_with(b"application/grpc");
                    continue;
                }
                "x-request-id" => {
                    head.request_id.get_or_insert_with(|| value.clone());
                    continue;
                }
                "traceparent" => {
                    head.traceparent.get_or_insert_with(|| value.clone());
                    continue;
                }
                "authorization" => Field::Authorization,
                "x-api-key" => Field::ApiKey,
                "x-gatehouse-identity" => Field::Identity,
                "connection"
                | "keep-alive"
                | "proxy-connection"
                | "transfer-encoding"
                | "upgrade"
                | "te"
                | "proxy-authorization"
                | "proxy-authenticate" => Field::HopByHop,
                "content-length" => Field::ContentLength,
                "grpc-timeout" => Field::GrpcTimeout,
                "x-forwarded-for" => Field::ForwardedFor,
                _ => continue,
            };
            head.present |= field as u16;
        }
        head
    }

    /// Whether the client sent `field`.
    pub fn has(&self, field: Field) -> bool {
        self.present & field as u16 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    #[test]
    fn one_pass_finds_what_lookups_would() {
        let mut h = HeaderMap::new();
        h.append(header::HOST, HeaderValue::from_static("a"));
        h.append(header::HOST, HeaderValue::from_static("b"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc+proto"));
        h.insert("x-request-id", HeaderValue::from_static("id-1"));
        h.insert("traceparent", HeaderValue::from_static("00-abc-def-01"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-api-key", HeaderValue::from_static("k"));
        h.insert("x-unrelated", HeaderValue::from_static("1"));
        let head = Head::scan(&h);
        assert_eq!(head.hosts, 2);
        assert!(head.grpc);
        assert_eq!(head.request_id.as_ref().map(HeaderValue::as_bytes), Some(&b"id-1"[..]));
        assert_eq!(head.traceparent.as_ref().map(HeaderValue::as_bytes), Some(&b"00-abc-def-01"[..]));
        assert!(head.has(Field::HopByHop) && head.has(Field::ApiKey));
        for absent in [Field::Authorization, Field::Identity, Field::ContentLength, Field::GrpcTimeout] {
            assert!(!head.has(absent), "{absent:?}");
        }

        let empty = Head::scan(&HeaderMap::new());
        assert_eq!((empty.hosts, empty.grpc, empty.request_id.is_none()), (0, false, true));
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for name in ["connection", "upgrade", "proxy-authenticate", "content-length", "grpc-timeout", "x-forwarded-for"]
        {
            h.insert(http::HeaderName::from_static(name), HeaderValue::from_static("x"));
        }
        let head = Head::scan(&h);
        assert!(!head.grpc);
        for present in [Field::HopByHop, Field::ContentLength, Field::GrpcTimeout, Field::ForwardedFor] {
            assert!(head.has(present), "{present:?}");
        }
    }
}
