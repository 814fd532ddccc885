//! Many nodes on one PostgreSQL: decisions/s and issuances/s with one, two
//! and three `mandate serve` processes (the release binary) on one fresh
//! database, over loopback.
//!
//! Set-up per row: a fresh database in the PostgreSQL of
//! `MANDATE_TEST_DATABASE_URL` (required), `mandate init` once, N nodes with
//! the same master key, the README's set-up (dev issuer, Alice, two agents,
//! a permit-in-scope policy). The load runs in this process (tokio, its own
//! runtime, separate from every node) with `CLIENTS` keep-alive clients
//! spreading requests round-robin over the nodes:
//! - issuances: RFC 8693 exchanges (Alice's ID token and a fresh agent
//!   assertion, both signed here; the node verifies both, spends the jti,
//!   stores task, credential and `task.created` in one transaction, signs
//!   the token);
//! - decisions: `POST /v1/decisions` under 8 live task tokens (credential,
//!   task and policy read from the store, Cedar, `decision.made` committed
//!   before the answer).
//!
//! Every node, the load and PostgreSQL share the same machine's cores: on a
//! 2-core machine three nodes cannot add CPU, only show that nothing
//! serialises on one node.
//!
//! Run: `cargo bench -p mandate-cli --bench nodes` (or build it with
//! `--no-run` and run the executable in target/release/deps).

#[path = "../tests/cluster/mod.rs"]
mod cluster;
#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use cluster::{Client, Cluster};
use common::{Backend, PgDatabase};

const CLIENTS: usize = 32;
const ISSUANCES: usize = 2_000;
const DECISIONS: usize = 8_000;
const TOKENS: usize = 8;

#[derive(Clone, Copy)]
enum Op {
    Issue,
    Decide,
}

/// CPU seconds (user + system) used so far by process `pid`, from /proc.
fn cpu_secs(pid: u32, tck: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / tck
}

/// CPU seconds of every process named `postgres` (the server and its backends).
fn postgres_cpu_secs(tck: f64) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|pid| cpu_secs(pid, tck))
        .sum()
}

/// Where the CPU went: (nodes, PostgreSQL, this load process), in CPU seconds.
#[derive(Clone, Copy)]
struct Cpu(f64, f64, f64);

fn cpu_now(nodes: &[u32], tck: f64) -> Cpu {
    Cpu(
        nodes.iter().map(|p| cpu_secs(*p, tck)).sum(),
        postgres_cpu_secs(tck),
        cpu_secs(std::process::id(), tck),
    )
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn percentile(sorted: &[u128], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize] as f64 / 1e6
}

/// `n` requests from `CLIENTS` concurrent clients, round-robin over the
/// nodes: (requests/s, p50 ms, p99 ms).
async fn drive(c: &Arc<Client>, op: Op, n: usize, tokens: &Arc<Vec<String>>) -> (f64, f64, f64) {
    let nodes = c.bases.len();
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let (c, tokens) = (c.clone(), tokens.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(n / CLIENTS + 1);
                for i in (k..n).step_by(CLIENTS) {
                    let node = i % nodes;
                    let t = Instant::now();
                    let a = match op {
                        Op::Issue => c.root_task(node).await,
                        Op::Decide => c.decide(node, &tokens[i % tokens.len()]).await,
                    }
                    .expect("request");
                    match op {
                        Op::Issue => assert_eq!(a.status, 200, "{a:?}"),
                        Op::Decide => assert_eq!(a.body["decision"], "allow", "{a:?}"),
                    }
                    lat.push(t.elapsed().as_nanos());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_unstable();
    (
        n as f64 / secs,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
    )
}

async fn row(nodes: usize) {
    // Declared first: dropped after the nodes are gone.
    let pg = PgDatabase::create();
    let mut cluster = Cluster::start(Backend::postgres(&pg), nodes, &[]).await;
    let c = cluster.client.clone();
    let mut tokens = Vec::new();
    for i in 0..TOKENS {
        tokens.push(c.must_root_task(i % nodes).await.0);
    }
    let tokens = Arc::new(tokens);
    // Warm every node's connections (HTTP and database).
    drive(&c, Op::Decide, CLIENTS * nodes, &tokens).await;
    drive(&c, Op::Issue, CLIENTS * nodes, &tokens).await;

    let pids: Vec<u32> = cluster.nodes.iter().map(|n| n.child.id()).collect();
    let tck = clock_ticks();
    for (op, n, label) in [
        (Op::Issue, ISSUANCES, "issuances (RFC 8693 exchanges)"),
        (Op::Decide, DECISIONS, "decisions"),
    ] {
        let before = cpu_now(&pids, tck);
        let t = Instant::now();
        let (rate, p50, p99) = drive(&c, op, n, &tokens).await;
        let secs = t.elapsed().as_secs_f64();
        let after = cpu_now(&pids, tck);
        println!(
            "{nodes} node(s)  {label:<31} {rate:>6.0}/s  p50 {p50:>6.1} ms  p99 {p99:>6.1} ms  \
             cores busy: nodes {:.2}, postgres {:.2}, load {:.2}",
            (after.0 - before.0) / secs,
            (after.1 - before.1) / secs,
            (after.2 - before.2) / secs,
        );
    }
    cluster.terminate_all(&[]);
    drop(cluster);
    drop(pg);
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "many nodes on one PostgreSQL: release `mandate serve` processes on 127.0.0.1, \
         {CLIENTS} keep-alive clients in the bench process, {cores} cores shared by all"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for nodes in 1..=3 {
        rt.block_on(row(nodes));
    }
}
