//! What a decision reads on every call and what a node may remember between
//! calls, on both backends. A node keeps only a token's verified signature
//! (by the SHA-256 of the whole token, while its key is published); the
//! credential, the task, its chain and the active policy are read with every
//! decision. Each case makes the node remember a token, then changes what
//! the memory must not hide.

use mandate_core::credential::{TaskClaims, peek_claims};
use mandate_core::time::Timestamp;
use mandate_server::access;
use mandate_store::testing::TestStore;
use reqwest::StatusCode;
use serde_json::{Value, json};

mod common;
use common::fixture::*;

const POLICY: &str = include_str!("../../policy/examples/default.cedar");
const READ: &str = "procurement.read";
const SUPPLIERS: &str = "erp:suppliers/1";

async fn with_policy(t: TestStore, text: &str) -> Fixture {
    let f = Fixture::new(t).await;
    let (st, b) = f.s.post("/v1/policies", json!({ "text": text })).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    f
}

async fn decide(f: &Fixture, token: &str, resource: &str) -> Value {
    f.decide(token, READ, resource, json!({ "risk_score": 10 }))
        .await
}

/// The worker's task under the orchestrator's `parent`.
async fn worker_under(f: &Fixture, parent: &str) -> String {
    let (st, b) = f
        .child(
            parent,
            &f.agent("worker", WORKER),
            narrower(READ, "erp:suppliers/*"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    token_of(&b)
}

// ---- cases ---------------------------------------------------------------------

async fn a_remembered_token_is_refused_as_soon_as_it_is_revoked(t: TestStore) {
    let f = with_policy(t, POLICY).await;
    let token = token_of(&f.procurement_root().await);
    // Twice: the second decision finds the signature remembered.
    for _ in 0..2 {
        assert_eq!(decide(&f, &token, SUPPLIERS).await["decision"], "allow");
    }
    assert_eq!(f.revoke(&token).await, StatusCode::OK);
    let d = decide(&f, &token, SUPPLIERS).await;
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(codes(&d), ["credential_revoked"], "{d}");

    // Ending a task refuses the remembered token of a task below it at once.
    let root = f.procurement_root().await;
    let child = worker_under(&f, &token_of(&root)).await;
    assert_eq!(decide(&f, &child, SUPPLIERS).await["decision"], "allow");
    let (st, b) = f
        .end(&task_of(&root), "complete", &token_of(&root), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let d = decide(&f, &child, SUPPLIERS).await;
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(codes(&d), ["credential_revoked"], "{d}");
}

async fn a_tampered_token_is_refused_though_the_original_is_remembered(t: TestStore) {
    let f = with_policy(t, POLICY).await;
    let good = token_of(&f.procurement_root().await);
    assert_eq!(decide(&f, &good, SUPPLIERS).await["decision"], "allow");
    access::verify_signature(&f.s.state, &good, now())
        .await
        .expect("remembered");

    // The original's signature on a payload widened by hand.
    let tampered = widened(&good);
    let parts: Vec<&str> = good.split('.').collect();
    // And the original with one more byte of signature, and with none.
    let longer = format!("{good}A");
    let unsigned = format!("{}.{}.", parts[0], parts[1]);
    for (what, token) in [
        ("tampered payload", &tampered),
        ("longer", &longer),
        ("unsigned", &unsigned),
    ] {
        assert!(
            access::verify_signature(&f.s.state, token, now())
                .await
                .is_err(),
            "{what} verified"
        );
        let d = f
            .decide(token, "payments.initiate", "bank:acme/ops", json!({}))
            .await;
        assert_eq!(d["decision"], "deny", "{what}: {d}");
        assert_eq!(codes(&d), ["invalid_token"], "{what}: {d}");
    }
    assert_eq!(decide(&f, &good, SUPPLIERS).await["decision"], "allow");
}

async fn a_remembered_signature_counts_only_while_its_key_is_published(t: TestStore) {
    let f = Fixture::new(t).await;
    let claims: TaskClaims = peek_claims(&token_of(&f.procurement_root().await)).unwrap();
    let max_ttl = f.s.state.bounds.max_ttl_ms;
    // Signed with the active key, valid longer than the key will be published
    // once retired (Mandate never signs such a token; a key set may still
    // change under one, e.g. a key withdrawn by an operator).
    let long = f.s.state.keys.signer().sign(&TaskClaims {
        exp: now().as_secs() + 3 * max_ttl / 1000,
        ..claims
    });
    access::verify_signature(&f.s.state, &long, now())
        .await
        .expect("verifies and is remembered");
    let old_kid = f.s.state.keys.signer().kid().to_owned();
    let (st, b) = f.s.post("/v1/keys/rotate", json!({})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let soon = Timestamp::from_millis(now().as_millis() + 1000);
    access::verify_signature(&f.s.state, &long, soon)
        .await
        .expect("a retired key still verifies while published");
    let later = Timestamp::from_millis(now().as_millis() + max_ttl + 1000);
    assert!(f.s.state.keys.key(&old_kid, later).is_none());
    assert!(
        access::verify_signature(&f.s.state, &long, later)
            .await
            .is_err(),
        "a remembered token outlived its key"
    );
}

/// Cedar sees the whole chain of a delegated task, read with its task: the
/// depth and every agent on it.
async fn a_delegated_task_is_decided_with_its_whole_chain(t: TestStore) {
    let f = Fixture::new(t).await;
    let (orch, worker) = (f.agent("orchestrator", ORCH), f.agent("worker", WORKER));
    let policy = format!(
        r#"@id("in-scope")
permit (principal, action, resource) when {{ context.risk_score < 90 }};

@id("one-hop")
forbid (principal, action, resource)
when {{ context.chain_depth >= 2 && context.chain.contains("{worker}") }};

@id("from-orchestrator")
forbid (principal, action, resource)
when {{ context.chain_depth == 1 && !context.chain.contains("{orch}") }};
"#,
        worker = worker.spiffe,
        orch = orch.spiffe,
    );
    let (st, b) = f.s.post("/v1/policies", json!({ "text": policy })).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let root = token_of(&f.procurement_root().await);
    let child = worker_under(&f, &root).await;
    let (st, b) = f
        .child(
            &child,
            &f.agent("second", SECOND),
            narrower(READ, "erp:suppliers/*"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let grandchild = token_of(&b);

    for (what, token, expected) in [
        ("root", &root, "allow"),
        ("child", &child, "allow"),
        ("grandchild", &grandchild, "deny"),
    ] {
        let d = decide(&f, token, SUPPLIERS).await;
        assert_eq!(d["decision"], expected, "{what}: {d}");
        if expected == "deny" {
            assert_eq!(codes(&d), ["policy_forbid"], "{what}: {d}");
            assert_eq!(d["reasons"][0]["policy_id"], "one-hop", "{what}: {d}");
        }
    }
}

mandate_store::backend_tests!(
    a_remembered_token_is_refused_as_soon_as_it_is_revoked,
    a_tampered_token_is_refused_though_the_original_is_remembered,
    a_remembered_signature_counts_only_while_its_key_is_published,
    a_delegated_task_is_decided_with_its_whole_chain,
);
