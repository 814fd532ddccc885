//! Decision figures: the whole pipeline in process (token, credential and
//! task lookups, scope, Cedar, the audited record), and decisions per second
//! over HTTP on loopback from a separate load process with keep-alive
//! connections, with p50 and p99 latency. Policy evaluation alone, with 10 to
//! 1,000 policies, is `cargo bench -p mandate-policy --bench evaluate`.
//!
//! Run: `cargo bench -p mandate-server --bench decisions`
//! (PostgreSQL figures when MANDATE_TEST_DATABASE_URL is set).

use std::time::Instant;

use mandate_server::access::Presented;
use mandate_server::decision::{self, Ask, ContextIn, ResourceIn};
use mandate_server::now;
use mandate_store::Backend;
use mandate_store::testing;

/// The `mandate` binary's allocator, so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;
use common::{Setup, change, issue_root, serve_on_loopback, setup};

const POLICY: &str = include_str!("../../policy/examples/default.cedar");
const IN_PROCESS: usize = 5_000;
const HTTP_DECISIONS: usize = 20_000;
/// Keep-alive connections of the load: the latency a client sees grows with
/// how many requests are in flight at once, so each count is measured.
const HTTP_CLIENTS: [usize; 3] = [4, 8, 32];

fn percentile(sorted: &[u128], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0
}

/// A task token for the orchestrator, under the example policy set.
async fn token(s: &Setup) -> String {
    let set = mandate_policy::PolicySet::parse(POLICY).unwrap();
    s.state
        .store
        .activate_policy(&change(), set.hash(), set.text())
        .await
        .unwrap();
    s.state.policy.replace(set);
    issue_root(&s.state, &s.agent, s.human).await
}

fn ask() -> Ask {
    Ask {
        action: "procurement.read".into(),
        resource: ResourceIn {
            id: "erp:invoices/1".into(),
            sensitivity: "internal".into(),
            labels: Vec::new(),
        },
        context: ContextIn {
            risk_score: Some(10),
            ..ContextIn::default()
        },
    }
}

async fn in_process(s: &Setup, token: &str, label: &str) {
    let presented = Presented::new(&Default::default(), "POST", "/v1/decisions");
    let mut samples = Vec::with_capacity(IN_PROCESS);
    for _ in 0..IN_PROCESS {
        let t = Instant::now();
        let holder = decision::authenticate(&s.state, token, &presented, now())
            .await
            .unwrap()
            .unwrap();
        let out = decision::decide(&s.state, &holder, &ask(), None, now())
            .await
            .unwrap();
        samples.push(t.elapsed().as_nanos());
        assert_eq!(out.decision.as_str(), "allow");
    }
    samples.sort_unstable();
    println!(
        "{label:<10} whole pipeline in process, one at a time (incl. durable audit record): p50 {:>7.1} µs  p99 {:>7.1} µs",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99)
    );
}

/// CPU time this process has used so far, user and system, in µs.
fn cpu_micros() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // After the command name (in parentheses), utime and stime are fields
    // 12 and 13, in clock ticks of 1/100 s (USER_HZ on Linux).
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks * 10_000
}

async fn over_http(s: &Setup, token: &str, label: &str, clients: usize) {
    let (base, stop, server) = serve_on_loopback(&s.state).await;
    // The load runs in its own process so it does not share the server's runtime.
    let (exe, token) = (std::env::current_exe().unwrap(), token.to_owned());
    let before = cpu_micros();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args([
                "--load",
                &base,
                &HTTP_DECISIONS.to_string(),
                &clients.to_string(),
            ])
            .env("BENCH_TOKEN", token)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let server_cpu = cpu_micros() - before;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "{label:<10} {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    // The warm-up requests are counted too: a slight overestimate.
    println!(
        "{label:<10} server CPU per decision over HTTP ({clients:>2} connections): {:.0} µs",
        server_cpu as f64 / (HTTP_DECISIONS + clients) as f64
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// One keep-alive HTTP/1.1 connection: one warm-up decision, then, once
/// every connection is warm, `n` decisions one after another; their
/// latencies in ns. Like `wrk`, the client writes a request it built once and
/// reads the answer with `httparse`, so the load takes as little of the two
/// cores as it can; every answer is still parsed and checked.
async fn client(addr: &str, request: &[u8], n: usize, start: &tokio::sync::Barrier) -> Vec<u128> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = Vec::with_capacity(4096);
    let mut lat = Vec::with_capacity(n);
    for i in 0..=n {
        if i == 1 {
            start.wait().await;
            lat.clear();
        }
        let t = Instant::now();
        stream.write_all(request).await.unwrap();
        buf.clear();
        let (status, body) = loop {
            let mut chunk = [0u8; 4096];
            let read = stream.read(&mut chunk).await.unwrap();
            assert!(read > 0, "the server closed the connection");
            buf.extend_from_slice(&chunk[..read]);
            if let Some(answer) = answer(&buf) {
                break answer;
            }
        };
        lat.push(t.elapsed().as_nanos());
        // Every answer is checked: a fast refusal is not a decision/s.
        let body = &buf[body];
        assert!(
            status == 200 && body.windows(18).any(|w| w == br#""decision":"allow""#),
            "{status} {}",
            String::from_utf8_lossy(body)
        );
    }
    lat
}

/// The status and the body's range once `buf` holds a whole response (the
/// server sends a Content-Length), or None while it does not yet.
fn answer(buf: &[u8]) -> Option<(u16, std::ops::Range<usize>)> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut res = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = res.parse(buf).unwrap() else {
        return None;
    };
    let length: usize = res
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
        .expect("the server sends a Content-Length");
    (buf.len() >= head + length).then(|| (res.code.unwrap(), head..head + length))
}

/// The load process: `clients` keep-alive connections, `n` decisions in all
/// after one warm-up decision on each.
async fn load(base: String, n: usize, clients: usize) {
    let addr = base.trim_start_matches("http://").to_owned();
    let body = serde_json::json!({ "action": "procurement.read",
        "resource": { "id": "erp:invoices/1" }, "context": { "risk_score": 10 } })
    .to_string();
    let request: std::sync::Arc<[u8]> = format!(
        "POST /v1/decisions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        std::env::var("BENCH_TOKEN").unwrap(),
        body.len()
    )
    .into_bytes()
    .into();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(clients + 1));
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (addr, request, start) = (addr.clone(), request.clone(), start.clone());
            let share = (c..n).step_by(clients).count();
            tokio::spawn(async move { client(&addr, &request, share, &start).await })
        })
        .collect();
    start.wait().await;
    let (began, cpu) = (Instant::now(), cpu_micros());
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let secs = began.elapsed().as_secs_f64();
    let cpu = cpu_micros() - cpu;
    all.sort_unstable();
    println!(
        "decisions over HTTP on loopback ({clients:>2} keep-alive connections, separate process): {:>7.0}/s  p50 {:.2} ms  p99 {:.2} ms  (load process CPU {:.0} µs per decision)",
        n as f64 / secs,
        percentile(&all, 0.5) / 1000.0,
        percentile(&all, 0.99) / 1000.0,
        cpu as f64 / n as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--load") {
        // One thread: the load takes as little of the two cores as it can.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(load(
            args[2].clone(),
            args[3].parse().unwrap(),
            args[4].parse().unwrap(),
        ));
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sqlite = setup(testing::store(Backend::Sqlite).await).await;
        let t = token(&sqlite).await;
        in_process(&sqlite, &t, "sqlite").await;
        for clients in HTTP_CLIENTS {
            over_http(&sqlite, &t, "sqlite", clients).await;
        }
        if std::env::var("MANDATE_TEST_DATABASE_URL").is_ok() {
            let pg = setup(testing::store(Backend::Postgres).await).await;
            let t = token(&pg).await;
            in_process(&pg, &t, "postgres").await;
            for clients in HTTP_CLIENTS {
                over_http(&pg, &t, "postgres", clients).await;
            }
        } else {
            println!("postgres   skipped: set MANDATE_TEST_DATABASE_URL for PostgreSQL figures");
        }
    });
}
