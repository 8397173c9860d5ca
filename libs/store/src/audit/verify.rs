//! Walking the chain: every row must follow its predecessor (seq + 1), name
//! its hash (prev_hash), and hash to what it stores. An edited row fails its
//! own hash; a deleted row leaves a seq gap (or, if later rows were
//! renumbered, hash mismatches, since seq is hashed); rows swapped in order
//! fail both. Cutting rows off the end leaves a valid shorter chain, which
//! only a copy kept elsewhere (the audit log lines) can reveal.

use std::fmt;

use serde::Serialize;

use super::{AuditEvent, MAX_LIST, chain, page};
use crate::error::StoreError;
use crate::metrics::Operation;
use crate::store::Store;

/// The result of [`Store::verify_audit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Rows found intact, in order, before the first broken link (all rows
    /// if there is none).
    pub checked: u64,
    /// The first row that does not follow from the ones before it.
    pub first_broken: Option<BrokenLink>,
}

impl VerifyReport {
    /// Whether the whole chain verified.
    pub fn is_ok(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// Where and why the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    /// The seq of the row at which verification stopped.
    pub seq: u64,
    /// What is wrong with it.
    pub reason: BreakReason,
}

/// What is wrong with a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BreakReason {
    /// The row's fields do not hash to its stored hash: it was edited.
    HashMismatch,
    /// The row does not name the previous row's hash: a row before it was
    /// removed or replaced.
    PrevHashMismatch,
    /// Rows are missing before this one.
    SeqGap {
        /// The seq that should have come next.
        expected: u64,
    },
}

impl fmt::Display for BrokenLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            BreakReason::HashMismatch => {
                write!(f, "seq {}: contents do not match the stored hash (row edited)", self.seq)
            }
            BreakReason::PrevHashMismatch => {
                write!(f, "seq {}: prev_hash does not match the previous row (row removed or replaced)", self.seq)
            }
            BreakReason::SeqGap { expected } => write!(f, "seq {}: expected seq {expected} (rows deleted)", self.seq),
        }
    }
}

impl Store {
    /// Checks the whole audit chain from the first row, a page at a time.
    pub async fn verify_audit(&self) -> Result<VerifyReport, StoreError> {
        self.run(Operation::AuditVerify, async {
            let mut conn = self.acquire().await?;
            let mut walk = Walk { expected: 1, prev_hash: chain::GENESIS.to_owned(), checked: 0 };
            loop {
                let rows = page(&mut conn, walk.expected - 1, MAX_LIST).await?;
                if rows.is_empty() {
                    return Ok(VerifyReport { checked: walk.checked, first_broken: None });
                }
                for event in &rows {
                    if let Some(broken) = walk.step(event) {
                        return Ok(VerifyReport { checked: walk.checked, first_broken: Some(broken) });
                    }
                }
            }
        })
        .await
    }
}

struct Walk {
    expected: u64,
    prev_hash: String,
    checked: u64,
}

impl Walk {
    fn step(&mut self, event: &AuditEvent) -> Option<BrokenLink> {
        let broken = |reason| Some(BrokenLink { seq: event.seq, reason });
        if event.seq != self.expected {
            return broken(BreakReason::SeqGap { expected: self.expected });
        }
        if event.prev_hash != self.prev_hash {
            return broken(BreakReason::PrevHashMismatch);
        }
        if chain::hash(event) != event.hash {
            return broken(BreakReason::HashMismatch);
        }
        self.prev_hash.clone_from(&event.hash);
        self.expected += 1;
        self.checked += 1;
        None
    }
}
