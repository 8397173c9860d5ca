//! Front-door checks hyper does not make for us: exactly one `Host` on
//! HTTP/1.1, and header count and size limits that also hold on HTTP/2
//! (HTTP/1 limits are enforced earlier, by hyper's parser; see `accept`).

use http::{Request, Version, header};

use crate::error::GatewayError;
use crate::head::Head;

/// Edge limits on a request head.
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    /// Most header fields.
    pub max_headers: usize,
    /// Most bytes of header names and values.
    pub max_header_bytes: usize,
}

/// Rejects a request head the gateway will not forward.
/// `head`, when the first stage scanned one, already counted the `Host`s.
pub fn check<B>(req: &Request<B>, limits: HeadLimits, head: Option<&Head>) -> Result<(), GatewayError> {
    let headers = req.headers();
    let hosts = head.map_or_else(|| headers.get_all(header::HOST).iter().count(), |h| h.hosts);
    // RFC 9112 §3.2: an HTTP/1.1 request without Host, or with more than one,
    // gets 400. HTTP/2 carries :authority instead and may omit Host.
    if hosts > 1 || (hosts == 0 && req.version() == Version::HTTP_11) {
        return Err(GatewayError::BadRequest);
    }
    if headers.len() > limits.max_headers {
        return Err(GatewayError::HeadersTooLarge);
    }
    if req.version() == Version::HTTP_2 {
        let size: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
        if size > limits.max_header_bytes {
            return Err(GatewayError::HeadersTooLarge);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits { max_headers: 3, max_header_bytes: 64 };

    fn req(version: Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().version(version).uri("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap_or_default()
    }

    /// The verdict with and without a head scan, which must agree.
    fn verdict(req: &Request<()>, limits: HeadLimits) -> Result<(), GatewayError> {
        let scanned = check(req, limits, Some(&Head::scan(req.headers())));
        assert_eq!(scanned, check(req, limits, None), "{req:?}");
        scanned
    }

    #[test]
    fn host_rules() {
        assert_eq!(verdict(&req(Version::HTTP_11, &[("host", "a")]), LIMITS), Ok(()));
        assert_eq!(verdict(&req(Version::HTTP_11, &[]), LIMITS), Err(GatewayError::BadRequest));
        assert_eq!(
            verdict(&req(Version::HTTP_11, &[("host", "a"), ("host", "b")]), LIMITS),
            Err(GatewayError::BadRequest)
        );
        assert_eq!(verdict(&req(Version::HTTP_10, &[]), LIMITS), Ok(()));
        assert_eq!(verdict(&req(Version::HTTP_2, &[]), LIMITS), Ok(()));
    }

    #[test]
    fn header_limits() {
        let many = [("host", "a"), ("a", "1"), ("b", "1"), ("c", "1")];
        assert_eq!(verdict(&req(Version::HTTP_11, &many), LIMITS), Err(GatewayError::HeadersTooLarge));
        let big = "x".repeat(100);
        assert_eq!(verdict(&req(Version::HTTP_2, &[("a", &big)]), LIMITS), Err(GatewayError::HeadersTooLarge));
    }
}
