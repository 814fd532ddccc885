//! The inventory: each agent of a page of the registry, with who delegates
//! to it, what it was allowed to do, and what it holds now.

use mandate_core::ids::{AgentId, HumanId};
use mandate_core::inventory::{DelegatedBy, Delegator, InventoryItem, Usage};
use sqlx::{AnyPool, Row};

use super::convert::{millis, text};
use super::{SqlStore, db_error};
use crate::*;

pub(crate) async fn inventory(
    store: &SqlStore,
    filter: &AgentFilter,
    page: &PageRequest,
    now: Timestamp,
) -> Result<Page<InventoryItem>> {
    let agents = super::registry::list_agents(store, filter, page).await?;
    let mut items = Vec::with_capacity(agents.items.len());
    for agent in agents.items {
        items.push(item(store.pool(), agent, now).await?);
    }
    Ok(Page {
        items,
        next: agents.next,
    })
}

async fn item(pool: &AnyPool, agent: Agent, now: Timestamp) -> Result<InventoryItem> {
    let id = agent.id.to_string();
    let used = usage(pool, &id).await?;
    let delegators = delegators(pool, &id).await?;
    let count = |sql: &'static str| {
        let id = id.clone();
        async move {
            let n: i64 = sqlx::query_scalar(sql)
                .bind(id)
                .bind(now.as_millis())
                .fetch_one(pool)
                .await
                .map_err(db_error)?;
            Ok::<u64, StoreError>(u64::try_from(n).unwrap_or(0))
        }
    };
    let live_tasks = count(
        "SELECT COUNT(*) FROM tasks WHERE assignee = $1 AND status = 'open' AND expires_at > $2",
    )
    .await?;
    let live_credentials = count(
        "SELECT COUNT(*) FROM credentials c JOIN tasks t ON t.id = c.task_id \
         WHERE c.agent_id = $1 AND c.revoked_at IS NULL AND c.expires_at > $2 AND t.status = 'open'",
    )
    .await?;
    let last_task: Option<i64> =
        sqlx::query_scalar("SELECT MAX(created_at) FROM tasks WHERE assignee = $1")
            .bind(&id)
            .fetch_one(pool)
            .await
            .map_err(db_error)?;
    let last_action = used.iter().map(|u| u.last_used).max();
    let last_activity = last_task.map(Timestamp::from_millis).max(last_action);
    Ok(InventoryItem {
        agent,
        delegators,
        used,
        last_activity,
        live_tasks,
        live_credentials,
    })
}

async fn usage(pool: &AnyPool, agent: &str) -> Result<Vec<Usage>> {
    let rows = sqlx::query(
        "SELECT action, resource, calls, first_used, last_used FROM agent_usage \
         WHERE agent_id = $1 ORDER BY last_used DESC, action, resource",
    )
    .bind(agent)
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|r| {
            let calls: i64 = r.try_get("calls").map_err(db_error)?;
            Ok(Usage {
                action: text(r, "action")?,
                resource: text(r, "resource")?,
                calls: u64::try_from(calls).unwrap_or(0),
                first_used: millis(r, "first_used")?,
                last_used: millis(r, "last_used")?,
            })
        })
        .collect()
}

/// Humans who started tasks for the agent, and agents that delegated to it.
async fn delegators(pool: &AnyPool, agent: &str) -> Result<Vec<DelegatedBy>> {
    let rows = sqlx::query(
        "SELECT 'human' AS kind, initiator AS who, COUNT(*) AS n FROM tasks \
         WHERE assignee = $1 AND parent_id IS NULL GROUP BY initiator \
         UNION ALL \
         SELECT 'agent' AS kind, delegator AS who, COUNT(*) AS n FROM tasks \
         WHERE assignee = $1 AND delegator IS NOT NULL GROUP BY delegator",
    )
    .bind(agent)
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    let mut out = rows
        .iter()
        .map(|r| {
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
        })
        .collect::<Result<Vec<_>>>()?;
    out.sort_by(|a, b| a.by.cmp(&b.by));
    Ok(out)
}
