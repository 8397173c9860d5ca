//! The log writer: lines are appended to one shared buffer and a background
//! thread writes them to stdout in batches.
//!
//! A request never waits on stdout, and a busy gateway makes one `write`
//! per batch rather than one per line. The writer thread sleeps while
//! nothing is queued; the first line after a quiet spell wakes it, and it
//! then lets lines gather for [`BATCH_WINDOW`] before writing them, so under
//! load it wakes about forty times a second whatever the request
//! rate. (A channel with one message per line, as tracing-appender has,
//! wakes the writer and costs a context switch for nearly every request.)
//!
//! Nothing is ever dropped: when [`MAX_QUEUED`] bytes are waiting, the
//! logging call blocks until the writer has taken them.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer lets lines gather after it wakes. Each wake-up
/// costs the core the writer shares with a worker a context switch and some
/// of its cache; each batch is a buffer the worker fills and the kernel
/// copies. On HTTP/2 at full load, side by side on one core (the benchmark
/// harness's `--side-by-side`), 25 ms cost about a point less CPU per
/// request than 10 ms, and 200 ms (batches of megabytes, past the core's
/// cache) three points more. A line reaches the log at most this late.
pub const BATCH_WINDOW: Duration = Duration::from_millis(25);

/// Bytes queued before a logging call waits for the writer.
pub const MAX_QUEUED: usize = 8 << 20;

struct State {
    buf: Vec<u8>,
    /// The writer is parked on `wake` and must be notified.
    writer_parked: bool,
    /// Logging calls parked on `space`.
    producers_waiting: usize,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    space: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only bytes behind; keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A cheap handle that queues bytes for the writer thread.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread when dropped, after it has written every queued
/// byte. Hold it until the process exits.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for BatchWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BatchWriter")
    }
}

impl std::fmt::Debug for FlushGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlushGuard")
    }
}

impl BatchWriter {
    /// Starts the writer thread, writing to `out`.
    pub fn spawn<W: Write + Send + 'static>(out: W, window: Duration) -> io::Result<(Self, FlushGuard)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buf: Vec::with_capacity(64 * 1024),
                writer_parked: false,
                producers_waiting: 0,
                closed: false,
            }),
            wake: Condvar::new(),
            space: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread =
            std::thread::Builder::new().name("gatehouse-log".into()).spawn(move || run(&worker, out, window))?;
        Ok((Self { shared: Arc::clone(&shared) }, FlushGuard { shared, thread: Some(thread) }))
    }

    /// Queues `bytes`; they are written whole, never interleaved with
    /// another call's.
    pub fn append(&self, bytes: &[u8]) {
        self.append_with(|buf| buf.extend_from_slice(bytes));
    }

    /// Queues what `render` appends to the buffer it is given, written
    /// whole, never interleaved with another call's. `render` runs with
    /// the queue locked and writes straight into it, which saves a line
    /// buffer and a copy per line; it must be short and must not log.
    pub fn append_with(&self, render: impl FnOnce(&mut Vec<u8>)) {
        let mut st = self.shared.lock();
        while st.buf.len() >= MAX_QUEUED && !st.closed {
            st.producers_waiting += 1;
            st = self.shared.space.wait(st).unwrap_or_else(PoisonError::into_inner);
            st.producers_waiting -= 1;
        }
        if st.closed {
            // The writer is gone (process exit): write through so nothing is lost.
            drop(st);
            let mut line = Vec::new();
            render(&mut line);
            let _ = io::stdout().lock().write_all(&line);
            return;
        }
        let before = st.buf.len();
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| render(&mut st.buf))) {
            // No half line in the log.
            st.buf.truncate(before);
            drop(st);
            std::panic::resume_unwind(panic);
        }
        if st.writer_parked {
            st.writer_parked = false;
            drop(st);
            self.shared.wake.notify_one();
        }
    }
}

fn run<W: Write>(shared: &Shared, mut out: W, window: Duration) {
    let mut spare = Vec::with_capacity(64 * 1024);
    loop {
        let mut st = shared.lock();
        while st.buf.is_empty() && !st.closed {
            st.writer_parked = true;
            st = shared.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        st.writer_parked = false;
        if st.closed && st.buf.is_empty() {
            break;
        }
        if !st.closed && !window.is_zero() && st.buf.len() < MAX_QUEUED / 2 {
            // Let the batch gather.
            drop(st);
            std::thread::sleep(window);
            st = shared.lock();
        }
        std::mem::swap(&mut st.buf, &mut spare);
        if st.producers_waiting > 0 {
            shared.space.notify_all();
        }
        drop(st);
        // A write error (closed pipe) cannot be reported anywhere; the bytes
        // are dropped so the gateway keeps serving.
        let _ = out.write_all(&spare).and_then(|()| out.flush());
        spare.clear();
        if spare.capacity() > 1 << 20 {
            spare.shrink_to(64 * 1024);
        }
    }
    let _ = out.flush();
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        {
            let mut st = self.shared.lock();
            st.closed = true;
        }
        self.shared.wake.notify_one();
        self.shared.space.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Write for BatchWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
    }

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.bytes.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(b);
            *self.writes.lock().unwrap_or_else(PoisonError::into_inner) += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_whole_and_in_order_and_in_few_writes() {
        let sink = Sink::default();
        let (writer, guard) = BatchWriter::spawn(sink.clone(), Duration::from_millis(20)).expect("spawn");
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        w.append(format!("{{\"t\":{t},\"i\":{i}}}\n").as_bytes());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("producer");
        }
        drop(guard);
        let bytes = sink.bytes.lock().expect("bytes").clone();
        let text = String::from_utf8(bytes).expect("utf-8");
        let mut next = [0; 4];
        let mut lines = 0;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("whole line");
            let t = usize::try_from(v["t"].as_u64().expect("t")).expect("small");
            assert_eq!(v["i"].as_u64(), Some(next[t]), "lines of one producer stay in order");
            next[t] += 1;
            lines += 1;
        }
        assert_eq!(lines, 20_000, "nothing dropped");
        let writes = *sink.writes.lock().expect("writes");
        assert!(writes < 2_000, "{writes} writes for 20000 lines: not batched");
    }

    #[test]
    fn a_full_queue_makes_the_caller_wait_instead_of_dropping() {
        struct Slow(Sink);
        impl Write for Slow {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                std::thread::sleep(Duration::from_millis(5));
                self.0.write(b)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let (writer, guard) = BatchWriter::spawn(Slow(sink.clone()), Duration::ZERO).expect("spawn");
        let line = vec![b'x'; 1 << 20];
        for _ in 0..40 {
            writer.append(&line);
        }
        drop(guard);
        assert_eq!(sink.bytes.lock().expect("bytes").len(), 40 << 20);
    }

    #[test]
    fn a_line_whose_rendering_panics_leaves_nothing_behind() {
        let sink = Sink::default();
        let (writer, guard) = BatchWriter::spawn(sink.clone(), Duration::ZERO).expect("spawn");
        writer.append_with(|buf| buf.extend_from_slice(b"first\n"));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            writer.append_with(|buf| {
                buf.extend_from_slice(b"half a li");
                panic!("rendering failed");
            });
        }));
        assert!(panicked.is_err(), "the panic reaches the caller");
        writer.append(b"second\n");
        drop(guard);
        assert_eq!(String::from_utf8_lossy(&sink.bytes.lock().expect("bytes")), "first\nsecond\n");
    }

    #[test]
    fn a_quiet_writer_is_woken_by_the_next_line() {
        let sink = Sink::default();
        let (writer, _guard) = BatchWriter::spawn(sink.clone(), Duration::from_millis(1)).expect("spawn");
        std::thread::sleep(Duration::from_millis(50));
        writer.append(b"late\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.bytes.lock().expect("bytes").is_empty() {
            assert!(std::time::Instant::now() < deadline, "line never written");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
