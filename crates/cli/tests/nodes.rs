//! Many stateless `mandate serve` nodes on one PostgreSQL database, with the
//! real binary (issue 9):
//!
//! - a task revoked through one node is refused on every node as soon as the
//!   revoke returns, under concurrent load; a policy push through one node
//!   decides the next request on every node;
//! - concurrent delegations and decisions over three nodes leave one audit
//!   log that verifies, holding exactly the acknowledged requests' events;
//!   SIGTERM drains and exits 0 with the whole log under a checkpoint;
//! - SIGKILL of one node loses nothing it acknowledged, and the others keep
//!   answering; SIGTERM under load answers what it took and exits 0;
//! - a PostgreSQL restart (a private cluster, never the shared server) gives
//!   clean 503s while it is down, and service resumes by itself.
//!
//! The tests on the shared server need `MANDATE_TEST_DATABASE_URL` and fail,
//! never skip, without it; the restart test needs `initdb` and `pg_ctl`
//! instead (and fails without them). No timing assertions: every wait is
//! bounded and only counts what happened.

mod cluster;
mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cluster::*;
use common::*;

/// Revocations checked, each with the load running.
const REVOCATIONS: usize = 50;

fn reason_codes(a: &Answer) -> Vec<String> {
    a.body["reasons"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A deny for an ended task: the credential is revoked with the task, so the
/// pipeline stops at the credential step (`credential_revoked`); a task
/// ended some other way would give `task_revoked`.
fn is_revoked_deny(a: &Answer) -> bool {
    a.status == 200
        && a.body["decision"] == "deny"
        && reason_codes(a)
            .first()
            .is_some_and(|c| c == "credential_revoked" || c == "task_revoked")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_holds_on_every_node() {
    let started = Instant::now();
    let pg = PgDatabase::create();
    let mut cluster = Cluster::start(Backend::postgres(&pg), 3, &[]).await;
    let c = cluster.client.clone();

    // Background load: decisions and delegations under live tasks, on all three nodes.
    let mut roots = Vec::new();
    for i in 0..6 {
        roots.push(c.must_root_task(i % 3).await.0);
    }
    let load = Arc::new(Load::new(c.clone(), roots, 5));
    let workers = load.spawn(4, 1_000_000);

    let mut allowed_after_revoke = Vec::new();
    let mut checked = 0;
    for i in 0..REVOCATIONS {
        // Roles rotate so every node issues, revokes and decides.
        let (a, b, cn) = (i % 3, (i + 1) % 3, (i + 2) % 3);
        let (token, task) = c.must_root_task(a).await;
        // Every node has already verified (and cached the signature of) this
        // token when the revocation happens.
        for n in 0..3 {
            let d = c.decide(n, &token).await.expect("decision before revoke");
            assert!(
                d.status == 200 && d.body["decision"] == "allow",
                "before revoke, node {n}: {d:?}"
            );
        }
        // Every fifth round, a delegated child too: the revocation cascades.
        let child = if i % 5 == 0 {
            let d = c.delegate(cn, &token).await.expect("delegation");
            assert_eq!(d.status, 200, "delegation at node {cn}: {d:?}");
            let (child, _) = token_and_id(&d);
            let first = c.decide(a, &child).await.expect("child decision");
            assert_eq!(first.body["decision"], "allow", "{first:?}");
            Some(child)
        } else {
            None
        };
        let r = c.revoke(b, &task).await.expect("revoke");
        assert_eq!(r.status, 200, "revoke at node {b}: {r:?}");
        assert_eq!(r.body["task"]["status"], "revoked", "{r:?}");
        // Right after the revoke returned: C first, then the others.
        for n in [cn, a, b] {
            for t in std::iter::once(&token).chain(child.as_ref()) {
                let d = c.decide(n, t).await.expect("decision after revoke");
                checked += 1;
                if !is_revoked_deny(&d) {
                    allowed_after_revoke.push((i, n, d));
                }
            }
        }
    }
    load.stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("load worker");
    }
    let results = load.take();
    eprintln!(
        "{REVOCATIONS} revocations, {checked} decisions after revoke; background load: {}",
        results.summary()
    );
    assert!(
        allowed_after_revoke.is_empty(),
        "{} decisions after a revoke were not a revoked-task deny, e.g. {:?}",
        allowed_after_revoke.len(),
        &allowed_after_revoke[..allowed_after_revoke.len().min(3)]
    );
    assert!(
        results.failures.is_empty() && results.errors.is_empty(),
        "the background load on live tasks failed: {:?} {:?}",
        &results.failures[..results.failures.len().min(3)],
        &results.errors[..results.errors.len().min(3)]
    );
    assert!(
        results.decisions.len() >= REVOCATIONS,
        "the background load barely ran: {}",
        results.summary()
    );
    for n in 0..3 {
        assert!(
            results.decisions.iter().any(|d| d.node == n),
            "no background decision reached node {n}"
        );
    }
    let vkey = c.vkey(0).await;
    cluster.terminate_all(&[]);
    eprintln!("{}", cluster.verify(&vkey));
    eprintln!("revocation_holds_on_every_node: {:.1?}", started.elapsed());
    drop(cluster);
    drop(pg);
}

/// The active policy set is not a per-node cache either: a push (or a
/// rollback) through one node decides the next request on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_push_holds_on_every_node() {
    const FORBID: &str = "@id(\"in-scope\")\npermit (principal, action, resource);\n\
        @id(\"no-invoices\")\n@reason(\"Invoices are closed\")\n\
        forbid (principal, action, resource) when { resource.path like \"erp:invoices/*\" };\n";
    let pg = PgDatabase::create();
    let cluster = Cluster::start(Backend::postgres(&pg), 3, &[]).await;
    let c = cluster.client.clone();
    let (token, _) = c.must_root_task(0).await;
    // Every node decides (and so holds the set pushed during set-up) first.
    for n in 0..3 {
        let d = c.decide(n, &token).await.expect("decision");
        assert_eq!(d.body["decision"], "allow", "node {n}: {d:?}");
    }
    for round in 0..3 {
        let pushed = c.push_policy(round % 3, FORBID).await;
        for n in 0..3 {
            let d = c.decide(n, &token).await.expect("decision");
            assert_eq!(d.body["decision"], "deny", "round {round}, node {n}: {d:?}");
            assert!(
                reason_codes(&d).contains(&"policy_forbid".to_owned()),
                "{d:?}"
            );
            assert_eq!(d.body["policy_hash"], pushed.body["hash"], "{d:?}");
        }
        // Rolling back to the first set, through the next node.
        let back = c.push_policy((round + 1) % 3, POLICY).await;
        for n in 0..3 {
            let d = c.decide(n, &token).await.expect("decision");
            assert_eq!(
                d.body["decision"], "allow",
                "round {round}, node {n}: {d:?}"
            );
            assert_eq!(d.body["policy_hash"], back.body["hash"], "{d:?}");
        }
    }
    drop(cluster);
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_stays_one_sequence_across_nodes() {
    const ROOTS: usize = 6;
    const WORKERS: usize = 6;
    const OPS: usize = 40;
    let started = Instant::now();
    let pg = PgDatabase::create();
    // Checkpoints every second on every node: three signers race all along.
    let mut cluster =
        Cluster::start(Backend::postgres(&pg), 3, &["--checkpoint-interval", "1"]).await;
    let c = cluster.client.clone();
    let url = cluster.database_url().to_owned();
    let mut roots = Vec::new();
    for i in 0..ROOTS {
        roots.push(c.must_root_task(i % 3).await.0);
    }
    // Before the load: the set-up's events and one task.created per root task.
    let before = log_len(&url);
    assert_eq!(
        before,
        SETUP_EVENTS + ROOTS as u64,
        "set-up events: {:?}",
        kinds(&url)
    );

    // Every third request a delegation (task.delegated), the rest decisions
    // (decision.made): one event per acknowledged request.
    let load = Arc::new(Load::new(c.clone(), roots, 3));
    for w in load.spawn(WORKERS, OPS) {
        w.await.expect("load worker");
    }
    let results = load.take();
    eprintln!("load: {}", results.summary());
    assert!(
        results.failures.is_empty() && results.errors.is_empty(),
        "every request should have been acknowledged: {:?} {:?}",
        &results.failures[..results.failures.len().min(3)],
        &results.errors[..results.errors.len().min(3)]
    );
    assert_eq!(results.acked(), WORKERS * OPS);
    for n in 0..3 {
        assert!(
            results.decisions.iter().any(|d| d.node == n)
                && results.delegations.iter().any(|d| d.node == n),
            "node {n} did not take part: {}",
            results.summary()
        );
    }

    // Graceful stop: exit 0, and the last checkpoint covers the whole log.
    let vkey = c.vkey(1).await;
    cluster.terminate_all(&[]);
    let report = cluster.verify(&vkey);
    eprintln!("{report}");

    let len = log_len(&url);
    assert_eq!(
        len,
        before + results.acked() as u64,
        "{} entries after the load for {before} before and {} acknowledged requests: {:?}",
        len,
        results.acked(),
        kinds(&url)
    );
    let by_kind = kinds(&url);
    assert_eq!(
        by_kind.get("decision.made").copied().unwrap_or(0),
        results.decisions.len() as u64,
        "{by_kind:?}"
    );
    assert_eq!(
        by_kind.get("task.delegated").copied().unwrap_or(0),
        results.delegations.len() as u64,
        "{by_kind:?}"
    );
    // Dense indexes, one chain: 0..len with no gap or duplicate.
    let span = query(
        &url,
        "SELECT min(idx), max(idx), count(DISTINCT idx) FROM audit_log",
    );
    assert_eq!(span.trim(), format!("0|{}|{len}", len - 1));
    let signed: u64 = query(&url, "SELECT max(tree_size) FROM audit_checkpoints")
        .trim()
        .parse()
        .expect("a checkpoint size");
    assert_eq!(
        signed, len,
        "the final checkpoints do not cover the whole log"
    );
    assert_whole(&url);
    let checkpoints = query(&url, "SELECT count(*) FROM audit_checkpoints");
    eprintln!(
        "audit_log_stays_one_sequence_across_nodes: {len} entries, {} checkpoints, {:.1?}",
        checkpoints.trim(),
        started.elapsed()
    );
    drop(cluster);
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_one_node_others_keep_serving() {
    const VICTIM: usize = 1;
    let started = Instant::now();
    let pg = PgDatabase::create();
    let mut cluster =
        Cluster::start(Backend::postgres(&pg), 3, &["--checkpoint-interval", "1"]).await;
    let c = cluster.client.clone();
    let url = cluster.database_url().to_owned();
    let mut roots = Vec::new();
    for i in 0..6 {
        roots.push(c.must_root_task(i % 3).await.0);
    }
    let load = Arc::new(Load::new(c.clone(), roots, 4));
    let workers = load.spawn(6, 1_000_000);

    // Phase 0: all three nodes, until the victim has acknowledged enough.
    let victim_acked = || {
        let r = load.results.lock().unwrap();
        r.decisions.iter().filter(|d| d.node == VICTIM).count()
            + r.delegations.iter().filter(|d| d.node == VICTIM).count()
    };
    let ready = wait_until(Duration::from_secs(30), || {
        victim_acked() >= 40 && load.acked() >= 150
    })
    .await;
    assert!(
        ready,
        "the load did not get going: {}",
        load.take().summary()
    );
    // No new request goes to the victim from here; SIGKILL with requests in flight.
    load.dead[VICTIM].store(true, Ordering::SeqCst);
    load.phase.store(1, Ordering::SeqCst);
    cluster.nodes[VICTIM].kill();
    let at_kill = load.acked();

    // Phase 1: the other two keep serving.
    let kept_on = wait_until(Duration::from_secs(30), || load.acked() >= at_kill + 150).await;
    load.stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("load worker");
    }
    let results = load.take();
    eprintln!("load: {}", results.summary());
    assert!(
        kept_on,
        "the surviving nodes stopped serving: {}",
        results.summary()
    );
    let survivors_failed: Vec<_> = results
        .failures
        .iter()
        .filter(|f| f.node != VICTIM)
        .collect();
    let survivors_errors: Vec<_> = results.errors.iter().filter(|e| e.0 != VICTIM).collect();
    assert!(
        survivors_failed.is_empty() && survivors_errors.is_empty(),
        "the surviving nodes did not answer 2xx: {:?} {:?}",
        &survivors_failed[..survivors_failed.len().min(3)],
        &survivors_errors[..survivors_errors.len().min(3)]
    );
    let after_kill = results
        .decisions
        .iter()
        .chain(&results.delegations)
        .filter(|a| a.phase == 1)
        .count();
    assert!(after_kill > 0);
    assert!(
        results
            .decisions
            .iter()
            .chain(&results.delegations)
            .all(|a| a.phase == 0 || a.node != VICTIM),
        "the victim acknowledged a request sent after it was killed"
    );

    let vkey = c.vkey(0).await;
    cluster.terminate_all(&[VICTIM]);
    eprintln!("{}", cluster.verify(&vkey));

    // Every acknowledged request has its event, the victim's above all.
    assert_all_logged(&url, &results, "after the SIGKILL");
    assert_whole(&url);
    let by_victim = results
        .decisions
        .iter()
        .chain(&results.delegations)
        .filter(|a| a.node == VICTIM)
        .count();
    eprintln!(
        "sigkill_one_node_others_keep_serving: node {VICTIM} acknowledged {by_victim} (all logged), \
         {} failed in flight at the kill, {after_kill} acknowledged by the others afterwards, {:.1?}",
        results.errors.len() + results.failures.len(),
        started.elapsed()
    );
    drop(cluster);
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_gives_503_then_resumes() {
    // The shared database is not touched: a private cluster in a temp dir.
    let started = Instant::now();
    let pg = PrivatePg::start();
    let backend = Backend {
        dir: tempfile::tempdir().expect("temp dir"),
        database_url: Some(pg.url()),
    };
    let mut cluster = Cluster::start(backend, 2, &["--checkpoint-interval", "1"]).await;
    let c = cluster.client.clone();
    let mut roots = Vec::new();
    for i in 0..4 {
        roots.push(c.must_root_task(i % 2).await.0);
    }
    let load = Arc::new(Load::new(c.clone(), roots, 4));
    let workers = load.spawn(6, 1_000_000);
    let up = wait_until(Duration::from_secs(30), || load.acked() >= 60).await;
    assert!(up, "the load did not get going: {}", load.take().summary());

    // Phase 1: the database is gone (immediate stop: connections cut, like a crash).
    load.phase.store(1, Ordering::SeqCst);
    pg.stop_immediate();
    let unavailable = |r: &Results| {
        r.failures
            .iter()
            .filter(|f| f.phase == 1 && f.answer.status == 503)
            .count()
    };
    let saw_503 = wait_until(Duration::from_secs(60), || {
        unavailable(&load.results.lock().unwrap()) >= 12
    })
    .await;
    let down_acked = load.acked();

    // Phase 2: it comes back; nothing is restarted on the nodes.
    load.phase.store(2, Ordering::SeqCst);
    pg.start_server();
    let resumed = wait_until(Duration::from_secs(60), || {
        let r = load.results.lock().unwrap();
        r.decisions
            .iter()
            .chain(&r.delegations)
            .filter(|a| a.phase == 2)
            .count()
            >= 60
    })
    .await;
    load.stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("load worker");
    }
    let results = load.take();
    eprintln!("load: {}", results.summary());
    assert!(
        saw_503,
        "no 503 while the database was down: {}",
        results.summary()
    );
    assert!(
        resumed,
        "service did not resume after the database came back: {}\n{}",
        results.summary(),
        cluster.nodes[0].log_text()
    );
    // Every refusal was a clean 503 problem+json with Retry-After; no 500,
    // no hang (a request that outlived the client's bound is a transport error).
    let unclean: Vec<_> = results
        .failures
        .iter()
        .filter(|f| !f.answer.is_clean_unavailable())
        .collect();
    assert!(
        unclean.is_empty(),
        "{} answers were not a clean 503, e.g. {:?}",
        unclean.len(),
        &unclean[..unclean.len().min(3)]
    );
    assert!(
        results.errors.is_empty(),
        "transport errors (a hang past the client's bound, or a dropped connection): {:?}",
        &results.errors[..results.errors.len().min(3)]
    );
    let during = results.failures.iter().filter(|f| f.phase == 1).count();
    let slowest = results
        .failures
        .iter()
        .map(|f| f.took)
        .max()
        .unwrap_or_default();

    let vkey = c.vkey(0).await;
    cluster.terminate_all(&[]);
    eprintln!("{}", cluster.verify(&vkey));
    let url = pg.url();
    assert_all_logged(&url, &results, "across the restart");
    assert_whole(&url);
    eprintln!(
        "postgres_restart_gives_503_then_resumes: {during} clean 503s while down (the slowest in {slowest:.1?}; \
         {} acknowledged before), {} acknowledged in all, {:.1?}",
        down_acked,
        results.acked(),
        started.elapsed()
    );
    drop(cluster);
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_and_exits_0() {
    const DRAINED: usize = 1;
    let started = Instant::now();
    let pg = PgDatabase::create();
    let mut cluster = Cluster::start(Backend::postgres(&pg), 2, &[]).await;
    let c = cluster.client.clone();
    let url = cluster.database_url().to_owned();
    let mut roots = Vec::new();
    for i in 0..4 {
        roots.push(c.must_root_task(i % 2).await.0);
    }
    let load = Arc::new(Load::new(c.clone(), roots, 4));
    let workers = load.spawn(6, 1_000_000);
    let up = wait_until(Duration::from_secs(30), || load.acked() >= 100).await;
    assert!(up, "the load did not get going: {}", load.take().summary());

    // SIGTERM with requests still being sent to the node: the ones it took
    // finish; the ones it no longer accepts fail to connect.
    load.phase.store(1, Ordering::SeqCst);
    let signalled = Instant::now();
    let status = terminate_async(&mut cluster.nodes[DRAINED]).await;
    load.dead[DRAINED].store(true, Ordering::SeqCst);
    load.phase.store(2, Ordering::SeqCst);
    let at_exit = load.acked();
    let kept_on = wait_until(Duration::from_secs(30), || load.acked() >= at_exit + 60).await;
    load.stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("load worker");
    }
    let results = load.take();
    eprintln!("load: {}", results.summary());
    assert!(
        status.success(),
        "SIGTERM: exit {status}, not 0:\n{}",
        cluster.nodes[DRAINED].log_text()
    );
    assert!(
        kept_on,
        "the other node stopped serving: {}",
        results.summary()
    );
    // Every answer the draining node gave was a full 2xx (no 5xx while
    // draining); only requests it never took failed, at the transport (a
    // request racing the close of an idle keep-alive connection may be one
    // sent just before the signal).
    assert!(
        results.failures.is_empty(),
        "answers other than 2xx: {:?}",
        &results.failures[..results.failures.len().min(3)]
    );
    assert!(
        results.errors.iter().all(|(node, _, _)| *node == DRAINED),
        "transport errors other than the draining node's refusals: {:?}",
        &results.errors[..results.errors.len().min(3)]
    );
    let during_drain = results
        .decisions
        .iter()
        .chain(&results.delegations)
        .filter(|a| a.node == DRAINED && a.sent < signalled && a.done > signalled)
        .count();

    let vkey = c.vkey(0).await;
    cluster.terminate_all(&[DRAINED]);
    eprintln!("{}", cluster.verify(&vkey));
    assert_all_logged(&url, &results, "after the SIGTERM");
    assert_whole(&url);
    eprintln!(
        "sigterm_under_load_drains_and_exits_0: exit 0, {during_drain} requests in flight at SIGTERM answered 2xx, \
         {} refused at the transport afterwards (e.g. {:?}), {:.1?}",
        results.errors.len(),
        results.errors.first().map(|e| &e.2),
        started.elapsed()
    );
    drop(cluster);
    drop(pg);
}
