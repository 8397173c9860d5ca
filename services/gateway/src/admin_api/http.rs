//! The admin API as HTTP JSON under `/v1/`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use gatehouse_store::{KeyInfo, NewKey, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AdminApi, AdminError};

/// Largest admin request body; keys and queries are small.
const MAX_BODY: usize = 16 * 1024;

/// The `/v1/` routes.
pub fn router(api: AdminApi) -> Router {
    Router::new()
        .route("/v1/keys", post(create_key).get(list_keys))
        .route("/v1/keys/{id}", delete(revoke_key))
        .route("/v1/audit", get(list_audit))
        .route("/v1/audit/verify", get(verify_audit))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            Self::Invalid(_) | Self::Store(StoreError::Validation { .. }) => {
                (StatusCode::BAD_REQUEST, "invalid_argument")
            }
            Self::Store(StoreError::NotFound { .. }) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Store(StoreError::Conflict(_)) => (StatusCode::CONFLICT, "conflict"),
            Self::Store(StoreError::Unavailable { .. }) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Store(StoreError::Internal { .. }) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::warn!(error = %self, "admin request failed");
        }
        // Internal errors keep their cause in the log, not in the answer.
        let message =
            if status == StatusCode::INTERNAL_SERVER_ERROR { "internal error".to_owned() } else { self.to_string() };
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"error": {"code": code, "message": message}}).to_string(),
        )
            .into_response()
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

fn key_json(k: &KeyInfo) -> Value {
    json!({
        "id": k.id, "principal": k.principal, "scopes": k.scopes,
        "created_at": k.created_at, "expires_at": k.expires_at, "revoked_at": k.revoked_at,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    principal: String,
    #[serde(default)]
    scopes: Vec<String>,
    /// Unix milliseconds or an RFC 3339 time; null never expires.
    #[serde(default)]
    expires_at: Value,
}

fn expires_at(v: &Value) -> Result<Option<i64>, AdminError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => {
            n.as_i64().map(Some).ok_or_else(|| AdminError::Invalid("expires_at: expected unix milliseconds".into()))
        }
        Value::String(s) => humantime::parse_rfc3339(s)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| Some(d.as_millis() as i64))
            .ok_or_else(|| {
                AdminError::Invalid("expires_at: expected an RFC 3339 time such as 2030-01-01T00:00:00Z".into())
            }),
        _ => Err(AdminError::Invalid("expires_at: expected null, unix milliseconds or an RFC 3339 time".into())),
    }
}

async fn create_key(
    State(api): State<AdminApi>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AdminError> {
    // Who is asking comes first: an anonymous oversized body is a 401 (and
    // an audited denial), not a 413.
    let actor = api.authorize(authorization(&headers), "key.create").await?;
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => AdminError::TooLarge(MAX_BODY),
        other => AdminError::Invalid(other.body_text()),
    })?;
    let req: CreateKey =
        serde_json::from_slice(&body).map_err(|e| AdminError::Invalid(format!("invalid JSON body: {e}")))?;
    let new = NewKey { principal: req.principal, scopes: req.scopes, expires_at: expires_at(&req.expires_at)? };
    let created = api.create_key(&actor, new).await?;
    let mut body = key_json(&created.info);
    body["key"] = Value::String(created.key.expose().to_owned());
    Ok((StatusCode::CREATED, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response())
}

async fn list_keys(State(api): State<AdminApi>, headers: HeaderMap) -> Result<Response, AdminError> {
    api.authorize(authorization(&headers), "key.list").await?;
    let keys: Vec<Value> = api.list_keys().await?.iter().map(key_json).collect();
    Ok(json_ok(json!({ "keys": keys })))
}

async fn revoke_key(
    State(api): State<AdminApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let actor = api.authorize(authorization(&headers), "key.revoke").await?;
    let revoked = api.revoke_key(&actor, &id).await?;
    Ok(json_ok(key_json(&revoked.info)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    after: u64,
    limit: Option<u32>,
}

async fn list_audit(
    State(api): State<AdminApi>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AdminError> {
    api.authorize(authorization(&headers), "audit.list").await?;
    let Query(q) = query.map_err(|e| AdminError::Invalid(format!("invalid query: {e}")))?;
    let events = api.list_audit(q.after, q.limit).await?;
    Ok(json_ok(json!({ "events": events })))
}

async fn verify_audit(State(api): State<AdminApi>, headers: HeaderMap) -> Result<Response, AdminError> {
    api.authorize(authorization(&headers), "audit.verify").await?;
    let report = api.verify_audit().await?;
    let broken = report.first_broken.as_ref().map(|b| json!({ "seq": b.seq, "reason": b.to_string() }));
    Ok(json_ok(json!({ "ok": report.is_ok(), "checked": report.checked, "first_broken": broken })))
}

fn json_ok(v: Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}
