//! Helpers shared by the unit tests: a recorder built for the test (never
//! the global one), exact sample lookup in rendered text, and bodies made of
//! given frames.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::Buckets;
use crate::exporter::MetricsRecorder;
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame};

/// A recorder with the production bucket layouts.
pub(crate) fn recorder() -> MetricsRecorder {
    MetricsRecorder::new(&Buckets::default()).expect("default buckets are valid")
}

/// The value of the sample written exactly as `series` (name and labels).
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// How many samples the text holds.
pub(crate) fn sample_count(text: &str) -> usize {
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count()
}

/// One gRPC message of `len` payload bytes.
pub(crate) fn grpc_message(len: usize) -> Vec<u8> {
    let mut m = vec![0u8];
    m.extend_from_slice(&(len as u32).to_be_bytes());
    m.extend(std::iter::repeat_n(b'x', len));
    m
}

/// `grpc-status: <code>` as a header block.
pub(crate) fn grpc_status(code: u8) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("grpc-status", u16::from(code).into());
    h
}

/// A body that yields the given frames. With `eager_end`, it reports its
/// end as soon as the last frame is out (as hyper's bodies do); without,
/// only by returning `None`.
#[derive(Debug, Default)]
pub(crate) struct TestBody {
    frames: VecDeque<Frame<Bytes>>,
    eager_end: bool,
    upstream: Option<std::time::Duration>,
    ended_at: Option<std::time::Instant>,
}

impl TestBody {
    /// Data chunks, then optional trailers.
    pub(crate) fn new(chunks: impl IntoIterator<Item = Vec<u8>>, trailers: Option<HeaderMap>) -> Self {
        let mut frames: VecDeque<_> = chunks.into_iter().map(|c| Frame::data(Bytes::from(c))).collect();
        frames.extend(trailers.map(Frame::trailers));
        Self { frames, eager_end: true, upstream: None, ended_at: None }
    }

    /// `data` split into chunks of the given sizes (the rest in a last chunk).
    pub(crate) fn split(data: &[u8], sizes: &[usize], trailers: Option<HeaderMap>) -> Self {
        let mut chunks = Vec::new();
        let mut rest = data;
        for size in sizes {
            let (head, tail) = rest.split_at((*size).min(rest.len()));
            chunks.push(head.to_vec());
            rest = tail;
        }
        if !rest.is_empty() {
            chunks.push(rest.to_vec());
        }
        Self::new(chunks, trailers)
    }

    /// Says the upstream took `elapsed` to send the response head.
    pub(crate) fn with_upstream_elapsed(mut self, elapsed: std::time::Duration) -> Self {
        self.upstream = Some(elapsed);
        self
    }

    /// Says its stream ended at `at` (as an upstream body that read the
    /// clock for its end does).
    pub(crate) fn with_ended_at(mut self, at: std::time::Instant) -> Self {
        self.ended_at = Some(at);
        self
    }

    /// Ends only by returning `None`.
    pub(crate) fn lazy_end(mut self) -> Self {
        self.eager_end = false;
        self
    }
}

impl crate::Timed for TestBody {
    fn upstream_elapsed(&self) -> Option<std::time::Duration> {
        self.upstream
    }

    fn ended_at(&self) -> Option<std::time::Instant> {
        self.ended_at.filter(|_| self.frames.is_empty())
    }
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.frames.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.eager_end && self.frames.is_empty()
    }
}
