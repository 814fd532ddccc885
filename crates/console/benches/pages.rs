//! Server time of every console page with 10,000 agents and 1,000,000
//! audit events (target: each under 200 ms), on each backend.
//!
//! Run: `cargo bench -p mandate-console --bench pages` (PostgreSQL figures
//! when MANDATE_TEST_DATABASE_URL is set; `CONSOLE_BENCH_EVENTS=100000` to
//! shorten).
//!
//! The store starts with the browser test's data (a real delegated task with
//! decisions, an outcome and a pending approval, made through the API), then
//! 10,000 agents and 1,000,000 audit entries are bulk-loaded with SQL, as
//! the ROAI benchmark loads outcomes: the entries are copies of a real
//! `agent.registered` entry spread over the bulk agents, so they are valid
//! entries of no task tree (the hash chain is not, so "Verify now" is not
//! timed here; `cargo bench -p mandate-store --bench audit` measures it).
//! Each page is fetched over loopback by a signed-in admin, five times after
//! one warm-up; the median and the best are printed.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use mandate_store::Backend;
use mandate_store::testing::{self, TestStore};

/// The `mandate` binary's allocator, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const AGENTS: u64 = 10_000;

async fn load(c: &support::Console, backend: Backend, events: u64) -> Duration {
    let start = Instant::now();
    let sql_store = &c.sql;
    let (seq, id) = match backend {
        Backend::Sqlite => (
            "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {n})",
            "'b0000000-0000-7000-8000-' || substr('000000000000' || CAST(i AS TEXT), -12, 12)",
        ),
        Backend::Postgres => (
            "WITH seq(i) AS (SELECT generate_series(CAST(0 AS BIGINT), {n}))",
            "'b0000000-0000-7000-8000-' || lpad(CAST(i AS TEXT), 12, '0')",
        ),
    };
    let agents = format!(
        "{} INSERT INTO agents (id, name, kind, spiffe_id, owner_id, description, ceiling, keys, tools, \
         data_sources, tags, status, created_at, updated_at) \
         SELECT {id}, 'bench-' || CAST(i AS TEXT), 'agent', \
         'spiffe://acme.example/agent/bench-' || CAST(i AS TEXT), a.owner_id, 'bulk-loaded', a.ceiling, a.keys, \
         a.tools, a.data_sources, '[]', 'active', a.created_at, a.updated_at \
         FROM seq CROSS JOIN (SELECT * FROM agents WHERE name = 'worker') a",
        seq.replace("{n}", &(AGENTS - 1).to_string())
    );
    testing::execute_raw(sql_store, &agents).await;
    let base = c.f.s.state.store.audit_len().await.unwrap();
    let agent_of_i = id.replace("CAST(i AS TEXT)", &format!("CAST(i % {AGENTS} AS TEXT)"));
    let audit = format!(
        "{} INSERT INTO audit_log (idx, kind, at, agent_id, human_id, leaf_hash, entry) \
         SELECT {base} + i, e.kind, e.at, {agent_of_i}, e.human_id, e.leaf_hash, e.entry \
         FROM seq CROSS JOIN (SELECT * FROM audit_log WHERE kind = 'agent.registered' ORDER BY idx LIMIT 1) e",
        seq.replace("{n}", &(events - 1).to_string())
    );
    testing::execute_raw(sql_store, &audit).await;
    if backend == Backend::Postgres {
        testing::execute_raw(sql_store, "ANALYZE agents; ANALYZE audit_log").await;
    }
    start.elapsed()
}

async fn run(t: TestStore, label: &str, events: u64) {
    let backend = t.backend;
    let c = support::setup(t).await;
    let loaded = load(&c, backend, events).await;
    let s = c.sign_in("erin").await;
    let pages = [
        "/ui/inventory".to_owned(),
        "/ui/inventory?q=bench-9999".to_owned(),
        "/ui/agents/orchestrator".to_owned(),
        "/ui/agents/bench-5000".to_owned(),
        "/ui/tasks".to_owned(),
        format!("/ui/tasks/{}", c.task),
        "/ui/approvals".to_owned(),
        "/ui/roai".to_owned(),
        "/ui/posture".to_owned(),
        "/ui/audit".to_owned(),
        format!("/ui/audit?entry={}", events / 2),
        "/ui/audit?agent=bench-42".to_owned(),
    ];
    println!(
        "{label}: {AGENTS} bulk agents and {events} bulk audit entries loaded in {:.1} s",
        loaded.as_secs_f64()
    );
    for path in &pages {
        let mut runs = Vec::new();
        for n in 0..6 {
            let start = Instant::now();
            let res = c.get(path, Some(&s)).await;
            let status = res.status();
            let _ = res.bytes().await.unwrap();
            assert!(status.is_success(), "{path}: {status}");
            if n > 0 {
                runs.push(start.elapsed());
            }
        }
        runs.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let verdict = if runs[2] < Duration::from_millis(200) {
            ""
        } else {
            "  over 200 ms"
        };
        println!(
            "{label:<9} {path:<40} median {:>8.1} ms  best {:>8.1} ms{verdict}",
            ms(runs[2]),
            ms(runs[0])
        );
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // The page shows a kept assessment (above: the log did not move between
    // views). What a fresh one costs, and a view while the log moves: each
    // view follows a decision, so it shows the kept assessment marked as
    // behind while a new one runs in the background.
    let mut runs = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let p = mandate_server::routes::posture::assess(
            &c.f.s.state,
            mandate_server::now(),
            mandate_core::posture::Thresholds::default(),
        )
        .await
        .unwrap();
        runs.push(start.elapsed());
        assert!(!p.findings.is_empty());
    }
    runs.sort();
    println!(
        "{label:<9} {:<40} median {:>8.1} ms  best {:>8.1} ms",
        "posture assessment (not a page)",
        ms(runs[1]),
        ms(runs[0])
    );
    let mut runs = Vec::new();
    for _ in 0..5 {
        let verdict =
            c.f.verdict(&c.token, "procurement.read", "erp:suppliers/7")
                .await;
        assert_eq!(verdict, "allow");
        let start = Instant::now();
        let res = c.get("/ui/posture", Some(&s)).await;
        let html = res.text().await.unwrap();
        runs.push(start.elapsed());
        assert!(html.contains("id=\"behind\""), "shown as behind the log");
        // Let the background assessment finish, as between two real views.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    runs.sort();
    let verdict = if runs[2] < Duration::from_millis(200) {
        ""
    } else {
        "  over 200 ms"
    };
    println!(
        "{label:<9} {:<40} median {:>8.1} ms  best {:>8.1} ms{verdict}",
        "/ui/posture after a decision",
        ms(runs[2]),
        ms(runs[0])
    );
}

fn main() {
    let events: u64 = std::env::var("CONSOLE_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        run(testing::sqlite().await, "sqlite", events).await;
        if std::env::var(testing::PG_URL_VAR).is_ok() {
            run(testing::postgres().await, "postgres", events).await;
        } else {
            println!(
                "postgres  skipped: set {} to measure it",
                testing::PG_URL_VAR
            );
        }
    });
}
