//! `grpc.health.v1.Health` answered straight from [`Health`].
//!
//! tonic-health's own `HealthReporter` keeps a second copy of the status
//! that a task would have to copy readiness into; until that task runs, a
//! `Check` right after draining starts could still say SERVING. Answering
//! from the readiness state itself (and its watch channel for `Watch`)
//! makes gRPC and `/readyz` agree at every instant. The generated server
//! and messages still come from tonic-health.

use std::pin::Pin;

use tokio_stream::wrappers::WatchStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health as HealthApi, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::state::Health;

/// The service names whose status is the process's readiness: `""` (the
/// whole server, as the gRPC health protocol defines it) and `gatehouse`.
pub const SERVICE_NAMES: [&str; 2] = ["", "gatehouse"];

/// The `grpc.health.v1.Health` server for the admin port, backed by
/// `health`: SERVING while ready, NOT_SERVING otherwise (including from the
/// moment draining starts).
///
/// Unknown service names get `NOT_FOUND` from `Check` and a single
/// `SERVICE_UNKNOWN` from `Watch`, as the protocol asks. Once draining
/// starts, every `Watch` ends (status OK), right after the NOT_SERVING
/// that draining causes; clients then treat the server as unavailable.
pub fn grpc_service(health: &Health) -> HealthServer<GrpcHealth> {
    HealthServer::new(GrpcHealth { health: health.clone() })
}

/// The implementation behind [`grpc_service`].
#[derive(Debug, Clone)]
pub struct GrpcHealth {
    health: Health,
}

/// The stream `Watch` answers with.
pub type WatchResponses = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse { status: status as i32 }
}

fn serving(ready: bool) -> ServingStatus {
    if ready { ServingStatus::Serving } else { ServingStatus::NotServing }
}

#[tonic::async_trait]
impl HealthApi for GrpcHealth {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        if !SERVICE_NAMES.contains(&request.get_ref().service.as_str()) {
            return Err(Status::not_found("service not registered"));
        }
        Ok(Response::new(response(serving(self.health.is_ready()))))
    }

    type WatchStream = WatchResponses;

    async fn watch(&self, request: Request<HealthCheckRequest>) -> Result<Response<WatchResponses>, Status> {
        let health = self.health.clone();
        let stream: WatchResponses = if SERVICE_NAMES.contains(&request.get_ref().service.as_str()) {
            // The first item is the current status, then one per change;
            // the sender only notifies on real changes, so no repeats.
            // Draining never reverts, so its NOT_SERVING is the last word:
            // the stream ends after it rather than holding the admin
            // server's graceful shutdown open until its timeout. `ready` is
            // tested too: a reader may see the old `true` just as draining
            // flips, and must not stop before the NOT_SERVING.
            let updates = WatchStream::new(self.health.subscribe())
                .take_while(move |ready| *ready || !health.is_draining())
                .map(|ready| Ok(response(serving(ready))));
            Box::pin(updates.chain(tokio_stream::once(Ok(response(ServingStatus::NotServing)))))
        } else {
            // The protocol keeps the call open, as the service may appear
            // later; here it never will, so it closes when draining starts.
            let unknown = tokio_stream::once(Ok(response(ServingStatus::ServiceUnknown)));
            let until_draining = futures_util::stream::once(health.draining()).filter_map(|()| None);
            Box::pin(unknown.chain(until_draining))
        };
        Ok(Response::new(stream))
    }
}
