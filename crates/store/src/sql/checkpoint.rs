//! The SQLite WAL's checkpoints, mostly moved off the appends' path.
//!
//! Left to itself, SQLite checkpoints inside whichever COMMIT takes the WAL
//! past 1,000 pages: that COMMIT copies the pages into the database file and
//! fsyncs it too, and every decision waiting on the batch waits with it.
//! Under load that was a few times a second, a few milliseconds each: the
//! latency's tail. The append connection ([`super::direct`]) turns automatic
//! checkpoints off and wakes this thread instead, which runs PASSIVE
//! checkpoints on a connection of its own: they never wait for the writer
//! nor make it wait, and copy only what every reader is done with.
//!
//! The WAL is reused from its start only when a write begins with every frame
//! already copied; a checkpoint racing the writer never gets there, and the
//! WAL would grow without end (and each commit's fsync with it). So once the
//! thread has copied the bulk, the writer copies the few frames committed
//! since itself, right after its next commit.
//!
//! Durability is unchanged: a commit is durable once its WAL frames are
//! synced, which the COMMIT still does itself.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use super::sqlite::{Connections, sqlite_error};
use crate::Result;

/// Commits between two checkpoints. A busy batch adds a few dozen pages to
/// the WAL, a lone decision a couple: this keeps the WAL within SQLite's own
/// 1,000-page mark under load, and a quiet server's WAL small too.
pub(crate) const COMMITS_PER_CHECKPOINT: u64 = 32;

/// How long the checkpoint waits for a lock another connection holds briefly.
const BUSY: Duration = Duration::from_secs(1);

/// The checkpoint thread's handle: tell it of commits. The thread ends when
/// the handle is closed or dropped.
pub(crate) struct Checkpointer {
    /// The thread's wake-up; `None` when there is no thread (it could not
    /// start, it stopped, or the store closed): then the writer checkpoints.
    poke: Mutex<Option<SyncSender<()>>>,
    commits: AtomicU64,
    /// Set by the thread after a checkpoint: the writer's catch-up is due.
    copied: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Starts the thread for the database at `path`; if it cannot start
    /// (a warning), the writer checkpoints itself.
    pub(crate) fn start(path: PathBuf) -> Self {
        // One pending poke is enough: a checkpoint copies everything so far.
        let (poke, pokes) = mpsc::sync_channel(1);
        let conns = Connections::new(path, BUSY, "", 1);
        let copied = Arc::new(AtomicBool::new(false));
        let done = copied.clone();
        let started = std::thread::Builder::new()
            .name("mandate-checkpoint".into())
            .spawn(move || run(&conns, &pokes, &done));
        let poke = match started {
            Ok(_) => Some(poke),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the WAL checkpoint thread; the writer checkpoints");
                None
            }
        };
        Checkpointer {
            poke: Mutex::new(poke),
            commits: AtomicU64::new(0),
            copied,
        }
    }

    /// After a commit on the append connection `conn`: copies what was
    /// committed since the thread's last checkpoint, if it has run, and
    /// every [`COMMITS_PER_CHECKPOINT`] wakes the thread (or, without one,
    /// checkpoints). The commit stands whatever happens here.
    pub(crate) fn committed(&self, conn: &Connection) {
        if self.copied.swap(false, Ordering::AcqRel) {
            checkpoint_or_warn(conn);
        }
        let commits = self.commits.fetch_add(1, Ordering::Relaxed) + 1;
        if !commits.is_multiple_of(COMMITS_PER_CHECKPOINT) {
            return;
        }
        let mut poke = self.poke.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = poke.as_ref()
            // Full: a checkpoint is already due, and it covers this commit.
            && let Err(TrySendError::Disconnected(())) = p.try_send(())
        {
            tracing::warn!("the WAL checkpoint thread has stopped; the writer checkpoints");
            *poke = None;
        }
        if poke.is_none() {
            checkpoint_or_warn(conn);
        }
    }

    /// Ends the thread (after the checkpoint it may be running).
    pub(crate) fn close(&self) {
        self.poke.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

fn run(conns: &Connections, pokes: &Receiver<()>, copied: &AtomicBool) {
    while pokes.recv().is_ok() {
        match conns.with(|c| checkpoint(c)) {
            Ok(_) => copied.store(true, Ordering::Release),
            // The next wake-up tries again; the WAL only grows meanwhile.
            Err(e) => warn_failed(&e),
        }
    }
}

/// On the writer's connection, where a failed checkpoint only gets logged.
fn checkpoint_or_warn(conn: &Connection) {
    if let Err(e) = checkpoint(conn) {
        warn_failed(&e);
    }
}

fn warn_failed(e: &crate::StoreError) {
    tracing::warn!(error = %e, "WAL checkpoint failed");
}

/// One passive checkpoint: (frames in the WAL, frames now in the database).
fn checkpoint(conn: &Connection) -> Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
    .map_err(sqlite_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection that writes without checkpointing, as the append
    /// connection does, with `pages` pages of rows committed to the WAL.
    fn written(path: &std::path::Path, pages: usize) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(path).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE t (b BLOB NOT NULL)",
        )
        .unwrap();
        for _ in 0..pages {
            c.execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .unwrap();
        }
        c
    }

    fn size(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    #[test]
    fn enough_commits_get_the_wal_copied_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        // Kept open: the last connection to close would checkpoint itself.
        let writer = written(&path, 200);
        let before = size(&path);
        let checkpointer = Checkpointer::start(path.clone());
        for _ in 0..COMMITS_PER_CHECKPOINT - 1 {
            checkpointer.committed(&writer);
        }
        // One commit short of a checkpoint: nothing is copied.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(size(&path), before);
        checkpointer.committed(&writer);
        let copied = (0..500).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            size(&path) >= before + 200 * 4000
        });
        assert!(copied, "the database file stayed at {} bytes", size(&path));
    }

    #[test]
    fn a_busy_writer_keeps_reusing_the_wal_instead_of_growing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = written(&path, 0);
        let checkpointer = Checkpointer::start(path.clone());
        let wal = dir.path().join("t.db-wal");
        // Without the writer's catch-up, each commit's page would be a new
        // frame at the WAL's end: 3,000 frames, 12 MB.
        for _ in 0..3_000 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .unwrap();
            checkpointer.committed(&writer);
        }
        assert!(size(&wal) < 3 << 20, "the WAL grew to {} bytes", size(&wal));
    }

    #[test]
    fn a_checkpoint_reports_every_frame_copied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let _writer = written(&path, 50);
        let conn = rusqlite::Connection::open(path).unwrap();
        let (frames, copied) = checkpoint(&conn).unwrap();
        assert!(frames >= 50, "{frames} frames");
        assert_eq!(copied, frames);
    }
}
