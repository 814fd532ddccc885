//! This process's own connections to the store's SQLite file, beside sqlx's
//! pool, through SQLite's C API (`rusqlite`, on the same SQLite as sqlx's).
//!
//! Used where a hand-off to sqlx's worker thread cost more than SQLite's
//! work: a decision's read (`readers`) and a batch of appends (`direct`).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::Connection;
use sqlx::AnyPool;

use super::db_error;
use crate::{Backend, Result, StoreError};

/// The file of an SQLite database; `None` on PostgreSQL and for an
/// in-memory SQLite database, which no other connection sees.
pub(crate) async fn file(pool: &AnyPool, backend: Backend) -> Result<Option<PathBuf>> {
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

/// Connections to one file, each used by one caller at a time, opened when
/// none is idle.
pub(crate) struct Connections {
    path: PathBuf,
    /// Longest a statement waits for another connection's lock.
    busy: Duration,
    /// Run on each connection as it opens (its `PRAGMA`s).
    setup: &'static str,
    /// `None` once closed.
    idle: Mutex<Option<Vec<Connection>>>,
    /// Connections kept idle at most; a busier moment opens more and closes
    /// them after.
    keep: usize,
}

impl Connections {
    pub(crate) fn new(path: PathBuf, busy: Duration, setup: &'static str, keep: usize) -> Self {
        Connections {
            path,
            busy,
            setup,
            idle: Mutex::new(Some(Vec::with_capacity(keep))),
            keep,
        }
    }

    /// Runs `work` on a connection, on this thread; unavailable once closed.
    pub(crate) fn with<T>(&self, work: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let kept = match self.idle.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            None => return Err(StoreError::Unavailable("the store is closing".into())),
            Some(idle) => idle.pop(),
        };
        let mut conn = match kept {
            Some(c) => c,
            None => self.open()?,
        };
        let out = work(&mut conn);
        // A connection whose work failed is closed rather than reused: what
        // failed may have been the connection.
        if out.is_ok()
            && let Some(idle) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
            && idle.len() < self.keep
        {
            idle.push(conn);
        }
        out
    }

    fn open(&self) -> Result<Connection> {
        use rusqlite::OpenFlags;
        // Never creates the file: the store opened (and migrated) it.
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite_error)?;
        conn.busy_timeout(self.busy).map_err(sqlite_error)?;
        conn.execute_batch(self.setup).map_err(sqlite_error)?;
        Ok(conn)
    }

    /// Closes the idle connections; work after this fails as unavailable.
    pub(crate) fn close(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Maps an error of SQLite's own API onto the store's error kinds.
pub(crate) fn sqlite_error(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{CannotOpen, DatabaseBusy, DatabaseLocked};
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked | CannotOpen) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Internal(e.to_string()),
    }
}
