//! Checks registered by the parts that own them, and the handle through
//! which an owner reports.
//!
//! Owners run their own probe loops and push results, so answering
//! `/readyz` never waits on a database or an upstream.

use std::borrow::Cow;
use std::time::Duration;

use crate::state::{CheckStatus, Health};

/// Longest failure message kept. Messages come from errors of other
/// systems; `/readyz?verbose` shows one line per check and must stay short.
const MAX_MESSAGE_BYTES: usize = 200;

/// What a check's owner says when it has never reported.
const NOT_YET_CHECKED: &str = "not yet checked";

/// What a check says once its owner has dropped the handle without
/// removing it: nobody probes any more, so its last result means nothing.
const OWNER_GONE: &str = "no longer reported";

/// One registered check and its last result.
pub(crate) struct Check {
    name: Cow<'static, str>,
    required: bool,
    last: Last,
}

enum Last {
    Never,
    Reported(Result<(), String>, Duration),
    Abandoned,
}

impl Check {
    pub(crate) fn new(name: Cow<'static, str>, required: bool) -> Self {
        Self { name, required, last: Last::Never }
    }

    pub(crate) fn status(&self) -> CheckStatus {
        let (ok, message, latency) = match &self.last {
            Last::Never => (false, Some(NOT_YET_CHECKED.to_owned()), None),
            Last::Reported(Ok(()), latency) => (true, None, Some(*latency)),
            Last::Reported(Err(message), latency) => (false, Some(message.clone()), Some(*latency)),
            Last::Abandoned => (false, Some(OWNER_GONE.to_owned()), None),
        };
        CheckStatus { name: self.name.clone(), ok, required: self.required, message, latency }
    }
}

/// The owner's side of a registered check, returned by
/// [`Health::register`].
///
/// Dropping the handle does not remove the check: it fails from then on
/// (fail closed), so a probe loop that died cannot leave a stale success
/// behind. Call [`CheckHandle::remove`] when the thing checked goes away,
/// for example an upstream that a config reload deleted.
#[must_use = "a check whose handle is dropped fails from then on; keep it and report, or call remove()"]
pub struct CheckHandle {
    health: Health,
    id: u64,
    name: Cow<'static, str>,
}

impl CheckHandle {
    pub(crate) fn new(health: Health, id: u64, name: Cow<'static, str>) -> Self {
        Self { health, id, name }
    }

    /// The name the check was registered under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records the result of one probe and how long it took.
    ///
    /// The message of an error is shown on the admin port: it must not
    /// carry secrets. Line breaks become spaces and long messages are cut,
    /// so each check stays on one line of `/readyz?verbose`.
    pub fn report(&self, result: Result<(), String>, latency: Duration) {
        let result = result.map_err(|m| one_short_line(&m));
        self.set(Last::Reported(result, latency));
    }

    /// Removes the check; readiness no longer depends on it.
    pub fn remove(self) {
        self.health.update(|state| state.checks.remove(&self.id));
        // `Drop` then finds the check gone and does nothing.
    }

    fn set(&self, last: Last) {
        self.health.update(|state| {
            if let Some(check) = state.checks.get_mut(&self.id) {
                check.last = last;
            }
        });
    }
}

impl Drop for CheckHandle {
    fn drop(&mut self) {
        self.set(Last::Abandoned);
    }
}

impl std::fmt::Debug for CheckHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckHandle").field("name", &self.name).field("id", &self.id).finish()
    }
}

/// `message` with control characters turned into spaces, cut at a
/// character boundary to at most [`MAX_MESSAGE_BYTES`] plus an ellipsis.
fn one_short_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_BYTES + 3));
    for c in message.trim().chars() {
        if out.len() + c.len_utf8() > MAX_MESSAGE_BYTES {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_become_one_short_line() {
        assert_eq!(one_short_line("  refused\nby 10.0.0.1\r\n"), "refused by 10.0.0.1");
        let long = "é".repeat(150);
        let cut = one_short_line(&long);
        assert_eq!(cut, format!("{}…", "é".repeat(100)));
    }

    #[test]
    fn dropped_handle_fails_and_removed_handle_disappears() {
        let health = Health::new();
        health.set_config_loaded(true);
        let kept = health.register("kept", true);
        kept.report(Ok(()), Duration::from_millis(1));
        let dropped = health.register("dropped", true);
        dropped.report(Ok(()), Duration::from_millis(1));
        assert!(health.is_ready());

        drop(dropped);
        assert!(!health.is_ready());
        let status = health.snapshot().checks.into_iter().find(|c| c.name == "dropped");
        assert_eq!(status.map(|c| (c.ok, c.message)), Some((false, Some(OWNER_GONE.to_owned()))));

        let again = health.register(String::from("dropped"), true);
        again.report(Ok(()), Duration::ZERO);
        assert!(!health.is_ready(), "the old check still fails");
        kept.remove();
        let names: Vec<_> = health.snapshot().checks.into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["config_loaded", "draining", "dropped", "dropped"]);
    }
}
