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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::audit::{AuditBuffer, Prepared, sqlite_tail};
use super::readers::{open_existing, sqlite_error};
use super::tally::{Counted, Tally};
use crate::{Result, StoreError};

/// As long as sqlx's connections wait for another process's writer.
const BUSY: Duration = Duration::from_secs(5);

/// The connection appends go through, opened on first use.
pub(crate) struct Direct {
    path: PathBuf,
    /// `None` once the store is closed.
    conn: Mutex<Option<Option<Connection>>>,
}

/// An event to append, with the counts of the decision it records.
pub(crate) type Entry = (Prepared, Option<Counted>);

impl Direct {
    pub(crate) fn new(path: PathBuf) -> Arc<Self> {
        Arc::new(Direct {
            path,
            conn: Mutex::new(Some(None)),
        })
    }

    /// Appends `entries` in one transaction; their indexes, once durable.
    pub(crate) async fn append(self: &Arc<Self>, entries: Vec<Entry>) -> Result<Vec<u64>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.append_now(entries))
            .await
            .map_err(|e| StoreError::Unavailable(format!("the append's thread failed: {e}")))?
    }

    fn append_now(&self, entries: Vec<Entry>) -> Result<Vec<u64>> {
        let kept = match self.conn.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            None => return Err(StoreError::Unavailable("the store is closing".into())),
            Some(slot) => slot.take(),
        };
        let mut conn = match kept {
            Some(c) => c,
            None => self.open()?,
        };
        let out = write(&mut conn, entries);
        // As with reads: a connection whose write failed is not reused.
        if out.is_ok()
            && let Some(slot) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
        {
            *slot = Some(conn);
        }
        out
    }

    fn open(&self) -> Result<Connection> {
        let conn = open_existing(&self.path, BUSY)?;
        // As sqlx's connections (`SqlStore::connect`): an acknowledged
        // commit survives a crash.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sqlite_error)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(sqlite_error)?;
        Ok(conn)
    }

    pub(crate) fn close(&self) {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).take();
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
    for statement in tally.take(true).iter().chain(&audit.inserts(true)) {
        statement.run_sqlite(&tx)?;
    }
    tx.commit().map_err(sqlite_error)?;
    Ok(indexes)
}
