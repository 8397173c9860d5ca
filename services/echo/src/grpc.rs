//! The `echo.v1.Echo` gRPC service. Each call can be told to wait
//! (`delay_ms`) or to fail with a chosen code (`status_code`), and every
//! `x-echo-*` request metadata entry comes back on the response and on error
//! statuses, so tests can follow metadata through the gateway.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use futures_util::stream::{self, BoxStream, StreamExt};
use gatehouse_proto::echo::v1::echo_server::Echo;
use gatehouse_proto::echo::v1::{EchoRequest, EchoResponse};
use tonic::metadata::MetadataMap;
use tonic::{Code, Extensions, Request, Response, Status, Streaming};

use crate::NAME;

/// Prefix of the request metadata keys copied back onto the response.
const ECHOED_PREFIX: &str = "x-echo-";

type ReplyStream = BoxStream<'static, Result<EchoResponse, Status>>;

/// Implements `echo.v1.Echo`; see the proto's comments for the knobs.
pub(crate) struct EchoService {
    name: HeaderValue,
}

impl EchoService {
    pub(crate) fn new(name: HeaderValue) -> Self {
        Self { name }
    }

    /// The metadata every response and error status carries: the request's
    /// `x-echo-*` entries plus this server's name.
    fn reply_metadata(&self, request: &MetadataMap) -> MetadataMap {
        let mut headers = HeaderMap::new();
        for (key, value) in request.as_ref() {
            if key.as_str().starts_with(ECHOED_PREFIX) {
                headers.append(key.clone(), value.clone());
            }
        }
        // Overwrites a client-sent `x-echo-name`: the name must be ours.
        headers.insert(NAME, self.name.clone());
        MetadataMap::from_headers(headers)
    }
}

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let metadata = self.reply_metadata(request.metadata());
        let request = request.into_inner();
        pause(request.delay_ms).await;
        if let Some(status) = requested_status(request.status_code, &metadata) {
            return Err(status);
        }
        let reply = EchoResponse { message: request.message, index: 0, payload: request.payload };
        Ok(Response::from_parts(metadata, reply, Extensions::default()))
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(&self, request: Request<EchoRequest>) -> Result<Response<ReplyStream>, Status> {
        let metadata = self.reply_metadata(request.metadata());
        let EchoRequest { message, status_code, delay_ms, count, payload } = request.into_inner();
        // The messages come first and the requested status ends the stream,
        // so a client sees both the data and the error in the trailers.
        let failure = requested_status(status_code, &metadata);
        let replies = stream::iter(0..count).then(move |index| {
            let reply = EchoResponse { message: format!("{message}-{index}"), index, payload: payload.clone() };
            async move {
                pause(delay_ms).await;
                Ok(reply)
            }
        });
        let replies = replies.chain(stream::iter(failure.map(Err))).boxed();
        Ok(Response::from_parts(metadata, replies, Extensions::default()))
    }

    async fn client_stream(&self, request: Request<Streaming<EchoRequest>>) -> Result<Response<EchoResponse>, Status> {
        let metadata = self.reply_metadata(request.metadata());
        let mut incoming = request.into_inner();
        let mut messages = Vec::new();
        while let Some(request) = incoming.message().await? {
            pause(request.delay_ms).await;
            if let Some(status) = requested_status(request.status_code, &metadata) {
                return Err(status);
            }
            messages.push(request.message);
        }
        let reply = EchoResponse {
            index: u32::try_from(messages.len()).unwrap_or(u32::MAX),
            message: messages.join(","),
            payload: Vec::new(),
        };
        Ok(Response::from_parts(metadata, reply, Extensions::default()))
    }

    type BidiStreamStream = ReplyStream;

    async fn bidi_stream(&self, request: Request<Streaming<EchoRequest>>) -> Result<Response<ReplyStream>, Status> {
        let metadata = self.reply_metadata(request.metadata());
        let state = Bidi { incoming: request.into_inner(), index: 0, metadata: metadata.clone() };
        // `None` state: the stream has ended with an error and yields no more.
        let replies = stream::unfold(Some(state), |state| async move {
            let mut state = state?;
            let request = match state.incoming.message().await {
                Ok(Some(request)) => request,
                Ok(None) => return None,
                Err(status) => return Some((Err(status), None)),
            };
            pause(request.delay_ms).await;
            if let Some(status) = requested_status(request.status_code, &state.metadata) {
                return Some((Err(status), None));
            }
            let reply = EchoResponse { message: request.message, index: state.index, payload: request.payload };
            state.index = state.index.saturating_add(1);
            Some((Ok(reply), Some(state)))
        });
        Ok(Response::from_parts(metadata, replies.boxed(), Extensions::default()))
    }
}

/// A bidirectional call in progress.
struct Bidi {
    incoming: Streaming<EchoRequest>,
    index: u32,
    metadata: MetadataMap,
}

/// The status a request asked to end with, if any. Numbers outside gRPC's
/// code range become `Unknown`, which is what a real server would send.
fn requested_status(code: i32, metadata: &MetadataMap) -> Option<Status> {
    (code != 0)
        .then(|| Status::with_metadata(Code::from_i32(code), format!("requested status {code}"), metadata.clone()))
}

async fn pause(delay_ms: u32) {
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms.into())).await;
    }
}
