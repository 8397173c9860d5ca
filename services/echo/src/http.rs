//! The HTTP routes. They match on the path's last segments, so `/status/503`,
//! `/echo/status/503` and `/a/b/status/503` all answer alike: a gateway
//! forwards its route prefix unchanged and the echo server never needs to
//! know it.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

use crate::body;

/// Pause between `/stream` chunks when the request names none.
const DEFAULT_INTERVAL_MS: u64 = 10;

pub(crate) fn router() -> Router {
    Router::new().fallback(handle)
}

/// What the request asks for: the route from the path's last one or two
/// segments, with the query knobs that route reads.
#[derive(Debug, PartialEq)]
enum Route {
    Status(StatusCode),
    Delay(u64),
    Stream { n: u64, interval: Duration },
    Bytes { n: u64, chunked: bool },
    Headers,
    Sink,
    Trailers,
    Echo,
}

impl Route {
    fn parse(path: &str, query: &str) -> Result<Self, BadRequest> {
        // Empty segments are skipped so `//status/200/` still means status.
        let mut segments = path.split('/').filter(|s| !s.is_empty()).rev();
        let last = segments.next();
        let before = segments.next();
        // Single-word routes win over `{route}/{number}`, so `/status/headers`
        // is the headers route rather than a bad status code.
        Ok(match (before, last) {
            (_, Some("headers")) => Self::Headers,
            (_, Some("sink")) => Self::Sink,
            (_, Some("trailers")) => Self::Trailers,
            (Some("status"), Some(code)) => Self::Status(status(code)?),
            (Some("delay"), Some(ms)) => Self::Delay(number("delay", ms)?),
            (Some("stream"), Some(n)) => Self::Stream {
                n: number("stream count", n)?,
                interval: Duration::from_millis(
                    param(query, "interval_ms")
                        .map(|raw| number("interval_ms", raw))
                        .transpose()?
                        .unwrap_or(DEFAULT_INTERVAL_MS),
                ),
            },
            (Some("bytes"), Some(n)) => Self::Bytes {
                n: number("byte count", n)?,
                chunked: matches!(param(query, "chunked"), Some("1" | "true")),
            },
            _ => Self::Echo,
        })
    }
}

/// A client mistake, answered as `400 {"error": "..."}`.
#[derive(Debug, PartialEq)]
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, Json(json!({ "error": self.0 }))).into_response()
    }
}

async fn handle(request: Request) -> Result<Response, BadRequest> {
    let query = request.uri().query().unwrap_or("");
    // Parse everything before waiting, so a bad request fails fast.
    let delay_ms = param(query, "delay_ms").map(|raw| number("delay_ms", raw)).transpose()?;
    let route = Route::parse(request.uri().path(), query)?;

    if let Some(ms) = delay_ms {
        sleep_ms(ms).await;
    }
    Ok(match route {
        Route::Status(code) => (code, Json(json!({ "status": code.as_u16() }))).into_response(),
        Route::Delay(ms) => {
            sleep_ms(ms).await;
            Json(json!({ "delayed_ms": ms })).into_response()
        }
        Route::Stream { n, interval } => body::lines(n, interval),
        Route::Bytes { n, chunked } => body::bytes(n, chunked),
        Route::Headers => headers(&request),
        Route::Sink => body::sink(request.into_body())
            .await
            .map_err(|err| BadRequest(format!("reading the request body failed: {err}")))?,
        Route::Trailers => body::trailers(),
        Route::Echo => echo(request),
    })
}

/// Describes the request as JSON, so tests can see what the gateway sent.
fn headers(request: &Request) -> Response {
    let mut headers: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, value) in request.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers.entry(name.as_str()).or_default().push(value);
    }
    Json(json!({
        "method": request.method().as_str(),
        "path": request.uri().path(),
        "query": request.uri().query(),
        "version": format!("{:?}", request.version()),
        "headers": headers,
    }))
    .into_response()
}

/// Answers with the request body, frame by frame, trailers included: the
/// body is handed over as it is, never collected. The request's `trailer`
/// header is copied too, since HTTP/1.1 only sends declared trailers.
fn echo(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let mut response = Response::new(Body::new(body));
    let headers = response.headers_mut();
    if let Ok(method) = HeaderValue::from_str(parts.method.as_str()) {
        headers.insert("x-echo-method", method);
    }
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if let Ok(path) = HeaderValue::from_str(path) {
        headers.insert("x-echo-path", path);
    }
    for name in [header::CONTENT_TYPE, header::TRAILER] {
        for value in parts.headers.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    response
}

/// The first value of `key` in a query string; no percent-decoding, since
/// every knob takes a plain number.
fn param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then_some(v)
    })
}

fn number(what: &str, raw: &str) -> Result<u64, BadRequest> {
    raw.parse().map_err(|_| BadRequest(format!("{what} must be a non-negative integer, got {raw:?}")))
}

fn status(raw: &str) -> Result<StatusCode, BadRequest> {
    raw.parse::<u16>()
        .ok()
        .filter(|code| (100..=599).contains(code))
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| BadRequest(format!("status must be an integer from 100 to 599, got {raw:?}")))
}

async fn sleep_ms(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_on_the_last_segments() {
        let cases = [
            ("/status/503", Route::Status(StatusCode::SERVICE_UNAVAILABLE)),
            ("/echo/status/201/", Route::Status(StatusCode::CREATED)),
            ("/a//delay/5", Route::Delay(5)),
            ("/x/bytes/1048576", Route::Bytes { n: 1_048_576, chunked: false }),
            ("/x/headers", Route::Headers),
            ("/status/headers", Route::Headers),
            ("/sink", Route::Sink),
            ("/trailers", Route::Trailers),
            ("/", Route::Echo),
            ("/status", Route::Echo),
            ("/echo.v1.Echo/Unary", Route::Echo),
        ];
        for (path, route) in cases {
            assert_eq!(Route::parse(path, ""), Ok(route), "{path}");
        }
    }

    #[test]
    fn routes_read_their_own_query_knobs() {
        let stream = |interval| Route::Stream { n: 3, interval: Duration::from_millis(interval) };
        assert_eq!(Route::parse("/stream/3", ""), Ok(stream(10)));
        assert_eq!(Route::parse("/stream/3", "interval_ms=0"), Ok(stream(0)));
        assert!(Route::parse("/stream/3", "interval_ms=x").is_err());
        let bytes = |chunked| Route::Bytes { n: 5, chunked };
        assert_eq!(Route::parse("/bytes/5", "chunked=1"), Ok(bytes(true)));
        assert_eq!(Route::parse("/bytes/5", "chunked=0"), Ok(bytes(false)));
        // Knobs of other routes are ignored rather than rejected.
        assert_eq!(Route::parse("/echo", "interval_ms=x"), Ok(Route::Echo));
    }

    #[test]
    fn bad_numbers_are_rejected() {
        for path in ["/status/99", "/status/600", "/status/-1", "/delay/x", "/bytes/1e3"] {
            assert!(Route::parse(path, "").is_err(), "{path}");
        }
    }

    #[test]
    fn query_params_take_the_first_match() {
        assert_eq!(param("a=1&delay_ms=5&delay_ms=6", "delay_ms"), Some("5"));
        assert_eq!(param("chunked", "chunked"), Some(""));
        assert_eq!(param("", "delay_ms"), None);
    }
}
