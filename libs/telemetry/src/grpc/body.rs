//! The bodies of a measured gRPC call: the request body counts messages
//! received; the response body counts messages sent and settles the status
//! from the trailers, from the end of the stream, or from being dropped.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use metrics::Counter;

use super::GrpcCode;
use super::catalogue::MethodSeries;
use super::frames::FrameCounter;
use crate::timing::{Measure, Timed};

/// One call being measured. Dropping it records `handled{grpc_code}` and
/// the handling time with the code it holds, so every way a call can end is
/// counted exactly once; the code starts as `Canceled` because a call
/// dropped before its status is one the client gave up on.
pub(crate) struct Call {
    pub(crate) series: Arc<MethodSeries>,
    pub(crate) start: Instant,
    pub(crate) code: GrpcCode,
    /// Recorded already (by [`Call::finish`]).
    pub(crate) done: bool,
}

impl Call {
    /// Records the call with `code`, ended at `ended` (now if `None`),
    /// and gives its duration.
    pub(crate) fn finish(mut self, code: GrpcCode, ended: Option<Instant>) -> Duration {
        self.code = code;
        self.done = true;
        self.record(ended.unwrap_or_else(Instant::now))
    }

    fn record(&self, ended: Instant) -> Duration {
        let elapsed = ended.saturating_duration_since(self.start);
        self.series.handled[self.code as usize].increment(1);
        self.series.handling.record(elapsed.as_secs_f64());
        elapsed
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.done {
            self.record(Instant::now());
        }
    }
}

pin_project_lite::pin_project! {
    /// Request body of [`super::GrpcMetrics`]: counts the messages a gRPC
    /// client sends; other requests' bodies pass through.
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        counting: Option<(FrameCounter, Counter)>,
    }
}

impl<B> RequestBody<B> {
    pub(crate) fn passthrough(inner: B) -> Self {
        Self { inner, counting: None }
    }

    pub(crate) fn counting(inner: B, received: Counter) -> Self {
        Self { inner, counting: Some((FrameCounter::default(), received)) }
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body,
    B::Data: AsRef<[u8]>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let (Some(Ok(f)), Some((frames, received))) = (&frame, this.counting.as_mut()) {
            if let Some(data) = f.data_ref() {
                let n = frames.push(data.as_ref());
                if n > 0 {
                    received.increment(n);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// Response body of [`super::GrpcMetrics`]: counts the messages sent and
    /// records the call when its status arrives or the stream stops.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        call: Measure<Call>,
        frames: FrameCounter,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn passthrough(inner: B) -> Self {
        Self { inner, call: Measure::Off, frames: FrameCounter::default() }
    }

    pub(crate) fn measuring(inner: B, call: Call) -> Self {
        Self { inner, call: Measure::Running(call), frames: FrameCounter::default() }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body + Timed,
    B::Data: AsRef<[u8]>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let Some(call) = this.call.running() else {
            return Poll::Ready(frame);
        };
        let settled = match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    let n = this.frames.push(data.as_ref());
                    if n > 0 {
                        call.series.sent.increment(n);
                    }
                }
                match f.trailers_ref() {
                    Some(trailers) => Some(GrpcCode::from_headers(trailers).unwrap_or(GrpcCode::Unknown)),
                    // The stream ended without trailers, so without a status.
                    None => this.inner.is_end_stream().then_some(GrpcCode::Unknown),
                }
            }
            // Ended or broke without a status: the client sees no `OK`.
            None | Some(Err(_)) => Some(GrpcCode::Unknown),
        };
        if let Some(code) = settled {
            let inner = this.inner.as_ref();
            this.call.end(|call| call.finish(code, inner.ended_at()));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Timed> Timed for ResponseBody<B> {
    fn upstream_elapsed(&self) -> Option<std::time::Duration> {
        self.inner.upstream_elapsed()
    }

    /// The inner body's reading only, as [`crate::http::ResponseBody`].
    fn ended_at(&self) -> Option<Instant> {
        self.inner.ended_at()
    }

    /// The handling time this layer recorded, as [`crate::http::ResponseBody`].
    fn elapsed(&self) -> Option<Duration> {
        self.call.elapsed(|| self.inner.elapsed())
    }
}

impl<B> fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody").field("counting", &self.counting.is_some()).finish_non_exhaustive()
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody").field("measuring", &self.call.running().is_some()).finish_non_exhaustive()
    }
}
