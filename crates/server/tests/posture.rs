//! Posture findings from real operations on both backends, with the clock
//! injected through `at`: each kind appears when its condition holds and
//! not when it does not.

mod common;

use common::fixture::*;
use common::read;
use mandate_store::testing::TestStore;
use reqwest::StatusCode;
use serde_json::{Value, json};

const POLICY: &str = include_str!("../../policy/examples/default.cedar");
const DAY: i64 = 86_400_000;

async fn posture(f: &Fixture, query: &str) -> Value {
    let (st, b) = f.s.get(&format!("/v1/posture?{query}")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b
}

fn subjects(p: &Value, kind: &str) -> Vec<String> {
    p["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind)
        .map(|f| f["subject"].as_str().unwrap().to_owned())
        .collect()
}

fn later(days: i64) -> String {
    let t = mandate_core::time::Timestamp::from_millis(now().as_millis() + days * DAY);
    format!("at={}", t.rfc3339())
}

async fn findings_come_from_real_operations_and_go_when_fixed(t: TestStore) {
    let f = Fixture::new(t).await;
    assert_eq!(
        f.s.post("/v1/policies", json!({ "text": POLICY })).await.0,
        StatusCode::CREATED
    );
    let details = |a: &str, r: &str| json!([{ "type": "mandate_task", "purpose": "posture", "actions": [a], "resources": [r] }]);
    let (st, root) = f
        .root(
            &f.id_token("alice"),
            &f.agent("orchestrator", ORCH),
            details("procurement.read", "erp:*"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{root}");
    let d = f
        .decide(
            &token_of(&root),
            "procurement.read",
            "erp:suppliers/1",
            json!({}),
        )
        .await;
    assert_eq!(d["decision"], "allow", "{d}");
    let (st, child) = f
        .child(
            &token_of(&root),
            &f.agent("worker", WORKER),
            details("procurement.read", "erp:suppliers/*"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{child}");
    let (st, grandchild) = f
        .child(
            &token_of(&child),
            &f.agent("second", SECOND),
            details("procurement.read", "erp:suppliers/*"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{grandchild}");
    let (st, own) = f
        .child(
            &token_of(&root),
            &f.agent("orchestrator", ORCH),
            details("procurement.read", "erp:suppliers/*"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{own}");
    let (st, grant) =
        f.s.post(
            "/v1/breakglass",
            json!({ "agent": "worker", "ttl_s": 600, "reason": "ERP outage INC-9",
            "scope": [{ "action": "procurement.read", "resource": "erp:*" }] }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{grant}");
    let res =
        f.s.req(reqwest::Method::PUT, "/v1/secrets/billing-key")
            .json(&json!({ "value": "sk_1" }))
            .send()
            .await
            .unwrap();
    assert_eq!(read(res).await.0, StatusCode::OK);
    let (st, lone) = f
        .s
        .post("/v1/agents", json!({ "name": "lone-agent", "kind": "agent", "owner": f.mallory,
            "description": "d", "ceiling": [{ "action": "x.read", "resource": "x:*" }], "keys": [] }))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{lone}");
    let (st, b) =
        f.s.post(&format!("/v1/humans/{}/deactivate", f.mallory), json!({}))
            .await;
    assert_eq!(st, StatusCode::OK, "{b}");

    let p = posture(&f, "").await;
    assert_eq!(subjects(&p, "orphaned_agent"), ["lone-agent"]);
    // The orchestrator used procurement on the ERP, never its payments grant.
    let over: Vec<&Value> = p["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["kind"] == "over_privileged" && x["subject"] == "orchestrator")
        .collect();
    assert_eq!(over.len(), 1, "{p}");
    assert_eq!(
        over[0]["evidence"]["unused"],
        json!(["payments.initiate on bank:acme/*"])
    );
    assert_eq!(over[0]["owasp"], "NHI5:2025 Overprivileged NHI");
    assert_eq!(over[0]["nist"], "PR.AA-05");
    assert_eq!(
        subjects(&p, "unreviewed_breakglass"),
        [grant["id"].as_str().unwrap()]
    );
    assert_eq!(subjects(&p, "delegation_cycle"), [task_of(&own)]);
    for absent in [
        "dormant_agent",
        "stale_key",
        "stale_secret",
        "task_open_past_expiry",
        "deep_delegation",
        "wide_delegation",
    ] {
        assert!(
            subjects(&p, absent).is_empty(),
            "{absent} without its condition: {p}"
        );
    }

    // Tighter thresholds: the two-hop chain is deep, the root fans out.
    let p = posture(&f, "max_depth=1&max_width=1").await;
    assert_eq!(subjects(&p, "deep_delegation"), [task_of(&grandchild)]);
    assert_eq!(subjects(&p, "wide_delegation"), [task_of(&root)]);

    // A hundred days on: idle agents, old keys and secret, tasks never ended.
    let p = posture(&f, &later(100)).await;
    let dormant = subjects(&p, "dormant_agent");
    assert!(
        dormant.contains(&"orchestrator".to_owned()) && dormant.contains(&"worker".to_owned()),
        "{p}"
    );
    assert!(subjects(&p, "stale_key").contains(&"orchestrator".to_owned()));
    assert_eq!(subjects(&p, "stale_secret"), ["billing-key"]);
    assert_eq!(subjects(&p, "task_open_past_expiry").len(), 4);

    // Fixing the facts removes the findings.
    let review = format!("/v1/breakglass/{}/review", grant["id"].as_str().unwrap());
    let res =
        f.s.http
            .post(format!("{}{review}", f.s.base))
            .bearer_auth(f.id_token("bob"))
            .json(&json!({ "note": "checked" }))
            .send()
            .await
            .unwrap();
    assert_eq!(read(res).await.0, StatusCode::OK);
    let res =
        f.s.req(reqwest::Method::PUT, "/v1/secrets/billing-key")
            .json(&json!({ "value": "sk_2" }))
            .send()
            .await
            .unwrap();
    assert_eq!(read(res).await.0, StatusCode::OK);
    let p = posture(&f, "").await;
    assert!(subjects(&p, "unreviewed_breakglass").is_empty());
    let (st, b) = f.s.get("/v1/posture?at=yesterday").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
}

async fn offboarding_leaves_no_orphan_and_cuts_a_retired_agent_off(t: TestStore) {
    let f = Fixture::new(t).await;
    assert_eq!(
        f.s.post("/v1/policies", json!({ "text": POLICY })).await.0,
        StatusCode::CREATED
    );
    let details = json!([{ "type": "mandate_task", "purpose": "p", "actions": ["procurement.read"], "resources": ["erp:*"] }]);
    let (st, b) = f
        .root(
            &f.id_token("alice"),
            &f.agent("worker", WORKER),
            details,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let token = token_of(&b);
    assert_eq!(
        f.verdict(&token, "procurement.read", "erp:a").await,
        "allow"
    );

    let path = format!("/v1/humans/{}/offboard", f.alice);
    let (st, b) =
        f.s.post(&path, json!({ "agents": { "orchestrator": "retire" } }))
            .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("missing"), "{b}");
    let (st, b) = f
        .s
        .post(&path, json!({ "agents": {
            "orchestrator": { "transfer_to": f.bob }, "worker": "retire", "second": { "transfer_to": f.bob } } }))
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "deactivated");

    let d = f
        .decide(&token, "procurement.read", "erp:a", json!({}))
        .await;
    assert_eq!(
        d["decision"], "deny",
        "the retired agent's token still acts: {d}"
    );
    let (_, worker) = f.s.get("/v1/agents/worker").await;
    assert_eq!(
        (
            worker["status"].as_str(),
            worker["keys"].as_array().map(Vec::len)
        ),
        (Some("retired"), Some(0))
    );
    let p = posture(&f, "").await;
    assert!(subjects(&p, "orphaned_agent").is_empty(), "{p}");
}

mandate_store::backend_tests!(
    findings_come_from_real_operations_and_go_when_fixed,
    offboarding_leaves_no_orphan_and_cuts_a_retired_agent_off,
);
