//! Appending to and reading the audit log.

use mandate_core::audit::checkpoint::SignedCheckpoint;
use mandate_core::audit::event::{GENESIS_PREV, LogEntry};
use mandate_core::audit::verify::StoredEntry;
use mandate_core::audit::{AuditEvent, hash_from_hex, to_hex};
use mandate_core::ids::AgentId;
use mandate_core::time::Timestamp;
use sqlx::AnyConnection;
use sqlx::{AnyPool, Row};

use super::{SqlStore, WriteTx, db_error, values_sql};
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
    let (conn, buffer) = w.audit_buffer();
    append_to(conn, buffer, event).await
}

/// Appends `event` to the batch's buffer, reading the log's tail the first
/// time the batch appends (`conn` holds the batch's write lock).
pub(crate) async fn append_to(
    conn: &mut AnyConnection,
    buffer: &mut AuditBuffer,
    event: AuditEvent,
) -> Result<u64> {
    let prev = match buffer.tail {
        Some(tail) => tail,
        None => tail(conn).await?,
    };
    Ok(buffer.push(prev, event))
}

/// One audit row, encoded and hashed, ready to insert.
pub(crate) struct AuditRow {
    index: u64,
    kind: &'static str,
    at: i64,
    agent: Option<String>,
    human: Option<String>,
    leaf_hash: [u8; 32],
    entry: String,
}

impl AuditRow {
    fn new(index: u64, prev: &[u8; 32], event: AuditEvent) -> AuditRow {
        let human = event.human.map(|h| h.to_string());
        let agent = event.agent.map(|a| a.to_string());
        let kind = event.kind.as_str();
        let at = event.at.as_millis();
        let (entry, leaf_hash) = LogEntry::new(index, prev, event).encode();
        AuditRow {
            index,
            kind,
            at,
            agent,
            human,
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

/// Rows per INSERT: 7 parameters each stays far below SQLite's limit.
const ROWS_PER_INSERT: usize = 512;

impl AuditBuffer {
    fn push(&mut self, (index, prev): (u64, [u8; 32]), event: AuditEvent) -> u64 {
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
        for chunk in self.rows.chunks(ROWS_PER_INSERT) {
            insert(conn, chunk).await?;
        }
        self.rows.clear();
        Ok(())
    }
}

async fn insert(conn: &mut AnyConnection, rows: &[AuditRow]) -> Result<()> {
    let sql = insert_sql(rows.len(), conn.backend_name() == "SQLite");
    // Only placeholders are formatted into the statement.
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for r in rows {
        q = q
            .bind(r.index as i64)
            .bind(r.kind)
            .bind(r.at)
            .bind(r.agent.as_deref())
            .bind(r.human.as_deref())
            .bind(to_hex(&r.leaf_hash))
            .bind(r.entry.as_str());
    }
    q.execute(&mut *conn).await.map_err(db_error)?;
    Ok(())
}

/// The multi-row INSERT for `rows` rows.
fn insert_sql(rows: usize, sqlite: bool) -> String {
    format!(
        "INSERT INTO audit_log (idx, kind, at, agent_id, human_id, leaf_hash, entry) VALUES {}",
        values_sql(rows, 7, sqlite)
    )
}

/// The next index and the leaf hash it must chain to.
async fn tail(conn: &mut AnyConnection) -> Result<(u64, [u8; 32])> {
    let row = sqlx::query("SELECT idx, leaf_hash FROM audit_log ORDER BY idx DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
    match row {
        None => Ok((0, GENESIS_PREV)),
        Some(r) => {
            let idx: i64 = r.try_get(0).map_err(db_error)?;
            let hash: String = r.try_get(1).map_err(db_error)?;
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

/// Newest first, through the `audit_log_by_agent` index.
pub(crate) async fn entries_by_agent(
    pool: &AnyPool,
    agent: AgentId,
    before: Option<u64>,
    limit: u32,
) -> Result<Vec<StoredEntry>> {
    let before = before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
    let rows = sqlx::query(
        "SELECT idx, leaf_hash, entry FROM audit_log WHERE agent_id = $1 AND idx < $2 ORDER BY idx DESC LIMIT $3",
    )
    .bind(agent.to_string())
    .bind(before)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter().map(stored_entry).collect()
}

/// Reads a row of `idx, leaf_hash, entry`.
pub(crate) fn stored_entry(r: &sqlx::any::AnyRow) -> Result<StoredEntry> {
    let index: i64 = r.try_get(0).map_err(db_error)?;
    let hash: String = r.try_get(1).map_err(db_error)?;
    // A malformed stored hash is reported as an all-zero hash so the
    // verifier, not this reader, names the tampered entry.
    Ok(StoredEntry {
        index: index as u64,
        leaf_hash: hash_from_hex(&hash).unwrap_or([0; 32]),
        entry: r.try_get(2).map_err(db_error)?,
    })
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
