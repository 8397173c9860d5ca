//! Collecting a child's output line by line while the test runs.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

/// The lines a child process has written to one of its pipes so far.
///
/// A background task keeps reading the pipe, so a chatty child never blocks
/// on a full pipe, and tests can look back at everything it printed.
#[derive(Clone, Debug)]
pub struct Lines {
    lines: Arc<Mutex<Vec<String>>>,
    // Bumped after every new line; closed when the pipe reaches end of file.
    count: watch::Receiver<usize>,
}

impl Lines {
    /// Starts reading `reader` in a background task.
    pub(crate) fn collect<R>(reader: R) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, count) = watch::channel(0);
        let store = Arc::clone(&lines);
        tokio::spawn(async move {
            let mut reader = BufReader::new(reader).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let len = {
                    let mut lines = lock(&store);
                    lines.push(line);
                    lines.len()
                };
                tx.send_replace(len);
            }
        });
        Self { lines, count }
    }

    /// Every line read so far.
    pub fn snapshot(&self) -> Vec<String> {
        lock(&self.lines).clone()
    }

    /// Waits until some line makes `f` return `Some`, the pipe closes, or
    /// `timeout` passes; returns the first `Some`.
    pub async fn find<T>(&self, timeout: Duration, mut f: impl FnMut(&str) -> Option<T>) -> Option<T> {
        let mut count = self.count.clone();
        let mut checked = 0;
        let search = async {
            loop {
                {
                    let lines = lock(&self.lines);
                    if let Some(found) = lines[checked..].iter().find_map(|l| f(l)) {
                        return Some(found);
                    }
                    checked = lines.len();
                }
                if count.changed().await.is_err() {
                    // End of file: look once more at what arrived before it.
                    let lines = lock(&self.lines);
                    return lines[checked..].iter().find_map(|l| f(l));
                }
            }
        };
        tokio::time::timeout(timeout, search).await.ok().flatten()
    }

    /// Waits until the pipe is closed (the child exited), at most `timeout`.
    pub async fn closed(&self, timeout: Duration) -> bool {
        let mut count = self.count.clone();
        let wait = async { while count.changed().await.is_ok() {} };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

fn lock(lines: &Mutex<Vec<String>>) -> MutexGuard<'_, Vec<String>> {
    // A panic while holding the lock cannot leave the Vec half-written.
    lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
