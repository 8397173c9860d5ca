//! `echo.v1.Echo` through a tonic client against a real server on port 0.

use std::net::SocketAddr;

use gatehouse_proto::echo::v1::echo_client::EchoClient;
use gatehouse_proto::echo::v1::{EchoRequest, EchoResponse};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// A server on port 0 that stops when dropped.
struct Server {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start(name: &str) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    tokio::spawn(gatehouse_echo::serve(listener, name.to_owned(), shutdown));
    Server { addr, _stop: stop }
}

async fn client(server: &Server) -> EchoClient<Channel> {
    let channel =
        Channel::from_shared(format!("http://{}", server.addr)).expect("valid URI").connect().await.expect("connect");
    EchoClient::new(channel)
}

fn with_trace<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("x-echo-trace", "t-1".parse().expect("metadata value"));
    metadata.insert("x-other", "dropped".parse().expect("metadata value"));
    request
}

fn echo(message: &str) -> EchoRequest {
    EchoRequest { message: message.to_owned(), ..EchoRequest::default() }
}

fn reply(message: &str, index: u32) -> EchoResponse {
    EchoResponse { message: message.to_owned(), index, payload: Vec::new() }
}

fn value<'m>(metadata: &'m MetadataMap, key: &str) -> Option<&'m str> {
    metadata.get(key).map(|v| v.to_str().expect("ASCII metadata"))
}

fn assert_echoed(metadata: &MetadataMap, name: &str) {
    assert_eq!(value(metadata, "x-echo-trace"), Some("t-1"));
    assert_eq!(value(metadata, "x-echo-name"), Some(name));
    assert_eq!(value(metadata, "x-other"), None);
}

fn assert_status(status: &Status, code: Code, name: &str) {
    assert_eq!(status.code(), code);
    assert_eq!(status.message(), format!("requested status {}", code as i32));
    assert_echoed(status.metadata(), name);
}

#[tokio::test]
async fn unary_echoes_message_payload_and_metadata() {
    let server = start("grpc-a").await;
    let mut client = client(&server).await;
    let request = EchoRequest { payload: vec![1, 2, 3], ..echo("hello") };
    let response = client.unary(with_trace(request)).await.expect("OK");
    assert_echoed(response.metadata(), "grpc-a");
    let expected = EchoResponse { payload: vec![1, 2, 3], ..reply("hello", 0) };
    assert_eq!(response.into_inner(), expected);
}

#[tokio::test]
async fn unary_fails_with_the_requested_status() {
    let server = start("grpc-b").await;
    let mut client = client(&server).await;
    let request = EchoRequest { status_code: Code::Unavailable as i32, ..echo("x") };
    let status = client.unary(with_trace(request)).await.expect_err("error");
    assert_status(&status, Code::Unavailable, "grpc-b");

    let request = EchoRequest { status_code: 99, ..echo("x") };
    let status = client.unary(request).await.expect_err("error");
    assert_eq!(status.code(), Code::Unknown);
    assert_eq!(status.message(), "requested status 99");
}

#[tokio::test]
async fn server_stream_sends_count_messages() {
    let server = start("grpc-c").await;
    let mut client = client(&server).await;
    let request = EchoRequest { count: 3, delay_ms: 5, ..echo("hi") };
    let response = client.server_stream(with_trace(request)).await.expect("OK");
    assert_echoed(response.metadata(), "grpc-c");
    let mut stream = response.into_inner();
    let mut got = Vec::new();
    while let Some(message) = stream.message().await.expect("message") {
        got.push(message);
    }
    assert_eq!(got, [reply("hi-0", 0), reply("hi-1", 1), reply("hi-2", 2)]);

    let request = EchoRequest { count: 0, ..echo("none") };
    let mut stream = client.server_stream(request).await.expect("OK").into_inner();
    assert_eq!(stream.message().await.expect("end"), None);
}

#[tokio::test]
async fn server_stream_sends_messages_then_the_status() {
    let server = start("grpc-d").await;
    let mut client = client(&server).await;
    let request = EchoRequest { count: 2, status_code: Code::FailedPrecondition as i32, ..echo("m") };
    let mut stream = client.server_stream(with_trace(request)).await.expect("headers").into_inner();
    assert_eq!(stream.message().await.expect("first"), Some(reply("m-0", 0)));
    assert_eq!(stream.message().await.expect("second"), Some(reply("m-1", 1)));
    let status = stream.message().await.expect_err("status in trailers");
    assert_status(&status, Code::FailedPrecondition, "grpc-d");
}

#[tokio::test]
async fn client_stream_joins_the_messages() {
    let server = start("grpc-e").await;
    let mut client = client(&server).await;
    let requests = tokio_stream::iter([echo("a"), echo("b"), echo("c")]);
    let response = client.client_stream(with_trace(requests)).await.expect("OK");
    assert_echoed(response.metadata(), "grpc-e");
    assert_eq!(response.into_inner(), reply("a,b,c", 3));

    let failing = EchoRequest { status_code: Code::Aborted as i32, ..echo("b") };
    let requests = tokio_stream::iter([echo("a"), failing, echo("c")]);
    let status = client.client_stream(with_trace(requests)).await.expect_err("error");
    assert_status(&status, Code::Aborted, "grpc-e");
}

#[tokio::test]
async fn bidi_stream_answers_each_message_as_it_arrives() {
    let server = start("grpc-f").await;
    let mut client = client(&server).await;
    let (requests, outgoing) = mpsc::channel(4);
    let response = client.bidi_stream(with_trace(ReceiverStream::new(outgoing))).await.expect("OK");
    assert_echoed(response.metadata(), "grpc-f");
    let mut replies = response.into_inner();

    // One request at a time: each reply must come before the next request.
    for (index, message) in ["x", "y"].into_iter().enumerate() {
        requests.send(echo(message)).await.expect("send");
        let expected = reply(message, u32::try_from(index).expect("small index"));
        assert_eq!(replies.message().await.expect("reply"), Some(expected));
    }
    let failing = EchoRequest { status_code: Code::NotFound as i32, ..echo("z") };
    requests.send(failing).await.expect("send");
    let status = replies.message().await.expect_err("status");
    assert_status(&status, Code::NotFound, "grpc-f");
}

#[tokio::test]
async fn bidi_stream_ends_when_the_client_does() {
    let server = start("grpc-g").await;
    let mut client = client(&server).await;
    let requests = tokio_stream::iter([echo("only")]);
    let mut replies = client.bidi_stream(requests).await.expect("OK").into_inner();
    assert_eq!(replies.message().await.expect("reply"), Some(reply("only", 0)));
    assert_eq!(replies.message().await.expect("end"), None);
}
