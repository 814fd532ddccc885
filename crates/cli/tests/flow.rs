//! The credential flow with the real binary, as the README tells a user to
//! run it: dev issuer, keys, `task issue`, `delegate`, `token inspect`,
//! `task show`, `task complete` with its cascade, `keys rotate`; on SQLite
//! and on PostgreSQL (which needs `MANDATE_TEST_DATABASE_URL`, never skips).

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
}

fn task_id_of(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["task_id"].as_str().unwrap().to_owned()
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
