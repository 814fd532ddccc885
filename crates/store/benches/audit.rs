//! Audit log figures: durable audited writes per second on each backend,
//! time to verify a 1,000,000-entry log, time to produce an inclusion proof.
//!
//! Run: `cargo bench -p mandate-store --bench audit`
//! (PostgreSQL figures when MANDATE_TEST_DATABASE_URL is set).

use std::sync::Arc;
use std::time::Instant;

use mandate_core::audit::event::GENESIS_PREV;
use mandate_core::audit::merkle::MerkleTree;
use mandate_core::audit::verify::{LogVerifier, StoredEntry};
use mandate_core::audit::{Actor, AuditEvent, EventKind, LogEntry};
use mandate_core::human::NewHuman;
use mandate_core::ids::{AgentId, DecisionId, HumanId, TaskId};
use mandate_core::time::Timestamp;
use mandate_core::tool_call::{CallStatus, Channel, ToolCall};
use mandate_store::testing::{self, TestStore};
use mandate_store::{Change, Store};

/// The `mandate` binary's allocator, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WRITES: usize = 4_000;
const WRITERS: usize = 32;
const APPENDS: usize = 100_000;
/// Group commit batches whatever is queued while the previous COMMIT runs,
/// so the rate depends on how many writes are in flight: print several.
const APPENDERS: [usize; 3] = [64, 256, 1024];
const LOG_SIZE: u64 = 1_000_000;

fn system() -> Change {
    Change {
        actor: Actor::System,
        at: Timestamp::from_millis(0),
        request_id: None,
    }
}

/// Runs `total` operations from `writers` concurrent tasks; operations per second.
async fn rate<F, Fut>(store: &Arc<dyn Store>, writers: usize, total: usize, op: F) -> f64
where
    F: Fn(Arc<dyn Store>, usize) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let before = store.audit_len().await.unwrap();
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let s = store.clone();
            tokio::spawn(async move {
                for i in (w..total).step_by(writers) {
                    op(s.clone(), i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    // Every operation acknowledged is one durable entry.
    assert_eq!(store.audit_len().await.unwrap(), before + total as u64);
    total as f64 / secs
}

async fn audited_writes(t: TestStore, label: &str) {
    let store: Arc<dyn Store> = t.store.clone();
    let per_sec = rate(&store, WRITERS, WRITES, |s, i| async move {
        let new = NewHuman {
            issuer: "https://idp.bench".into(),
            subject: format!("user-{i}"),
            display_name: "Bench".into(),
            email: None,
            roles: Default::default(),
        };
        s.create_human(&system(), HumanId::from_uuid(uuid::Uuid::now_v7()), &new)
            .await
            .unwrap();
    })
    .await;
    println!(
        "{label:<10} durable audited writes (state change + audit event; {WRITERS} writers): {per_sec:>8.0}/s"
    );
    // Gateway call records: an audit event and nothing else, the shape of
    // most of the log (every call through the gateway writes one).
    let task = TaskId::from_uuid(uuid::Uuid::now_v7());
    let agent = AgentId::from_uuid(uuid::Uuid::now_v7());
    for appenders in APPENDERS {
        let per_sec = rate(&store, appenders, APPENDS, move |s, i| async move {
            let call = ToolCall {
                decision: DecisionId::from_uuid(uuid::Uuid::now_v7()),
                task,
                agent,
                channel: Channel::Mcp,
                upstream: "crm".into(),
                target: "lookup_customer".into(),
                status: CallStatus::Answered {
                    status: 200,
                    tool_error: false,
                },
                duration_us: i as u64,
                arguments: None,
                result: None,
            };
            s.record_tool_call(&system(), &call).await.unwrap();
        })
        .await;
        println!(
            "{label:<10} durable audit appends (gateway call records; {appenders:>4} writers): {per_sec:>8.0}/s"
        );
    }
    // What was acknowledged is a sound log: re-verify it from the store.
    let mut v = LogVerifier::new("bench/log", &[], &[], None).unwrap();
    let mut from = 0;
    loop {
        let page = store.audit_entries(from, 10_000).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.index + 1;
        for e in page {
            v.push(e).unwrap();
        }
    }
    let report = v.finish().unwrap();
    println!(
        "{label:<10} log after the load verifies: {} entries",
        report.entries
    );
}

fn verify_and_prove() {
    let start = Instant::now();
    let mut prev = GENESIS_PREV;
    let rows: Vec<StoredEntry> = (0..LOG_SIZE)
        .map(|i| {
            let ev = AuditEvent::new(
                EventKind::AgentRegistered,
                Timestamp::from_millis(i as i64),
                Actor::System,
            )
            .details(serde_json::json!({ "name": format!("agent-{i}") }));
            let (entry, hash) = LogEntry::new(i, &prev, ev).encode();
            prev = hash;
            StoredEntry {
                index: i,
                leaf_hash: hash,
                entry,
            }
        })
        .collect();
    println!(
        "built a {LOG_SIZE}-entry log in {:.2} s",
        start.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    let mut v = LogVerifier::new("bench/log", &[], &[], None).unwrap();
    for r in rows.iter().cloned() {
        v.push(r).unwrap();
    }
    let report = v.finish().unwrap();
    println!(
        "verify {} entries (parse, rehash, back-links, Merkle root), in memory: {:.2} s",
        report.entries,
        start.elapsed().as_secs_f64()
    );

    let tree = MerkleTree::from_leaves(rows.iter().map(|r| r.leaf_hash));
    let n = 10_000u64;
    let start = Instant::now();
    let mut total = 0;
    for k in 0..n {
        let index = (k * 7919) % LOG_SIZE;
        total += tree.inclusion_proof(index, LOG_SIZE).unwrap().len();
    }
    let per = start.elapsed().as_secs_f64() / n as f64;
    println!(
        "inclusion proof at tree size {LOG_SIZE}: {:.2} us each ({} hashes on average)",
        per * 1e6,
        total as u64 / n
    );
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        audited_writes(testing::sqlite().await, "sqlite").await;
        if std::env::var(testing::PG_URL_VAR).is_ok() {
            audited_writes(testing::postgres().await, "postgres").await;
        } else {
            println!(
                "postgres   skipped: set {} to measure it",
                testing::PG_URL_VAR
            );
        }
    });
    verify_and_prove();
}
