//! The echo upstream (`gatehouse-echo`), spawned on port 0.

use std::net::SocketAddr;
use std::process::Stdio;

use tokio::process::{Child, Command};

use crate::{Lines, STARTUP_TIMEOUT, binary};

/// A running `gatehouse-echo`, killed when dropped.
#[derive(Debug)]
pub struct Echo {
    /// Where it listens (HTTP/1.1, h2c and gRPC on one port).
    pub addr: SocketAddr,
    /// The name it reports in every response's `x-echo-name` header.
    pub name: String,
    stdout: Lines,
    stderr: Lines,
    _child: Child,
}

impl Echo {
    /// Spawns `gatehouse-echo --listen 127.0.0.1:0 --name NAME` and waits for
    /// its `listening` line. Panics with its output if it does not start.
    pub async fn start(name: &str) -> Self {
        let mut child = Command::new(binary("gatehouse-echo"))
            .args(["--listen", "127.0.0.1:0", "--name", name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning gatehouse-echo: {e}"));
        let stdout = Lines::collect(child.stdout.take().expect("stdout is piped"));
        let stderr = Lines::collect(child.stderr.take().expect("stderr is piped"));
        let addr = stdout.find(STARTUP_TIMEOUT, |line| listening_addr(line, name)).await.unwrap_or_else(|| {
            panic!(
                "gatehouse-echo {name} did not report a listening address\nstdout:\n{}\nstderr:\n{}",
                stdout.snapshot().join("\n"),
                stderr.snapshot().join("\n")
            )
        });
        Self { addr, name: name.to_owned(), stdout, stderr, _child: child }
    }

    /// Its standard output so far.
    pub fn lines(&self) -> Vec<String> {
        self.stdout.snapshot()
    }

    /// Its standard error so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.snapshot()
    }
}

/// Parses `{"msg":"listening","addr":"127.0.0.1:PORT","name":"NAME"}`.
fn listening_addr(line: &str, name: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value["msg"] != "listening" || value["name"] != name {
        return None;
    }
    value["addr"].as_str()?.parse().ok()
}
