//! Tasks and their lineage: the delegation tree of a task drawn as a graph
//! (human -> agents -> subagents), each node with its scope, and under each
//! task every decision with its reasons, approvals, revocations, outcomes
//! and how it ended, each linked to its audit entry and inclusion proof.
//!
//! The tree comes from the store; what happened under it comes from the
//! audit log through the same tracer `mandate audit trace` uses
//! ([`mandate_store::log::trace`]).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, State};
use axum::response::Html;
use mandate_core::audit::Actor;
use mandate_core::audit::trace::{Trace, TraceEvent, TraceTarget, Tracer};
use mandate_core::ids::{HumanId, TaskId};
use mandate_core::task::{Task, TaskStatus};
use mandate_core::time::Timestamp;
use mandate_store::{ApprovalFilter, PageRequest, TaskFilter};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Q, given, query_string, urlencode, when};
use crate::Console;
use crate::auth::Viewer;
use crate::error::ConsoleError;
use crate::graph;
use crate::layout::{self, Nav};

/// A table of tasks linking to their lineage.
pub fn task_table(tasks: &[Task], now: Timestamp) -> Markup {
    html! {
        table.tasks {
            thead { tr {
                th scope="col" { "Task" } th scope="col" { "Purpose" } th scope="col" { "Agent" }
                th scope="col" { "Status" } th.num scope="col" { "Depth" } th scope="col" { "Created" }
            } }
            tbody {
                @for t in tasks {
                    @let st = t.status_at(now);
                    tr {
                        td { a.id href=(format!("/ui/tasks/{}", t.id)) { (t.id.to_string()) } }
                        td { (t.purpose) }
                        td.id { (t.assignee_spiffe.to_string()) }
                        td { span class=(format!("badge st-{}", st.as_str())) { (st.as_str()) } }
                        td.num { (t.depth) }
                        td { (when(t.created_at)) }
                    }
                }
                @if tasks.is_empty() { tr { td colspan="6" { "No task." } } }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct TaskQuery {
    /// Agent name or id: its tasks.
    agent: Option<String>,
    status: Option<String>,
    /// Jump straight to one task's lineage.
    id: Option<String>,
    after: Option<String>,
}

fn parse_task_id(s: &str) -> Result<TaskId, ConsoleError> {
    s.trim()
        .parse()
        .map_err(|_| ConsoleError::BadRequest(format!("{s:?} is not a task id (a UUID)")))
}

fn parse_status(s: &str) -> Result<TaskStatus, ConsoleError> {
    s.parse()
        .map_err(|e: mandate_core::RuleError| ConsoleError::BadRequest(e.to_string()))
}

pub async fn list(
    State(c): State<Console>,
    v: Viewer,
    Q(q): Q<TaskQuery>,
) -> Result<axum::response::Response, ConsoleError> {
    use axum::response::IntoResponse;
    if let Some(id) = given(&q.id) {
        let id = parse_task_id(id)?;
        return Ok(axum::response::Redirect::to(&format!("/ui/tasks/{id}")).into_response());
    }
    v.forbid_unless(
        v.roles.reads_all() || v.roles.owner,
        "task listings are for admins, auditors and agent owners (approvers open a task from its approval)",
    )?;
    let now = mandate_server::now();
    let assignee = match given(&q.agent) {
        Some(a) => {
            let agent = super::inventory::find_agent(&c, a).await?;
            super::inventory::check_agent_reader(&v, &agent)?;
            Some(agent.id)
        }
        None => None,
    };
    // An owner without an agent filter sees the tasks they started.
    let initiator = (assignee.is_none() && !v.roles.reads_all()).then_some(v.human.id);
    let filter = TaskFilter {
        assignee,
        initiator,
        status: given(&q.status).map(parse_status).transpose()?,
        root: None,
        now: Some(now),
    };
    let page = c
        .app
        .store
        .list_tasks(
            &filter,
            &PageRequest {
                after: given(&q.after).map(str::to_owned),
                limit: 50,
            },
        )
        .await?;
    let next_link = page.next.as_ref().map(|n| {
        let rest = query_string(&[("agent", &q.agent), ("status", &q.status)]);
        format!("/ui/tasks?after={}&{rest}", urlencode(n))
    });
    let body = html! {
        form.filters method="get" action="/ui/tasks" role="search" {
            label { "Task id" input type="search" name="id" autocomplete="off" size="38"; }
            button type="submit" { "Open lineage" }
        }
        form.filters method="get" action="/ui/tasks" {
            label { "Agent (name)" input type="text" name="agent" value=[given(&q.agent)] autocomplete="off"; }
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    @for s in ["open", "completed", "failed", "revoked", "expired"] {
                        option value=(s) selected[given(&q.status) == Some(s)] { (s) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        @if initiator.is_some() { p.note { "Showing the tasks you started; pick one of your agents to see its tasks." } }
        (task_table(&page.items, now))
        @if let Some(link) = next_link {
            div.pager { a href=(link) rel="next" { "Next page" } }
        }
    };
    Ok(layout::page(&v, Nav::Tasks, "Tasks", body).into_response())
}

/// Who may see a tree: admins and auditors; the human who started it; the
/// owner of any agent in it; an approver asked to approve something in it.
async fn check_tree_reader(c: &Console, v: &Viewer, tree: &[Task]) -> Result<(), ConsoleError> {
    if v.roles.reads_all() || tree.iter().any(|t| t.initiator == v.human.id) {
        return Ok(());
    }
    for t in tree {
        if let Some(a) = c.app.store.agent(t.assignee).await?
            && a.owner == v.human.id
        {
            return Ok(());
        }
    }
    if v.roles.approver {
        for t in tree {
            let asked = c
                .app
                .store
                .list_approvals(&ApprovalFilter {
                    status: None,
                    task: Some(t.id),
                })
                .await?;
            if !asked.is_empty() {
                return Ok(());
            }
        }
    }
    v.forbid_unless(
        false,
        "this task's lineage is for admins, auditors, its initiator, the owners of its agents and its approvers",
    )
}

fn actor(a: &Actor, names: &BTreeMap<HumanId, String>) -> String {
    match a {
        Actor::System => "the installation".into(),
        Actor::Admin { credential } => format!("admin credential {credential}"),
        Actor::Human { id } => names.get(id).cloned().unwrap_or_else(|| id.to_string()),
        Actor::Agent { spiffe_id, .. } => spiffe_id.clone(),
    }
}

fn leaf(n: u64) -> Markup {
    html! { a.id href=(format!("/ui/audit?entry={n}")) title="the audit entry and its inclusion proof" { "#" (n) } }
}

pub async fn lineage(
    State(c): State<Console>,
    v: Viewer,
    Path(id): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    let id = parse_task_id(&id)?;
    let task = c
        .app
        .store
        .task(id)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("no task {id}")))?;
    let tree = c.app.store.task_tree(task.root).await?;
    check_tree_reader(&c, &v, &tree).await?;
    let now = mandate_server::now();
    let trace = mandate_store::log::trace(
        c.app.store.as_ref(),
        Tracer::new(TraceTarget::Task(task.root)),
    )
    .await;
    let (trace, trace_error): (Option<Trace>, Option<String>) = match trace {
        Ok(t) => (Some(t), None),
        Err(mandate_store::log::TraceFailure::Store(e)) => return Err(e.into()),
        Err(e) => (None, Some(e.to_string())),
    };
    let mut names: BTreeMap<HumanId, String> = BTreeMap::new();
    if let Some(t) = &trace {
        for (id, h) in &t.humans {
            names.insert(*id, h.display_name.clone());
        }
    }
    for t in &tree {
        if let std::collections::btree_map::Entry::Vacant(e) = names.entry(t.initiator)
            && let Some(h) = c.app.store.human(t.initiator).await?
        {
            e.insert(h.display_name);
        }
    }
    // Depth first from the root, children in delegation order.
    let root = tree
        .iter()
        .find(|t| t.id == task.root)
        .cloned()
        .ok_or_else(|| ConsoleError::NotFound(format!("the root of task {id} is missing")))?;
    let node = mandate_server::routes::tasks::subtree(&tree, &root, now);
    let mut order: Vec<(&mandate_server::routes::tasks::TaskNode, Option<usize>)> = Vec::new();
    let mut stack = vec![(&node, None::<usize>)];
    while let Some((n, parent)) = stack.pop() {
        let me = order.len();
        order.push((n, parent));
        for child in n.children.iter().rev() {
            stack.push((child, Some(me)));
        }
    }
    let initiator = names
        .get(&root.initiator)
        .cloned()
        .unwrap_or_else(|| root.initiator.to_string());
    let mut nodes = vec![graph::Node {
        href: "#initiator".into(),
        title: initiator.clone(),
        subtitle: "human: started the task".into(),
        lines: Vec::new(),
        status: "human".into(),
        parent: None,
    }];
    for (n, parent) in &order {
        let name = n.task.assignee_spiffe.to_string();
        let short = name.rsplit('/').next().unwrap_or(&name).to_owned();
        nodes.push(graph::Node {
            href: format!("#task-{}", n.task.id),
            title: short,
            subtitle: format!("{} · {}", n.effective_status.as_str(), n.task.purpose),
            lines: n.task.scope.grants().map(|g| g.to_string()).collect(),
            status: n.effective_status.as_str().to_owned(),
            parent: Some(parent.map_or(0, |p| p + 1)),
        });
    }
    let traced: HashMap<TaskId, &mandate_core::audit::trace::TaskNode> = trace
        .as_ref()
        .map(|t| t.tasks.iter().map(|n| (n.id, n)).collect())
        .unwrap_or_default();
    let body = html! {
        p.meta {
            "Tree of task " code { (root.id.to_string()) } ", started by " (initiator)
            " on " (when(root.created_at)) ". "
            @if root.id != task.id { "You asked for " a href=(format!("#task-{}", task.id)) { "task " (task.id.to_string()) } "." }
        }
        @if let Some(e) = &trace_error {
            p.error role="alert" { "The audit log could not be traced for this tree: " (e) }
        }
        div.graph { (graph::tree(&format!("Delegation tree of task {}", root.id), &nodes)) }
        p.note { "Each box is a task: the agent holding it, its status and purpose, and its scope. "
            "Select a box to jump to its decisions. " "#N is an audit entry: open it for its inclusion proof." }
        section #initiator {
            h2 { "Started by " (initiator) }
        }
        @for (n, parent) in &order {
            @let t = &n.task;
            @let tr = traced.get(&t.id);
            section id=(format!("task-{}", t.id)) {
                h2 {
                    (t.assignee_spiffe.to_string())
                    " " span class=(format!("badge st-{}", n.effective_status.as_str())) { (n.effective_status.as_str()) }
                }
                dl {
                    dt { "Task" } dd.id { (t.id.to_string()) }
                    dt { "Purpose" } dd { (t.purpose) }
                    dt { "Delegated from" } dd {
                        @match parent { Some(p) => { a href=(format!("#task-{}", order[*p].0.task.id)) { (order[*p].0.task.assignee_spiffe.to_string()) } }
                            None => { "the human " (initiator) } }
                    }
                    dt { "Scope" } dd { ul { @for g in t.scope.grants() { li { code { (g.to_string()) } } } } }
                    dt { "Limits" } dd {
                        @if let Some(m) = t.limits.max_calls { (m) " calls" } @else { "no call limit" }
                        @if let Some(b) = t.limits.budget { ", budget " (b) }
                    }
                    dt { "Expires" } dd { (when(t.expires_at)) }
                    @if let Some(tr) = tr {
                        dt { "Created" } dd { (when(tr.created_at)) " " (leaf(tr.leaf)) }
                        @if let Some(j) = &tr.jti { dt { "Credential (jti)" } dd.id { (j) @if tr.dpop_bound { " (DPoP-bound)" } } }
                    }
                    @if let Some(end) = tr.and_then(|tr| tr.ended.as_ref()) {
                        dt { "Ended" } dd {
                            (end.status.as_str()) " on " (when(end.at)) " by " (actor(&end.by, &names))
                            @if !end.reason.is_empty() { ": " (end.reason) }
                            @if let Some(from) = end.cascade_from { " (cascade from " a href=(format!("#task-{from}")) { "task " (from.to_string()) } ")" }
                            @if !end.credentials_revoked.is_empty() { "; credentials revoked: " (end.credentials_revoked.len()) }
                            " " (leaf(end.leaf))
                        }
                    } @else if let Some(r) = &t.end_reason {
                        dt { "Ended" } dd { (r) }
                    }
                }
                @if let Some(tr) = tr {
                    @if tr.events.is_empty() {
                        p.muted { "Nothing happened under this task yet." }
                    } @else {
                        table.events {
                            caption.muted { "What happened under the task, in log order" }
                            thead { tr { th scope="col" { "Entry" } th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Details" } } }
                            tbody {
                                @for item in &tr.events {
                                    tr {
                                        td { (leaf(item.leaf)) }
                                        td { (when(item.at)) }
                                        (event_cells(&item.event, &names))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&v, Nav::Tasks, "Task lineage", body))
}

fn event_cells(e: &TraceEvent, names: &BTreeMap<HumanId, String>) -> Markup {
    let who = |id: &HumanId| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    match e {
        TraceEvent::Decision(d) => html! {
            td { "decision " span class=(format!("badge v-{}", d.verdict.as_str())) { (d.verdict.as_str()) } }
            td {
                code { (d.action) } " on " code { (d.resource) }
                ul.reasons {
                    @for r in &d.reasons {
                        li { code { (r.code) } ": " (r.message) @if let Some(p) = &r.policy_id { " (policy " code { (p) } ")" } }
                    }
                }
                @if let Some(a) = d.approval { span.muted { "approval " (a.to_string()) } }
                @if let Some(b) = d.breakglass { span.sev-high { " break-glass " (b.to_string()) } }
            }
        },
        TraceEvent::ApprovalRequested(a) => html! {
            td { "approval requested" }
            td { code { (a.action) } " on " code { (a.resource) } " by gate(s) " (a.policies.join(", ")) "; expires " (when(a.expires_at)) }
        },
        TraceEvent::ApprovalGranted(a) => html! {
            td.v-allow { "approval granted" }
            td { "by " (who(&a.by)) @if let Some(n) = &a.note { ": " (n) } }
        },
        TraceEvent::ApprovalDenied(a) => html! {
            td.v-deny { "approval denied" }
            td { "by " (who(&a.by)) @if let Some(n) = &a.note { ": " (n) } }
        },
        TraceEvent::CredentialRevoked { jti, by } => html! {
            td.st-revoked { "credential revoked" }
            td { code { (jti) } " by " (actor(by, names)) }
        },
        TraceEvent::Outcome(o) => html! {
            td { "outcome " span.badge { (o.classification.as_str()) } }
            td { (o.workflow.as_str()) " · " (o.outcome_type.as_str()) " · key " code { (o.idempotency_key.as_str()) } ": " (o.explanation) }
        },
        TraceEvent::ToolCall(call) => html! {
            td { "tool call" }
            td { (call.upstream) " " code { (call.target) } " (" (call.duration_us / 1000) " ms)" }
        },
    }
}
