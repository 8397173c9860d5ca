//! Clock readings shared between the layers of one request.
//!
//! Every layer on the request path measures from the request's arrival to
//! its end, and each used to read the clock for both. A reading costs tens
//! of nanoseconds on the virtual machines gateways run on (as much as a
//! few hundred instructions), and the readings of adjacent layers are
//! nanoseconds apart. So the first stage reads the clock when a request
//! arrives and the layers take that reading ([`ArrivalOf`]); and the
//! innermost body that notices the end of the stream reads the clock once,
//! and the bodies around it take that reading ([`Timed::ended_at`]).

use std::time::{Duration, Instant};

/// Finds when a request arrived in its extensions; the layers read the
/// clock themselves when it gives `None`.
pub type ArrivalOf = fn(&http::Extensions) -> Option<Instant>;

/// What a response body can tell the layers around it about time, so they
/// neither measure it again nor read the clock again for the same moment.
/// The body carries it rather than the response's extensions: the first
/// extension of a response allocates its map, on every proxied request.
pub trait Timed {
    /// Time from sending the request upstream to its response head; `None`
    /// (the default) for a response the gateway produced itself.
    fn upstream_elapsed(&self) -> Option<Duration> {
        None
    }

    /// When the stream ended, if a body inside this one (or this one)
    /// already read the clock for it. Asked by a wrapping body right after
    /// the poll that ended the stream.
    fn ended_at(&self) -> Option<Instant> {
        None
    }

    /// How long the request took, from its arrival to the end of its
    /// stream, if a body inside this one (or this one) measured it from the
    /// readings an outer layer would take itself: the arrival stage's and
    /// the end's. Asked, as [`Timed::ended_at`], right after the poll that
    /// ended the stream. A layer that gets it subtracts nothing, and the
    /// duration it reports is the one the metrics recorded.
    fn elapsed(&self) -> Option<Duration> {
        None
    }
}

/// What a measuring response body knows of its request's duration.
pub(crate) enum Measure<C> {
    /// Not measured here (the layer passes this request through).
    Off,
    /// Being measured: the call `C` records it when the stream ends.
    Running(C),
    /// Recorded, after this long.
    Ended(Duration),
}

impl<C> Measure<C> {
    pub(crate) fn new(call: Option<C>) -> Self {
        call.map_or(Self::Off, Self::Running)
    }

    pub(crate) fn running(&self) -> Option<&C> {
        match self {
            Self::Running(call) => Some(call),
            _ => None,
        }
    }

    /// Ends a running measurement: `end` records the call and gives its
    /// duration, kept for the layers outside.
    pub(crate) fn end(&mut self, end: impl FnOnce(C) -> Duration) {
        if let Self::Running(_) = self {
            if let Self::Running(call) = std::mem::replace(self, Self::Off) {
                *self = Self::Ended(end(call));
            }
        }
    }

    /// The recorded duration; `inner` when this layer measures nothing.
    pub(crate) fn elapsed(&self, inner: impl FnOnce() -> Option<Duration>) -> Option<Duration> {
        match self {
            Self::Off => inner(),
            Self::Running(_) => None,
            Self::Ended(elapsed) => Some(*elapsed),
        }
    }
}
