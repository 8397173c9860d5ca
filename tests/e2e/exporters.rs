//! The metrics exporter chosen by `OTEL_METRICS_EXPORTER`, through the real
//! binary: `none` serves no `/metrics` and traffic still flows; `console`
//! prints the metrics to stderr every `OTEL_METRIC_EXPORT_INTERVAL`; `otlp`
//! pushes OTLP/HTTP protobuf that a real receiver here decodes;
//! `OTEL_EXPORTER_PROMETHEUS_HOST`/`_PORT` move `/metrics` to a listener of
//! its own; invalid values stop the gateway with a message naming the
//! variable.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use gatehouse_proto::echo::v1::EchoRequest;
use gatehouse_proto::echo::v1::echo_client::EchoClient;
use gatehouse_test_support::{
    Echo, Exposition, Gateway, HttpSink, ReceivedRequest, empty, http1_client, scrape, send, unused_addr, url,
};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use prost::Message;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(15);

/// The configured latency buckets (OTLP histograms must carry them).
const BUCKETS: [f64; 4] = [0.01, 0.1, 1.0, 10.0];

async fn start(echo: &Echo, env: &[(&str, &str)]) -> Gateway {
    Gateway::start_with_env(&config(echo), env).await
}

fn config(echo: &Echo) -> String {
    format!(
        r#"
listeners:
  public: 127.0.0.1:0
  admin: 127.0.0.1:0
upstreams:
  echo:
    protocol: http1
    endpoints: ["{echo}"]
  echo-grpc:
    protocol: grpc
    endpoints: ["{echo}"]
routes:
  - name: echo-grpc
    match: {{ grpc_service: echo.v1.Echo }}
    upstream: echo-grpc
    grpc_methods: {{ Unary: unary }}
  - name: echo-http
    match: {{ path_prefix: /echo }}
    upstream: echo
metrics:
  duration_buckets: [0.01, 0.1, 1, 10]
"#,
        echo = echo.addr,
    )
}

/// `GET path` on `addr`: the status and body, or `None` if nothing answers.
async fn try_get(addr: SocketAddr, path: &str) -> Option<(StatusCode, String)> {
    try_get_with_headers(addr, path).await.map(|(status, _, body)| (status, body))
}

async fn try_get_with_headers(addr: SocketAddr, path: &str) -> Option<(StatusCode, http::HeaderMap, String)> {
    let request = Request::get(url(addr, path)).body(empty()).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), http1_client().request(request)).await.ok()?.ok()?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.ok()?.to_bytes();
    Some((parts.status, parts.headers, String::from_utf8_lossy(&body).into_owned()))
}

/// `GET /metrics` on `addr` (which answers) is a 404.
async fn assert_no_metrics(addr: SocketAddr, context: &str) {
    let (status, headers, body) = try_get_with_headers(addr, "/metrics").await.expect("the admin port answers");
    assert_eq!(status, 404, "GET /metrics on {addr} ({context}): expected 404, got {status} {headers:?} {body:?}");
}

/// Sends `ok` GETs for 200 and `failed` for 503 to the `echo-http` route.
async fn http_traffic(gateway: &Gateway, ok: usize, failed: usize) {
    let client = http1_client();
    for (path, n, want) in [("/echo/status/200", ok, 200), ("/echo/status/503", failed, 503)] {
        for _ in 0..n {
            let response = send(&client, Request::get(url(gateway.public, path)).body(empty()).unwrap()).await;
            assert_eq!(response.status, want, "{path}: {}", response.text());
        }
    }
}

async fn one_unary_call(gateway: &Gateway) {
    let channel = Channel::from_shared(format!("http://{}", gateway.public)).unwrap().connect().await.unwrap();
    let reply = EchoClient::new(channel).unary(EchoRequest { message: "hi".into(), ..EchoRequest::default() }).await;
    assert_eq!(reply.unwrap().into_inner().message, "hi");
}

// ---------------------------------------------------------------------------
// none and prometheus
// ---------------------------------------------------------------------------

#[tokio::test]
async fn none_serves_no_metrics_and_traffic_still_flows() {
    let echo = Echo::start("echo").await;
    let gateway = start(&echo, &[("OTEL_METRICS_EXPORTER", "none")]).await;
    // The request path and the rest of the admin port work as ever.
    http_traffic(&gateway, 3, 1).await;
    one_unary_call(&gateway).await;
    assert_eq!(try_get(gateway.admin, "/healthz").await.map(|(s, _)| s), Some(StatusCode::OK));
    // Nothing goes out: no snapshots on stderr, and no /metrics.
    let stderr = gateway.stderr_lines();
    assert!(!stderr.iter().any(|l| l.contains("gateway_http_requests_total")), "{stderr:?}");
    assert_no_metrics(gateway.admin, "OTEL_METRICS_EXPORTER=none").await;
}

#[tokio::test]
async fn prometheus_named_explicitly_serves_metrics_on_the_admin_port() {
    let echo = Echo::start("echo").await;
    let gateway = start(&echo, &[("OTEL_METRICS_EXPORTER", "prometheus")]).await;
    http_traffic(&gateway, 2, 0).await;
    let labels = [("route", "echo-http"), ("method", "GET"), ("code", "200")];
    let m = gatehouse_test_support::scrape_until(gateway.admin, WAIT, |m| {
        m.get("gateway_http_requests_total", &labels).is_some_and(|v| v >= 2.0)
    })
    .await;
    assert_eq!(m.value("gateway_http_requests_total", &labels), 2.0);
}

#[tokio::test]
async fn prometheus_host_and_port_move_metrics_to_a_listener_of_their_own() {
    let echo = Echo::start("echo").await;
    let metrics_addr = unused_addr();
    let port = metrics_addr.port().to_string();
    let gateway = start(
        &echo,
        &[("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1"), ("OTEL_EXPORTER_PROMETHEUS_PORT", port.as_str())],
    )
    .await;
    http_traffic(&gateway, 2, 1).await;

    // The listener may come up a moment after the `listening` line, and the
    // counters settle a moment after the client has its response.
    let labels = [("route", "echo-http"), ("method", "GET"), ("code", "503")];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let answer = try_get(metrics_addr, "/metrics").await;
        if let Some((StatusCode::OK, body)) = &answer {
            let m = Exposition::parse(body);
            if m.get("gateway_http_requests_total", &labels) == Some(1.0) {
                assert_eq!(m.get("gateway_http_requests_total", &[labels[0], labels[1], ("code", "200")]), Some(2.0));
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "OTEL_EXPORTER_PROMETHEUS_HOST=127.0.0.1 OTEL_EXPORTER_PROMETHEUS_PORT={port}: \
             GET http://{metrics_addr}/metrics got {answer:?} (None: nothing answered), \
             expected 200 with gateway_http_requests_total{labels:?} 1\ngateway stdout:\n{}",
            gateway.lines().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_no_metrics(gateway.admin, "moved to OTEL_EXPORTER_PROMETHEUS_HOST/PORT").await;
}

// ---------------------------------------------------------------------------
// console
// ---------------------------------------------------------------------------

#[tokio::test]
async fn console_prints_periodic_snapshots_to_stderr() {
    let echo = Echo::start("echo").await;
    let gateway = start(&echo, &[("OTEL_METRICS_EXPORTER", "console"), ("OTEL_METRIC_EXPORT_INTERVAL", "500")]).await;
    http_traffic(&gateway, 3, 2).await;

    // A snapshot taken after the traffic carries its exact totals.
    let want_503 = r#"gateway_http_requests_total{route="echo-http",method="GET",code="503"} 2"#;
    let want_200 = r#"gateway_http_requests_total{route="echo-http",method="GET",code="200"} 3"#;
    let found = gateway.wait_for_stderr_line(WAIT, |l| l.trim_end() == want_503).await;
    assert!(found.is_some(), "no `{want_503}` on stderr within {WAIT:?}:\n{}", gateway.stderr_lines().join("\n"));
    let stderr = gateway.stderr_lines();
    assert!(stderr.iter().any(|l| l.trim_end() == want_200), "no `{want_200}` on stderr");

    // Periodic: more snapshots keep coming at the 500 ms interval.
    let snapshots =
        |lines: &[String]| lines.iter().filter(|l| l.starts_with("# TYPE gateway_http_requests_total ")).count();
    let seen = snapshots(&stderr);
    let mut more = 0;
    let _ = gateway
        .wait_for_stderr_line(Duration::from_secs(5), |l| {
            more += usize::from(l.starts_with("# TYPE gateway_http_requests_total "));
            more >= 2
        })
        .await;
    assert!(seen >= 1 && more >= 2, "{seen} snapshots, then {more} more in 5 s");

    // The metrics go to stderr only: stdout stays pure JSON log lines, and
    // there is no /metrics endpoint.
    for line in gateway.lines() {
        assert!(serde_json::from_str::<serde_json::Value>(&line).is_ok(), "non-JSON line on stdout: {line}");
    }
    assert_no_metrics(gateway.admin, "OTEL_METRICS_EXPORTER=console").await;
}

// ---------------------------------------------------------------------------
// otlp
// ---------------------------------------------------------------------------

/// The OTLP messages this test reads, numbered as in the stable v1 protos
/// (`opentelemetry/proto/collector/metrics/v1/metrics_service.proto`,
/// `metrics/v1/metrics.proto`, `common/v1/common.proto`,
/// `resource/v1/resource.proto`). Written from the spec, not shared with the
/// gateway, so an encoding mistake there shows here.
mod otlp {
    #![allow(missing_docs, unreachable_pub)]

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportMetricsServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_metrics: Vec<ResourceMetrics>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceMetrics {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_metrics: Vec<ScopeMetrics>,
        #[prost(string, tag = "3")]
        pub schema_url: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeMetrics {
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        #[prost(message, repeated, tag = "2")]
        pub metrics: Vec<Metric>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InstrumentationScope {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4")]
        pub value: Option<any_value::Value>,
    }

    pub mod any_value {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(string, tag = "1")]
            String(String),
            #[prost(bool, tag = "2")]
            Bool(bool),
            #[prost(int64, tag = "3")]
            Int(i64),
            #[prost(double, tag = "4")]
            Double(f64),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub description: String,
        #[prost(string, tag = "3")]
        pub unit: String,
        #[prost(oneof = "metric::Data", tags = "5, 7, 9, 10, 11")]
        pub data: Option<metric::Data>,
    }

    pub mod metric {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Data {
            #[prost(message, tag = "5")]
            Gauge(super::Gauge),
            #[prost(message, tag = "7")]
            Sum(super::Sum),
            #[prost(message, tag = "9")]
            Histogram(super::Histogram),
            /// Not expected; decoded only far enough to notice.
            #[prost(bytes, tag = "10")]
            ExponentialHistogram(Vec<u8>),
            /// Not expected; decoded only far enough to notice.
            #[prost(bytes, tag = "11")]
            Summary(Vec<u8>),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Gauge {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<NumberDataPoint>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sum {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<NumberDataPoint>,
        #[prost(int32, tag = "2")]
        pub aggregation_temporality: i32,
        #[prost(bool, tag = "3")]
        pub is_monotonic: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<HistogramDataPoint>,
        #[prost(int32, tag = "2")]
        pub aggregation_temporality: i32,
    }

    /// `AGGREGATION_TEMPORALITY_CUMULATIVE`.
    pub const CUMULATIVE: i32 = 2;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NumberDataPoint {
        #[prost(message, repeated, tag = "7")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed64, tag = "2")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "3")]
        pub time_unix_nano: u64,
        #[prost(oneof = "number_data_point::Value", tags = "4, 6")]
        pub value: Option<number_data_point::Value>,
    }

    pub mod number_data_point {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(double, tag = "4")]
            AsDouble(f64),
            #[prost(sfixed64, tag = "6")]
            AsInt(i64),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HistogramDataPoint {
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed64, tag = "2")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "3")]
        pub time_unix_nano: u64,
        #[prost(fixed64, tag = "4")]
        pub count: u64,
        #[prost(double, optional, tag = "5")]
        pub sum: Option<f64>,
        #[prost(fixed64, repeated, tag = "6")]
        pub bucket_counts: Vec<u64>,
        #[prost(double, repeated, tag = "7")]
        pub explicit_bounds: Vec<f64>,
    }
}

fn string_attributes(attributes: &[otlp::KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.clone()) {
                Some(otlp::any_value::Value::String(s)) => s,
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn attribute<'a>(attributes: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn has_attributes(attributes: &[otlp::KeyValue], want: &[(&str, &str)]) -> bool {
    let have = string_attributes(attributes);
    have.len() == want.len() && want.iter().all(|(k, v)| attribute(&have, k) == Some(v))
}

fn number(point: &otlp::NumberDataPoint) -> Option<f64> {
    match point.value.clone()? {
        otlp::number_data_point::Value::AsDouble(v) => Some(v),
        otlp::number_data_point::Value::AsInt(v) => Some(v as f64),
    }
}

fn decode(request: &ReceivedRequest) -> otlp::ExportMetricsServiceRequest {
    otlp::ExportMetricsServiceRequest::decode(request.body.as_ref())
        .unwrap_or_else(|e| panic!("the push to {} is not an ExportMetricsServiceRequest: {e}", request.uri))
}

fn metrics_named<'a>(push: &'a otlp::ExportMetricsServiceRequest, name: &str) -> Vec<&'a otlp::Metric> {
    push.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == name)
        .collect()
}

/// The value of the counter `name`'s data point with exactly `labels`.
fn sum_point(push: &otlp::ExportMetricsServiceRequest, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics_named(push, name).into_iter().find_map(|m| match &m.data {
        Some(otlp::metric::Data::Sum(sum)) => {
            sum.data_points.iter().find(|p| has_attributes(&p.attributes, labels)).and_then(number)
        }
        _ => None,
    })
}

#[tokio::test]
async fn otlp_pushes_protobuf_that_a_real_receiver_decodes() {
    let sink = HttpSink::start().await;
    let echo = Echo::start("echo").await;
    let endpoint = format!("http://{}", sink.addr);
    let gateway = start(
        &echo,
        &[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-test-token=abc%20123,x-tenant=gatehouse"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ],
    )
    .await;
    http_traffic(&gateway, 3, 2).await;
    one_unary_call(&gateway).await;

    // Pushes are cumulative: wait for one that includes all the traffic.
    let route_503 = [("route", "echo-http"), ("method", "GET"), ("code", "503")];
    let unary_ok =
        [("grpc_service", "echo.v1.Echo"), ("grpc_method", "Unary"), ("grpc_type", "unary"), ("grpc_code", "OK")];
    let found = sink
        .wait_for(WAIT, |request| {
            let push = otlp::ExportMetricsServiceRequest::decode(request.body.as_ref()).ok()?;
            let done = sum_point(&push, "gateway_http_requests_total", &route_503) == Some(2.0)
                && sum_point(&push, "gateway_grpc_server_handled_total", &unary_ok) == Some(1.0);
            done.then(|| (request.clone(), push))
        })
        .await;
    let Some((request, push)) = found else {
        let received = sink.received();
        let last = received.last().map(decode);
        panic!(
            "no OTLP push with the traffic's totals within {WAIT:?}; {} pushes received; the last: {last:#?}\nstdout:\n{}",
            received.len(),
            gateway.lines().join("\n")
        );
    };

    // The request: OTLP/HTTP protobuf to the general endpoint + /v1/metrics,
    // with the configured headers (percent-decoded).
    assert_eq!(request.method, http::Method::POST);
    assert_eq!(request.uri.path(), "/v1/metrics");
    assert_eq!(request.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(request.header("x-test-token"), Some("abc 123"));
    assert_eq!(request.header("x-tenant"), Some("gatehouse"));

    // The resource.
    assert_eq!(push.resource_metrics.len(), 1, "{push:#?}");
    let resource = string_attributes(&push.resource_metrics[0].resource.as_ref().expect("a resource").attributes);
    let info: serde_json::Value = serde_json::from_str(&scrape(gateway.admin, "/info").await).unwrap();
    assert_eq!(attribute(&resource, "service.name"), Some("gatehouse"), "{resource:?}");
    assert_eq!(attribute(&resource, "service.version"), info["version"].as_str(), "{resource:?} vs /info {info}");
    assert!(attribute(&resource, "service.instance.id").is_some_and(|id| !id.is_empty()), "{resource:?}");

    // The request counter: a monotonic cumulative sum with a data point per
    // route, method and code.
    let requests = metrics_named(&push, "gateway_http_requests_total");
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let Some(otlp::metric::Data::Sum(sum)) = &requests[0].data else { panic!("not a sum: {:#?}", requests[0]) };
    assert!(sum.is_monotonic && sum.aggregation_temporality == otlp::CUMULATIVE, "{sum:#?}");
    let route_200 = [("route", "echo-http"), ("method", "GET"), ("code", "200")];
    assert_eq!(sum_point(&push, "gateway_http_requests_total", &route_200), Some(3.0));
    for point in &sum.data_points {
        assert!(point.start_time_unix_nano > 0 && point.time_unix_nano >= point.start_time_unix_nano, "{point:#?}");
    }

    // The duration histogram: a real histogram with the configured bounds.
    let durations = metrics_named(&push, "gateway_http_request_duration_seconds");
    assert_eq!(durations.len(), 1, "{durations:#?}");
    let Some(otlp::metric::Data::Histogram(histogram)) = &durations[0].data else {
        panic!("not a histogram: {:#?}", durations[0])
    };
    assert_eq!(histogram.aggregation_temporality, otlp::CUMULATIVE);
    let point = histogram
        .data_points
        .iter()
        .find(|p| has_attributes(&p.attributes, &route_503))
        .unwrap_or_else(|| panic!("no duration point for {route_503:?}: {histogram:#?}"));
    assert_eq!(point.count, 2);
    assert_eq!(point.explicit_bounds, BUCKETS);
    assert_eq!(point.bucket_counts.len(), BUCKETS.len() + 1);
    assert_eq!(point.bucket_counts.iter().sum::<u64>(), 2);
    assert!(point.sum.is_some_and(|s| s > 0.0), "{point:#?}");

    // Nothing is rendered as a summary, and /metrics is not served.
    let all: Vec<&otlp::Metric> =
        push.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics).collect();
    assert!(!all.iter().any(|m| matches!(m.data, Some(otlp::metric::Data::Summary(_)))), "summaries in the push");
    for name in ["gateway_build_info", "gateway_start_time_seconds", "process_resident_memory_bytes"] {
        assert!(!metrics_named(&push, name).is_empty(), "{name} missing from the push");
    }
    assert_no_metrics(gateway.admin, "OTEL_METRICS_EXPORTER=otlp").await;
}

#[tokio::test]
async fn otlp_metrics_endpoint_is_used_as_given() {
    let sink = HttpSink::start().await;
    let echo = Echo::start("echo").await;
    let endpoint = format!("http://{}/custom/metrics/path", sink.addr);
    let general = format!("http://{}/general", unused_addr());
    let _gateway = start(
        &echo,
        &[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            // The signal-specific endpoint wins over the general one.
            ("OTEL_EXPORTER_OTLP_ENDPOINT", general.as_str()),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", endpoint.as_str()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
        ],
    )
    .await;
    let path = sink.wait_for(WAIT, |r| Some(r.uri.path().to_owned())).await;
    assert_eq!(path.as_deref(), Some("/custom/metrics/path"));
    let push = decode(&sink.received()[0]);
    assert!(!metrics_named(&push, "gateway_requests_rejected_total").is_empty(), "seeded series are pushed too");
}

// ---------------------------------------------------------------------------
// Invalid settings
// ---------------------------------------------------------------------------

#[tokio::test]
async fn invalid_exporter_settings_stop_the_gateway_naming_the_variable() {
    let echo = Echo::start("echo").await;
    let cases: [&[(&str, &str)]; 3] = [
        &[("OTEL_METRICS_EXPORTER", "bogus")],
        &[("OTEL_EXPORTER_PROMETHEUS_PORT", "not-a-port")],
        &[("OTEL_METRICS_EXPORTER", "console"), ("OTEL_METRIC_EXPORT_INTERVAL", "soon")],
    ];
    for env in cases {
        let (var, value) = env[env.len() - 1];
        let error = match Gateway::try_start_with_env(&config(&echo), env).await {
            Ok(gateway) => panic!("the gateway started with {env:?}; listening on {}", gateway.public),
            Err(e) => e,
        };
        let status = error.status.unwrap_or_else(|| panic!("{env:?}: still running, not refused:\n{error}"));
        assert!(!status.success(), "{env:?}: exited {status}");
        let output = format!("{}\n{}", error.stdout.join("\n"), error.stderr.join("\n"));
        assert!(
            output.contains(var) && output.contains(value),
            "{env:?}: the output does not name {var}={value}:\n{output}"
        );
    }
}
