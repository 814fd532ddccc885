//! Verifying a whole log, streaming, from its stored rows and checkpoints.
//!
//! Used the same way against the live store and against an export file, so an
//! auditor's offline check is the very code the operator runs. The log is
//! consumed entry by entry (a million entries never sit in memory at once);
//! the first problem found stops the scan and names the entry or checkpoint.

use std::collections::BTreeMap;

use super::checkpoint::{NoteVerifier, SignedCheckpoint};
use super::event::{GENESIS_PREV, LogEntry};
use super::merkle::{Hash, RootAccumulator, leaf_hash};
use super::to_hex;

/// A log row as read back from storage.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub index: u64,
    pub leaf_hash: Hash,
    pub entry: String,
}

/// Where and how a log failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("entry at position {position}: {what}")]
    Entry { position: u64, what: String },
    #[error("checkpoint for tree size {size}: {what}")]
    Checkpoint { size: u64, what: String },
    #[error(
        "the log has {entries} entries but a checkpoint covers {size}: entries were removed from the tail or the log was rolled back"
    )]
    Truncated { entries: u64, size: u64 },
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub entries: u64,
    pub checkpoints: u64,
    pub root: Hash,
    /// The largest checkpointed size (entries after it are chained but not yet
    /// covered by a signature).
    pub checkpointed_size: u64,
}

/// Streaming verifier. Feed entries in stored order with [`LogVerifier::push`].
pub struct LogVerifier {
    acc: RootAccumulator,
    prev: Hash,
    /// Checkpoints still to be compared, by tree size.
    pending: BTreeMap<u64, Vec<(Hash, bool)>>,
    checkpoints: u64,
    checkpointed_size: u64,
}

impl LogVerifier {
    /// Checks every checkpoint's signature against `verifiers` up front.
    /// `trusted` is a checkpoint the auditor kept from earlier: the log must
    /// still contain it, which is what catches a rollback to an older prefix.
    pub fn new(
        origin: &str,
        verifiers: &[NoteVerifier],
        checkpoints: &[SignedCheckpoint],
        trusted: Option<&SignedCheckpoint>,
    ) -> Result<Self, VerifyError> {
        let mut pending: BTreeMap<u64, Vec<(Hash, bool)>> = BTreeMap::new();
        for (cp, is_trusted) in checkpoints
            .iter()
            .map(|c| (c, false))
            .chain(trusted.map(|c| (c, true)))
        {
            let size = cp.checkpoint.size;
            cp.verify(verifiers).map_err(|e| VerifyError::Checkpoint {
                size,
                what: e.to_string(),
            })?;
            if cp.checkpoint.origin != origin {
                return Err(VerifyError::Checkpoint {
                    size,
                    what: format!(
                        "origin {:?} is not this log's origin {origin:?}",
                        cp.checkpoint.origin
                    ),
                });
            }
            pending
                .entry(size)
                .or_default()
                .push((cp.checkpoint.root, is_trusted));
        }
        let checkpoints = pending.values().map(|v| v.len() as u64).sum();
        let mut v = LogVerifier {
            acc: RootAccumulator::new(),
            prev: GENESIS_PREV,
            pending,
            checkpoints,
            checkpointed_size: 0,
        };
        v.compare_checkpoints()?;
        Ok(v)
    }

    pub fn push(&mut self, row: StoredEntry) -> Result<(), VerifyError> {
        let position = self.acc.len();
        let fail = |what: String| Err(VerifyError::Entry { position, what });
        if row.index != position {
            return fail(format!(
                "stored index is {} where {position} was expected (an entry was deleted, inserted or moved)",
                row.index
            ));
        }
        let computed = leaf_hash(row.entry.as_bytes());
        if computed != row.leaf_hash {
            return fail(
                "its content does not match its stored leaf hash (the entry was modified)".into(),
            );
        }
        let entry: LogEntry = match serde_json::from_str(&row.entry) {
            Ok(e) => e,
            Err(e) => return fail(format!("not a valid log entry: {e}")),
        };
        if entry.index != position {
            return fail(format!(
                "entry says it is number {} (entries were reordered or forged)",
                entry.index
            ));
        }
        if entry.prev != to_hex(&self.prev) {
            return fail("its link to the previous entry is broken (an entry before it was changed, removed or inserted)".into());
        }
        self.prev = computed;
        self.acc.push(computed);
        self.compare_checkpoints()
    }

    fn compare_checkpoints(&mut self) -> Result<(), VerifyError> {
        let size = self.acc.len();
        if let Some(expected) = self.pending.remove(&size) {
            let root = self.acc.root();
            for (cp_root, trusted) in expected {
                if cp_root != root {
                    let what = if trusted {
                        "the log no longer matches the checkpoint you trusted (it was rewritten)"
                    } else {
                        "its root hash does not match the entries (entries up to it were changed)"
                    };
                    return Err(VerifyError::Checkpoint {
                        size,
                        what: what.into(),
                    });
                }
            }
            self.checkpointed_size = size;
        }
        Ok(())
    }

    pub fn finish(self) -> Result<VerifyReport, VerifyError> {
        let entries = self.acc.len();
        if let Some((&size, _)) = self.pending.iter().next() {
            return Err(VerifyError::Truncated { entries, size });
        }
        Ok(VerifyReport {
            entries,
            checkpoints: self.checkpoints,
            root: self.acc.root(),
            checkpointed_size: self.checkpointed_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::{Checkpoint, NoteSigner};
    use crate::audit::event::{Actor, AuditEvent, EventKind};
    use crate::audit::merkle::MerkleTree;
    use crate::time::Timestamp;
    use ed25519_dalek::SigningKey;

    const ORIGIN: &str = "test.example/audit";

    fn signer(seed: u8) -> NoteSigner {
        NoteSigner::new(ORIGIN.into(), SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    /// A well-formed log of `n` entries.
    fn log(n: u64) -> Vec<StoredEntry> {
        let mut prev = GENESIS_PREV;
        (0..n)
            .map(|i| {
                let ev = AuditEvent::new(
                    EventKind::HumanRegistered,
                    Timestamp::from_millis(i as i64),
                    Actor::System,
                )
                .details(serde_json::json!({ "n": i }));
                let (entry, hash) = LogEntry::new(i, &prev, ev).encode();
                prev = hash;
                StoredEntry {
                    index: i,
                    leaf_hash: hash,
                    entry,
                }
            })
            .collect()
    }

    fn checkpoint(rows: &[StoredEntry], size: u64, s: &NoteSigner) -> SignedCheckpoint {
        let tree = MerkleTree::from_leaves(rows.iter().map(|r| r.leaf_hash));
        s.sign(&Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: tree.root_at(size).unwrap(),
        })
    }

    fn run(
        rows: Vec<StoredEntry>,
        cps: &[SignedCheckpoint],
        trusted: Option<&SignedCheckpoint>,
    ) -> Result<VerifyReport, VerifyError> {
        let mut v = LogVerifier::new(ORIGIN, &[signer(1).verifier()], cps, trusted)?;
        for r in rows {
            v.push(r)?;
        }
        v.finish()
    }

    fn rehash(row: &mut StoredEntry) {
        row.leaf_hash = leaf_hash(row.entry.as_bytes());
    }

    #[test]
    fn an_untouched_log_verifies() {
        let rows = log(20);
        let cps = [
            checkpoint(&rows, 7, &signer(1)),
            checkpoint(&rows, 20, &signer(1)),
        ];
        let r = run(rows, &cps, None).unwrap();
        assert_eq!((r.entries, r.checkpoints, r.checkpointed_size), (20, 2, 20));
    }

    #[test]
    fn a_changed_field_is_detected_even_with_its_hash_recomputed() {
        let rows = log(10);
        let cps = [checkpoint(&rows, 10, &signer(1))];
        let mut bad = rows.clone();
        bad[4].entry = bad[4].entry.replace("\"n\":4", "\"n\":5");
        assert!(matches!(
            run(bad.clone(), &cps, None),
            Err(VerifyError::Entry { position: 4, .. })
        ));
        rehash(&mut bad[4]);
        // Its successor's back-link now breaks.
        assert!(matches!(
            run(bad.clone(), &cps, None),
            Err(VerifyError::Entry { position: 5, .. })
        ));
        // Changing the last entry leaves no successor: the checkpoint catches it.
        let mut bad = rows.clone();
        bad[9].entry = bad[9].entry.replace("\"n\":9", "\"n\":8");
        rehash(&mut bad[9]);
        assert!(matches!(
            run(bad, &cps, None),
            Err(VerifyError::Checkpoint { size: 10, .. })
        ));
    }

    #[test]
    fn deleted_swapped_and_inserted_entries_are_detected() {
        let rows = log(10);
        let cps = [checkpoint(&rows, 10, &signer(1))];
        let mut deleted = rows.clone();
        deleted.remove(3);
        assert!(run(deleted, &cps, None).is_err());
        let mut swapped = rows.clone();
        swapped.swap(2, 6);
        assert!(run(swapped, &cps, None).is_err());
        let mut inserted = rows.clone();
        let forged = log(10)[5].clone();
        inserted.insert(5, forged);
        assert!(run(inserted, &cps, None).is_err());
    }

    #[test]
    fn a_truncated_tail_is_detected() {
        let rows = log(10);
        let cps = [checkpoint(&rows, 10, &signer(1))];
        let err = run(rows[..8].to_vec(), &cps, None).unwrap_err();
        assert_eq!(
            err,
            VerifyError::Truncated {
                entries: 8,
                size: 10
            }
        );
    }

    #[test]
    fn a_checkpoint_signed_by_another_key_is_refused() {
        let rows = log(5);
        let forged = checkpoint(&rows, 5, &signer(2));
        assert!(matches!(
            run(rows, &[forged], None),
            Err(VerifyError::Checkpoint { size: 5, .. })
        ));
    }

    #[test]
    fn a_rollback_to_an_older_prefix_is_caught_by_the_trusted_checkpoint() {
        // The attacker rewrites history after entry 6 and re-signs nothing:
        // the stored checkpoints are dropped, but the auditor kept size 10.
        let rows = log(10);
        let trusted = checkpoint(&rows, 10, &signer(1));
        let older = checkpoint(&rows, 6, &signer(1));
        assert!(matches!(
            run(
                rows[..6].to_vec(),
                std::slice::from_ref(&older),
                Some(&trusted)
            ),
            Err(VerifyError::Truncated {
                entries: 6,
                size: 10
            })
        ));
        // Rewritten tail of the same length: the trusted root no longer matches.
        let mut rewritten = rows[..6].to_vec();
        let mut prev = rewritten[5].leaf_hash;
        for i in 6..10 {
            let ev = AuditEvent::new(
                EventKind::AgentRetired,
                Timestamp::from_millis(0),
                Actor::System,
            );
            let (entry, hash) = LogEntry::new(i, &prev, ev).encode();
            prev = hash;
            rewritten.push(StoredEntry {
                index: i,
                leaf_hash: hash,
                entry,
            });
        }
        assert!(matches!(
            run(rewritten, &[older], Some(&trusted)),
            Err(VerifyError::Checkpoint { size: 10, .. })
        ));
    }
}

#[cfg(test)]
mod fuzz_mirror {
    //! The input space of the `audit_entry` fuzz target, exercised in CI.
    use super::*;
    use crate::audit::merkle::leaf_hash;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_entries_never_panic_the_verifier(s in ".{0,200}", idx in 0u64..3) {
            let mut v = LogVerifier::new("fuzz/log", &[], &[], None).unwrap();
            let _ = v.push(StoredEntry { index: idx, leaf_hash: leaf_hash(s.as_bytes()), entry: s.clone() });
            let _ = serde_json::from_str::<crate::audit::export::ExportLine>(&s);
        }
    }
}
