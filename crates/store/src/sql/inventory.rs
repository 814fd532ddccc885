//! The inventory: each agent of a page of the registry, with who delegates
//! to it, what it was allowed to do, and what it holds now.

use std::collections::HashMap;

use mandate_core::ids::{AgentId, HumanId};
use mandate_core::inventory::{DelegatedBy, Delegator, InventoryItem, Usage};
use sqlx::{AnyPool, Row};

use super::convert::{millis, text};
use super::{SqlStore, db_error, placeholders};
use crate::*;

pub(crate) async fn inventory(
    store: &SqlStore,
    filter: &AgentFilter,
    page: &PageRequest,
    now: Timestamp,
) -> Result<Page<InventoryItem>> {
    let agents = super::registry::list_agents(store, filter, page).await?;
    let items = items(store.pool(), agents.items, now).await?;
    Ok(Page {
        items,
        next: agents.next,
    })
}

/// The inventory items of `agents`, in their order. Each fact is read for
/// the whole page in one statement (grouped by agent), so a page costs five
/// statements however many agents it holds: posture reads the registry
/// page after page this way.
async fn items(pool: &AnyPool, agents: Vec<Agent>, now: Timestamp) -> Result<Vec<InventoryItem>> {
    if agents.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = agents.iter().map(|a| a.id.to_string()).collect();
    let mut used = usage(pool, &ids).await?;
    let mut delegators = delegators(pool, &ids).await?;
    let now_ms = now.as_millis();
    let mut live_tasks = counts(
        pool,
        "SELECT assignee AS agent, COUNT(*) AS n FROM tasks \
         WHERE status = 'open' AND expires_at > $1 AND assignee IN ({ids}) GROUP BY assignee",
        Some(now_ms),
        &ids,
    )
    .await?;
    let mut live_credentials = counts(
        pool,
        "SELECT c.agent_id AS agent, COUNT(*) AS n FROM credentials c JOIN tasks t ON t.id = c.task_id \
         WHERE c.revoked_at IS NULL AND c.expires_at > $1 AND t.status = 'open' \
         AND c.agent_id IN ({ids}) GROUP BY c.agent_id",
        Some(now_ms),
        &ids,
    )
    .await?;
    let mut last_task = counts(
        pool,
        "SELECT assignee AS agent, MAX(created_at) AS n FROM tasks \
         WHERE assignee IN ({ids}) GROUP BY assignee",
        None,
        &ids,
    )
    .await?;
    Ok(agents
        .into_iter()
        .zip(ids)
        .map(|(agent, id)| {
            let used = used.remove(&id).unwrap_or_default();
            let last_action = used.iter().map(|u| u.last_used).max();
            let last_task = last_task.remove(&id).map(Timestamp::from_millis);
            let count = |n: Option<i64>| n.map_or(0, |n| u64::try_from(n).unwrap_or(0));
            InventoryItem {
                agent,
                delegators: delegators.remove(&id).unwrap_or_default(),
                last_activity: last_task.max(last_action),
                used,
                live_tasks: count(live_tasks.remove(&id)),
                live_credentials: count(live_credentials.remove(&id)),
            }
        })
        .collect())
}

/// Runs `sql` (with `{ids}` standing for the agents' placeholders, after
/// `$1` = `now` when given) and maps each row's `agent` to its `n`.
async fn counts(
    pool: &AnyPool,
    sql: &'static str,
    now: Option<i64>,
    ids: &[String],
) -> Result<HashMap<String, i64>> {
    let first = if now.is_some() { 2 } else { 1 };
    // Only placeholders are formatted into the statement.
    let sql = sql.replace("{ids}", &placeholders(first, ids.len()));
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    if let Some(now) = now {
        q = q.bind(now);
    }
    for id in ids {
        q = q.bind(id.as_str());
    }
    let mut out = HashMap::new();
    for r in &q.fetch_all(pool).await.map_err(db_error)? {
        let n: Option<i64> = r.try_get("n").map_err(db_error)?;
        if let Some(n) = n {
            out.insert(text(r, "agent")?, n);
        }
    }
    Ok(out)
}

/// What each agent was allowed to do, most recent first.
async fn usage(pool: &AnyPool, agents: &[String]) -> Result<HashMap<String, Vec<Usage>>> {
    // Only placeholders are formatted into the statement.
    let sql = format!(
        "SELECT agent_id, action, resource, calls, first_used, last_used FROM agent_usage \
         WHERE agent_id IN ({}) ORDER BY agent_id, last_used DESC, action, resource",
        placeholders(1, agents.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for a in agents {
        q = q.bind(a.as_str());
    }
    let rows = q.fetch_all(pool).await.map_err(db_error)?;
    let mut out: HashMap<String, Vec<Usage>> = HashMap::new();
    for r in &rows {
        let calls: i64 = r.try_get("calls").map_err(db_error)?;
        out.entry(text(r, "agent_id")?).or_default().push(Usage {
            action: text(r, "action")?,
            resource: text(r, "resource")?,
            calls: u64::try_from(calls).unwrap_or(0),
            first_used: millis(r, "first_used")?,
            last_used: millis(r, "last_used")?,
        });
    }
    Ok(out)
}

/// Humans who started tasks for each agent, and agents that delegated to it.
async fn delegators(
    pool: &AnyPool,
    agents: &[String],
) -> Result<HashMap<String, Vec<DelegatedBy>>> {
    // Only placeholders are formatted into the statement; the list is bound
    // twice, once per half of the union.
    let sql = format!(
        "SELECT assignee AS agent, 'human' AS kind, initiator AS who, COUNT(*) AS n FROM tasks \
         WHERE assignee IN ({}) AND parent_id IS NULL GROUP BY assignee, initiator \
         UNION ALL \
         SELECT assignee AS agent, 'agent' AS kind, delegator AS who, COUNT(*) AS n FROM tasks \
         WHERE assignee IN ({}) AND delegator IS NOT NULL GROUP BY assignee, delegator",
        placeholders(1, agents.len()),
        placeholders(agents.len() + 1, agents.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for a in agents.iter().chain(agents) {
        q = q.bind(a.as_str());
    }
    let rows = q.fetch_all(pool).await.map_err(db_error)?;
    let mut out: HashMap<String, Vec<DelegatedBy>> = HashMap::new();
    for r in &rows {
        let by = delegated_by(r)?;
        out.entry(text(r, "agent")?).or_default().push(by);
    }
    for list in out.values_mut() {
        list.sort_by(|a, b| a.by.cmp(&b.by));
    }
    Ok(out)
}

fn delegated_by(r: &sqlx::any::AnyRow) -> Result<DelegatedBy> {
    let who = text(r, "who")?;
    let by = if text(r, "kind")? == "human" {
        Delegator::Human(
            who.parse::<HumanId>()
                .map_err(|e| StoreError::Internal(e.to_string()))?,
        )
    } else {
        Delegator::Agent(
            who.parse::<AgentId>()
                .map_err(|e| StoreError::Internal(e.to_string()))?,
        )
    };
    let n: i64 = r.try_get("n").map_err(db_error)?;
    Ok(DelegatedBy {
        by,
        tasks: u64::try_from(n).unwrap_or(0),
    })
}
