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
//! On an SQLite file ([`Inline`]) even the one statement's hand-off to sqlx's
//! worker thread (and its rows' way back) cost more CPU than the read, under
//! load about a third of a decision's. The read is an indexed lookup of a
//! few pages from a WAL database, which never waits for the writer, so it
//! runs on the caller's thread, through SQLite's own API (`rusqlite`, on the
//! same SQLite as sqlx's), in microseconds.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool};
use tokio::sync::Semaphore;

use super::convert::Columns;
use super::{ACQUIRE_TIMEOUT, db_error};
use crate::{Backend, Result, StoreError};

/// Where decisions' reads go: by backend (see the module doc).
pub(crate) enum Readers {
    Inline(Inline),
    Kept(Kept),
}

/// The file of an SQLite database; `None` on PostgreSQL and for an
/// in-memory SQLite database, which no other connection sees.
pub(crate) async fn sqlite_file(pool: &AnyPool, backend: Backend) -> Result<Option<PathBuf>> {
    if backend != Backend::Sqlite {
        return Ok(None);
    }
    let file: String =
        sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_one(pool)
            .await
            .map_err(db_error)?;
    Ok((!file.is_empty()).then(|| file.into()))
}

impl Readers {
    /// Inline readers for an SQLite `file`, kept sqlx connections otherwise.
    pub(crate) fn new(pool: &AnyPool, file: Option<PathBuf>, connections: usize) -> Self {
        match file {
            Some(file) => Readers::Inline(Inline::new(file, connections)),
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

/// SQLite connections of this process, each used by one read at a time.
pub(crate) struct Inline {
    path: PathBuf,
    idle: Mutex<Option<Vec<rusqlite::Connection>>>,
    /// Connections kept idle at most; a busier moment opens more and closes
    /// them after.
    keep: usize,
}

impl Inline {
    fn new(path: PathBuf, keep: usize) -> Self {
        Inline {
            path,
            idle: Mutex::new(Some(Vec::with_capacity(keep))),
            keep,
        }
    }

    /// Runs `read` on a connection, on this thread.
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> Result<T>,
    ) -> Result<T> {
        let kept = match self.idle.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            None => return Err(StoreError::Unavailable("the store is closing".into())),
            Some(idle) => idle.pop(),
        };
        let conn = match kept {
            Some(c) => c,
            None => self.open()?,
        };
        let out = read(&conn);
        // A connection whose read failed is closed rather than reused: what
        // failed may have been the connection.
        if out.is_ok()
            && let Some(idle) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
            && idle.len() < self.keep
        {
            idle.push(conn);
        }
        out
    }

    fn open(&self) -> Result<rusqlite::Connection> {
        let conn = open_existing(&self.path, INLINE_BUSY)?;
        // Read-write only so that it may share the WAL index as sqlx's
        // connections do; it never writes.
        conn.pragma_update(None, "query_only", true)
            .map_err(sqlite_error)?;
        Ok(conn)
    }

    fn close(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// A connection of this process's own to the store's SQLite file, waiting
/// up to `busy` for a lock. Never creates the file: the store opened (and
/// migrated) it.
pub(crate) fn open_existing(path: &Path, busy: Duration) -> Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_error)?;
    conn.busy_timeout(busy).map_err(sqlite_error)?;
    Ok(conn)
}

/// Maps an error of SQLite's own API onto the store's error kinds.
pub(crate) fn sqlite_error(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{CannotOpen, DatabaseBusy, DatabaseLocked};
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked | CannotOpen) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Internal(e.to_string()),
    }
}

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
