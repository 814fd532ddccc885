//! Audit: the latest signed checkpoint and whether its signature holds, the
//! last full verification of the log (run from here on demand), one entry
//! with its inclusion proof checked against the checkpoint, and search by
//! task, token jti (or decision and outcome ids) or agent.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use mandate_core::audit::merkle::verify_inclusion;
use mandate_core::audit::trace::Tracer;
use mandate_core::audit::{LogEntry, to_hex};
use mandate_core::time::Timestamp;
use maud::{Markup, html};
use serde::Deserialize;

use super::{F, Q, given, when};
use crate::Console;
use crate::auth::Viewer;
use crate::error::ConsoleError;
use crate::layout::{self, Nav};

/// Entries of one agent listed per page.
const AGENT_ENTRIES: u32 = 50;

/// The outcome of the last full verification.
#[derive(Debug, Clone)]
pub struct VerifyStatus {
    pub at: Timestamp,
    pub by: String,
    /// A summary when the log verified, the first failure otherwise.
    pub result: Result<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    /// A task id, token jti, decision or outcome id.
    q: Option<String>,
    /// An agent's name or id: its entries.
    agent: Option<String>,
    /// Show one entry with its inclusion proof.
    entry: Option<u64>,
    before: Option<u64>,
}

fn check(v: &Viewer) -> Result<(), ConsoleError> {
    v.forbid_unless(
        v.roles.reads_all(),
        "the audit log is for admins and auditors",
    )
}

/// One entry, its proof against `size` (the latest checkpoint), checked here.
async fn entry_view(
    c: &Console,
    index: u64,
    checkpoint: Option<(u64, [u8; 32])>,
) -> Result<Markup, ConsoleError> {
    let rows = c.app.store.audit_entries_at(&[index]).await?;
    let Some(row) = rows.into_iter().next() else {
        return Err(ConsoleError::NotFound(format!(
            "the log has no entry #{index}"
        )));
    };
    let pretty = serde_json::from_str::<serde_json::Value>(&row.entry)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| row.entry.clone());
    let proof = match checkpoint {
        Some((size, root)) if index < size => {
            let p = c
                .app
                .ledger
                .inclusion(c.app.store.as_ref(), index, Some(size))
                .await;
            match p {
                Ok(p) => {
                    let ok =
                        verify_inclusion(&row.leaf_hash, index, size, &p.hashes, &root).is_ok();
                    Some((size, p.hashes, ok))
                }
                Err(e) => return Err(mandate_server::problem::Problem::from(e).into()),
            }
        }
        _ => None,
    };
    Ok(html! {
        section #entry {
            h2 { "Entry #" (index) }
            dl {
                dt { "Leaf hash" } dd.id { (to_hex(&row.leaf_hash)) }
                @match &proof {
                    Some((size, hashes, ok)) => {
                        dt { "Inclusion proof" } dd {
                            @if *ok { span.pass #proof-status { "verified" } } @else { span.fail #proof-status { "FAILED" } }
                            " against the latest signed checkpoint (size " (size) ", RFC 9162), " (hashes.len()) " hashes"
                            ul { @for h in hashes { li.id { (to_hex(h)) } } }
                        }
                    }
                    None => { dt { "Inclusion proof" } dd { "not yet covered by a signed checkpoint" } }
                }
            }
            pre { (pretty) }
        }
    })
}

fn entry_rows(rows: &[mandate_core::audit::verify::StoredEntry]) -> Markup {
    html! {
        table #entries {
            thead { tr { th scope="col" { "Entry" } th scope="col" { "When" } th scope="col" { "Kind" } th scope="col" { "Task" } } }
            tbody {
                @for r in rows {
                    @let e: Option<LogEntry> = serde_json::from_str(&r.entry).ok();
                    tr {
                        td { a href=(format!("/ui/audit?entry={}", r.index)) { "#" (r.index) } }
                        @match &e {
                            Some(e) => {
                                td { (when(e.event.at)) }
                                td { code { (e.event.kind.as_str()) } }
                                td { @if let Some(t) = e.event.task { a.id href=(format!("/ui/tasks/{t}")) { (t.to_string()) } } }
                            }
                            None => { td colspan="3" .fail { "unreadable entry: run a verification" } }
                        }
                    }
                }
                @if rows.is_empty() { tr { td colspan="4" { "No entry." } } }
            }
        }
    }
}

pub async fn page(
    State(c): State<Console>,
    v: Viewer,
    Q(q): Q<AuditQuery>,
) -> Result<Response, ConsoleError> {
    check(&v)?;
    if let Some(text) = given(&q.q) {
        // The log decides what the text is (task, jti, decision, outcome).
        let trace = mandate_store::log::trace(c.app.store.as_ref(), Tracer::for_text(text)).await;
        return match trace {
            Ok(t) => {
                let task = t
                    .tasks
                    .iter()
                    .find(|n| n.leaf == t.target_leaf)
                    .map_or(t.root, |n| n.id);
                Ok(Redirect::to(&format!("/ui/tasks/{task}#task-{task}")).into_response())
            }
            Err(mandate_store::log::TraceFailure::Store(e)) => Err(e.into()),
            Err(e) => Err(ConsoleError::NotFound(e.to_string())),
        };
    }
    // One index lookup rather than counting every row (the same number for
    // an intact log; a missing row is for *Verify now* to report).
    let log_size = c.app.store.audit_end().await?;
    let checkpoints = c.app.store.checkpoints().await?;
    let latest = checkpoints.last();
    let verifier = c.app.ledger.verifier();
    let signature_ok = latest.map(|cp| cp.verify(std::slice::from_ref(&verifier)).is_ok());
    let entry = match q.entry {
        Some(i) => Some(
            entry_view(
                &c,
                i,
                latest.map(|cp| (cp.checkpoint.size, cp.checkpoint.root)),
            )
            .await?,
        ),
        None => None,
    };
    let agent = match given(&q.agent) {
        Some(a) => {
            let agent = super::inventory::find_agent(&c, a).await?;
            let rows = c
                .app
                .store
                .audit_entries_by_agent(agent.id, q.before, AGENT_ENTRIES)
                .await?;
            Some((agent, rows))
        }
        None => None,
    };
    let status = c.verified.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let body = html! {
        section #checkpoint {
            h2 { "Latest signed checkpoint" }
            @match latest {
                Some(cp) => {
                    dl {
                        dt { "Origin" } dd { (cp.checkpoint.origin) }
                        dt { "Tree size" } dd { (cp.checkpoint.size) " of " (log_size) " entries" }
                        dt { "Root hash" } dd.id { (to_hex(&cp.checkpoint.root)) }
                        dt { "Signature" } dd {
                            @if signature_ok == Some(true) { span.pass #signature-status { "valid" } " (log key " code { (verifier.to_vkey()) } ")" }
                            @else { span.fail #signature-status { "INVALID for this server's log key" } }
                        }
                    }
                    details { summary { "The signed note (C2SP tlog-checkpoint)" } pre { (cp.note) } }
                }
                None => { p { "No checkpoint has been signed yet (the server signs one every few seconds while the log grows)." } }
            }
        }
        section #verify {
            h2 { "Verification of the whole log" }
            @match &status {
                Some(s) => {
                    p {
                        @match &s.result {
                            Ok(summary) => { span.pass #verify-status { "PASS" } ": " (summary) }
                            Err(e) => { span.fail #verify-status { "FAIL" } ": " (e) }
                        }
                        " (run " (when(s.at)) " by " (s.by) ")"
                    }
                }
                None => { p #verify-status { "Not verified since this server started." } }
            }
            form method="post" action="/ui/audit/verify" {
                input type="hidden" name="csrf" value=(v.session.csrf);
                button type="submit" { "Verify now" }
                span.note { " Recomputes every leaf, back-link, tree root and checkpoint signature (about 2 s per million entries)." }
            }
        }
        section #search {
            h2 { "Search" }
            form.filters method="get" action="/ui/audit" role="search" {
                label { "Task id, token jti, decision or outcome id" input type="search" name="q" size="40" autocomplete="off"; }
                button type="submit" { "Trace" }
            }
            form.filters method="get" action="/ui/audit" {
                label { "Agent (name or id)" input type="search" name="agent" value=[given(&q.agent)] autocomplete="off"; }
                label { "Entry number" input type="number" name="entry" min="0" value=[q.entry]; }
                button type="submit" { "Show" }
            }
        }
        @if let Some(e) = entry { (e) }
        @if let Some((agent, rows)) = &agent {
            section #agent-entries {
                h2 { "Entries naming " (agent.name.as_str()) ", newest first" }
                (entry_rows(rows))
                @if rows.len() as u32 == AGENT_ENTRIES {
                    @if let Some(last) = rows.last() {
                        div.pager { a href=(format!("/ui/audit?agent={}&before={}", agent.name.as_str(), last.index)) rel="next" { "Older entries" } }
                    }
                }
            }
        }
    };
    Ok(layout::page(&v, Nav::Audit, "Audit log", body).into_response())
}

#[derive(Debug, Deserialize)]
pub struct VerifyForm {
    csrf: Option<String>,
}

pub async fn verify(
    State(c): State<Console>,
    v: Viewer,
    F(f): F<VerifyForm>,
) -> Result<Redirect, ConsoleError> {
    v.check_csrf(f.csrf.as_deref())?;
    check(&v)?;
    let verifier = c.app.ledger.verifier();
    let outcome = mandate_store::log::verify(
        c.app.store.as_ref(),
        c.app.ledger.origin(),
        &[verifier],
        None,
    )
    .await?;
    let result = outcome
        .map(|r| {
            format!(
                "{} entries, {} checkpoints, root {} (signed up to {})",
                r.entries,
                r.checkpoints,
                to_hex(&r.root),
                r.checkpointed_size
            )
        })
        .map_err(|e| e.to_string());
    *c.verified.lock().unwrap_or_else(|e| e.into_inner()) = Some(VerifyStatus {
        at: mandate_server::now(),
        by: v.human.display_name.clone(),
        result,
    });
    Ok(Redirect::to("/ui/audit#verify"))
}
