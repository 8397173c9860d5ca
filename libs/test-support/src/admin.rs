//! Asking the admin port (or any listener) a question, once or until the
//! answer is the expected one.

use std::net::SocketAddr;
use std::time::Duration;

use http::Request;

use crate::{Collected, empty, http1_client, send, url};

/// How often [`poll_until`] asks again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// `GET path` on `addr` over a fresh HTTP/1.1 connection, whatever the
/// status; panics only if the exchange itself fails.
pub async fn get(addr: SocketAddr, path: &str) -> Collected {
    let request = Request::get(url(addr, path)).body(empty()).expect("a GET request with a valid URI builds");
    send(&http1_client(), request).await
}

/// Asks `GET path` on `addr` every [`POLL_INTERVAL`] until `done` accepts the
/// answer or `timeout` passes. Returns `Ok` with the accepted answer, or
/// `Err` with the last one seen.
pub async fn poll_until(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    mut done: impl FnMut(&Collected) -> bool,
) -> Result<Collected, Collected> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let response = get(addr, path).await;
        if done(&response) {
            return Ok(response);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(response);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
