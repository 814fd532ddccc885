//! Tasks, credentials, trusted issuers, signing-key rotation and single-use ids.

use mandate_core::RuleError;
use mandate_core::audit::EventKind;
use mandate_core::ids::{AgentId, TaskId};
use mandate_core::task::{Ending, Task, TaskStatus};
use mandate_core::time::Timestamp;
use serde_json::json;
use sqlx::{AnyPool, AssertSqlSafe};

use super::audit::append;
use super::convert::{self, to_json};
use super::registry::{Filtered, event, paginate};
use super::{SqlStore, WriteTx, db_error};
use crate::*;

const TASK_SELECT: &str =
    "SELECT t.*, a.spiffe_id AS assignee_spiffe FROM tasks t JOIN agents a ON a.id = t.assignee";

pub(crate) async fn trust_issuer(
    store: &SqlStore,
    change: &Change,
    issuer: &str,
    jwks: &serde_json::Value,
) -> Result<()> {
    let mut w = store.write().await?;
    sqlx::query(
        "INSERT INTO trusted_issuers (issuer, jwks, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (issuer) DO UPDATE SET jwks = excluded.jwks",
    )
    .bind(issuer.to_owned())
    .bind(jwks.to_string())
    .bind(change.at.as_millis())
    .execute(w.conn())
    .await
    .map_err(db_error)?;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    append(
        &mut w,
        event(change, EventKind::IssuerTrusted).details(json!({ "issuer": issuer, "kids": kids })),
    )
    .await?;
    w.commit().await
}

pub(crate) async fn trusted_issuer(
    pool: &AnyPool,
    issuer: &str,
) -> Result<Option<serde_json::Value>> {
    let jwks: Option<String> =
        sqlx::query_scalar("SELECT jwks FROM trusted_issuers WHERE issuer = $1")
            .bind(issuer.to_owned())
            .fetch_optional(pool)
            .await
            .map_err(db_error)?;
    jwks.map(|j| {
        serde_json::from_str(&j)
            .map_err(|e| StoreError::Internal(format!("stored JWKS is malformed: {e}")))
    })
    .transpose()
}

pub(crate) async fn rotate_signing_key(
    store: &SqlStore,
    change: &Change,
    key: &SigningKeyRecord,
) -> Result<()> {
    let mut w = store.write().await?;
    let retired: Vec<String> = sqlx::query_scalar("SELECT kid FROM signing_keys WHERE active = 1")
        .fetch_all(w.conn())
        .await
        .map_err(db_error)?;
    sqlx::query("UPDATE signing_keys SET active = 0, retired_at = $1 WHERE active = 1")
        .bind(change.at.as_millis())
        .execute(w.conn())
        .await
        .map_err(db_error)?;
    super::registry::insert_signing_key(&mut w, key).await?;
    append(
        &mut w,
        event(change, EventKind::SigningKeyRotated)
            .details(json!({ "new": key.kid, "retired": retired })),
    )
    .await?;
    w.commit().await
}

async fn consume(w: &mut WriteTx<'_>, jti: &str, expires_at: Timestamp) -> Result<()> {
    let taken: Option<String> = sqlx::query_scalar("SELECT jti FROM used_jtis WHERE jti = $1")
        .bind(jti.to_owned())
        .fetch_optional(w.conn())
        .await
        .map_err(db_error)?;
    if taken.is_some() {
        // The stored key is namespaced ("assertion:<iss>:<jti>"); name only the jti.
        let shown = jti.rsplit(':').next().unwrap_or(jti);
        return Err(
            RuleError::Conflict(format!("jti {shown:?} was already used: replay refused")).into(),
        );
    }
    sqlx::query("INSERT INTO used_jtis (jti, expires_at) VALUES ($1, $2)")
        .bind(jti.to_owned())
        .bind(expires_at.as_millis())
        .execute(w.conn())
        .await
        .map_err(db_error)?;
    Ok(())
}

pub(crate) async fn consume_jti(store: &SqlStore, jti: &str, expires_at: Timestamp) -> Result<()> {
    let mut w = store.write().await?;
    consume(&mut w, jti, expires_at).await?;
    w.commit().await
}

pub(crate) async fn task_in(w: &mut WriteTx<'_>, id: TaskId) -> Result<Task> {
    let lock = if w.backend == Backend::Postgres {
        " FOR UPDATE OF t"
    } else {
        ""
    };
    let row = sqlx::query(AssertSqlSafe(format!(
        "{TASK_SELECT} WHERE t.id = $1{lock}"
    )))
    .bind(id.to_string())
    .fetch_optional(w.conn())
    .await
    .map_err(db_error)?;
    row.as_ref()
        .map(convert::task)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("task {id}")))
}

/// Locks the root row of `id`'s tree (PostgreSQL; SQLite has one writer).
///
/// Every write that locks task rows takes its tree's root first: a delegation
/// (which locks its parent) and the end of any task in the same tree (which
/// locks the task, then its descendants after its first audit append) then
/// run one after the other. Without it, a child created under a descendant
/// while the tree ends could be missed by the cascade and stay open, or the
/// two could deadlock on the descendant's row and the audit lock.
pub(crate) async fn lock_tree(w: &mut WriteTx<'_>, id: TaskId) -> Result<()> {
    let root: Option<String> = sqlx::query_scalar("SELECT root_id FROM tasks WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(db_error)?;
    let root = root.ok_or_else(|| StoreError::NotFound(format!("task {id}")))?;
    lock_roots(w, &[root]).await
}

/// Locks these tree roots, in order (callers pass them sorted).
async fn lock_roots(w: &mut WriteTx<'_>, roots: &[String]) -> Result<()> {
    if w.backend != Backend::Postgres {
        return Ok(());
    }
    for root in roots {
        sqlx::query("SELECT id FROM tasks WHERE id = $1 FOR UPDATE")
            .bind(root.clone())
            .execute(w.conn())
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

pub(crate) async fn create_task(store: &SqlStore, change: &Change, new: &NewTask) -> Result<()> {
    let t = &new.task;
    let c = &new.credential;
    let mut w = store.write().await?;
    for (jti, exp) in &new.single_use {
        consume(&mut w, jti, *exp).await?;
    }
    // Re-check under the transaction what the caller checked before: the
    // assignee may have been suspended, or the parent revoked, meanwhile.
    let agent = super::registry::agent_for_update(&mut w, t.assignee).await?;
    if agent.status != mandate_core::agent::AgentStatus::Active || agent.orphaned {
        return Err(RuleError::Transition(format!(
            "agent {} cannot take tasks now",
            agent.spiffe_id
        ))
        .into());
    }
    if let Some(p) = t.parent {
        lock_tree(&mut w, p).await?;
        let parent = task_in(&mut w, p).await?;
        if !parent.is_live(change.at) {
            return Err(RuleError::Transition(format!(
                "the parent task {p} is {}",
                parent.status_at(change.at).as_str()
            ))
            .into());
        }
    }
    sqlx::query(
        "INSERT INTO tasks (id, parent_id, root_id, depth, purpose, initiator, assignee, delegator, scope, limits, \
         expires_at, status, created_at, budget) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'open', $12, $13)",
    )
    .bind(t.id.to_string())
    .bind(t.parent.map(|p| p.to_string()))
    .bind(t.root.to_string())
    .bind(t.depth as i64)
    .bind(t.purpose.clone())
    .bind(t.initiator.to_string())
    .bind(t.assignee.to_string())
    .bind(t.delegator.map(|d| d.to_string()))
    .bind(to_json(&t.scope))
    .bind(to_json(&t.limits))
    .bind(t.expires_at.as_millis())
    .bind(t.created_at.as_millis())
    .bind(t.limits.budget.map(|b| i64::try_from(b).unwrap_or(i64::MAX)))
    .execute(w.conn())
    .await
    .map_err(db_error)?;
    sqlx::query(
        "INSERT INTO credentials (jti, task_id, agent_id, kid, issued_at, expires_at, cnf_jkt) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(c.jti.clone())
    .bind(c.task.to_string())
    .bind(c.agent.to_string())
    .bind(c.kid.clone())
    .bind(c.issued_at.as_millis())
    .bind(c.expires_at.as_millis())
    .bind(c.cnf_jkt.clone())
    .execute(w.conn())
    .await
    .map_err(db_error)?;
    let kind = if t.parent.is_some() {
        EventKind::TaskDelegated
    } else {
        EventKind::TaskCreated
    };
    append(
        &mut w,
        event(change, kind)
            .task(t.id)
            .agent(t.assignee)
            .human(t.initiator)
            .credential(c.jti.clone())
            .chain(new.chain.clone())
            .details(json!({
                "purpose": t.purpose, "scope": t.scope, "limits": t.limits, "parent": t.parent,
                "root": t.root, "depth": t.depth, "expires_at": t.expires_at,
                "credential_expires_at": c.expires_at, "dpop_bound": c.cnf_jkt.is_some(),
            })),
    )
    .await?;
    w.commit().await?;
    // Stored for good: its decisions need no lookup to know it exists.
    store.remember_task(t.id);
    Ok(())
}

pub(crate) async fn task(pool: &AnyPool, id: TaskId) -> Result<Option<Task>> {
    let row = sqlx::query(AssertSqlSafe(format!("{TASK_SELECT} WHERE t.id = $1")))
        .bind(id.to_string())
        .fetch_optional(pool)
        .await
        .map_err(db_error)?;
    row.as_ref().map(convert::task).transpose()
}

pub(crate) async fn task_tree(pool: &AnyPool, root: TaskId) -> Result<Vec<Task>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "{TASK_SELECT} WHERE t.root_id = $1 ORDER BY t.depth, t.id"
    )))
    .bind(root.to_string())
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter().map(convert::task).collect()
}

pub(crate) async fn list_tasks(
    store: &SqlStore,
    filter: &TaskFilter,
    page: &PageRequest,
) -> Result<Page<Task>> {
    let mut q = Filtered::new(TASK_SELECT);
    if let Some(a) = filter.assignee {
        q.and("t.assignee", a.to_string());
    }
    if let Some(h) = filter.initiator {
        q.and("t.initiator", h.to_string());
    }
    match (filter.status, filter.now) {
        (Some(TaskStatus::Open), Some(now)) => {
            q.and("t.status", TaskStatus::Open.as_str().to_owned());
            q.and_at("t.expires_at > {t}", now);
        }
        (Some(TaskStatus::Expired), Some(now)) => {
            q.and_at(
                "(t.status = 'expired' OR (t.status = 'open' AND t.expires_at <= {t}))",
                now,
            );
        }
        (Some(s), _) => q.and("t.status", s.as_str().to_owned()),
        (None, _) => {}
    }
    if let Some(r) = filter.root {
        q.and("t.root_id", r.to_string());
    }
    let rows = q.page("t.id", page).fetch_all(store).await?;
    let items = rows.iter().map(convert::task).collect::<Result<Vec<_>>>()?;
    Ok(paginate(items, page, |t| t.id.to_string()))
}

pub(crate) async fn credential(pool: &AnyPool, jti: &str) -> Result<Option<CredentialRecord>> {
    let row = sqlx::query("SELECT * FROM credentials WHERE jti = $1")
        .bind(jti.to_owned())
        .fetch_optional(pool)
        .await
        .map_err(db_error)?;
    row.as_ref().map(convert::credential).transpose()
}

/// Ends `id` and its open descendants inside `w`, with one event per task.
pub(crate) async fn end_subtree(
    w: &mut WriteTx<'_>,
    change: &Change,
    id: TaskId,
    ending: Ending,
    reason: &str,
) -> Result<Ended> {
    lock_tree(w, id).await?;
    let task = task_in(w, id).await?;
    task.check_end(change.at)?;
    let descendants: Vec<String> = sqlx::query_scalar(
        "WITH RECURSIVE sub(id) AS (SELECT id FROM tasks WHERE parent_id = $1 \
         UNION ALL SELECT t.id FROM tasks t JOIN sub ON t.parent_id = sub.id) \
         SELECT s.id FROM sub s JOIN tasks t ON t.id = s.id WHERE t.status = 'open' ORDER BY s.id",
    )
    .bind(id.to_string())
    .fetch_all(w.conn())
    .await
    .map_err(db_error)?;
    let mut cascaded = Vec::new();
    end_one(w, change, &task, ending.status(), reason, &descendants).await?;
    let cascade_reason = format!("ancestor task {id} was {}", ending.status().as_str());
    for d in descendants {
        let did: TaskId = d.parse()?;
        let child = task_in(w, did).await?;
        end_one(w, change, &child, TaskStatus::Revoked, &cascade_reason, &[]).await?;
        cascaded.push(did);
    }
    let task = task_in(w, id).await?;
    Ok(Ended { task, cascaded })
}

async fn end_one(
    w: &mut WriteTx<'_>,
    change: &Change,
    task: &Task,
    status: TaskStatus,
    reason: &str,
    cascade: &[String],
) -> Result<()> {
    sqlx::query("UPDATE tasks SET status = $1, ended_at = $2, end_reason = $3 WHERE id = $4")
        .bind(status.as_str())
        .bind(change.at.as_millis())
        .bind(reason.to_owned())
        .bind(task.id.to_string())
        .execute(w.conn())
        .await
        .map_err(db_error)?;
    let revoked: Vec<String> =
        sqlx::query_scalar("SELECT jti FROM credentials WHERE task_id = $1 AND revoked_at IS NULL")
            .bind(task.id.to_string())
            .fetch_all(w.conn())
            .await
            .map_err(db_error)?;
    sqlx::query("UPDATE credentials SET revoked_at = $1 WHERE task_id = $2 AND revoked_at IS NULL")
        .bind(change.at.as_millis())
        .bind(task.id.to_string())
        .execute(w.conn())
        .await
        .map_err(db_error)?;
    let kind = match status {
        TaskStatus::Completed => EventKind::TaskCompleted,
        TaskStatus::Failed => EventKind::TaskFailed,
        _ => EventKind::TaskRevoked,
    };
    append(
        w,
        event(change, kind)
            .task(task.id)
            .agent(task.assignee)
            .human(task.initiator)
            .details(json!({
                "reason": reason, "credentials_revoked": revoked, "cascades_to": cascade,
            })),
    )
    .await?;
    Ok(())
}

pub(crate) async fn end_task(
    store: &SqlStore,
    change: &Change,
    id: TaskId,
    ending: Ending,
    reason: &str,
) -> Result<Ended> {
    let mut w = store.write().await?;
    let ended = end_subtree(&mut w, change, id, ending, reason).await?;
    w.commit().await?;
    Ok(ended)
}

/// Revokes every open task assigned to `agent` (and their subtrees).
pub(crate) async fn revoke_agent_tasks(
    w: &mut WriteTx<'_>,
    change: &Change,
    agent: AgentId,
    reason: &str,
) -> Result<()> {
    revoke_agent_tasks_where(w, change, agent, reason, |_| true).await
}

/// Revokes the open tasks assigned to `agent` that `revoke` picks (and
/// their subtrees).
pub(crate) async fn revoke_agent_tasks_where(
    w: &mut WriteTx<'_>,
    change: &Change,
    agent: AgentId,
    reason: &str,
    revoke: impl Fn(&Task) -> bool,
) -> Result<()> {
    let open: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, root_id FROM tasks WHERE assignee = $1 AND status = 'open' ORDER BY depth, id",
    )
    .bind(agent.to_string())
    .fetch_all(w.conn())
    .await
    .map_err(db_error)?;
    // Every tree up front, in one order: see `lock_tree`.
    let roots: std::collections::BTreeSet<String> = open.iter().map(|(_, r)| r.clone()).collect();
    lock_roots(w, &roots.into_iter().collect::<Vec<_>>()).await?;
    for (id, _) in open {
        let id: TaskId = id.parse()?;
        // An earlier iteration may already have ended it as a descendant;
        // one past its expiry has ended already and is left as it is.
        let task = task_in(w, id).await?;
        if task.is_live(change.at) && revoke(&task) {
            end_subtree(w, change, id, Ending::Revoke, reason).await?;
        }
    }
    Ok(())
}

pub(crate) async fn revoke_credential(
    store: &SqlStore,
    change: &Change,
    jti: &str,
) -> Result<bool> {
    let mut w = store.write().await?;
    let row = sqlx::query("SELECT * FROM credentials WHERE jti = $1")
        .bind(jti.to_owned())
        .fetch_optional(w.conn())
        .await
        .map_err(db_error)?;
    let Some(cred) = row.as_ref().map(convert::credential).transpose()? else {
        return Ok(false);
    };
    if cred.revoked_at.is_some() {
        return Ok(false);
    }
    sqlx::query("UPDATE credentials SET revoked_at = $1 WHERE jti = $2")
        .bind(change.at.as_millis())
        .bind(jti.to_owned())
        .execute(w.conn())
        .await
        .map_err(db_error)?;
    append(
        &mut w,
        event(change, EventKind::CredentialRevoked)
            .task(cred.task)
            .agent(cred.agent)
            .credential(jti),
    )
    .await?;
    w.commit().await?;
    Ok(true)
}
