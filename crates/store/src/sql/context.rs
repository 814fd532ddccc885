//! A decision's reads in one statement: the credential, the task with its
//! ancestors and each one's assignee, and the active policy's hash.
//!
//! Each statement is a round trip to the database (on SQLite through sqlx, to
//! its worker thread; see `readers` for why the decision's own read is not),
//! and a decision used to make four or more of them; switching threads for
//! each cost more CPU than the reads. One statement also reads every fact
//! from the same snapshot. Nothing here is cached: every call reads what is
//! stored now, so a revocation, a task's end or a policy push is seen by the
//! next decision on every node.

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

pub(crate) async fn decision_context(
    readers: &Readers,
    jti: &str,
    task: TaskId,
) -> Result<Option<DecisionContext>> {
    let task_id = task.to_string();
    let rows = match readers {
        Readers::Inline(r) => r.with(|conn| {
            let mut stmt = conn.prepare_cached(CONTEXT_SQL).map_err(sqlite_error)?;
            // The statement's columns depend on its text alone: named once.
            static NAMES: OnceLock<Vec<String>> = OnceLock::new();
            let names =
                NAMES.get_or_init(|| stmt.column_names().into_iter().map(str::to_owned).collect());
            let mut rows = stmt
                .query(rusqlite::named_params! {"$1": jti, "$2": task_id, "$3": MAX_HOPS})
                .map_err(sqlite_error)?;
            let mut chain = Vec::new();
            while let Some(row) = rows.next().map_err(sqlite_error)? {
                chain.push(Hop::of(&Named { row, names })?);
            }
            Ok(chain)
        })?,
        Readers::Kept(r) => r
            .fetch_all(|| {
                sqlx::query(CONTEXT_SQL)
                    .bind(jti.to_owned())
                    .bind(task_id.clone())
                    .bind(MAX_HOPS)
            })
            .await?
            .iter()
            .map(Hop::of)
            .collect::<Result<_>>()?,
    };
    let mut rows = rows.into_iter();
    let Some(first) = rows.next() else {
        return Ok(None);
    };
    Ok(Some(DecisionContext {
        credential: first.credential,
        task: first.task,
        calls_used: first.calls_used,
        agent: first.agent,
        ancestors: rows.map(|r| (r.task, r.agent)).collect(),
        policy_hash: first.policy_hash,
    }))
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
