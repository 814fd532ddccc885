//! Inventory: every agent with its owner, status, kind, live tasks, last
//! activity and findings; and one agent's page (keys and their age, the
//! ceiling against what it actually used, its tasks, who delegated to it).
//!
//! Admins and auditors see every agent; an owner sees their own.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::Html;
use mandate_core::agent::{Agent, AgentKind, AgentStatus};
use mandate_core::ids::{AgentId, AgentName, HumanId};
use mandate_core::inventory::{Delegator, InventoryItem};
use mandate_core::posture::{self, Facts, Thresholds};
use mandate_core::time::Timestamp;
use mandate_store::{AgentFilter, PageRequest, TaskFilter};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Q, days_since, given, query_string, urlencode, when};
use crate::Console;
use crate::auth::Viewer;
use crate::error::ConsoleError;
use crate::layout::{self, Nav};

/// Agents per inventory page.
pub const PAGE: u32 = 50;

#[derive(Debug, Deserialize, Default)]
pub struct InventoryQuery {
    /// Part of the agent's name.
    pub q: Option<String>,
    pub kind: Option<String>,
    pub status: Option<String>,
    pub orphaned: Option<String>,
    pub after: Option<String>,
}

fn parse_kind(s: &str) -> Result<AgentKind, ConsoleError> {
    s.parse()
        .map_err(|e: mandate_core::RuleError| ConsoleError::BadRequest(e.to_string()))
}

fn parse_status(s: &str) -> Result<AgentStatus, ConsoleError> {
    s.parse()
        .map_err(|e: mandate_core::RuleError| ConsoleError::BadRequest(e.to_string()))
}

/// Agent names are `[a-z0-9._-]`: a search for anything else finds nothing
/// and is said to be wrong rather than quietly empty.
fn parse_search(s: &str) -> Result<String, ConsoleError> {
    let s = s.to_ascii_lowercase();
    if s.len() > 63
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(ConsoleError::BadRequest(
            "search: agent names have at most 63 letters, digits, '.', '_' or '-'".into(),
        ));
    }
    Ok(s)
}

/// The filter this viewer may use: owners only ever see their own agents.
pub fn filter_for(v: &Viewer, q: &InventoryQuery) -> Result<AgentFilter, ConsoleError> {
    v.forbid_unless(
        v.roles.reads_all() || v.roles.owner,
        "the inventory is for admins, auditors and agent owners",
    )?;
    Ok(AgentFilter {
        owner: (!v.roles.reads_all()).then_some(v.human.id),
        kind: given(&q.kind).map(parse_kind).transpose()?,
        status: given(&q.status).map(parse_status).transpose()?,
        tag: None,
        orphaned: given(&q.orphaned).map(|_| true),
        name_contains: given(&q.q).map(parse_search).transpose()?,
    })
}

/// Display names of the humans named, one store read each.
async fn names(c: &Console, ids: Vec<HumanId>) -> Result<BTreeMap<HumanId, String>, ConsoleError> {
    let mut out = BTreeMap::new();
    for id in ids {
        if let std::collections::btree_map::Entry::Vacant(e) = out.entry(id) {
            let name = c.app.store.human(id).await?.map(|h| h.display_name);
            e.insert(name.unwrap_or_else(|| id.to_string()));
        }
    }
    Ok(out)
}

/// Agent-level findings (orphaned, dormant, stale keys, over-privileged)
/// per agent name, by the same assessment the posture page runs.
fn findings_by_agent(items: &[InventoryItem], now: Timestamp) -> BTreeMap<String, usize> {
    let facts = Facts::agents(items);
    let mut out = BTreeMap::new();
    for f in posture::assess(&facts, &Thresholds::default(), now) {
        *out.entry(f.subject).or_insert(0) += 1;
    }
    out
}

fn status_badge(s: AgentStatus, orphaned: bool) -> Markup {
    html! {
        span class=(format!("badge st-{}", s.as_str())) { (s.as_str()) }
        @if orphaned { " " span.badge.sev-high { "orphaned" } }
    }
}

pub async fn list(
    State(c): State<Console>,
    v: Viewer,
    Q(q): Q<InventoryQuery>,
) -> Result<Html<String>, ConsoleError> {
    let filter = filter_for(&v, &q)?;
    let now = mandate_server::now();
    let page = c
        .app
        .store
        .inventory(
            &filter,
            &PageRequest {
                after: given(&q.after).map(str::to_owned),
                limit: PAGE,
            },
            now,
        )
        .await?;
    let owner_ids: Vec<HumanId> = page.items.iter().map(|i| i.agent.owner).collect();
    let owners = names(&c, owner_ids).await?;
    let findings = findings_by_agent(&page.items, now);
    let next_link = page.next.as_ref().map(|n| {
        let rest = query_string(&[
            ("q", &q.q),
            ("kind", &q.kind),
            ("status", &q.status),
            ("orphaned", &q.orphaned),
        ]);
        format!("/ui/inventory?after={}&{rest}", urlencode(n))
    });
    let body = html! {
        @if !v.roles.reads_all() {
            p.note { "Showing the agents you own." }
        }
        form.filters method="get" action="/ui/inventory" role="search" {
            label { "Agent name contains"
                input type="search" name="q" value=[given(&q.q)] autocomplete="off";
            }
            label { "Kind"
                select name="kind" {
                    option value="" { "any" }
                    @for k in AgentKind::ALL {
                        option value=(k.as_str()) selected[given(&q.kind) == Some(k.as_str())] { (k.as_str()) }
                    }
                }
            }
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    @for s in ["active", "suspended", "retired"] {
                        option value=(s) selected[given(&q.status) == Some(s)] { (s) }
                    }
                }
            }
            label { "Orphaned only"
                input type="checkbox" name="orphaned" value="true" checked[given(&q.orphaned).is_some()];
            }
            button type="submit" { "Filter" }
        }
        table #inventory {
            caption.muted { (page.items.len()) " agent(s) on this page, as of " (when(now)) }
            thead { tr {
                th scope="col" { "Agent" }
                th scope="col" { "Owner" }
                th scope="col" { "Status" }
                th scope="col" { "Kind" }
                th.num scope="col" { "Live tasks" }
                th scope="col" { "Last activity" }
                th.num scope="col" { "Findings" }
            } }
            tbody {
                @for i in &page.items {
                    @let a = &i.agent;
                    tr {
                        th scope="row" {
                            a href=(format!("/ui/agents/{}", a.name.as_str())) { (a.name.as_str()) }
                            span.id { (a.spiffe_id.to_string()) }
                        }
                        td { (owners.get(&a.owner).cloned().unwrap_or_default()) }
                        td { (status_badge(a.status, a.orphaned)) }
                        td { (a.kind.as_str()) }
                        td.num { (i.live_tasks) }
                        td { @match i.last_activity { Some(t) => (when(t)), None => span.muted { "never" } } }
                        td.num { (findings.get(a.name.as_str()).copied().unwrap_or(0)) }
                    }
                }
                @if page.items.is_empty() {
                    tr { td colspan="7" { "No agent matches." } }
                }
            }
        }
        p.note { "Findings here are the agent's own (orphaned, dormant, stale key, over-privileged); "
            "the posture page lists every finding, delegation and secrets included." }
        @if let Some(n) = next_link {
            div.pager { a href=(n) rel="next" { "Next page" } }
        }
    };
    Ok(layout::page(&v, Nav::Inventory, "Inventory", body))
}

/// The agent a path names, by name or id.
pub async fn find_agent(c: &Console, key: &str) -> Result<Agent, ConsoleError> {
    let agent = match key.parse::<AgentId>() {
        Ok(id) => c.app.store.agent(id).await?,
        Err(_) => match AgentName::parse(key) {
            Ok(name) => c.app.store.agent_by_name(&name).await?,
            Err(e) => return Err(ConsoleError::BadRequest(e.to_string())),
        },
    };
    agent.ok_or_else(|| ConsoleError::NotFound(format!("no agent {key:?}")))
}

/// Admins and auditors see any agent; an owner, their own.
pub fn check_agent_reader(v: &Viewer, a: &Agent) -> Result<(), ConsoleError> {
    v.forbid_unless(
        v.roles.reads_all() || a.owner == v.human.id,
        "an agent's page is for admins, auditors and its owner",
    )
}

pub async fn agent(
    State(c): State<Console>,
    v: Viewer,
    Path(key): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    let agent = find_agent(&c, &key).await?;
    check_agent_reader(&v, &agent)?;
    let now = mandate_server::now();
    // The store's inventory of this one agent: its owner's agents whose
    // name contains its name, then the exact one.
    let filter = AgentFilter {
        owner: Some(agent.owner),
        name_contains: Some(agent.name.as_str().to_owned()),
        ..AgentFilter::default()
    };
    let mut after = None;
    let item = loop {
        let page = c
            .app
            .store
            .inventory(
                &filter,
                &PageRequest {
                    after,
                    limit: mandate_store::MAX_PAGE,
                },
                now,
            )
            .await?;
        if let Some(i) = page.items.into_iter().find(|i| i.agent.id == agent.id) {
            break i;
        }
        match page.next {
            Some(n) => after = Some(n),
            None => {
                return Err(ConsoleError::NotFound(format!(
                    "agent {key:?} is not in the inventory"
                )));
            }
        }
    };
    let tasks = c
        .app
        .store
        .list_tasks(
            &TaskFilter {
                assignee: Some(agent.id),
                now: Some(now),
                ..TaskFilter::default()
            },
            &PageRequest {
                after: None,
                limit: PAGE,
            },
        )
        .await?;
    let mut humans = vec![agent.owner];
    humans.extend(item.delegators.iter().filter_map(|d| match d.by {
        Delegator::Human(h) => Some(h),
        Delegator::Agent(_) => None,
    }));
    let names = names(&c, humans).await?;
    let mut agent_names = BTreeMap::new();
    for d in &item.delegators {
        if let Delegator::Agent(id) = d.by {
            let n = c
                .app
                .store
                .agent(id)
                .await?
                .map(|a| a.name.as_str().to_owned());
            agent_names.insert(id, n.unwrap_or_else(|| id.to_string()));
        }
    }
    let findings = {
        let facts = Facts::agents(std::slice::from_ref(&item));
        posture::assess(&facts, &Thresholds::default(), now)
    };
    let a = &item.agent;
    let body = html! {
        dl {
            dt { "SPIFFE id" } dd.id { (a.spiffe_id.to_string()) }
            dt { "Owner" } dd { (names.get(&a.owner).cloned().unwrap_or_default()) }
            dt { "Status" } dd { (status_badge(a.status, a.orphaned)) }
            dt { "Kind" } dd { (a.kind.as_str()) }
            dt { "Description" } dd { (a.description) }
            dt { "Tags" } dd { (a.tags.iter().cloned().collect::<Vec<_>>().join(", ")) }
            dt { "Registered" } dd { (when(a.created_at)) }
            dt { "Last activity" } dd { @match item.last_activity { Some(t) => (when(t)), None => "never" } }
            dt { "Live tasks / credentials" } dd { (item.live_tasks) " / " (item.live_credentials) }
        }
        @if !findings.is_empty() {
            h2 { "Findings" }
            ul {
                @for f in &findings {
                    li { span class=(format!("badge sev-{}", super::posture::severity(f.severity))) { (super::posture::severity(f.severity)) } " " (f.title) ": " (f.remediation) }
                }
            }
        }
        h2 { "Keys" }
        table #keys {
            thead { tr { th scope="col" { "Key id" } th scope="col" { "Created" } th.num scope="col" { "Age (days)" } } }
            tbody {
                @for k in &a.keys {
                    tr { td.id { (k.kid) } td { (when(k.created_at)) } td.num { (days_since(k.created_at, now)) } }
                }
                @if a.keys.is_empty() { tr { td colspan="3" { "No attestation key: it cannot authenticate." } } }
            }
        }
        h2 { "Ceiling versus actually used" }
        table #ceiling {
            thead { tr { th scope="col" { "Ceiling grant (the most it may be given)" } th.num scope="col" { "Allowed calls" } th scope="col" { "Last used" } } }
            tbody {
                @for g in a.ceiling.grants() {
                    @let used: Vec<_> = item.used.iter().filter(|u| g.allows(&u.action, &u.resource)).collect();
                    @let calls: u64 = used.iter().map(|u| u.calls).sum();
                    tr {
                        td { code { (g.to_string()) } }
                        td.num { (calls) }
                        td { @match used.iter().map(|u| u.last_used).max() { Some(t) => (when(t)), None => span.sev-medium { "never used" } } }
                    }
                }
            }
        }
        @if !item.used.is_empty() {
            h3 { "Every action it was allowed" }
            table {
                thead { tr { th scope="col" { "Action" } th scope="col" { "Resource" } th.num scope="col" { "Calls" } th scope="col" { "First" } th scope="col" { "Last" } } }
                tbody {
                    @for u in &item.used {
                        tr { td { code { (u.action) } } td { code { (u.resource) } } td.num { (u.calls) } td { (when(u.first_used)) } td { (when(u.last_used)) } }
                    }
                }
            }
        }
        h2 { "Delegators" }
        ul {
            @for d in &item.delegators {
                li {
                    @match d.by {
                        Delegator::Human(h) => { "human " (names.get(&h).cloned().unwrap_or_default()) }
                        Delegator::Agent(id) => { "agent " (agent_names.get(&id).cloned().unwrap_or_default()) }
                    }
                    ": " (d.tasks) " task(s)"
                }
            }
            @if item.delegators.is_empty() { li { "Nobody has given it work yet." } }
        }
        h2 { "Tasks" }
        (super::tasks::task_table(&tasks.items, now))
        @if tasks.next.is_some() {
            p { a href=(format!("/ui/tasks?agent={}", a.name.as_str())) { "All tasks of " (a.name.as_str()) } }
        }
    };
    Ok(layout::page(
        &v,
        Nav::Inventory,
        &format!("Agent {}", a.name.as_str()),
        body,
    ))
}
