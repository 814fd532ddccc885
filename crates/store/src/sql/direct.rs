//! On an SQLite file, a batch of appends alone written in one hand-off.
//!
//! Most writes only append to the log: a plain decision's record and counts,
//! the gateway's call records. Through sqlx, their batch was six statements
//! (BEGIN, the log's tail, the counts, the rows, COMMIT), each a round trip
//! to the connection's worker thread; under load those hand-offs cost more
//! CPU than SQLite's work. Here the whole batch is one job on a blocking
//! thread, through SQLite's own API (`rusqlite`, on the same SQLite as
//! sqlx's): the same statements (`statement`), the same transaction and
//! fsync. The group writer sends a batch here only when no sqlx batch is
//! open, so the two never wait for each other's file lock.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::audit::{AuditBuffer, Prepared, sqlite_tail};
use super::checkpoint::Checkpointer;
use super::sqlite::{Connections, sqlite_error};
use super::tally::{Counted, Tally};
use crate::{Result, StoreError};

/// As long as sqlx's connections wait for another process's writer.
const BUSY: Duration = Duration::from_secs(5);

/// The connection appends go through (one: the group writer sends one batch
/// at a time), opened on first use.
pub(crate) struct Direct {
    conn: Connections,
    checkpoints: Checkpointer,
}

/// An event to append, with the counts of the decision it records.
pub(crate) type Entry = (Prepared, Option<Counted>);

impl Direct {
    pub(crate) fn new(path: PathBuf) -> Arc<Self> {
        // As sqlx's connections (`SqlStore::connect`): an acknowledged
        // commit survives a crash. Checkpoints are the checkpointer's.
        let setup =
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0";
        Arc::new(Direct {
            checkpoints: Checkpointer::start(path.clone()),
            conn: Connections::new(path, BUSY, setup, 1),
        })
    }

    /// Appends `entries` in one transaction; their indexes, once durable.
    pub(crate) async fn append(self: &Arc<Self>, entries: Vec<Entry>) -> Result<Vec<u64>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            this.conn.with(|c| {
                let indexes = write(c, entries)?;
                this.checkpoints.committed(c);
                Ok(indexes)
            })
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the append's thread failed: {e}")))?
    }

    pub(crate) fn close(&self) {
        self.conn.close();
        self.checkpoints.close();
    }
}

/// The batch: the log's tail, the counts, the rows, COMMIT. An error rolls
/// all of it back (dropping the transaction does).
fn write(conn: &mut Connection, entries: Vec<Entry>) -> Result<Vec<u64>> {
    // IMMEDIATE: another process's writer makes this wait (busy), not fail.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    let mut audit = AuditBuffer::after(sqlite_tail(&tx)?);
    let mut tally = Tally::default();
    let mut indexes = Vec::with_capacity(entries.len());
    for (event, counted) in entries {
        indexes.push(audit.append(event));
        if let Some(c) = counted {
            tally.add(c);
        }
    }
    for statement in tally.take(true).iter().chain(&audit.inserts()) {
        statement.run_sqlite(&tx)?;
    }
    tx.commit().map_err(sqlite_error)?;
    Ok(indexes)
}
