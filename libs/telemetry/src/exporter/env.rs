//! Reading the standard `OTEL_*` variables. Everything here is a pure
//! function of a variable lookup, so tests never touch the process
//! environment. Empty values count as unset, as the OpenTelemetry spec asks.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use http::Uri;
use http::header::{HeaderName, HeaderValue};

use super::ExporterKind;
use crate::Error;

/// A variable lookup: `|name| std::env::var(name).ok()` in production.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The exporter and its settings, as the environment chose them.
#[derive(Debug, Clone, PartialEq)]
pub enum Settings {
    /// Serve Prometheus text; on the admin port unless `listener` is set.
    Prometheus {
        /// `OTEL_EXPORTER_PROMETHEUS_HOST`/`_PORT`, when either is set.
        listener: Option<SocketAddr>,
    },
    /// Push OTLP/HTTP protobuf.
    Otlp(OtlpSettings),
    /// Print Prometheus text to stderr every `interval`.
    Console {
        /// `OTEL_METRIC_EXPORT_INTERVAL`.
        interval: Duration,
    },
    /// Record nothing.
    None,
}

/// Where and how OTLP metrics are pushed.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    /// The full URL metrics are POSTed to.
    pub endpoint: Uri,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`, `..._METRICS_HEADERS`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Time between pushes.
    pub interval: Duration,
    /// Resource attributes, `service.name` first.
    pub resource: Vec<(String, String)>,
}

impl Settings {
    /// The exporter kind.
    pub fn kind(&self) -> ExporterKind {
        match self {
            Self::Prometheus { .. } => ExporterKind::Prometheus,
            Self::Otlp(_) => ExporterKind::Otlp,
            Self::Console { .. } => ExporterKind::Console,
            Self::None => ExporterKind::None,
        }
    }

    /// Reads the settings; `version` becomes `service.version`.
    pub fn from_env(env: Lookup<'_>, version: &str) -> Result<Self, Error> {
        let get = |name: &str| env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let kind = match get("OTEL_METRICS_EXPORTER").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("prometheus") => ExporterKind::Prometheus,
            Some("otlp") => ExporterKind::Otlp,
            Some("console") => ExporterKind::Console,
            Some("none") => ExporterKind::None,
            Some(other) => {
                return Err(invalid("OTEL_METRICS_EXPORTER", other, "one of prometheus, otlp, console, none"));
            }
        };
        Ok(match kind {
            ExporterKind::Prometheus => Self::Prometheus { listener: prometheus_listener(&get)? },
            ExporterKind::Console => Self::Console { interval: interval(&get)? },
            ExporterKind::None => Self::None,
            ExporterKind::Otlp => Self::Otlp(otlp(&get, version)?),
        })
    }
}

fn invalid(var: &'static str, value: &str, expected: &'static str) -> Error {
    Error::Env { var, value: value.to_owned(), expected }
}

fn prometheus_listener(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<SocketAddr>, Error> {
    let (host, port) = (get("OTEL_EXPORTER_PROMETHEUS_HOST"), get("OTEL_EXPORTER_PROMETHEUS_PORT"));
    if host.is_none() && port.is_none() {
        return Ok(None);
    }
    let port = match port {
        None => 9464,
        Some(p) => p.parse::<u16>().map_err(|_| invalid("OTEL_EXPORTER_PROMETHEUS_PORT", &p, "a TCP port number"))?,
    };
    let host = host.unwrap_or_else(|| "localhost".to_owned());
    let host_error = || invalid("OTEL_EXPORTER_PROMETHEUS_HOST", &host, "an IP address or a resolvable host name");
    // Bracketed IPv6 literals are accepted as URLs write them; `localhost`
    // is IPv4 loopback whatever order /etc/hosts lists it in.
    let bare = match host.trim_start_matches('[').trim_end_matches(']') {
        "localhost" => "127.0.0.1",
        other => other,
    };
    (bare, port).to_socket_addrs().map_err(|_| host_error())?.next().map(Some).ok_or_else(host_error)
}

fn millis(get: &dyn Fn(&str) -> Option<String>, var: &'static str, default: u64) -> Result<Duration, Error> {
    match get(var) {
        None => Ok(Duration::from_millis(default)),
        Some(v) => match v.parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
            _ => Err(invalid(var, &v, "a positive number of milliseconds")),
        },
    }
}

fn interval(get: &dyn Fn(&str) -> Option<String>) -> Result<Duration, Error> {
    millis(get, "OTEL_METRIC_EXPORT_INTERVAL", 60_000)
}

fn otlp(get: &dyn Fn(&str) -> Option<String>, version: &str) -> Result<OtlpSettings, Error> {
    for var in ["OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
        if let Some(p) = get(var) {
            if p != "http/protobuf" {
                return Err(invalid(var, &p, "http/protobuf (grpc and http/json are not supported)"));
            }
            break;
        }
    }
    for var in ["OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"] {
        if let Some(c) = get(var).filter(|c| c != "none") {
            return Err(invalid(var, &c, "none (compression is not supported)"));
        }
    }
    let (var, url) = match (get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"), get("OTEL_EXPORTER_OTLP_ENDPOINT")) {
        // The signal-specific endpoint is used as given; the general one gets the signal's path.
        (Some(url), _) => ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", url),
        (None, Some(base)) => ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("{}/v1/metrics", base.trim_end_matches('/'))),
        (None, None) => ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318/v1/metrics".to_owned()),
    };
    let endpoint = url
        .parse::<Uri>()
        .ok()
        .filter(|u| u.scheme_str() == Some("http") && u.authority().is_some())
        .ok_or_else(|| invalid(var, &url, "an http:// URL (TLS is not supported; send to a local collector)"))?;

    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for var in ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS"] {
        for (k, v) in key_values(get(var).as_deref().unwrap_or(""), var)? {
            let name = HeaderName::try_from(k.as_str());
            let value = HeaderValue::try_from(v.as_str());
            let (Ok(name), Ok(value)) = (name, value) else {
                return Err(invalid(var, &format!("{k}=…"), "comma-separated name=value pairs of valid headers"));
            };
            // The signal-specific variable comes second and overrides.
            headers.retain(|(n, _)| *n != name);
            headers.push((name, value));
        }
    }

    let mut resource =
        key_values(get("OTEL_RESOURCE_ATTRIBUTES").as_deref().unwrap_or(""), "OTEL_RESOURCE_ATTRIBUTES")?;
    let service_name = get("OTEL_SERVICE_NAME")
        .or_else(|| resource.iter().find(|(k, _)| k == "service.name").map(|(_, v)| v.clone()))
        .unwrap_or_else(|| "gatehouse".to_owned());
    resource.retain(|(k, _)| k != "service.name");
    resource.insert(0, ("service.name".to_owned(), service_name));
    if !resource.iter().any(|(k, _)| k == "service.version") {
        resource.push(("service.version".to_owned(), version.to_owned()));
    }
    if !resource.iter().any(|(k, _)| k == "service.instance.id") {
        resource.push(("service.instance.id".to_owned(), instance_id(get)));
    }

    let timeout_var = match get("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT") {
        Some(_) => "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
        None => "OTEL_EXPORTER_OTLP_TIMEOUT",
    };
    let timeout = millis(get, timeout_var, 10_000)?;
    Ok(OtlpSettings { endpoint, headers, timeout, interval: interval(get)?, resource })
}

/// `key=value,key=value` with percent-encoded values (W3C Baggage style, as
/// the spec defines both `OTEL_RESOURCE_ATTRIBUTES` and the headers).
fn key_values(raw: &str, var: &'static str) -> Result<Vec<(String, String)>, Error> {
    raw.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').ok_or_else(|| invalid(var, pair, "comma-separated key=value pairs"))?;
            let v = percent_decode(v.trim()).ok_or_else(|| invalid(var, pair, "percent-encoded UTF-8 values"))?;
            Ok((k.trim().to_owned(), v))
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `hostname-pid`: unique per process, and readable in a pod (the hostname
/// is the pod's name).
fn instance_id(get: &dyn Fn(&str) -> Option<String>) -> String {
    let host = get("HOSTNAME")
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gatehouse".to_owned());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests;
