//! `mandate inventory`: every agent with its owner, who delegates to it,
//! what it actually did, its last activity, and what it holds now.

use std::collections::HashMap;

use mandate_core::human::Human;
use mandate_core::inventory::{Delegator, InventoryItem};
use mandate_core::time::Timestamp;

use super::agent::AgentSelection;
use crate::client::Client;
use crate::output;
use crate::{CliError, ServerArgs};

#[derive(clap::Args)]
pub struct InventoryArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    select: AgentSelection,
    /// CSV (one row per agent) instead of a table.
    #[arg(long, conflicts_with = "json")]
    csv: bool,
}

pub async fn run(a: InventoryArgs) -> Result<(), CliError> {
    let c = Client::new(&a.server.server, a.server.token.clone());
    let items = fetch(&c, &a.select.query()).await?;
    if a.server.json {
        output::json(&items);
        return Ok(());
    }
    let rows = rows(&c, &items).await?;
    if a.csv {
        let mut w = csv::Writer::from_writer(std::io::stdout());
        let fail = |e: csv::Error| CliError::Failed(format!("cannot write CSV: {e}"));
        w.write_record(HEADER).map_err(fail)?;
        for r in &rows {
            w.write_record(r).map_err(fail)?;
        }
        w.flush()
            .map_err(|e| CliError::Failed(format!("cannot write CSV: {e}")))?;
    } else {
        print(rows);
    }
    Ok(())
}

const HEADER: [&str; 10] = [
    "agent",
    "owner",
    "kind",
    "status",
    "delegated by",
    "used (calls)",
    "last activity",
    "live tasks",
    "live credentials",
    "keys (age in days)",
];

/// Every page of the inventory for these filters (`&owner=...`).
pub async fn fetch(c: &Client, query: &str) -> Result<Vec<InventoryItem>, CliError> {
    c.get_all(&format!("/v1/inventory?limit=500{query}")).await
}

/// The inventory as a table on stdout.
pub async fn print_table(c: &Client, items: &[InventoryItem]) -> Result<(), CliError> {
    print(rows(c, items).await?);
    Ok(())
}

fn print(rows: Vec<Vec<String>>) {
    let mut t = output::table(&HEADER);
    for r in rows {
        t.add_row(r);
    }
    println!("{t}");
}

/// One row per agent, with humans and agents named.
async fn rows(c: &Client, items: &[InventoryItem]) -> Result<Vec<Vec<String>>, CliError> {
    let humans: Vec<Human> = c.get_all("/v1/humans?limit=500").await?;
    let names: HashMap<String, String> = humans
        .into_iter()
        .map(|h| (h.id.to_string(), h.display_name))
        .collect();
    let agent_names: HashMap<String, String> = items
        .iter()
        .map(|i| (i.agent.id.to_string(), i.agent.name.to_string()))
        .collect();
    let now = mandate_server::now();
    Ok(items
        .iter()
        .map(|i| row(i, &names, &agent_names, now))
        .collect())
}

fn row(
    i: &InventoryItem,
    humans: &HashMap<String, String>,
    agents: &HashMap<String, String>,
    now: Timestamp,
) -> Vec<String> {
    let name = |map: &HashMap<String, String>, id: String| map.get(&id).cloned().unwrap_or(id);
    let owner = name(humans, i.agent.owner.to_string());
    let delegators: Vec<String> = i
        .delegators
        .iter()
        .map(|d| {
            let who = match &d.by {
                Delegator::Human(h) => name(humans, h.to_string()),
                Delegator::Agent(a) => name(agents, a.to_string()),
            };
            format!("{who} ({})", d.tasks)
        })
        .collect();
    let used: Vec<String> = i
        .used
        .iter()
        .map(|u| format!("{} on {} ({})", u.action, u.resource, u.calls))
        .collect();
    let days = |t: Timestamp| (now.as_millis() - t.as_millis()) / 86_400_000;
    let keys: Vec<String> = i
        .agent
        .keys
        .iter()
        .map(|k| format!("{} ({})", k.kid, days(k.created_at)))
        .collect();
    vec![
        i.agent.name.to_string(),
        if i.agent.orphaned {
            format!("{owner} (ORPHANED)")
        } else {
            owner
        },
        i.agent.kind.as_str().to_owned(),
        i.agent.status.as_str().to_owned(),
        delegators.join(", "),
        used.join(", "),
        i.last_activity
            .map(Timestamp::rfc3339)
            .unwrap_or_else(|| "never".into()),
        i.live_tasks.to_string(),
        i.live_credentials.to_string(),
        keys.join(", "),
    ]
}
