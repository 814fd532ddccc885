//! A decision's reads in one statement: the credential, the task with its
//! ancestors and each one's assignee, and the active policy's hash.
//!
//! Each statement on SQLite is a round trip to sqlx's worker thread (and on
//! PostgreSQL one to the server), and a decision used to make four or more
//! of them; switching threads for each cost more CPU than the reads. One
//! statement also reads every fact from the same snapshot. Nothing here is
//! cached: every call reads what is stored now, so a revocation, a task's
//! end or a policy push is seen by the next decision on every node.

use mandate_core::ids::{SpiffeId, TaskId};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::convert;
use super::db_error;
use super::readers::Readers;
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
    let rows = readers
        .fetch_all(|| {
            sqlx::query(CONTEXT_SQL)
                .bind(jti.to_owned())
                .bind(task_id.clone())
                .bind(MAX_HOPS)
        })
        .await?;
    let mut rows = rows.iter();
    let Some(first) = rows.next() else {
        return Ok(None);
    };
    let credential = match convert::opt_text(first, "cred_jti")? {
        Some(_) => Some(convert::credential_at(first, "cred_")?),
        None => None,
    };
    let used: i64 = first.try_get("calls_used").map_err(db_error)?;
    Ok(Some(DecisionContext {
        credential,
        task: convert::task(first)?,
        calls_used: used.max(0) as u64,
        agent: chain_agent(first)?,
        ancestors: rows
            .map(|r| Ok((convert::task(r)?, chain_agent(r)?)))
            .collect::<Result<_>>()?,
        policy_hash: convert::opt_text(first, "policy_hash")?,
    }))
}

/// The assignee of a row's task, whose SPIFFE id (with its kind) is the
/// task's `assignee_spiffe`.
fn chain_agent(r: &AnyRow) -> Result<ChainAgent> {
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
