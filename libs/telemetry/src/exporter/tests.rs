use super::*;

fn build() -> BuildInfo {
    BuildInfo { version: "1.2.3".into(), commit: "abc123".into() }
}

#[test]
fn none_installs_nothing_and_serves_nothing() {
    let env = |name: &str| (name == "OTEL_METRICS_EXPORTER").then(|| "none".to_owned());
    let telemetry = install_with_env(&MetricsConfig::default(), &build(), &env).expect("installs");
    assert_eq!(telemetry.kind(), ExporterKind::None);
    assert_eq!(telemetry.render(), None);
    assert_eq!(telemetry.dedicated_listener(), None);
}

#[test]
fn exporters_that_need_tasks_refuse_to_start_outside_a_runtime() {
    let err = install_with_env(&MetricsConfig::default(), &build(), &|_| None).err().map(|e| e.to_string());
    assert_eq!(err.as_deref(), Some("the prometheus metrics exporter must be installed from within a Tokio runtime"));
}

#[test]
fn bad_buckets_are_refused_before_anything_is_installed() {
    let cfg = MetricsConfig { buckets: Buckets { latency: vec![], ..Buckets::default() } };
    let err = install_with_env(&cfg, &build(), &|_| None).err().map(|e| e.to_string());
    assert_eq!(err.as_deref(), Some("metrics.buckets.latency: must not be empty"));
}

/// The only test that installs the global recorder; every other test uses
/// a recorder of its own.
#[tokio::test]
async fn prometheus_is_the_default_and_renders_build_and_process_metrics() {
    let env = |name: &str| (name == "OTEL_EXPORTER_PROMETHEUS_PORT").then(|| "9599".to_owned());
    let telemetry = install_with_env(&MetricsConfig::default(), &build(), &env).expect("installs");
    assert_eq!(telemetry.kind(), ExporterKind::Prometheus);
    assert_eq!(telemetry.dedicated_listener().map(|a| a.to_string()).as_deref(), Some("127.0.0.1:9599"));
    let text = telemetry.render().unwrap_or_default();
    assert!(text.contains("gateway_build_info{version=\"1.2.3\",commit=\"abc123\"} 1\n"), "{text}");
    assert!(text.contains("\ngateway_start_time_seconds "), "{text}");
    assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
    assert!(text.contains("\nprocess_open_fds "), "{text}");
    assert!(text.contains("# HELP gateway_build_info Always 1"), "{text}");
    assert!(telemetry.flush().await.is_ok());

    let again = install_with_env(&MetricsConfig::default(), &build(), &|_| None).err().map(|e| e.to_string());
    assert_eq!(again.as_deref(), Some("a global metrics recorder is already installed"));
}
