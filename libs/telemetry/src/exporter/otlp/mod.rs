//! The `otlp` exporter: every `OTEL_METRIC_EXPORT_INTERVAL`, the current
//! cumulative values go to the collector as one OTLP/HTTP protobuf POST.
//! A failed push is logged and the next one carries everything again
//! (values are cumulative), so nothing is queued.

mod proto;
mod snapshot;

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message;

use super::store::Store;

use super::env::OtlpSettings;

/// Pushes snapshots of one store to one collector.
#[derive(Debug)]
pub(crate) struct Pusher {
    store: Arc<Store>,
    settings: OtlpSettings,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The collector could not be reached or the request broke.
    #[error("sending to {endpoint}: {source}")]
    Send {
        /// The URL pushed to.
        endpoint: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No answer within the timeout.
    #[error("no answer from {0} within the timeout")]
    Timeout(String),
    /// The collector answered with an error status.
    #[error("{endpoint} answered {status}")]
    Status {
        /// The URL pushed to.
        endpoint: String,
        /// Its status.
        status: http::StatusCode,
    },
}

impl Pusher {
    pub(crate) fn new(store: Arc<Store>, settings: OtlpSettings) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { store, settings, client }
    }

    pub(crate) fn interval(&self) -> std::time::Duration {
        self.settings.interval
    }

    /// The request body of a push: resource, scope and every metric.
    pub(crate) fn encode(&self, now: SystemTime) -> Vec<u8> {
        encode(&self.store, &self.settings.resource, now)
    }

    /// Sends one snapshot now.
    pub(crate) async fn push(&self) -> Result<(), PushError> {
        let endpoint = self.settings.endpoint.to_string();
        let mut req = Request::post(self.settings.endpoint.clone())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(self.encode(SystemTime::now()))))
            .map_err(|e| PushError::Send { endpoint: endpoint.clone(), source: e.into() })?;
        for (name, value) in &self.settings.headers {
            req.headers_mut().insert(name, value.clone());
        }
        let exchange = async {
            let res = self
                .client
                .request(req)
                .await
                .map_err(|e| PushError::Send { endpoint: endpoint.clone(), source: e.into() })?;
            let status = res.status();
            // Read the (small) answer so the connection goes back to the pool.
            let _ = res.into_body().collect().await;
            if status.is_success() { Ok(()) } else { Err(PushError::Status { endpoint: endpoint.clone(), status }) }
        };
        tokio::time::timeout(self.settings.timeout, exchange).await.map_err(|_| PushError::Timeout(endpoint.clone()))?
    }
}

pub(crate) fn encode(store: &Store, resource: &[(String, String)], now: SystemTime) -> Vec<u8> {
    let request = proto::ExportMetricsServiceRequest {
        resource_metrics: vec![proto::ResourceMetrics {
            resource: Some(proto::Resource { attributes: resource.iter().map(|(k, v)| proto::kv(k, v)).collect() }),
            scope_metrics: vec![proto::ScopeMetrics {
                scope: Some(proto::InstrumentationScope {
                    name: env!("CARGO_PKG_NAME").to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                }),
                metrics: snapshot::snapshot(store, now),
            }],
        }],
    };
    request.encode_to_vec()
}

#[cfg(test)]
mod tests;
