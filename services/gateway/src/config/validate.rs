//! Whole-config validation: every error is collected, each with its path.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::{Config, FieldError, Match};

/// Longest route or upstream name; names become metric label values.
const MAX_NAME_LEN: usize = 64;

pub(super) fn validate(config: &Config) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut err = |path: String, message: String| errors.push(FieldError { path, message });

    let public = check_listener(&config.listeners.public);
    if let Err(m) = &public {
        err("listeners.public".into(), m.clone());
    }
    let admin = check_listener(&config.listeners.admin);
    if let Err(m) = &admin {
        err("listeners.admin".into(), m.clone());
    }
    if let (Ok(p), Ok(a)) = (public, admin) {
        if p == a && p.port() != 0 {
            err("listeners.admin".into(), format!("must differ from listeners.public ({p})"));
        }
    }

    let db = &config.database.url;
    if !(db.starts_with("sqlite:") || db.starts_with("postgres://") || db.starts_with("postgresql://")) {
        err("database.url".into(), format!("expected sqlite://… or postgres://…, got {db:?}"));
    }
    if config.database.max_connections == 0 {
        err("database.max_connections".into(), "must be at least 1".into());
    }
    if config.database.poll_interval.0.is_zero() {
        err("database.poll_interval".into(), "must be greater than zero".into());
    }
    if config.runtime.worker_threads == Some(0) {
        err("runtime.worker_threads".into(), "must be at least 1".into());
    }

    let limits = &config.limits;
    // hyper's HTTP/1 read buffer cannot be smaller than 8 KiB.
    if !(8192..=1024 * 1024).contains(&limits.max_header_bytes.0) {
        err("limits.max_header_bytes".into(), "expected between 8KiB and 1MiB".into());
    }
    if limits.max_headers == 0 || limits.max_headers > 1000 {
        err("limits.max_headers".into(), "expected between 1 and 1000".into());
    }
    if limits.max_connections == 0 {
        err("limits.max_connections".into(), "must be at least 1".into());
    }
    if limits.max_concurrent_streams == 0 {
        err("limits.max_concurrent_streams".into(), "must be at least 1".into());
    }
    if limits.header_read_timeout.0.is_zero() {
        err("limits.header_read_timeout".into(), "must be greater than zero".into());
    }
    if limits.idle_timeout.0.is_zero() {
        err("limits.idle_timeout".into(), "must be greater than zero".into());
    }
    if let Some(buckets) = &config.metrics.duration_buckets {
        let increasing = buckets.windows(2).all(|w| w[0] < w[1]);
        if buckets.is_empty() || !increasing || buckets.iter().any(|b| !b.is_finite() || *b <= 0.0) {
            err(
                "metrics.duration_buckets".into(),
                "expected a non-empty, strictly increasing list of positive seconds".into(),
            );
        }
    }
    if config.shutdown.shutdown_timeout.0.is_zero() {
        err("shutdown.shutdown_timeout".into(), "must be greater than zero".into());
    }
    if !matches!(config.logging.level.trim(), l if !l.is_empty()) {
        err("logging.level".into(), "must not be empty (e.g. \"info\")".into());
    }

    for (name, up) in &config.upstreams {
        let path = format!("upstreams.{name}");
        if let Err(m) = check_name(name) {
            err(path.clone(), m);
        }
        if up.endpoints.is_empty() {
            err(format!("{path}.endpoints"), "must not be empty: list at least one host:port".into());
        }
        for (i, ep) in up.endpoints.iter().enumerate() {
            if let Err(m) = check_endpoint(ep) {
                err(format!("{path}.endpoints[{i}]"), m);
            }
        }
        if up.connect_timeout.0.is_zero() {
            err(format!("{path}.connect_timeout"), "must be greater than zero".into());
        }
        if up.probe_interval.0.is_zero() {
            err(format!("{path}.probe_interval"), "must be greater than zero".into());
        }
        if up.resolve_interval.0.is_zero() {
            err(format!("{path}.resolve_interval"), "must be greater than zero".into());
        }
    }

    let mut names = HashSet::new();
    for (i, route) in config.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        if let Err(m) = check_name(&route.name) {
            err(format!("{path}.name"), m);
        } else if route.name == "unmatched" {
            err(format!("{path}.name"), "\"unmatched\" is reserved for requests no route takes".into());
        } else if !names.insert(route.name.as_str()) {
            err(format!("{path}.name"), format!("duplicate route name {:?}", route.name));
        }
        if !config.upstreams.contains_key(&route.upstream) {
            let known: Vec<&str> = config.upstreams.keys().map(String::as_str).collect();
            err(
                format!("{path}.upstream"),
                format!("unknown upstream {:?} (expected one of: {})", route.upstream, known.join(", ")),
            );
        }
        if let Err((field, m)) = check_match(&route.matcher) {
            err(format!("{path}.match{field}"), m);
        }
        if route.timeout.0.is_zero() {
            err(format!("{path}.timeout"), "must be greater than zero".into());
        }
        if !route.grpc_methods.is_empty() && route.matcher.grpc_service.is_none() {
            err(format!("{path}.grpc_methods"), "only allowed on routes that match a grpc_service".into());
        }
        for method in route.grpc_methods.keys() {
            if method.is_empty() || !method.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                err(format!("{path}.grpc_methods.{method}"), "expected a method name such as Unary".into());
            }
        }
        for (j, scope) in route.auth.scopes.iter().enumerate() {
            if scope.is_empty() || scope.chars().any(char::is_whitespace) {
                err(format!("{path}.auth.scopes[{j}]"), "expected a non-empty scope without spaces".into());
            }
        }
    }
    errors
}

fn check_listener(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .map_err(|_| format!("expected an IP address and port such as 0.0.0.0:8080, got {text:?}"))
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("expected 1 to {MAX_NAME_LEN} characters of letters, digits, '-', '_' or '.', got {name:?}"))
    }
}

/// Splits `host:port` (IPv6 as `[::1]:80`) and checks both halves.
pub(crate) fn split_endpoint(text: &str) -> Option<(&str, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let valid_host = !host.is_empty()
        && (host.parse::<std::net::IpAddr>().is_ok()
            || host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')));
    valid_host.then_some((host, port))
}

fn check_endpoint(text: &str) -> Result<(), String> {
    split_endpoint(text)
        .map(|_| ())
        .ok_or_else(|| format!("expected host:port such as 10.0.0.7:7001 or echo.default.svc:7001, got {text:?}"))
}

fn check_match(m: &Match) -> Result<(), (&'static str, String)> {
    let path_rules =
        [m.path.is_some(), m.path_prefix.is_some(), m.grpc_service.is_some()].iter().filter(|x| **x).count();
    if path_rules > 1 {
        return Err(("", "expected at most one of path, path_prefix, grpc_service".into()));
    }
    if path_rules == 0 && m.host.is_none() {
        return Err(("", "expected one of host, path, path_prefix, grpc_service".into()));
    }
    for (field, value) in [(".path", &m.path), (".path_prefix", &m.path_prefix)] {
        if let Some(p) = value {
            if !p.starts_with('/') {
                return Err((field, format!("expected a path starting with '/', got {p:?}")));
            }
        }
    }
    if let Some(svc) = &m.grpc_service {
        if svc.is_empty() || svc.contains('/') || svc.chars().any(char::is_whitespace) {
            return Err((".grpc_service", format!("expected a service name such as echo.v1.Echo, got {svc:?}")));
        }
    }
    if let Some(h) = &m.host {
        if h.is_empty() || h.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err((".host", format!("expected a host name such as api.example.com, got {h:?}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    const BASE: &str = "listeners: { public: 127.0.0.1:0, admin: 127.0.0.1:0 }\n";

    fn errors(yaml: &str) -> Vec<String> {
        match Config::parse(&format!("{BASE}{yaml}")) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn valid_config_parses() {
        let yaml = "upstreams: { echo: { protocol: http1, endpoints: ['127.0.0.1:7001'] } }\n\
                    routes: [ { name: a, match: { path_prefix: /echo }, upstream: echo, timeout: 2s } ]\n";
        assert_eq!(errors(yaml), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let yaml = "upstreams: { echo: { protocol: http1, endpoints: [] }, b: { protocol: grpc, endpoints: ['nohost'] } }\n\
                    routes:\n\
                    - { name: a, match: { path_prefix: /x }, upstream: echo }\n\
                    - { name: a, match: { path: y }, upstream: nope }\n";
        assert_eq!(
            errors(yaml),
            vec![
                "upstreams.b.endpoints[0]: expected host:port such as 10.0.0.7:7001 or echo.default.svc:7001, got \"nohost\"",
                "upstreams.echo.endpoints: must not be empty: list at least one host:port",
                "routes[1].name: duplicate route name \"a\"",
                "routes[1].upstream: unknown upstream \"nope\" (expected one of: b, echo)",
                "routes[1].match.path: expected a path starting with '/', got \"y\"",
            ]
        );
    }

    #[test]
    fn unknown_fields_name_their_path() {
        let e = errors("routes: [ { name: a, match: { path_prefx: /x }, upstream: e } ]\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("routes[0].match.path_prefx: unknown field `path_prefx`"), "{e:?}");
    }

    #[test]
    fn bad_addresses_and_units_are_explained() {
        let e = match Config::parse("listeners: { public: 'localhost', admin: 127.0.0.1:0 }\n") {
            Err(e) => e.to_string(),
            Ok(_) => String::new(),
        };
        assert!(e.starts_with("listeners.public: expected an IP address and port"), "{e}");
        let e = errors("limits: { idle_timeout: soon }\n");
        assert!(e[0].starts_with("limits.idle_timeout: expected a duration"), "{e:?}");
    }
}
