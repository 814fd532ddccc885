//! Policy versions, decisions with what they spend (calls, approvals),
//! approvals and break-glass grants: every write with its audit event.
//!
//! Spending is guarded in SQL (`... WHERE calls_used < max`, `... WHERE
//! status = 'approved'`) inside the write that records the decision, so
//! concurrent requests cannot overspend, and a refused spend writes nothing.

use mandate_core::RuleError;
use mandate_core::approval::{Approval, ApprovalStatus};
use mandate_core::audit::EventKind;
use mandate_core::breakglass::BreakGlass;
use mandate_core::ids::{AgentId, ApprovalId, BreakGlassId, HumanId, TaskId};
use mandate_core::time::Timestamp;
use serde_json::json;
use sqlx::{AnyPool, AssertSqlSafe};

use super::audit::{Prepared, append, append_prepared};
use super::convert::{self, to_json};
use super::registry::{Filtered, event};
use super::tally::Counted;
use super::{SqlStore, WriteTx, db_error};
use crate::*;

/// Every version with the active hash alongside (the one-row table always
/// has its row, so the join never drops a version).
const POLICY_SELECT: &str = "SELECT p.hash, p.version, p.text, p.pushed_at, p.pushed_by, \
     a.hash AS active_hash FROM policy_versions p JOIN active_policy a ON a.id = 1";

/// The shortest hash prefix `policy_version` accepts.
pub(crate) const MIN_PREFIX: usize = 8;

fn for_update(w: &WriteTx<'_>) -> &'static str {
    if w.backend == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

// ---- calls ---------------------------------------------------------------------

pub(crate) async fn calls_used(pool: &AnyPool, task: TaskId) -> Result<u64> {
    let used: Option<i64> = sqlx::query_scalar("SELECT calls_used FROM tasks WHERE id = $1")
        .bind(task.to_string())
        .fetch_optional(pool)
        .await
        .map_err(db_error)?;
    used.map(|n| n.max(0) as u64)
        .ok_or_else(|| StoreError::NotFound(format!("task {task}")))
}

// ---- policy versions -------------------------------------------------------------

pub(crate) async fn activate_policy(
    store: &SqlStore,
    change: &Change,
    hash: &str,
    text: &str,
) -> Result<PolicyVersion> {
    if hash.len() != 64 || !is_hex(hash) {
        return Err(RuleError::Invalid {
            what: "policy hash",
            why: format!("{hash:?} is not a lowercase hex SHA-256"),
        }
        .into());
    }
    let mut w = store.write().await?;
    // The one row of `active_policy` orders activations (PostgreSQL), so two
    // pushes cannot both take the same next version number.
    let lock = for_update(&w);
    let previous: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT hash FROM active_policy WHERE id = 1{lock}"
    )))
    .fetch_one(w.conn())
    .await
    .map_err(db_error)?;
    let stored: Option<String> =
        sqlx::query_scalar("SELECT text FROM policy_versions WHERE hash = $1")
            .bind(hash.to_owned())
            .fetch_optional(w.conn())
            .await
            .map_err(db_error)?;
    match stored {
        // Versions are immutable: a known hash must come with its own text.
        Some(t) if t != text => {
            return Err(RuleError::Conflict(format!(
                "policy version {hash} is stored with a different text"
            ))
            .into());
        }
        Some(_) => {}
        None => {
            let last: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM policy_versions")
                    .fetch_one(w.conn())
                    .await
                    .map_err(db_error)?;
            sqlx::query(
                "INSERT INTO policy_versions (hash, version, text, pushed_at, pushed_by) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(hash.to_owned())
            .bind(last + 1)
            .bind(text.to_owned())
            .bind(change.at.as_millis())
            .bind(to_json(&change.actor))
            .execute(w.conn())
            .await
            .map_err(db_error)?;
        }
    }
    sqlx::query("UPDATE active_policy SET hash = $1, activated_at = $2 WHERE id = 1")
        .bind(hash.to_owned())
        .bind(change.at.as_millis())
        .execute(w.conn())
        .await
        .map_err(db_error)?;
    let version = policy_where(w.conn(), "p.hash = $1", hash.to_owned())
        .await?
        .ok_or_else(|| StoreError::Internal(format!("policy version {hash} vanished")))?;
    append(
        &mut w,
        event(change, EventKind::PolicyActivated).details(json!({
            "hash": hash, "version": version.version, "previous": previous,
        })),
    )
    .await?;
    w.commit().await?;
    Ok(version)
}

async fn policy_where<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    condition: &'static str,
    value: String,
) -> Result<Option<PolicyVersion>> {
    let row = sqlx::query(AssertSqlSafe(format!("{POLICY_SELECT} WHERE {condition}")))
        .bind(value)
        .fetch_optional(db)
        .await
        .map_err(db_error)?;
    row.as_ref().map(convert::policy_version).transpose()
}

pub(crate) async fn active_policy(pool: &AnyPool) -> Result<Option<PolicyVersion>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "{POLICY_SELECT} WHERE p.hash = a.hash"
    )))
    .fetch_optional(pool)
    .await
    .map_err(db_error)?;
    row.as_ref().map(convert::policy_version).transpose()
}

pub(crate) async fn active_policy_hash(pool: &AnyPool) -> Result<Option<String>> {
    let hash: Option<Option<String>> =
        sqlx::query_scalar("SELECT hash FROM active_policy WHERE id = 1")
            .fetch_optional(pool)
            .await
            .map_err(db_error)?;
    Ok(hash.flatten())
}

/// By full hash, or by a prefix of at least [`MIN_PREFIX`] hex digits that
/// names exactly one version. A malformed or too short prefix, or one that
/// matches several versions, is refused as invalid (not "not found"), so a
/// caller never acts on a version it did not mean.
pub(crate) async fn policy_version(pool: &AnyPool, hash: &str) -> Result<Option<PolicyVersion>> {
    let h = hash.trim().to_ascii_lowercase();
    if h.len() < MIN_PREFIX || h.len() > 64 || !is_hex(&h) {
        return Err(RuleError::Invalid {
            what: "policy version",
            why: format!(
                "{hash:?}: give the hash or at least {MIN_PREFIX} of its leading hex digits"
            ),
        }
        .into());
    }
    if h.len() == 64 {
        return policy_where(pool, "p.hash = $1", h).await;
    }
    // `h` is hex only, so it has no LIKE wildcards of its own.
    let rows = sqlx::query(AssertSqlSafe(format!(
        "{POLICY_SELECT} WHERE p.hash LIKE $1 ORDER BY p.version LIMIT 2"
    )))
    .bind(format!("{h}%"))
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    match rows.as_slice() {
        [] => Ok(None),
        [one] => convert::policy_version(one).map(Some),
        _ => Err(RuleError::Invalid {
            what: "policy version",
            why: format!("the prefix {h} matches several versions; give more digits"),
        }
        .into()),
    }
}

pub(crate) async fn policy_versions(pool: &AnyPool) -> Result<Vec<PolicyVersion>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "{POLICY_SELECT} ORDER BY p.version DESC"
    )))
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter().map(convert::policy_version).collect()
}

// ---- decisions ---------------------------------------------------------------------

pub(crate) async fn record_decision(
    store: &SqlStore,
    change: &Change,
    d: &DecisionWrite,
) -> Result<Recorded> {
    if let Some(a) = &d.raises_approval {
        if a.task != d.task {
            return Err(RuleError::Invalid {
                what: "approval",
                why: format!(
                    "it is for task {}, the decision for task {}",
                    a.task, d.task
                ),
            }
            .into());
        }
        if a.status != ApprovalStatus::Pending || a.decided_at.is_some() {
            return Err(RuleError::Invalid {
                what: "approval",
                why: "a new approval request must be pending".into(),
            }
            .into());
        }
    }
    let decided = Prepared::with_details(
        &event(change, EventKind::DecisionMade)
            .task(d.task)
            .agent(d.agent),
        &d.details,
    );
    // A decision that checks no count (no call limit or budget to respect,
    // no approval to spend or raise) only adds to counters: it joins the
    // batch as an append with its counts (see `tally`), under a task known
    // to exist. Any other takes the guarded statements below.
    let guarded = d.raises_approval.is_some()
        || d.spends_approval.is_some()
        || (d.counts_call && (d.max_calls.is_some() || d.spends.is_some()));
    if !guarded && store.task_known(d.task) {
        // What the guarded path below counts: an allowed call only when it
        // counts as one, a deny always.
        let counts = d.counts_call || d.verdict == Verdict::Deny;
        let counted = counts.then(|| Counted {
            task: d.task,
            agent: d.agent,
            action: d.action.clone(),
            resource: d.resource.clone(),
            verdict: d.verdict,
            at: change.at.as_millis(),
        });
        store.append_alone(decided, counted).await?;
        return Ok(Recorded::Done);
    }
    let mut w = store.write().await?;
    // Like every write that touches task rows, take the tree's root first
    // (see `tasks::lock_tree`); this also refuses an unknown task.
    super::tasks::lock_tree(&mut w, d.task).await?;
    if d.counts_call {
        let counted = match d.max_calls {
            Some(max) => sqlx::query(
                "UPDATE tasks SET calls_used = calls_used + 1 WHERE id = $1 AND calls_used < $2",
            )
            .bind(d.task.to_string())
            .bind(i64::try_from(max).unwrap_or(i64::MAX)),
            None => sqlx::query("UPDATE tasks SET calls_used = calls_used + 1 WHERE id = $1")
                .bind(d.task.to_string()),
        }
        .execute(w.conn())
        .await
        .map_err(db_error)?
        .rows_affected();
        if counted == 0 {
            w.rollback().await?;
            return Ok(Recorded::OverLimit);
        }
    }
    if let (true, Some(amount)) = (d.counts_call, d.spends)
        && !spend_budget(&mut w, d.task, amount).await?
    {
        w.rollback().await?;
        return Ok(Recorded::OverBudget);
    }
    if d.verdict == Verdict::Deny {
        sqlx::query("UPDATE tasks SET denied_calls = denied_calls + 1 WHERE id = $1")
            .bind(d.task.to_string())
            .execute(w.conn())
            .await
            .map_err(db_error)?;
    }
    if let Some(id) = d.spends_approval {
        let spent = sqlx::query(
            "UPDATE approvals SET status = 'used' \
             WHERE id = $1 AND task_id = $2 AND status = 'approved' AND expires_at > $3",
        )
        .bind(id.to_string())
        .bind(d.task.to_string())
        .bind(change.at.as_millis())
        .execute(w.conn())
        .await
        .map_err(db_error)?
        .rows_affected();
        if spent == 0 {
            // Undoes the call counted above too.
            w.rollback().await?;
            return Ok(Recorded::ApprovalSpent);
        }
    }
    if let Some(a) = &d.raises_approval {
        insert_approval(&mut w, a).await?;
        append(
            &mut w,
            event(change, EventKind::ApprovalRequested)
                .task(a.task)
                .agent(a.agent)
                .details(json!({
                    "approval": a.id, "action": a.action, "resource": a.resource,
                    "policies": a.policies, "digest": a.digest, "expires_at": a.expires_at,
                })),
        )
        .await?;
    }
    if d.verdict == Verdict::Allow {
        // What the agent actually did, for the inventory and its ceiling review.
        sqlx::query(
            "INSERT INTO agent_usage (agent_id, action, resource, calls, first_used, last_used) \
             VALUES ($1, $2, $3, 1, $4, $4) ON CONFLICT (agent_id, action, resource) \
             DO UPDATE SET calls = agent_usage.calls + 1, last_used = excluded.last_used",
        )
        .bind(d.agent.to_string())
        .bind(&d.action)
        .bind(&d.resource)
        .bind(change.at.as_millis())
        .execute(w.conn())
        .await
        .map_err(db_error)?;
    }
    append_prepared(&mut w, decided).await?;
    w.commit().await?;
    store.remember_task(d.task);
    Ok(Recorded::Done)
}

/// The task and its ancestors: budgets are charged up the whole chain.
const ANCESTORS: &str = "WITH RECURSIVE anc (id, parent_id) AS ( \
     SELECT id, parent_id FROM tasks WHERE id = $1 \
     UNION ALL SELECT t.id, t.parent_id FROM tasks t JOIN anc ON t.id = anc.parent_id) ";

/// Charges `amount` to every budget on the chain, or to none when any one
/// lacks room. The caller holds the tree's lock, so check and charge agree.
async fn spend_budget(w: &mut WriteTx<'_>, task: TaskId, amount: u64) -> Result<bool> {
    let amount = i64::try_from(amount).unwrap_or(i64::MAX);
    let short: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "{ANCESTORS}SELECT COUNT(*) FROM tasks WHERE id IN (SELECT id FROM anc) \
         AND budget IS NOT NULL AND budget_spent + $2 > budget"
    )))
    .bind(task.to_string())
    .bind(amount)
    .fetch_one(w.conn())
    .await
    .map_err(db_error)?;
    if short > 0 {
        return Ok(false);
    }
    sqlx::query(AssertSqlSafe(format!(
        "{ANCESTORS}UPDATE tasks SET budget_spent = budget_spent + $2 \
         WHERE id IN (SELECT id FROM anc) AND budget IS NOT NULL"
    )))
    .bind(task.to_string())
    .bind(amount)
    .execute(w.conn())
    .await
    .map_err(db_error)?;
    Ok(true)
}

// ---- approvals ----------------------------------------------------------------------

async fn insert_approval(w: &mut WriteTx<'_>, a: &Approval) -> Result<()> {
    sqlx::query(
        "INSERT INTO approvals (id, task_id, agent_id, initiator, action, resource, digest, policies, \
         status, requested_at, expires_at, decided_by, decided_at, note, context) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(a.id.to_string())
    .bind(a.task.to_string())
    .bind(a.agent.to_string())
    .bind(a.initiator.to_string())
    .bind(a.action.clone())
    .bind(a.resource.clone())
    .bind(a.digest.clone())
    .bind(to_json(&a.policies))
    .bind(a.status.as_str())
    .bind(a.requested_at.as_millis())
    .bind(a.expires_at.as_millis())
    .bind(a.decided_by.map(|h| h.to_string()))
    .bind(a.decided_at.map(Timestamp::as_millis))
    .bind(a.note.clone())
    .bind((!a.context.is_null()).then(|| to_json(&a.context)))
    .execute(w.conn())
    .await
    .map_err(db_error)?;
    Ok(())
}

async fn approval_where<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    id: ApprovalId,
    suffix: &'static str,
) -> Result<Option<Approval>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT * FROM approvals WHERE id = $1{suffix}"
    )))
    .bind(id.to_string())
    .fetch_optional(db)
    .await
    .map_err(db_error)?;
    row.as_ref().map(convert::approval).transpose()
}

pub(crate) async fn approval(pool: &AnyPool, id: ApprovalId) -> Result<Option<Approval>> {
    approval_where(pool, id, "").await
}

pub(crate) async fn approval_for(
    pool: &AnyPool,
    task: TaskId,
    digest: &str,
) -> Result<Option<Approval>> {
    let row = sqlx::query(
        "SELECT * FROM approvals WHERE task_id = $1 AND digest = $2 \
         ORDER BY requested_at DESC, id DESC LIMIT 1",
    )
    .bind(task.to_string())
    .bind(digest.to_owned())
    .fetch_optional(pool)
    .await
    .map_err(db_error)?;
    row.as_ref().map(convert::approval).transpose()
}

pub(crate) async fn list_approvals(
    store: &SqlStore,
    filter: &ApprovalFilter,
) -> Result<Vec<Approval>> {
    let mut q = Filtered::new("SELECT * FROM approvals");
    if let Some(s) = filter.status {
        q.and("status", s.as_str().to_owned());
    }
    if let Some(t) = filter.task {
        q.and("task_id", t.to_string());
    }
    let rows = q
        .order_by("requested_at DESC, id DESC")
        .fetch_all(store)
        .await?;
    rows.iter().map(convert::approval).collect()
}

/// A human referenced by a write must exist (a clear NotFound rather than a
/// foreign-key failure).
async fn existing_human(w: &mut WriteTx<'_>, id: HumanId) -> Result<()> {
    super::registry::human(w.conn(), id)
        .await?
        .map(|_| ())
        .ok_or_else(|| StoreError::NotFound(format!("human {id}")))
}

pub(crate) async fn answer_approval(
    store: &SqlStore,
    change: &Change,
    id: ApprovalId,
    approve: bool,
    by: HumanId,
    note: Option<&str>,
) -> Result<Approval> {
    let mut w = store.write().await?;
    let lock = for_update(&w);
    let a = approval_where(w.conn(), id, lock)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("approval {id}")))?;
    if a.status != ApprovalStatus::Pending {
        return Err(RuleError::Transition(format!(
            "approval {id} is already {} and cannot be answered again",
            a.status.as_str()
        ))
        .into());
    }
    if a.is_expired(change.at) {
        return Err(RuleError::Transition(format!(
            "approval {id} expired at {} and can no longer be answered",
            a.expires_at.rfc3339()
        ))
        .into());
    }
    existing_human(&mut w, by).await?;
    let status = if approve {
        ApprovalStatus::Approved
    } else {
        ApprovalStatus::Denied
    };
    sqlx::query(
        "UPDATE approvals SET status = $1, decided_by = $2, decided_at = $3, note = $4 \
         WHERE id = $5 AND status = 'pending'",
    )
    .bind(status.as_str())
    .bind(by.to_string())
    .bind(change.at.as_millis())
    .bind(note.map(str::to_owned))
    .bind(id.to_string())
    .execute(w.conn())
    .await
    .map_err(db_error)?;
    let kind = if approve {
        EventKind::ApprovalGranted
    } else {
        EventKind::ApprovalDenied
    };
    append(
        &mut w,
        event(change, kind)
            .task(a.task)
            .agent(a.agent)
            .human(by)
            .details(json!({ "approval": id, "note": note })),
    )
    .await?;
    let a = approval_where(w.conn(), id, "")
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("approval {id}")))?;
    w.commit().await?;
    Ok(a)
}

// ---- break-glass ----------------------------------------------------------------------

pub(crate) async fn grant_breakglass(
    store: &SqlStore,
    change: &Change,
    g: &BreakGlass,
) -> Result<()> {
    let mut w = store.write().await?;
    let lock = if w.backend == Backend::Postgres {
        " FOR UPDATE OF a"
    } else {
        ""
    };
    super::registry::agent_where(w.conn(), "a.id", g.agent.to_string(), lock)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("agent {}", g.agent)))?;
    sqlx::query(
        "INSERT INTO breakglass (id, agent_id, scope, reason, granted_by, granted_at, expires_at, \
         reviewed_by, reviewed_at, review_note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(g.id.to_string())
    .bind(g.agent.to_string())
    .bind(to_json(&g.scope))
    .bind(g.reason.clone())
    .bind(to_json(&g.granted_by))
    .bind(g.granted_at.as_millis())
    .bind(g.expires_at.as_millis())
    .bind(g.reviewed_by.map(|h| h.to_string()))
    .bind(g.reviewed_at.map(Timestamp::as_millis))
    .bind(g.review_note.clone())
    .execute(w.conn())
    .await
    .map_err(db_error)?;
    append(
        &mut w,
        event(change, EventKind::BreakGlassGranted)
            .agent(g.agent)
            .details(json!({
                "id": g.id, "scope": g.scope, "reason": g.reason, "expires_at": g.expires_at,
            })),
    )
    .await?;
    w.commit().await
}

async fn breakglass_where<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    id: BreakGlassId,
    suffix: &'static str,
) -> Result<Option<BreakGlass>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT * FROM breakglass WHERE id = $1{suffix}"
    )))
    .bind(id.to_string())
    .fetch_optional(db)
    .await
    .map_err(db_error)?;
    row.as_ref().map(convert::breakglass).transpose()
}

pub(crate) async fn breakglass(pool: &AnyPool, id: BreakGlassId) -> Result<Option<BreakGlass>> {
    breakglass_where(pool, id, "").await
}

pub(crate) async fn list_breakglass(
    pool: &AnyPool,
    unreviewed_only: bool,
) -> Result<Vec<BreakGlass>> {
    let filter = if unreviewed_only {
        " WHERE reviewed_at IS NULL"
    } else {
        ""
    };
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT * FROM breakglass{filter} ORDER BY granted_at DESC, id DESC"
    )))
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter().map(convert::breakglass).collect()
}

pub(crate) async fn active_breakglass(
    pool: &AnyPool,
    agent: AgentId,
    now: Timestamp,
) -> Result<Vec<BreakGlass>> {
    let rows = sqlx::query(
        "SELECT * FROM breakglass WHERE agent_id = $1 AND expires_at > $2 \
         ORDER BY granted_at DESC, id DESC",
    )
    .bind(agent.to_string())
    .bind(now.as_millis())
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter().map(convert::breakglass).collect()
}

pub(crate) async fn review_breakglass(
    store: &SqlStore,
    change: &Change,
    id: BreakGlassId,
    by: HumanId,
    note: &str,
) -> Result<BreakGlass> {
    let mut w = store.write().await?;
    let lock = for_update(&w);
    let g = breakglass_where(w.conn(), id, lock)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("break-glass grant {id}")))?;
    g.check_review(note)?;
    existing_human(&mut w, by).await?;
    sqlx::query(
        "UPDATE breakglass SET reviewed_by = $1, reviewed_at = $2, review_note = $3 \
         WHERE id = $4 AND reviewed_at IS NULL",
    )
    .bind(by.to_string())
    .bind(change.at.as_millis())
    .bind(note.trim().to_owned())
    .bind(id.to_string())
    .execute(w.conn())
    .await
    .map_err(db_error)?;
    append(
        &mut w,
        event(change, EventKind::BreakGlassReviewed)
            .agent(g.agent)
            .human(by)
            .details(json!({ "id": id, "note": note.trim() })),
    )
    .await?;
    let g = breakglass_where(w.conn(), id, "")
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("break-glass grant {id}")))?;
    w.commit().await?;
    Ok(g)
}
