use std::convert::Infallible;
use std::time::Duration;

use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt, service_fn};

use super::*;
use crate::testing::{TestBody, grpc_message, grpc_status, recorder, sample, sample_count};

fn catalogue() -> GrpcCatalogue {
    GrpcCatalogue::new().with_service("echo.v1.Echo", [("Unary", GrpcType::Unary), ("Chat", GrpcType::BidiStream)])
}

fn request(path: &str, body: TestBody) -> Request<TestBody> {
    Request::builder().uri(path).header("content-type", "application/grpc").body(body).expect("valid request")
}

/// Sends `req` to an inner service that drains the request body, then
/// answers with `response`, and reads the whole response.
async fn call(layer: &GrpcMetricsLayer, req: Request<TestBody>, response: impl Fn() -> Response<TestBody> + Clone) {
    let svc = layer.layer(service_fn(move |req: Request<RequestBody<TestBody>>| {
        let response = response.clone();
        async move {
            let _ = req.into_body().collect().await;
            Ok::<_, Infallible>(response())
        }
    }));
    let res = svc.oneshot(req).await.expect("infallible");
    let _ = res.into_body().collect().await;
}

fn ok_with_one_message() -> Response<TestBody> {
    Response::new(TestBody::new([grpc_message(3)], Some(grpc_status(0))))
}

/// A trailers-only response: the status is in the head, the body is empty.
fn trailers_only(code: u8) -> Response<TestBody> {
    let mut res = Response::new(TestBody::default());
    res.headers_mut().extend(grpc_status(code));
    res
}

const UNARY: &str = r#"{grpc_service="echo.v1.Echo",grpc_method="Unary",grpc_type="unary"}"#;
const CHAT: &str = r#"{grpc_service="echo.v1.Echo",grpc_method="Chat",grpc_type="bidi_stream"}"#;

fn handled(labels: &str, code: &str) -> String {
    format!("gateway_grpc_server_handled_total{},grpc_code=\"{code}\"}}", labels.trim_end_matches('}'))
}

#[tokio::test]
async fn handling_time_runs_from_the_arrival_to_the_end_the_body_read() {
    #[derive(Clone, Copy)]
    struct Arrived(std::time::Instant);
    let recorder = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let arrived = std::time::Instant::now() + Duration::from_secs(10);
    let ended = arrived + Duration::from_millis(250);
    let layer = GrpcMetricsLayer::new(catalogue()).arrival_from(|ext| ext.get::<Arrived>().map(|a| a.0));
    let mut req = request("/echo.v1.Echo/Unary", TestBody::new([grpc_message(1)], None));
    req.extensions_mut().insert(Arrived(arrived));
    let svc = layer.layer(service_fn(move |_req: Request<RequestBody<TestBody>>| async move {
        Ok::<_, Infallible>(Response::new(TestBody::new([grpc_message(3)], Some(grpc_status(0))).with_ended_at(ended)))
    }));
    let mut body = svc.oneshot(req).await.expect("infallible").into_body();
    assert_eq!(body.elapsed(), None, "not measured yet");
    while body.frame().await.is_some() {}
    assert_eq!(body.elapsed(), Some(Duration::from_millis(250)), "the outer layers get the time recorded");
    let text = recorder.handle().render();
    let sum = format!("gateway_grpc_server_handling_seconds_sum{UNARY}");
    assert_eq!(sample(&text, &sum), Some(0.25));
}

#[tokio::test]
async fn ok_and_not_found_calls_count_exactly() {
    let recorder = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let layer = GrpcMetricsLayer::new(catalogue());
    for _ in 0..4 {
        call(&layer, request("/echo.v1.Echo/Unary", TestBody::new([grpc_message(5)], None)), ok_with_one_message).await;
    }
    for _ in 0..3 {
        call(&layer, request("/echo.v1.Echo/Unary", TestBody::new([grpc_message(5)], None)), || trailers_only(5)).await;
    }
    let text = recorder.handle().render();
    let at = |s: &str| sample(&text, s);
    assert_eq!(at(&format!("gateway_grpc_server_started_total{UNARY}")), Some(7.0));
    assert_eq!(at(&handled(UNARY, "OK")), Some(4.0));
    assert_eq!(at(&handled(UNARY, "NotFound")), Some(3.0));
    assert_eq!(at(&format!("gateway_grpc_server_handling_seconds_count{UNARY}")), Some(7.0));
    assert_eq!(at(&format!("gateway_grpc_server_msg_received_total{UNARY}")), Some(7.0));
    assert_eq!(at(&format!("gateway_grpc_server_msg_sent_total{UNARY}")), Some(4.0));
    assert_eq!(at("gateway_overhead_seconds_count"), Some(7.0));
}

#[tokio::test]
async fn streams_count_messages_across_odd_chunk_boundaries() {
    let recorder = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let layer = GrpcMetricsLayer::new(catalogue());
    let five: Vec<u8> = [0usize, 1, 9, 130, 4].iter().flat_map(|l| grpc_message(*l)).collect();
    let req = request("/echo.v1.Echo/Chat", TestBody::split(&five, &[1, 3, 2, 7, 64, 5], None));
    let response = move || Response::new(TestBody::split(&five, &[6, 1, 11, 100, 2], Some(grpc_status(0))));
    call(&layer, req, response).await;

    let text = recorder.handle().render();
    assert_eq!(sample(&text, &format!("gateway_grpc_server_msg_received_total{CHAT}")), Some(5.0));
    assert_eq!(sample(&text, &format!("gateway_grpc_server_msg_sent_total{CHAT}")), Some(5.0));
    assert_eq!(sample(&text, &handled(CHAT, "OK")), Some(1.0));
    assert_eq!(sample(&text, &format!("gateway_grpc_server_handling_seconds_count{CHAT}")), Some(1.0));
}

#[tokio::test]
async fn a_cancelled_stream_counts_as_canceled_never_ok() {
    let recorder = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let layer = GrpcMetricsLayer::new(catalogue());
    let svc = layer.layer(service_fn(|_req: Request<RequestBody<TestBody>>| async {
        let chunks = (0..5).map(|_| grpc_message(8));
        Ok::<_, Infallible>(Response::new(TestBody::new(chunks, Some(grpc_status(0)))))
    }));
    let res = svc.clone().oneshot(request("/echo.v1.Echo/Chat", TestBody::default())).await.expect("infallible");
    let mut body = res.into_body();
    let _ = body.frame().await;
    let _ = body.frame().await;
    drop(body); // The client went away after two messages.

    // And one call cancelled before the response head.
    let pending = layer.layer(service_fn(|_req: Request<RequestBody<TestBody>>| {
        std::future::pending::<Result<Response<TestBody>, Infallible>>()
    }));
    let _ = tokio::time::timeout(
        Duration::from_millis(1),
        pending.oneshot(request("/echo.v1.Echo/Chat", TestBody::default())),
    )
    .await;

    let text = recorder.handle().render();
    assert_eq!(sample(&text, &handled(CHAT, "Canceled")), Some(2.0));
    assert_eq!(sample(&text, &handled(CHAT, "OK")), Some(0.0));
    assert_eq!(sample(&text, &format!("gateway_grpc_server_msg_sent_total{CHAT}")), Some(2.0));
    assert_eq!(sample(&text, &format!("gateway_grpc_server_started_total{CHAT}")), Some(2.0));
}

#[tokio::test]
async fn status_comes_from_where_it_really_is() {
    let recorder = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let layer = GrpcMetricsLayer::new(catalogue());
    let unary = || request("/echo.v1.Echo/Unary", TestBody::default());
    // Trailers at the end of the body.
    call(&layer, unary(), || Response::new(TestBody::new([grpc_message(1)], Some(grpc_status(3))))).await;
    // A body that ends without any status, noticed by `None` or by `is_end_stream`.
    call(&layer, unary(), || Response::new(TestBody::new([grpc_message(1)], None).lazy_end())).await;
    call(&layer, unary(), || Response::new(TestBody::new([grpc_message(1)], None))).await;
    // Trailers without grpc-status.
    call(&layer, unary(), || Response::new(TestBody::new([], Some(HeaderMap::new())))).await;
    // Non-200 heads without grpc-status, mapped as gRPC clients map them.
    for (status, _) in [(503, "Unavailable"), (404, "Unimplemented"), (429, "Unavailable"), (401, "Unauthenticated")] {
        call(&layer, unary(), move || {
            let mut res = Response::new(TestBody::new([b"<html>".to_vec()], None));
            *res.status_mut() = StatusCode::from_u16(status).expect("valid");
            res
        })
        .await;
    }
    let text = recorder.handle().render();
    assert_eq!(sample(&text, &handled(UNARY, "InvalidArgument")), Some(1.0));
    assert_eq!(sample(&text, &handled(UNARY, "Unknown")), Some(3.0));
    assert_eq!(sample(&text, &handled(UNARY, "Unavailable")), Some(2.0));
    assert_eq!(sample(&text, &handled(UNARY, "Unimplemented")), Some(1.0));
    assert_eq!(sample(&text, &handled(UNARY, "Unauthenticated")), Some(1.0));
    assert_eq!(sample(&text, &handled(UNARY, "OK")), Some(0.0));
    // The HTML of an error page is not a gRPC message.
    assert_eq!(sample(&text, &format!("gateway_grpc_server_msg_sent_total{UNARY}")), Some(3.0));
}

#[tokio::test]
async fn unknown_methods_and_services_are_bounded() {
    let recorder = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let layer = GrpcMetricsLayer::new(catalogue());
    call(&layer, request("/echo.v1.Echo/Nope", TestBody::default()), ok_with_one_message).await;
    call(&layer, request("/other.Svc/Nope", TestBody::default()), || trailers_only(12)).await;
    let before = sample_count(&recorder.handle().render());
    let known = r#"{grpc_service="echo.v1.Echo",grpc_method="unknown",grpc_type="unknown"}"#;
    let unknown = r#"{grpc_service="unknown",grpc_method="unknown",grpc_type="unknown"}"#;

    let mut rng = fastrand::Rng::with_seed(11);
    for i in 0..1_000 {
        let method: String = (0..rng.usize(1..30)).map(|_| rng.alphanumeric()).collect();
        let path = if i % 2 == 0 { format!("/echo.v1.Echo/{method}") } else { format!("/{method}.Svc/{method}") };
        call(&layer, request(&path, TestBody::default()), ok_with_one_message).await;
    }
    let text = recorder.handle().render();
    assert_eq!(sample_count(&text), before);
    assert_eq!(sample(&text, &format!("gateway_grpc_server_started_total{known}")), Some(501.0));
    assert_eq!(sample(&text, &format!("gateway_grpc_server_started_total{unknown}")), Some(501.0));
    assert_eq!(sample(&text, &handled(unknown, "Unimplemented")), Some(1.0));
}

#[tokio::test]
async fn other_requests_pass_through_and_seeding_creates_every_code() {
    let recorder = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let layer = GrpcMetricsLayer::new(catalogue());
    let plain = Request::builder().uri("/echo.v1.Echo/Unary").body(TestBody::new([grpc_message(1)], None));
    call(&layer, plain.expect("valid"), ok_with_one_message).await;
    let text = recorder.handle().render();
    assert_eq!(sample(&text, &format!("gateway_grpc_server_started_total{UNARY}")), Some(0.0));
    assert_eq!(sample(&text, &format!("gateway_grpc_server_msg_received_total{UNARY}")), Some(0.0));

    catalogue().seed();
    let text = recorder.handle().render();
    for labels in [UNARY, CHAT] {
        for code in GrpcCode::ALL {
            assert_eq!(sample(&text, &handled(labels, code.as_str())), Some(0.0), "{labels} {code:?}");
        }
        assert_eq!(sample(&text, &format!("gateway_grpc_server_handling_seconds_count{labels}")), Some(0.0));
        let le = format!("gateway_grpc_server_handling_seconds_bucket{},le=\"+Inf\"}}", labels.trim_end_matches('}'));
        assert_eq!(sample(&text, &le), Some(0.0));
    }
}

#[tokio::test]
async fn update_swaps_the_catalogue_for_every_service() {
    let recorder = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let layer = GrpcMetricsLayer::new(GrpcCatalogue::new());
    layer.update(catalogue());
    call(&layer, request("/echo.v1.Echo/Unary", TestBody::default()), ok_with_one_message).await;
    assert_eq!(sample(&recorder.handle().render(), &handled(UNARY, "OK")), Some(1.0));
}
