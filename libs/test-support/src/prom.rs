//! Reading single samples out of Prometheus text exposition.

use std::collections::BTreeMap;

/// One sample: its labels and value.
pub type Sample = (BTreeMap<String, String>, f64);

/// Every sample of metric `name` (exactly that name, so a histogram's
/// `_bucket`, `_sum` and `_count` are separate names) in `text`.
pub fn samples(text: &str, name: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = if let Some(rest) = rest.strip_prefix('{') {
                let (labels, value) = rest.split_once('}')?;
                (parse_labels(labels), value)
            } else if rest.starts_with(' ') {
                (BTreeMap::new(), rest)
            } else {
                return None;
            };
            let value = value.split_whitespace().next()?;
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().ok()?,
            };
            Some((labels, value))
        })
        .collect()
}

/// The value of the one sample of `name` whose labels include all of
/// `labels`; `None` if there is none. Panics if several match, since the
/// caller meant one series.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<Sample> = samples(text, name)
        .into_iter()
        .filter(|(have, _)| labels.iter().all(|(k, v)| have.get(*k).is_some_and(|h| h == v)))
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?} matches several series: {matching:?}");
    matching.first().map(|(_, v)| *v)
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let after = after.trim_start();
        let Some(after) = after.strip_prefix('"') else { break };
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim().trim_start_matches(',').trim().to_owned(), value);
        rest = after[end..].trim_start().trim_start_matches(',').trim_start();
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse() {
        let text = "# HELP x y\n# TYPE x counter\n\
            gateway_requests_rejected_total{reason=\"forbidden\"} 3\n\
            gateway_requests_rejected_total{reason=\"unauthenticated\",x=\"a,b\\\"c\"} 7\n\
            gateway_db_pool_max_connections 10\n\
            gateway_db_pool_max_connections_other 1\n";
        assert_eq!(metric_value(text, "gateway_requests_rejected_total", &[("reason", "forbidden")]), Some(3.0));
        assert_eq!(metric_value(text, "gateway_requests_rejected_total", &[("x", "a,b\"c")]), Some(7.0));
        assert_eq!(metric_value(text, "gateway_db_pool_max_connections", &[]), Some(10.0));
        assert_eq!(metric_value(text, "gateway_requests_rejected_total", &[("reason", "nope")]), None);
    }
}
