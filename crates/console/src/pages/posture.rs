//! Posture: findings by severity, each with its OWASP NHI (2025) id, NIST
//! CSF 2.0 subcategory, evidence and remediation, from the API's own
//! assessment ([`mandate_server::routes::posture::assess`]), kept between
//! views ([`crate::assessment`]).

use axum::extract::State;
use axum::response::Html;
use mandate_core::posture::Severity;
use maud::html;
use serde::Deserialize;

use super::{Q, given, when};
use crate::Console;
use crate::auth::Viewer;
use crate::error::ConsoleError;
use crate::layout::{self, Nav};

pub fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
    }
}

#[derive(Debug, Deserialize)]
pub struct PostureQuery {
    severity: Option<String>,
    /// Which page of findings, from 1.
    page: Option<usize>,
}

/// Findings a page shows: a registry of thousands of agents has thousands
/// of findings, and one page of all of them is neither fast nor readable.
const PER_PAGE: usize = 100;

pub async fn page(
    State(c): State<Console>,
    v: Viewer,
    Q(q): Q<PostureQuery>,
) -> Result<Html<String>, ConsoleError> {
    v.forbid_unless(
        v.roles.reads_all(),
        "posture findings are for admins and auditors",
    )?;
    let only = match given(&q.severity) {
        None => None,
        Some(s) => Some(
            [Severity::High, Severity::Medium, Severity::Low]
                .into_iter()
                .find(|x| severity(*x) == s)
                .ok_or_else(|| {
                    ConsoleError::BadRequest(format!("severity {s:?}: choose high, medium or low"))
                })?,
        ),
    };
    let view = c.posture.view(&c.app).await?;
    let p = &view.assessed.posture;
    let count = |s: Severity| p.findings.iter().filter(|f| f.severity == s).count();
    let selected: Vec<_> = p
        .findings
        .iter()
        .filter(|f| only.is_none_or(|s| f.severity == s))
        .collect();
    let pages = selected.len().div_ceil(PER_PAGE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let shown = &selected[(page - 1) * PER_PAGE..(page * PER_PAGE).min(selected.len())];
    let link = |n: usize| match only {
        Some(s) => format!("/ui/posture?severity={}&page={n}", severity(s)),
        None => format!("/ui/posture?page={n}"),
    };
    let body = html! {
        p.meta { "Assessed " (when(p.at)) " with the default thresholds (" code { "mandate posture --help" } " lists them; the CLI and API take others)." }
        @if let Some(b) = view.behind {
            p.notice role="status" #behind {
                @if b.entries > 0 {
                    "The log has grown by " (b.entries) " entries since this assessment began. "
                } @else {
                    "This assessment was made " (view.assessed.started.elapsed().as_secs()) " s ago; findings that depend on time may have changed since. "
                }
                "An assessment of this registry takes " (format!("{:.1}", view.assessed.took.as_secs_f64())) " s, so it is redone in the background"
                @if b.refreshing { " and is running now: reload in a moment to see it." } @else { "; the next one starts shortly." }
                " " code { "mandate posture" } " always assesses afresh."
            }
        }
        div.cards {
            @for s in [Severity::High, Severity::Medium, Severity::Low] {
                a.card href=(format!("/ui/posture?severity={}", severity(s))) {
                    span class=(format!("sev-{}", severity(s))) { b { (count(s)) } (severity(s)) }
                }
            }
            a.card href="/ui/posture" { b { (p.findings.len()) } "all findings" }
        }
        table #findings {
            thead { tr {
                th scope="col" { "Severity" } th scope="col" { "Finding" } th scope="col" { "Subject" }
                th scope="col" { "OWASP NHI" } th scope="col" { "NIST CSF" } th scope="col" { "Remediation" }
            } }
            tbody {
                @for f in shown {
                    tr {
                        td { span class=(format!("badge sev-{}", severity(f.severity))) { (severity(f.severity)) } }
                        td { (f.title) details { summary { "evidence" } pre { (serde_json::to_string_pretty(&f.evidence).unwrap_or_default()) } } }
                        td.id { (f.subject) }
                        td { (f.owasp) }
                        td { (f.nist) }
                        td { (f.remediation) }
                    }
                }
                @if shown.is_empty() { tr { td colspan="6" { "No finding." } } }
            }
        }
        @if pages > 1 {
            nav.pager aria-label="Pages of findings" {
                p { "Findings " ((page - 1) * PER_PAGE + 1) "–" ((page - 1) * PER_PAGE + shown.len()) " of " (selected.len()) ". "
                    code { "mandate posture --json" } " (or " code { "--sarif" } ") lists them all." }
                @if page > 1 { a rel="prev" href=(link(page - 1)) { "Previous page" } " " }
                @if page < pages { a rel="next" href=(link(page + 1)) { "Next page" } }
            }
        }
    };
    Ok(layout::page(&v, Nav::Posture, "Posture", body))
}
