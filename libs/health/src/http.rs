//! The admin port's health endpoints: `/healthz` (liveness), `/readyz`
//! (readiness, optionally itemised as the Kubernetes API server does) and
//! `/info`.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::info::Info;
use crate::state::{CheckStatus, Health, Snapshot};

#[derive(Clone)]
struct AdminState {
    health: Health,
    info: Arc<Info>,
}

/// The health routes, ready to merge into the admin router:
/// - `GET /healthz`: always `200 ok`; it only proves the admin port serves.
/// - `GET /readyz`: `200 ok` when ready, else `503` naming what fails.
///   `?verbose` lists every check; `?format=json` gives the same as JSON.
/// - `GET /info`: build, config and listener facts as JSON.
pub fn router(health: Health, info: Info) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/info", get(info_json))
        .with_state(AdminState { health, info: Arc::new(info) })
}

async fn healthz() -> &'static str {
    // Liveness must never look at the database or upstreams: a restart
    // cures none of their outages and would only add one.
    "ok\n"
}

#[derive(Debug, Default, Deserialize)]
struct ReadyzQuery {
    verbose: Option<String>,
    format: Option<String>,
}

async fn readyz(State(state): State<AdminState>, query: Result<Query<ReadyzQuery>, QueryRejection>) -> Response {
    // A probe must get an answer about readiness, not a 400 about its
    // query string, so an unparsable query counts as no query.
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let snapshot = state.health.snapshot();
    let status = if snapshot.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if query.format.as_deref() == Some("json") {
        return (status, Json(ReadyzJson::from(&snapshot))).into_response();
    }
    let verbose = query.verbose.as_deref().is_some_and(|v| matches!(v, "" | "1" | "true"));
    let body = if verbose {
        verbose_text(&snapshot)
    } else if snapshot.ready {
        "ok\n".to_owned()
    } else {
        let failing: Vec<_> = snapshot.checks.iter().filter(|c| c.required && !c.ok).map(|c| &*c.name).collect();
        format!("not ready: {}\n", failing.join(", "))
    };
    (status, body).into_response()
}

/// One line per check, then the verdict, like `kube-apiserver`'s
/// `/readyz?verbose`:
///
/// ```text
/// [+]config_loaded ok
/// [+]draining ok
/// [-]upstream:echo failed: no endpoint answers (12ms)
/// readyz check failed
/// ```
fn verbose_text(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    for check in &snapshot.checks {
        let _ = match &check.message {
            None => write!(out, "[+]{} ok", check.name),
            Some(message) => write!(out, "[-]{} failed: {message}", check.name),
        };
        if let Some(latency) = check.latency {
            let _ = write!(out, " ({}ms)", latency.as_millis());
        }
        if !check.required {
            // Said explicitly, so nobody hunts for why a red line did not
            // fail the probe.
            out.push_str(" (optional)");
        }
        out.push('\n');
    }
    out.push_str(if snapshot.ready { "readyz check passed\n" } else { "readyz check failed\n" });
    out
}

/// The body of `/readyz?format=json`.
#[derive(Serialize)]
struct ReadyzJson<'a> {
    ready: bool,
    checks: Vec<CheckJson<'a>>,
}

#[derive(Serialize)]
struct CheckJson<'a> {
    name: &'a str,
    ok: bool,
    required: bool,
    message: Option<&'a str>,
    latency_ms: Option<u128>,
}

impl<'a> From<&'a Snapshot> for ReadyzJson<'a> {
    fn from(snapshot: &'a Snapshot) -> Self {
        let check = |c: &'a CheckStatus| CheckJson {
            name: &c.name,
            ok: c.ok,
            required: c.required,
            message: c.message.as_deref(),
            latency_ms: c.latency.map(|l| l.as_millis()),
        };
        Self { ready: snapshot.ready, checks: snapshot.checks.iter().map(check).collect() }
    }
}

async fn info_json(State(state): State<AdminState>) -> Response {
    Json(state.info.body()).into_response()
}
