//! The admin API: create, list and revoke keys; list and verify audit
//! events. One core ([`AdminApi`]) serves two front ends, HTTP JSON under
//! `/v1/` ([`http`]) and gRPC `gatehouse.admin.v1.Admin` ([`grpc`]), so both
//! authenticate, validate and audit the same way.
//!
//! Callers present `Authorization: Bearer <token>` where the token is the
//! bootstrap `GATEHOUSE_ADMIN_TOKEN` or a key holding the `admin` scope.
//! Every denial is a privileged decision: it is audited.

pub mod grpc;
pub mod http;

use std::sync::Arc;

use gatehouse_store::{
    AuditEvent, AuthOutcome, CreatedKey, KeyCache, KeyInfo, NewAuditEvent, NewKey, Outcome, RevokedKey, Store,
    StoreError, VerifyReport,
};
use subtle::ConstantTimeEq;

/// The environment variable holding the bootstrap admin token.
pub const ADMIN_TOKEN_ENV: &str = "GATEHOUSE_ADMIN_TOKEN";
/// The scope that makes a key an admin key.
pub const ADMIN_SCOPE: &str = "admin";

/// Why an admin call failed; one mapping to HTTP and one to gRPC.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No credential, or one that is not valid.
    #[error("a valid admin token or admin key is required")]
    Unauthenticated,
    /// A valid key without the `admin` scope.
    #[error("this key lacks the admin scope")]
    Forbidden,
    /// The request is malformed or a field is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The request body is over the admin API's limit.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The admin API's shared core.
#[derive(Clone)]
pub struct AdminApi {
    store: Store,
    keys: KeyCache,
    admin_token: Option<Arc<str>>,
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApi").field("admin_token_set", &self.admin_token.is_some()).finish()
    }
}

impl AdminApi {
    /// The admin API over `store`; `admin_token` is the bootstrap token
    /// (empty or absent disables it).
    pub fn new(store: Store, keys: KeyCache, admin_token: Option<String>) -> Self {
        let admin_token = admin_token.filter(|t| !t.is_empty()).map(Arc::from);
        Self { store, keys, admin_token }
    }

    /// Authenticates a caller from its `Authorization` value; a denial is
    /// audited before it is returned. Returns the actor name for audit rows.
    pub async fn authorize(&self, authorization: Option<&str>, operation: &str) -> Result<String, AdminError> {
        let token = authorization
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        let decision = match token {
            None => Err((AdminError::Unauthenticated, "anonymous".to_owned(), "no bearer credential")),
            Some(t) if self.is_admin_token(t) => Ok("admin-token".to_owned()),
            Some(t) => match self.keys.authenticate(t) {
                AuthOutcome::Ok(id) if id.has_scope(ADMIN_SCOPE) => Ok(format!("key:{}", id.key_id)),
                AuthOutcome::Ok(id) => {
                    Err((AdminError::Forbidden, format!("key:{}", id.key_id), "key lacks the admin scope"))
                }
                other => Err((AdminError::Unauthenticated, "anonymous".to_owned(), other.as_str())),
            },
        };
        match decision {
            Ok(actor) => Ok(actor),
            Err((err, actor, reason)) => {
                let event = NewAuditEvent::new(&actor, "admin.denied", operation, Outcome::Denied, reason);
                match self.store.record_audit(event).await {
                    Ok(e) => log_audit(&e),
                    // The denial stands even when it cannot be recorded.
                    Err(e) => tracing::error!(error = %e, operation, "could not record an admin denial"),
                }
                Err(err)
            }
        }
    }

    fn is_admin_token(&self, presented: &str) -> bool {
        self.admin_token
            .as_deref()
            .is_some_and(|t| t.len() == presented.len() && bool::from(t.as_bytes().ct_eq(presented.as_bytes())))
    }

    /// Creates a key; its audit row is committed with it.
    pub async fn create_key(&self, actor: &str, new: NewKey) -> Result<CreatedKey, AdminError> {
        let created = self.store.create_key(actor, new).await?;
        log_audit(&created.audit);
        Ok(created)
    }

    /// Lists keys, without secrets.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, AdminError> {
        Ok(self.store.list_keys().await?)
    }

    /// Revokes a key; its audit row is committed with the revocation.
    pub async fn revoke_key(&self, actor: &str, id: &str) -> Result<RevokedKey, AdminError> {
        let revoked = self.store.revoke_key(actor, id).await?;
        log_audit(&revoked.audit);
        Ok(revoked)
    }

    /// Audit events after `after`, at most `limit` (default 100, at most 1000).
    pub async fn list_audit(&self, after: u64, limit: Option<u32>) -> Result<Vec<AuditEvent>, AdminError> {
        let limit = limit.filter(|l| *l > 0).unwrap_or(100);
        if limit > gatehouse_store::MAX_AUDIT_LIST {
            return Err(AdminError::Invalid(format!("limit must be at most {}", gatehouse_store::MAX_AUDIT_LIST)));
        }
        Ok(self.store.list_audit(after, limit).await?)
    }

    /// Checks the whole audit chain.
    pub async fn verify_audit(&self) -> Result<VerifyReport, AdminError> {
        Ok(self.store.verify_audit().await?)
    }
}

/// Writes an audit event as its JSON log line (DESIGN §4), after the row
/// is committed.
pub fn log_audit(e: &AuditEvent) {
    tracing::info!(
        target: "audit",
        audit = true,
        seq = e.seq,
        event_id = %e.event_id,
        actor = %e.actor,
        action = %e.action,
        target = %e.target,
        outcome = e.outcome.as_str(),
        reason = %e.reason,
        "audit"
    );
}
