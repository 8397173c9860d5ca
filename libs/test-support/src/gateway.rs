//! The gateway (`gatehouse serve`), spawned on port 0 from a YAML config.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Output, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::config_file::ConfigFile;
use crate::{Lines, STARTUP_TIMEOUT, binary};

/// A running `gatehouse serve`, killed when dropped.
#[derive(Debug)]
pub struct Gateway {
    /// The public listener (HTTP/1.1, h2c and gRPC).
    pub public: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    stdout: Lines,
    stderr: Lines,
    child: Child,
    pid: u32,
    config: ConfigFile,
}

/// Why `gatehouse serve` did not come up.
#[derive(Debug)]
pub struct StartError {
    /// How the process exited; `None` if it was still running when the
    /// startup timeout passed (it has been killed since).
    pub status: Option<ExitStatus>,
    /// Everything it wrote to standard output.
    pub stdout: Vec<String>,
    /// Everything it wrote to standard error.
    pub stderr: Vec<String>,
}

/// Signals a test can send to the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// `SIGTERM`: drain and stop.
    Term,
    /// `SIGINT`: as from Ctrl-C.
    Int,
    /// `SIGHUP`.
    Hup,
    /// `SIGKILL`.
    Kill,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Self::Term => "TERM",
            Self::Int => "INT",
            Self::Hup => "HUP",
            Self::Kill => "KILL",
        }
    }
}

impl Gateway {
    /// Starts `gatehouse serve` with `config_yaml` and waits until it reports
    /// its listening addresses. Panics, showing everything the process
    /// printed, if it exits or does not come up within [`STARTUP_TIMEOUT`].
    pub async fn start(config_yaml: &str) -> Self {
        Self::try_start(config_yaml).await.unwrap_or_else(|e| panic!("{e}\nconfig:\n{config_yaml}"))
    }

    /// Like [`Gateway::start`], but returns the exit status and output when
    /// the gateway does not come up, for tests where it must refuse.
    pub async fn try_start(config_yaml: &str) -> Result<Self, StartError> {
        Self::try_start_with_env(config_yaml, &[]).await
    }

    /// Like [`Gateway::start`], with `env` added to the process's
    /// environment (such as `GATEHOUSE_ADMIN_TOKEN`).
    pub async fn start_with_env(config_yaml: &str, env: &[(&str, &str)]) -> Self {
        Self::try_start_with_env(config_yaml, env).await.unwrap_or_else(|e| panic!("{e}\nconfig:\n{config_yaml}"))
    }

    /// Like [`Gateway::try_start`], with `env` added to the process's
    /// environment.
    pub async fn try_start_with_env(config_yaml: &str, env: &[(&str, &str)]) -> Result<Self, StartError> {
        let config = ConfigFile::write(config_yaml);
        let mut command = Command::new(binary("gatehouse"));
        // The exporter is the test's choice alone: OTEL_* settings of the
        // environment the tests run in do not leak into the gateway.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OTEL_") {
                command.env_remove(key);
            }
        }
        command.envs(env.iter().copied());
        // Each gateway gets its own SQLite file next to its config, unless the
        // test chose a database itself.
        if config_yaml.contains("database:") {
            command.env_remove("GATEHOUSE_DATABASE_URL");
        } else {
            command.env("GATEHOUSE_DATABASE_URL", format!("sqlite://{}", config.database_path().display()));
        }
        let mut child = command
            .arg("serve")
            .arg("--config")
            .arg(config.path())
            // The harness waits for the info-level `listening` line.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning gatehouse serve: {e}"));
        let pid = child.id().expect("a just-spawned child has a pid");
        let stdout = Lines::collect(child.stdout.take().expect("stdout is piped"));
        let stderr = Lines::collect(child.stderr.take().expect("stderr is piped"));

        let listening = tokio::select! {
            found = stdout.find(STARTUP_TIMEOUT, listening_addrs) => found,
            _ = child.wait() => None,
        };
        let Some((public, admin)) = listening else {
            let status = tokio::time::timeout(Duration::from_secs(1), child.wait()).await.ok().and_then(Result::ok);
            if status.is_none() {
                let _ = child.start_kill();
            }
            // Let the readers drain what the process wrote before it went.
            stdout.closed(Duration::from_secs(1)).await;
            stderr.closed(Duration::from_secs(1)).await;
            return Err(StartError { status, stdout: stdout.snapshot(), stderr: stderr.snapshot() });
        };
        Ok(Self { public, admin, stdout, stderr, child, pid, config })
    }

    /// Runs `gatehouse check-config FILE` on `config_yaml` and returns its
    /// exit status and output.
    pub fn check_config(config_yaml: &str) -> Output {
        let config = ConfigFile::write(config_yaml);
        std::process::Command::new(binary("gatehouse"))
            .arg("check-config")
            .arg(config.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running gatehouse check-config: {e}"))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The config file the gateway was started with (a temp file, removed
    /// when the `Gateway` is dropped).
    pub fn config_path(&self) -> &Path {
        self.config.path()
    }

    /// Replaces the config file's contents (atomically, by rename), for
    /// reload tests; send [`Signal::Hup`] afterwards.
    pub fn rewrite_config(&self, config_yaml: &str) {
        self.config.rewrite(config_yaml);
    }

    /// Every line written to standard output so far (JSON log lines).
    pub fn lines(&self) -> Vec<String> {
        self.stdout.snapshot()
    }

    /// Every line written to standard error so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.snapshot()
    }

    /// Waits up to `timeout` for a JSON log line on standard output that
    /// satisfies `f`, and returns it.
    pub async fn wait_for_log(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        self.stdout.find(timeout, |line| serde_json::from_str::<serde_json::Value>(line).ok().filter(|v| f(v))).await
    }

    /// Waits up to `timeout` for a standard-output line (any format) that
    /// satisfies `f`, and returns it.
    pub async fn wait_for_line(&self, timeout: Duration, mut f: impl FnMut(&str) -> bool) -> Option<String> {
        self.stdout.find(timeout, |line| f(line).then(|| line.to_owned())).await
    }

    /// Waits up to `timeout` for a standard-error line that satisfies `f`,
    /// and returns it.
    pub async fn wait_for_stderr_line(&self, timeout: Duration, mut f: impl FnMut(&str) -> bool) -> Option<String> {
        self.stderr.find(timeout, |line| f(line).then(|| line.to_owned())).await
    }

    /// Every standard-output line so far that parses as a JSON object with
    /// `target: "access"`: the access log.
    pub fn access_lines(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|value| value["target"] == "access")
            .collect()
    }

    /// Waits up to `timeout` until the process has closed its standard
    /// output and error (it exited and everything it wrote has been read).
    /// Call after [`Gateway::wait_exit`] before looking at the final lines.
    pub async fn output_closed(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let stdout = self.stdout.closed(timeout).await;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        stdout && self.stderr.closed(left).await
    }

    /// Current resident set size in KiB (`VmRSS` in `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        self.proc_status_kib("VmRSS")
    }

    /// Peak resident set size in KiB since start (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        self.proc_status_kib("VmHWM")
    }

    fn proc_status_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {path}"))
    }

    /// Sends `signal` to the process (through the `kill` command).
    pub fn signal(&self, signal: Signal) -> std::io::Result<()> {
        let status =
            std::process::Command::new("kill").arg(format!("-{}", signal.name())).arg(self.pid.to_string()).status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("kill -{} {} failed: {status}", signal.name(), self.pid)))
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait()).await.ok().and_then(Result::ok)
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "gatehouse serve exited before listening ({status})")?,
            None => write!(f, "gatehouse serve did not report its listening addresses within {STARTUP_TIMEOUT:?}")?,
        }
        write!(f, "\nstdout:\n{}\nstderr:\n{}", self.stdout.join("\n"), self.stderr.join("\n"))
    }
}

impl std::error::Error for StartError {}

/// Parses the `listening` log line's top-level `public` and `admin` fields,
/// in the JSON format or (for `logging.format: text`) the text one, where
/// they appear as `public=ADDR admin=ADDR`.
fn listening_addrs(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(value) => {
            if value["msg"] != "listening" {
                return None;
            }
            let public = value["public"].as_str()?.parse().ok()?;
            let admin = value["admin"].as_str()?.parse().ok()?;
            Some((public, admin))
        }
        Err(_) => {
            let text = strip_ansi(line);
            if !text.split_whitespace().any(|word| word == "listening") {
                return None;
            }
            let field = |name: &str| {
                let prefix = format!("{name}=");
                text.split_whitespace()
                    .find_map(|word| word.strip_prefix(prefix.as_str()))
                    .and_then(|value| value.trim_matches('"').parse().ok())
            };
            Some((field("public")?, field("admin")?))
        }
    }
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`), which the text
/// log format uses for colour and emphasis.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines_parse_in_both_formats() {
        let public: SocketAddr = "127.0.0.1:1000".parse().unwrap_or_else(|e| panic!("{e}"));
        let admin: SocketAddr = "127.0.0.1:2000".parse().unwrap_or_else(|e| panic!("{e}"));
        let json = r#"{"msg":"listening","public":"127.0.0.1:1000","admin":"127.0.0.1:2000"}"#;
        assert_eq!(listening_addrs(json), Some((public, admin)));
        let text = "2025-01-01T00:00:00.000000Z  \u{1b}[32m INFO\u{1b}[0m \u{1b}[2mgatehouse::serve\u{1b}[0m\u{1b}[2m:\u{1b}[0m \
            listening \u{1b}[3mpublic\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:1000 \u{1b}[3madmin\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:2000";
        assert_eq!(listening_addrs(text), Some((public, admin)));
        assert_eq!(listening_addrs("INFO gatehouse: stopped public=127.0.0.1:1000 admin=127.0.0.1:2000"), None);
        assert_eq!(listening_addrs(r#"{"msg":"stopped"}"#), None);
    }
}
