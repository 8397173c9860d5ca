//! Graceful shutdown, seen from the clients: a rolling restart under steady
//! HTTP/1.1, HTTP/2 and gRPC load fails no request; after the drain delay
//! the listener closes while in-flight requests finish (`Connection: close`,
//! GOAWAY); a second signal exits at once; and requests that outlast the
//! shutdown timeout are cut, with their access lines written.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse_proto::echo::v1::echo_client::EchoClient;
use gatehouse_proto::echo::v1::{EchoRequest, EchoResponse};
use gatehouse_test_support::{Echo, Gateway, POLL_INTERVAL, Signal, SilentUpstream, get, poll_until};
use http::{Request, Response, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Slack on top of `drain_delay + shutdown_timeout` for the process to exit.
const EXIT_SLACK: Duration = Duration::from_secs(1);
/// How soon after `kill` returns readiness must be 503. Signals are
/// delivered asynchronously, so a probe sent in the same millisecond may
/// still be answered before the handler has run.
const READINESS_FLIP: Duration = Duration::from_millis(100);
/// A request sent on a connection the gateway is closing fails at once; one
/// that fails later was waiting on a gateway that would never answer it.
const QUICK_FAILURE: Duration = Duration::from_millis(250);
/// How long readiness and client progress may take to show.
const WAIT: Duration = Duration::from_secs(10);

/// `/echo` and `echo.v1.Echo` on the echo upstream, `/hold` on `hold` (an
/// upstream that never answers) when given.
fn config(echo: SocketAddr, hold: Option<SocketAddr>, drain_delay: &str, shutdown_timeout: &str) -> String {
    let (hold_upstream, hold_route) = match hold {
        Some(addr) => (
            format!("  hold:\n    protocol: http1\n    endpoints: [\"{addr}\"]\n    required: false\n"),
            "  - name: hold\n    match: { path_prefix: /hold }\n    upstream: hold\n    timeout: 60s\n".to_owned(),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        r#"
listeners:
  public: 127.0.0.1:0
  admin: 127.0.0.1:0
shutdown: {{ drain_delay: {drain_delay}, shutdown_timeout: {shutdown_timeout} }}
upstreams:
  echo:
    protocol: http1
    endpoints: ["{echo}"]
    probe_interval: 200ms
  echo-grpc:
    protocol: grpc
    endpoints: ["{echo}"]
    probe_interval: 200ms
{hold_upstream}
routes:
{hold_route}
  - name: echo-grpc
    match: {{ grpc_service: echo.v1.Echo }}
    upstream: echo-grpc
    timeout: 60s
  - name: echo-http
    match: {{ path_prefix: /echo }}
    upstream: echo
    timeout: 60s
"#
    )
}

async fn wait_ready(gateway: &Gateway) {
    let ready = poll_until(gateway.admin, "/readyz", WAIT, |r| r.status == 200).await;
    if let Err(r) = ready {
        panic!("/readyz did not turn 200 within {WAIT:?}: {} {}", r.status, r.text());
    }
}

/// `/readyz` without panicking when the admin port has gone.
async fn try_readyz(admin: SocketAddr) -> Option<u16> {
    let client = gatehouse_test_support::http1_client();
    let request = Request::get(format!("http://{admin}/readyz")).body(gatehouse_test_support::empty()).unwrap();
    let response = client.request(request).await.ok()?;
    let status = response.status().as_u16();
    response.into_body().collect().await.ok()?;
    Some(status)
}

async fn grpc_channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

/// A request sent that got no answer at all.
#[derive(Debug)]
struct Unanswered {
    id: String,
    sent: Instant,
    failed: Instant,
    /// Whether it went on a connection that had carried earlier requests
    /// (unknown for gRPC, whose channel manages connections itself).
    reused: Option<bool>,
    error: String,
}

impl Unanswered {
    fn new(id: String, sent: Instant, reused: Option<bool>, error: String) -> Self {
        Self { id, sent, failed: Instant::now(), reused, error }
    }

    fn describe(&self, signalled: Instant) -> String {
        format!(
            "{} sent {:?} after SIGTERM on a {} connection, failed {:?} later: {}",
            self.id,
            self.sent.saturating_duration_since(signalled),
            match self.reused {
                Some(true) => "reused",
                Some(false) => "new",
                None => "pooled",
            },
            self.failed - self.sent,
            self.error
        )
    }

    /// `Ok` when losing this request is the client's to retry: sent after
    /// the drain delay on a connection the gateway was closing, and never
    /// read by the gateway (no access line). Anything else is a request the
    /// gateway failed.
    fn judge(&self, access: &HashMap<String, Vec<Value>>, signalled: Instant, drain: Duration) -> Result<(), String> {
        let (id, error) = (&self.id, &self.error);
        let sent = self.sent.saturating_duration_since(signalled);
        let waited = self.failed - self.sent;
        if let Some(lines) = access.get(id) {
            return Err(format!("{id}: read by the gateway ({lines:?}), then failed {sent:?} after SIGTERM: {error}"));
        }
        if sent < drain {
            return Err(format!("{id}: sent {sent:?} after SIGTERM, within the drain delay, got no answer: {error}"));
        }
        // The kernel can complete a handshake in the instant between the
        // gateway's last accept and the listening socket's close; that
        // connection is reset before anything is read. For the client that is
        // a refused connection: nothing was processed and a retry is safe.
        let reset_at_close = waited <= QUICK_FAILURE && error.contains("ConnectionReset");
        if self.reused == Some(false) && !reset_at_close {
            return Err(format!(
                "{id}: first request on a new connection opened {sent:?} after SIGTERM (after the drain delay): \
                 the handshake succeeded, so the listener was still open, but it was never served; failed after \
                 {waited:?}: {error}"
            ));
        }
        if waited > QUICK_FAILURE {
            return Err(format!("{id}: sent {sent:?} after SIGTERM, waited {waited:?}, then failed: {error}"));
        }
        Ok(())
    }
}

/// What one client loop saw.
#[derive(Debug)]
struct Report {
    name: String,
    /// Request ids answered with the expected response.
    answered: Vec<String>,
    last_answer: Option<Instant>,
    /// Requests sent that got no answer; whether that is a failure depends
    /// on when and whether the gateway read them.
    unanswered: Vec<Unanswered>,
    /// Wrong answers: a 5xx, a cut body, a wrong payload.
    failures: Vec<String>,
    /// When a new connection was first refused.
    refused_at: Option<Instant>,
    /// An HTTP/1.1 response said `Connection: close`.
    saw_connection_close: bool,
}

impl Report {
    fn new(name: String) -> Self {
        Self {
            name,
            answered: Vec::new(),
            last_answer: None,
            unanswered: Vec::new(),
            failures: Vec::new(),
            refused_at: None,
            saw_connection_close: false,
        }
    }

    fn answer(&mut self, id: String, progress: &AtomicU64) {
        self.answered.push(id);
        self.last_answer = Some(Instant::now());
        progress.fetch_add(1, Ordering::Relaxed);
    }

    /// Too many unanswered requests: something is wrong, stop spinning.
    fn give_up(&self) -> bool {
        self.unanswered.len() > 20 || self.failures.len() > 20
    }

    /// Reads an HTTP response to `id` to its end and records the outcome.
    async fn http_response(&mut self, id: String, response: Response<Incoming>, progress: &AtomicU64) {
        let status = response.status();
        let close =
            response.headers().get(header::CONNECTION).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        self.saw_connection_close |= close;
        match response.into_body().collect().await {
            Err(e) => self.failures.push(format!("{id}: the response body was cut: {e:?}")),
            Ok(_) if status != 200 => self.failures.push(format!("{id}: status {status}")),
            Ok(_) => self.answer(id, progress),
        }
    }
}

/// Connects, recording a refusal; `None` when there is no connection.
async fn connect(addr: SocketAddr, report: &mut Report) -> Option<TokioIo<TcpStream>> {
    match TcpStream::connect(addr).await {
        Ok(stream) => Some(TokioIo::new(stream)),
        // A reset during the handshake is the listener closing under a
        // connection attempt: like a refusal, no request was sent.
        Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset) => {
            report.refused_at = Some(Instant::now());
            None
        }
        Err(e) => {
            report.failures.push(format!("connecting: {e}"));
            None
        }
    }
}

/// Back-to-back GETs on keep-alive HTTP/1.1 connections, reconnecting when
/// the gateway closes one, until a new connection is refused.
async fn http1_loop(name: String, addr: SocketAddr, progress: Arc<AtomicU64>) -> Report {
    let mut report = Report::new(name);
    let mut n = 0;
    'connect: while !report.give_up() {
        let Some(io) = connect(addr, &mut report).await else { break };
        let (mut sender, conn) = match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io).await {
            Ok(pair) => pair,
            Err(e) => {
                report.failures.push(format!("HTTP/1.1 handshake: {e:?}"));
                break;
            }
        };
        tokio::spawn(conn);
        let mut on_connection = 0;
        while !report.give_up() {
            if sender.ready().await.is_err() {
                // Closed by the gateway between requests: nothing was lost.
                continue 'connect;
            }
            n += 1;
            on_connection += 1;
            let id = format!("{}-{n}", report.name);
            let request = Request::get("/echo/status/200")
                .header(header::HOST, "gatehouse.test")
                .header("x-request-id", &id)
                .body(Empty::new())
                .unwrap();
            let sent = Instant::now();
            match sender.try_send_request(request).await {
                Ok(response) => {
                    report.http_response(id, response, &progress).await;
                    if report.saw_connection_close {
                        continue 'connect;
                    }
                }
                Err(mut e) => {
                    if e.take_message().is_none() {
                        let error = format!("{:?}", e.into_error());
                        report.unanswered.push(Unanswered::new(id, sent, Some(on_connection > 1), error));
                    }
                    continue 'connect;
                }
            }
        }
    }
    report
}

/// Back-to-back GETs on HTTP/2 connections, reconnecting after GOAWAY,
/// until a new connection is refused.
async fn http2_loop(name: String, addr: SocketAddr, progress: Arc<AtomicU64>) -> Report {
    let mut report = Report::new(name);
    let mut n = 0;
    'connect: while !report.give_up() {
        let Some(io) = connect(addr, &mut report).await else { break };
        let handshake = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(TokioExecutor::new(), io).await;
        let (mut sender, conn) = match handshake {
            Ok(pair) => pair,
            // The kernel completed the TCP handshake while the listener was
            // still open, and the connection was reset with the listener
            // before the gateway accepted it: the same as a refusal, and no
            // request was sent.
            Err(e) if reset_by_peer(&e) => {
                report.refused_at = Some(Instant::now());
                break;
            }
            Err(e) => {
                report.failures.push(format!("HTTP/2 handshake: {e:?}"));
                break;
            }
        };
        tokio::spawn(conn);
        let mut on_connection = 0;
        while !report.give_up() {
            if sender.ready().await.is_err() {
                continue 'connect;
            }
            n += 1;
            on_connection += 1;
            let id = format!("{}-{n}", report.name);
            let request = Request::get(format!("http://{addr}/echo/status/200"))
                .header("x-request-id", &id)
                .body(Empty::new())
                .unwrap();
            let sent = Instant::now();
            match sender.try_send_request(request).await {
                Ok(response) => report.http_response(id, response, &progress).await,
                Err(mut e) => {
                    if e.take_message().is_none() {
                        let error = format!("{:?}", e.into_error());
                        report.unanswered.push(Unanswered::new(id, sent, Some(on_connection > 1), error));
                    }
                    continue 'connect;
                }
            }
        }
    }
    report
}

/// Whether `e` or an error in its chain is a connection reset by the peer.
fn reset_by_peer(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset) {
            return true;
        }
        next = e.source();
    }
    false
}

/// Whether a gRPC error is a refused connection (anywhere in its chain).
fn is_refused(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(status);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return true;
        }
        source = e.source();
    }
    format!("{status:?}").contains("Connection refused")
}

/// Back-to-back unary calls on one channel until a connection is refused.
async fn grpc_loop(name: String, addr: SocketAddr, progress: Arc<AtomicU64>) -> Report {
    let mut report = Report::new(name);
    let mut client = EchoClient::new(grpc_channel(addr).await);
    let mut n = 0;
    while !report.give_up() {
        n += 1;
        let id = format!("{}-{n}", report.name);
        let mut request = tonic::Request::new(EchoRequest { message: id.clone(), ..EchoRequest::default() });
        request.metadata_mut().insert("x-request-id", id.parse().unwrap());
        let sent = Instant::now();
        match client.unary(request).await {
            Ok(response) if response.get_ref().message == id => report.answer(id, &progress),
            Ok(response) => report.failures.push(format!("{id}: wrong reply {:?}", response.get_ref())),
            Err(status) if is_refused(&status) => {
                report.refused_at = Some(Instant::now());
                break;
            }
            Err(status) => report.unanswered.push(Unanswered::new(id, sent, None, format!("{status:?}"))),
        }
    }
    report
}

/// A server stream of `count` messages `delay_ms` apart with request id
/// `id`; `started` fires at the first message.
async fn long_stream(
    addr: SocketAddr,
    id: &'static str,
    count: u32,
    delay_ms: u32,
    started: tokio::sync::oneshot::Sender<()>,
) -> (Vec<EchoResponse>, Result<(), tonic::Status>) {
    let mut client = EchoClient::new(grpc_channel(addr).await);
    let mut request =
        tonic::Request::new(EchoRequest { message: "long".to_owned(), count, delay_ms, ..Default::default() });
    request.metadata_mut().insert("x-request-id", id.parse().unwrap());
    let mut stream = match client.server_stream(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return (Vec::new(), Err(status)),
    };
    let mut got = Vec::new();
    let mut started = Some(started);
    loop {
        match stream.message().await {
            Ok(Some(message)) => {
                got.push(message);
                if let Some(started) = started.take() {
                    let _ = started.send(());
                }
            }
            Ok(None) => return (got, Ok(())),
            Err(status) => return (got, Err(status)),
        }
    }
}

/// Access lines by request id.
fn access_by_id(gateway: &Gateway) -> HashMap<String, Vec<Value>> {
    let mut by_id: HashMap<String, Vec<Value>> = HashMap::new();
    for line in gateway.access_lines() {
        let id = line["request_id"].as_str().unwrap_or_default().to_owned();
        by_id.entry(id).or_default().push(line);
    }
    by_id
}

async fn join<T>(what: &str, task: JoinHandle<T>) -> T {
    tokio::time::timeout(WAIT, task).await.unwrap_or_else(|_| panic!("{what} did not finish")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_under_load_fails_no_request() {
    const DRAIN: Duration = Duration::from_secs(1);
    const TIMEOUT: Duration = Duration::from_secs(4);
    let echo = Echo::start("echo").await;
    let mut gateway = Gateway::start(&config(echo.addr, None, "1s", "4s")).await;
    wait_ready(&gateway).await;
    let (public, admin) = (gateway.public, gateway.admin);
    let mut health = HealthClient::new(grpc_channel(admin).await);
    let mut watch = health.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status, ServingStatus::Serving as i32);

    // Steady load: 4 HTTP/1.1, 2 HTTP/2 and 2 gRPC clients, plus a 3 s stream.
    let mut loops = Vec::new();
    for i in 0..8 {
        let progress = Arc::new(AtomicU64::new(0));
        let p = Arc::clone(&progress);
        let task = match i {
            0..4 => tokio::spawn(http1_loop(format!("h1-{i}"), public, p)),
            4..6 => tokio::spawn(http2_loop(format!("h2-{i}"), public, p)),
            _ => tokio::spawn(grpc_loop(format!("grpc-{i}"), public, p)),
        };
        loops.push((progress, task));
    }
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let stream = tokio::spawn(long_stream(public, "long-stream", 30, 100, started_tx));
    tokio::time::timeout(WAIT, started_rx).await.expect("the stream's first message").unwrap();
    let deadline = Instant::now() + WAIT;
    while loops.iter().any(|(progress, _)| progress.load(Ordering::Relaxed) < 3) {
        assert!(Instant::now() < deadline, "the clients did not get going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before: Vec<u64> = loops.iter().map(|(p, _)| p.load(Ordering::Relaxed)).collect();

    let signalled = Instant::now();
    gateway.signal(Signal::Term).unwrap();

    // Readiness is 503 at once, on HTTP and gRPC alike.
    let first = get(admin, "/readyz").await;
    let flipped = poll_until(admin, "/readyz", READINESS_FLIP, |r| r.status == 503).await;
    let flipped = flipped.unwrap_or_else(|r| panic!("/readyz still {} {READINESS_FLIP:?} after SIGTERM", r.status));
    assert_eq!(flipped.text(), "not ready: draining\n");
    let serving = health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner().status;
    assert_eq!(serving, ServingStatus::NotServing as i32);
    let watched = tokio::time::timeout(WAIT, watch.message()).await.unwrap().unwrap().map(|m| m.status);
    assert_eq!(watched, Some(ServingStatus::NotServing as i32), "Watch sees draining");
    drop((health, watch));
    let readyz = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(status) = try_readyz(admin).await {
            seen.push(status);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen
    });

    let status = gateway.wait_exit(DRAIN + TIMEOUT + EXIT_SLACK).await;
    let exited_after = signalled.elapsed();
    let status = status.unwrap_or_else(|| panic!("still running {:?} after SIGTERM", DRAIN + TIMEOUT + EXIT_SLACK));
    assert!(gateway.output_closed(WAIT).await);
    let (messages, stream_end) = join("the long stream", stream).await;
    let stream_done = Instant::now();
    let mut reports = Vec::new();
    for (_, task) in loops {
        reports.push(join("a client loop", task).await);
    }
    let readyz = join("the readiness poller", readyz).await;
    let access = access_by_id(&gateway);

    // The whole story first, so a failure shows everything.
    let mut failures = Vec::new();
    let mut dropped_unread = 0;
    for (report, before) in reports.iter().zip(&before) {
        let after = report.answered.len() as u64 - before;
        eprintln!(
            "{}: {} answered ({after} after SIGTERM), last {:?} after SIGTERM, refused {:?} after SIGTERM, \
             connection-close seen: {}, unanswered: {:?}",
            report.name,
            report.answered.len(),
            report.last_answer.map(|t| t.saturating_duration_since(signalled)),
            report.refused_at.map(|t| t.saturating_duration_since(signalled)),
            report.saw_connection_close,
            report.unanswered.iter().map(|u| u.describe(signalled)).collect::<Vec<_>>(),
        );
        failures.extend(report.failures.iter().map(|f| format!("{}: {f}", report.name)));
        for unanswered in &report.unanswered {
            match unanswered.judge(&access, signalled, DRAIN) {
                Ok(()) => dropped_unread += 1,
                Err(failure) => failures.push(failure),
            }
        }
        match report.refused_at {
            None => failures.push(format!("{}: never saw a refused connection", report.name)),
            Some(at) if at < signalled + DRAIN => failures.push(format!(
                "{}: a new connection was refused {:?} after SIGTERM, within the drain delay",
                report.name,
                at - signalled
            )),
            Some(_) => {}
        }
        if report.last_answer.is_none_or(|t| t < signalled + DRAIN * 9 / 10) {
            failures.push(format!("{}: not served through the drain delay", report.name));
        }
        for id in &report.answered {
            match access.get(id).map(Vec::as_slice) {
                Some([line]) if line["status"] == 200 && line.get("error_type").is_none() => {}
                other => failures.push(format!("{id}: answered 200, but its access lines are {other:?}")),
            }
        }
    }
    eprintln!(
        "first /readyz after SIGTERM: {}; exit {status} {exited_after:?} after SIGTERM; readyz polls {readyz:?}; stream: {} messages, {stream_end:?}, \
         done {:?} after SIGTERM; {dropped_unread} requests sent on connections closed before they were read",
        first.status,
        messages.len(),
        stream_done.saturating_duration_since(signalled),
    );
    assert!(failures.is_empty(), "{} failures:\n  {}", failures.len(), failures.join("\n  "));

    assert_eq!(status.code(), Some(0), "exit status");
    assert!(exited_after >= DRAIN, "exited {exited_after:?} after SIGTERM, before the drain delay");
    assert!(exited_after <= DRAIN + TIMEOUT + EXIT_SLACK, "exited {exited_after:?} after SIGTERM");
    assert!(readyz.iter().all(|s| *s == 503), "/readyz while draining: {readyz:?}");
    assert!(stream_end.is_ok(), "the stream ended with {stream_end:?}");
    let indexes: Vec<u32> = messages.iter().map(|m| m.index).collect();
    assert_eq!(indexes, (0..30).collect::<Vec<_>>(), "the stream's messages");
    let line = access.get("long-stream").map(Vec::as_slice);
    assert!(
        matches!(line, Some([l]) if l["grpc_code"] == "OK" && l.get("error_type").is_none()),
        "the stream's access line: {line:?}"
    );
}

#[tokio::test]
async fn after_the_drain_delay_the_listener_closes_and_in_flight_requests_finish() {
    const DRAIN: Duration = Duration::from_millis(500);
    let echo = Echo::start("echo").await;
    let mut gateway = Gateway::start(&config(echo.addr, None, "500ms", "5s")).await;
    wait_ready(&gateway).await;
    let public = gateway.public;
    let io = TokioIo::new(TcpStream::connect(public).await.unwrap());
    let (mut h1_sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io).await.unwrap();
    tokio::spawn(conn);
    let io = TokioIo::new(TcpStream::connect(public).await.unwrap());
    let (mut h2_sender, conn) =
        hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(conn);
    let h1_request = |path: &str| Request::get(path).header(header::HOST, "gatehouse.test").body(Empty::new()).unwrap();
    let h2_request = |path: &str| Request::get(format!("http://{public}{path}")).body(Empty::new()).unwrap();
    // Both connections work before the signal.
    assert_eq!(h1_sender.send_request(h1_request("/echo/status/200")).await.unwrap().status(), 200);
    assert_eq!(h2_sender.send_request(h2_request("/echo/status/200")).await.unwrap().status(), 200);

    let signalled = Instant::now();
    gateway.signal(Signal::Term).unwrap();
    let flipped = poll_until(gateway.admin, "/readyz", READINESS_FLIP, |r| r.status == 503).await;
    assert!(flipped.is_ok(), "/readyz still 200 {READINESS_FLIP:?} after SIGTERM");
    // Still served during the drain delay, on old and new connections.
    let r = get(public, "/echo/status/200").await;
    assert_eq!(r.status, 200, "a new connection during the drain delay");
    // Requests in flight across the end of the drain delay.
    let h1_slow = tokio::spawn(h1_sender.send_request(h1_request("/echo/delay/1500")));
    let h2_slow = tokio::spawn(h2_sender.send_request(h2_request("/echo/delay/1500")));
    assert!(signalled.elapsed() < DRAIN, "too slow to send the in-flight requests within the drain delay");

    // Once the drain delay is over, new connections are refused.
    let mut failures = Vec::new();
    let refused = tokio::time::timeout(DRAIN * 3, async {
        loop {
            match TcpStream::connect(public).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Instant::now(),
                _ => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
    })
    .await;
    match refused {
        Err(_) => failures.push(format!(
            "new connections were still accepted (by the kernel) {:?} after SIGTERM, with a {DRAIN:?} drain delay",
            signalled.elapsed()
        )),
        Ok(at) if at - signalled < DRAIN => {
            failures
                .push(format!("new connections refused {:?} after SIGTERM, within the drain delay", at - signalled));
        }
        Ok(_) => {}
    }

    // In-flight requests finish: HTTP/1.1 with `Connection: close`, HTTP/2
    // after a GOAWAY that stops new streams on that connection.
    let response = join("the in-flight HTTP/1.1 request", h1_slow).await.unwrap();
    assert_eq!(response.status(), 200);
    let connection = response.headers().get(header::CONNECTION).cloned();
    if connection.as_ref().is_none_or(|v| v != "close") {
        failures.push(format!("HTTP/1.1 response in flight at the end of the drain delay: connection: {connection:?}"));
    }
    response.into_body().collect().await.unwrap();
    let response = join("the in-flight HTTP/2 request", h2_slow).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    let finished = Instant::now();
    let after_goaway = h2_sender.send_request(h2_request("/echo/status/200")).await;
    if let Ok(response) = &after_goaway {
        failures.push(format!("a new stream on the HTTP/2 connection was served after the drain delay: {response:?}"));
    }

    // The gateway exits 0 as soon as they are done, not at the timeout.
    let status = gateway.wait_exit(WAIT).await.expect("gatehouse exits");
    let exited = Instant::now();
    if status.code() != Some(0) {
        failures.push(format!("exit status {status}"));
    }
    if exited - finished > Duration::from_millis(2500) {
        failures.push(format!("exited {:?} after the last in-flight request finished", exited - finished));
    }
    assert!(gateway.output_closed(WAIT).await);
    let lines = gateway.access_lines();
    let slow: Vec<&Value> = lines.iter().filter(|l| l["path"] == "/echo/delay/1500").collect();
    if slow.len() != 2 || !slow.iter().all(|l| l["status"] == 200 && l.get("error_type").is_none()) {
        failures.push(format!("access lines of the in-flight requests: {slow:#?}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let echo = Echo::start("echo").await;

    // During the drain delay: SIGINT drains like SIGTERM, then SIGTERM.
    let mut gateway = Gateway::start(&config(echo.addr, None, "30s", "30s")).await;
    wait_ready(&gateway).await;
    gateway.signal(Signal::Int).unwrap();
    let flipped = poll_until(gateway.admin, "/readyz", READINESS_FLIP, |r| r.status == 503).await;
    assert!(flipped.is_ok(), "SIGINT drains: /readyz still 200 {READINESS_FLIP:?} after it");
    assert_eq!(get(gateway.public, "/echo/status/200").await.status, 200, "still serving during the drain delay");
    let second = Instant::now();
    gateway.signal(Signal::Term).unwrap();
    let status = gateway.wait_exit(Duration::from_secs(2)).await;
    let status = status.unwrap_or_else(|| panic!("still running 2 s after the second signal"));
    assert_eq!(status.code(), Some(130), "exit status after a second signal: {status}");
    assert!(second.elapsed() < Duration::from_secs(1), "exited {:?} after the second signal", second.elapsed());

    // While waiting for in-flight requests: SIGTERM twice.
    let hold = SilentUpstream::start().await;
    let mut gateway = Gateway::start(&config(echo.addr, Some(hold.addr), "100ms", "30s")).await;
    let public = gateway.public;
    let in_flight = tokio::spawn(async move {
        let client = gatehouse_test_support::http1_client();
        let request = Request::get(format!("http://{public}/hold/forever"));
        let _ = client.request(request.body(gatehouse_test_support::empty()).unwrap()).await;
    });
    assert!(hold.wait_for_requests(1, WAIT).await, "the held request reached the upstream");
    gateway.signal(Signal::Term).unwrap();
    // Nothing a client can see marks the end of the drain delay while a
    // request is held (the listener closing is tested on its own), so wait
    // well past it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(gateway.wait_exit(Duration::ZERO).await.is_none(), "exited with a request in flight");
    let second = Instant::now();
    gateway.signal(Signal::Term).unwrap();
    let status = gateway.wait_exit(Duration::from_secs(2)).await;
    let status = status.unwrap_or_else(|| panic!("still running 2 s after the second signal"));
    assert_eq!(status.code(), Some(130), "exit status after a second signal: {status}");
    assert!(second.elapsed() < Duration::from_secs(1), "exited {:?} after the second signal", second.elapsed());
    in_flight.abort();
}

#[tokio::test]
async fn requests_in_flight_during_the_drain_still_time_out_on_their_route() {
    const ROUTE_TIMEOUT: Duration = Duration::from_millis(1500);
    let echo = Echo::start("echo").await;
    let hold = SilentUpstream::start().await;
    let config = config(echo.addr, Some(hold.addr), "300ms", "20s")
        .replace("upstream: hold\n    timeout: 60s", "upstream: hold\n    timeout: 1500ms");
    let mut gateway = Gateway::start(&config).await;
    let public = gateway.public;

    // HTTP/1.1 (the connection's watchdog keeps the deadline, and keeps it
    // while the connection closes) and HTTP/2 (a timer per stream).
    let held = |client: gatehouse_test_support::Client, id: &'static str| {
        let request = Request::get(format!("http://{public}/hold/forever")).header("x-request-id", id);
        let sent = Instant::now();
        tokio::spawn(async move {
            let response = client.request(request.body(gatehouse_test_support::empty()).unwrap()).await;
            (response.map(|r| r.status().as_u16()), sent.elapsed())
        })
    };
    let held_h1 = held(gatehouse_test_support::http1_client(), "drain-h1");
    let held_h2 = held(gatehouse_test_support::http2_client(), "drain-h2");
    assert!(hold.wait_for_requests(2, WAIT).await, "the held requests reached the upstream");
    let signalled = Instant::now();
    gateway.signal(Signal::Term).unwrap();

    for (what, task) in [("HTTP/1.1", held_h1), ("HTTP/2", held_h2)] {
        let (status, elapsed) = join(what, task).await;
        assert_eq!(status.ok(), Some(504), "{what}: the held request during the drain");
        assert!(
            elapsed >= ROUTE_TIMEOUT && elapsed < ROUTE_TIMEOUT + Duration::from_secs(1),
            "{what}: answered {elapsed:?} after it was sent, route timeout {ROUTE_TIMEOUT:?}"
        );
    }
    // Nothing left in flight: the process exits long before the shutdown timeout.
    let status = gateway.wait_exit(WAIT).await.expect("exited");
    assert_eq!(status.code(), Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(5), "exited {:?} after SIGTERM", signalled.elapsed());
    let access = access_by_id(&gateway);
    for id in ["drain-h1", "drain-h2"] {
        let lines = access.get(id).map(Vec::as_slice).unwrap_or_default();
        assert!(
            matches!(lines, [line] if line["status"] == 504 && line["error_type"] == "upstream_timeout"),
            "{id}: {lines:?}"
        );
    }
}

#[tokio::test]
async fn in_flight_requests_outlasting_the_shutdown_timeout_are_cut_and_logged() {
    const DRAIN: Duration = Duration::from_millis(300);
    const TIMEOUT: Duration = Duration::from_secs(1);
    let echo = Echo::start("echo").await;
    let hold = SilentUpstream::start().await;
    let mut gateway = Gateway::start(&config(echo.addr, Some(hold.addr), "300ms", "1s")).await;
    let public = gateway.public;

    // Before the response head: two requests the upstream never answers.
    let h1 = gatehouse_test_support::http1_client();
    let h2 = gatehouse_test_support::http2_client();
    let held = |client: gatehouse_test_support::Client, id: &'static str| {
        let request = Request::get(format!("http://{public}/hold/forever")).header("x-request-id", id);
        tokio::spawn(async move { client.request(request.body(gatehouse_test_support::empty()).unwrap()).await })
    };
    let held_h1 = held(h1.clone(), "cut-h1-held");
    let held_h2 = held(h2, "cut-h2-held");
    assert!(hold.wait_for_requests(2, WAIT).await, "the held requests reached the upstream");
    // Mid-body: a slow HTTP/1.1 stream and a slow gRPC server stream.
    let request = Request::get(format!("http://{public}/echo/stream/100?interval_ms=100"))
        .header("x-request-id", "cut-h1-stream")
        .body(gatehouse_test_support::empty())
        .unwrap();
    let response = h1.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut h1_body = response.into_body();
    let first = h1_body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    let h1_stream = tokio::spawn(async move { h1_body.collect().await.map(|c| c.to_bytes().len()) });
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let grpc_stream = tokio::spawn(long_stream(public, "cut-grpc-stream", 100, 100, started_tx));
    tokio::time::timeout(WAIT, started_rx).await.expect("the gRPC stream's first message").unwrap();

    let signalled = Instant::now();
    gateway.signal(Signal::Term).unwrap();
    let status = gateway.wait_exit(DRAIN + TIMEOUT + EXIT_SLACK).await;
    let exited_after = signalled.elapsed();
    let status = status.unwrap_or_else(|| panic!("still running {:?} after SIGTERM", DRAIN + TIMEOUT + EXIT_SLACK));
    assert!(gateway.output_closed(WAIT).await);

    // The clients saw their requests cut, not completed.
    let held_h1 = join("the held HTTP/1.1 request", held_h1).await;
    let held_h2 = join("the held HTTP/2 request", held_h2).await;
    let h1_stream = join("the HTTP/1.1 stream", h1_stream).await;
    let (messages, grpc_end) = join("the gRPC stream", grpc_stream).await;
    eprintln!(
        "exit {status} {exited_after:?} after SIGTERM; held h1: {held_h1:?}; held h2: {held_h2:?}; \
         h1 stream: {h1_stream:?}; gRPC stream: {} messages then {grpc_end:?}",
        messages.len()
    );
    assert!(held_h1.as_ref().map_or(true, |r| r.status().is_server_error()), "{held_h1:?}");
    assert!(held_h2.as_ref().map_or(true, |r| r.status().is_server_error()), "{held_h2:?}");
    assert!(h1_stream.is_err(), "the HTTP/1.1 stream was not cut: {h1_stream:?}");
    assert!(grpc_end.is_err() && messages.len() < 100, "the gRPC stream was not cut: {grpc_end:?}");

    // Every cut request has exactly one access line that says so.
    let access = access_by_id(&gateway);
    let mut failures = Vec::new();
    for id in ["cut-h1-held", "cut-h2-held", "cut-h1-stream", "cut-grpc-stream"] {
        match access.get(id).map(Vec::as_slice) {
            Some([line]) => {
                if line["error_type"].as_str().is_none_or(str::is_empty) {
                    failures.push(format!("{id}: no error_type: {line}"));
                }
                if id.contains("grpc") && (line["grpc_code"] == "OK" || line.get("grpc_code").is_none()) {
                    failures.push(format!("{id}: a cut gRPC call must not be OK: {line}"));
                }
            }
            other => failures.push(format!("{id}: access lines {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(status.code(), Some(0), "exit status after cutting in-flight requests");
    assert!(exited_after <= DRAIN + TIMEOUT + EXIT_SLACK, "exited {exited_after:?} after SIGTERM");
    assert!(exited_after >= DRAIN + TIMEOUT, "exited {exited_after:?} after SIGTERM, before the shutdown timeout");
}

#[tokio::test]
async fn an_idle_connection_whose_buffers_were_released_serves_again_and_closes_at_shutdown() {
    let echo = Echo::start("echo").await;
    let mut gateway = Gateway::start(&config(echo.addr, None, "0s", "5s")).await;
    wait_ready(&gateway).await;
    let io = TokioIo::new(TcpStream::connect(gateway.public).await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io).await.unwrap();
    let conn = tokio::spawn(conn);
    let request =
        || Request::get("/echo/status/200").header(header::HOST, "gatehouse.test").body(Empty::new()).unwrap();
    assert_eq!(sender.send_request(request()).await.unwrap().status(), 200);
    // Idle past the one-second release, twice: each time the next request
    // on the same connection is served.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let response = sender.send_request(request()).await.expect("the idle connection still serves");
        assert_eq!(response.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Released and idle at the signal: closed, and the gateway exits at
    // once rather than at the shutdown timeout.
    let signalled = Instant::now();
    gateway.signal(Signal::Term).unwrap();
    let closed = tokio::time::timeout(WAIT, conn).await;
    assert!(closed.is_ok(), "the idle connection was still open {WAIT:?} after SIGTERM");
    let status = gateway.wait_exit(WAIT).await.expect("gatehouse exits");
    assert_eq!(status.code(), Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(3), "exited {:?} after SIGTERM", signalled.elapsed());
    assert_eq!(gateway.access_lines().iter().filter(|l| l["status"] == 200).count(), 3);
}
