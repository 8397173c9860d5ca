//! The gateway (`gatehouse serve`), spawned on port 0 from a YAML config.

use std::fmt;
use std::net::SocketAddr;
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
    _config: ConfigFile,
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
        let config = ConfigFile::write(config_yaml);
        let mut child = Command::new(binary("gatehouse"))
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
        Ok(Self { public, admin, stdout, stderr, child, pid, _config: config })
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

/// Parses the `listening` log line's top-level `public` and `admin` fields.
fn listening_addrs(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value["msg"] != "listening" {
        return None;
    }
    let public = value["public"].as_str()?.parse().ok()?;
    let admin = value["admin"].as_str()?.parse().ok()?;
    Some((public, admin))
}
