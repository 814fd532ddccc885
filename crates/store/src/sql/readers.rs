//! Connections kept for the read every decision makes, outside sqlx's pool.
//!
//! sqlx's pool pings a connection when it hands it out and again, always,
//! when it is given back. On SQLite each ping is a round trip to the
//! connection's worker thread, on PostgreSQL one to the server, so a read of
//! one statement cost three round trips, and under load the thread switches
//! cost more CPU than the reads. A decision's read takes its connection from
//! here and gives it back here, with neither ping: only the statement itself
//! goes to the database, which still answers every read (nothing read is
//! kept; this is connection reuse, not a cache).
//!
//! The pings guard against two things, handled here instead. A connection
//! left mid-statement by a cancelled request is never given back: it lives
//! in the cancelled future and is closed with it. A connection that went
//! stale (PostgreSQL restarted) fails its statement: it is closed, and the
//! read is retried once on a fresh connection from the pool (which pings
//! it), so a restart costs no request an error of its own.

use std::sync::Mutex;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool};
use tokio::sync::Semaphore;

use super::{ACQUIRE_TIMEOUT, db_error};
use crate::{Result, StoreError};

pub(crate) struct Readers {
    pool: AnyPool,
    idle: Mutex<Vec<AnyConnection>>,
    /// One permit per connection kept here: at most that many reads at once,
    /// the others wait (as they would for the pool).
    permits: Semaphore,
}

impl Readers {
    pub(crate) fn new(pool: AnyPool, connections: usize) -> Self {
        Readers {
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

    /// Closes the kept connections; reads after this fail as unavailable.
    pub(crate) fn close(&self) {
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
