//! 50 MiB uploads and downloads stream through the gateway: its peak
//! resident memory (`VmHWM`) stays far below the body size.

#![allow(clippy::unwrap_used)]

use gatehouse_test_support::{Client, Echo, Gateway, empty, full, generated, http1_client, http2_client, send, url};
use http::Request;
use http_body_util::BodyExt;

const BODY: u64 = 50 * 1024 * 1024;

/// Peak resident memory the gateway may reach while moving a body. Well
/// below the 50 MiB body: a gateway that buffered one would exceed it.
const PEAK_RSS_LIMIT_KIB: u64 = 40 * 1024;

async fn setup() -> (Gateway, Echo) {
    let echo = Echo::start("echo").await;
    let config = format!(
        r#"
listeners:
  public: 127.0.0.1:0
  admin: 127.0.0.1:0
upstreams:
  echo:
    protocol: http1
    endpoints: ["{echo}"]
routes:
  - name: echo-http
    match: {{ path_prefix: /echo }}
    upstream: echo
    timeout: 120s
    max_body_bytes: 64MiB
"#,
        echo = echo.addr,
    );
    (Gateway::start(&config).await, echo)
}

async fn upload(client: &Client, gateway: &Gateway, what: &str) {
    let request = Request::post(url(gateway.public, "/echo/sink")).body(generated(BODY, 64 * 1024)).unwrap();
    let response = send(client, request).await;
    assert_eq!(response.status, 200, "{what}: {}", response.text());
    assert_eq!(response.json(), serde_json::json!({ "bytes": BODY }), "{what}");
}

/// Downloads `path` and counts its bytes as they arrive, never holding the body.
async fn download(client: &Client, gateway: &Gateway, path: &str) -> (u64, http::HeaderMap) {
    let request = Request::get(url(gateway.public, path)).body(empty()).unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            assert!(data.iter().all(|&b| b == 0), "{path}: echo sends zeros");
            total += data.len() as u64;
        }
    }
    (total, headers)
}

fn report_and_check_peak(gateway: &Gateway, what: &str, rss_before_kib: u64) {
    let peak = gateway.peak_rss_kib();
    eprintln!(
        "{what}: gateway RSS before {rss_before_kib} KiB, peak {peak} KiB ({:.1} MiB) for {} MiB bodies",
        peak as f64 / 1024.0,
        BODY / 1024 / 1024
    );
    assert!(peak < PEAK_RSS_LIMIT_KIB, "{what}: peak RSS {peak} KiB reached the {PEAK_RSS_LIMIT_KIB} KiB limit");
}

#[tokio::test]
async fn http1_50mib_upload_and_download_stream() {
    let (gateway, _echo) = setup().await;
    let client = http1_client();
    // Warm the connection pools so the figure below is about bodies, not start-up.
    let warm = send(&client, Request::post(url(gateway.public, "/echo/sink")).body(full("x")).unwrap()).await;
    assert_eq!(warm.status, 200);
    let before = gateway.rss_kib();

    // Chunked upload: no content-length.
    upload(&client, &gateway, "HTTP/1.1 chunked upload").await;

    let (total, headers) = download(&client, &gateway, &format!("/echo/bytes/{BODY}")).await;
    assert_eq!(total, BODY);
    assert_eq!(headers.get("content-length").unwrap(), &BODY.to_string());

    let (total, headers) = download(&client, &gateway, &format!("/echo/bytes/{BODY}?chunked=1")).await;
    assert_eq!(total, BODY);
    assert_eq!(headers.get("transfer-encoding").unwrap(), "chunked");

    report_and_check_peak(&gateway, "HTTP/1.1", before);
}

#[tokio::test]
async fn http2_50mib_upload_and_download_stream() {
    let (gateway, _echo) = setup().await;
    let client = http2_client();
    let warm = send(&client, Request::post(url(gateway.public, "/echo/sink")).body(full("x")).unwrap()).await;
    assert_eq!(warm.status, 200);
    let before = gateway.rss_kib();

    upload(&client, &gateway, "HTTP/2 upload").await;

    let (total, _) = download(&client, &gateway, &format!("/echo/bytes/{BODY}")).await;
    assert_eq!(total, BODY);

    report_and_check_peak(&gateway, "HTTP/2", before);
}
