//! Log output: one JSON object per line on stdout, ready for Loki, or
//! human-readable text for local development.
//!
//! Every JSON line has `time` (RFC 3339, UTC), `level`, `service`, `msg` and
//! `target`, followed by the event's own fields at the top level.

use std::fmt;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The `service` field of every line.
pub const SERVICE: &str = "gatehouse";

/// Installs the global subscriber. `level` is a tracing filter such as
/// `info`; `RUST_LOG`, when set, overrides it. Returns quietly if a
/// subscriber is already installed (as in tests).
pub fn init(level: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout);
    let _ = if json { builder.event_format(JsonLines).try_init() } else { builder.with_target(true).try_init() };
}

/// The JSON line format.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("time".into(), humantime::format_rfc3339_millis(SystemTime::now()).to_string().into());
        line.insert("level".into(), meta.level().as_str().to_ascii_lowercase().into());
        line.insert("service".into(), SERVICE.into());
        line.insert("target".into(), meta.target().into());
        event.record(&mut Fields(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Collects an event's fields; tracing's `message` becomes `msg`.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = match field.name() {
            "message" => "msg",
            n => n,
        };
        self.0.insert(name.to_owned(), value);
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
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
    fn lines_are_json_with_the_required_fields() {
        let buf = Buf::default();
        let sub = tracing_subscriber::fmt().event_format(JsonLines).with_writer(buf.clone()).finish();
        tracing::subscriber::with_default(sub, || {
            tracing::info!(public = %"127.0.0.1:1", count = 3u64, ok = true, "listening");
        });
        let text = String::from_utf8(buf.0.lock().map(|b| b.clone()).unwrap_or_default()).unwrap_or_default();
        let v: Value = serde_json::from_str(text.trim()).unwrap_or_default();
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
