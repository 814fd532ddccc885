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

mod common;
use common::{Setup, change, issue_root, serve_on_loopback, setup};

const POLICY: &str = include_str!("../../policy/examples/default.cedar");
const IN_PROCESS: usize = 5_000;
const HTTP_DECISIONS: usize = 20_000;
const HTTP_CLIENTS: usize = 32;

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

async fn over_http(s: &Setup, token: &str, label: &str) {
    let (base, stop, server) = serve_on_loopback(&s.state).await;
    // The load runs in its own process so it does not share the server's runtime.
    let (exe, token) = (std::env::current_exe().unwrap(), token.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args(["--load", &base, &HTTP_DECISIONS.to_string()])
            .env("BENCH_TOKEN", token)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "{label:<10} {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// The load process: `HTTP_CLIENTS` keep-alive clients, `n` decisions in all.
async fn load(base: String, n: usize) {
    let token = std::env::var("BENCH_TOKEN").unwrap();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(HTTP_CLIENTS)
        .build()
        .unwrap();
    let body = serde_json::json!({ "action": "procurement.read",
        "resource": { "id": "erp:invoices/1" }, "context": { "risk_score": 10 } });
    // Warm the connections.
    for _ in 0..HTTP_CLIENTS {
        http.post(format!("{base}/v1/decisions"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
    }
    let start = Instant::now();
    let clients: Vec<_> = (0..HTTP_CLIENTS)
        .map(|c| {
            let (http, base, token, body) =
                (http.clone(), base.clone(), token.clone(), body.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                for _ in (c..n).step_by(HTTP_CLIENTS) {
                    let t = Instant::now();
                    let res = http
                        .post(format!("{base}/v1/decisions"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    let v: serde_json::Value = res.json().await.unwrap();
                    assert_eq!(v["decision"], "allow", "{v}");
                    lat.push(t.elapsed().as_nanos());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for c in clients {
        all.extend(c.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_unstable();
    println!(
        "decisions over HTTP on loopback ({HTTP_CLIENTS} keep-alive clients, separate process): {:>7.0}/s  p50 {:.2} ms  p99 {:.2} ms",
        n as f64 / secs,
        percentile(&all, 0.5) / 1000.0,
        percentile(&all, 0.99) / 1000.0
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if args.get(1).map(String::as_str) == Some("--load") {
        rt.block_on(load(args[2].clone(), args[3].parse().unwrap()));
        return;
    }
    rt.block_on(async {
        let sqlite = setup(testing::store(Backend::Sqlite).await).await;
        let t = token(&sqlite).await;
        in_process(&sqlite, &t, "sqlite").await;
        over_http(&sqlite, &t, "sqlite").await;
        if std::env::var("MANDATE_TEST_DATABASE_URL").is_ok() {
            let pg = setup(testing::store(Backend::Postgres).await).await;
            let t = token(&pg).await;
            in_process(&pg, &t, "postgres").await;
            over_http(&pg, &t, "postgres").await;
        } else {
            println!("postgres   skipped: set MANDATE_TEST_DATABASE_URL for PostgreSQL figures");
        }
    });
}
