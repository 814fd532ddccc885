//! Whole-log operations built on the [`Store`] trait: keeping a Merkle tree
//! in step with the stored log, signing checkpoints, and verifying.
//!
//! They take `&dyn Store`, so the server, the CLI and the tests share them
//! and they work the same on both backends.

use mandate_core::audit::LogEntry;
use mandate_core::audit::checkpoint::{Checkpoint, NoteSigner, NoteVerifier, SignedCheckpoint};
use mandate_core::audit::merkle::MerkleTree;
use mandate_core::audit::trace::{Need, Next, Trace, Tracer};
use mandate_core::audit::verify::{LogVerifier, StoredEntry, VerifyError, VerifyReport};
use mandate_core::time::Timestamp;

use crate::{Result, Store};

/// Rows fetched per round trip while scanning the log.
const SCAN_BATCH: u32 = 10_000;

/// Appends to `tree` every stored entry it does not have yet.
pub async fn sync_tree(store: &dyn Store, tree: &mut MerkleTree) -> Result<()> {
    loop {
        let hashes = store.audit_leaf_hashes(tree.len(), SCAN_BATCH).await?;
        if hashes.is_empty() {
            return Ok(());
        }
        for h in hashes {
            tree.push(h);
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

/// Why a trace over the stored log failed.
#[derive(Debug, thiserror::Error)]
pub enum TraceFailure {
    #[error(transparent)]
    Store(#[from] crate::StoreError),
    #[error("audit entry {index} cannot be read: {error}; run `mandate audit verify`")]
    Unreadable { index: u64, error: String },
    #[error(transparent)]
    Trace(#[from] mandate_core::audit::trace::TraceError),
}

/// Runs `tracer` over the store's log, reading only the entries each pass
/// can use through the log's indexes (by task, by tree root, by human) where
/// the tracer says which those are ([`Need`]), and streaming the log page by
/// page otherwise, so only the trace is held in memory, never the log. The
/// CLI's `audit trace` and the web console's lineage page both read a trace
/// this way. The trace is the same as [`trace_by_scan`]'s.
pub async fn trace(
    store: &dyn Store,
    mut tracer: Tracer,
) -> std::result::Result<Trace, TraceFailure> {
    loop {
        match tracer.need() {
            Need::Task(task) => {
                let ended = feed_pages(&mut tracer, 0, |from| {
                    store.audit_entries_by_task(task, from, SCAN_BATCH)
                })
                .await?;
                if !ended {
                    scan_pass(store, &mut tracer).await?;
                }
            }
            Need::Tree(root) => {
                // The tree as it stands in the log now: what is appended
                // while it is read belongs to a later trace.
                let size = store.audit_end().await?;
                let start = tracer.start();
                feed_pages(&mut tracer, start, |from| {
                    store.audit_entries_by_tree(root, from, size, SCAN_BATCH)
                })
                .await?;
                tracer.read_to(size);
            }
            Need::Registrations(humans) => {
                let rows = store.audit_registrations(&humans).await?;
                feed(&mut tracer, rows)?;
            }
            Need::Log => scan_pass(store, &mut tracer).await?,
        }
        match tracer.end_pass()? {
            Next::Pass(next) => tracer = next,
            Next::Done(trace) => return Ok(trace),
        }
    }
}

/// Runs `tracer` over the whole stored log, streaming each pass page by page
/// from where the tracer asks to start: no index is used. [`trace`] is
/// checked against it.
pub async fn trace_by_scan(
    store: &dyn Store,
    mut tracer: Tracer,
) -> std::result::Result<Trace, TraceFailure> {
    loop {
        scan_pass(store, &mut tracer).await?;
        match tracer.end_pass()? {
            Next::Pass(next) => tracer = next,
            Next::Done(trace) => return Ok(trace),
        }
    }
}

/// Feeds one pass, from where the tracer asks to start until it has what it
/// needs or the log ends.
async fn scan_pass(
    store: &dyn Store,
    tracer: &mut Tracer,
) -> std::result::Result<(), TraceFailure> {
    let start = tracer.start();
    feed_pages(tracer, start, |from| store.audit_entries(from, SCAN_BATCH)).await?;
    Ok(())
}

/// Feeds the pages `page` fetches, each from one past the last entry of the
/// one before, starting at `from`: true once the tracer has what its pass
/// needs, false when a page comes back empty.
async fn feed_pages<F, Fut>(
    tracer: &mut Tracer,
    mut from: u64,
    page: F,
) -> std::result::Result<bool, TraceFailure>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<StoredEntry>>>,
{
    loop {
        let rows = page(from).await?;
        let Some(last) = rows.last() else {
            return Ok(false);
        };
        from = last.index + 1;
        if feed(tracer, rows)? {
            return Ok(true);
        }
    }
}

/// Feeds `rows` in order; true once the tracer says the pass has what it needs.
fn feed(tracer: &mut Tracer, rows: Vec<StoredEntry>) -> std::result::Result<bool, TraceFailure> {
    for r in rows {
        let entry: LogEntry =
            serde_json::from_str(&r.entry).map_err(|e| TraceFailure::Unreadable {
                index: r.index,
                error: e.to_string(),
            })?;
        if tracer.feed(&entry).is_break() {
            return Ok(true);
        }
    }
    Ok(false)
}
