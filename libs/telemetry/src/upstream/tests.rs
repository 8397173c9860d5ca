use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt, service_fn};

use super::*;
use crate::testing::{TestBody, grpc_message, grpc_status, recorder, sample};

#[derive(Debug)]
struct ConnectFailed;

/// One exchange through `layer` with an inner client answering `answer`.
async fn exchange(layer: &UpstreamMetricsLayer, answer: Result<Response<TestBody>, ConnectFailed>) -> Option<Duration> {
    let answer = std::sync::Mutex::new(Some(answer));
    let svc = layer.layer(service_fn(move |_req: Request<()>| {
        let answer = answer.lock().ok().and_then(|mut a| a.take());
        async move { answer.unwrap_or(Err(ConnectFailed)) }
    }));
    let res = svc.oneshot(Request::new(())).await.ok()?;
    let elapsed = res.body().upstream_elapsed();
    let _ = res.into_body().collect().await;
    elapsed
}

fn status(code: u16) -> Response<TestBody> {
    let mut res = Response::new(TestBody::new([b"body".to_vec()], None));
    *res.status_mut() = StatusCode::from_u16(code).expect("valid");
    res
}

#[tokio::test]
async fn the_end_is_read_once_and_passed_to_the_bodies_around() {
    let recorder = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let layer = UpstreamMetricsLayer::http("echo");
    let svc = layer.layer(service_fn(|_req: Request<()>| async { Ok::<_, ConnectFailed>(status(200)) }));
    let before = Instant::now();
    let mut body = svc.oneshot(Request::new(())).await.expect("answered").into_body();
    assert_eq!(body.ended_at(), None);
    while body.frame().await.is_some() {}
    let ended = body.ended_at().expect("read at the end");
    assert!(ended >= before && ended <= Instant::now());
}

#[tokio::test]
async fn http_clusters_count_by_status_errors_and_cancellations() {
    let recorder = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let layer = UpstreamMetricsLayer::http("echo");
    assert!(exchange(&layer, Ok(status(200))).await.is_some());
    exchange(&layer, Ok(status(200))).await;
    for _ in 0..3 {
        exchange(&layer, Ok(status(503))).await;
    }
    assert_eq!(exchange(&layer, Err(ConnectFailed)).await, None);
    let pending = layer
        .layer(service_fn(|_req: Request<()>| std::future::pending::<Result<Response<TestBody>, ConnectFailed>>()));
    let _ = tokio::time::timeout(Duration::from_millis(1), pending.oneshot(Request::new(()))).await;

    let text = recorder.handle().render();
    let at = |s: &str| sample(&text, s);
    assert_eq!(at(r#"gateway_upstream_requests_total{upstream="echo",code="200"}"#), Some(2.0));
    assert_eq!(at(r#"gateway_upstream_requests_total{upstream="echo",code="503"}"#), Some(3.0));
    assert_eq!(at(r#"gateway_upstream_requests_total{upstream="echo",code="error"}"#), Some(1.0));
    assert_eq!(at(r#"gateway_upstream_requests_total{upstream="echo",code="cancelled"}"#), Some(1.0));
    assert_eq!(at(r#"gateway_upstream_request_duration_seconds_count{upstream="echo"}"#), Some(7.0));
}

#[tokio::test]
async fn grpc_clusters_add_the_status_from_head_or_trailers() {
    let recorder = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let layer = UpstreamMetricsLayer::grpc("greeter");
    layer.seed();
    let text = recorder.handle().render();
    assert_eq!(
        sample(&text, r#"gateway_upstream_requests_total{upstream="greeter",code="200",grpc_code="OK"}"#),
        Some(0.0)
    );

    let ok = || Response::new(TestBody::new([grpc_message(2)], Some(grpc_status(0))));
    exchange(&layer, Ok(ok())).await;
    exchange(&layer, Ok(ok())).await;
    let mut trailers_only = Response::new(TestBody::default());
    trailers_only.headers_mut().extend(grpc_status(5));
    exchange(&layer, Ok(trailers_only)).await;
    exchange(&layer, Ok(Response::new(TestBody::new([grpc_message(2)], None)))).await;
    exchange(&layer, Ok(status(502))).await;
    exchange(&layer, Err(ConnectFailed)).await;

    // The downstream client went away mid-stream: the body is dropped.
    let svc = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, ConnectFailed>(Response::new(TestBody::new([grpc_message(1), grpc_message(1)], Some(grpc_status(0)))))
    }));
    let mut body = svc.oneshot(Request::new(())).await.expect("answered").into_body();
    let _ = body.frame().await;
    drop(body);

    let text = recorder.handle().render();
    let at = |code: &str, grpc: &str| {
        sample(
            &text,
            &format!(r#"gateway_upstream_requests_total{{upstream="greeter",code="{code}",grpc_code="{grpc}"}}"#),
        )
    };
    assert_eq!(at("200", "OK"), Some(2.0));
    assert_eq!(at("200", "NotFound"), Some(1.0));
    assert_eq!(at("200", "Unknown"), Some(1.0));
    assert_eq!(at("502", "Unavailable"), Some(1.0));
    assert_eq!(at("error", "Unavailable"), Some(1.0));
    assert_eq!(at("200", "Canceled"), Some(1.0));
    assert_eq!(sample(&text, r#"gateway_upstream_request_duration_seconds_count{upstream="greeter"}"#), Some(7.0));
}
