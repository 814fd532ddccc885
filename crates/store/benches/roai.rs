//! Return-on-AI report time over 1,000,000 and 10,000,000 outcomes on each
//! backend (target: under 2 s for 10,000,000).
//!
//! Run: `cargo bench -p mandate-store --bench roai` (PostgreSQL figures when
//! MANDATE_TEST_DATABASE_URL is set; `ROAI_BENCH_SIZES=1000000` to shorten).
//!
//! The outcomes are bulk-loaded with one SQL statement (reporting ten
//! million through the API would take hours and measure ingestion, not
//! reports), spread over a year across 20 agents and 10 initiators with every
//! class represented; the per-day sums are then built by the store's own
//! `rebuild_outcome_rollup`, which the conformance suite checks gives the
//! same figures as the sums kept on insert. The report timed is the real
//! path: `outcome_tally` (whole days from the sums, partial days from the
//! outcomes) folded by `PeriodFigures::from_rows`.

use std::time::Instant;

use mandate_core::audit::Actor;
use mandate_core::human::NewHuman;
use mandate_core::ids::HumanId;
use mandate_core::outcome::{Amount, NewWorkflow, Period, PeriodFigures, ValueModel, WorkflowName};
use mandate_core::time::Timestamp;
use mandate_store::testing::{self, TestStore};
use mandate_store::{Backend, Change, Store};

/// The `mandate` binary's allocator, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DAY: i64 = 86_400_000;
/// 2027-01-01T00:00:00Z: the year the outcomes are spread over starts here.
const YEAR_START: i64 = 1_798_761_600_000;

fn change() -> Change {
    Change {
        actor: Actor::System,
        at: Timestamp::from_millis(YEAR_START),
        request_id: None,
    }
}

/// 20 agent and 10 initiator ids, as UUID literals SQL can pick from.
fn ids(prefix: u32, n: u32) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix:08x}-0000-7000-8000-{i:012x}"))
        .collect()
}

/// A SQL `CASE` choosing one of `values` by `expr % len`.
fn pick(expr: &str, values: &[String]) -> String {
    let arms: String = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!(" WHEN {i} THEN '{v}'"))
        .collect();
    format!("(CASE ({expr}) % {}{arms} END)", values.len())
}

async fn load(t: &TestStore, n: u64) -> std::time::Duration {
    let start = Instant::now();
    let agents = ids(0xa6e0, 20);
    let humans = ids(0x4a40, 10);
    // 70% counted, then one tenth each of three exception kinds.
    let class = "(CASE (i % 10) WHEN 7 THEN 'duplicate' WHEN 8 THEN 'phantom' \
                 WHEN 9 THEN 'after_revocation' ELSE 'counted' END)";
    let step = 365 * DAY / n as i64;
    let select = format!(
        "SELECT 'bench-' || CAST(i AS TEXT), 'bench', {YEAR_START} + i * {step}, 'bench-task', \
         {}, {}, {class}, 120000 + (i % 7) * 10000, 500 + (i % 3) * 100, 15, 3000, i",
        pick("i", &agents),
        pick("i / 20", &humans),
    );
    let columns = "(id, workflow, reported_at, task_id, agent_id, initiator, classification, \
                   value, cost, minutes, tokens, audit_idx)";
    let sql = match t.backend {
        Backend::Sqlite => format!(
            "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {}) \
             INSERT INTO outcomes {columns} {select} FROM seq",
            n - 1
        ),
        Backend::Postgres => format!(
            "INSERT INTO outcomes {columns} {select} FROM generate_series(CAST(0 AS BIGINT), {}) AS g(i)",
            n - 1
        ),
    };
    let inserted = testing::execute_raw(&t.store, &sql).await;
    assert_eq!(inserted, n);
    if t.backend == Backend::Postgres {
        testing::execute_raw(&t.store, "ANALYZE outcomes").await;
    }
    t.store.rebuild_outcome_rollup().await.unwrap();
    if t.backend == Backend::Postgres {
        testing::execute_raw(&t.store, "ANALYZE outcome_rollup").await;
    }
    start.elapsed()
}

async fn report_time(t: TestStore, label: &str, n: u64) {
    let owner = HumanId::from_uuid(uuid::Uuid::now_v7());
    t.store
        .create_human(
            &change(),
            owner,
            &NewHuman {
                issuer: "https://idp.bench".into(),
                subject: "owner".into(),
                display_name: "Owner".into(),
                email: None,
                roles: Default::default(),
            },
        )
        .await
        .unwrap();
    let wf = NewWorkflow {
        name: WorkflowName::parse("bench").unwrap(),
        description: "one benchmark transaction".into(),
        owner,
        currency: "EUR".parse().unwrap(),
        baseline_cost: Amount::from_whole(12),
        baseline_minutes: 15,
        value_model: ValueModel::TimeSaved,
        token_price: None,
    };
    t.store.register_workflow(&change(), &wf).await.unwrap();
    let loaded = load(&t, n).await;
    // The whole year, with ragged ends so both partial days read raw outcomes.
    let year = Period::new(
        Timestamp::from_millis(YEAR_START + 3 * 3_600_000 + 17),
        Timestamp::from_millis(YEAR_START + 365 * DAY - 5 * 3_600_000),
    )
    .unwrap();
    let month = Period::new(
        Timestamp::from_millis(YEAR_START + 100 * DAY + 12 * 3_600_000),
        Timestamp::from_millis(YEAR_START + 130 * DAY + 12 * 3_600_000),
    )
    .unwrap();
    for (what, period) in [("year", year), ("30 days", month)] {
        let mut runs = Vec::new();
        let mut reported = 0;
        for _ in 0..5 {
            let start = Instant::now();
            let rows = t.store.outcome_tally(&wf.name, &period).await.unwrap();
            let f = PeriodFigures::from_rows(period, &rows, &wf);
            runs.push(start.elapsed());
            reported = f.totals.reported;
        }
        runs.sort();
        println!(
            "{label:<10} {n:>10} outcomes, report over {what:<8} ({reported:>9} in it): median {:>8.1} ms, best {:>8.1} ms  (load + rollup {:.0} s)",
            runs[2].as_secs_f64() * 1e3,
            runs[0].as_secs_f64() * 1e3,
            loaded.as_secs_f64()
        );
    }
}

fn main() {
    let sizes: Vec<u64> = std::env::var("ROAI_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000_000, 10_000_000]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for &n in &sizes {
            report_time(testing::sqlite().await, "sqlite", n).await;
            if std::env::var(testing::PG_URL_VAR).is_ok() {
                report_time(testing::postgres().await, "postgres", n).await;
            } else {
                println!(
                    "postgres   skipped: set {} to measure it",
                    testing::PG_URL_VAR
                );
            }
        }
    });
}
