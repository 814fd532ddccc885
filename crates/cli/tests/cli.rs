//! The `mandate` binary as a user runs it.

use std::process::{Command, Output};

fn mandate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(args)
        .env_remove("MANDATE_MASTER_KEY")
        .env_remove("MANDATE_DATABASE_URL")
        .env("MANDATE_SERVER", "http://127.0.0.1:9")
        .output()
        .expect("run mandate")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failure is exactly one line on stderr, starting with `error:`, and a non-zero exit.
fn assert_one_line_error(o: &Output, needle: &str) {
    assert!(
        !o.status.success(),
        "expected failure, got success: {}",
        stdout(o)
    );
    let err = stderr(o);
    let lines: Vec<_> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{err}"
    );
}

#[test]
fn demo_runs_end_to_end() {
    let o = mandate(&["demo"]);
    assert!(
        o.status.success(),
        "demo failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let out = stdout(&o);
    for needle in [
        "Inventory",
        "spiffe://acme.example/agent/orchestrator",
        "ORPHANED",
        "refused",
        "chain in the purchase token: human",
        "refused payments, outside the parent task",
        "completed; cascaded to 2 subtask(s)",
        "purchase token: active=false",
        "the purchase agent's token is refused",
        "refused a policy with a typo",
        "allow  procurement.read on erp:invoices/inv-2291",
        "outside_task_scope",
        "needs_approval  payments.initiate on bank:acme/ops",
        "Alice (the initiator) cannot approve",
        "Carol approved",
        "approval_granted",
        "(break-glass ",
        "1 break-glass grant(s) awaiting review",
        "decision.made",
        "retry of inv-3002: answered with the first report",
        "after_revocation",
        "out_of_scope_actions",
        "phantom",
        "Counted transactions",
        "PASS",
        "one byte changed at offset",
        "tools/list as the agent sees it: [\"lookup_supplier\"]",
        "tools/call lookup_supplier sup-17 -> allowed, forwarded: supplier sup-17",
        "tools/call delete_supplier sup-17 (hidden, called anyway) -> JSON-RPC error -32003",
        "GET /billing/invoices/inv-2291 -> 200 OK",
        "\"debug_key\":\"[redacted by mandate]\"",
        "delegated by",
        "Alice Martin (Head of Procurement) (6), orchestrator (1)",
        "procurement.read on erp:suppliers/sup-17 (1)",
        "Agent without an accountable owner",
        "NHI1:2025 Improper Offboarding",
        "Entitlements beyond actual use",
        "Break-glass grant not reviewed",
        "Dormant agent",
        "Attestation key past its rotation age",
        "Gateway secret not rotated",
        "Task left open past its expiry",
        "orchestrator reduced, research-agent kept",
        "reduce: cut to what it used",
        "Access review not decided by its deadline",
        "$ mandate audit trace ",
        "\"Pay the laptop supplier's invoice\"  [#",
        "initiated by Alice Martin (Head of Procurement) [human ",
        "├─ decision deny procurement.po.create on erp:purchase-orders/po-9",
        "approval requested for payments.initiate on bank:acme/ops by policy large-payment",
        "├─ approval granted by Carol Diaz (Finance Controller)",
        "break-glass granted by admin ",
        "└─ open: no ending in the log",
        "audit log OK",
    ] {
        assert!(out.contains(needle), "demo output lacks {needle:?}:\n{out}");
    }
    // The demo ends with the trace and then the verified log.
    assert!(!stderr(&o).contains("WARN"), "{}", stderr(&o));
    let trace = out.find("$ mandate audit trace ").unwrap();
    assert!(trace < out.find("audit log OK").unwrap(), "{out}");
    assert!(
        out.trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("audit log OK"),
        "{out}"
    );
}

#[test]
fn export_verifies_offline_and_tampering_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let o = mandate(&["demo", "--data-dir", data]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = mandate(&["audit", "verify", "--data-dir", data]);
    assert!(
        o.status.success() && stdout(&o).contains("audit log OK"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );

    let vkey = stdout(&mandate(&["audit", "vkey", "--data-dir", data]))
        .trim()
        .to_owned();
    assert!(vkey.starts_with("acme.example/mandate/audit+"), "{vkey}");
    let file = dir.path().join("log.jsonl");
    let file = file.to_str().unwrap();
    let o = mandate(&["audit", "export", "--data-dir", data, "--output", file]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = mandate(&["audit", "verify", "--file", file, "--vkey", &vkey]);
    assert!(
        o.status.success() && stdout(&o).contains("audit log OK"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );

    // An auditor's copy with one field changed.
    let text = std::fs::read_to_string(file).unwrap();
    std::fs::write(file, text.replacen("research-agent", "rogue-agent", 1)).unwrap();
    let o = mandate(&["audit", "verify", "--file", file, "--vkey", &vkey]);
    assert_one_line_error(&o, "verification FAILED: entry at position");

    // A key the log was not signed with.
    let other = "acme.example/mandate/audit+00000000+AQ".to_owned() + &"A".repeat(42) + "=";
    let o = mandate(&["audit", "verify", "--data-dir", data, "--vkey", &other]);
    assert!(!o.status.success());
}

#[test]
fn usage_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    assert_one_line_error(
        &mandate(&["init", "--data-dir", data, "--trust-domain", "Not A Domain"]),
        "trust domain",
    );
    let o = mandate(&["init", "--data-dir", data, "--trust-domain", "acme.example"]);
    assert!(
        o.status.success() && stdout(&o).contains("mandate_admin_"),
        "{}",
        stderr(&o)
    );
    assert_one_line_error(
        &mandate(&["init", "--data-dir", data, "--trust-domain", "acme.example"]),
        "already initialised",
    );
    assert_one_line_error(
        &mandate(&["agent", "list", "--token", "x"]),
        "cannot reach the Mandate server",
    );
    assert_one_line_error(
        &mandate(&[
            "agent",
            "register",
            "--name",
            "a",
            "--owner",
            "0190c6a2-0000-7000-8000-000000000000",
            "--description",
            "d",
            "--grant",
            "nonsense",
        ]),
        "ACTION=RESOURCE",
    );
    assert_one_line_error(
        &mandate(&["audit", "verify", "--file", "/nonexistent"]),
        "--vkey",
    );
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\npublic_url = \"x\"\n").unwrap();
    let config = config.to_str().unwrap();
    assert_one_line_error(
        &mandate(&[
            "gateway",
            "--data-dir",
            data,
            "--config",
            "/nonexistent.toml",
        ]),
        "cannot read /nonexistent.toml",
    );
    assert_one_line_error(
        &mandate(&["gateway", "--data-dir", data, "--config", config]),
        "gateway config: missing field `authorization_server`",
    );
    assert_one_line_error(
        &mandate(&["secret", "set", "Bad Name", "--token", "x"]),
        "secret name",
    );
    assert_one_line_error(
        &mandate(&[
            "secret",
            "set",
            "billing-key",
            "--token",
            "x",
            "--from-env",
            "MANDATE_NO_SUCH_VAR",
        ]),
        "MANDATE_NO_SUCH_VAR is not set",
    );
    assert_one_line_error(
        &mandate(&[
            "review",
            "decide",
            "r-1",
            "--agent",
            "a",
            "--reduce",
            "--grant",
            "nonsense",
            "--note",
            "n",
            "--id-token",
            "t",
        ]),
        "ACTION=RESOURCE",
    );
}
