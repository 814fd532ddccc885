//! The report as one self-contained HTML page for a board member: inline
//! CSS, inline SVG charts drawn here, no script and no URL, so it opens the
//! same from a mail attachment, a USB stick or a printer. Charts come first
//! (the story), tables below (the numbers to check it against).
//!
//! Every piece of report text goes through `maud`, which escapes it: a
//! workflow description or agent label can never become markup.

use mandate_core::outcome::{Classification, Figures, PeriodFigures, RoaiReport};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::model::{self, HEADLINE, Val};
use crate::svg::{self, Group, Series, Stack, colour};

/// Agents drawn in the chart; the rest are summed into one row so the chart
/// stays readable (the table below lists every agent).
const CHART_AGENTS: usize = 12;

/// Inline, so the page needs nothing else. System fonts only: no font is
/// fetched, and the page prints cleanly.
const CSS: &str = r#"
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;background:#fff;margin:0;line-height:1.45}
main{max-width:980px;margin:0 auto;padding:24px}
h1{font-size:1.6rem;margin:0 0 4px}
h2{font-size:1.15rem;margin:36px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:1rem;margin:20px 0 6px}
.lead{font-size:1.05rem;margin:0 0 8px}
.meta,.note{color:#555;font-size:.9rem;margin:4px 0}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px;margin-top:24px}
figure{margin:0;padding:12px;align-self:start;border:1px solid #e3e3e3;border-radius:6px}
figcaption{color:#555;font-size:.85rem;margin-top:6px}
svg.chart{width:100%;height:auto;display:block}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{padding:6px 8px;border-bottom:1px solid #e6e6e6;text-align:left;vertical-align:top}
thead th{background:#f5f5f5;font-weight:600}
tbody th{font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.id{display:block;color:#777;font-size:.78rem;overflow-wrap:anywhere}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px}
dt{font-weight:600}
dd{margin:0}
@media print{main{max-width:none;padding:0}figure,table{break-inside:avoid}h2{break-after:avoid}}
"#;

/// Renders the report as a complete HTML document.
pub fn html(report: &RoaiReport) -> String {
    let title = format!("Return on AI: {}", report.workflow.as_str());
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                main {
                    header {
                        h1 { (title) }
                        p.lead { (report.description) }
                        p.meta { "Period: " (range(&report.current)) }
                        @if let Some(b) = &report.baseline {
                            p.meta { "Baseline: " (range(b)) }
                        }
                    }
                    (body(report))
                }
            }
        }
    }
    .into_string()
}

/// The report's content without the page around it: charts first, then
/// the tables to check them against. The web console embeds this.
pub fn body(report: &RoaiReport) -> Markup {
    html! {
        (charts(report))
        (headline(report))
        (exceptions(report))
        (breakdowns(report))
        (workflow(report))
    }
}

/// Counted against excluded transactions, one stacked bar per row (periods,
/// days, workflows ...).
pub fn split_chart(title: &str, rows: &[(String, &Figures)]) -> String {
    svg::stacked_bar_chart(
        title,
        &[
            Series::new("Counted", colour::COUNTED),
            Series::new("Excluded", colour::EXCLUDED),
        ],
        &rows
            .iter()
            .map(|(label, f)| {
                let (c, x) = (f.counted, model::excluded(f));
                Stack {
                    label: label.clone(),
                    parts: vec![c as f64, x as f64],
                    text: format!("{c} counted, {x} excluded"),
                }
            })
            .collect::<Vec<_>>(),
    )
}

fn range(p: &PeriodFigures) -> String {
    format!("{} to {}", p.period.from.rfc3339(), p.period.to.rfc3339())
}

/// The periods shown, as the columns and charts name them.
fn periods(report: &RoaiReport) -> Vec<(&'static str, &PeriodFigures)> {
    let mut v = vec![("Period", &report.current)];
    if let Some(b) = &report.baseline {
        v.push(("Baseline", b));
    }
    v
}

/// Period (and baseline) as chart series.
fn period_series(report: &RoaiReport) -> Vec<Series> {
    let mut s = vec![Series::new("Period", colour::PERIOD)];
    if report.baseline.is_some() {
        s.push(Series::new("Baseline", colour::BASELINE));
    }
    s
}

fn charts(report: &RoaiReport) -> Markup {
    let cur = report.currency;
    let periods = periods(report);

    let split = split_chart(
        "Counted vs excluded transactions",
        &periods
            .iter()
            .map(|(name, p)| ((*name).to_owned(), &p.totals))
            .collect::<Vec<_>>(),
    );

    let kinds: Vec<Group> = model::exception_kinds()
        .map(|kind| Group {
            label: model::kind_label(kind),
            values: periods
                .iter()
                .map(|(_, p)| {
                    let n = model::exception_count(&p.totals, kind);
                    (n as f64, n.to_string())
                })
                .collect(),
        })
        .collect();
    let kinds = svg::grouped_bar_chart("Excluded, by kind", &period_series(report), &kinds);

    let money: Vec<Group> = periods
        .iter()
        .map(|(name, p)| Group {
            label: (*name).to_owned(),
            values: [p.totals.value, p.totals.cost]
                .into_iter()
                .map(|a| (a.as_f64(), format!("{a} {cur}")))
                .collect(),
        })
        .collect();
    let money = svg::grouped_bar_chart(
        &format!("Value vs cost ({cur})"),
        &[
            Series::new("Value", colour::VALUE),
            Series::new("Cost", colour::COST),
        ],
        &money,
    );

    let agents = svg::grouped_bar_chart(
        "Counted transactions, by agent",
        &period_series(report),
        &agent_groups(report),
    );

    html! {
        section.charts aria-label="Charts" {
            figure {
                (PreEscaped(split))
                figcaption { "Only counted transactions add value; excluded ones are listed by kind below." }
            }
            figure {
                (PreEscaped(kinds))
                figcaption { "Why outcomes were not counted. Definitions are in the table below." }
            }
            figure {
                (PreEscaped(money))
                figcaption { "Value of counted transactions against the cost of every non-duplicate outcome." }
            }
            figure {
                (PreEscaped(agents))
                figcaption { "Agents with the most counted transactions in the period first." }
            }
        }
    }
}

/// Counted per agent, period (and baseline) side by side: agents ranked by
/// the period, agents seen only in the baseline after them, and everyone
/// past [`CHART_AGENTS`] summed into one row.
fn agent_groups(report: &RoaiReport) -> Vec<Group> {
    let mut ids: Vec<(String, String)> = model::ranked(report, &report.current.by_agent)
        .into_iter()
        .map(|(name, id, _)| (name, id))
        .collect();
    if let Some(b) = &report.baseline {
        for (name, id, _) in model::ranked(report, &b.by_agent) {
            if !report.current.by_agent.keys().any(|k| k.to_string() == id) {
                ids.push((name, id));
            }
        }
    }
    let counted = |p: &PeriodFigures, id: &str| -> u64 {
        p.by_agent
            .iter()
            .find(|(k, _)| k.to_string() == id)
            .map_or(0, |(_, f)| f.counted)
    };
    let periods = periods(report);
    let mut groups: Vec<Group> = ids
        .iter()
        .take(CHART_AGENTS)
        .map(|(name, id)| Group {
            label: name.clone(),
            values: periods
                .iter()
                .map(|(_, p)| {
                    let n = counted(p, id);
                    (n as f64, n.to_string())
                })
                .collect(),
        })
        .collect();
    if ids.len() > CHART_AGENTS {
        let rest = &ids[CHART_AGENTS..];
        groups.push(Group {
            label: format!("{} more agents", rest.len()),
            values: periods
                .iter()
                .map(|(_, p)| {
                    let n = rest
                        .iter()
                        .fold(0u64, |a, (_, id)| a.saturating_add(counted(p, id)));
                    (n as f64, n.to_string())
                })
                .collect(),
        });
    }
    groups
}

/// A header row: `Metric | Period [| Baseline | Change]`.
fn compare_header(first: &str, has_baseline: bool) -> Markup {
    html! {
        tr {
            th { (first) }
            th.num { "Period" }
            @if has_baseline {
                th.num { "Baseline" }
                th.num { "Change" }
            }
        }
    }
}

/// The cells after the first: the period's figure, then the baseline's and
/// the change when there is a baseline.
fn compare_cells(now: Val, then: Option<Val>, report: &RoaiReport) -> Markup {
    let cur = report.currency;
    html! {
        td.num { (model::human(now, cur)) }
        @if let Some(then) = then {
            td.num { (model::human(then, cur)) }
            td.num { (model::change(now, then, cur)) }
        }
    }
}

fn headline(report: &RoaiReport) -> Markup {
    let base = report.baseline.as_ref().map(|b| &b.totals);
    html! {
        section {
            h2 { "Headline" }
            table {
                thead { (compare_header("Metric", base.is_some())) }
                tbody {
                    @for m in HEADLINE {
                        tr {
                            th scope="row" { (m.label) }
                            (compare_cells((m.get)(&report.current.totals), base.map(|b| (m.get)(b)), report))
                        }
                    }
                }
            }
            p.note {
                "Counted means: " (Classification::Counted.definition()) ". "
                "ROAI is n/a when nothing was spent. Time saved is in hours."
            }
        }
    }
}

fn exceptions(report: &RoaiReport) -> Markup {
    let base = report.baseline.as_ref().map(|b| &b.totals);
    html! {
        section {
            h2 { "Excluded outcomes, by kind" }
            table {
                thead {
                    tr {
                        th { "Kind" }
                        th.num { "Period" }
                        @if base.is_some() {
                            th.num { "Baseline" }
                            th.num { "Change" }
                        }
                        th { "What it means" }
                    }
                }
                tbody {
                    @for kind in model::exception_kinds() {
                        @let now = Val::Count(model::exception_count(&report.current.totals, kind));
                        @let then = base.map(|b| Val::Count(model::exception_count(b, kind)));
                        tr {
                            th scope="row" { (model::kind_label(kind)) }
                            (compare_cells(now, then, report))
                            td { (kind.definition()) }
                        }
                    }
                }
            }
        }
    }
}

fn breakdowns(report: &RoaiReport) -> Markup {
    html! {
        section {
            h2 { "By agent" }
            @for (name, p) in periods(report) {
                h3 { (name) ": " (range(p)) }
                (breakdown(report, "Agent", &model::ranked(report, &p.by_agent)))
            }
        }
        section {
            h2 { "By initiator" }
            @for (name, p) in periods(report) {
                h3 { (name) ": " (range(p)) }
                (breakdown(report, "Initiator", &model::ranked(report, &p.by_initiator)))
            }
        }
    }
}

/// One row per agent or initiator: the name, with the id beneath it when
/// the name is a label, so figures can be traced back to records.
fn breakdown(report: &RoaiReport, who: &str, rows: &[(String, String, &Figures)]) -> Markup {
    let cur = report.currency;
    html! {
        @if rows.is_empty() {
            p.note { "No outcomes in this period." }
        } @else {
            table {
                thead {
                    tr {
                        th { (who) }
                        th.num { "Counted" }
                        th.num { "Excluded" }
                        th.num { "Value (" (cur) ")" }
                        th.num { "Cost (" (cur) ")" }
                        th.num { "Net (" (cur) ")" }
                        th.num { "ROAI" }
                        th.num { "Hours saved" }
                    }
                }
                tbody {
                    @for (name, id, f) in rows {
                        tr {
                            td {
                                (name)
                                @if name != id { span.id { (id) } }
                            }
                            td.num { (f.counted) }
                            td.num { (model::excluded(f)) }
                            td.num { (model::bare(Val::Money(f.value))) }
                            td.num { (model::bare(Val::Money(f.cost))) }
                            td.num { (model::bare(Val::Money(f.net))) }
                            td.num { (model::percent(f.roai)) }
                            td.num { (model::hours(f.minutes_saved)) }
                        }
                    }
                }
            }
        }
    }
}

fn workflow(report: &RoaiReport) -> Markup {
    let cur = report.currency;
    html! {
        section {
            h2 { "What was measured" }
            dl {
                dt { "Workflow" } dd { (report.workflow.as_str()) }
                dt { "Description" } dd { (report.description) }
                dt { "Value model" } dd { (report.value_model) }
                dt { "Currency" } dd { (cur) }
                dt { "Human baseline per transaction" }
                dd { (report.baseline_cost) " " (cur) ", " (report.baseline_minutes) " minutes" }
                @for (name, p) in periods(report) {
                    dt { (name) } dd { (range(p)) }
                }
            }
        }
    }
}
