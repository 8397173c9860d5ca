//! Reading the admin port's text endpoints.

use std::net::SocketAddr;

use http::Request;

use crate::{empty, http1_client, send, url};

/// `GET path` on `addr` (usually the admin listener); returns the body and
/// panics unless the answer is 200.
pub async fn scrape(addr: SocketAddr, path: &str) -> String {
    let request = Request::get(url(addr, path)).body(empty()).expect("a GET request with a valid URI builds");
    let response = send(&http1_client(), request).await;
    assert_eq!(response.status, 200, "GET {path} on {addr}: {}", response.text());
    response.text()
}
