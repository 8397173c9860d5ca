//! Helpers for Gatehouse's black-box tests.
//!
//! Everything here drives the real binaries from the outside: [`binary`] builds
//! them once per test process, [`Echo`] and [`Gateway`] spawn them on port 0 and
//! wait for the `listening` log line that names the bound addresses, and the
//! client helpers speak HTTP/1.1, HTTP/2 or raw bytes to them. Nothing here
//! links against the gateway's code, so the tests see exactly what a user sees.

mod binaries;
mod client;
mod config_file;
mod echo;
mod fake_upstream;
mod gateway;
mod lines;
mod metrics;
mod raw;

pub use binaries::{binary, workspace_root};
pub use client::{
    Body, BoxError, Client, Collected, body_with_trailers, empty, full, generated, http1_client, http2_client, send,
    url,
};
pub use echo::Echo;
pub use fake_upstream::RecordingUpstream;
pub use gateway::{Gateway, Signal, StartError};
pub use lines::Lines;
pub use metrics::scrape;
pub use raw::{RAW_TIMEOUT, RawResponse, raw_http, raw_http_with_timeout, status_of, unused_addr};

/// How long a spawned binary may take to print its `listening` line.
pub const STARTUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
