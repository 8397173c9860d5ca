//! The Prometheus text exposition format (0.0.4) of a [`Store`]: families
//! sorted by name, each with its `# HELP` (when described) and `# TYPE`
//! lines, histograms as cumulative `_bucket` series with `_sum` and
//! `_count`.
//!
//! A scrape renders every series, so the work per series is kept to copies:
//! a series' labels are written once and reused for each of its lines, and
//! each bucket layout's `le` values are formatted once per scrape.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use metrics::Key;

use super::store::Store;

/// One metric family's lines, before its header.
struct Family {
    kind: &'static str,
    body: String,
}

/// The body of the family `name`, created on its first series.
fn family<'a>(families: &'a mut BTreeMap<Box<str>, Family>, name: &str, kind: &'static str) -> &'a mut String {
    if !families.contains_key(name) {
        families.insert(name.into(), Family { kind, body: String::new() });
    }
    &mut families.get_mut(name).expect("inserted above when absent").body
}

/// Renders every series in `store`.
pub(crate) fn render(store: &Store) -> String {
    let mut families: BTreeMap<Box<str>, Family> = BTreeMap::new();
    let mut labels = String::new();
    store.registry.visit_counters(|key, c| {
        let body = family(&mut families, key.name(), "counter");
        label_set(&mut labels, key);
        series(body, key.name(), "", &labels, "");
        push_u64(body, c.load(Ordering::Relaxed));
        body.push('\n');
    });
    store.registry.visit_gauges(|key, g| {
        let body = family(&mut families, key.name(), "gauge");
        label_set(&mut labels, key);
        series(body, key.name(), "", &labels, "");
        push_f64(body, f64::from_bits(g.load(Ordering::Relaxed)));
        body.push('\n');
    });
    let mut layouts = Layouts::default();
    store.registry.visit_histograms(|key, h| {
        let body = family(&mut families, key.name(), "histogram");
        label_set(&mut labels, key);
        let les = layouts.get(&h.bounds);
        let mut cumulative = 0;
        for (le, count) in les.iter().map(String::as_str).chain(["le=\"+Inf\""]).zip(h.counts()) {
            cumulative += count;
            series(body, key.name(), "_bucket", &labels, le);
            push_u64(body, cumulative);
            body.push('\n');
        }
        series(body, key.name(), "_sum", &labels, "");
        push_f64(body, h.sum());
        body.push('\n');
        series(body, key.name(), "_count", &labels, "");
        push_u64(body, cumulative);
        body.push('\n');
    });

    let descriptions = store.descriptions();
    let size = families.iter().map(|(name, f)| f.body.len() + 2 * name.len() + 64).sum::<usize>()
        + descriptions.values().map(|d| d.help.len()).sum::<usize>();
    let mut out = String::with_capacity(size);
    for (name, f) in &families {
        if let Some(d) = descriptions.get(&**name) {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            escape_into(&mut out, &d.help, false);
            out.push('\n');
        }
        out.push_str("# TYPE ");
        out.push_str(name);
        out.push(' ');
        out.push_str(f.kind);
        out.push('\n');
        out.push_str(&f.body);
        out.push('\n');
    }
    out
}

/// The `le="…"` label of each bound of each layout seen in this scrape.
#[derive(Default)]
struct Layouts(Vec<(Arc<[f64]>, Vec<String>)>);

impl Layouts {
    fn get(&mut self, bounds: &Arc<[f64]>) -> &[String] {
        let i = match self.0.iter().position(|(b, _)| Arc::ptr_eq(b, bounds)) {
            Some(i) => i,
            None => {
                let les = bounds.iter().map(|b| format!("le=\"{b}\"")).collect();
                self.0.push((Arc::clone(bounds), les));
                self.0.len() - 1
            }
        };
        &self.0[i].1
    }
}

/// `k1="v1",k2="v2"`, the series' own labels, into `out` (cleared first).
fn label_set(out: &mut String, key: &Key) {
    out.clear();
    for (i, label) in key.labels().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(label.key());
        out.push_str("=\"");
        escape_into(out, label.value(), true);
        out.push('"');
    }
}

/// `name` `suffix` `{labels,extra}` and the space before the value.
fn series(out: &mut String, name: &str, suffix: &str, labels: &str, extra: &str) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || !extra.is_empty() {
        out.push('{');
        out.push_str(labels);
        if !labels.is_empty() && !extra.is_empty() {
            out.push(',');
        }
        out.push_str(extra);
        out.push('}');
    }
    out.push(' ');
}

fn push_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// A sample value as Prometheus parses it: integers without a fraction,
/// `+Inf`, `-Inf` and `NaN` spelled its way.
fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 9.0e15 {
        // Exact in an i64, and what `Display` would print, faster.
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Escapes `\` and line feeds, and `"` in label values.
fn escape_into(out: &mut String, s: &str, label_value: bool) {
    if !s.bytes().any(|b| b == b'\\' || b == b'\n' || (label_value && b == b'"')) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if label_value => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Buckets;
    use crate::exporter::store::MetricsRecorder;

    #[test]
    fn families_are_sorted_described_and_typed() {
        let buckets = Buckets { latency: vec![0.1, 1.0], ..Buckets::default() };
        let recorder = MetricsRecorder::new(&buckets).expect("valid buckets");
        metrics::with_local_recorder(&recorder, || {
            metrics::describe_counter!("b_total", "Things.\nCounted \\ here.");
            metrics::counter!("b_total", "route" => "a\"b", "code" => "200").increment(3);
            metrics::gauge!("a_ready").set(1.0);
            metrics::gauge!("c_ratio").set(0.25);
            let h = metrics::histogram!("d_seconds", "route" => "echo");
            for v in [0.0625, 0.5, 0.5, 3.0] {
                h.record(v);
            }
            metrics::histogram!("e_seconds").record(0.01);
        });
        let text = recorder.handle().render();
        let expected = [
            "# TYPE a_ready gauge",
            "a_ready 1",
            "",
            "# HELP b_total Things.\\nCounted \\\\ here.",
            "# TYPE b_total counter",
            "b_total{route=\"a\\\"b\",code=\"200\"} 3",
            "",
            "# TYPE c_ratio gauge",
            "c_ratio 0.25",
            "",
            "# TYPE d_seconds histogram",
            "d_seconds_bucket{route=\"echo\",le=\"0.1\"} 1",
            "d_seconds_bucket{route=\"echo\",le=\"1\"} 3",
            "d_seconds_bucket{route=\"echo\",le=\"+Inf\"} 4",
            "d_seconds_sum{route=\"echo\"} 4.0625",
            "d_seconds_count{route=\"echo\"} 4",
            "",
            "# TYPE e_seconds histogram",
            "e_seconds_bucket{le=\"0.1\"} 1",
            "e_seconds_bucket{le=\"1\"} 1",
            "e_seconds_bucket{le=\"+Inf\"} 1",
            "e_seconds_sum 0.01",
            "e_seconds_count 1",
            "",
        ];
        assert_eq!(text.lines().collect::<Vec<_>>(), expected, "{text}");
    }

    #[test]
    fn values_are_spelled_as_prometheus_parses_them() {
        let mut out = String::new();
        for v in [0.0, -3.0, 1.5e-7, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e20] {
            push_f64(&mut out, v);
            out.push(' ');
        }
        assert_eq!(out, "0 -3 0.00000015 +Inf -Inf NaN 100000000000000000000 ");
    }
}
