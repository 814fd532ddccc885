//! Decision figures: the whole pipeline in process (token, credential and
//! task lookups, scope, Cedar, the audited record), and decisions per second
//! over HTTP on loopback from a separate load process with keep-alive
//! connections, with p50 and p99 latency: in a closed loop (each connection
//! sends its next request when the answer is in) and in an open loop (requests
//! sent on a fixed schedule at rising rates, as `wrk2` does, up to the highest
//! rate answered with p99 under 2 ms). Policy evaluation alone, with 10 to
//! 1,000 policies, is `cargo bench -p mandate-policy --bench evaluate`.
//!
//! Run: `cargo bench -p mandate-server --bench decisions`
//! (PostgreSQL figures when MANDATE_TEST_DATABASE_URL is set).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
/// The open loop's offered rates, per second, tried in order until one is
/// not kept up with.
const OPEN_RATES: [u32; 10] = [
    2_000, 4_000, 6_000, 8_000, 10_000, 12_000, 14_000, 16_000, 18_000, 20_000,
];
/// Connections of the open loop: enough that each has a few milliseconds
/// between its requests even at the highest rate.
const OPEN_CLIENTS: usize = 64;
/// How long each open-loop rate is held.
const OPEN_SECONDS: u32 = 2;
/// The latency target the open loop looks for, in ms.
const P99_TARGET_MS: f64 = 2.0;

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

/// When a connection sends its next request.
#[derive(Clone, Copy)]
enum Pace {
    /// As soon as the previous answer is in (closed loop): the rate is what
    /// the server gives, and the load waits with it.
    Closed,
    /// At a fixed rate (open loop), whatever became of earlier requests.
    Open { per_second: u32 },
}

impl Pace {
    /// As the load process takes it on its command line (0: closed).
    fn arg(self) -> u32 {
        match self {
            Pace::Closed => 0,
            Pace::Open { per_second } => per_second,
        }
    }

    fn from_arg(per_second: u32) -> Self {
        match per_second {
            0 => Pace::Closed,
            per_second => Pace::Open { per_second },
        }
    }
}

/// When an open-loop connection's requests are due: the k-th at
/// `phase + k * every` after `epoch`, the moment the measured requests begin.
struct Schedule {
    every: Duration,
    phase: Duration,
    epoch: std::sync::Arc<OnceLock<Instant>>,
}

/// What the load process measured.
struct Measured {
    per_second: f64,
    p99_ms: f64,
}

async fn over_http(s: &Setup, token: &str, label: &str, clients: usize, pace: Pace) -> Measured {
    let (base, stop, server) = serve_on_loopback(&s.state).await;
    let n = match pace {
        Pace::Closed => HTTP_DECISIONS,
        Pace::Open { per_second } => (per_second * OPEN_SECONDS) as usize,
    };
    // The load runs in its own process so it does not share the server's runtime.
    let (exe, token) = (std::env::current_exe().unwrap(), token.to_owned());
    let before = cpu_micros();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args([
                "--load",
                &base,
                &n.to_string(),
                &clients.to_string(),
                &pace.arg().to_string(),
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
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (shown, figures) = stdout.trim().rsplit_once('\n').unwrap();
    println!("{label:<10} {shown}");
    let under = match pace {
        Pace::Closed => format!("({clients:>2} connections)"),
        Pace::Open { per_second } => format!("(offered {per_second}/s)"),
    };
    // The warm-up requests are counted too: a slight overestimate.
    println!(
        "{label:<10} server CPU per decision over HTTP {under}: {:.0} µs",
        server_cpu as f64 / (n + clients) as f64
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    let mut figures = figures.split(' ').map(|f| f.parse::<f64>().unwrap());
    Measured {
        per_second: figures.next().unwrap(),
        p99_ms: figures.next().unwrap(),
    }
}

/// Decisions at each rate of [`OPEN_RATES`] in turn, up to the first the
/// server does not keep up with; prints the highest rate answered with p99
/// under the target.
async fn open_loop(s: &Setup, token: &str, label: &str) {
    let mut highest = None;
    for per_second in OPEN_RATES {
        let m = over_http(s, token, label, OPEN_CLIENTS, Pace::Open { per_second }).await;
        if m.per_second < 0.95 * f64::from(per_second) {
            break;
        }
        if m.p99_ms < P99_TARGET_MS {
            highest = Some(per_second);
        }
    }
    println!(
        "{label:<10} highest offered rate answered with p99 under {P99_TARGET_MS} ms (open loop, steps of 2,000/s): {}",
        highest.map_or("none".to_owned(), |r| format!("{r}/s"))
    );
}

/// One keep-alive HTTP/1.1 connection: one warm-up decision, then, once
/// every connection is warm, `n` decisions one after another; their
/// latencies in ns. Like `wrk`, the client writes a request it built once and
/// reads the answer with `httparse`, so the load takes as little of the two
/// cores as it can; every answer is still parsed and checked.
///
/// Under a [`Schedule`] (open loop), a request sent late because the server
/// held the previous answer past its due time is timed from that due time, as
/// `wrk2` does, so a slow answer also counts against the requests it delayed
/// (no coordinated omission). Otherwise it is timed from when it was sent:
/// tokio's timer wakes at millisecond ticks, and the requests due within one
/// tick go out together, a burstier arrival than a steady one, whose lateness
/// is the load's, not the server's.
async fn client(
    addr: &str,
    request: &[u8],
    n: usize,
    start: &tokio::sync::Barrier,
    schedule: Option<Schedule>,
) -> Vec<u128> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = Vec::with_capacity(4096);
    let mut lat = Vec::with_capacity(n);
    let mut answered = Instant::now();
    for i in 0..=n {
        if i == 1 {
            start.wait().await;
            lat.clear();
        }
        let t = match &schedule {
            Some(s) if i > 0 => {
                let due = *s.epoch.get_or_init(Instant::now) + s.phase + s.every * (i as u32 - 1);
                tokio::time::sleep_until(due.into()).await;
                if answered > due { due } else { Instant::now() }
            }
            _ => Instant::now(),
        };
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
        answered = Instant::now();
        lat.push((answered - t).as_nanos());
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
/// at `pace` after one warm-up decision on each.
async fn load(base: String, n: usize, clients: usize, pace: Pace) {
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
    let epoch = std::sync::Arc::new(OnceLock::new());
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (addr, request, start) = (addr.clone(), request.clone(), start.clone());
            // Request i of the whole load goes on connection i % clients.
            let share = (c..n).step_by(clients).count();
            let schedule = match pace {
                Pace::Closed => None,
                Pace::Open { per_second } => {
                    let every = Duration::from_secs_f64(clients as f64 / f64::from(per_second));
                    Some(Schedule {
                        every,
                        phase: every * c as u32 / clients as u32,
                        epoch: epoch.clone(),
                    })
                }
            };
            tokio::spawn(async move { client(&addr, &request, share, &start, schedule).await })
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
    let (per_second, p99_ms) = (n as f64 / secs, percentile(&all, 0.99) / 1000.0);
    let how = match pace {
        Pace::Closed => format!("({clients:>2} keep-alive connections, separate process)"),
        Pace::Open { per_second } => {
            format!("(offered {per_second:>6}/s on {clients} connections, open loop)")
        }
    };
    println!(
        "decisions over HTTP on loopback {how}: {per_second:>7.0}/s  p50 {:.2} ms  p99 {p99_ms:.2} ms  (load process CPU {:.0} µs per decision)",
        percentile(&all, 0.5) / 1000.0,
        cpu as f64 / n as f64
    );
    // For the bench's own process, which reads the last line.
    println!("{per_second} {p99_ms}");
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
            Pace::from_arg(args[5].parse().unwrap()),
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
            over_http(&sqlite, &t, "sqlite", clients, Pace::Closed).await;
        }
        open_loop(&sqlite, &t, "sqlite").await;
        if std::env::var("MANDATE_TEST_DATABASE_URL").is_ok() {
            let pg = setup(testing::store(Backend::Postgres).await).await;
            let t = token(&pg).await;
            in_process(&pg, &t, "postgres").await;
            for clients in HTTP_CLIENTS {
                over_http(&pg, &t, "postgres", clients, Pace::Closed).await;
            }
            open_loop(&pg, &t, "postgres").await;
        } else {
            println!("postgres   skipped: set MANDATE_TEST_DATABASE_URL for PostgreSQL figures");
        }
    });
}
