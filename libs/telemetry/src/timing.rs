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
}
