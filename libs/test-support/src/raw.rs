//! Raw-socket HTTP/1.1, for requests no well-behaved client would send.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long [`raw_http`] waits for the server to answer and close.
pub const RAW_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes `request` to a fresh connection to `addr` and returns what the
/// server sends back (lossily decoded), read until the first response is
/// complete, the server closes, or [`RAW_TIMEOUT`] passes.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> String {
    raw_http_with_timeout(addr, request, RAW_TIMEOUT).await
}

/// [`raw_http`] with a chosen timeout.
pub async fn raw_http_with_timeout(addr: SocketAddr, request: &[u8], timeout: Duration) -> String {
    let stream = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    let (mut reader, mut writer) = stream.into_split();
    let request = request.to_vec();
    // Write concurrently with reading: a server may answer (and close) before
    // it has read everything, and the test wants that answer. The write half
    // is never shut down, so the server does not see a half-closed client.
    let write = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut response = Vec::new();
    let read = async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
            if message_len(&response).is_some() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    write.abort();
    String::from_utf8_lossy(&response).into_owned()
}

/// The status code of a raw HTTP/1.x response, if it starts with a status line.
pub fn status_of(response: &str) -> Option<u16> {
    let mut parts = response.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// A raw HTTP/1.x response, split into its parts, the body de-chunked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lowercased) and values, in order, repeats kept.
    pub headers: Vec<(String, String)>,
    /// The body, with chunked transfer coding removed.
    pub body: String,
}

impl RawResponse {
    /// Parses what [`raw_http`] returned; `None` unless it holds a status
    /// line and a complete header block.
    pub fn parse(raw: &str) -> Option<Self> {
        let (head, rest) = raw.split_once("\r\n\r\n")?;
        let mut lines = head.split("\r\n");
        let status = status_of(lines.next()?)?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let chunked = headers.iter().any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
        let body = if chunked { dechunk(rest) } else { rest.to_owned() };
        Some(Self { status, headers, body })
    }

    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.body))
    }
}

/// The data of a chunked body, as far as it is well-formed.
fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size_line, after)) = rest.split_once("\r\n") {
        let size = size_line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size, 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").unwrap_or(&after[size..]);
    }
    body
}

/// An address where nothing listens: a port the OS just handed out and took back.
pub fn unused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.local_addr().expect("a bound listener has an address")
}

/// Length of the first complete HTTP/1.1 message (request or response) at the
/// start of `buf`, or `None` if it is incomplete, malformed, or (for a
/// response without length or chunking) delimited by the connection closing.
pub(crate) fn message_len(buf: &[u8]) -> Option<usize> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let is_response = head.starts_with("http/");
    let mut content_length = None;
    let mut chunked = false;
    for line in head.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            match name.trim() {
                "content-length" => content_length = value.trim().parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.contains("chunked"),
                _ => {}
            }
        }
    }
    if chunked {
        return chunked_end(buf, head_end);
    }
    match content_length {
        Some(len) => (buf.len() >= head_end + len).then_some(head_end + len),
        None if is_response => None,
        None => Some(head_end),
    }
}

fn chunked_end(buf: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let line_end = pos + find(&buf[pos..], b"\r\n")?;
        let line = std::str::from_utf8(&buf[pos..line_end]).ok()?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        pos = line_end + 2;
        if size == 0 {
            if buf[pos..].starts_with(b"\r\n") {
                return Some(pos + 2);
            }
            return Some(pos + find(&buf[pos..], b"\r\n\r\n")? + 4);
        }
        if buf.len() < pos + size + 2 {
            return None;
        }
        pos += size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_len_handles_lengths_and_chunks() {
        assert_eq!(message_len(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Some(27));
        assert_eq!(message_len(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nh"), None);
        assert_eq!(message_len(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"), Some(40));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
        assert_eq!(message_len(chunked), Some(chunked.len()));
        assert_eq!(message_len(&chunked[..chunked.len() - 1]), None);
        let trailers = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-a: 1\r\n\r\n";
        assert_eq!(message_len(trailers), Some(trailers.len()));
        assert_eq!(message_len(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"), None);
        assert_eq!(message_len(b"HTTP/1.1 200 OK\r\n\r\nbody"), None);
    }

    #[test]
    fn raw_responses_parse_with_and_without_chunking() {
        let plain =
            RawResponse::parse("HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\nX-A: b\r\n\r\n{}").expect("parses");
        assert_eq!(plain.status, 400);
        assert_eq!(plain.header("x-a"), Some("b"));
        assert_eq!(plain.body, "{}");
        let chunked =
            RawResponse::parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                .expect("parses");
        assert_eq!(chunked.body, "abcde");
    }

    #[test]
    fn status_of_reads_the_status_line() {
        assert_eq!(status_of("HTTP/1.1 431 Request Header Fields Too Large\r\n"), Some(431));
        assert_eq!(status_of(""), None);
    }
}
