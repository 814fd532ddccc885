//! The report as terminal text: a few lines on what was measured, then
//! tables sized for an 80-column terminal (long cells wrap, they are never
//! cut), in the CLI's table style.

use std::fmt::Write as _;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement, Table, Width};
use mandate_core::outcome::{Classification, Figures, PeriodFigures, RoaiReport};

use crate::model::{self, HEADLINE, Val, plain};

/// The width tables wrap to: a standard terminal, and what the tables look
/// like when piped to a file or a pager (no terminal to measure).
const WIDTH: u16 = 80;
/// The least width of a breakdown's name column, padding included: a label,
/// or an unlabelled id broken after its fourth hyphen rather than mid-group.
const NAME_WIDTH: u16 = 26;

/// Renders the report as plain terminal text.
pub fn table(report: &RoaiReport) -> String {
    let mut out = String::new();
    let cur = report.currency;
    // `write!` to a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(out, "Return on AI: {}", plain(report.workflow.as_str()));
    let _ = writeln!(out, "{}", wrap(&plain(&report.description)));
    let _ = writeln!(out);
    let _ = writeln!(out, "Period:    {}", range(&report.current));
    if let Some(b) = &report.baseline {
        let _ = writeln!(out, "Baseline:  {}", range(b));
    }
    let facts = format!(
        "Value model: {}. Human baseline per transaction: {} {cur}, {} min.",
        plain(&report.value_model),
        report.baseline_cost,
        report.baseline_minutes
    );
    let _ = writeln!(out, "{}", wrap(&facts));
    let counted = format!(
        "Only counted transactions add value. Counted means: {}.",
        Classification::Counted.definition()
    );
    let _ = writeln!(out, "{}", wrap(&counted));

    section(&mut out, "Headline", headline(report));
    section(&mut out, "Excluded, by kind", exceptions(report));
    for (title, p) in periods(report) {
        let agents = model::ranked(report, &p.by_agent);
        let initiators = model::ranked(report, &p.by_initiator);
        if agents.is_empty() && initiators.is_empty() {
            let _ = write!(
                out,
                "\nBy agent and initiator ({title})\nNo outcomes in this period.\n"
            );
            continue;
        }
        let name = format!("By agent ({title})");
        section(&mut out, &name, breakdown(report, "Agent", &agents));
        let name = format!("By initiator ({title})");
        section(&mut out, &name, breakdown(report, "Initiator", &initiators));
    }
    out
}

/// Prose wrapped at word boundaries to [`WIDTH`]; a single longer word
/// keeps its own line rather than being cut.
fn wrap(text: &str) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if line > 0 && line + 1 + len > usize::from(WIDTH) {
            out.push('\n');
            line = 0;
        }
        if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += len;
    }
    out
}

/// The periods shown, named as the columns name them.
fn periods(report: &RoaiReport) -> Vec<(&'static str, &PeriodFigures)> {
    let mut v = vec![("period", &report.current)];
    if let Some(b) = &report.baseline {
        v.push(("baseline", b));
    }
    v
}

fn range(p: &PeriodFigures) -> String {
    format!("{} to {}", p.period.from.rfc3339(), p.period.to.rfc3339())
}

fn section(out: &mut String, title: &str, t: Table) {
    let _ = write!(out, "\n{title}\n{t}\n");
}

fn new_table(header: Vec<String>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(WIDTH)
        .set_header(header);
    t
}

/// Right-aligns the numeric columns so digits line up.
fn align_numbers(t: &mut Table, from: usize, to: usize) {
    for i in from..to {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// Metric | Period [| Baseline | Change].
fn headline(report: &RoaiReport) -> Table {
    let cur = report.currency;
    let base = report.baseline.as_ref().map(|b| &b.totals);
    let mut header = vec!["Metric".to_owned(), "Period".to_owned()];
    if base.is_some() {
        header.extend(["Baseline".to_owned(), "Change".to_owned()]);
    }
    let mut t = new_table(header);
    for m in HEADLINE {
        let now = (m.get)(&report.current.totals);
        let mut row = vec![m.label.to_owned(), model::human(now, cur)];
        if let Some(b) = base {
            let then = (m.get)(b);
            row.push(model::human(then, cur));
            row.push(model::change(now, then, cur));
        }
        t.add_row(row);
    }
    let cols = if base.is_some() { 4 } else { 2 };
    align_numbers(&mut t, 1, cols);
    t
}

/// Kind | Period [| Baseline | Change] | What it means.
fn exceptions(report: &RoaiReport) -> Table {
    let cur = report.currency;
    let base = report.baseline.as_ref().map(|b| &b.totals);
    let mut header = vec!["Kind".to_owned(), "Period".to_owned()];
    if base.is_some() {
        header.extend(["Baseline".to_owned(), "Change".to_owned()]);
    }
    header.push("What it means".to_owned());
    let mut t = new_table(header);
    for kind in model::exception_kinds() {
        let now = Val::Count(model::exception_count(&report.current.totals, kind));
        let mut row = vec![model::kind_label(kind), model::human(now, cur)];
        if let Some(b) = base {
            let then = Val::Count(model::exception_count(b, kind));
            row.push(model::human(then, cur));
            row.push(model::change(now, then, cur));
        }
        row.push(kind.definition().to_owned());
        t.add_row(row);
    }
    let cols = if base.is_some() { 4 } else { 2 };
    align_numbers(&mut t, 1, cols);
    t
}

/// One row per agent or initiator; the currency is in the headers so the
/// cells stay narrow.
fn breakdown(report: &RoaiReport, who: &str, rows: &[(String, String, &Figures)]) -> Table {
    let cur = report.currency;
    let mut t = new_table(vec![
        who.to_owned(),
        "Counted".to_owned(),
        "Excluded".to_owned(),
        format!("Value ({cur})"),
        format!("Cost ({cur})"),
        "ROAI".to_owned(),
    ]);
    for (name, _id, f) in rows {
        t.add_row(vec![
            plain(name),
            f.counted.to_string(),
            model::excluded(f).to_string(),
            model::bare(Val::Money(f.value)),
            model::bare(Val::Money(f.cost)),
            model::percent(f.roai),
        ]);
    }
    align_numbers(&mut t, 1, 6);
    // Names are what a reader scans for; give them room (a label or most of
    // an id on one line) and let the short numeric headers wrap instead.
    if let Some(c) = t.column_mut(0) {
        c.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(NAME_WIDTH)));
    }
    t
}
