//! Crash safety and the proof commands, with the real `mandate` binary.
//!
//! Requirement: killing the server with SIGKILL during a write load loses no
//! acknowledged event, and `mandate audit verify` passes afterwards, on
//! SQLite and on PostgreSQL. The PostgreSQL test needs
//! `MANDATE_TEST_DATABASE_URL` and fails (never skips) without it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

mod common;
use common::*;
use std::time::{Duration, Instant};

/// Stop the load and kill the server after this many acknowledged writes...
const TARGET_ACKED: usize = 300;
/// ...or after this long, whichever comes first.
const LOAD_DEADLINE: Duration = Duration::from_secs(20);
/// Concurrent writers.
const WRITERS: usize = 8;

/// What the writers saw.
#[derive(Default)]
struct LoadResult {
    /// id -> subject of every write answered 201.
    acked: HashMap<String, String>,
    /// Answers other than 201 (status, body), from a live server.
    refused: Vec<(u16, String)>,
    /// Transport errors (expected once the server is killed).
    errors: u64,
}

async fn writer(
    client: reqwest::Client,
    base: String,
    token: String,
    next: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<LoadResult>>,
) {
    while !stop.load(Ordering::SeqCst) {
        let n = next.fetch_add(1, Ordering::SeqCst);
        let subject = format!("crash-{n}");
        let res = client
            .post(format!("{base}/v1/humans"))
            .bearer_auth(&token)
            .json(&serde_json::json!({
                "issuer": "https://idp.acme.example",
                "subject": subject,
                "display_name": format!("Crash {n}"),
            }))
            .send()
            .await;
        let res = match res {
            Ok(r) => r,
            Err(_) => {
                out.lock().unwrap().errors += 1;
                return;
            }
        };
        let status = res.status();
        let body = match res.bytes().await {
            Ok(b) => b,
            Err(_) => {
                // The status line arrived but not the body: not acknowledged.
                out.lock().unwrap().errors += 1;
                return;
            }
        };
        if status == reqwest::StatusCode::CREATED {
            let v: serde_json::Value = serde_json::from_slice(&body).expect("a 201 answer is JSON");
            let id = v["id"]
                .as_str()
                .unwrap_or_else(|| panic!("a 201 answer without an id: {v}"))
                .to_owned();
            out.lock().unwrap().acked.insert(id, subject);
        } else {
            out.lock().unwrap().refused.push((
                status.as_u16(),
                String::from_utf8_lossy(&body).chars().take(300).collect(),
            ));
        }
    }
}

/// The whole crash scenario on one backend.
async fn sigkill_loses_no_acknowledged_write(backend: Backend) {
    let started = Instant::now();
    let token = backend.init();

    // Phase 1: write load, then SIGKILL while the writers are still going.
    // Checkpoints every second so a checkpoint write may be cut short too.
    let mut server = backend.serve(&["--checkpoint-interval", "1"]).await;
    let client = http();
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let result = Arc::new(Mutex::new(LoadResult::default()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            tokio::spawn(writer(
                client.clone(),
                server.base.clone(),
                token.clone(),
                next.clone(),
                stop.clone(),
                result.clone(),
            ))
        })
        .collect();
    let load_started = Instant::now();
    loop {
        let acked = result.lock().unwrap().acked.len();
        let all_done = writers.iter().all(|w| w.is_finished());
        if acked >= TARGET_ACKED || load_started.elapsed() >= LOAD_DEADLINE || all_done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let writers_running = writers.iter().filter(|w| !w.is_finished()).count();
    server.kill();
    let killed_at = result.lock().unwrap().acked.len();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer task");
    }
    let load = std::mem::take(&mut *result.lock().unwrap());
    eprintln!(
        "load: {} acknowledged ({killed_at} when SIGKILL was sent, {writers_running} of {WRITERS} writers running), \
         {} refused, {} transport errors, {} attempted, {:.1?}",
        load.acked.len(),
        load.refused.len(),
        load.errors,
        next.load(Ordering::SeqCst),
        load_started.elapsed()
    );
    assert!(
        writers_running > 0,
        "every writer had stopped before the kill: {} acknowledged, refused: {:?}\nserver log:\n{}",
        load.acked.len(),
        load.refused.iter().take(5).collect::<Vec<_>>(),
        server.log_text()
    );
    assert!(
        !load.acked.is_empty(),
        "no write was acknowledged before the kill; refused: {:?}\nserver log:\n{}",
        load.refused.iter().take(5).collect::<Vec<_>>(),
        server.log_text()
    );
    if !load.refused.is_empty() {
        eprintln!(
            "note: {} writes were refused by the live server, e.g. {:?}",
            load.refused.len(),
            &load.refused[..load.refused.len().min(3)]
        );
    }
    drop(server);

    // Phase 2: restart on the same store; every acknowledged write is there.
    let server = backend.serve(&[]).await;
    let mut missing = Vec::new();
    for (id, subject) in &load.acked {
        let r = client
            .get(format!("{}/v1/humans/{id}", server.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("GET /v1/humans/{id} after the restart");
        let status = r.status();
        if status != reqwest::StatusCode::OK {
            missing.push(format!("{id}: HTTP {status}"));
            continue;
        }
        let v: serde_json::Value = r.json().await.expect("human JSON");
        if v["subject"].as_str() != Some(subject.as_str()) {
            missing.push(format!("{id}: subject {} != {subject}", v["subject"]));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes were lost after SIGKILL, e.g. {:?}",
        missing.len(),
        load.acked.len(),
        &missing[..missing.len().min(10)]
    );
    drop(server);

    // Phase 3: the log verifies, and every acknowledged write has its event.
    let o = backend.run(&["audit", "verify"]);
    assert_ok(&o, "mandate audit verify");
    assert!(
        stdout(&o).contains("audit log OK"),
        "audit verify said: {}",
        stdout(&o)
    );
    eprintln!("{}", stdout(&o).trim());
    let o = backend.run(&["audit", "export"]);
    assert_ok(&o, "mandate audit export");
    let export = stdout(&o);
    let registered: Vec<&str> = export
        .lines()
        .filter(|l| l.contains("human.registered"))
        .collect();
    assert!(
        registered.len() >= load.acked.len(),
        "{} human.registered entries for {} acknowledged writes",
        registered.len(),
        load.acked.len()
    );
    let unlogged: Vec<_> = load
        .acked
        .keys()
        .filter(|id| !registered.iter().any(|l| l.contains(id.as_str())))
        .collect();
    assert!(
        unlogged.is_empty(),
        "{} acknowledged writes have no human.registered entry, e.g. {:?}",
        unlogged.len(),
        &unlogged[..unlogged.len().min(10)]
    );
    eprintln!(
        "crash test passed: {} acknowledged, {} human.registered entries, {:.1?} in all",
        load.acked.len(),
        registered.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_write_sqlite() {
    sigkill_loses_no_acknowledged_write(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_write_postgres() {
    // Declared first so it is dropped last, after every server is gone.
    let pg = PgDatabase::create();
    let backend = Backend::postgres(&pg);
    sigkill_loses_no_acknowledged_write(backend).await;
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proof_commands_verify() {
    let backend = Backend::sqlite();
    let token = backend.init();
    // No automatic checkpoints: the one we sign must stay the latest.
    let server = backend.serve(&["--checkpoint-interval", "3600"]).await;
    let client = http();
    for n in 0..4 {
        let r = client
            .post(format!("{}/v1/humans", server.base))
            .bearer_auth(&token)
            .json(&serde_json::json!({
                "issuer": "https://idp.acme.example",
                "subject": format!("proof-{n}"),
                "display_name": format!("Proof {n}"),
            }))
            .send()
            .await
            .expect("POST /v1/humans");
        assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    }
    let admin = |args: &[&str]| {
        let mut a: Vec<&str> = vec!["audit"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--server", &server.base, "--token", &token]);
        mandate(&a)
    };

    let o = admin(&["checkpoint"]);
    assert_ok(&o, "mandate audit checkpoint");
    let signed = stdout(&o);
    assert!(signed.starts_with("acme.example/mandate/audit"), "{signed}");

    let o = admin(&["proof", "inclusion", "--index", "1"]);
    assert_ok(&o, "mandate audit proof inclusion --index 1");
    let out = stdout(&o);
    assert!(out.contains("inclusion proof verified"), "{out}");
    for field in ["index:", "size:", "leaf hash:", "root:", "proof:"] {
        assert!(out.contains(field), "no {field:?} in:\n{out}");
    }

    let o = admin(&[
        "proof",
        "inclusion",
        "--index",
        "1",
        "--size",
        "3",
        "--json",
    ]);
    assert_ok(
        &o,
        "mandate audit proof inclusion --index 1 --size 3 --json",
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(
        (v["index"].as_u64(), v["size"].as_u64()),
        (Some(1), Some(3))
    );
    assert!(v["proof"].is_array(), "{v}");

    let o = admin(&["proof", "consistency", "--from", "2"]);
    assert_ok(&o, "mandate audit proof consistency --from 2");
    let out = stdout(&o);
    assert!(out.contains("consistency proof verified"), "{out}");
    for field in ["from:", "to:", "old root:", "new root:", "proof:"] {
        assert!(out.contains(field), "no {field:?} in:\n{out}");
    }

    let o = admin(&["checkpoint", "--latest"]);
    assert_ok(&o, "mandate audit checkpoint --latest");
    assert_eq!(
        stdout(&o),
        signed,
        "--latest is not the checkpoint just signed"
    );

    // A proof the server cannot give is one line on stderr and a non-zero exit.
    let o = admin(&["proof", "inclusion", "--index", "100000"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.lines().count() == 1 && err.starts_with("error: "),
        "{err}"
    );
    drop(server);
}

#[test]
fn database_name_is_replaced() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/test?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}
