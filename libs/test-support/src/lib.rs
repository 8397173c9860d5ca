//! Helpers for Gatehouse's black-box tests.
//!
//! Everything here drives the real binaries from the outside: [`binary`] builds
//! them once per test process, [`Echo`] and [`Gateway`] spawn them on port 0 and
//! wait for the `listening` log line that names the bound addresses, and the
//! client helpers speak HTTP/1.1, HTTP/2 or raw bytes to them. Nothing here
//! links against the gateway's code, so the tests see exactly what a user sees.

mod admin;
mod binaries;
mod client;
mod config_file;
mod echo;
mod fake_upstream;
mod gateway;
mod lines;
mod metrics;
mod raw;

mod admin_http;
mod database;
mod prom;
mod recording_grpc;
mod tcp_proxy;

mod exposition;
mod http_sink;
mod prometheus;

pub use admin::{POLL_INTERVAL, get, poll_until};
pub use admin_http::{ADMIN_CALL_TIMEOUT, ADMIN_ENV, ADMIN_TOKEN, AdminHttp, run_cli, run_cli_env_url, stdout_json};
pub use binaries::{BIN_DIR_ENV, binary, workspace_root};
pub use client::{
    Body, BoxError, Client, Collected, body_with_trailers, empty, full, generated, http1_client, http2_client, send,
    url,
};
pub use database::{Backend, POSTGRES_URL_ENV, TestDatabase, postgres_required};
pub use echo::Echo;
pub use fake_upstream::{RecordingUpstream, SilentUpstream};
pub use gateway::{Gateway, Signal, StartError, strip_ansi};
pub use lines::Lines;
pub use metrics::scrape;
pub use prom::{Sample, metric_value, samples};
pub use raw::{RAW_TIMEOUT, RawResponse, raw_http, raw_http_with_timeout, status_of, unused_addr};
pub use recording_grpc::{RecordedCall, RecordingGrpcUpstream};
pub use tcp_proxy::TcpProxy;

pub use exposition::{Exposition, Series, scrape_metrics, scrape_until};
pub use http_sink::{HttpSink, ReceivedRequest};
pub use prometheus::{
    PROMETHEUS_BIN, PROMTOOL_BIN, PromSample, PrometheusServer, PromtoolReport, prometheus_binary, prometheus_required,
    promtool_binary, promtool_check_metrics,
};

/// How long a spawned binary may take to print its `listening` line.
pub const STARTUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
