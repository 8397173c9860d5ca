//! Log output: one JSON object per line on stdout, ready for Loki, or
//! human-readable text for local development.
//!
//! Every JSON line has `time` (RFC 3339, UTC), `level`, `service`, `msg` and
//! `target`, followed by the event's own fields at the top level.

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The `service` field of every line.
pub const SERVICE: &str = "gatehouse";

pub mod batch;

use batch::BatchWriter;
pub use batch::FlushGuard;

/// Installs the global subscriber. `level` is a tracing filter such as
/// `info`; `RUST_LOG`, when set, overrides it.
///
/// Lines are written in batches by a background thread, so a request never
/// waits on stdout; when the queue is full, logging waits rather than
/// dropping lines (an access log with holes is worse than a slower request).
/// See [`batch`].
///
/// With the JSON format, the returned [`LineSink`] lets hot paths write a
/// ready-made line into the same queue, skipping tracing's dispatch.
pub fn init(level: &str, json: bool) -> (Option<FlushGuard>, Option<LineSink>) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let Ok((writer, guard)) = BatchWriter::spawn(std::io::stdout(), batch::BATCH_WINDOW) else {
        return (None, None);
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer.clone());
    let installed = if json {
        builder.event_format(JsonLines).try_init()
    } else {
        builder.with_target(true).with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())).try_init()
    };
    match installed {
        // One sink for the life of the process: hot paths hold it by
        // reference instead of counting references to it.
        Ok(()) => (Some(guard), json.then(|| LineSink(Box::leak(Box::new(writer))))),
        Err(_) => (None, None),
    }
}

/// Writes whole, pre-formatted JSON lines into the log queue.
#[derive(Clone, Copy)]
pub struct LineSink(&'static BatchWriter);

impl fmt::Debug for LineSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LineSink")
    }
}

impl LineSink {
    /// Queues the line `render` appends to the buffer it is given (ending
    /// with a newline). `render` writes straight into the locked queue: it
    /// must be short and must not log. See [`BatchWriter::append_with`].
    pub fn write_line(&self, render: impl FnOnce(&mut Vec<u8>)) {
        self.0.append_with(render);
    }
}

/// Everything of a line's start after the time, for a fixed level, target
/// and message: rendered once by a writer that starts many such lines with
/// [`begin_line_at`].
pub fn line_prefix(level: &tracing::Level, target: &str, msg: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + target.len() + msg.len());
    out.extend_from_slice(b"\",\"level\":\"");
    out.extend_from_slice(level_name(level).as_bytes());
    out.extend_from_slice(b"\",\"service\":\"");
    out.extend_from_slice(SERVICE.as_bytes());
    out.extend_from_slice(b"\",\"target\":\"");
    push_escaped(&mut out, target);
    out.extend_from_slice(b"\",\"msg\":\"");
    push_escaped(&mut out, msg);
    out.push(b'"');
    out
}

/// Starts a JSON line with the fields every line carries, in the order the
/// subscriber writes them: `{"time":…,"level":…,"service":…,"target":…,"msg":…`
/// (the time, then a [`line_prefix`]). The caller appends `,"key":value`
/// pairs (keys as constants, values with [`push_escaped`], [`push_plain`],
/// [`push_uint`] or [`push_millis`]) and then [`end_line`]. The line's
/// time is the wall-clock time at `now`, so a caller that already read the
/// monotonic clock (to time a request) reads no clock again.
pub fn begin_line_at(out: &mut Vec<u8>, prefix: &[u8], now: Instant) {
    out.extend_from_slice(b"{\"time\":\"");
    push_timestamp_at(out, now);
    out.extend_from_slice(prefix);
}

/// The timestamp text of one millisecond, the span of the monotonic clock
/// that falls in it, and its whole second since the Unix epoch.
#[derive(Clone, Copy)]
struct Stamp {
    from: Instant,
    until: Instant,
    secs: u64,
    text: [u8; STAMP_LEN],
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`
const STAMP_LEN: usize = 24;
/// `YYYY-MM-DDTHH:MM:SS`
const SECOND_LEN: usize = 19;

/// Appends the wall-clock time at `now` as RFC 3339 UTC with milliseconds.
/// Each thread keeps the last millisecond it wrote, with the span of the
/// monotonic clock that millisecond covers: under load most lines fall in
/// it, and their time is then two comparisons and a copy, with no clock
/// arithmetic. A new millisecond in the same second rewrites the digits
/// after the dot; a new second formats the date and time again.
fn push_timestamp_at(out: &mut Vec<u8>, now: Instant) {
    thread_local! {
        static LAST: Cell<Option<Stamp>> = const { Cell::new(None) };
    }
    let last = LAST.get();
    if let Some(last) = last {
        if last.from <= now && now < last.until {
            out.extend_from_slice(&last.text);
            return;
        }
    }
    let since = since_epoch_at(now);
    let secs = since.as_secs();
    let same_second = last.filter(|l| l.secs == secs).map(|l| l.text);
    let Some(text) = stamp_text(since, same_second) else {
        return push_timestamp(out, since);
    };
    out.extend_from_slice(&text);
    let into_milli = Duration::from_nanos(u64::from(since.subsec_nanos() % 1_000_000));
    let from = now.checked_sub(into_milli);
    if let Some((from, until)) = from.and_then(|f| Some((f, f.checked_add(Duration::from_millis(1))?))) {
        LAST.set(Some(Stamp { from, until, secs, text }));
    }
}

/// The wall-clock time at `now`, as time since the Unix epoch: a pair of
/// (monotonic, wall-clock) readings that each thread takes anew every
/// second, plus the monotonic time since. Within that second the two clocks
/// drift apart by no more than NTP slews them (microseconds), far below
/// the millisecond a log line shows.
fn since_epoch_at(now: Instant) -> Duration {
    thread_local! {
        static BASE: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
    }
    BASE.with(|base| {
        if let Some((mono, wall)) = base.get() {
            let recent = Duration::from_secs(1);
            match now.checked_duration_since(mono) {
                Some(after) if after < recent => return wall + after,
                Some(_) => {}
                // Read before the base was taken, as a line written late is.
                None => match mono.checked_duration_since(now) {
                    Some(before) if before < recent => return wall.saturating_sub(before),
                    _ => {}
                },
            }
        }
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        base.set(Some((now, wall)));
        wall
    })
}

/// `since` (since the Unix epoch) as RFC 3339 UTC with milliseconds.
/// `second` is the text of a timestamp in the same second, whose date and
/// time are kept; without it they are formatted. `None` for years past
/// 9999, whose text is longer.
fn stamp_text(since: Duration, second: Option<[u8; STAMP_LEN]>) -> Option<[u8; STAMP_LEN]> {
    let mut text = match second {
        Some(text) => text,
        None => {
            // From humantime, without its "Z".
            let full = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(since.as_secs())).to_string();
            let mut text = [0; STAMP_LEN];
            text[..SECOND_LEN].copy_from_slice(full.strip_suffix('Z').filter(|t| t.len() == SECOND_LEN)?.as_bytes());
            text
        }
    };
    text[SECOND_LEN..STAMP_LEN - 1].copy_from_slice(&dot_three_digits(since.subsec_millis()));
    text[STAMP_LEN - 1] = b'Z';
    Some(text)
}

/// Appends `since` (since the Unix epoch) as RFC 3339 UTC with milliseconds.
fn push_timestamp(out: &mut Vec<u8>, since: Duration) {
    match stamp_text(since, None) {
        Some(text) => out.extend_from_slice(&text),
        None => out.extend_from_slice(humantime::format_rfc3339_millis(UNIX_EPOCH + since).to_string().as_bytes()),
    }
}

/// `"00"` to `"99"`: two digits per lookup rather than a division each.
const PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// `n` (below 1000) as three digits.
#[inline(always)]
pub fn three_digits(n: u32) -> [u8; 3] {
    let [tens, ones] = PAIRS[(n % 100) as usize];
    [b'0' + (n / 100 % 10) as u8, tens, ones]
}

/// `.NNN`: `n` (below 1000) as three digits after a dot.
#[inline(always)]
fn dot_three_digits(n: u32) -> [u8; 4] {
    let [hundreds, tens, ones] = three_digits(n);
    [b'.', hundreds, tens, ones]
}

/// Appends [`dot_three_digits`].
#[inline(always)]
fn push_dot_three_digits(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&dot_three_digits(n));
}

/// Appends the decimal digits of `n` without going through `fmt`. Numbers
/// below 1000 (most byte counts of small exchanges, most durations' whole
/// milliseconds, every status code) are copied as arrays of known size,
/// without a call.
#[inline(always)]
pub fn push_uint(out: &mut Vec<u8>, n: u64) {
    match n {
        0..=9 => out.push(b'0' + n as u8),
        10..=99 => out.extend_from_slice(&PAIRS[n as usize]),
        100..=999 => out.extend_from_slice(&three_digits(n as u32)),
        _ => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
    }
}

/// Appends a duration in milliseconds with microsecond precision
/// (`12.005`), formatted with integer arithmetic.
#[inline(always)]
pub fn push_millis(out: &mut Vec<u8>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    push_uint(out, micros / 1000);
    push_dot_three_digits(out, (micros % 1000) as u32);
}

/// Appends a value known to need no escaping inside a JSON string: names
/// the config validated to letters, digits, `-`, `_` and `.`, HTTP method
/// tokens, IP addresses, fixed strings. Saves the scan of [`push_escaped`]
/// on the request path. Bytes, so a header value the gateway validated
/// where it made it (a request id, a trace id, an IP) is not checked for
/// UTF-8 again.
#[inline(always)]
pub fn push_plain(out: &mut Vec<u8>, value: &[u8]) {
    debug_assert!(
        !needs_escape(value) && std::str::from_utf8(value).is_ok(),
        "{:?} needs escaping",
        String::from_utf8_lossy(value)
    );
    out.extend_from_slice(value);
}

/// Appends `s` escaped for the inside of a JSON string. Inlined: most
/// values (every path on the request path) need no escaping, and their
/// check and copy cost no call of their own.
#[inline]
pub fn push_escaped(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        push_escaped_slow(out, s);
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// [`push_escaped`] for a value with something to escape.
#[cold]
#[inline(never)]
fn push_escaped_slow(out: &mut Vec<u8>, s: &str) {
    let _ = escape_pieces::<std::convert::Infallible>(s, |piece| {
        out.extend_from_slice(piece.as_bytes());
        Ok(())
    });
}

/// Closes a line begun with [`begin_line_at`].
pub fn end_line(out: &mut Vec<u8>) {
    out.extend_from_slice(b"}\n");
}

/// The JSON line format. Fields are written straight into the line buffer
/// tracing-subscriber hands us: no intermediate map, one allocation-free
/// pass per event on the request path.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        write!(writer, "{{\"time\":\"{}\",\"level\":\"", humantime::format_rfc3339_millis(SystemTime::now()))?;
        writer.write_str(level_name(meta.level()))?;
        writer.write_str("\",\"service\":\"")?;
        writer.write_str(SERVICE)?;
        writer.write_str("\"")?;
        // An event with its own `target` field (audit events name what they
        // acted on) keeps it; the logger's target would be a duplicate key.
        if meta.fields().field("target").is_none() {
            writer.write_str(",\"target\":")?;
            write_json_str(&mut writer, meta.target())?;
        }
        let mut fields = Fields { out: &mut writer, result: Ok(()) };
        event.record(&mut fields);
        fields.result?;
        writer.write_str("}\n")
    }
}

fn level_name(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::ERROR => "error",
        tracing::Level::WARN => "warn",
        tracing::Level::INFO => "info",
        tracing::Level::DEBUG => "debug",
        tracing::Level::TRACE => "trace",
    }
}

/// Writes `s` as a JSON string, escaping what RFC 8259 requires.
pub fn write_json_str(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    write_escaped(out, s)?;
    out.write_char('"')
}

/// Writes `s` escaped for the inside of a JSON string: `"`, `\` and control
/// characters. Most values (paths, ids, names) need no escaping: one table
/// lookup per byte, then one copy.
fn write_escaped(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    escape_pieces(s, |piece| out.write_str(piece))
}

/// Hands `s` to `piece` as runs of bytes that need no escaping, with the
/// JSON escape of each byte that does between them: the one escaper behind
/// both the subscriber's writer and the access line's byte buffer.
fn escape_pieces<E>(s: &str, mut piece: impl FnMut(&str) -> Result<(), E>) -> Result<(), E> {
    if !needs_escape(s.as_bytes()) {
        return piece(s);
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let code;
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => {
                code = [b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]];
                std::str::from_utf8(&code).unwrap_or_default()
            }
            _ => continue,
        };
        // Escaped bytes are ASCII, so `i` is always a char boundary.
        piece(&s[start..i])?;
        piece(escape)?;
        start = i + 1;
    }
    piece(&s[start..])
}

/// Bytes JSON strings must escape: control characters, `"` and `\\`.
const ESCAPED: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Whether any byte of `s` is in [`ESCAPED`], eight bytes per step: a
/// byte below 0x20 borrows out of its lane when 0x20 is subtracted, and a
/// `"` or `\\` becomes zero when xored with itself. Either sets the lane's
/// high bit, unless the byte itself had it (UTF-8 beyond ASCII, never
/// escaped). A lane can also light up from a borrow out of a lower one
/// that did; that only ever repeats a `true`.
#[inline]
fn needs_escape(s: &[u8]) -> bool {
    const LANES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u8| x.wrapping_sub(LANES * u64::from(n)) & !x;
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let hits = below(x, 0x20) | below(x ^ (LANES * u64::from(b'"')), 1) | below(x ^ (LANES * u64::from(b'\\')), 1);
        if hits & HIGH != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|b| ESCAPED[usize::from(*b)])
}

/// Writes an event's fields as `,"name":value`; tracing's `message`
/// becomes `msg`.
struct Fields<'a, W: fmt::Write> {
    out: &'a mut W,
    result: fmt::Result,
}

impl<W: fmt::Write> Fields<'_, W> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        let name = match field.name() {
            "message" => "msg",
            n => n,
        };
        self.out.write_str(",\"")?;
        self.out.write_str(name)?;
        self.out.write_str("\":")
    }

    fn put(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(self.out));
        }
    }
}

impl<W: fmt::Write> Visit for Fields<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, |out| write_json_str(out, value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |out| write!(out, "{value}"));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |out| write!(out, "{value}"));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.put(field, |out| write!(out, "{value}"));
        } else {
            self.put(field, |out| out.write_str("null"));
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |out| out.write_str(if value { "true" } else { "false" }));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // Display and Debug values are rendered once into a small buffer so
        // they can be escaped.
        let text = format!("{value:?}");
        self.put(field, |out| write_json_str(out, &text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    #[test]
    fn timestamps_and_numbers_format_like_the_subscriber() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_306_422_053);
        let mut out = Vec::new();
        push_timestamp(&mut out, Duration::from_millis(1_795_306_422_053));
        assert_eq!(out, humantime::format_rfc3339_millis(t).to_string().as_bytes());
        // The same millisecond again, the next ones, the next second, an
        // earlier one: each as formatted from scratch.
        for ms in [1_795_306_422_053, 1_795_306_422_054, 1_795_306_422_999, 1_795_306_423_000, 1_795_306_360_001, 0] {
            let mut out = Vec::new();
            push_timestamp(&mut out, Duration::from_millis(ms));
            let want = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string();
            assert_eq!(String::from_utf8_lossy(&out), want);
        }
        let mut out = Vec::new();
        push_millis(&mut out, Duration::from_micros(12_005));
        out.push(b' ');
        push_millis(&mut out, Duration::from_micros(7));
        out.push(b' ');
        push_uint(&mut out, 0);
        out.push(b' ');
        push_uint(&mut out, 18_446_744_073_709_551_615);
        assert_eq!(out, b"12.005 0.007 0 18446744073709551615");
        // Every size of the short path and the first numbers past it.
        for n in (0..=1_200).chain([9_999, 10_000, 65_535]) {
            let mut out = Vec::new();
            push_uint(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn a_kept_millisecond_gives_the_time_the_clocks_give() {
        // A thread of its own, so the wall-clock base is taken at `t0` and
        // every reading below is within its second.
        std::thread::spawn(|| {
            let t0 = Instant::now();
            let us = Duration::from_micros;
            let stamp = |at: Instant| {
                let mut out = Vec::new();
                push_timestamp_at(&mut out, at);
                String::from_utf8(out).unwrap_or_default()
            };
            let want = |at: Instant| {
                let mut out = Vec::new();
                push_timestamp(&mut out, since_epoch_at(at));
                String::from_utf8(out).unwrap_or_default()
            };
            // Within the kept millisecond, at its edges, past it, before it
            // (a line written late), and back in it.
            let later = [0, 1, 250, 999, 1_000, 1_001, 1_500, 2_000, 123_456, 900_000].map(|n| t0 + us(n));
            let earlier = [1, 500, 1_000, 1_001, 400_000].map(|n| t0 - us(n));
            for at in later.into_iter().chain(earlier).chain([t0, t0 + us(300)]) {
                assert_eq!(stamp(at), want(at), "{:?} after the first reading", at.saturating_duration_since(t0));
            }
        })
        .join()
        .expect("the checks pass");
    }

    #[test]
    fn line_times_follow_the_wall_clock() {
        let wall = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        // The first call on a thread reads the wall clock; later ones derive
        // it from the monotonic clock. Both stay within a few ms of it.
        for _ in 0..3 {
            let (before, derived, after) = (wall(), since_epoch_at(Instant::now()), wall());
            let slack = Duration::from_millis(5);
            assert!(derived + slack >= before && derived <= after + slack, "{before:?} {derived:?} {after:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        // A reading older than the thread's base is placed before it.
        let early = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let (later, at_early) = std::thread::spawn(move || (since_epoch_at(Instant::now()), since_epoch_at(early)))
            .join()
            .unwrap_or_default();
        let gap = later.saturating_sub(at_early);
        assert!(gap >= Duration::from_millis(15) && gap < Duration::from_millis(500), "{at_early:?} {later:?}");
    }

    #[test]
    fn the_word_at_a_time_check_agrees_with_the_table() {
        // Every byte value at every position of a 19-byte string (two whole
        // words and a remainder), among bytes that need no escape.
        for b in 0..=255u8 {
            for at in 0..19 {
                let mut s = *b"abcdefghijklmnopqrs";
                s[at] = b;
                assert_eq!(needs_escape(&s), ESCAPED[usize::from(b)], "byte {b:#04x} at {at}");
            }
        }
        // Bytes with the high bit set next to ones just above the limits.
        assert!(!needs_escape("é ü €#]!\u{7f}ÿ€€€".as_bytes()));
        assert!(needs_escape("ééé\u{1f}ééé".as_bytes()));
        assert!(!needs_escape(b""));
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        write_json_str(&mut out, "a\"b\\c\nd\u{1}é").ok();
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(v, "a\"b\\c\nd\u{1}é");

        // The access-line writer's escaping agrees with serde_json on every
        // control character, quotes, backslashes and multi-byte text.
        let mut nasty: String = (0u8..0x20).map(char::from).collect();
        nasty.push_str("\"\\/é€😀\u{7f}end");
        for value in [nasty.as_str(), "", "plain", "\"", "\\\\"] {
            let mut out = b"{\"x\":1,\"v\":\"".to_vec();
            push_escaped(&mut out, value);
            out.push(b'"');
            end_line(&mut out);
            let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
            assert_eq!(v["v"], value, "{}", String::from_utf8_lossy(&out));
        }
    }

    #[test]
    fn lines_are_json_with_the_required_fields() {
        let buf = Buf::default();
        let sub = tracing_subscriber::fmt().event_format(JsonLines).with_writer(buf.clone()).finish();
        tracing::subscriber::with_default(sub, || {
            tracing::info!(public = %"127.0.0.1:1", count = 3u64, ok = true, "listening");
        });
        let text = String::from_utf8(buf.0.lock().map(|b| b.clone()).unwrap_or_default()).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_default();
        assert_eq!(v["msg"], "listening");
        assert_eq!(v["level"], "info");
        assert_eq!(v["service"], SERVICE);
        assert_eq!(v["public"], "127.0.0.1:1");
        assert_eq!(v["count"], 3);
        assert_eq!(v["ok"], true);
        assert!(v["target"].as_str().is_some_and(|t| t.contains("logging")));
        assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}
