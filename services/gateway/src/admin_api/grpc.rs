//! The admin API as the gRPC service `gatehouse.admin.v1.Admin`.

use gatehouse_proto::gatehouse::admin::v1 as pb;
use gatehouse_proto::gatehouse::admin::v1::admin_server::{Admin, AdminServer};
use gatehouse_store::{AuditEvent, KeyInfo, NewKey, StoreError};
use tonic::{Request, Response, Status};

use super::{AdminApi, AdminError};

/// The tonic service for the admin port.
pub fn service(api: AdminApi) -> AdminServer<GrpcAdmin> {
    AdminServer::new(GrpcAdmin { api })
}

/// The gRPC front end of [`AdminApi`].
#[derive(Debug, Clone)]
pub struct GrpcAdmin {
    api: AdminApi,
}

impl From<AdminError> for Status {
    fn from(e: AdminError) -> Self {
        match &e {
            AdminError::Unauthenticated => Status::unauthenticated(e.to_string()),
            AdminError::Forbidden => Status::permission_denied(e.to_string()),
            AdminError::TooLarge(_) => Status::resource_exhausted(e.to_string()),
            AdminError::Invalid(_) | AdminError::Store(StoreError::Validation { .. }) => {
                Status::invalid_argument(e.to_string())
            }
            AdminError::Store(StoreError::NotFound { .. }) => Status::not_found(e.to_string()),
            AdminError::Store(StoreError::Conflict(_)) => Status::already_exists(e.to_string()),
            AdminError::Store(StoreError::Unavailable { .. }) => Status::unavailable(e.to_string()),
            AdminError::Store(StoreError::Internal { .. }) => {
                tracing::warn!(error = %e, "admin request failed");
                Status::internal("internal error")
            }
        }
    }
}

fn authorization<T>(req: &Request<T>) -> Option<&str> {
    req.metadata().get("authorization").and_then(|v| v.to_str().ok())
}

fn key(k: &KeyInfo) -> pb::Key {
    pb::Key {
        id: k.id.clone(),
        principal: k.principal.clone(),
        scopes: k.scopes.clone(),
        created_at_ms: k.created_at,
        expires_at_ms: k.expires_at.unwrap_or(0),
        revoked_at_ms: k.revoked_at.unwrap_or(0),
    }
}

fn event(e: &AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        seq: e.seq as i64,
        event_id: e.event_id.clone(),
        time_ms: e.time,
        actor: e.actor.clone(),
        action: e.action.clone(),
        target: e.target.clone(),
        outcome: e.outcome.as_str().to_owned(),
        reason: e.reason.clone(),
        prev_hash: e.prev_hash.clone(),
        hash: e.hash.clone(),
    }
}

#[tonic::async_trait]
impl Admin for GrpcAdmin {
    async fn create_key(&self, req: Request<pb::CreateKeyRequest>) -> Result<Response<pb::CreateKeyResponse>, Status> {
        let actor = self.api.authorize(authorization(&req), "key.create").await?;
        let r = req.into_inner();
        let new = NewKey {
            principal: r.principal,
            scopes: r.scopes,
            expires_at: (r.expires_at_ms != 0).then_some(r.expires_at_ms),
        };
        let created = self.api.create_key(&actor, new).await?;
        Ok(Response::new(pb::CreateKeyResponse {
            key: Some(key(&created.info)),
            secret: created.key.expose().to_owned(),
        }))
    }

    async fn list_keys(&self, req: Request<pb::ListKeysRequest>) -> Result<Response<pb::ListKeysResponse>, Status> {
        self.api.authorize(authorization(&req), "key.list").await?;
        let keys = self.api.list_keys().await?.iter().map(key).collect();
        Ok(Response::new(pb::ListKeysResponse { keys }))
    }

    async fn revoke_key(&self, req: Request<pb::RevokeKeyRequest>) -> Result<Response<pb::Key>, Status> {
        let actor = self.api.authorize(authorization(&req), "key.revoke").await?;
        let revoked = self.api.revoke_key(&actor, &req.into_inner().id).await?;
        Ok(Response::new(key(&revoked.info)))
    }

    async fn list_audit(&self, req: Request<pb::ListAuditRequest>) -> Result<Response<pb::ListAuditResponse>, Status> {
        self.api.authorize(authorization(&req), "audit.list").await?;
        let r = req.into_inner();
        let after = u64::try_from(r.after).map_err(|_| Status::invalid_argument("after must not be negative"))?;
        let events = self.api.list_audit(after, Some(r.limit)).await?.iter().map(event).collect();
        Ok(Response::new(pb::ListAuditResponse { events }))
    }

    async fn verify_audit(
        &self,
        req: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        self.api.authorize(authorization(&req), "audit.verify").await?;
        let report = self.api.verify_audit().await?;
        let (broken_seq, reason) =
            report.first_broken.as_ref().map_or((0, String::new()), |b| (b.seq as i64, b.to_string()));
        Ok(Response::new(pb::VerifyAuditResponse { checked: report.checked, ok: report.is_ok(), broken_seq, reason }))
    }
}
