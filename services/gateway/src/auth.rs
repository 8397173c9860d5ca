//! Authentication and authorization of public requests: the API key (from
//! `Authorization: Bearer …` or `x-api-key`, as HTTP headers or gRPC
//! metadata) is checked against the in-memory key cache (never the database
//! on the request path), then the route's scopes are checked.
//!
//! The key never goes upstream: upstreams get the authenticated identity in
//! `x-gatehouse-identity`, and a client cannot forge that header.

use std::time::Instant;

use gatehouse_store::{AuthOutcome, Identity, KeyCache};
use gatehouse_telemetry::rejections::AuthorizationLatency;
use http::header::{AUTHORIZATION, HeaderName};
use http::{HeaderMap, HeaderValue};

use crate::error::GatewayError;
use crate::head::{Field, Head};
use crate::router::Route;

/// The header upstreams read the authenticated principal from.
pub static X_GATEHOUSE_IDENTITY: HeaderName = HeaderName::from_static("x-gatehouse-identity");
/// The alternative header for a key.
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The auth stage.
#[derive(Clone, Debug)]
pub struct Auth {
    keys: KeyCache,
    latency: AuthorizationLatency,
}

impl Auth {
    /// An auth stage backed by `keys`.
    pub fn new(keys: KeyCache) -> Self {
        Self { keys, latency: AuthorizationLatency::new() }
    }

    /// Checks `headers` against `route`'s requirements and rewrites them for
    /// the upstream. Returns the identity when a valid key was presented,
    /// even when it is then refused for lacking a scope (the access line
    /// names who was refused), and the verdict.
    ///
    /// `head`, when the first stage scanned one, says which of the key and
    /// identity headers the client sent; the others are not looked up.
    pub fn check(
        &self,
        route: &Route,
        headers: &mut HeaderMap,
        head: Option<&Head>,
    ) -> (Option<Identity>, Result<(), GatewayError>) {
        let sent = |field| head.is_none_or(|h| h.has(field));
        let may_present = sent(Field::Authorization) || sent(Field::ApiKey);
        let (identity, verdict) = if route.auth.required || (may_present && presented_key(headers).is_some()) {
            let started = Instant::now();
            let decided = self.decide(route, headers);
            self.latency.record(started.elapsed());
            decided
        } else {
            // An open route and no key: nothing to check, nothing to time.
            (None, Ok(()))
        };
        // Whatever the outcome, clients cannot speak for the gateway, and
        // gateway keys stay at the gateway.
        if sent(Field::Identity) {
            headers.remove(&X_GATEHOUSE_IDENTITY);
        }
        if sent(Field::ApiKey) {
            headers.remove(&X_API_KEY);
        }
        if sent(Field::Authorization)
            && presented_bearer(headers).is_some_and(|k| k.starts_with(gatehouse_store::key_format::PREFIX))
        {
            headers.remove(AUTHORIZATION);
        }
        if let (Some(identity), Ok(())) = (&identity, &verdict) {
            if let Ok(v) = HeaderValue::from_str(&identity.principal) {
                headers.insert(&X_GATEHOUSE_IDENTITY, v);
            }
        }
        (identity, verdict)
    }

    fn decide(&self, route: &Route, headers: &HeaderMap) -> (Option<Identity>, Result<(), GatewayError>) {
        let presented = presented_key(headers);
        let identity = match presented.map(|k| self.keys.authenticate(k)) {
            Some(AuthOutcome::Ok(identity)) => identity,
            // An invalid key on an open route is ignored, not an error:
            // the route does not need one.
            Some(_) | None if !route.auth.required => return (None, Ok(())),
            Some(outcome) => {
                tracing::debug!(route = %route.name, outcome = outcome.as_str(), "authentication failed");
                return (None, Err(GatewayError::Unauthenticated));
            }
            None => return (None, Err(GatewayError::Unauthenticated)),
        };
        let verdict =
            if route.auth.scopes.iter().all(|s| identity.has_scope(s)) { Ok(()) } else { Err(GatewayError::Forbidden) };
        (Some(identity), verdict)
    }
}

fn presented_bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    presented_bearer(headers).or_else(|| headers.get(&X_API_KEY)?.to_str().ok().map(str::trim))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_from_bearer_or_x_api_key() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert(&X_API_KEY, HeaderValue::from_static(" gh_a_b "));
        assert_eq!(presented_key(&h), Some("gh_a_b"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer gh_c_d"));
        assert_eq!(presented_key(&h), Some("gh_c_d"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic dXNlcg=="));
        assert_eq!(presented_bearer(&h), None);
    }
}
