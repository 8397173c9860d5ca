//! Route matching: the first configured route whose rule takes the request.
//!
//! Routes are compiled once from config; matching compares bytes and never
//! allocates.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_telemetry::http::RouteLabel;
use http::Request;

use crate::config;
use crate::upstream::Cluster;

/// A route ready for the request path.
#[derive(Debug)]
pub struct Route {
    /// The route's name: the `route` label.
    pub name: Arc<str>,
    /// The route's metric label with its cached handles.
    pub label: RouteLabel,
    rule: Rule,
    host: Option<String>,
    /// The cluster it forwards to.
    pub cluster: Arc<Cluster>,
    /// Time allowed from the request's arrival until the upstream's
    /// response headers.
    pub timeout: Duration,
    /// Largest request body.
    pub max_body_bytes: u64,
    /// Auth requirements (enforced by the auth stage).
    pub auth: config::Auth,
    /// `,"route":"…","upstream":"…"`: the access line's fields that are
    /// the same for every request the route takes, rendered once.
    pub log_fields: Box<[u8]>,
}

#[derive(Debug)]
enum Rule {
    Any,
    Exact(String),
    /// Stored without a trailing slash unless the prefix is `/` itself.
    Prefix(String),
    /// `/pkg.Service/`
    Grpc(String),
}

/// The compiled route table.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
    /// Whether any route matches on host; if none does, the host is not
    /// looked up at all.
    by_host: bool,
}

impl Router {
    /// Compiles the routes; `clusters` holds every upstream named in config
    /// (validation guarantees each route's upstream exists).
    pub fn new(routes: &[config::Route], clusters: &[Arc<Cluster>]) -> Self {
        let routes = routes
            .iter()
            .filter_map(|r| {
                let cluster = clusters.iter().find(|c| *c.name == *r.upstream)?;
                let m = &r.matcher;
                let rule = if let Some(p) = &m.path {
                    Rule::Exact(p.clone())
                } else if let Some(p) = &m.path_prefix {
                    let trimmed = p.trim_end_matches('/');
                    Rule::Prefix(if trimmed.is_empty() { "/".to_owned() } else { trimmed.to_owned() })
                } else if let Some(s) = &m.grpc_service {
                    Rule::Grpc(format!("/{s}/"))
                } else {
                    Rule::Any
                };
                let name: Arc<str> = r.name.as_str().into();
                let mut log_fields = br#","route":""#.to_vec();
                gatehouse_telemetry::logging::push_escaped(&mut log_fields, &name);
                log_fields.extend_from_slice(br#"","upstream":""#);
                gatehouse_telemetry::logging::push_escaped(&mut log_fields, &cluster.name);
                log_fields.push(b'"');
                Some(Arc::new(Route {
                    log_fields: log_fields.into(),
                    label: RouteLabel::new(Arc::clone(&name)),
                    name,
                    rule,
                    host: m.host.as_ref().map(|h| h.to_ascii_lowercase()),
                    cluster: Arc::clone(cluster),
                    timeout: r.timeout.0,
                    max_body_bytes: r.max_body_bytes.0,
                    auth: r.auth.clone(),
                }))
            })
            .collect::<Vec<_>>();
        let by_host = routes.iter().any(|r| r.host.is_some());
        Self { routes, by_host }
    }

    /// The routes, in match order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The first route that takes `req`.
    pub fn find<B>(&self, req: &Request<B>) -> Option<&Arc<Route>> {
        let path = req.uri().path();
        let host = if self.by_host { request_host(req) } else { None };
        self.routes.iter().find(|r| r.matches(host, path))
    }
}

impl Route {
    fn matches(&self, host: Option<&str>, path: &str) -> bool {
        if let Some(want) = &self.host {
            match host {
                Some(h) if h.eq_ignore_ascii_case(want) => {}
                _ => return false,
            }
        }
        match &self.rule {
            Rule::Any => true,
            Rule::Exact(p) => path == p,
            Rule::Prefix(p) if p == "/" => true,
            // Whole segments only: `/echo` takes `/echo` and `/echo/x`, not `/echoes`.
            Rule::Prefix(p) => {
                path.starts_with(p.as_str()) && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
            }
            Rule::Grpc(prefix) => path.starts_with(prefix.as_str()),
        }
    }
}

/// The request's host without port: `:authority` for HTTP/2, else `Host`.
pub fn request_host<B>(req: &Request<B>) -> Option<&str> {
    let raw = match req.uri().host() {
        Some(h) => h,
        None => req.headers().get(http::header::HOST)?.to_str().ok()?,
    };
    // Strip a port, keeping bracketed IPv6 literals whole.
    Some(match raw.rfind(':') {
        Some(i) if !raw[i..].contains(']') => &raw[..i],
        _ => raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn router(yaml_routes: &str) -> Router {
        let yaml = format!(
            "listeners: {{ public: 127.0.0.1:0, admin: 127.0.0.1:0 }}\n\
             upstreams: {{ u: {{ protocol: http1, endpoints: ['127.0.0.1:1'] }} }}\nroutes:\n{yaml_routes}"
        );
        let cfg = Config::parse(&yaml).expect("valid");
        let clusters: Vec<_> = cfg.upstreams.iter().map(|(n, u)| Cluster::new(n, u)).collect();
        Router::new(&cfg.routes, &clusters)
    }

    fn find(r: &Router, host: &str, path: &str) -> Option<String> {
        let req = Request::builder().uri(path).header("host", host).body(()).ok()?;
        r.find(&req).map(|r| r.name.to_string())
    }

    #[test]
    fn rules_match_in_order() {
        let r = router(
            "- { name: exact, match: { path: /health }, upstream: u }\n\
             - { name: hosted, match: { host: api.example.com, path_prefix: /v1 }, upstream: u }\n\
             - { name: grpc, match: { grpc_service: echo.v1.Echo }, upstream: u }\n\
             - { name: prefix, match: { path_prefix: /echo/ }, upstream: u }\n",
        );
        assert_eq!(find(&r, "x", "/health").as_deref(), Some("exact"));
        assert_eq!(find(&r, "x", "/health/x"), None);
        assert_eq!(find(&r, "API.example.com:8080", "/v1/users").as_deref(), Some("hosted"));
        assert_eq!(find(&r, "other", "/v1/users"), None);
        assert_eq!(find(&r, "x", "/echo.v1.Echo/Unary").as_deref(), Some("grpc"));
        assert_eq!(find(&r, "x", "/echo.v1.EchoX/Unary"), None);
        assert_eq!(find(&r, "x", "/echo").as_deref(), Some("prefix"));
        assert_eq!(find(&r, "x", "/echo/a/b").as_deref(), Some("prefix"));
        assert_eq!(find(&r, "x", "/echoes"), None);
    }

    #[test]
    fn host_port_is_ignored_and_ipv6_kept() {
        let req = Request::builder().uri("/").header("host", "[::1]:80").body(()).ok();
        assert_eq!(req.as_ref().and_then(request_host), Some("[::1]"));
        let req = Request::builder().uri("/").header("host", "[::1]").body(()).ok();
        assert_eq!(req.as_ref().and_then(request_host), Some("[::1]"));
    }
}
