//! The command-line side of the admin API: `gatehouse keys …` and
//! `gatehouse audit …` call a running gateway's admin port over HTTP.
//!
//! The token comes from `GATEHOUSE_ADMIN_TOKEN` only, never from an
//! argument, so it does not show in `ps` or shell history.

use std::process::ExitCode;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::admin_api::ADMIN_TOKEN_ENV;

/// Where the admin port is, unless `--admin-url` says otherwise.
pub const ADMIN_URL_ENV: &str = "GATEHOUSE_ADMIN_URL";
/// The default admin URL.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:9090";

/// One admin call.
#[derive(Debug)]
pub struct Call {
    /// HTTP method.
    pub method: Method,
    /// Path and query under the admin URL.
    pub path: String,
    /// JSON body, if any.
    pub body: Option<Value>,
}

/// Makes `call` against `base` and prints the JSON answer. Exit code 0 on
/// success, 1 when the server refused, 2 when it could not be reached.
pub fn run(base: &str, call: Call, check: impl FnOnce(&Value) -> Result<(), String>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(send(base, call)) {
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Ok((status, body)) => {
            let pretty = serde_json::to_string_pretty(&body).unwrap_or_else(|_| body.to_string());
            if !status.is_success() {
                eprintln!("error: {status}: {pretty}");
                return ExitCode::FAILURE;
            }
            println!("{pretty}");
            match check(&body) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("error: {message}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn send(base: &str, call: Call) -> Result<(StatusCode, Value), String> {
    let uri = format!("{}{}", base.trim_end_matches('/'), call.path);
    let mut req = Request::builder().method(call.method).uri(&uri);
    if let Ok(token) = std::env::var(ADMIN_TOKEN_ENV) {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match &call.body {
        Some(v) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(v.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    let req = req.body(body).map_err(|e| format!("invalid admin URL {uri:?}: {e}"))?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let res = tokio::time::timeout(std::time::Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| format!("{uri}: no answer within 30 s"))?
        .map_err(|e| format!("cannot reach the admin API at {uri}: {e}"))?;
    let status = res.status();
    let bytes = res.into_body().collect().await.map_err(|e| format!("reading the answer: {e}"))?.to_bytes();
    let body =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, body))
}
