//! A real Prometheus scrapes the gateway while the test drives steady, known
//! traffic; the PromQL a dashboard or alert would use then has to give the
//! expected answers: request rate per route, error ratio, p95 latency via
//! `histogram_quantile`, and the gRPC error rate. `promtool check metrics`
//! must find nothing to complain about in a scrape.
//!
//! Needs the Debian `prometheus` package (`.ci/run` installs it). Without it
//! the tests are skipped with a message, unless `CI=true`, where they fail.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gatehouse_proto::echo::v1::EchoRequest;
use gatehouse_proto::echo::v1::echo_client::EchoClient;
use gatehouse_test_support::{
    Echo, Gateway, PrometheusServer, empty, http1_client, prometheus_binary, prometheus_required,
    promtool_check_metrics, scrape_metrics, send, url,
};
use http::Request;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::Channel;

/// How often Prometheus scrapes.
const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
/// How long traffic runs before the queries: the 10 s rate window, plus a
/// scrape or two so the window is full of traffic.
const TRAFFIC_BEFORE_QUERIES: Duration = Duration::from_secs(12);

/// `echo-http`: 20 requests/s, every 4th a 503, the rest `/delay/50`.
const HTTP_RATE: f64 = 20.0;
/// `echo-other`: 8 requests/s, every 4th a 503, the rest 200 at once.
const OTHER_RATE: f64 = 8.0;
/// gRPC `Unary`: 10 calls/s, every 5th NotFound.
const GRPC_RATE: f64 = 10.0;
const GRPC_NOT_FOUND_EVERY: u64 = 5;

/// Skips (returns `None`) with a visible message when Prometheus is missing
/// and not required; fails when it is required.
fn prometheus_or_skip(test: &str) -> Option<()> {
    if prometheus_binary().is_some() {
        return Some(());
    }
    assert!(!prometheus_required(), "{test}: CI=true but prometheus is not installed (apt-get install prometheus)");
    skipped(&format!(
        "{test}: prometheus is not installed (apt-get install prometheus); set CI=true to make this fail"
    ));
    None
}

/// Says a test was skipped on the real stderr, which the test harness does
/// not capture (as it does `eprintln!`), so the note shows in a normal run.
fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {why}");
}

async fn start_gateway(echo: &Echo) -> Gateway {
    let config = format!(
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
    grpc_methods: {{ Unary: unary, ServerStream: server_stream, ClientStream: client_stream, BidiStream: bidi_stream }}
  - name: echo-http
    match: {{ path_prefix: /echo }}
    upstream: echo
  - name: echo-other
    match: {{ path_prefix: /other }}
    upstream: echo
metrics:
  duration_buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
"#,
        echo = echo.addr,
    );
    Gateway::start(&config).await
}

/// Calls `request(i)` for i = 0, 1, 2, … at `per_second`, each call in a
/// task of its own so slow responses do not lower the rate, until `stop`.
fn steady<F, Fut>(per_second: f64, stop: Arc<AtomicBool>, request: F) -> JoinHandle<u64>
where
    F: Fn(u64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut calls = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            ticks.tick().await;
            calls.push(tokio::spawn(request(i)));
            i += 1;
        }
        for call in calls {
            call.await.unwrap();
        }
        i
    })
}

fn assert_near(what: &str, got: f64, want: f64, tolerance: f64) {
    assert!(got.is_finite() && (got - want).abs() <= tolerance, "{what}: got {got}, expected {want} ± {tolerance}");
}

#[tokio::test]
async fn promql_over_real_scrapes_gives_the_expected_rates_ratios_and_quantiles() {
    if prometheus_or_skip("promql_over_real_scrapes_gives_the_expected_rates_ratios_and_quantiles").is_none() {
        return;
    }
    let echo = Echo::start("echo").await;
    let gateway = start_gateway(&echo).await;
    let prometheus = PrometheusServer::start(&[gateway.admin], SCRAPE_INTERVAL).await.unwrap();
    prometheus.wait_for_scrapes(2, Duration::from_secs(30)).await;

    // The seeded series are visible to PromQL before any traffic.
    let seeded =
        prometheus.query_value(r#"gateway_grpc_server_handled_total{grpc_method="Unary",grpc_code="NotFound"}"#).await;
    assert_eq!(seeded, Some(0.0));

    let stop = Arc::new(AtomicBool::new(false));
    let public = gateway.public;
    let client = http1_client();
    let http = steady(HTTP_RATE, Arc::clone(&stop), {
        let client = client.clone();
        move |i| {
            let client = client.clone();
            async move {
                let (path, want) = if i % 4 == 0 { ("/echo/status/503", 503) } else { ("/echo/delay/50", 200) };
                let response = send(&client, Request::get(url(public, path)).body(empty()).unwrap()).await;
                assert_eq!(response.status, want, "{path}: {}", response.text());
            }
        }
    });
    let other = steady(OTHER_RATE, Arc::clone(&stop), move |i| {
        let client = client.clone();
        async move {
            let (path, want) = if i % 4 == 0 { ("/other/status/503", 503) } else { ("/other/status/200", 200) };
            let response = send(&client, Request::get(url(public, path)).body(empty()).unwrap()).await;
            assert_eq!(response.status, want, "{path}: {}", response.text());
        }
    });
    let channel = Channel::from_shared(format!("http://{public}")).unwrap().connect().await.unwrap();
    let grpc = steady(GRPC_RATE, Arc::clone(&stop), move |i| {
        let mut client = EchoClient::new(channel.clone());
        async move {
            let not_found = i % GRPC_NOT_FOUND_EVERY == 0;
            let status_code = if not_found { Code::NotFound as i32 } else { 0 };
            let result = client.unary(EchoRequest { message: "m".into(), status_code, ..EchoRequest::default() }).await;
            match result {
                Ok(_) => assert!(!not_found),
                Err(status) => assert!(not_found && status.code() == Code::NotFound, "{status:?}"),
            }
        }
    });

    tokio::time::sleep(TRAFFIC_BEFORE_QUERIES).await;

    // Queried while the traffic still runs, so the 10 s windows are full of
    // it; every query at the same instant, so they see the same samples.
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let per_route = prometheus.query_at("sum by (route) (rate(gateway_http_requests_total[10s]))", at).await.unwrap();
    let error_ratio = prometheus
        .query_value_at(
            r#"sum(rate(gateway_http_requests_total{code=~"5.."}[10s])) / sum(rate(gateway_http_requests_total[10s]))"#,
            at,
        )
        .await;
    let p95 = prometheus
        .query_value_at(
            "histogram_quantile(0.95, sum by (le) (rate(gateway_http_request_duration_seconds_bucket[10s])))",
            at,
        )
        .await;
    let grpc_errors_1m =
        prometheus.query_value_at(r#"sum(rate(gateway_grpc_server_handled_total{grpc_code!="OK"}[1m]))"#, at).await;
    let not_found_1m = prometheus
        .query_value_at(r#"sum(rate(gateway_grpc_server_handled_total{grpc_code="NotFound"}[1m]))"#, at)
        .await;
    let grpc_errors_10s =
        prometheus.query_value_at(r#"sum(rate(gateway_grpc_server_handled_total{grpc_code!="OK"}[10s]))"#, at).await;
    let scraped_not_found = scrape_metrics(gateway.admin).await.value(
        "gateway_grpc_server_handled_total",
        &[
            ("grpc_service", "echo.v1.Echo"),
            ("grpc_method", "Unary"),
            ("grpc_type", "unary"),
            ("grpc_code", "NotFound"),
        ],
    );

    stop.store(true, Ordering::Relaxed);
    let (http_sent, other_sent, grpc_sent) = (http.await.unwrap(), other.await.unwrap(), grpc.await.unwrap());
    println!(
        "sent: {http_sent} echo-http, {other_sent} echo-other, {grpc_sent} gRPC\n\
         per route: {per_route:?}\nerror ratio: {error_ratio:?}\np95: {p95:?}\n\
         gRPC non-OK rate [1m]: {grpc_errors_1m:?} (NotFound {not_found_1m:?}, [10s] {grpc_errors_10s:?}); \
         NotFound counter at query time: {scraped_not_found}"
    );

    // Request rate per route.
    let rate_of = |route: &str| {
        per_route.iter().find(|(labels, _)| labels.get("route").is_some_and(|r| r == route)).map(|(_, v)| *v)
    };
    assert_near("rate of echo-http", rate_of("echo-http").unwrap(), HTTP_RATE, HTTP_RATE * 0.25);
    assert_near("rate of echo-other", rate_of("echo-other").unwrap(), OTHER_RATE, OTHER_RATE * 0.25);
    assert_eq!(rate_of("unmatched"), Some(0.0), "the seeded unmatched route had no traffic");
    // Error ratio: a quarter of each route's requests are 503s.
    assert_near("error ratio", error_ratio.unwrap(), 0.25, 0.1);
    // p95: over half the requests take 50 ms (the rest ~1 ms), so the 95th
    // percentile lies in the (0.05, 0.1] bucket, or a little above on a
    // loaded machine, and is a real number, not NaN or +Inf.
    let p95 = p95.unwrap();
    assert!(p95.is_finite() && p95 > 0.05 && p95 <= 0.25, "p95 {p95}");
    // gRPC errors: only NotFound calls fail, so the non-OK rate is the
    // NotFound rate. Over [1m] on a gateway younger than a minute the rate is
    // the count so far divided by 60 s.
    let grpc_errors_1m = grpc_errors_1m.unwrap();
    assert!(grpc_errors_1m > 0.0, "no gRPC errors seen");
    assert_near("non-OK vs NotFound rate [1m]", grpc_errors_1m, not_found_1m.unwrap(), 1e-9);
    assert_near(
        "non-OK rate [1m] × 60 vs the NotFound count",
        grpc_errors_1m * 60.0,
        scraped_not_found,
        scraped_not_found * 0.25,
    );
    let not_found_rate = GRPC_RATE / GRPC_NOT_FOUND_EVERY as f64;
    assert_near("non-OK rate [10s]", grpc_errors_10s.unwrap(), not_found_rate, not_found_rate * 0.3);
}

#[tokio::test]
async fn promtool_finds_no_lint_problems_in_a_scrape() {
    let test = "promtool_finds_no_lint_problems_in_a_scrape";
    if prometheus_or_skip(test).is_none() {
        return;
    }
    let echo = Echo::start("echo").await;
    let gateway = start_gateway(&echo).await;
    // Some traffic first, so the scrape has more than the seeded series.
    let client = http1_client();
    for path in ["/echo/status/200", "/echo/status/503", "/other/delay/5", "/nowhere"] {
        send(&client, Request::get(url(gateway.public, path)).body(empty()).unwrap()).await;
    }
    let mut grpc =
        EchoClient::new(Channel::from_shared(format!("http://{}", gateway.public)).unwrap().connect().await.unwrap());
    grpc.unary(EchoRequest::default()).await.unwrap();

    let scrape = scrape_metrics(gateway.admin).await;
    let Some(report) = promtool_check_metrics(scrape.text()).await else {
        assert!(!prometheus_required(), "{test}: CI=true but promtool is not installed");
        skipped(&format!("{test}: promtool is not installed"));
        return;
    };
    println!("promtool check metrics:\n{}", report.output);
    assert!(report.success, "promtool check metrics reported problems:\n{}", report.output);
}
