//! A raw HTTP/1.1 upstream that answers with fixed bytes and records what it got.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::raw::message_len;

/// An upstream that answers every complete HTTP/1.1 request with the same
/// raw bytes, for responses the echo upstream cannot produce (hop-by-hop
/// headers, for one), and records every complete request it received.
#[derive(Debug)]
pub struct RecordingUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl RecordingUpstream {
    /// Listens on `127.0.0.1:0` and answers each request with `response`.
    pub async fn start(response: &'static [u8]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let record = Arc::clone(&record);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 16 * 1024];
                    loop {
                        while let Some(len) = message_len(&buf) {
                            let request: Vec<u8> = buf.drain(..len).collect();
                            record
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(String::from_utf8_lossy(&request).into_owned());
                            if stream.write_all(response).await.is_err() {
                                return;
                            }
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        Self { addr, requests, task }
    }

    /// Every complete request received so far, head and body, as text.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP/1.1 upstream that reads requests and never answers, holding
/// every connection open until it is dropped: requests routed to it stay in
/// flight at the gateway for as long as a test needs.
#[derive(Debug)]
pub struct SilentUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    received: tokio::sync::watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl SilentUpstream {
    /// Listens on `127.0.0.1:0`.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (count, received) = tokio::sync::watch::channel(0);
        let count = Arc::new(count);
        let record = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            // Dropped with the accept task, closing every held connection.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                let record = Arc::clone(&record);
                let count = Arc::clone(&count);
                connections.spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 16 * 1024];
                    loop {
                        while let Some(len) = message_len(&buf) {
                            let request: Vec<u8> = buf.drain(..len).collect();
                            let n = {
                                let mut requests = record.lock().unwrap_or_else(|p| p.into_inner());
                                requests.push(String::from_utf8_lossy(&request).into_owned());
                                requests.len()
                            };
                            count.send_replace(n);
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        Self { addr, requests, received, task }
    }

    /// Every complete request received so far, head and body, as text.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits up to `timeout` until at least `n` complete requests have
    /// arrived; returns whether they did.
    pub async fn wait_for_requests(&self, n: usize, timeout: std::time::Duration) -> bool {
        let mut received = self.received.clone();
        tokio::time::timeout(timeout, received.wait_for(|&count| count >= n)).await.is_ok_and(|r| r.is_ok())
    }
}

impl Drop for SilentUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
