//! What every renderer shows, decided once: the headline metrics, how each is
//! written for people, the change against the baseline, names for ids, the
//! order of breakdown rows. Keeping this in one place is what makes the
//! table, the CSV and the page agree.

use mandate_core::outcome::roai::NO_INITIATOR;
use mandate_core::outcome::{Amount, Classification, Currency, Figures, RoaiReport};

/// One figure of a [`Figures`], typed so each renderer can write it its way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Val {
    Count(u64),
    Money(Amount),
    /// `None` when nothing was spent (ROAI undefined).
    Ratio(Option<f64>),
    /// Kept in minutes (the stored unit); people read hours.
    Minutes(u64),
}

/// A headline row: the CSV key, the label people read, and the figure.
pub(crate) struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub get: fn(&Figures) -> Val,
}

/// The headline, in reading order.
pub(crate) const HEADLINE: &[Metric] = &[
    Metric {
        key: "counted",
        label: "Counted transactions",
        get: |f| Val::Count(f.counted),
    },
    Metric {
        key: "reported",
        label: "Reported",
        get: |f| Val::Count(f.reported),
    },
    Metric {
        key: "excluded",
        label: "Excluded (not counted)",
        get: |f| Val::Count(excluded(f)),
    },
    Metric {
        key: "value",
        label: "Value",
        get: |f| Val::Money(f.value),
    },
    Metric {
        key: "cost",
        label: "Cost",
        get: |f| Val::Money(f.cost),
    },
    Metric {
        key: "net",
        label: "Net (value - cost)",
        get: |f| Val::Money(f.net),
    },
    Metric {
        key: "roai",
        label: "ROAI (net / cost)",
        get: |f| Val::Ratio(f.roai),
    },
    Metric {
        key: "minutes_saved",
        label: "Time saved (hours)",
        get: |f| Val::Minutes(f.minutes_saved),
    },
    Metric {
        key: "human_baseline_cost",
        label: "Human cost of counted work",
        get: |f| Val::Money(f.human_baseline_cost),
    },
    Metric {
        key: "model_tokens",
        label: "Model tokens",
        get: |f| Val::Count(f.model_tokens),
    },
];

/// Outcomes not counted, all kinds together. Saturating: a report is read,
/// not audited, here, and must render whatever its numbers.
pub(crate) fn excluded(f: &Figures) -> u64 {
    f.exceptions
        .values()
        .fold(0u64, |a, n| a.saturating_add(*n))
}

/// The exception kinds in their fixed order (every kind but `counted`).
pub(crate) fn exception_kinds() -> impl Iterator<Item = Classification> {
    Classification::ALL
        .into_iter()
        .filter(|c| *c != Classification::Counted)
}

/// How many outcomes of one kind a figure excluded (absent counts as 0).
pub(crate) fn exception_count(f: &Figures, kind: Classification) -> u64 {
    f.exceptions.get(&kind).copied().unwrap_or(0)
}

/// A kind's name for people: `after_revocation` reads "after revocation".
pub(crate) fn kind_label(kind: Classification) -> String {
    kind.as_str().replace('_', " ")
}

/// The display name of a breakdown key: its label when the report has one,
/// else the id itself.
pub(crate) fn name(report: &RoaiReport, id: &str) -> String {
    match report.labels.get(id) {
        Some(label) => label.clone(),
        None if id == NO_INITIATOR => "(no human initiator)".to_owned(),
        None => id.to_owned(),
    }
}

/// Breakdown rows, largest contribution first (counted, then value), so a
/// reader sees who matters without scanning ids; ties keep key order.
pub(crate) fn ranked<'a, K: ToString + 'a>(
    report: &RoaiReport,
    rows: impl IntoIterator<Item = (&'a K, &'a Figures)>,
) -> Vec<(String, String, &'a Figures)> {
    let mut v: Vec<(String, String, &Figures)> = rows
        .into_iter()
        .map(|(k, f)| {
            let id = k.to_string();
            (name(report, &id), id, f)
        })
        .collect();
    v.sort_by(|a, b| {
        b.2.counted
            .cmp(&a.2.counted)
            .then(b.2.value.cmp(&a.2.value))
    });
    v
}

/// A figure for people, amounts with their currency.
pub(crate) fn human(v: Val, cur: Currency) -> String {
    match v {
        Val::Count(n) => n.to_string(),
        Val::Money(a) => format!("{a} {cur}"),
        Val::Ratio(r) => percent(r),
        Val::Minutes(m) => hours(m),
    }
}

/// A figure for people where the column header already names the currency.
pub(crate) fn bare(v: Val) -> String {
    match v {
        Val::Money(a) => a.to_string(),
        Val::Count(n) => n.to_string(),
        Val::Ratio(r) => percent(r),
        Val::Minutes(m) => hours(m),
    }
}

/// ROAI as a percentage with one decimal; "n/a" when undefined (no cost) or
/// not a finite number.
pub(crate) fn percent(r: Option<f64>) -> String {
    match r.map(|r| r * 100.0) {
        Some(p) if p.is_finite() => format!("{p:.1}%"),
        _ => "n/a".to_owned(),
    }
}

/// Minutes in tenths of an hour, rounded half up, in integers: the stored
/// minutes are exact and must not pick up float noise on the way to print.
fn tenths_of_hours(minutes: u64) -> u128 {
    (u128::from(minutes) * 10 + 30) / 60
}

/// Minutes as hours with one decimal.
pub(crate) fn hours(minutes: u64) -> String {
    let t = tenths_of_hours(minutes);
    format!("{}.{}", t / 10, t % 10)
}

/// `current - baseline`, written for people: signed, with the relative
/// change where the baseline is not zero; percentage points for ROAI.
pub(crate) fn change(current: Val, baseline: Val, cur: Currency) -> String {
    match (current, baseline) {
        (Val::Count(c), Val::Count(b)) => {
            let d = i128::from(c) - i128::from(b);
            with_relative(format!("{d:+}"), d, i128::from(b))
        }
        (Val::Money(c), Val::Money(b)) => {
            let d = i128::from(c.units()) - i128::from(b.units());
            let text = match i64::try_from(d) {
                Ok(u) if u > 0 => format!("+{} {cur}", Amount::from_units(u)),
                Ok(u) => format!("{} {cur}", Amount::from_units(u)),
                // Only absurd figures differ by more than an i64 of units.
                Err(_) => return "n/a".to_owned(),
            };
            with_relative(text, d, i128::from(b.units()))
        }
        (Val::Ratio(Some(c)), Val::Ratio(Some(b))) => match (c - b) * 100.0 {
            p if p.is_finite() => format!("{p:+.1} pp"),
            _ => "n/a".to_owned(),
        },
        (Val::Minutes(c), Val::Minutes(b)) => {
            let d = tenths_of_hours(c) as i128 - tenths_of_hours(b) as i128;
            let sign = if d < 0 { "-" } else { "+" };
            let a = d.unsigned_abs();
            format!("{sign}{}.{}", a / 10, a % 10)
        }
        _ => "n/a".to_owned(),
    }
}

/// Appends the relative change, `(+12.5%)`, when there is a base to divide by.
fn with_relative(text: String, diff: i128, base: i128) -> String {
    if base > 0 {
        let pct = diff as f64 / base as f64 * 100.0;
        format!("{text} ({pct:+.1}%)")
    } else {
        text
    }
}

/// Text from the report, made safe for a terminal: control characters
/// (ANSI escapes, carriage returns) in stored names or descriptions must
/// not drive the reader's terminal, so each becomes a space.
pub(crate) fn plain(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur() -> Currency {
        "EUR".parse().unwrap()
    }

    #[test]
    fn hours_round_in_integers() {
        assert_eq!(hours(0), "0.0");
        assert_eq!(hours(90), "1.5");
        assert_eq!(hours(20), "0.3");
        assert_eq!(hours(u64::MAX), "307445734561825860.3");
    }

    #[test]
    fn percent_is_na_without_a_finite_ratio() {
        assert_eq!(percent(Some(4.0)), "400.0%");
        assert_eq!(percent(Some(-0.25)), "-25.0%");
        assert_eq!(percent(None), "n/a");
        assert_eq!(percent(Some(f64::NAN)), "n/a");
        assert_eq!(percent(Some(f64::MAX)), "n/a");
    }

    #[test]
    fn changes_are_signed_and_relative() {
        assert_eq!(change(Val::Count(12), Val::Count(10), eur()), "+2 (+20.0%)");
        assert_eq!(change(Val::Count(0), Val::Count(0), eur()), "+0");
        assert_eq!(
            change(
                Val::Money(Amount::from_whole(5)),
                Val::Money(Amount::from_whole(10)),
                eur()
            ),
            "-5.00 EUR (-50.0%)"
        );
        assert_eq!(
            change(Val::Ratio(Some(1.5)), Val::Ratio(Some(1.0)), eur()),
            "+50.0 pp"
        );
        assert_eq!(
            change(Val::Ratio(None), Val::Ratio(Some(1.0)), eur()),
            "n/a"
        );
        assert_eq!(change(Val::Minutes(30), Val::Minutes(120), eur()), "-1.5");
        assert_eq!(
            change(
                Val::Money(Amount::from_units(i64::MAX)),
                Val::Money(Amount::from_units(i64::MIN)),
                eur()
            ),
            "n/a"
        );
    }

    #[test]
    fn terminal_text_loses_control_characters() {
        assert_eq!(plain("a\u{1b}[31mb\nc"), "a [31mb c");
    }
}
