//! Appending to and reading the audit log.

use mandate_core::audit::Hash;
use mandate_core::audit::checkpoint::SignedCheckpoint;
use mandate_core::audit::event::{EncodedEvent, EventKind, GENESIS_PREV};
use mandate_core::audit::verify::StoredEntry;
use mandate_core::audit::{AuditEvent, hash_from_hex, to_hex};
use mandate_core::ids::{AgentId, HumanId, TaskId};
use mandate_core::time::Timestamp;
use serde_json::value::RawValue;
use sqlx::AnyConnection;
use sqlx::{AnyPool, Row};

use super::sqlite::sqlite_error;
use super::statement::{Sql, Statement, Value};
use super::{SqlStore, WriteTx, db_error, placeholders};
use crate::{Result, StoreError};

/// Key of the PostgreSQL advisory lock that orders audit appends from every
/// node, so leaf indexes stay dense and the hash chain unbroken.
pub(crate) const AUDIT_LOCK: i64 = 0x006d_616e_6461_7465; // "mandate"

/// Appends `event` inside the caller's write; returns its index.
///
/// The entry joins the group-commit batch's [`AuditBuffer`] and reaches the
/// table with the rest of the batch just before its COMMIT, so an event costs
/// no statement of its own.
pub(crate) async fn append(w: &mut WriteTx<'_>, event: AuditEvent) -> Result<u64> {
    append_prepared(w, Prepared::new(&event)).await
}

/// [`append`] for an event already prepared.
pub(crate) async fn append_prepared(w: &mut WriteTx<'_>, event: Prepared) -> Result<u64> {
    let (conn, buffer) = w.audit_buffer();
    append_to(conn, buffer, event).await
}

/// Appends `event` to the batch's buffer, reading the log's tail the first
/// time the batch appends (`conn` holds the batch's write lock).
pub(crate) async fn append_to(
    conn: &mut AnyConnection,
    buffer: &mut AuditBuffer,
    event: Prepared,
) -> Result<u64> {
    let prev = match buffer.tail {
        Some(tail) => tail,
        None => tail(conn).await?,
    };
    Ok(buffer.push(prev, event))
}

/// An event ready to append but for its place in the log: serialised, with
/// its index columns. Preparing needs no lock, so an append does it before
/// it queues for the log's single writer.
pub(crate) struct Prepared {
    kind: &'static str,
    at: i64,
    agent: Option<String>,
    human: Option<String>,
    /// Index columns beside the hashed entry: see [`task_columns`].
    task: Option<String>,
    root: Option<String>,
    encoded: EncodedEvent,
}

impl Prepared {
    pub(crate) fn new(event: &AuditEvent) -> Prepared {
        Prepared::encoded(event, EncodedEvent::new(event))
    }

    /// `event` with its details given as JSON text (see
    /// [`EncodedEvent::with_details`]). Only the details of a task's creation
    /// or delegation fill an index column, and those come as values.
    pub(crate) fn with_details(event: &AuditEvent, details: &RawValue) -> Prepared {
        debug_assert!(task_columns(event).1.is_none() && event.details.is_null());
        Prepared::encoded(event, EncodedEvent::with_details(event, details))
    }

    fn encoded(event: &AuditEvent, encoded: EncodedEvent) -> Prepared {
        let (task, root) = task_columns(event);
        Prepared {
            kind: event.kind.as_str(),
            at: event.at.as_millis(),
            agent: event.agent.map(|a| a.to_string()),
            human: event.human.map(|h| h.to_string()),
            task,
            root,
            encoded,
        }
    }
}

/// One audit row, encoded and hashed, ready to insert.
pub(crate) struct AuditRow {
    index: u64,
    columns: Prepared,
    leaf_hash: [u8; 32],
    entry: String,
}

/// The task an event names and, for a task's creation, the root of its
/// tree: the `task_id` and `root_id` columns, so a tree's entries are an
/// index range (migration 9 fills them the same way for older rows).
fn task_columns(event: &AuditEvent) -> (Option<String>, Option<String>) {
    let task = event.task.map(|t| t.to_string());
    let creation = matches!(
        event.kind,
        EventKind::TaskCreated | EventKind::TaskDelegated
    );
    let root = creation
        .then(|| event.details.get("root")?.as_str().map(str::to_owned))
        .flatten();
    (task, root)
}

impl AuditRow {
    fn new(index: u64, prev: &[u8; 32], columns: Prepared) -> AuditRow {
        let (entry, leaf_hash) = columns.encoded.at(index, prev);
        AuditRow {
            index,
            columns,
            leaf_hash,
            entry,
        }
    }
}

/// Entries appended in a group-commit batch but not yet inserted.
///
/// The batch holds the log's write lock from its start to its COMMIT
/// (SQLite's file lock from `BEGIN IMMEDIATE`; on PostgreSQL the advisory
/// lock every node takes first), so no other connection, process or node can
/// append meanwhile: the tail read once stays the tail, and the rows can wait
/// for one multi-row insert.
#[derive(Default)]
pub(crate) struct AuditBuffer {
    /// The next index and the leaf hash it chains to, once known.
    tail: Option<(u64, [u8; 32])>,
    rows: Vec<AuditRow>,
}

/// Where a buffer stood, to undo one write's appends.
#[derive(Clone, Copy)]
pub(crate) struct AuditMark {
    tail: Option<(u64, [u8; 32])>,
    rows: usize,
}

/// Rows per INSERT: 9 parameters each stays far below SQLite's limit.
const ROWS_PER_INSERT: usize = 512;

impl AuditBuffer {
    /// A buffer for a batch that found the log's tail at `tail`.
    pub(crate) fn after(tail: (u64, [u8; 32])) -> Self {
        AuditBuffer {
            tail: Some(tail),
            rows: Vec::new(),
        }
    }

    /// Appends after the tail the buffer was made with; returns the index.
    pub(crate) fn append(&mut self, event: Prepared) -> u64 {
        let tail = self.tail.expect("a buffer made after the tail");
        self.push(tail, event)
    }

    fn push(&mut self, (index, prev): (u64, [u8; 32]), event: Prepared) -> u64 {
        let row = AuditRow::new(index, &prev, event);
        self.tail = Some((index + 1, row.leaf_hash));
        self.rows.push(row);
        index
    }

    pub(crate) fn mark(&self) -> AuditMark {
        AuditMark {
            tail: self.tail,
            rows: self.rows.len(),
        }
    }

    /// Forgets what was appended since `mark`.
    pub(crate) fn undo(&mut self, mark: AuditMark) {
        self.rows.truncate(mark.rows);
        self.tail = mark.tail;
    }

    /// Inserts the waiting rows; the tail stays known.
    pub(crate) async fn flush(&mut self, conn: &mut AnyConnection) -> Result<()> {
        for statement in self.inserts() {
            statement.run(conn).await?;
        }
        self.rows.clear();
        Ok(())
    }

    /// The statements that insert the waiting rows.
    pub(crate) fn inserts(&self) -> Vec<Statement<'_>> {
        self.rows
            .chunks(ROWS_PER_INSERT)
            .map(|rows| {
                let mut values = Vec::with_capacity(rows.len() * 9);
                for r in rows {
                    let c = &r.columns;
                    values.extend([
                        Value::Int(r.index as i64),
                        Value::text(c.kind),
                        Value::Int(c.at),
                        Value::opt_text(c.agent.as_deref()),
                        Value::opt_text(c.human.as_deref()),
                        Value::owned(to_hex(&r.leaf_hash)),
                        Value::text(&r.entry),
                        Value::opt_text(c.task.as_deref()),
                        Value::opt_text(c.root.as_deref()),
                    ]);
                }
                Statement {
                    sql: Sql::Rows {
                        head: INSERT_HEAD,
                        columns: 9,
                        tail: String::new(),
                    },
                    values,
                }
            })
            .collect()
    }
}

/// The log's INSERT, up to its rows' values.
const INSERT_HEAD: &str = "INSERT INTO audit_log \
     (idx, kind, at, agent_id, human_id, leaf_hash, entry, task_id, root_id) VALUES ";

/// The log's last entry: its index and leaf hash.
const TAIL_SQL: &str = "SELECT idx, leaf_hash FROM audit_log ORDER BY idx DESC LIMIT 1";

/// The next index and the leaf hash it must chain to.
async fn tail(conn: &mut AnyConnection) -> Result<(u64, [u8; 32])> {
    let row = sqlx::query(TAIL_SQL)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
    match row {
        None => next_after(None),
        Some(r) => next_after(Some((
            r.try_get(0).map_err(db_error)?,
            r.try_get(1).map_err(db_error)?,
        ))),
    }
}

/// [`tail`] on an SQLite connection of this process.
pub(crate) fn sqlite_tail(conn: &rusqlite::Connection) -> Result<(u64, [u8; 32])> {
    use rusqlite::OptionalExtension;
    let last = conn
        .prepare_cached(TAIL_SQL)
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(sqlite_error)?;
    next_after(last)
}

/// The next index and the hash to chain to, after the last entry if any.
fn next_after(last: Option<(i64, String)>) -> Result<(u64, [u8; 32])> {
    match last {
        None => Ok((0, GENESIS_PREV)),
        Some((idx, hash)) => {
            let hash = hash_from_hex(&hash).ok_or_else(|| {
                StoreError::Internal(format!("audit entry {idx} has a malformed leaf hash"))
            })?;
            Ok((idx as u64 + 1, hash))
        }
    }
}

pub(crate) async fn len(pool: &AnyPool) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(pool)
        .await
        .map_err(db_error)?;
    Ok(n as u64)
}

pub(crate) async fn end(pool: &AnyPool) -> Result<u64> {
    let last: Option<i64> =
        sqlx::query_scalar("SELECT idx FROM audit_log ORDER BY idx DESC LIMIT 1")
            .fetch_optional(pool)
            .await
            .map_err(db_error)?;
    Ok(last.map_or(0, |i| i as u64 + 1))
}

pub(crate) async fn entries(pool: &AnyPool, from: u64, limit: u32) -> Result<Vec<StoredEntry>> {
    let rows = sqlx::query(
        "SELECT idx, leaf_hash, entry FROM audit_log WHERE idx >= $1 ORDER BY idx LIMIT $2",
    )
    .bind(from as i64)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter().map(stored_entry).collect()
}

pub(crate) async fn leaf_hashes(pool: &AnyPool, from: u64, limit: u32) -> Result<Vec<Hash>> {
    let hashes: Vec<String> =
        sqlx::query_scalar("SELECT leaf_hash FROM audit_log WHERE idx >= $1 ORDER BY idx LIMIT $2")
            .bind(clamp(from))
            .bind(limit as i64)
            .fetch_all(pool)
            .await
            .map_err(db_error)?;
    Ok(hashes.iter().map(|h| stored_hash(h)).collect())
}

/// Newest first, through the `audit_log_by_agent` index.
pub(crate) async fn entries_by_agent(
    pool: &AnyPool,
    agent: AgentId,
    before: Option<u64>,
    limit: u32,
) -> Result<Vec<StoredEntry>> {
    keyed(
        pool,
        "SELECT idx, leaf_hash, entry FROM audit_log WHERE agent_id = $1 AND idx < $2 ORDER BY idx DESC LIMIT $3",
        agent.to_string(),
        before.unwrap_or(u64::MAX),
        limit,
    )
    .await
}

/// Entries naming `task`, in log order from `from`, through `audit_log_by_task`.
pub(crate) async fn entries_by_task(
    pool: &AnyPool,
    task: TaskId,
    from: u64,
    limit: u32,
) -> Result<Vec<StoredEntry>> {
    keyed(
        pool,
        "SELECT idx, leaf_hash, entry FROM audit_log WHERE task_id = $1 AND idx >= $2 ORDER BY idx LIMIT $3",
        task.to_string(),
        from,
        limit,
    )
    .await
}

/// Runs `sql`, whose `$1` is a key column's value, `$2` a leaf index bound
/// and `$3` the limit.
async fn keyed(
    pool: &AnyPool,
    sql: &'static str,
    key: String,
    bound: u64,
    limit: u32,
) -> Result<Vec<StoredEntry>> {
    let rows = sqlx::query(sql)
        .bind(key)
        .bind(clamp(bound))
        .bind(limit as i64)
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    rows.iter().map(stored_entry).collect()
}

/// Entries naming any task whose creation names `root` as its tree's root,
/// with `from <= idx < before`, in log order: the tasks come from
/// `audit_log_by_root`, their entries from `audit_log_by_task`.
pub(crate) async fn entries_by_tree(
    pool: &AnyPool,
    root: TaskId,
    from: u64,
    before: u64,
    limit: u32,
) -> Result<Vec<StoredEntry>> {
    let rows = sqlx::query(
        "SELECT idx, leaf_hash, entry FROM audit_log \
         WHERE task_id IN (SELECT task_id FROM audit_log WHERE root_id = $1) \
         AND idx >= $2 AND idx < $3 ORDER BY idx LIMIT $4",
    )
    .bind(root.to_string())
    .bind(clamp(from))
    .bind(clamp(before))
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter().map(stored_entry).collect()
}

/// The `human.registered` entries of `humans`, in log order, through
/// `audit_log_registrations`.
pub(crate) async fn registrations(pool: &AnyPool, humans: &[HumanId]) -> Result<Vec<StoredEntry>> {
    let mut out = Vec::new();
    for chunk in humans.chunks(500) {
        let list = placeholders(1, chunk.len());
        // Only placeholders are formatted into the statement.
        let sql = format!(
            "SELECT idx, leaf_hash, entry FROM audit_log \
             WHERE human_id IN ({list}) AND kind = 'human.registered' ORDER BY idx"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for h in chunk {
            q = q.bind(h.to_string());
        }
        for r in &q.fetch_all(pool).await.map_err(db_error)? {
            out.push(stored_entry(r)?);
        }
    }
    // Chunks are each in order; together they must be too.
    out.sort_by_key(|e| e.index);
    Ok(out)
}

/// A leaf index as the BIGINT column holds it.
fn clamp(index: u64) -> i64 {
    index.min(i64::MAX as u64) as i64
}

/// Reads a row of `idx, leaf_hash, entry`.
pub(crate) fn stored_entry(r: &sqlx::any::AnyRow) -> Result<StoredEntry> {
    let index: i64 = r.try_get(0).map_err(db_error)?;
    let hash: String = r.try_get(1).map_err(db_error)?;
    Ok(StoredEntry {
        index: index as u64,
        leaf_hash: stored_hash(&hash),
        entry: r.try_get(2).map_err(db_error)?,
    })
}

/// A stored leaf hash. A malformed one reads as all zeros so the verifier,
/// not this reader, names the tampered entry.
fn stored_hash(hex: &str) -> Hash {
    hash_from_hex(hex).unwrap_or([0; 32])
}

/// Entries by leaf index, a bounded batch per query.
pub(crate) async fn entries_at(pool: &AnyPool, indexes: &[u64]) -> Result<Vec<StoredEntry>> {
    let mut out = Vec::with_capacity(indexes.len());
    for chunk in indexes.chunks(500) {
        let list = chunk
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        // Only integers are formatted into the statement.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT idx, leaf_hash, entry FROM audit_log WHERE idx IN ({list}) ORDER BY idx"
        )))
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
        for r in &rows {
            out.push(stored_entry(r)?);
        }
    }
    Ok(out)
}

pub(crate) async fn add_checkpoint(
    store: &SqlStore,
    cp: &SignedCheckpoint,
    at: Timestamp,
) -> Result<()> {
    let mut w = store.write().await?;
    sqlx::query(
        "INSERT INTO audit_checkpoints (tree_size, note, created_at) VALUES ($1, $2, $3) ON CONFLICT (tree_size) DO NOTHING",
    )
    .bind(cp.checkpoint.size as i64)
    .bind(cp.note.clone())
    .bind(at.as_millis())
    .execute(w.conn())
    .await
    .map_err(db_error)?;
    w.commit().await
}

pub(crate) async fn checkpoints(pool: &AnyPool) -> Result<Vec<SignedCheckpoint>> {
    let notes: Vec<String> =
        sqlx::query_scalar("SELECT note FROM audit_checkpoints ORDER BY tree_size")
            .fetch_all(pool)
            .await
            .map_err(db_error)?;
    // Parsing failures are kept as errors: a mangled checkpoint is tampering.
    notes
        .iter()
        .map(|n| {
            SignedCheckpoint::parse(n)
                .map_err(|e| StoreError::Internal(format!("a stored checkpoint is malformed: {e}")))
        })
        .collect()
}
