//! The credential flow with the real binary, as the README tells a user to
//! run it: dev issuer, keys, `task issue`, `delegate`, `token inspect`,
//! `task show`, `task complete` with its cascade, `keys rotate`, and the
//! tree's `audit trace`; on SQLite and on PostgreSQL (which needs
//! `MANDATE_TEST_DATABASE_URL`, never skips).

mod common;
use common::*;

fn ok(o: &std::process::Output, what: &str) -> String {
    assert_ok(o, what);
    stdout(o)
}

async fn task_flow(backend: Backend) {
    let admin = backend.init();
    let server = backend.serve(&[]).await;
    let data = backend.data_dir();
    let data = data.to_str().unwrap();
    let srv = ["--server", server.base.as_str(), "--token", admin.as_str()];
    let run = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend_from_slice(&srv);
        mandate(&a)
    };

    ok(
        &run(&["dev-issuer", "trust", "--data-dir", data]),
        "dev-issuer trust",
    );
    let human: serde_json::Value = serde_json::from_str(&ok(
        &run(&[
            "human",
            "register",
            "--issuer",
            "https://dev-issuer.localhost",
            "--subject",
            "alice",
            "--name",
            "Alice",
            "--json",
        ]),
        "human register",
    ))
    .unwrap();
    let alice = human["id"].as_str().unwrap();

    let dir = backend.dir.path();
    for (name, grant) in [
        ("orchestrator", "procurement.*=erp:*"),
        ("worker", "procurement.read=erp:*"),
    ] {
        let key = dir.join(format!("{name}.key"));
        let public = ok(
            &mandate(&["agent", "keygen", "--out", key.to_str().unwrap()]),
            "agent keygen",
        );
        assert!(!public.contains("\"d\""), "keygen printed the private key");
        let private = std::fs::read_to_string(&key).unwrap();
        assert!(private.contains("\"d\""));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let pubfile = dir.join(format!("{name}.pub.json"));
        std::fs::write(&pubfile, public).unwrap();
        ok(
            &run(&[
                "agent",
                "register",
                "--name",
                name,
                "--owner",
                alice,
                "--description",
                name,
                "--grant",
                grant,
                "--key",
                &format!("@{}", pubfile.display()),
            ]),
            "agent register",
        );
    }
    let key = |n: &str| dir.join(format!("{n}.key")).to_str().unwrap().to_owned();
    let (orch_key, worker_key) = (key("orchestrator"), key("worker"));

    let id_token = ok(
        &run(&[
            "dev-issuer",
            "token",
            "--data-dir",
            data,
            "--subject",
            "alice",
        ]),
        "dev-issuer token",
    );
    let issued: serde_json::Value = serde_json::from_str(&ok(
        &run(&[
            "task",
            "issue",
            "--json",
            "--id-token",
            id_token.trim(),
            "--agent",
            "spiffe://acme.example/agent/orchestrator",
            "--agent-key",
            &orch_key,
            "--purpose",
            "buy laptops",
            "--action",
            "procurement.read",
            "--action",
            "procurement.po.create",
            "--resource",
            "erp:*",
            "--max-calls",
            "20",
            "--ttl",
            "600",
        ]),
        "task issue",
    ))
    .unwrap();
    let parent = issued["access_token"].as_str().unwrap();
    let root = issued["task_id"].as_str().unwrap();
    return_on_ai(&run, &backend, alice, parent);

    let child = ok(
        &run(&[
            "delegate",
            "--parent-token",
            parent,
            "--agent",
            "spiffe://acme.example/agent/worker",
            "--agent-key",
            &worker_key,
            "--purpose",
            "read suppliers",
            "--action",
            "procurement.read",
            "--resource",
            "erp:suppliers/*",
            "--max-calls",
            "5",
        ]),
        "delegate",
    );
    let child = child.trim();

    // Wider than the worker's ceiling: one line naming the offending grant.
    let o = run(&[
        "delegate",
        "--parent-token",
        parent,
        "--agent",
        "spiffe://acme.example/agent/worker",
        "--agent-key",
        &worker_key,
        "--purpose",
        "raise a PO",
        "--action",
        "procurement.po.create",
        "--resource",
        "erp:purchase-orders/*",
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.lines().count() == 1
            && err.contains("invalid_scope")
            && err.contains("procurement.po.create"),
        "{err}"
    );

    let inspected = ok(&run(&["token", "inspect", child]), "token inspect");
    assert!(inspected.contains("signature: valid"), "{inspected}");
    assert!(
        inspected.contains(&format!(
            "human {alice} -> spiffe://acme.example/agent/orchestrator -> spiffe://acme.example/agent/worker"
        )),
        "{inspected}"
    );
    assert!(inspected.contains("status:    active"), "{inspected}");
    let tree = ok(&run(&["task", "show", root]), "task show");
    assert!(
        tree.contains("agent/orchestrator [open]")
            && tree.contains("└─ spiffe://acme.example/agent/worker [open]"),
        "{tree}"
    );

    let done = ok(
        &run(&[
            "task",
            "complete",
            root,
            "--task-token",
            parent,
            "--reason",
            "PO raised",
        ]),
        "task complete",
    );
    assert!(
        done.contains("completed; 1 delegated task(s) revoked"),
        "{done}"
    );
    let inspected = ok(
        &run(&["token", "inspect", child]),
        "token inspect after the cascade",
    );
    assert!(inspected.contains("status:    INACTIVE"), "{inspected}");
    let tree = ok(&run(&["task", "show", root]), "task show");
    assert!(
        tree.contains("[completed]") && tree.contains("worker [revoked]"),
        "{tree}"
    );
    // The child's own token can no longer end its task.
    let o = run(&[
        "task",
        "complete",
        "--task-token",
        child,
        &task_id_of(child),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("revoked"),
        "{}",
        stderr(&o)
    );

    ok(&run(&["keys", "rotate"]), "keys rotate");
    let inspected = ok(
        &run(&["token", "inspect", parent]),
        "token inspect after rotation",
    );
    assert!(
        inspected.contains("signature: valid"),
        "the old key stopped verifying: {inspected}"
    );
    let list: serde_json::Value =
        serde_json::from_str(&ok(&run(&["task", "list", "--json"]), "task list")).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    drop(server);
    let verified = ok(&backend.run(&["audit", "verify"]), "audit verify");
    assert!(verified.contains("audit log OK"), "{verified}");
    audit_trace(&backend, root, child);
}

/// The tree's decision path from the store's log alone: the root task with
/// its decision and outcome, the delegated child revoked with it; the same
/// tree from the child's credential; a target the log lacks is one line.
fn audit_trace(backend: &Backend, root: &str, child_token: &str) {
    let trace = |target: &str| -> serde_json::Value {
        serde_json::from_str(&ok(
            &backend.run(&["audit", "trace", target, "--json"]),
            "audit trace",
        ))
        .unwrap()
    };
    let t = trace(root);
    assert_eq!(
        t["target"],
        serde_json::json!({ "kind": "task", "id": root })
    );
    assert_eq!(t["root"], root);
    let tasks = t["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{t}");
    assert_eq!(tasks[0]["purpose"], "buy laptops");
    assert_eq!(tasks[0]["ended"]["status"], "completed", "{t}");
    let events = tasks[0]["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "decision" && e["verdict"] == "allow"),
        "{t}"
    );
    let po = events
        .iter()
        .filter(|e| e["type"] == "outcome" && e["idempotency_key"] == "po-77")
        .map(|e| e["classification"].as_str().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(po, ["counted", "duplicate"], "{t}");
    let child = &tasks[1];
    assert_eq!(child["parent"], root);
    assert_eq!(child["agent_spiffe"], "spiffe://acme.example/agent/worker");
    assert_eq!(
        child["delegator"],
        "spiffe://acme.example/agent/orchestrator"
    );
    assert_eq!(child["ended"]["status"], "revoked", "{t}");
    assert_eq!(child["ended"]["cascade_from"], root, "{t}");
    for leaf in [&tasks[0]["leaf"], &child["leaf"], &events[0]["leaf"]] {
        assert!(leaf.as_u64().unwrap() < t["log_size"].as_u64().unwrap());
    }

    let by_child = trace(&claim_of(child_token, "jti"));
    assert_eq!(by_child["target"]["kind"], "jti");
    assert_eq!(by_child["tasks"], t["tasks"]);

    let text = ok(
        &backend.run(&["audit", "trace", root]),
        "audit trace (text)",
    );
    assert!(
        text.contains("initiated by Alice [human ")
            && text.contains("├─ subtask ")
            && text.contains("outcome counted po.created po-77"),
        "{text}"
    );

    let o = backend.run(&["audit", "trace", "nonsense"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.lines().count() == 1
            && err
                .starts_with("error: no task, decision, outcome or credential (jti) \"nonsense\""),
        "{err}"
    );
}

/// Workflow, decision, outcome with its retry, the report in every format,
/// and an evidence pack verified offline (and refused once tampered).
fn return_on_ai(
    run: &dyn Fn(&[&str]) -> std::process::Output,
    backend: &Backend,
    alice: &str,
    task_token: &str,
) {
    let policy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policy/examples/default.cedar"
    );
    ok(&run(&["policy", "push", policy]), "policy push");
    ok(
        &run(&[
            "workflow",
            "register",
            "--name",
            "procurement",
            "--description",
            "one purchase order placed",
            "--owner",
            alice,
            "--currency",
            "EUR",
            "--baseline-cost",
            "30",
            "--baseline-minutes",
            "20",
            "--value-model",
            "per-transaction=50",
        ]),
        "workflow register",
    );
    let decided = ok(
        &run(&[
            "decide",
            "--task-token",
            task_token,
            "--action",
            "procurement.read",
            "--resource",
            "erp:suppliers/1",
            "--risk",
            "10",
        ]),
        "decide",
    );
    assert!(decided.starts_with("allow"), "{decided}");
    let report = [
        "outcome",
        "report",
        "--task-token",
        task_token,
        "--workflow",
        "procurement",
        "--type",
        "po.created",
        "--key",
        "po-77",
        "--cost",
        "0.50",
        "--currency",
        "EUR",
        "--tokens",
        "1000",
    ];
    let first = ok(&run(&report), "outcome report");
    assert!(first.starts_with("counted"), "{first}");
    let retry = ok(&run(&report), "outcome report (retry)");
    assert!(retry.contains("recorded as duplicate"), "{retry}");
    // A value without its currency: one line, before any request.
    let o = run(&[
        "outcome",
        "report",
        "--task-token",
        task_token,
        "--workflow",
        "procurement",
        "--type",
        "po.created",
        "--key",
        "po-78",
        "--cost",
        "1",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--currency"), "{}", stderr(&o));

    let today =
        mandate_core::time::Timestamp::from_offset(time::OffsetDateTime::now_utc()).rfc3339();
    let today = &today[..10];
    let period = ["--workflow", "procurement", "--from", today, "--to", today];
    let mut roai = vec!["report", "roai", "--json"];
    roai.extend_from_slice(&period);
    let r: serde_json::Value = serde_json::from_str(&ok(&run(&roai), "report roai")).unwrap();
    assert_eq!(r["current"]["totals"]["counted"], 1, "{r}");
    assert_eq!(r["current"]["totals"]["exceptions"]["duplicate"], 1, "{r}");
    let mut csv = vec!["report", "roai", "--csv"];
    csv.extend_from_slice(&period);
    let csv = ok(&run(&csv), "report roai --csv");
    assert!(csv.starts_with("section,"), "{csv}");
    let html = backend.dir.path().join("roai.html");
    let mut h = vec!["report", "roai", "--html", html.to_str().unwrap()];
    h.extend_from_slice(&period);
    ok(&run(&h), "report roai --html");
    assert!(std::fs::read_to_string(&html).unwrap().contains("<svg"));

    let pack = backend.dir.path().join("pack.zip");
    let mut export = vec!["evidence", "export", "-o", pack.to_str().unwrap()];
    export.extend_from_slice(&period);
    ok(&run(&export), "evidence export");
    let vkey = ok(&backend.run(&["audit", "vkey"]), "audit vkey");
    let vkey = vkey.lines().next().unwrap();
    let verified = ok(
        &mandate(&["evidence", "verify", pack.to_str().unwrap(), "--vkey", vkey]),
        "evidence verify",
    );
    assert!(verified.trim_end().ends_with("PASS"), "{verified}");
    let mut bytes = std::fs::read(&pack).unwrap();
    let last = bytes.len() - 30;
    bytes[last] ^= 1;
    std::fs::write(&pack, bytes).unwrap();
    let o = mandate(&["evidence", "verify", pack.to_str().unwrap(), "--vkey", vkey]);
    assert!(!o.status.success(), "a tampered pack passed");
    assert!(stderr(&o).starts_with("error: FAIL"), "{}", stderr(&o));
}

fn task_id_of(token: &str) -> String {
    claim_of(token, "task_id")
}

fn claim_of(token: &str, claim: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims[claim].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_flow_sqlite() {
    task_flow(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_flow_postgres() {
    let db = PgDatabase::create();
    task_flow(Backend::postgres(&db)).await;
}
