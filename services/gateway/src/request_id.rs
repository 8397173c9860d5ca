//! `x-request-id`: kept when the client sent a sane one, generated otherwise.

use http::HeaderValue;
use http::header::HeaderName;

/// The header's name.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied id kept; longer ones are replaced.
const MAX_LEN: usize = 128;

/// The id for this request: the client's, if it is 1–128 visible ASCII
/// characters other than `"` and `\`, else a fresh random 128-bit id in
/// hex. Either way it goes into JSON (log lines, error bodies) as it is.
pub fn request_id(headers: &http::HeaderMap) -> HeaderValue {
    kept_or_generated(headers.get(&X_REQUEST_ID))
}

/// [`request_id`] for the client's `x-request-id` value, when it sent one.
pub fn kept_or_generated(client: Option<&HeaderValue>) -> HeaderValue {
    let mut id = match client {
        Some(v) if sane(v.as_bytes()) => v.clone(),
        _ => generate(),
    };
    // Unique per request, so an HTTP/2 peer gains nothing from it in its
    // HPACK table: marked sensitive, it is sent as a literal that is never
    // indexed, instead of evicting a useful entry from both ends' tables
    // on every response.
    id.set_sensitive(true);
    id
}

fn sane(b: &[u8]) -> bool {
    !b.is_empty() && b.len() <= MAX_LEN && b.iter().all(|c| c.is_ascii_graphic() && !matches!(c, b'"' | b'\\'))
}

fn generate() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u128(..);
    let mut out = [0u8; 32];
    for slot in out.iter_mut().rev() {
        *slot = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    HeaderValue::from_bytes(&out).expect("hex digits are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_ids_and_replaces_others() {
        let mut h = http::HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert_eq!(request_id(&h).len(), 32);
        for quoted in ["a\"b", "a\\b"] {
            h.insert(&X_REQUEST_ID, HeaderValue::from_static(quoted));
            assert_eq!(request_id(&h).len(), 32, "{quoted}");
        }
        h.insert(&X_REQUEST_ID, HeaderValue::from_str(&"x".repeat(200)).expect("valid"));
        assert_eq!(request_id(&h).len(), 32);
        assert_ne!(generate(), generate());
    }

    #[test]
    fn ids_are_never_indexed_by_hpack() {
        let mut h = http::HeaderMap::new();
        assert!(request_id(&h).is_sensitive(), "generated");
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert!(request_id(&h).is_sensitive(), "kept");
        assert!(!h[&X_REQUEST_ID].is_sensitive(), "the client's own header is left as it was");
    }
}
