//! The Prometheus text exposition format, parsed whole: every sample with its
//! exact label set, and every family's `# TYPE`. Tests assert exact values
//! by name and labels, count series, and list metric names.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::scrape;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The sample's name (a histogram's `_bucket`, `_sum` and `_count` are
    /// separate names).
    pub name: String,
    /// Its labels, exactly as written.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

impl Series {
    /// Whether every pair of `labels` is among this sample's labels.
    pub fn has_labels(&self, labels: &[(&str, &str)]) -> bool {
        labels.iter().all(|(k, v)| self.labels.get(*k).is_some_and(|have| have == v))
    }

    /// Whether this sample's labels are exactly `labels`, no more, no fewer.
    pub fn has_exact_labels(&self, labels: &[(&str, &str)]) -> bool {
        self.labels.len() == labels.len() && self.has_labels(labels)
    }
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if !self.labels.is_empty() {
            let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            write!(f, "{{{}}}", labels.join(","))?;
        }
        write!(f, " {}", self.value)
    }
}

/// A parsed `/metrics` body.
#[derive(Debug, Clone)]
pub struct Exposition {
    text: String,
    series: Vec<Series>,
    types: BTreeMap<String, String>,
    problems: Vec<String>,
}

impl Exposition {
    /// Parses `text`. Lines that are not comments, blank, or well-formed
    /// samples are kept in [`Exposition::problems`] rather than dropped
    /// silently.
    pub fn parse(text: &str) -> Self {
        let mut series = Vec::new();
        let mut types = BTreeMap::new();
        let mut problems = Vec::new();
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.split_whitespace();
                if words.next() == Some("TYPE") {
                    if let (Some(family), Some(kind)) = (words.next(), words.next()) {
                        types.insert(family.to_owned(), kind.to_owned());
                    }
                }
                continue;
            }
            match parse_sample(line) {
                Some(sample) => series.push(sample),
                None => problems.push(line.to_owned()),
            }
        }
        Self { text: text.to_owned(), series, types, problems }
    }

    /// The text as scraped.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every sample, in the order written.
    pub fn series(&self) -> &[Series] {
        &self.series
    }

    /// The number of sample lines.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether there are no samples at all.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Lines that are neither comments nor parseable samples.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// The `# TYPE` of metric family `family` (`counter`, `gauge`,
    /// `histogram`, `summary`, `untyped`).
    pub fn type_of(&self, family: &str) -> Option<&str> {
        self.types.get(family).map(String::as_str)
    }

    /// Every family with a `# TYPE` line, and its type.
    pub fn types(&self) -> &BTreeMap<String, String> {
        &self.types
    }

    /// The distinct sample names.
    pub fn names(&self) -> BTreeSet<&str> {
        self.series.iter().map(|s| s.name.as_str()).collect()
    }

    /// Every sample named `name`.
    pub fn of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Series> + 'a {
        self.series.iter().filter(move |s| s.name == name)
    }

    /// Every sample named `name` whose labels include `labels`.
    pub fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&'a str, &'a str)]) -> Vec<&'a Series> {
        self.of(name).filter(|s| s.has_labels(labels)).collect()
    }

    /// The value of the sample named `name` whose label set is exactly
    /// `labels`; `None` if there is no such series.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.of(name).find(|s| s.has_exact_labels(labels)).map(|s| s.value)
    }

    /// Like [`Exposition::get`], but panics if the series is absent, listing
    /// the series of that name that do exist.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| {
            let have: Vec<String> = self.of(name).map(ToString::to_string).collect();
            panic!("no series {name} with exactly the labels {labels:?}; the {name} series are:\n{}", have.join("\n"))
        })
    }

    /// The sum of every sample named `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.of(name).filter(|s| s.has_labels(labels)).map(|s| s.value).sum()
    }
}

/// Scrapes `/metrics` on `addr` (panicking unless it answers 200) and parses it.
pub async fn scrape_metrics(addr: SocketAddr) -> Exposition {
    Exposition::parse(&scrape(addr, "/metrics").await)
}

/// Scrapes `/metrics` on `addr` until `done` holds, and returns that scrape;
/// panics with the last scrape if `timeout` passes first. For counters that
/// settle a moment after the client has its answer (the gateway counts when
/// the response body ends).
pub async fn scrape_until(
    addr: SocketAddr,
    timeout: Duration,
    mut done: impl FnMut(&Exposition) -> bool,
) -> Exposition {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let scraped = scrape_metrics(addr).await;
        if done(&scraped) {
            return scraped;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/metrics on {addr} did not reach the expected state within {timeout:?}; last scrape:\n{}",
            scraped.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn parse_sample(line: &str) -> Option<Series> {
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after)?;
        labels = parsed;
        rest = after;
    }
    let mut fields = rest.split_whitespace();
    let value = match fields.next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    // An optional timestamp, then nothing.
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Series { name: name.to_owned(), labels, value })
}

/// Parses `key="value",...}` and returns the labels and what follows `}`.
fn parse_labels(mut text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = text.split_once('=')?;
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        let after = after.trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (i, '"') => break i + 1,
                (_, c) => value.push(c),
            }
        };
        if labels.insert(key.to_owned(), value).is_some() {
            return None;
        }
        text = after[end..].trim_start();
        text = text.strip_prefix(',').unwrap_or(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP a_total Things.\n# TYPE a_total counter\n\
        a_total{route=\"r\",code=\"200\"} 3\n\
        a_total{route=\"r\",code=\"503\",x=\"q\\\"u,o}te\\\\\"} 4\n\
        # TYPE h_seconds histogram\n\
        h_seconds_bucket{le=\"0.5\"} 1\n\
        h_seconds_bucket{le=\"+Inf\"} 2\n\
        h_seconds_sum 0.75\n\
        h_seconds_count 2 1700000000000\n\
        plain 1e3\n\
        \n";

    #[test]
    fn parses_samples_types_and_exact_labels() {
        let e = Exposition::parse(TEXT);
        assert!(e.problems().is_empty(), "{:?}", e.problems());
        assert_eq!(e.len(), 7);
        assert_eq!(e.get("a_total", &[("route", "r"), ("code", "200")]), Some(3.0));
        // Exact label sets: a subset does not match.
        assert_eq!(e.get("a_total", &[("route", "r")]), None);
        assert_eq!(e.get("a_total", &[("route", "r"), ("code", "503"), ("x", "q\"u,o}te\\")]), Some(4.0));
        assert_eq!(e.sum("a_total", &[("route", "r")]), 7.0);
        assert_eq!(e.get("h_seconds_bucket", &[("le", "+Inf")]), Some(2.0));
        assert_eq!(e.get("h_seconds_count", &[]), Some(2.0));
        assert_eq!(e.get("plain", &[]), Some(1000.0));
        assert_eq!(e.type_of("h_seconds"), Some("histogram"));
        assert_eq!(e.type_of("a_total"), Some("counter"));
        assert!(e.names().contains("h_seconds_sum"));
    }

    #[test]
    fn malformed_lines_are_reported() {
        let e = Exposition::parse("ok 1\nbad{le=\"1\" 2\nworse\nx{a=\"1\",a=\"2\"} 1\n");
        assert_eq!(e.len(), 1);
        assert_eq!(e.problems().len(), 3);
    }
}
