use std::convert::Infallible;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt, service_fn};

use super::*;
use crate::testing::{TestBody, recorder, sample, sample_count};

/// A request for `route` (none: unmatched) answered with `status`.
async fn exchange(layer: &HttpMetricsLayer, route: Option<&RouteLabel>, method: Method, status: u16) {
    let svc = layer.layer(service_fn(move |_req: Request<()>| async move {
        let mut res = Response::new(TestBody::new([b"hello".to_vec()], None));
        *res.status_mut() = StatusCode::from_u16(status).expect("valid status");
        Ok::<_, Infallible>(res)
    }));
    let mut req = Request::builder().method(method).uri("/any").body(()).expect("valid request");
    if let Some(route) = route {
        req.extensions_mut().insert(route.clone());
    }
    let res = svc.oneshot(req).await.expect("infallible");
    let _ = res.into_body().collect().await;
}

#[tokio::test]
async fn counts_by_route_method_and_code() {
    let recorder = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let layer = HttpMetricsLayer::new();
    let echo = RouteLabel::new("echo");
    for _ in 0..3 {
        exchange(&layer, Some(&echo), Method::GET, 200).await;
    }
    for _ in 0..2 {
        exchange(&layer, Some(&echo), Method::POST, 503).await;
    }
    exchange(&layer, Some(&echo), Method::from_bytes(b"BREW").expect("token"), 200).await;
    exchange(&layer, None, Method::GET, 404).await;

    let text = recorder.handle().render();
    let at = |s: &str| sample(&text, s);
    assert_eq!(at(r#"gateway_http_requests_total{route="echo",method="GET",code="200"}"#), Some(3.0));
    assert_eq!(at(r#"gateway_http_requests_total{route="echo",method="POST",code="503"}"#), Some(2.0));
    assert_eq!(at(r#"gateway_http_requests_total{route="echo",method="other",code="200"}"#), Some(1.0));
    assert_eq!(at(r#"gateway_http_requests_total{route="unmatched",method="GET",code="404"}"#), Some(1.0));
    assert_eq!(at(r#"gateway_http_request_duration_seconds_count{route="echo",method="GET",code="200"}"#), Some(3.0));
    assert_eq!(at(r#"gateway_http_request_duration_seconds_count{route="echo",method="POST",code="503"}"#), Some(2.0));
    assert_eq!(at(r#"gateway_http_requests_in_flight{route="echo"}"#), Some(0.0));
    assert_eq!(at(r#"gateway_http_requests_in_flight{route="unmatched"}"#), Some(0.0));
    assert_eq!(at("gateway_overhead_seconds_count"), Some(7.0));
    assert!(
        text.contains(
            r#"gateway_http_request_duration_seconds_bucket{route="echo",method="GET",code="200",le="0.0005"}"#
        )
    );
}

/// When a test request arrived, as an application's first stage records it.
#[derive(Clone, Copy)]
struct Arrived(std::time::Instant);

#[tokio::test]
async fn the_duration_runs_from_the_arrival_to_the_end_the_body_read() {
    let recorder = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    // Readings taken by other layers, seconds from now: a layer that read
    // the clock itself would record a duration near zero.
    let arrived = std::time::Instant::now() + Duration::from_secs(10);
    let ended = arrived + Duration::from_millis(1500);
    let layer =
        HttpMetricsLayer::new().request_from(|ext| (ext.get::<RouteLabel>(), ext.get::<Arrived>().map(|a| a.0)));
    let svc = layer.layer(service_fn(move |_req: Request<()>| async move {
        Ok::<_, Infallible>(Response::new(TestBody::new([b"a".to_vec()], None).with_ended_at(ended)))
    }));
    let mut req = Request::new(());
    req.extensions_mut().insert(RouteLabel::new("timed"));
    req.extensions_mut().insert(Arrived(arrived));
    let res = svc.oneshot(req).await.expect("infallible");
    let mut body = res.into_body();
    assert_eq!(body.ended_at(), None, "not ended yet");
    assert_eq!(body.elapsed(), None, "not measured yet");
    while body.frame().await.is_some() {}
    assert_eq!(body.ended_at(), Some(ended), "the outer layers get the same reading");
    assert_eq!(body.elapsed(), Some(Duration::from_millis(1500)), "and the duration recorded");

    let text = recorder.handle().render();
    let series = r#"gateway_http_request_duration_seconds_sum{route="timed",method="GET",code="200"}"#;
    assert_eq!(sample(&text, series), Some(1.5));
}

#[tokio::test]
async fn a_request_is_in_flight_until_its_body_ends() {
    let recorder = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let route = RouteLabel::new("stream");
    let svc = HttpMetricsLayer::new().layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(TestBody::new([b"a".to_vec(), b"b".to_vec()], None)))
    }));
    let mut req = Request::new(());
    req.extensions_mut().insert(route);
    let res = svc.oneshot(req).await.expect("infallible");

    let in_flight = r#"gateway_http_requests_in_flight{route="stream"}"#;
    let total = r#"gateway_http_requests_total{route="stream",method="GET",code="200"}"#;
    let text = recorder.handle().render();
    assert_eq!(sample(&text, in_flight), Some(1.0));
    assert_eq!(sample(&text, total), None);

    let mut body = res.into_body();
    let _ = body.frame().await;
    assert_eq!(sample(&recorder.handle().render(), in_flight), Some(1.0));
    let _ = body.frame().await;
    // The second frame was the last: counted now, before `None` is polled or the body dropped.
    let text = recorder.handle().render();
    assert_eq!(sample(&text, in_flight), Some(0.0));
    assert_eq!(sample(&text, total), Some(1.0));
    drop(body);
    assert_eq!(sample(&recorder.handle().render(), total), Some(1.0));
}

#[tokio::test]
async fn clients_that_go_away_still_count() {
    let recorder = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let route = RouteLabel::new("slow");
    let layer = HttpMetricsLayer::new();

    // Gone before the response head: the future is dropped.
    let svc =
        layer.layer(service_fn(|_req: Request<()>| std::future::pending::<Result<Response<TestBody>, Infallible>>()));
    let mut req = Request::new(());
    req.extensions_mut().insert(route.clone());
    let _ = tokio::time::timeout(Duration::from_millis(1), svc.oneshot(req)).await;

    // Gone mid-body: the body is dropped after one frame.
    let svc = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(TestBody::new([b"a".to_vec(), b"b".to_vec()], None)))
    }));
    let mut req = Request::new(());
    req.extensions_mut().insert(route);
    let mut body = svc.oneshot(req).await.expect("infallible").into_body();
    let _ = body.frame().await;
    drop(body);

    let text = recorder.handle().render();
    assert_eq!(sample(&text, r#"gateway_http_requests_total{route="slow",method="GET",code="499"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"gateway_http_requests_total{route="slow",method="GET",code="200"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"gateway_http_requests_in_flight{route="slow"}"#), Some(0.0));
}

#[tokio::test]
async fn overhead_excludes_the_upstream() {
    let recorder = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let svc = HttpMetricsLayer::new().layer(service_fn(|_req: Request<()>| async {
        // The upstream took (much) longer than the whole request: no overhead at all.
        Ok::<_, Infallible>(Response::new(TestBody::default().with_upstream_elapsed(Duration::from_secs(100))))
    }));
    let _ = svc.oneshot(Request::new(())).await;
    let text = recorder.handle().render();
    assert_eq!(sample(&text, r#"gateway_overhead_seconds_bucket{le="0.00001"}"#), Some(1.0));

    let svc = HttpMetricsLayer::new().layer(service_fn(|_req: Request<()>| async {
        // Without an upstream, all the time to the head is the gateway's.
        std::thread::sleep(Duration::from_millis(15));
        Ok::<_, Infallible>(Response::new(TestBody::default()))
    }));
    let _ = svc.oneshot(Request::new(())).await;
    let text = recorder.handle().render();
    assert_eq!(sample(&text, r#"gateway_overhead_seconds_bucket{le="0.01"}"#), Some(1.0));
    assert_eq!(sample(&text, "gateway_overhead_seconds_count"), Some(2.0));
    assert!(sample(&text, "gateway_overhead_seconds_sum").is_some_and(|s| s >= 0.015));
}

#[tokio::test]
async fn grpc_requests_pass_through() {
    let recorder = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let svc = HttpMetricsLayer::new().layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(TestBody::new([b"x".to_vec()], None)))
    }));
    let req = Request::builder().header("content-type", "application/grpc+proto").body(()).expect("valid");
    let res = svc.oneshot(req).await.expect("infallible");
    let _ = res.into_body().collect().await;
    let text = recorder.handle().render();
    assert!(!text.contains("gateway_http_requests_total"), "{text}");
    assert_eq!(sample(&text, "gateway_overhead_seconds_count"), Some(0.0));
}

#[tokio::test]
async fn random_paths_and_methods_add_no_series() {
    let recorder = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let layer = HttpMetricsLayer::new();
    let svc = layer.layer(service_fn(|_req: Request<()>| async {
        let mut res = Response::new(TestBody::default());
        *res.status_mut() = StatusCode::NOT_FOUND;
        Ok::<_, Infallible>(res)
    }));
    let send = |path: String, method: Method| {
        let svc = svc.clone();
        async move {
            let req = Request::builder().method(method).uri(path).body(()).expect("valid");
            let _ = svc.oneshot(req).await.map(|r| drop(r.into_body()));
        }
    };
    send("/first".into(), Method::GET).await;
    send("/second".into(), Method::from_bytes(b"FIRST").expect("token")).await;
    let before = sample_count(&recorder.handle().render());

    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..10_000 {
        let path = format!("/{}", (0..rng.usize(1..40)).map(|_| rng.alphanumeric()).collect::<String>());
        let method: String = (0..rng.usize(1..12)).map(|_| rng.uppercase()).collect();
        send(path, Method::from_bytes(method.as_bytes()).expect("token")).await;
    }
    let text = recorder.handle().render();
    assert_eq!(sample_count(&text), before);
    assert_eq!(
        sample(&text, r#"gateway_http_requests_total{route="unmatched",method="other",code="404"}"#),
        Some(10_001.0)
    );
}
