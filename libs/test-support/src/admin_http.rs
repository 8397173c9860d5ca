//! The gateway's admin API from the outside: its HTTP JSON mirror under
//! `/v1/`, and the `gatehouse keys|audit` command line that calls it.

use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::time::Duration;

use http::{Method, Request, header};
use serde_json::Value;

use http_body_util::BodyExt;

use crate::{Collected, binary, empty, full, http1_client, url};

/// The bootstrap admin token tests start gateways with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The environment a gateway needs for its admin API to accept
/// [`ADMIN_TOKEN`], for [`Gateway::start_with_env`](crate::Gateway::start_with_env).
pub const ADMIN_ENV: [(&str, &str); 1] = [("GATEHOUSE_ADMIN_TOKEN", ADMIN_TOKEN)];

/// How long one admin call may take before the test gives up on it.
pub const ADMIN_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP client for one gateway's admin API, presenting one credential.
#[derive(Clone, Debug)]
pub struct AdminHttp {
    addr: SocketAddr,
    token: Option<String>,
}

impl AdminHttp {
    /// A client for the admin listener at `addr` that sends
    /// `Authorization: Bearer <token>`, or no credential for `None`.
    pub fn new(addr: SocketAddr, token: Option<&str>) -> Self {
        Self { addr, token: token.map(str::to_owned) }
    }

    /// A client presenting the bootstrap [`ADMIN_TOKEN`].
    pub fn admin(addr: SocketAddr) -> Self {
        Self::new(addr, Some(ADMIN_TOKEN))
    }

    /// The same admin listener with another credential.
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self::new(self.addr, token)
    }

    /// Sends `method path` with `body` (sent as `application/json` when
    /// given) and reads the whole answer, whatever its status. Panics if the
    /// exchange fails or takes longer than [`ADMIN_CALL_TIMEOUT`].
    pub async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Collected {
        self.try_call(method.clone(), path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} on the admin port {}: {e}", self.addr))
    }

    /// Like [`AdminHttp::call`], but a failed exchange (connection refused
    /// or cut, no answer within [`ADMIN_CALL_TIMEOUT`]) is an `Err`, for
    /// calls whose server may go away.
    pub async fn try_call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Collected, String> {
        let mut request = Request::builder().method(method).uri(url(self.addr, path));
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(bytes) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                full(bytes)
            }
            None => empty(),
        };
        let request = request.body(body).map_err(|e| format!("building the request: {e}"))?;
        let exchange = async {
            let response = http1_client().request(request).await.map_err(|e| format!("request failed: {e:?}"))?;
            let (parts, body) = response.into_parts();
            let collected = body.collect().await.map_err(|e| format!("reading the body failed: {e:?}"))?;
            let trailers = collected.trailers().cloned();
            Ok(Collected { status: parts.status, headers: parts.headers, body: collected.to_bytes(), trailers })
        };
        tokio::time::timeout(ADMIN_CALL_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {ADMIN_CALL_TIMEOUT:?}")))
    }

    /// `POST /v1/keys` with `body` as it is (any bytes).
    pub async fn create_raw(&self, body: impl Into<Vec<u8>>) -> Collected {
        self.call(Method::POST, "/v1/keys", Some(body.into())).await
    }

    /// `POST /v1/keys` with a JSON body.
    pub async fn create(&self, body: &Value) -> Collected {
        self.create_raw(body.to_string()).await
    }

    /// Creates a key for `principal` with `scopes` that never expires;
    /// panics unless the answer is 201. Returns the answer's JSON (with
    /// `id` and `key`).
    pub async fn create_key(&self, principal: &str, scopes: &[&str]) -> Value {
        let response = self.create(&serde_json::json!({ "principal": principal, "scopes": scopes })).await;
        assert_eq!(response.status, 201, "creating a key for {principal}: {}", response.text());
        response.json()
    }

    /// `GET /v1/keys`.
    pub async fn list(&self) -> Collected {
        self.call(Method::GET, "/v1/keys", None).await
    }

    /// Every key, from `GET /v1/keys`; panics unless the answer is 200.
    pub async fn keys(&self) -> Vec<Value> {
        let response = self.list().await;
        assert_eq!(response.status, 200, "listing keys: {}", response.text());
        response.json()["keys"].as_array().cloned().unwrap_or_else(|| panic!("no keys array: {}", response.text()))
    }

    /// `DELETE /v1/keys/{id}`; `id` goes into the path as it is.
    pub async fn revoke(&self, id: &str) -> Collected {
        self.call(Method::DELETE, &format!("/v1/keys/{id}"), None).await
    }

    /// `GET /v1/audit` with `query` (such as `after=3&limit=10`, or empty).
    pub async fn audit_page(&self, query: &str) -> Collected {
        let path = if query.is_empty() { "/v1/audit".to_owned() } else { format!("/v1/audit?{query}") };
        self.call(Method::GET, &path, None).await
    }

    /// The whole audit trail, page by page; panics unless every answer is 200.
    pub async fn audit_events(&self) -> Vec<Value> {
        let mut events: Vec<Value> = Vec::new();
        loop {
            let after = events.last().and_then(|e| e["seq"].as_u64()).unwrap_or(0);
            let response = self.audit_page(&format!("after={after}&limit=1000")).await;
            assert_eq!(response.status, 200, "listing audit events: {}", response.text());
            let page = response.json()["events"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| panic!("no events array: {}", response.text()));
            if page.is_empty() {
                return events;
            }
            events.extend(page);
        }
    }

    /// `GET /v1/audit/verify`; panics unless the answer is 200.
    pub async fn verify(&self) -> Value {
        let response = self.call(Method::GET, "/v1/audit/verify", None).await;
        assert_eq!(response.status, 200, "verifying the audit chain: {}", response.text());
        response.json()
    }
}

/// Runs the `gatehouse` command line with `args` against the admin API at
/// `admin` (through `--admin-url` when `flag` is true, else through
/// `GATEHOUSE_ADMIN_URL`), presenting `token` in `GATEHOUSE_ADMIN_TOKEN`.
/// Nothing else from the test's environment reaches it that could change
/// which gateway it talks to or as whom.
pub async fn run_cli(admin: Option<SocketAddr>, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(binary("gatehouse"));
    command.env_remove("GATEHOUSE_ADMIN_URL").env_remove("GATEHOUSE_ADMIN_TOKEN").env_remove("GATEHOUSE_DATABASE_URL");
    let (subcommand, rest) = args.split_first().expect("a subcommand");
    command.arg(subcommand);
    if let Some(admin) = admin {
        if matches!(*subcommand, "keys" | "audit") {
            command.arg("--admin-url").arg(format!("http://{admin}"));
        }
    }
    command.args(rest);
    if let Some(token) = token {
        command.env("GATEHOUSE_ADMIN_TOKEN", token);
    }
    run(command, args).await
}

/// Like [`run_cli`], but the admin URL comes from `GATEHOUSE_ADMIN_URL`.
pub async fn run_cli_env_url(admin: SocketAddr, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(binary("gatehouse"));
    command
        .env_remove("GATEHOUSE_ADMIN_TOKEN")
        .env_remove("GATEHOUSE_DATABASE_URL")
        .env("GATEHOUSE_ADMIN_URL", format!("http://{admin}"))
        .args(args);
    if let Some(token) = token {
        command.env("GATEHOUSE_ADMIN_TOKEN", token);
    }
    run(command, args).await
}

async fn run(mut command: tokio::process::Command, args: &[&str]) -> Output {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = command.spawn().unwrap_or_else(|e| panic!("spawning gatehouse {args:?}: {e}"));
    match tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("running gatehouse {args:?}: {e}"),
        Err(_) => panic!("gatehouse {args:?} did not finish within 60 s"),
    }
}

/// A command's standard output parsed as JSON; panics showing both streams
/// if it is not.
pub fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); status {}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}
