//! The three renderers on fabricated reports: two periods and several agents,
//! an empty one, hostile text, and arbitrary figures.

use std::collections::BTreeMap;

use mandate_core::ids::{AgentId, HumanId};
use mandate_core::outcome::{
    Amount, Classification, Figures, NewWorkflow, Period, PeriodFigures, RoaiReport, Sums,
    TallyRow, ValueModel, WorkflowName,
};
use mandate_core::time::Timestamp;
use proptest::prelude::*;
use uuid::Uuid;

const DAY_MS: i64 = 86_400_000;
const HOSTILE: &str = "<script>alert(1)</script>";

fn wf() -> NewWorkflow {
    NewWorkflow {
        name: WorkflowName::parse("invoices").unwrap(),
        description: "one supplier invoice matched, approved and paid".into(),
        owner: HumanId::from_uuid(Uuid::nil()),
        currency: "EUR".parse().unwrap(),
        baseline_cost: Amount::from_whole(12),
        baseline_minutes: 20,
        value_model: ValueModel::TimeSaved,
        token_price: None,
    }
}

fn agent(n: u128) -> AgentId {
    AgentId::from_uuid(Uuid::from_u128(n))
}

fn human(n: u128) -> HumanId {
    HumanId::from_uuid(Uuid::from_u128(0x1000 + n))
}

fn row(a: u128, h: Option<u128>, class: Classification, n: u64, cost: i64) -> TallyRow {
    TallyRow {
        agent: agent(a),
        initiator: h.map(human),
        classification: class,
        sums: Sums {
            n,
            value: Amount::from_whole(12).times(n),
            cost: Amount::from_units(cost),
            minutes: n * 20,
            tokens: n * 1500,
        },
    }
}

fn period(start_day: i64, days: i64) -> Period {
    Period::new(
        Timestamp::from_millis(start_day * DAY_MS),
        Timestamp::from_millis((start_day + days) * DAY_MS),
    )
    .unwrap()
}

/// Two periods, three agents in the current one (one of them new), two
/// initiators plus an outcome without one, and labels for some ids.
fn sample() -> RoaiReport {
    use Classification::*;
    let current = PeriodFigures::from_rows(
        period(20_500, 30),
        &[
            row(1, Some(1), Counted, 40, 80_000),
            row(1, Some(1), Duplicate, 3, 6_000),
            row(2, Some(2), Counted, 25, 50_000),
            row(2, Some(2), Phantom, 2, 4_000),
            row(2, None, Unattributed, 1, 2_000),
            row(3, Some(1), Counted, 5, 10_000),
            row(3, Some(2), OutOfScopeActions, 4, 8_000),
            row(3, Some(2), AfterRevocation, 1, 2_000),
        ],
        &wf(),
    );
    let baseline = PeriodFigures::from_rows(
        period(20_470, 30),
        &[
            row(1, Some(1), Counted, 30, 70_000),
            row(1, Some(1), Duplicate, 5, 9_000),
            row(2, Some(2), Counted, 10, 30_000),
            row(4, Some(2), Phantom, 6, 12_000),
        ],
        &wf(),
    );
    let mut r = RoaiReport::new(&wf(), current, Some(baseline));
    r.labels
        .insert(agent(1).to_string(), "invoice-matcher".into());
    r.labels.insert(agent(2).to_string(), "payments-bot".into());
    r.labels.insert(human(1).to_string(), "Ada Lovelace".into());
    r
}

fn empty() -> RoaiReport {
    let current = PeriodFigures::from_rows(period(20_500, 30), &[], &wf());
    RoaiReport::new(&wf(), current, None)
}

fn assert_self_contained(html: &str) {
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script"), "script in page");
    assert!(!lower.contains("http://"), "http URL in page");
    assert!(!lower.contains("https://"), "https URL in page");
    assert!(
        !lower.contains("@import") && !lower.contains("url("),
        "fetch in CSS"
    );
    // Markup this crate writes always quotes attributes; escaped text
    // cannot hold a quote, so these find only real attributes.
    assert!(!lower.contains("src=\""), "a source attribute");
    assert!(!lower.contains("href=\""), "a link");
    for tag in ["<img", "<link", "<iframe", "<object", "<embed"] {
        assert!(!lower.contains(tag), "{tag} in page");
    }
}

#[test]
fn table_shows_both_periods_the_change_and_the_names() {
    let r = sample();
    let t = mandate_report::table(&r);
    for want in [
        "Return on AI: invoices",
        "one supplier invoice matched",
        "Period:    2026-02-16T00:00:00Z to 2026-03-18T00:00:00Z",
        "Baseline:",
        "Counted transactions",
        "Baseline",
        "Change",
        "70", // counted, period
        "40", // counted, baseline
        "+30 (+75.0%)",
        "840.00 EUR", // value, period
        "ROAI",
        "invoice-matcher",
        "payments-bot",
        "Ada Lovelace",
        "(no human initiator)",
        // No label: the id (wrapped after a hyphen to fit 80 columns).
        "00000000-0000-0000-0000-",
        "000000000003",
        "phantom",
        Classification::Phantom
            .definition()
            .split(' ')
            .next()
            .unwrap(),
        "Time saved (hours)",
        "23.3", // 1400 minutes
    ] {
        assert!(t.contains(want), "table lacks {want:?}:\n{t}");
    }
    let widest = t.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(widest <= 80, "a line is {widest} columns wide:\n{t}");
}

#[test]
fn csv_parses_back_and_matches_the_report() {
    let r = sample();
    let text = mandate_report::csv(&r);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "section", "key", "label", "period", "metric", "value", "unit"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let find = |section: &str, key: &str, period: &str, metric: &str| -> String {
        let hits: Vec<_> = rows
            .iter()
            .filter(|r| r[0] == *section && r[1] == *key && r[3] == *period && r[4] == *metric)
            .collect();
        assert_eq!(hits.len(), 1, "{section}/{key}/{period}/{metric}");
        hits[0][5].to_owned()
    };

    let now = &r.current.totals;
    assert_eq!(
        find("headline", "", "current", "counted"),
        now.counted.to_string()
    );
    assert_eq!(
        find("headline", "", "current", "value")
            .parse::<Amount>()
            .unwrap(),
        now.value
    );
    assert_eq!(
        find("headline", "", "current", "cost"),
        now.cost.to_string()
    );
    let ratio: f64 = find("headline", "", "current", "roai").parse().unwrap();
    assert_eq!(Some(ratio), now.roai);
    let base = &r.baseline.as_ref().unwrap().totals;
    assert_eq!(
        find("headline", "", "baseline", "counted"),
        base.counted.to_string()
    );
    assert_eq!(
        find("exceptions", "duplicate", "current", "count"),
        now.exceptions[&Classification::Duplicate].to_string()
    );
    assert_eq!(find("report", "", "", "currency"), "EUR");
    assert_eq!(
        find("period", "", "current", "from"),
        r.current.period.from.rfc3339()
    );

    // Per agent: the counted figures add up to the total, and labels ride along.
    let per_agent: u64 = rows
        .iter()
        .filter(|r| &r[0] == "agent" && &r[3] == "current" && &r[4] == "counted")
        .map(|r| r[5].parse::<u64>().unwrap())
        .sum();
    assert_eq!(per_agent, now.counted);
    let id = agent(1).to_string();
    let labelled = rows
        .iter()
        .find(|r| &r[0] == "agent" && r[1] == *id)
        .unwrap();
    assert_eq!(&labelled[2], "invoice-matcher");
    // Every row has every column.
    assert!(rows.iter().all(|r| r.len() == 7));
}

#[test]
fn html_is_self_contained_with_charts_before_tables() {
    let r = sample();
    let page = mandate_report::html(&r);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_self_contained(&page);
    assert_eq!(page.matches("<svg").count(), 4, "four charts");
    let first_chart = page.find("<svg").unwrap();
    let first_table = page.find("<table").unwrap();
    assert!(first_chart < first_table, "charts come first");
    for want in [
        "Counted vs excluded transactions",
        "Excluded, by kind",
        "Value vs cost (EUR)",
        "Counted transactions, by agent",
        "invoice-matcher",
        "Ada Lovelace",
        "840.00 EUR",
        Classification::OutOfScopeActions.definition(),
        "+30 (+75.0%)",
    ] {
        assert!(page.contains(want), "page lacks {want:?}");
    }
}

#[test]
fn html_escapes_every_piece_of_report_text() {
    let mut r = sample();
    r.description = format!("{HOSTILE} & \"quoted\"");
    r.value_model = HOSTILE.into();
    r.labels.insert(agent(1).to_string(), HOSTILE.into());
    r.labels.insert(
        human(2).to_string(),
        "<img src=x onerror=alert(1)>".to_owned(),
    );
    let page = mandate_report::html(&r);
    assert_self_contained(&page);
    assert!(!page.contains("<img"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot;"));
    // The label appears escaped in the table and in the agents chart.
    let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;";
    assert!(
        page.matches(escaped).count() >= 4,
        "description x2, value model, label"
    );
    let agents_chart = page
        .split("<svg")
        .find(|s| s.contains("Counted transactions, by agent"))
        .unwrap();
    assert!(agents_chart.contains("&lt;script&gt;"));
}

#[test]
fn table_and_csv_keep_hostile_text_inert() {
    let mut r = sample();
    r.description = "line one\n\u{1b}[2Jline two".into();
    r.labels
        .insert(agent(2).to_string(), "=HYPERLINK(\"x\",\"y\")".into());
    let t = mandate_report::table(&r);
    assert!(
        !t.contains('\u{1b}'),
        "escape sequence reached the terminal"
    );
    let text = mandate_report::csv(&r);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let description = rows.iter().find(|r| &r[4] == "description").unwrap();
    assert_eq!(
        &description[5],
        r.description.as_str(),
        "CSV keeps text whole"
    );
    assert!(rows.iter().any(|r| &r[2] == "'=HYPERLINK(\"x\",\"y\")"));
    assert!(!rows.iter().any(|r| r[2].starts_with('=')));
}

#[test]
fn an_empty_report_renders_everywhere() {
    let r = empty();
    let t = mandate_report::table(&r);
    assert!(t.contains("n/a"), "ROAI without cost is n/a");
    assert!(t.contains("0.00 EUR"));
    assert!(!t.contains("Baseline:"));

    let text = mandate_report::csv(&r);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let roai = rows
        .iter()
        .find(|r| &r[0] == "headline" && &r[4] == "roai")
        .unwrap();
    assert_eq!(&roai[5], "", "undefined ROAI is an empty cell");
    assert!(!rows.iter().any(|r| &r[3] == "baseline"));

    let page = mandate_report::html(&r);
    assert_self_contained(&page);
    assert_eq!(page.matches("<svg").count(), 4);
    assert_eq!(page.matches("no data").count(), 4, "every chart says so");
    assert!(page.contains("No outcomes in this period."));
}

#[test]
fn many_agents_are_summed_past_the_chart_limit() {
    let rows: Vec<TallyRow> = (1..=20)
        .map(|a| row(a, Some(1), Classification::Counted, a as u64, 1_000))
        .collect();
    let current = PeriodFigures::from_rows(period(20_500, 30), &rows, &wf());
    let r = RoaiReport::new(&wf(), current, None);
    let page = mandate_report::html(&r);
    assert!(page.contains("8 more agents"));
    // The table still lists every agent.
    for a in 1..=20 {
        assert!(page.contains(&agent(a).to_string()));
    }
}

fn any_amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        any::<i64>().prop_map(Amount::from_units),
        (0i64..1_000_000_000).prop_map(Amount::from_units),
    ]
}

fn any_ratio() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        Just(None),
        any::<f64>().prop_map(Some),
        Just(Some(f64::NAN)),
        Just(Some(f64::INFINITY)),
        Just(Some(f64::NEG_INFINITY)),
        (-10.0f64..10.0).prop_map(Some),
    ]
}

fn any_figures() -> impl Strategy<Value = Figures> {
    (
        (
            any::<u64>(),
            any::<u64>(),
            any_ratio(),
            any::<u64>(),
            any::<u64>(),
        ),
        (any_amount(), any_amount(), any_amount(), any_amount()),
        proptest::collection::vec(any::<u64>(), 5),
    )
        .prop_map(
            |((reported, counted, roai, minutes, tokens), (v, c, n, h), ex)| {
                let exceptions: BTreeMap<Classification, u64> =
                    Classification::ALL[1..].iter().copied().zip(ex).collect();
                Figures {
                    reported,
                    counted,
                    exceptions,
                    value: v,
                    cost: c,
                    net: n,
                    roai,
                    minutes_saved: minutes,
                    human_baseline_cost: h,
                    model_tokens: tokens,
                }
            },
        )
}

fn any_period_figures() -> impl Strategy<Value = PeriodFigures> {
    (
        any::<i64>(),
        any::<i64>(),
        any_figures(),
        proptest::collection::btree_map(any::<u128>().prop_map(agent), any_figures(), 0..4),
        proptest::collection::btree_map(".{0,12}", any_figures(), 0..3),
    )
        .prop_map(|(from, to, totals, by_agent, by_initiator)| PeriodFigures {
            // Bounds straight into the struct: a renderer must not assume
            // `Period::new`'s ordering, nor timestamps `time` can print.
            period: Period {
                from: Timestamp::from_millis(from),
                to: Timestamp::from_millis(to),
            },
            totals,
            by_agent,
            by_initiator,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the figures, labels and text, no renderer panics and the
    /// page stays self-contained.
    #[test]
    fn arbitrary_figures_never_panic_a_renderer(
        current in any_period_figures(),
        baseline in proptest::option::of(any_period_figures()),
        description in "\\PC{0,40}",
        labels in proptest::collection::btree_map(".{0,20}", "\\PC{0,30}", 0..4),
        baseline_cost in any_amount(),
        baseline_minutes in any::<u32>(),
    ) {
        let mut r = RoaiReport::new(&wf(), current, baseline);
        r.description = description;
        r.labels = labels;
        r.baseline_cost = baseline_cost;
        r.baseline_minutes = baseline_minutes;
        let t = mandate_report::table(&r);
        prop_assert!(t.contains("Return on AI"));
        let text = mandate_report::csv(&r);
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        prop_assert!(reader.records().all(|rec| rec.is_ok_and(|r| r.len() == 7)));
        let page = mandate_report::html(&r);
        prop_assert!(!page.contains("<script"));
        prop_assert_eq!(page.matches("<svg").count(), 4);
    }
}
