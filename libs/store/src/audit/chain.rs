//! The chain's hash function, over a canonical encoding that a verifier in
//! any language can rebuild: the tag `gatehouse-audit-v1`, then each field as
//! its UTF-8 bytes preceded by their length as an 8-byte big-endian integer,
//! in the order seq, event_id, time, actor, action, target, outcome, reason,
//! prev_hash; integers are written in decimal. Length prefixes keep field
//! boundaries unambiguous whatever the fields contain.

use sha2::{Digest, Sha256};

use super::AuditEvent;

/// `prev_hash` of the first event.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const TAG: &[u8] = b"gatehouse-audit-v1";

/// SHA-256 of the event's canonical encoding, in lower-case hex. The stored
/// `hash` field is not part of its own input.
pub(crate) fn hash(event: &AuditEvent) -> String {
    let mut hasher = Sha256::new();
    hasher.update(TAG);
    let seq = event.seq.to_string();
    let time = event.time.to_string();
    let fields: [&str; 9] = [
        &seq,
        &event.event_id,
        &time,
        &event.actor,
        &event.action,
        &event.target,
        event.outcome.as_str(),
        &event.reason,
        &event.prev_hash,
    ];
    for field in fields {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Outcome;

    fn event() -> AuditEvent {
        AuditEvent {
            seq: 1,
            event_id: "e".into(),
            time: 5,
            actor: "admin".into(),
            action: "key.create".into(),
            target: "abc".into(),
            outcome: Outcome::Success,
            reason: String::new(),
            prev_hash: GENESIS.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = hash(&event());
        let mut e = event();
        e.seq = 2;
        assert_ne!(hash(&e), base);
        let mut e = event();
        e.outcome = Outcome::Denied;
        assert_ne!(hash(&e), base);
        let mut e = event();
        e.prev_hash = "1".repeat(64);
        assert_ne!(hash(&e), base);
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let (mut a, mut b) = (event(), event());
        a.actor = "ab".into();
        a.action = "c".into();
        b.actor = "a".into();
        b.action = "bc".into();
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn stored_hash_is_not_an_input() {
        let mut e = event();
        let before = hash(&e);
        e.hash = "x".into();
        assert_eq!(hash(&e), before);
    }
}
