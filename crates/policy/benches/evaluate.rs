//! In-process decision latency of the policy step: p50 and p99 of
//! `evaluate` with 10, 100 and 1,000 policies (target: p50 under 20 µs with
//! 1,000). The sets mix Mandate's example policies with generated ones over
//! many actions, as a large organisation's set would look; the request is an
//! ordinary in-scope read. "same task" repeats calls under one task, so the
//! task's entities (its chain and the task) come from the per-thread cache as
//! they do for an agent's successive calls; "new task each call" gives every
//! call a task id never seen before, so the task's entity is built each time
//! (the chain's agents, unchanged, come from the per-agent cache, as they do
//! for a known agent's new task).
//!
//! Run: `cargo bench -p mandate-policy --bench evaluate`

use std::time::Instant;

/// The `mandate` binary's allocator, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/common/mod.rs"]
mod common;

const EXAMPLE: &str = include_str!("../examples/default.cedar");

/// `n` policies: the example set plus generated permits and forbids over
/// 100 services' actions, some with conditions on context and tags.
fn policy_set(n: usize) -> mandate_policy::PolicySet {
    let mut text = EXAMPLE.to_owned();
    let base = mandate_policy::PolicySet::parse(EXAMPLE).unwrap().len();
    for i in 0..n.saturating_sub(base) {
        let svc = i % 100;
        let rule = match i % 4 {
            0 => format!(
                "@id(\"g{i}\")\npermit (principal, action == Mandate::Action::\"svc{svc}.op{i}\", resource)\nwhen {{ context.risk_score < 50 }};\n"
            ),
            1 => format!(
                "@id(\"g{i}\")\nforbid (principal, action in Mandate::Action::\"svc{svc}.*\", resource)\nwhen {{ context.environment == \"prod\" && !principal.tags.contains(\"svc{svc}\") }};\n"
            ),
            2 => format!(
                "@id(\"g{i}\")\nforbid (principal, action == Mandate::Action::\"svc{svc}.op{i}\", resource)\nwhen {{ resource.sensitivity == \"restricted\" }};\n"
            ),
            _ => format!(
                "@id(\"g{i}\")\npermit (principal, action == Mandate::Action::\"svc{svc}.read{i}\", resource)\nwhen {{ context.chain_depth < 2 }};\n"
            ),
        };
        text.push_str(&rule);
    }
    let set = mandate_policy::PolicySet::parse(&text).unwrap();
    assert_eq!(set.len(), n.max(base));
    set
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

fn main() {
    println!("policy evaluation, in process (one core):");
    for n in [10, 100, 1_000] {
        let set = policy_set(n);
        for (label, action, fresh_task) in [
            ("in-scope read, same task", "invoices.read", false),
            ("generated action, same task", "svc7.op7", false),
            ("in-scope read, new task each call", "invoices.read", true),
        ] {
            let mut request = common::request(action);
            for _ in 0..2_000 {
                std::hint::black_box(mandate_policy::evaluate(&set, &request));
            }
            let rounds = 20_000;
            let mut samples = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                if fresh_task {
                    request.task.id = mandate_core::ids::TaskId::from_uuid(uuid::Uuid::now_v7());
                }
                let t = Instant::now();
                std::hint::black_box(mandate_policy::evaluate(&set, &request));
                samples.push(t.elapsed().as_nanos());
            }
            samples.sort_unstable();
            println!(
                "  {n:>5} policies, {label:<34}: p50 {:>6.1} µs  p99 {:>6.1} µs",
                percentile(&samples, 0.50) as f64 / 1000.0,
                percentile(&samples, 0.99) as f64 / 1000.0,
            );
        }
    }
}
