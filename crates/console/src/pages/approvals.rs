//! Approvals: the queue of requests waiting for a human, with the exact
//! action, resource, the policies that asked, the request's context (and
//! the digest binding it), and the requesting chain; approve or deny with a
//! required reason.
//!
//! Answers go through the API's own [`answer_as`], so the rules are the
//! same on both surfaces: only the approver role, never the task's
//! initiator (separation of duties), never a closed or expired approval.
//!
//! [`answer_as`]: mandate_server::routes::approvals::answer_as

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::{Html, Redirect};
use mandate_core::approval::{Approval, ApprovalStatus};
use mandate_core::ids::{ApprovalId, HumanId};
use mandate_store::ApprovalFilter;
use maud::{Markup, html};
use serde::Deserialize;

use super::{F, Q, when};
use crate::Console;
use crate::auth::Viewer;
use crate::error::ConsoleError;
use crate::layout::{self, Nav};

/// Most approvals one page shows.
const SHOWN: usize = 100;

#[derive(Debug, Deserialize)]
pub struct QueueQuery {
    answered: Option<String>,
    r#as: Option<String>,
}

/// The chain behind a task: the initiator, then every agent from the root
/// task down to it.
async fn chain(c: &Console, a: &Approval) -> Result<(String, Vec<String>), ConsoleError> {
    let Some(task) = c.app.store.task(a.task).await? else {
        return Ok((String::new(), Vec::new()));
    };
    let tree = c.app.store.task_tree(task.root).await?;
    let mut path = Vec::new();
    let mut next = Some(task.id);
    while let Some(id) = next {
        let Some(t) = tree.iter().find(|t| t.id == id) else {
            break;
        };
        path.push(t.assignee_spiffe.to_string());
        next = t.parent;
    }
    path.reverse();
    Ok((task.purpose, path))
}

/// The request's context as the requester sent it, indented JSON (escaped
/// by the template like any text).
fn context(ctx: &serde_json::Value) -> Markup {
    html! {
        @match ctx {
            serde_json::Value::Null => p { "Not kept: the request was made before contexts were stored." }
            serde_json::Value::Object(m) if m.is_empty() => p.context { "The request carried no context." }
            _ => pre.context { code { (serde_json::to_string_pretty(ctx).unwrap_or_default()) } }
        }
    }
}

fn answer_form(v: &Viewer, a: &Approval) -> Markup {
    let field = format!("reason-{}", a.id);
    html! {
        form.stack method="post" action=(format!("/ui/approvals/{}", a.id)) {
            input type="hidden" name="csrf" value=(v.session.csrf);
            label for=(field) { "Reason (required, kept in the audit log)" }
            textarea id=(field) name="reason" required maxlength="2000" {}
            div.actions {
                button type="submit" name="answer" value="approve" { "Approve" }
                button.danger type="submit" name="answer" value="deny" { "Deny" }
            }
        }
    }
}

pub async fn queue(
    State(c): State<Console>,
    v: Viewer,
    Q(q): Q<QueueQuery>,
) -> Result<Html<String>, ConsoleError> {
    v.forbid_unless(
        v.roles.approver || v.roles.reads_all(),
        "the approval queue is for approvers (admins and auditors may read it)",
    )?;
    let now = mandate_server::now();
    let pending: Vec<Approval> = c
        .app
        .store
        .list_approvals(&ApprovalFilter {
            status: Some(ApprovalStatus::Pending),
            task: None,
        })
        .await?
        .into_iter()
        .filter(|a| !a.is_expired(now))
        .take(SHOWN)
        .collect();
    let mut names: BTreeMap<HumanId, String> = BTreeMap::new();
    let mut rows = Vec::new();
    for a in &pending {
        if let std::collections::btree_map::Entry::Vacant(e) = names.entry(a.initiator) {
            let n = c
                .app
                .store
                .human(a.initiator)
                .await?
                .map(|h| h.display_name);
            e.insert(n.unwrap_or_else(|| a.initiator.to_string()));
        }
        rows.push((a, chain(&c, a).await?));
    }
    let (mine, others): (Vec<_>, Vec<_>) = rows
        .into_iter()
        .partition(|(a, _)| v.roles.approver && a.initiator != v.human.id);
    let card = |a: &Approval, purpose: &str, path: &[String], answerable: bool| {
        html! {
            article.card id=(format!("approval-{}", a.id)) {
                h3 { code { (a.action) } " on " code { (a.resource) } }
                dl {
                    dt { "Task" } dd { a href=(format!("/ui/tasks/{}", a.task)) { (purpose) } }
                    dt { "Requested by" } dd.id { (path.last().cloned().unwrap_or_default()) }
                    dt { "Chain" } dd { (names.get(&a.initiator).cloned().unwrap_or_default()) @for hop in path { " → " span.id { (hop) } } }
                    dt { "Asked by policy" } dd { (a.policies.join(", ")) }
                    dt { "Context" } dd {
                        (context(&a.context))
                        p.meta { "Bound by digest " code { (a.digest) } " with the task, action and resource: approving unlocks exactly this request, once." }
                    }
                    dt { "Requested" } dd { (when(a.requested_at)) }
                    dt { "Expires" } dd { (when(a.expires_at)) }
                }
                @if answerable { (answer_form(&v, a)) }
            }
        }
    };
    let body = html! {
        @if let (Some(id), Some(how)) = (&q.answered, &q.r#as) {
            p.notice role="status" #answered { "Approval " code { (id) } " " (how) ". The waiting agent's next identical request gets the answer." }
        }
        @if !v.roles.approver {
            p.note { "You can read the queue; answering needs the approver role." }
        }
        h2 { "Waiting for you" }
        @if mine.is_empty() { p #queue-empty { "Nothing is waiting for your approval." } }
        div.cards #queue {
            @for (a, (purpose, path)) in &mine { (card(a, purpose, path, true)) }
        }
        @if !others.is_empty() {
            h2 { "Waiting for another approver" }
            p.note { "Requests under tasks you started are answered by someone else (separation of duties)." }
            div.cards {
                @for (a, (purpose, path)) in &others { (card(a, purpose, path, false)) }
            }
        }
    };
    Ok(layout::page(&v, Nav::Approvals, "Approvals", body))
}

#[derive(Debug, Deserialize)]
pub struct AnswerForm {
    csrf: Option<String>,
    answer: Option<String>,
    reason: Option<String>,
}

pub async fn answer(
    State(c): State<Console>,
    v: Viewer,
    Path(id): Path<String>,
    F(f): F<AnswerForm>,
) -> Result<Redirect, ConsoleError> {
    v.check_csrf(f.csrf.as_deref())?;
    v.forbid_unless(
        v.roles.approver,
        "only humans with the approver role may answer approvals",
    )?;
    let id: ApprovalId = mandate_server::routes::approvals::parse_id(&id)?;
    let approve = match f.answer.as_deref() {
        Some("approve") => true,
        Some("deny") => false,
        _ => return Err(ConsoleError::BadRequest("answer: approve or deny".into())),
    };
    let reason = f.reason.as_deref().map(str::trim).unwrap_or_default();
    if reason.is_empty() {
        return Err(ConsoleError::BadRequest(
            "a reason is required: say why you approve or deny, it is kept in the audit log".into(),
        ));
    }
    let done = mandate_server::routes::approvals::answer_as(
        &c.app,
        v.human.id,
        None,
        id,
        approve,
        Some(reason),
    )
    .await?;
    tracing::info!(approval = %done.id, human = %v.human.id, approve, "approval answered in the console");
    let how = if approve { "approved" } else { "denied" };
    Ok(Redirect::to(&format!(
        "/ui/approvals?answered={}&as={how}",
        done.id
    )))
}
