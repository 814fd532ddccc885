//! A decision's reads in one statement: the credential, the task with its
//! ancestors and each one's assignee, and the active policy's hash.
//!
//! Each statement is a round trip to the database (on SQLite through sqlx, to
//! its worker thread; see `readers` for why the decision's own read is not),
//! and a decision used to make four or more of them; switching threads for
//! each cost more CPU than the reads. One statement also reads every fact
//! from the same snapshot.
//!
//! On an SQLite file even that statement (a walk up the tree through four
//! tables, read again from the file after every commit) was most of a
//! decision's read, while almost nothing it reads changes between two calls
//! of a task. So a read is kept ([`Recent`]) with the *context epoch* it was
//! read at: a number that every change to what it holds moves, by trigger,
//! in the change's own transaction (migration 12). The next decision under
//! the same token reads only the epoch and the task's counters, and reuses
//! the rest while the epoch stands. What it returns is what is stored when
//! it reads, as before: a revocation, a task's end or a policy push, by this
//! process or any other, moves the epoch and is seen by the next decision.
//! PostgreSQL reads everything every time (one round trip either way).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::OnceLock;

use mandate_core::ids::{SpiffeId, TaskId};

use super::convert::{self, Columns};
use super::readers::{Named, Readers};
use super::sqlite::sqlite_error;
use crate::*;

/// Ancestors deeper than this are not followed. Tasks form a tree (a parent
/// exists before its child and ids never change), so this only bounds the
/// recursion against a corrupted table rather than any real chain.
const MAX_HOPS: i64 = 256;

/// Rows `hop` 0 (the task), 1 (its parent) ... up to the root. The task's
/// columns keep their own names (as `convert::task` reads them), the
/// assignee's (only what [`ChainAgent`] holds) are prefixed `agent_`, the
/// credential's `cred_`; the
/// credential (joined on the first row only) and the policy hash are
/// outer-joined so that a task without them still comes back.
const CONTEXT_SQL: &str = "WITH RECURSIVE chain (id, hop) AS ( \
       SELECT id, 0 FROM tasks WHERE id = $2 \
       UNION ALL SELECT t.parent_id, c.hop + 1 FROM tasks t JOIN chain c ON t.id = c.id \
       WHERE t.parent_id IS NOT NULL AND c.hop < $3) \
     SELECT CAST(c.hop AS BIGINT) AS hop, \
       t.id, t.parent_id, t.root_id, t.depth, t.purpose, t.initiator, t.assignee, t.delegator, \
       t.scope, t.limits, t.expires_at, t.status, t.created_at, t.ended_at, t.end_reason, \
       t.calls_used, a.spiffe_id AS assignee_spiffe, \
       a.id AS agent_id, a.owner_id AS agent_owner_id, \
       a.tags AS agent_tags, a.status AS agent_status, \
       cr.jti AS cred_jti, cr.task_id AS cred_task_id, cr.agent_id AS cred_agent_id, \
       cr.kid AS cred_kid, cr.issued_at AS cred_issued_at, cr.expires_at AS cred_expires_at, \
       cr.cnf_jkt AS cred_cnf_jkt, cr.revoked_at AS cred_revoked_at, \
       p.hash AS policy_hash \
     FROM chain c JOIN tasks t ON t.id = c.id \
       JOIN agents a ON a.id = t.assignee \
       LEFT JOIN credentials cr ON cr.jti = $1 AND c.hop = 0 \
       LEFT JOIN active_policy p ON p.id = 1 \
     ORDER BY c.hop";

/// The epoch and the task's counters, as stored now; no row when the task
/// is not stored.
const EPOCH_SQL: &str = "SELECT (SELECT n FROM context_epoch WHERE id = 1), calls_used \
     FROM tasks WHERE id = $1";

pub(crate) async fn decision_context(
    readers: &Readers,
    recent: &Recent,
    jti: &str,
    task: TaskId,
) -> Result<Option<DecisionContext>> {
    match readers {
        Readers::Inline(r) => r.with(|conn| inline(conn, recent, jti, task)),
        Readers::Kept(r) => {
            let task_id = task.to_string();
            let rows = r
                .fetch_all(|| {
                    sqlx::query(CONTEXT_SQL)
                        .bind(jti.to_owned())
                        .bind(task_id.clone())
                        .bind(MAX_HOPS)
                })
                .await?
                .iter()
                .map(Hop::of)
                .collect::<Result<Vec<_>>>()?;
            Ok(assemble(rows))
        }
    }
}

/// The read on an SQLite file: the kept one while the epoch stands.
fn inline(
    conn: &mut rusqlite::Connection,
    recent: &Recent,
    jti: &str,
    task: TaskId,
) -> Result<Option<DecisionContext>> {
    use rusqlite::OptionalExtension;
    let task_id = task.to_string();
    let now = conn
        .prepare_cached(EPOCH_SQL)
        .and_then(|mut s| {
            s.query_row([&task_id], |r| {
                Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()
        })
        .map_err(sqlite_error)?;
    let Some((epoch, calls_used)) = now else {
        return Ok(None);
    };
    if let Some(epoch) = epoch
        && let Some(mut seen) = recent.get(jti, task, epoch)
    {
        seen.calls_used = calls_used.max(0) as u64;
        return Ok(Some(seen));
    }
    let found = assemble(whole_read(conn, jti, &task_id)?);
    // Read after the epoch: at that epoch or a later one, never an earlier.
    // Kept under the epoch read first, it is reused only while nothing moved
    // since (a later epoch would not match). A token without its credential
    // is refused anyway and not worth keeping.
    if let (Some(epoch), Some(ctx)) = (epoch, &found)
        && ctx.credential.is_some()
    {
        recent.put(jti, epoch, ctx);
    }
    Ok(found)
}

/// [`CONTEXT_SQL`] on an SQLite connection of this process.
fn whole_read(conn: &rusqlite::Connection, jti: &str, task_id: &str) -> Result<Vec<Hop>> {
    let mut stmt = conn.prepare_cached(CONTEXT_SQL).map_err(sqlite_error)?;
    // The statement's columns depend on its text alone: named once.
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    let names = NAMES.get_or_init(|| stmt.column_names().into_iter().map(str::to_owned).collect());
    let mut rows = stmt
        .query(rusqlite::named_params! {"$1": jti, "$2": task_id, "$3": MAX_HOPS})
        .map_err(sqlite_error)?;
    let mut chain = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        chain.push(Hop::of(&Named { row, names })?);
    }
    Ok(chain)
}

/// The context from [`CONTEXT_SQL`]'s rows, the task's first.
fn assemble(rows: Vec<Hop>) -> Option<DecisionContext> {
    let mut rows = rows.into_iter();
    let first = rows.next()?;
    Some(DecisionContext {
        credential: first.credential,
        task: first.task,
        calls_used: first.calls_used,
        agent: first.agent,
        ancestors: rows.map(|r| (r.task, r.agent)).collect(),
        policy_hash: first.policy_hash,
    })
}

/// Contexts read on an SQLite file, by token (jti), each with the epoch it
/// was read at. Bounded: when full it starts over (a context dropped is only
/// read whole once more).
#[derive(Default)]
pub(crate) struct Recent(Mutex<HashMap<String, Seen>>);

/// A context and the epoch it was read at.
struct Seen {
    epoch: i64,
    context: DecisionContext,
}

/// Tokens whose context is kept at once.
const RECENT: usize = 4096;

impl Recent {
    /// The context kept for `jti` under `task`, if it was read at `epoch`.
    fn get(&self, jti: &str, task: TaskId, epoch: i64) -> Option<DecisionContext> {
        let seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(jti)
            .filter(|k| k.epoch == epoch && k.context.task.id == task)
            .map(|k| k.context.clone())
    }

    fn put(&self, jti: &str, epoch: i64, context: &DecisionContext) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= RECENT && !seen.contains_key(jti) {
            seen.clear();
        }
        seen.insert(
            jti.to_owned(),
            Seen {
                epoch,
                context: context.clone(),
            },
        );
    }
}

/// One row of [`CONTEXT_SQL`]: a task of the chain with its assignee (and,
/// on the first row, the credential).
struct Hop {
    task: mandate_core::task::Task,
    agent: ChainAgent,
    credential: Option<CredentialRecord>,
    calls_used: u64,
    policy_hash: Option<String>,
}

impl Hop {
    fn of(r: &impl Columns) -> Result<Self> {
        Ok(Hop {
            credential: match convert::opt_text(r, "cred_jti")? {
                Some(_) => Some(convert::credential_at(r, "cred_")?),
                None => None,
            },
            calls_used: convert::int(r, "calls_used")?.max(0) as u64,
            task: convert::task(r)?,
            agent: chain_agent(r)?,
            policy_hash: convert::opt_text(r, "policy_hash")?,
        })
    }
}

/// The assignee of a row's task, whose SPIFFE id (with its kind) is the
/// task's `assignee_spiffe`.
fn chain_agent(r: &impl Columns) -> Result<ChainAgent> {
    let spiffe_id = convert::task_spiffe(r)?;
    let (_, kind, _) = SpiffeId::parse(spiffe_id.as_str())
        .map_err(|e| StoreError::Internal(format!("stored column assignee_spiffe: {e}")))?;
    Ok(ChainAgent {
        id: convert::parsed(r, "agent_id")?,
        spiffe_id,
        kind,
        owner: convert::parsed(r, "agent_owner_id")?,
        tags: convert::json(r, "agent_tags")?,
        status: convert::parsed(r, "agent_status")?,
    })
}
