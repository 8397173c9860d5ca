//! Input checks for everything an admin caller controls. They run before any
//! database work, so a refused input changes nothing; values are bound as
//! parameters regardless, the checks exist to keep stored data clean and the
//! errors precise. Messages never echo the input, which may be huge or hostile.

use crate::error::StoreError;
use crate::token;

/// Longest principal or actor.
pub const MAX_PRINCIPAL_LEN: usize = 128;
/// Most scopes on one key.
pub const MAX_SCOPES: usize = 32;
/// Longest scope.
pub const MAX_SCOPE_LEN: usize = 64;
/// Longest audit action.
pub const MAX_ACTION_LEN: usize = 64;
/// Longest audit target.
pub const MAX_TARGET_LEN: usize = 256;
/// Longest audit reason.
pub const MAX_REASON_LEN: usize = 2048;

fn principal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | ':' | '-')
}

fn scope_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | ':' | '-')
}

fn action_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_')
}

fn check(
    field: &'static str,
    value: &str,
    min: usize,
    max: usize,
    ok: fn(char) -> bool,
    alphabet: &str,
) -> Result<(), StoreError> {
    let len = value.chars().count();
    if len < min || len > max || !value.chars().all(ok) {
        return Err(StoreError::validation(field, format!("expected {min}-{max} characters of {alphabet}")));
    }
    Ok(())
}

/// A key's principal (`identity_id`).
pub(crate) fn principal(value: &str) -> Result<(), StoreError> {
    check("principal", value, 1, MAX_PRINCIPAL_LEN, principal_char, "A-Z a-z 0-9 . _ @ : -")
}

/// Who made a change; same alphabet as principals so it can name one.
pub(crate) fn actor(value: &str) -> Result<(), StoreError> {
    check("actor", value, 1, MAX_PRINCIPAL_LEN, principal_char, "A-Z a-z 0-9 . _ @ : -")
}

/// A key's scopes: bounded count, each bounded and lower-case, no repeats.
/// Scopes are stored space-separated, which the alphabet makes unambiguous.
pub(crate) fn scopes(values: &[String]) -> Result<(), StoreError> {
    if values.len() > MAX_SCOPES {
        return Err(StoreError::validation("scopes", format!("at most {MAX_SCOPES} scopes")));
    }
    for (i, scope) in values.iter().enumerate() {
        check("scopes", scope, 1, MAX_SCOPE_LEN, scope_char, "a-z 0-9 . _ : -").map_err(|_| {
            StoreError::validation(
                "scopes",
                format!("scope {i}: expected 1-{MAX_SCOPE_LEN} characters of a-z 0-9 . _ : -"),
            )
        })?;
        if values[..i].contains(scope) {
            return Err(StoreError::validation("scopes", format!("scope {i} repeats an earlier one")));
        }
    }
    Ok(())
}

/// An expiry must lie in the future: a key born expired is a caller's mistake.
pub(crate) fn expires_at(value: Option<i64>, now_ms: i64) -> Result<(), StoreError> {
    match value {
        Some(at) if at <= now_ms => {
            Err(StoreError::validation("expires_at", "must be in the future (unix milliseconds)"))
        }
        _ => Ok(()),
    }
}

/// A key id as it appears in `gh_<id>_<secret>` and in `DELETE /v1/keys/{id}`.
pub(crate) fn key_id(value: &str) -> Result<(), StoreError> {
    if token::is_id(value) {
        Ok(())
    } else {
        Err(StoreError::validation("id", format!("expected {} characters of a-z 2-7", token::ID_LEN)))
    }
}

/// An audit action such as `key.create` or `config.reload`.
pub(crate) fn action(value: &str) -> Result<(), StoreError> {
    check("action", value, 1, MAX_ACTION_LEN, action_char, "a-z 0-9 . _")
}

/// Free text (target, reason): bounded, and without NUL, which PostgreSQL
/// text cannot hold.
pub(crate) fn text(field: &'static str, value: &str, max: usize) -> Result<(), StoreError> {
    if value.chars().count() > max || value.contains('\0') {
        return Err(StoreError::validation(field, format!("expected at most {max} characters, no NUL")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals() {
        assert!(principal("svc-a@team.example:prod_1").is_ok());
        assert!(principal("").is_err());
        assert!(principal(&"a".repeat(129)).is_err());
        assert!(principal("a'; DROP TABLE api_keys; --").is_err());
        assert!(principal("ünïcode").is_err());
    }

    #[test]
    fn scope_lists() {
        let ok = vec!["echo.read".to_owned(), "admin".to_owned(), "a:b-c_d".to_owned()];
        assert!(scopes(&ok).is_ok());
        assert!(scopes(&[]).is_ok());
        assert!(scopes(&["Echo".to_owned()]).is_err());
        assert!(scopes(&["a b".to_owned()]).is_err());
        assert!(scopes(&[String::new()]).is_err());
        assert!(scopes(&["x".to_owned(), "x".to_owned()]).is_err());
        assert!(scopes(&vec!["s".to_owned(); 33]).is_err());
    }

    #[test]
    fn expiry_in_future_only() {
        assert!(expires_at(None, 1000).is_ok());
        assert!(expires_at(Some(1001), 1000).is_ok());
        assert!(expires_at(Some(1000), 1000).is_err());
    }

    #[test]
    fn free_text() {
        assert!(text("reason", "config rejected: routes[0].upstream", MAX_REASON_LEN).is_ok());
        assert!(text("reason", "nul\0", MAX_REASON_LEN).is_err());
        assert!(text("target", &"t".repeat(257), MAX_TARGET_LEN).is_err());
    }
}
