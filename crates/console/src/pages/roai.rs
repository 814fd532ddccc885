//! Return on AI: counted against excluded transactions over time and per
//! workflow, value and cost, the baseline comparison; charts first, tables
//! below, and the exports (CSV, evidence pack).
//!
//! Figures come from the server's report ([`mandate_server::routes::outcomes::report`])
//! and are drawn by `mandate-report`, the same code as the HTML report, so
//! the console can never disagree with the CLI or the API.

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use mandate_core::outcome::{Period, Workflow, WorkflowName};
use mandate_core::time::Timestamp;
use mandate_server::routes::outcomes;
use mandate_server::routes::tasks::Principal;
use maud::{PreEscaped, html};
use serde::Deserialize;

use super::{Q, given};
use crate::Console;
use crate::auth::Viewer;
use crate::error::ConsoleError;
use crate::layout::{self, Nav};

const DAY_MS: i64 = 86_400_000;
/// Most bars in the over-time chart; longer periods get wider buckets.
const BUCKETS: i64 = 14;
/// Longest period the page charts.
const MAX_DAYS: i64 = 366;

#[derive(Debug, Deserialize, Default, Clone)]
pub struct RoaiQuery {
    workflow: Option<String>,
    /// First day, `YYYY-MM-DD` (UTC).
    from: Option<String>,
    /// Last day, included.
    to: Option<String>,
    baseline_from: Option<String>,
    baseline_to: Option<String>,
}

impl RoaiQuery {
    fn query_string(&self, workflow: &WorkflowName) -> String {
        let wf = Some(workflow.as_str().to_owned());
        super::query_string(&[
            ("workflow", &wf),
            ("from", &self.from),
            ("to", &self.to),
            ("baseline_from", &self.baseline_from),
            ("baseline_to", &self.baseline_to),
        ])
    }
}

fn day_start(name: &str, d: &str) -> Result<Timestamp, ConsoleError> {
    let shape = d.len() == 10
        && d.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let bad = || ConsoleError::BadRequest(format!("{name}: {d:?} is not a day (YYYY-MM-DD)"));
    if !shape {
        return Err(bad());
    }
    Timestamp::parse_rfc3339(&format!("{d}T00:00:00Z")).map_err(|_| bad())
}

fn day_of(t: Timestamp) -> String {
    t.rfc3339().get(..10).unwrap_or_default().to_owned()
}

/// `[from, to]` as whole UTC days; default the last 30 days.
fn period(
    from: Option<&str>,
    to: Option<&str>,
    names: (&str, &str),
) -> Result<Period, ConsoleError> {
    let today = mandate_server::now().as_millis().div_euclid(DAY_MS) * DAY_MS;
    let to = match to {
        Some(d) => day_start(names.1, d)?.as_millis() + DAY_MS,
        None => today + DAY_MS,
    };
    let from = match from {
        Some(d) => day_start(names.0, d)?.as_millis(),
        None => to - 30 * DAY_MS,
    };
    if to - from > MAX_DAYS * DAY_MS {
        return Err(ConsoleError::BadRequest(format!(
            "the console charts at most {MAX_DAYS} days; export longer periods with `mandate report roai`"
        )));
    }
    Period::new(Timestamp::from_millis(from), Timestamp::from_millis(to))
        .map_err(|e| ConsoleError::BadRequest(e.to_string()))
}

/// Whether the viewer may read this workflow's figures: console admins, and
/// whoever the API lets read them (auditors, the workflow's owner).
async fn may_read(c: &Console, v: &Viewer, wf: &Workflow) -> Result<bool, ConsoleError> {
    if v.roles.admin {
        return Ok(true);
    }
    let who = Principal::Human(v.human.id, None);
    match outcomes::check_figures_reader(&c.app, &who, Some(wf.def.owner)).await {
        Ok(()) => Ok(true),
        Err(p) if p.status() == axum::http::StatusCode::FORBIDDEN => Ok(false),
        Err(p) => Err(p.into()),
    }
}

struct Chosen {
    workflows: Vec<Workflow>,
    workflow: Workflow,
    current: Period,
    baseline: Option<Period>,
}

async fn choose(c: &Console, v: &Viewer, q: &RoaiQuery) -> Result<Option<Chosen>, ConsoleError> {
    let mut workflows = Vec::new();
    for wf in c.app.store.list_workflows().await? {
        if may_read(c, v, &wf).await? {
            workflows.push(wf);
        }
    }
    let workflow = match given(&q.workflow) {
        Some(name) => {
            let name = outcomes::parse_workflow(name)?;
            let wf = outcomes::known_workflow(&c.app, &name).await?;
            v.forbid_unless(
                may_read(c, v, &wf).await?,
                "a workflow's figures are for admins, auditors and its owner",
            )?;
            wf
        }
        None => match workflows.first() {
            Some(wf) => wf.clone(),
            None => return Ok(None),
        },
    };
    let current = period(given(&q.from), given(&q.to), ("from", "to"))?;
    let baseline = match (given(&q.baseline_from), given(&q.baseline_to)) {
        (Some(f), Some(t)) => Some(period(Some(f), Some(t), ("baseline_from", "baseline_to"))?),
        (None, None) => None,
        _ => {
            return Err(ConsoleError::BadRequest(
                "give both baseline days, or neither".into(),
            ));
        }
    };
    Ok(Some(Chosen {
        workflows,
        workflow,
        current,
        baseline,
    }))
}

pub async fn page(
    State(c): State<Console>,
    v: Viewer,
    Q(q): Q<RoaiQuery>,
) -> Result<Html<String>, ConsoleError> {
    let Some(ch) = choose(&c, &v, &q).await? else {
        return Ok(layout::page(
            &v,
            Nav::Roai,
            "Return on AI",
            html! {
                p #no-workflows { "No workflow you may read is registered. Owners register workflows with "
                    code { "mandate workflow register" } "; auditors read them all." }
            },
        ));
    };
    let report = outcomes::report(&c.app, &ch.workflow, ch.current, ch.baseline).await?;
    // Over time: the period cut into at most BUCKETS spans of whole days.
    let days = (ch.current.to.as_millis() - ch.current.from.as_millis()) / DAY_MS;
    let step = ((days + BUCKETS - 1) / BUCKETS).max(1) * DAY_MS;
    let mut spans = Vec::new();
    let mut at = ch.current.from.as_millis();
    while at < ch.current.to.as_millis() {
        let end = (at + step).min(ch.current.to.as_millis());
        let p = Period::new(Timestamp::from_millis(at), Timestamp::from_millis(end))
            .map_err(|e| ConsoleError::BadRequest(e.to_string()))?;
        let label = if step == DAY_MS {
            day_of(p.from)
        } else {
            format!("{} +{}d", day_of(p.from), (end - at) / DAY_MS)
        };
        spans.push((label, outcomes::figures(&c.app, &ch.workflow, p).await?));
        at = end;
    }
    let over_time = mandate_report::split_chart(
        "Counted vs excluded, over time",
        &spans
            .iter()
            .map(|(l, f)| (l.clone(), &f.totals))
            .collect::<Vec<_>>(),
    );
    let mut per_wf = Vec::new();
    for wf in &ch.workflows {
        per_wf.push((
            wf.def.name.as_str().to_owned(),
            outcomes::figures(&c.app, wf, ch.current).await?,
        ));
    }
    let per_workflow = mandate_report::split_chart(
        "Counted vs excluded, per workflow",
        &per_wf
            .iter()
            .map(|(l, f)| (l.clone(), &f.totals))
            .collect::<Vec<_>>(),
    );
    let qs = q.query_string(&ch.workflow.def.name);
    let to_day = day_of(Timestamp::from_millis(ch.current.to.as_millis() - DAY_MS));
    let body = html! {
        form.filters method="get" action="/ui/roai" {
            label { "Workflow"
                select name="workflow" {
                    @for wf in &ch.workflows {
                        option value=(wf.def.name.as_str()) selected[wf.def.name == ch.workflow.def.name] { (wf.def.name.as_str()) }
                    }
                }
            }
            label { "From" input type="date" name="from" value=(day_of(ch.current.from)); }
            label { "To (included)" input type="date" name="to" value=(to_day); }
            label { "Baseline from" input type="date" name="baseline_from" value=[given(&q.baseline_from)]; }
            label { "Baseline to" input type="date" name="baseline_to" value=[given(&q.baseline_to)]; }
            button type="submit" { "Show" }
        }
        p.lead { (report.description) }
        div.actions {
            a href=(format!("/ui/roai/report.csv?{qs}")) download { "Export CSV" }
            " · "
            a href=(format!("/ui/roai/evidence.zip?{qs}")) download { "Export evidence pack" }
        }
        section.charts aria-label="Charts over time and per workflow" {
            figure #chart-over-time { (PreEscaped(over_time)) figcaption { "Only counted transactions add value." } }
            figure #chart-per-workflow { (PreEscaped(per_workflow)) figcaption { "Every workflow you may read, same period." } }
        }
        (mandate_report::body(&report))
    };
    Ok(layout::page(
        &v,
        Nav::Roai,
        &format!("Return on AI: {}", ch.workflow.def.name.as_str()),
        body,
    ))
}

async fn chosen_report(
    c: &Console,
    v: &Viewer,
    q: &RoaiQuery,
) -> Result<(Chosen, mandate_core::outcome::RoaiReport), ConsoleError> {
    let ch = choose(c, v, q)
        .await?
        .ok_or_else(|| ConsoleError::NotFound("no workflow you may read is registered".into()))?;
    let report = outcomes::report(&c.app, &ch.workflow, ch.current, ch.baseline).await?;
    Ok((ch, report))
}

pub async fn csv(
    State(c): State<Console>,
    v: Viewer,
    Q(q): Q<RoaiQuery>,
) -> Result<Response, ConsoleError> {
    let (ch, report) = chosen_report(&c, &v, &q).await?;
    let name = format!(
        "attachment; filename=\"roai-{}.csv\"",
        ch.workflow.def.name.as_str()
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        mandate_report::csv(&report),
    )
        .into_response())
}

pub async fn evidence(
    State(c): State<Console>,
    v: Viewer,
    Q(q): Q<RoaiQuery>,
) -> Result<Response, ConsoleError> {
    let ch = choose(&c, &v, &q)
        .await?
        .ok_or_else(|| ConsoleError::NotFound("no workflow you may read is registered".into()))?;
    Ok(mandate_server::routes::evidence::pack_response(&c.app, &ch.workflow, ch.current).await?)
}
