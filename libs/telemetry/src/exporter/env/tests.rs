use std::collections::HashMap;

use super::*;

fn settings(vars: &[(&str, &str)]) -> Result<Settings, Error> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    Settings::from_env(&move |name| map.get(name).cloned(), "1.2.3")
}

fn otlp(vars: &[(&str, &str)]) -> OtlpSettings {
    match settings(&[&[("OTEL_METRICS_EXPORTER", "otlp")], vars].concat()) {
        Ok(Settings::Otlp(s)) => s,
        other => panic!("expected otlp settings, got {other:?}"),
    }
}

fn error(vars: &[(&str, &str)]) -> String {
    settings(vars).err().map(|e| e.to_string()).unwrap_or_default()
}

#[test]
fn the_exporter_is_chosen_by_otel_metrics_exporter() {
    assert_eq!(settings(&[]).ok(), Some(Settings::Prometheus { listener: None }));
    assert_eq!(settings(&[("OTEL_METRICS_EXPORTER", "")]).ok(), Some(Settings::Prometheus { listener: None }));
    assert_eq!(
        settings(&[("OTEL_METRICS_EXPORTER", "prometheus")]).map(|s| s.kind()).ok(),
        Some(ExporterKind::Prometheus)
    );
    assert_eq!(settings(&[("OTEL_METRICS_EXPORTER", " OTLP ")]).map(|s| s.kind()).ok(), Some(ExporterKind::Otlp));
    assert_eq!(settings(&[("OTEL_METRICS_EXPORTER", "none")]).ok(), Some(Settings::None));
    assert_eq!(
        settings(&[("OTEL_METRICS_EXPORTER", "console")]).ok(),
        Some(Settings::Console { interval: Duration::from_secs(60) })
    );
    assert_eq!(
        error(&[("OTEL_METRICS_EXPORTER", "statsd")]),
        r#"OTEL_METRICS_EXPORTER: "statsd" is not valid; expected one of prometheus, otlp, console, none"#
    );
    assert_eq!(
        error(&[("OTEL_METRICS_EXPORTER", "prometheus,otlp")]),
        r#"OTEL_METRICS_EXPORTER: "prometheus,otlp" is not valid; expected one of prometheus, otlp, console, none"#
    );
}

#[test]
fn prometheus_gets_a_listener_of_its_own_only_when_asked() {
    let listener = |vars: &[(&str, &str)]| match settings(vars) {
        Ok(Settings::Prometheus { listener }) => listener.map(|a| a.to_string()),
        other => panic!("{other:?}"),
    };
    assert_eq!(listener(&[("OTEL_EXPORTER_PROMETHEUS_PORT", "9500")]).as_deref(), Some("127.0.0.1:9500"));
    assert_eq!(listener(&[("OTEL_EXPORTER_PROMETHEUS_HOST", "0.0.0.0")]).as_deref(), Some("0.0.0.0:9464"));
    assert_eq!(
        listener(&[("OTEL_EXPORTER_PROMETHEUS_HOST", "[::1]"), ("OTEL_EXPORTER_PROMETHEUS_PORT", "1")]).as_deref(),
        Some("[::1]:1")
    );
    assert_eq!(
        error(&[("OTEL_EXPORTER_PROMETHEUS_PORT", "http")]),
        r#"OTEL_EXPORTER_PROMETHEUS_PORT: "http" is not valid; expected a TCP port number"#
    );
}

#[test]
fn otlp_defaults_follow_the_spec() {
    let s = otlp(&[("HOSTNAME", "gatehouse-7f9c")]);
    assert_eq!(s.endpoint.to_string(), "http://localhost:4318/v1/metrics");
    assert_eq!(s.interval, Duration::from_secs(60));
    assert_eq!(s.timeout, Duration::from_secs(10));
    assert!(s.headers.is_empty());
    let pid = std::process::id();
    assert_eq!(
        s.resource,
        [
            ("service.name".to_owned(), "gatehouse".to_owned()),
            ("service.version".to_owned(), "1.2.3".to_owned()),
            ("service.instance.id".to_owned(), format!("gatehouse-7f9c-{pid}")),
        ]
    );
}

#[test]
fn otlp_endpoints_headers_and_resource_come_from_the_standard_variables() {
    let s = otlp(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b,x-tenant=one"),
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-tenant=two"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ("OTEL_RESOURCE_ATTRIBUTES", "service.name=ignored,deployment.environment=prod,service.instance.id=pod-1"),
        ("OTEL_SERVICE_NAME", "edge"),
    ]);
    assert_eq!(s.endpoint.to_string(), "http://collector:4318/v1/metrics");
    let headers: Vec<(String, String)> =
        s.headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned())).collect();
    assert_eq!(headers, [("api-key".to_owned(), "a b".to_owned()), ("x-tenant".to_owned(), "two".to_owned())]);
    assert_eq!(s.timeout, Duration::from_millis(2500));
    assert_eq!(s.interval, Duration::from_secs(1));
    let keys: Vec<(&str, &str)> = s.resource.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        keys,
        [
            ("service.name", "edge"),
            ("deployment.environment", "prod"),
            ("service.instance.id", "pod-1"),
            ("service.version", "1.2.3"),
        ]
    );

    let s = otlp(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://collector:9999/custom"),
        ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes"),
    ]);
    assert_eq!(s.endpoint.to_string(), "http://collector:9999/custom");
    assert_eq!(s.resource[0], ("service.name".to_owned(), "from-attributes".to_owned()));
}

#[test]
fn unsupported_otlp_settings_are_named() {
    let otlp_error = |vars: &[(&str, &str)]| error(&[&[("OTEL_METRICS_EXPORTER", "otlp")], vars].concat());
    assert_eq!(
        otlp_error(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
        r#"OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" is not valid; expected http/protobuf (grpc and http/json are not supported)"#
    );
    assert!(
        otlp_error(&[("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json")])
            .starts_with("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL:")
    );
    assert!(
        otlp_error(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")]).starts_with("OTEL_EXPORTER_OTLP_ENDPOINT:")
    );
    assert!(otlp_error(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]).starts_with("OTEL_EXPORTER_OTLP_COMPRESSION:"));
    assert_eq!(
        otlp_error(&[("OTEL_METRIC_EXPORT_INTERVAL", "0")]),
        r#"OTEL_METRIC_EXPORT_INTERVAL: "0" is not valid; expected a positive number of milliseconds"#
    );
    assert!(otlp_error(&[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]).starts_with("OTEL_EXPORTER_OTLP_HEADERS:"));
    assert!(otlp_error(&[("OTEL_RESOURCE_ATTRIBUTES", "k=%zz")]).starts_with("OTEL_RESOURCE_ATTRIBUTES:"));
    // Settings of an exporter that is not chosen are not checked.
    assert!(settings(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).is_ok());
}
