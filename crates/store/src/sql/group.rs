//! Group commit, on both backends.
//!
//! Every write appends to the audit log, and the log has one writer at a
//! time (SQLite's file lock; on PostgreSQL an advisory lock that orders every
//! node), so each durable COMMIT is an fsync the next write waits for: a few
//! hundred writes per second. Here concurrent writes of this process share
//! one transaction, which takes the log's lock first: each
//! runs alone (the writer lock) inside its own SAVEPOINT, so a failing write
//! rolls back only itself; a write that succeeds releases its savepoint and
//! waits for the shared COMMIT. Whoever finishes while nobody else is queued
//! commits the batch and tells every member the outcome. No write is
//! acknowledged before the fsync that makes it durable.
//!
//! Writes that only append to the log (the gateway's call records, most of
//! the log) do not take a turn each: they queue their events, and one drainer
//! per batch takes the whole queue in its single turn. Handing the writer lock
//! from task to task cost more than building an entry. On an SQLite file, a
//! drainer that finds no batch open writes its queue in one hand-off instead
//! (`direct`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{AnyConnection, AnyPool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};

use super::audit::{self, AUDIT_LOCK, AuditBuffer, AuditMark, Prepared};
use super::db_error;
use super::direct::Direct;
use super::tally::{Counted, Tally};
use crate::{Backend, Result, StoreError};

/// Upper bound on writes per shared transaction, so one batch cannot grow
/// without limit under sustained load.
const MAX_BATCH: usize = 512;

struct Batch {
    tx: Transaction<'static, sqlx::Any>,
    /// Writes whose savepoints were released, awaiting the COMMIT.
    members: Vec<oneshot::Sender<Result<()>>>,
    /// The batch's audit entries, inserted together just before the COMMIT.
    audit: AuditBuffer,
    /// Counts of plain decisions, written before the batch's next statement.
    tally: Tally,
}

#[derive(Clone)]
pub(crate) struct GroupWriter {
    pool: AnyPool,
    backend: Backend,
    batch: Arc<Mutex<Option<Batch>>>,
    /// Writes queued for the writer lock: while any are, a finished write
    /// leaves the COMMIT to them.
    waiting: Arc<AtomicUsize>,
    /// Append-only writes waiting for a drainer to take them into a batch.
    appends: Arc<std::sync::Mutex<Vec<Append>>>,
    /// On an SQLite file, where a batch of appends alone is written.
    direct: Option<Arc<Direct>>,
}

/// An event to append on its own (with the counts of the decision it
/// records, if any), and where to say at which index it was durably kept.
struct Append {
    event: Prepared,
    counted: Option<Counted>,
    done: oneshot::Sender<Result<u64>>,
}

/// One write's turn on the shared transaction.
pub(crate) struct Turn {
    guard: Option<OwnedMutexGuard<Option<Batch>>>,
    waiting: Arc<AtomicUsize>,
    /// Whether the turn runs SQL of its own, inside a savepoint. A turn that
    /// only appends audit entries needs none: undoing it is forgetting them.
    savepoint: bool,
    /// The batch's audit buffer when the turn began, to undo its appends.
    mark: AuditMark,
}

/// Counts a queued write; if it gives up before its turn (cancelled) and was
/// the last one queued, an open batch would wait forever, so flush it.
struct Queued {
    waiting: Arc<AtomicUsize>,
    batch: Arc<Mutex<Option<Batch>>>,
    armed: bool,
}

impl Drop for Queued {
    fn drop(&mut self) {
        let last = self.waiting.fetch_sub(1, Ordering::SeqCst) == 1;
        if self.armed && last {
            let batch = self.batch.clone();
            let waiting = self.waiting.clone();
            tokio::spawn(async move {
                let mut g = batch.lock_owned().await;
                if waiting.load(Ordering::SeqCst) == 0 {
                    commit_batch(&mut g).await;
                }
            });
        }
    }
}

impl GroupWriter {
    pub(crate) fn new(pool: AnyPool, backend: Backend, direct: Option<Arc<Direct>>) -> Self {
        GroupWriter {
            pool,
            backend,
            batch: Arc::new(Mutex::new(None)),
            waiting: Arc::new(AtomicUsize::new(0)),
            appends: Arc::default(),
            direct,
        }
    }

    /// Appends fail as unavailable after this.
    pub(crate) fn close(&self) {
        if let Some(d) = &self.direct {
            d.close();
        }
    }

    /// Appends `event` with no other change; returns its index once durable.
    ///
    /// The first event queued while no drainer is pending starts one; the
    /// rest ride with it. The drainer is a task of its own, so a caller that
    /// gives up cannot strand the events queued behind its own.
    /// The event comes serialised, by the caller's task, not by the drainer
    /// while it holds the log's writer.
    pub(crate) async fn append(&self, event: Prepared, counted: Option<Counted>) -> Result<u64> {
        let (done, rx) = oneshot::channel();
        let first = {
            let mut queue = self.appends.lock().unwrap_or_else(|e| e.into_inner());
            queue.push(Append {
                event,
                counted,
                done,
            });
            queue.len() == 1
        };
        if first {
            tokio::spawn(self.clone().drain_appends());
        }
        rx.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the group commit was abandoned".into(),
            ))
        })
    }

    /// Takes every queued append into one turn of the batch and reports
    /// each index once the batch is committed.
    async fn drain_appends(self) {
        if let Some(direct) = &self.direct {
            // Holding the batch's lock keeps every other write of this
            // process out until these appends are committed.
            let guard = self.batch.clone().lock_owned().await;
            if guard.is_none() {
                let (entries, done): (Vec<_>, Vec<_>) = self
                    .take_appends()
                    .into_iter()
                    .map(|a| ((a.event, a.counted), a.done))
                    .unzip();
                let written = direct.append(entries).await;
                drop(guard);
                return settle(written, done);
            }
            // A batch of guarded writes is open: the appends join it.
        }
        let turn = self.turn(false).await;
        // Taken after the turn began: whatever queued while this drainer
        // waited for the writer lock joins the same batch.
        let queued = self.take_appends();
        let mut turn = match turn {
            Ok(t) => t,
            Err(e) => return fail(queued.into_iter().map(|a| a.done), &e),
        };
        let mut kept = Vec::with_capacity(queued.len());
        let mut queued = queued.into_iter();
        while let Some(a) = queued.next() {
            let (conn, buffer) = turn.audit();
            match audit::append_to(conn, buffer, a.event).await {
                Ok(index) => {
                    if let Some(c) = a.counted {
                        turn.batch().tally.add(c);
                    }
                    kept.push((index, a.done));
                }
                Err(e) => {
                    // Dropping the turn forgets what it appended.
                    drop(turn);
                    let rest = queued.map(|a| a.done);
                    let all = kept.into_iter().map(|(_, d)| d).chain([a.done]).chain(rest);
                    return fail(all, &e);
                }
            }
        }
        let (indexes, done): (Vec<_>, Vec<_>) = kept.into_iter().unzip();
        settle(turn.commit().await.map(|()| indexes), done);
    }

    fn take_appends(&self) -> Vec<Append> {
        std::mem::take(&mut *self.appends.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits for the writer lock and joins (or opens) the batch. A turn that
    /// runs statements starts a savepoint; one that only appends audit
    /// entries needs none (undoing it is forgetting them).
    pub(crate) async fn turn(&self, savepoint: bool) -> Result<Turn> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut queued = Queued {
            waiting: self.waiting.clone(),
            batch: self.batch.clone(),
            armed: true,
        };
        let mut guard = self.batch.clone().lock_owned().await;
        queued.armed = false;
        drop(queued);
        if guard.is_none() {
            let tx = self.begin_batch().await?;
            *guard = Some(Batch {
                tx,
                members: Vec::new(),
                audit: AuditBuffer::default(),
                tally: Tally::default(),
            });
        } else if savepoint
            && let Some(batch) = guard.as_mut()
            && !batch.tally.is_empty()
            && let Err(e) = batch.tally.flush(&mut batch.tx).await
        {
            // Some counts may be written and some not: nothing of the batch
            // can be kept.
            abandon(&mut guard, &e);
            return Err(e);
        }
        let mark = guard.as_ref().expect("an open batch").audit.mark();
        let mut turn = Turn {
            guard: Some(guard),
            waiting: self.waiting.clone(),
            savepoint,
            mark,
        };
        if savepoint
            && let Err(e) = sqlx::raw_sql("SAVEPOINT write_op")
                .execute(turn.conn())
                .await
        {
            // Leave the batch as it was; `Drop` finishes the turn.
            return Err(db_error(e));
        }
        Ok(turn)
    }
}

impl GroupWriter {
    /// A transaction holding the log's write lock until it ends.
    async fn begin_batch(&self) -> Result<Transaction<'static, sqlx::Any>> {
        match self.backend {
            // IMMEDIATE takes the write lock up front, so another process's
            // writer makes us wait (busy_timeout) instead of failing mid-way.
            Backend::Sqlite => self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(db_error),
            // The advisory lock first, before any row lock: batches of
            // different nodes then queue on it and can never deadlock.
            Backend::Postgres => {
                let mut tx = self.pool.begin().await.map_err(db_error)?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(AUDIT_LOCK)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                Ok(tx)
            }
        }
    }
}

/// Tells each waiting append its index once the batch committed, or every
/// one of them why it did not.
fn settle(committed: Result<Vec<u64>>, waiting: Vec<oneshot::Sender<Result<u64>>>) {
    match committed {
        Ok(indexes) => {
            for (index, done) in indexes.into_iter().zip(waiting) {
                let _ = done.send(Ok(index));
            }
        }
        Err(e) => fail(waiting, &e),
    }
}

/// Tells each waiting append that it was not kept.
fn fail(waiting: impl IntoIterator<Item = oneshot::Sender<Result<u64>>>, e: &StoreError) {
    for done in waiting {
        let _ = done.send(Err(StoreError::Unavailable(format!("not appended: {e}"))));
    }
}

/// Ends the batch without keeping anything, failing every member.
fn abandon(g: &mut Option<Batch>, e: &StoreError) {
    tracing::error!(error = %e, "abandoning a group-commit batch");
    if let Some(b) = g.take() {
        for m in b.members {
            let _ = m.send(Err(StoreError::Unavailable(format!(
                "group commit abandoned: {e}"
            ))));
        }
    }
}

async fn commit_batch(g: &mut Option<Batch>) {
    let Some(mut batch) = g.take() else { return };
    let flushed = match batch.tally.flush(&mut batch.tx).await {
        Ok(()) => batch.audit.flush(&mut batch.tx).await,
        Err(e) => Err(e),
    };
    let result = match flushed {
        Ok(()) => batch.tx.commit().await.map_err(db_error),
        // Dropping the transaction rolls it back: nothing of the batch is kept.
        Err(e) => Err(e),
    };
    for m in batch.members {
        let _ = m.send(match &result {
            Ok(()) => Ok(()),
            Err(e) => Err(StoreError::Unavailable(format!("group commit failed: {e}"))),
        });
    }
}

impl Turn {
    fn batch(&mut self) -> &mut Batch {
        self.guard
            .as_mut()
            .and_then(|g| g.as_mut())
            .expect("a turn holds an open batch")
    }

    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        debug_assert!(self.savepoint, "an append-only turn runs no statement");
        &mut self.batch().tx
    }

    /// The connection (to read the tail once) and the batch's audit buffer.
    pub(crate) fn audit(&mut self) -> (&mut AnyConnection, &mut AuditBuffer) {
        let batch = self.batch();
        (&mut batch.tx, &mut batch.audit)
    }

    /// Inserts the batch's waiting audit rows, for a write about to read the log.
    pub(crate) async fn flush_audit(&mut self) -> Result<()> {
        let batch = self.batch();
        batch.audit.flush(&mut batch.tx).await
    }

    fn nobody_waiting(&self, members: usize) -> bool {
        self.waiting.load(Ordering::SeqCst) == 0 || members >= MAX_BATCH
    }

    /// Keeps this write and returns once it is durably committed.
    pub(crate) async fn commit(mut self) -> Result<()> {
        let mut guard = self.guard.take().expect("a turn commits once");
        if self.savepoint
            && let Err(e) = sqlx::raw_sql("RELEASE SAVEPOINT write_op")
                .execute(&mut *guard.as_mut().expect("open batch").tx)
                .await
        {
            self.guard = Some(guard);
            return Err(db_error(e));
        }
        let (tx, rx) = oneshot::channel();
        let batch = guard.as_mut().expect("open batch");
        batch.members.push(tx);
        if self.nobody_waiting(batch.members.len()) {
            commit_batch(&mut guard).await;
        }
        drop(guard);
        rx.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the group commit was abandoned".into(),
            ))
        })
    }
}

impl Drop for Turn {
    /// A write that did not commit (an error, or cancellation) is undone to
    /// its savepoint; the batch goes on, and is committed here if nobody else
    /// is queued to do it.
    fn drop(&mut self) {
        let Some(mut guard) = self.guard.take() else {
            return;
        };
        if let Some(batch) = guard.as_mut() {
            batch.audit.undo(self.mark);
        }
        let waiting = self.waiting.clone();
        let savepoint = self.savepoint;
        tokio::spawn(async move {
            let Some(batch) = guard.as_mut() else { return };
            let undo = if savepoint {
                sqlx::raw_sql("ROLLBACK TO SAVEPOINT write_op; RELEASE SAVEPOINT write_op")
                    .execute(&mut *batch.tx)
                    .await
                    .map(drop)
            } else {
                Ok(())
            };
            if let Err(e) = undo {
                // The shared transaction is unusable: fail every member.
                abandon(&mut guard, &db_error(e));
                return;
            }
            if batch.members.is_empty() && waiting.load(Ordering::SeqCst) == 0 {
                // Nothing to keep: end the transaction so the file lock is released.
                if let Some(b) = guard.take() {
                    let _ = b.tx.rollback().await;
                }
            } else if waiting.load(Ordering::SeqCst) == 0 || batch.members.len() >= MAX_BATCH {
                commit_batch(&mut guard).await;
            }
        });
    }
}
