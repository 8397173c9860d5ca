//! What `GET /info` tells an operator: which build runs, with which config,
//! since when, and on which addresses.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Serialize;

/// Build and runtime facts the gateway fills in at start-up.
#[derive(Clone, Debug)]
pub struct Info {
    /// The release version, e.g. `0.1.0`.
    pub version: String,
    /// The source commit the binary was built from.
    pub commit: String,
    /// When the binary was built, as the build recorded it.
    pub build_time: String,
    /// The hash of the config in force; a reload replaces it in place.
    pub config_hash: ConfigHash,
    /// When the process started.
    pub started_at: SystemTime,
    /// Listener name (`public`, `admin`) to the address it is bound to.
    pub listeners: BTreeMap<String, String>,
}

/// The hash of the config in force, shared between the reload path that
/// sets it and the `/info` handler that reads it. Cheap to clone.
#[derive(Clone)]
pub struct ConfigHash(Arc<ArcSwap<String>>);

impl ConfigHash {
    /// A cell holding `hash`.
    pub fn new(hash: impl Into<String>) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(hash.into())))
    }

    /// Replaces the hash, after a reload has put a new config in force.
    pub fn set(&self, hash: impl Into<String>) {
        self.0.store(Arc::new(hash.into()));
    }

    /// The hash now in force.
    pub fn get(&self) -> Arc<String> {
        self.0.load_full()
    }
}

impl fmt::Debug for ConfigHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConfigHash").field(&self.get()).finish()
    }
}

/// The JSON body of `GET /info`; field names are part of the admin API.
#[derive(Serialize)]
pub(crate) struct InfoBody<'a> {
    version: &'a str,
    commit: &'a str,
    build_time: &'a str,
    config_hash: String,
    started_at: String,
    listeners: &'a BTreeMap<String, String>,
}

impl Info {
    pub(crate) fn body(&self) -> InfoBody<'_> {
        InfoBody {
            version: &self.version,
            commit: &self.commit,
            build_time: &self.build_time,
            config_hash: self.config_hash.get().as_str().to_owned(),
            started_at: rfc3339(self.started_at),
            listeners: &self.listeners,
        }
    }
}

/// `time` in RFC 3339 (UTC, whole seconds). humantime panics outside
/// 1970..=9999, so the time is clamped into that range first: a clock set
/// wildly wrong must not take the admin port down.
fn rfc3339(time: SystemTime) -> String {
    let last = UNIX_EPOCH + Duration::from_secs(253_402_300_799); // 9999-12-31T23:59:59Z
    humantime::format_rfc3339_seconds(time.clamp(UNIX_EPOCH, last)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_rfc3339_and_clamped() {
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000)), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(UNIX_EPOCH - Duration::from_secs(1)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(300_000_000_000)), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn config_hash_is_shared_between_clones() {
        let hash = ConfigHash::new("a1");
        let seen_by_handler = hash.clone();
        hash.set("b2");
        assert_eq!(seen_by_handler.get().as_str(), "b2");
    }
}
