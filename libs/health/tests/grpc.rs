//! `grpc.health.v1.Health` over a real HTTP/2 connection, on port 0.

use std::net::SocketAddr;
use std::time::Duration;

use gatehouse_health::Health;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Server};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

const SERVING: i32 = ServingStatus::Serving as i32;
const NOT_SERVING: i32 = ServingStatus::NotServing as i32;
const SERVICE_UNKNOWN: i32 = ServingStatus::ServiceUnknown as i32;

async fn start(health: &Health) -> (HealthClient<Channel>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr: SocketAddr = listener.local_addr().expect("bound address");
    let server = Server::builder()
        .add_service(gatehouse_health::grpc_service(health))
        .serve_with_incoming(TcpListenerStream::new(listener));
    let task = tokio::spawn(async move { server.await.expect("server runs") });
    // The listener is bound already, so connecting cannot race the server.
    let channel = Endpoint::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect");
    (HealthClient::new(channel), task)
}

fn request(service: &str) -> HealthCheckRequest {
    HealthCheckRequest { service: service.to_owned() }
}

async fn check(client: &mut HealthClient<Channel>, service: &str) -> Result<i32, Code> {
    client.check(request(service)).await.map(|r| r.into_inner().status).map_err(|s| s.code())
}

#[tokio::test]
async fn check_follows_readiness() {
    let health = Health::new();
    let (mut client, server) = start(&health).await;

    assert_eq!(check(&mut client, "").await, Ok(NOT_SERVING));
    health.set_config_loaded(true);
    assert_eq!(check(&mut client, "").await, Ok(SERVING));
    assert_eq!(check(&mut client, "gatehouse").await, Ok(SERVING));
    assert_eq!(check(&mut client, "echo.v1.Echo").await, Err(Code::NotFound));

    let upstream = health.register("upstream:echo", true);
    assert_eq!(check(&mut client, "").await, Ok(NOT_SERVING));
    upstream.report(Ok(()), Duration::from_millis(1));
    assert_eq!(check(&mut client, "").await, Ok(SERVING));

    // No yield between the two: the flip must already be visible.
    health.start_draining();
    assert_eq!(check(&mut client, "").await, Ok(NOT_SERVING));
    assert_eq!(check(&mut client, "gatehouse").await, Ok(NOT_SERVING));
    server.abort();
}

async fn next(stream: &mut tonic::Streaming<HealthCheckResponse>) -> i32 {
    let item = tokio::time::timeout(Duration::from_secs(5), stream.message()).await.expect("an update in time");
    item.expect("stream ok").expect("stream open").status
}

#[tokio::test]
async fn watch_streams_the_change_when_draining_starts() {
    let health = Health::new();
    health.set_config_loaded(true);
    let (mut client, server) = start(&health).await;

    let mut stream = client.watch(request("")).await.expect("watch accepted").into_inner();
    assert_eq!(next(&mut stream).await, SERVING);

    health.start_draining();
    assert_eq!(next(&mut stream).await, NOT_SERVING);

    // Draining is final, so the stream ends and cannot hold shutdown open.
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message()).await.expect("ends in time");
    assert_eq!(end.map_err(|s| s.code()), Ok(None));

    // A watch begun while draining gets the final word and ends too.
    let mut late = client.watch(request("gatehouse")).await.expect("watch accepted").into_inner();
    assert_eq!(next(&mut late).await, NOT_SERVING);
    let end = tokio::time::timeout(Duration::from_secs(5), late.message()).await.expect("ends in time");
    assert_eq!(end.map_err(|s| s.code()), Ok(None));

    server.abort();
}

#[tokio::test]
async fn watch_of_an_unknown_service_stays_open_until_draining() {
    let health = Health::new();
    let (mut client, server) = start(&health).await;
    let mut unknown = client.watch(request("no.such.Service")).await.expect("watch accepted").into_inner();
    assert_eq!(next(&mut unknown).await, SERVICE_UNKNOWN);
    let open = tokio::time::timeout(Duration::from_millis(50), unknown.message()).await;
    assert!(open.is_err(), "still open, nothing more sent: {open:?}");
    health.start_draining();
    let end = tokio::time::timeout(Duration::from_secs(5), unknown.message()).await.expect("ends in time");
    assert_eq!(end.map_err(|s| s.code()), Ok(None));
    server.abort();
}
