//! A tonic client through the gateway: all four gRPC call types, metadata,
//! and upstream status codes arriving unchanged (trailers-only and at the end
//! of a stream).

#![allow(clippy::unwrap_used)]

use gatehouse_proto::echo::v1::echo_client::EchoClient;
use gatehouse_proto::echo::v1::{EchoRequest, EchoResponse};
use gatehouse_test_support::{Echo, Gateway};
use tonic::transport::Channel;
use tonic::{Code, Request};

struct Setup {
    client: EchoClient<Channel>,
    _gateway: Gateway,
    _echo: Echo,
}

async fn setup() -> Setup {
    let echo = Echo::start("echo").await;
    let config = format!(
        r#"
listeners:
  public: 127.0.0.1:0
  admin: 127.0.0.1:0
upstreams:
  echo-grpc:
    protocol: grpc
    endpoints: ["{echo}"]
routes:
  - name: echo-grpc
    match: {{ grpc_service: echo.v1.Echo }}
    upstream: echo-grpc
"#,
        echo = echo.addr,
    );
    let gateway = Gateway::start(&config).await;
    let channel = Channel::from_shared(format!("http://{}", gateway.public)).unwrap().connect().await.unwrap();
    let client = EchoClient::new(channel);
    Setup { client, _gateway: gateway, _echo: echo }
}

fn message(text: &str) -> EchoRequest {
    EchoRequest { message: text.to_owned(), ..EchoRequest::default() }
}

fn with_foo<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("x-echo-foo", "bar".parse().unwrap());
    request
}

#[tokio::test]
async fn unary() {
    let mut s = setup().await;
    let request =
        EchoRequest { message: "hello".to_owned(), payload: b"\x00\x01payload".to_vec(), ..EchoRequest::default() };
    let response = s.client.unary(with_foo(request)).await.unwrap();
    assert_eq!(response.metadata().get("x-echo-foo").unwrap(), "bar");
    assert_eq!(response.metadata().get("x-echo-name").unwrap(), "echo");
    assert_eq!(
        response.into_inner(),
        EchoResponse { message: "hello".to_owned(), index: 0, payload: b"\x00\x01payload".to_vec() }
    );
}

#[tokio::test]
async fn server_stream() {
    let mut s = setup().await;
    let request = EchoRequest { message: "tick".to_owned(), count: 4, delay_ms: 20, ..EchoRequest::default() };
    let response = s.client.server_stream(with_foo(request)).await.unwrap();
    assert_eq!(response.metadata().get("x-echo-foo").unwrap(), "bar");
    let mut stream = response.into_inner();
    let mut got = Vec::new();
    while let Some(reply) = stream.message().await.unwrap() {
        got.push((reply.message, reply.index));
    }
    let expected: Vec<(String, u32)> = (0..4).map(|i| (format!("tick-{i}"), i)).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn client_stream() {
    let mut s = setup().await;
    let requests = tokio_stream::iter(["a", "b", "c"].map(message));
    let response = s.client.client_stream(with_foo(requests)).await.unwrap();
    assert_eq!(response.metadata().get("x-echo-foo").unwrap(), "bar");
    let reply = response.into_inner();
    assert_eq!(reply.message, "a,b,c");
    assert_eq!(reply.index, 3);
}

#[tokio::test]
async fn bidi_stream_answers_each_message_before_the_next_is_sent() {
    let mut s = setup().await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let requests = tokio_stream::wrappers::ReceiverStream::new(rx);
    tx.send(message("one")).await.unwrap();
    let response = s.client.bidi_stream(with_foo(requests)).await.unwrap();
    assert_eq!(response.metadata().get("x-echo-foo").unwrap(), "bar");
    let mut replies = response.into_inner();
    // Each reply must come back while the request stream is still open: a
    // gateway that buffered either direction would hang here.
    for (index, text) in ["one", "two", "three"].into_iter().enumerate() {
        if index > 0 {
            tx.send(message(text)).await.unwrap();
        }
        let reply = replies.message().await.unwrap().expect("a reply per request");
        assert_eq!((reply.message.as_str(), reply.index), (text, index as u32));
    }
    drop(tx);
    assert_eq!(replies.message().await.unwrap(), None);
}

#[tokio::test]
async fn unary_status_codes_arrive_unchanged() {
    let mut s = setup().await;
    for code in [Code::NotFound, Code::Unavailable, Code::DeadlineExceeded] {
        let request = EchoRequest { status_code: code as i32, ..message("fail") };
        let status = s.client.unary(with_foo(request)).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert_eq!(status.message(), format!("requested status {}", code as i32));
        assert_eq!(status.metadata().get("x-echo-foo").unwrap(), "bar", "{status:?}");
    }
}

#[tokio::test]
async fn stream_end_status_codes_arrive_unchanged() {
    let mut s = setup().await;
    for code in [Code::Ok, Code::NotFound, Code::Unavailable, Code::DeadlineExceeded] {
        let request = EchoRequest { count: 2, status_code: code as i32, ..message("s") };
        let mut stream = s.client.server_stream(with_foo(request)).await.unwrap().into_inner();
        assert_eq!(stream.message().await.unwrap().unwrap().message, "s-0");
        assert_eq!(stream.message().await.unwrap().unwrap().message, "s-1");
        match stream.message().await {
            Ok(None) => assert_eq!(code, Code::Ok),
            Ok(Some(extra)) => panic!("unexpected third message {extra:?}"),
            Err(status) => {
                assert_eq!(status.code(), code, "{status:?}");
                assert_eq!(status.message(), format!("requested status {}", code as i32));
            }
        }
    }
}
