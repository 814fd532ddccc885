//! Whole-log operations built on the [`Store`] trait: keeping a Merkle tree
//! in step with the stored log, signing checkpoints, and verifying.
//!
//! They take `&dyn Store`, so the server, the CLI and the tests share them
//! and they work the same on both backends.

use mandate_core::audit::checkpoint::{Checkpoint, NoteSigner, NoteVerifier, SignedCheckpoint};
use mandate_core::audit::merkle::MerkleTree;
use mandate_core::audit::verify::{LogVerifier, VerifyError, VerifyReport};
use mandate_core::time::Timestamp;

use crate::{Result, Store};

/// Rows fetched per round trip while scanning the log.
const SCAN_BATCH: u32 = 10_000;

/// Appends to `tree` every stored entry it does not have yet.
pub async fn sync_tree(store: &dyn Store, tree: &mut MerkleTree) -> Result<()> {
    loop {
        let rows = store.audit_entries(tree.len(), SCAN_BATCH).await?;
        if rows.is_empty() {
            return Ok(());
        }
        for r in rows {
            tree.push(r.leaf_hash);
        }
    }
}

/// Signs and stores a checkpoint over the whole log as it stands.
pub async fn checkpoint(
    store: &dyn Store,
    tree: &mut MerkleTree,
    signer: &NoteSigner,
    origin: &str,
    at: Timestamp,
) -> Result<SignedCheckpoint> {
    sync_tree(store, tree).await?;
    let cp = signer.sign(&Checkpoint {
        origin: origin.to_owned(),
        size: tree.len(),
        root: tree.root(),
    });
    store.add_checkpoint(&cp, at).await?;
    Ok(cp)
}

/// Verifies the stored log against its stored checkpoints (and, if given, a
/// checkpoint the auditor kept). The outer `Result` is "could we read the
/// store"; the inner one is the verdict.
pub async fn verify(
    store: &dyn Store,
    origin: &str,
    verifiers: &[NoteVerifier],
    trusted: Option<&SignedCheckpoint>,
) -> Result<Result<VerifyReport, VerifyError>> {
    let checkpoints = store.checkpoints().await?;
    let mut v = match LogVerifier::new(origin, verifiers, &checkpoints, trusted) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let mut from = 0;
    loop {
        let rows = store.audit_entries(from, SCAN_BATCH).await?;
        if rows.is_empty() {
            return Ok(v.finish());
        }
        for r in rows {
            // Continue from the stored index so a gap is seen by the verifier
            // rather than hidden by re-reading.
            from = r.index + 1;
            if let Err(e) = v.push(r) {
                return Ok(Err(e));
            }
        }
    }
}
