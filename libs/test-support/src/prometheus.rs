//! A real Prometheus server (the Debian `prometheus` package, which `.ci/run`
//! installs) scraping the gateway, queried through its HTTP API; and
//! `promtool check metrics` on a scrape.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Request;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::{Lines, empty, http1_client, send, url};

/// Where the Debian package installs the server.
pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";
/// Where the Debian package installs `promtool`.
pub const PROMTOOL_BIN: &str = "/usr/bin/promtool";

/// How long Prometheus may take to report that it is ready.
const PROMETHEUS_STARTUP: Duration = Duration::from_secs(30);

/// Whether a missing Prometheus fails the test instead of skipping it (on
/// CI, where `.ci/run` installs it).
pub fn prometheus_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The Prometheus server binary: [`PROMETHEUS_BIN`], else `prometheus` on
/// `PATH`; `None` if neither exists.
pub fn prometheus_binary() -> Option<PathBuf> {
    find_tool(PROMETHEUS_BIN, "prometheus")
}

/// The `promtool` binary, found as [`prometheus_binary`] is.
pub fn promtool_binary() -> Option<PathBuf> {
    find_tool(PROMTOOL_BIN, "promtool")
}

fn find_tool(fixed: &str, name: &str) -> Option<PathBuf> {
    let fixed = PathBuf::from(fixed);
    if fixed.is_file() {
        return Some(fixed);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// One sample of a PromQL result: its labels and value.
pub type PromSample = (BTreeMap<String, String>, f64);

/// A running `prometheus`, with its own config and TSDB in a temporary
/// directory; killed and cleaned up when dropped.
#[derive(Debug)]
pub struct PrometheusServer {
    /// Its web and API listener.
    pub addr: SocketAddr,
    stderr: Lines,
    // Killed before its directory is removed (fields drop in order).
    _child: Child,
    dir: TempDir,
}

impl PrometheusServer {
    /// Starts Prometheus scraping `/metrics` on each of `targets` every
    /// `scrape_interval`, listening on a port of its choosing, and waits
    /// until it is ready. Returns `None` if Prometheus is not installed;
    /// panics with its log if it does not come up.
    pub async fn start(targets: &[SocketAddr], scrape_interval: Duration) -> Option<Self> {
        let binary = prometheus_binary()?;
        let dir = TempDir::new("prometheus");
        let interval = format!("{}ms", scrape_interval.as_millis());
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  evaluation_interval: {interval}\n\
             scrape_configs:\n  - job_name: gatehouse\n    metrics_path: /metrics\n    static_configs:\n      \
             - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, &config).unwrap_or_else(|e| panic!("writing {}: {e}", config_path.display()));
        let mut child = Command::new(&binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", binary.display()));
        let stderr = Lines::collect(child.stderr.take().expect("stderr is piped"));
        // `Listening on` names the bound address (the port 0 was replaced);
        // `Server is ready` comes once the TSDB is open.
        let addr = stderr.find(PROMETHEUS_STARTUP, listening_addr).await;
        let ready = stderr
            .find(PROMETHEUS_STARTUP, |l| l.contains("Server is ready to receive web requests").then_some(()))
            .await;
        let (Some(addr), Some(())) = (addr, ready) else {
            panic!("prometheus did not become ready\nconfig:\n{config}\nlog:\n{}", stderr.snapshot().join("\n"));
        };
        Some(Self { addr, stderr, _child: child, dir })
    }

    /// Everything Prometheus logged so far.
    pub fn log(&self) -> Vec<String> {
        self.stderr.snapshot()
    }

    /// Its working directory (config and TSDB).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Evaluates `expr` at the current time through `/api/v1/query`. Returns
    /// the samples of a vector result (one, unlabelled, for a scalar), or
    /// Prometheus's error.
    pub async fn query(&self, expr: &str) -> Result<Vec<PromSample>, String> {
        self.query_at_time(expr, None).await
    }

    /// [`PrometheusServer::query`] evaluated at `time` (Unix seconds), so
    /// several queries see exactly the same data.
    pub async fn query_at(&self, expr: &str, time: f64) -> Result<Vec<PromSample>, String> {
        self.query_at_time(expr, Some(time)).await
    }

    /// [`PrometheusServer::query_value`] evaluated at `time` (Unix seconds).
    pub async fn query_value_at(&self, expr: &str, time: f64) -> Option<f64> {
        let samples = self.query_at(expr, time).await.unwrap_or_else(|e| panic!("query failed: {e}"));
        assert!(samples.len() <= 1, "{expr} returned several samples: {samples:?}");
        samples.first().map(|(_, v)| *v)
    }

    async fn query_at_time(&self, expr: &str, time: Option<f64>) -> Result<Vec<PromSample>, String> {
        let mut path = format!("/api/v1/query?query={}", percent_encode(expr));
        if let Some(time) = time {
            path.push_str(&format!("&time={time:.3}"));
        }
        let request = Request::get(url(self.addr, &path)).body(empty()).expect("a valid query URI");
        let response = send(&http1_client(), request).await;
        let body: serde_json::Value =
            serde_json::from_slice(&response.body).map_err(|e| format!("{e}: {}", response.text()))?;
        if body["status"] != "success" {
            return Err(format!("{expr}: {body}"));
        }
        let data = &body["data"];
        let value = |pair: &serde_json::Value| -> Result<f64, String> {
            let text = pair[1].as_str().ok_or_else(|| format!("{expr}: no value in {pair}"))?;
            match text {
                "+Inf" => Ok(f64::INFINITY),
                "-Inf" => Ok(f64::NEG_INFINITY),
                "NaN" => Ok(f64::NAN),
                v => v.parse().map_err(|e| format!("{expr}: bad value {v:?}: {e}")),
            }
        };
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|item| {
                    let labels = item["metric"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect();
                    Ok((labels, value(&item["value"])?))
                })
                .collect(),
            Some("scalar") => Ok(vec![(BTreeMap::new(), value(&data["result"])?)]),
            other => Err(format!("{expr}: unexpected result type {other:?}: {data}")),
        }
    }

    /// The value of `expr`, which must yield exactly one sample; `None` if
    /// it yields none. Panics on a query error or several samples.
    pub async fn query_value(&self, expr: &str) -> Option<f64> {
        let samples = self.query(expr).await.unwrap_or_else(|e| panic!("query failed: {e}"));
        assert!(samples.len() <= 1, "{expr} returned several samples: {samples:?}");
        samples.first().map(|(_, v)| *v)
    }

    /// Waits until `up` is 1 for every target, and every target has been
    /// scraped at least `scrapes` times; panics with the log if `timeout`
    /// passes first.
    pub async fn wait_for_scrapes(&self, scrapes: u32, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let expr = format!("min(count_over_time(up[1h])) >= {scrapes} and min(up) == 1");
        loop {
            if self.query(&expr).await.is_ok_and(|r| !r.is_empty()) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let targets = self.targets().await;
                panic!(
                    "prometheus did not scrape every target {scrapes} times within {timeout:?}\ntargets: {targets}\nlog:\n{}",
                    self.log().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `/api/v1/targets`, as text, for failure messages.
    pub async fn targets(&self) -> String {
        let request = Request::get(url(self.addr, "/api/v1/targets")).body(empty()).expect("a valid URI");
        send(&http1_client(), request).await.text()
    }
}

/// What `promtool check metrics` said about a scrape.
#[derive(Debug, Clone)]
pub struct PromtoolReport {
    /// Whether it exited 0 (no lint problems).
    pub success: bool,
    /// Its standard output and error.
    pub output: String,
}

/// Runs `promtool check metrics` with `text` on its standard input. `None`
/// if promtool is not installed.
pub async fn promtool_check_metrics(text: &str) -> Option<PromtoolReport> {
    let binary = promtool_binary()?;
    let mut child = Command::new(&binary)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", binary.display()));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = text.to_owned();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(input.as_bytes()).await;
        // Dropping stdin closes it, so promtool sees the end of input.
    });
    let output = child.wait_with_output().await.unwrap_or_else(|e| panic!("running promtool: {e}"));
    let _ = writer.await;
    let mut report = String::from_utf8_lossy(&output.stdout).into_owned();
    report.push_str(&String::from_utf8_lossy(&output.stderr));
    Some(PromtoolReport { success: output.status.success(), output: report })
}

/// Parses Prometheus's `msg="Listening on" address=127.0.0.1:PORT` line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("msg=\"Listening on\"") {
        return None;
    }
    line.split_whitespace().find_map(|w| w.strip_prefix("address=")).and_then(|a| a.trim_matches('"').parse().ok())
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A uniquely named directory under the system temp directory, removed
/// with everything in it when dropped.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let name =
            format!("gatehouse-test-{what}-{}-{}-{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines_and_encoding() {
        let line = r#"ts=2026-01-01T00:00:00.000Z caller=tls_config.go:232 level=info component=web msg="Listening on" address=127.0.0.1:36075"#;
        assert_eq!(listening_addr(line), "127.0.0.1:36075".parse().ok());
        assert_eq!(listening_addr(r#"msg="Start listening for connections" address=127.0.0.1:0"#), None);
        assert_eq!(percent_encode(r#"sum(rate(x{a=~"5.."}[1m]))"#), "sum%28rate%28x%7Ba%3D~%225..%22%7D%5B1m%5D%29%29");
    }
}
