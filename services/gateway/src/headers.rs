//! Header rewriting between client and upstream: hop-by-hop headers are
//! connection-scoped (RFC 9110 §7.6.1) and never forwarded.

use http::HeaderMap;
use http::header::{self, HeaderName};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes hop-by-hop headers, including those the `Connection` header
/// names. `TE: trailers` survives: gRPC needs it end to end. `Trailer` also
/// survives: it announces trailers, and hyper sends HTTP/1.1 trailers only
/// when they were announced.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names, comparing without hashing: most messages
    // carry none of these, and then nothing else is done.
    let te_other_than_trailers =
        headers.get(header::TE).is_some_and(|te| !te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !te_other_than_trailers && !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            if name != header::TE {
                headers.remove(name);
            }
        }
        headers.remove(header::CONNECTION);
    }
    for name in [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &header::PROXY_AUTHORIZATION,
        &header::PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    if te_other_than_trailers {
        headers.remove(header::TE);
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::PROXY_AUTHORIZATION
        || name == header::PROXY_AUTHENTICATE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn strips_standard_and_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let mut names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, vec!["te", "x-kept"]);
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h);
        assert!(!h.contains_key(header::TE));
        // Nothing hop-by-hop: left alone.
        let mut clean = HeaderMap::new();
        clean.insert("x-kept", HeaderValue::from_static("1"));
        clean.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut clean);
        assert_eq!(clean.len(), 2);
        // Each on its own is found.
        for name in ["keep-alive", "proxy-connection", "upgrade", "transfer-encoding", "proxy-authorization"] {
            let mut one = HeaderMap::new();
            one.insert(HeaderName::from_static(name), HeaderValue::from_static("x"));
            strip_hop_by_hop(&mut one);
            assert!(one.is_empty(), "{name}");
        }
    }
}
