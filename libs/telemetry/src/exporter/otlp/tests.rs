use std::convert::Infallible;
use std::time::{Duration, UNIX_EPOCH};

use http::header::{HeaderName, HeaderValue};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use super::proto::{Data, ExportMetricsServiceRequest, Value};
use super::*;
use crate::Buckets;
use crate::exporter::store::MetricsRecorder;

fn metric<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> &'a Data {
    req.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == name)
        .and_then(|m| m.data.as_ref())
        .unwrap_or_else(|| panic!("{name} missing"))
}

#[test]
fn a_snapshot_encodes_counters_gauges_and_fixed_bucket_histograms() {
    let recorder = MetricsRecorder::new(&Buckets::default()).expect("default buckets are valid");
    metrics::with_local_recorder(&recorder, || {
        crate::catalogue::describe_all();
        metrics::counter!("gateway_http_requests_total", "route" => "echo", "method" => "GET", "code" => "200")
            .increment(3);
        metrics::gauge!("gateway_ready").set(1.0);
        let h = metrics::histogram!("gateway_http_request_duration_seconds", "route" => "echo");
        for v in [0.003, 0.2, 0.25, 100.0] {
            h.record(v);
        }
        metrics::histogram!("gateway_overhead_seconds").record(0.00003);
    });
    let resource = [("service.name".to_owned(), "gatehouse".to_owned())];
    let bytes = encode(&recorder.0, &resource, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let req = ExportMetricsServiceRequest::decode(bytes.as_slice()).expect("decodes");

    let rm = &req.resource_metrics[0];
    let attrs = &rm.resource.as_ref().expect("resource").attributes;
    assert_eq!(attrs[0].key, "service.name");
    assert_eq!(attrs[0].value.as_ref().and_then(|v| v.string_value.as_deref()), Some("gatehouse"));
    assert_eq!(rm.scope_metrics[0].scope.as_ref().map(|s| s.name.as_str()), Some("gatehouse-telemetry"));

    let Data::Sum(sum) = metric(&req, "gateway_http_requests_total") else { panic!("not a sum") };
    assert!(sum.is_monotonic);
    assert_eq!(sum.aggregation_temporality, proto::CUMULATIVE);
    let point = &sum.data_points[0];
    assert_eq!(point.value, Some(Value::AsInt(3)));
    assert_eq!(point.time_unix_nano, 1_700_000_000_000_000_000);
    let labels: Vec<(&str, &str)> = point
        .attributes
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_ref().and_then(|v| v.string_value.as_deref()).unwrap_or("")))
        .collect();
    assert_eq!(labels, [("route", "echo"), ("method", "GET"), ("code", "200")]);

    let Data::Gauge(gauge) = metric(&req, "gateway_ready") else { panic!("not a gauge") };
    assert_eq!(gauge.data_points[0].value, Some(Value::AsDouble(1.0)));

    let Data::Histogram(h) = metric(&req, "gateway_http_request_duration_seconds") else { panic!("not a histogram") };
    let p = &h.data_points[0];
    assert_eq!(p.count, 4);
    assert_eq!(p.sum, Some(100.453));
    assert_eq!(p.explicit_bounds, Buckets::default().latency);
    // 0.003 ≤ 0.005 (bucket 3); 0.2 and 0.25 ≤ 0.25 (bucket 8, upper-inclusive); 100 overflows (bucket 15).
    let mut expected = vec![0u64; 16];
    expected[3] = 1;
    expected[8] = 2;
    expected[15] = 1;
    assert_eq!(p.bucket_counts, expected);

    let Data::Histogram(h) = metric(&req, "gateway_overhead_seconds") else { panic!("not a histogram") };
    assert_eq!(h.data_points[0].explicit_bounds, Buckets::default().internal);
    assert_eq!(h.data_points[0].bucket_counts[2], 1);

    let described = req.resource_metrics[0].scope_metrics[0].metrics.iter().find(|m| m.name == "gateway_ready");
    assert_eq!(described.map(|m| (m.unit.as_str(), m.description.is_empty())), Some(("1", false)));
}

#[tokio::test]
async fn a_push_reaches_an_otlp_http_receiver() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, mut rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else { return };
        let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let tx = tx.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let _ = tx.send((parts, body)).await;
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
    });

    let recorder = MetricsRecorder::new(&Buckets::default()).expect("default buckets are valid");
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("gateway_requests_rejected_total", "reason" => "no_route").increment(2)
    });
    let settings = OtlpSettings {
        endpoint: format!("http://{addr}/v1/metrics").parse().expect("uri"),
        headers: vec![(HeaderName::from_static("x-tenant"), HeaderValue::from_static("edge"))],
        timeout: Duration::from_secs(5),
        interval: Duration::from_secs(60),
        resource: vec![("service.name".to_owned(), "gatehouse".to_owned())],
    };
    let pusher = Pusher::new(Arc::clone(&recorder.0), settings);
    pusher.push().await.expect("push accepted");

    let (parts, body) = rx.recv().await.expect("received");
    assert_eq!(parts.method, http::Method::POST);
    assert_eq!(parts.uri.path(), "/v1/metrics");
    assert_eq!(parts.headers["content-type"], "application/x-protobuf");
    assert_eq!(parts.headers["x-tenant"], "edge");
    let req = ExportMetricsServiceRequest::decode(body).expect("decodes");
    let Data::Sum(sum) = metric(&req, "gateway_requests_rejected_total") else { panic!("not a sum") };
    assert_eq!(sum.data_points[0].value, Some(Value::AsInt(2)));
}

#[tokio::test]
async fn a_refused_push_is_an_error_not_a_panic() {
    // Port 1 on loopback: nothing listens there.
    let settings = OtlpSettings {
        endpoint: "http://127.0.0.1:1/v1/metrics".parse().expect("uri"),
        headers: vec![],
        timeout: Duration::from_secs(5),
        interval: Duration::from_secs(60),
        resource: vec![],
    };
    let pusher = Pusher::new(
        Arc::clone(&MetricsRecorder::new(&Buckets::default()).expect("default buckets are valid").0),
        settings,
    );
    let err = pusher.push().await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.starts_with("sending to http://127.0.0.1:1/v1/metrics"), "{err}");
}
