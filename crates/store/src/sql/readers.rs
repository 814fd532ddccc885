//! Connections for the read every decision makes, outside sqlx's pool.
//!
//! sqlx's pool pings a connection when it hands it out and again, always,
//! when it is given back. On SQLite each ping is a round trip to the
//! connection's worker thread, on PostgreSQL one to the server, so a read of
//! one statement cost three round trips, and under load the thread switches
//! cost more CPU than the reads. Nothing read here is kept: every read goes
//! to the database (this is connection reuse, not a cache).
//!
//! On PostgreSQL ([`Kept`]) a decision's read takes a sqlx connection from
//! here and gives it back here, with neither ping. The pings guard against
//! two things, handled here instead. A connection left mid-statement by a
//! cancelled request is never given back: it lives in the cancelled future
//! and is closed with it. A connection that went stale (PostgreSQL
//! restarted) fails its statement: it is closed, and the read is retried
//! once on a fresh connection from the pool (which pings it), so a restart
//! costs no request an error of its own.
//!
//! On an SQLite file ([`Readers::Inline`], the `sqlite` module's
//! connections) even the one statement's hand-off to sqlx's
//! worker thread (and its rows' way back) cost more CPU than the read, under
//! load about a third of a decision's. The read is an indexed lookup of a
//! few pages from a WAL database, which never waits for the writer, so it
//! runs on the caller's thread, through SQLite's own API (`rusqlite`, on the
//! same SQLite as sqlx's), in microseconds.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool};
use tokio::sync::Semaphore;

use super::convert::Columns;
use super::sqlite::{Connections, sqlite_error};
use super::{ACQUIRE_TIMEOUT, db_error};
use crate::{Result, StoreError};

/// Where decisions' reads go: by backend (see the module doc).
pub(crate) enum Readers {
    Inline(Connections),
    Kept(Kept),
}

impl Readers {
    /// Inline readers for an SQLite `file`, kept sqlx connections otherwise.
    pub(crate) fn new(pool: &AnyPool, file: Option<PathBuf>, connections: usize) -> Self {
        match file {
            // Opened read-write, so that they share the WAL index as sqlx's
            // connections do, but `query_only`: they never write.
            Some(file) => Readers::Inline(Connections::new(
                file,
                INLINE_BUSY,
                "PRAGMA query_only = ON",
                connections,
            )),
            None => Readers::Kept(Kept::new(pool.clone(), connections)),
        }
    }

    /// Closes the kept connections; reads after this fail as unavailable.
    pub(crate) fn close(&self) {
        match self {
            Readers::Inline(r) => r.close(),
            Readers::Kept(r) => r.close(),
        }
    }
}

/// Longest an inline read waits on a lock. Readers of a WAL database wait
/// only in rare moments (another process recovering the log); the wait
/// holds the caller's thread, so it is short, and past it the read fails as
/// unavailable (503, retried by the client).
const INLINE_BUSY: Duration = Duration::from_millis(100);

/// A row of the inline reader, its columns found by name in `names` (the
/// statement's, read once per query): rusqlite's own lookup by name measures
/// every column name's length for each value read, which cost more than the
/// row's decoding.
pub(crate) struct Named<'a> {
    pub(crate) row: &'a rusqlite::Row<'a>,
    pub(crate) names: &'a [String],
}

impl Named<'_> {
    fn get<T: rusqlite::types::FromSql>(&self, col: &str) -> Result<T> {
        let i = self
            .names
            .iter()
            .position(|n| n == col)
            .ok_or_else(|| StoreError::Internal(format!("no column {col} in the read")))?;
        self.row.get(i).map_err(sqlite_error)
    }
}

impl Columns for Named<'_> {
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        self.get(col)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        self.get(col)
    }
}

/// sqlx connections kept for reads, besides the pool's.
pub(crate) struct Kept {
    pool: AnyPool,
    idle: Mutex<Vec<AnyConnection>>,
    /// One permit per connection kept here: at most that many reads at once,
    /// the others wait (as they would for the pool).
    permits: Semaphore,
}

impl Kept {
    fn new(pool: AnyPool, connections: usize) -> Self {
        Kept {
            pool,
            idle: Mutex::new(Vec::with_capacity(connections)),
            permits: Semaphore::new(connections),
        }
    }

    /// Runs the query `make` builds and returns its rows.
    pub(crate) async fn fetch_all<'q>(
        &self,
        make: impl Fn() -> Query<'q, Any, AnyArguments>,
    ) -> Result<Vec<AnyRow>> {
        let _permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.permits.acquire())
            .await
            .map_err(|_| StoreError::Unavailable("no database connection came free".into()))?
            .map_err(|_| StoreError::Unavailable("the store is closing".into()))?;
        let kept = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(mut conn) = kept {
            match make().fetch_all(&mut conn).await {
                Ok(rows) => {
                    self.give_back(conn);
                    return Ok(rows);
                }
                // Possibly stale: close it (by dropping) and retry once below.
                Err(e) => tracing::debug!(error = %e, "a kept read connection failed; retrying"),
            }
        }
        let mut conn = self.pool.acquire().await.map_err(db_error)?.detach();
        let rows = make().fetch_all(&mut conn).await.map_err(db_error)?;
        self.give_back(conn);
        Ok(rows)
    }

    fn close(&self) {
        self.permits.close();
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn give_back(&self, conn: AnyConnection) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }
}
