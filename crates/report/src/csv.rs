//! The report as long-format CSV, one figure a row, so finance can pivot it
//! any way (by period, by agent, by metric) without reshaping.
//!
//! Columns: `section,key,label,period,metric,value,unit`.
//! - `section`: `report` (what was measured), `period` (its bounds),
//!   `headline`, `exceptions`, `agent`, `initiator`.
//! - `key`: the stable id (agent or initiator id, exception kind); `label`
//!   its name for people.
//! - `period`: `current` or `baseline` (empty for the report's own facts).
//! - `value`: unformatted: counts as integers, amounts as decimal strings
//!   in the report's currency, ROAI as a ratio (empty when undefined).
//! - `unit`: `count`, the currency code, `ratio`, `minutes`, `hours`,
//!   `tokens`, `timestamp` or `text`.

use mandate_core::outcome::{Figures, PeriodFigures, RoaiReport};

use crate::model::{self, HEADLINE, Val};

pub const HEADER: [&str; 7] = [
    "section", "key", "label", "period", "metric", "value", "unit",
];

/// Renders the report as CSV with a header row.
pub fn csv(report: &RoaiReport) -> String {
    let mut rows = Rows::new(report);
    let cur = report.currency.to_string();
    let facts = [
        ("workflow", report.workflow.as_str().to_owned(), "text"),
        ("description", report.description.clone(), "text"),
        ("value_model", report.value_model.clone(), "text"),
        ("currency", cur.clone(), "text"),
        (
            "baseline_cost_per_transaction",
            report.baseline_cost.to_string(),
            cur.as_str(),
        ),
        (
            "baseline_minutes_per_transaction",
            report.baseline_minutes.to_string(),
            "minutes",
        ),
    ];
    for (metric, value, unit) in facts {
        rows.push(["report", "", "", "", metric, &value, unit]);
    }
    for (period, p) in periods(report) {
        rows.period(period, p);
    }
    rows.finish()
}

fn periods(report: &RoaiReport) -> Vec<(&'static str, &PeriodFigures)> {
    let mut v = vec![("current", &report.current)];
    if let Some(b) = &report.baseline {
        v.push(("baseline", b));
    }
    v
}

/// The writer and what every row needs from the report.
struct Rows<'a> {
    report: &'a RoaiReport,
    currency: String,
    w: ::csv::Writer<Vec<u8>>,
}

impl<'a> Rows<'a> {
    fn new(report: &'a RoaiReport) -> Self {
        let mut rows = Rows {
            report,
            currency: report.currency.to_string(),
            w: ::csv::Writer::from_writer(Vec::new()),
        };
        rows.push(HEADER);
        rows
    }

    /// Writes one row; free text is defused first (see [`defuse`]).
    fn push(&mut self, [section, key, label, period, metric, value, unit]: [&str; 7]) {
        let text = unit == "text";
        let value = if text {
            defuse(value)
        } else {
            value.to_owned()
        };
        // Writing to a Vec cannot fail, and every row has the same width.
        let _ = self.w.write_record([
            section,
            &defuse(key),
            &defuse(label),
            period,
            metric,
            &value,
            unit,
        ]);
    }

    fn period(&mut self, period: &str, p: &PeriodFigures) {
        self.push([
            "period",
            "",
            "",
            period,
            "from",
            &p.period.from.rfc3339(),
            "timestamp",
        ]);
        self.push([
            "period",
            "",
            "",
            period,
            "to",
            &p.period.to.rfc3339(),
            "timestamp",
        ]);
        self.figures("headline", "", "", period, &p.totals);
        for kind in model::exception_kinds() {
            let n = model::exception_count(&p.totals, kind).to_string();
            self.push([
                "exceptions",
                kind.as_str(),
                kind.definition(),
                period,
                "count",
                &n,
                "count",
            ]);
        }
        for (name, id, f) in model::ranked(self.report, &p.by_agent) {
            self.figures("agent", &id, &name, period, f);
        }
        for (name, id, f) in model::ranked(self.report, &p.by_initiator) {
            self.figures("initiator", &id, &name, period, f);
        }
    }

    /// The headline metrics of one figure set, then (for agents and
    /// initiators) its exceptions by kind as `excluded.<kind>`.
    fn figures(&mut self, section: &str, key: &str, label: &str, period: &str, f: &Figures) {
        for m in HEADLINE {
            match (m.get)(f) {
                Val::Count(n) => {
                    let unit = if m.key == "model_tokens" {
                        "tokens"
                    } else {
                        "count"
                    };
                    self.push([section, key, label, period, m.key, &n.to_string(), unit]);
                }
                Val::Money(a) => {
                    let cur = self.currency.clone();
                    self.push([section, key, label, period, m.key, &a.to_string(), &cur]);
                }
                // `Display` for f64 never uses exponents, so any CSV reader
                // parses it; undefined ROAI is an empty cell, not a zero.
                Val::Ratio(r) => {
                    let v = r.filter(|r| r.is_finite()).map(|r| r.to_string());
                    self.push([
                        section,
                        key,
                        label,
                        period,
                        m.key,
                        v.as_deref().unwrap_or(""),
                        "ratio",
                    ]);
                }
                // Minutes are exact; hours (one decimal) save finance a formula.
                Val::Minutes(min) => {
                    self.push([
                        section,
                        key,
                        label,
                        period,
                        m.key,
                        &min.to_string(),
                        "minutes",
                    ]);
                    let h = model::hours(min);
                    self.push([section, key, label, period, "hours_saved", &h, "hours"]);
                }
            }
        }
        if section != "headline" {
            for kind in model::exception_kinds() {
                let metric = format!("excluded.{}", kind.as_str());
                let n = model::exception_count(f, kind).to_string();
                self.push([section, key, label, period, &metric, &n, "count"]);
            }
        }
    }

    fn finish(self) -> String {
        // Every field came in as &str, so the bytes are valid UTF-8; the
        // fallback is unreachable and loses nothing in practice.
        match self.w.into_inner() {
            Ok(bytes) => String::from_utf8(bytes).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}

/// Free text (names, descriptions) opened in a spreadsheet must not run as
/// a formula (CSV injection): text starting with `=`, `+`, `-`, `@`, tab or
/// carriage return gets a leading `'`, the convention spreadsheets honour.
/// Numbers never pass through here, so negative amounts stay numeric.
fn defuse(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused_and_plain_text_is_kept() {
        assert_eq!(defuse("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(defuse("-1+2"), "'-1+2");
        assert_eq!(defuse("Ada Lovelace"), "Ada Lovelace");
        assert_eq!(defuse(""), "");
    }
}
