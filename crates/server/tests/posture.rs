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
    let root = f.alice_root(details("procurement.read", "erp:*")).await;
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
    // Plain deactivation refuses while they own agents, and changes nothing.
    let path = format!("/v1/humans/{}/deactivate", f.mallory);
    let (st, b) = f.s.post(&path, json!({})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("lone-agent"), "{b}");
    assert!(subjects(&posture(&f, "").await, "orphaned_agent").is_empty());
    // The emergency path orphans them.
    let (st, b) = f.s.post(&format!("{path}?force=true"), json!({})).await;
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

/// A request under a human's ID token instead of the admin token.
async fn as_human(
    f: &Fixture,
    who: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req =
        f.s.http
            .request(method, format!("{}{path}", f.s.base))
            .bearer_auth(f.id_token(who));
    if let Some(b) = body {
        req = req.json(&b);
    }
    read(req.send().await.unwrap()).await
}

async fn an_owner_reviews_ceilings_and_the_undecided_escalate(t: TestStore) {
    let f = Fixture::new(t).await;
    assert_eq!(
        f.s.post("/v1/policies", json!({ "text": POLICY })).await.0,
        StatusCode::CREATED
    );
    let details = json!([{ "type": "mandate_task", "purpose": "p", "actions": ["procurement.read"], "resources": ["erp:*"] }]);
    let root = f.alice_root(details).await;
    let token = token_of(&root);
    assert_eq!(
        f.verdict(&token, "procurement.read", "erp:suppliers/1")
            .await,
        "allow"
    );

    // Bad starts: one clear problem each, nothing opened.
    for (body, status) in [
        (json!({ "owner": "alice" }), StatusCode::NOT_FOUND),
        (
            json!({ "owner": f.alice, "deadline_days": 0 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "owner": f.alice, "deadline": 3 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({ "owner": f.mallory }), StatusCode::CONFLICT),
    ] {
        let (st, b) = f.s.post("/v1/reviews", body.clone()).await;
        assert_eq!(st, status, "{body}: {b}");
        assert!(b["detail"].as_str().is_some_and(|d| !d.is_empty()), "{b}");
    }
    let (st, r) = f.s.post("/v1/reviews", json!({ "owner": f.alice })).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(r["status"], "open");
    let path = format!("/v1/reviews/{}", r["id"].as_str().unwrap());
    let orch = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "orchestrator")
        .unwrap()
        .clone();
    assert_eq!(
        orch["proposed"],
        json!([{ "action": "procurement.*", "resource": "erp:*" }])
    );
    assert_eq!(
        orch["unused"],
        json!([{ "action": "payments.initiate", "resource": "bank:acme/*" }])
    );

    // Who may read and decide.
    assert_eq!(
        as_human(&f, "alice", reqwest::Method::GET, &path, None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        as_human(&f, "bob", reqwest::Method::GET, &path, None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (st, mine) = as_human(&f, "bob", reqwest::Method::GET, "/v1/reviews", None).await;
    assert_eq!((st, mine), (StatusCode::OK, json!([])));
    let decisions = format!("{path}/decisions");
    let keep = json!({ "agent": "worker", "decision": "keep", "note": "still needed" });
    assert_eq!(
        f.s.post(&decisions, keep.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        as_human(
            &f,
            "bob",
            reqwest::Method::POST,
            &decisions,
            Some(keep.clone())
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );

    // Widening is refused; the proposal is accepted and takes effect.
    let wider = json!({ "agent": "orchestrator", "decision": "reduce", "note": "n",
        "ceiling": [{ "action": "*", "resource": "*" }] });
    let (st, b) = as_human(&f, "alice", reqwest::Method::POST, &decisions, Some(wider)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["detail"].as_str().unwrap().contains("only narrows"),
        "{b}"
    );
    let reduce = json!({ "agent": "orchestrator", "decision": "reduce", "note": "payments never used",
        "ceiling": orch["proposed"] });
    let (st, b) = as_human(
        &f,
        "alice",
        reqwest::Method::POST,
        &decisions,
        Some(reduce.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (_, agent) = f.s.get("/v1/agents/orchestrator").await;
    assert_eq!(agent["ceiling"], orch["proposed"]);
    // Its task lies inside the new ceiling: it still acts.
    assert_eq!(
        f.verdict(&token, "procurement.read", "erp:suppliers/1")
            .await,
        "allow"
    );
    let (st, b) = as_human(&f, "alice", reqwest::Method::POST, &decisions, Some(reduce)).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    let retire = json!({ "agent": "worker", "decision": "retire", "note": "replaced" });
    assert_eq!(
        as_human(&f, "alice", reqwest::Method::POST, &decisions, Some(retire))
            .await
            .0,
        StatusCode::OK
    );
    let (_, worker) = f.s.get("/v1/agents/worker").await;
    assert_eq!(worker["status"], "retired");
    let (st, b) = as_human(
        &f,
        "alice",
        reqwest::Method::POST,
        &decisions,
        Some(json!({ "agent": "second", "decision": "maybe", "note": "n" })),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");

    // "second" is still undecided: a finding only once the deadline passed.
    assert!(subjects(&posture(&f, "").await, "review_overdue").is_empty());
    let p = posture(&f, &later(15)).await;
    assert_eq!(subjects(&p, "review_overdue"), ["second"], "{p}");
    let (_, list) = f.s.get("/v1/reviews?incomplete=true").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

mandate_store::backend_tests!(
    findings_come_from_real_operations_and_go_when_fixed,
    offboarding_leaves_no_orphan_and_cuts_a_retired_agent_off,
    an_owner_reviews_ceilings_and_the_undecided_escalate,
);
