//! The `console` exporter: every `OTEL_METRIC_EXPORT_INTERVAL`, the
//! Prometheus text goes to stderr. Not stdout: stdout carries the JSON log
//! lines, and a multi-line metrics dump there would break every log parser
//! reading it.

use std::io::Write;

use super::store::Store;

/// Writes one snapshot, framed so a reader can tell where it starts and ends.
pub(crate) fn write_snapshot(store: &Store, out: &mut impl Write) -> std::io::Result<()> {
    let text = store.render();
    writeln!(out, "# gatehouse metrics snapshot")?;
    out.write_all(text.as_bytes())?;
    writeln!(out, "# end of snapshot")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Buckets;
    use crate::exporter::store::MetricsRecorder;

    #[test]
    fn writes_the_prometheus_text_between_markers() {
        let recorder = MetricsRecorder::new(&Buckets::default()).expect("default buckets are valid");
        metrics::with_local_recorder(&recorder, || metrics::counter!("gateway_ready_total").increment(3));
        let mut out = Vec::new();
        assert!(write_snapshot(&recorder.0, &mut out).is_ok());
        let text = String::from_utf8(out).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(
            lines,
            [
                "# gatehouse metrics snapshot",
                "# TYPE gateway_ready_total counter",
                "gateway_ready_total 3",
                "# end of snapshot"
            ]
        );
    }
}
