//! Outcomes and Return on AI over HTTP, on both backends: every exception
//! kind produced by a real flow (tokens exchanged, decisions made, tasks
//! revoked, owners deactivated) and excluded from the count; one key raced
//! from many connections counted once; reports and their access rules.

use mandate_store::testing::TestStore;
use reqwest::StatusCode;
use serde_json::{Value, json};

mod common;
use common::fixture::*;
use common::*;

const POLICY: &str = include_str!("../../policy/examples/default.cedar");
const HELPER: u8 = 14;

async fn setup(t: TestStore) -> Fixture {
    let f = Fixture::new(t).await;
    let (st, b) = f.s.post("/v1/policies", json!({ "text": POLICY })).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let (st, b) = f.s.post("/v1/workflows", workflow(&f.alice)).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    f
}

fn workflow(owner: &str) -> Value {
    json!({
        "name": "procurement", "description": "one purchase order placed", "owner": owner,
        "currency": "EUR", "baseline_cost": "30.00", "baseline_minutes": 20,
        "value_model": { "kind": "per_transaction", "amount": "50" }, "token_price": "2.00",
    })
}

fn claim(key: &str) -> Value {
    json!({
        "workflow": "procurement", "outcome_type": "po.created", "idempotency_key": key,
        "cost": { "model_tokens": 500000, "money": { "amount": "0.25", "currency": "EUR" } },
        "external_ref": format!("PO-{key}"),
    })
}

async fn report(f: &Fixture, token: &str, body: Value) -> (StatusCode, Value) {
    let res =
        f.s.http
            .post(format!("{}/v1/outcomes", f.s.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
    read(res).await
}

async fn task(f: &Fixture) -> (String, String) {
    let b = f.procurement_root().await;
    (token_of(&b), task_of(&b))
}

fn class(b: &Value) -> &str {
    b["outcome"]["classification"].as_str().unwrap()
}

fn period() -> String {
    let now = now().as_millis();
    let t = |ms: i64| mandate_core::time::Timestamp::from_millis(ms).rfc3339();
    format!("from={}&to={}", t(now - 3_600_000), t(now + 3_600_000))
}

async fn every_exception_kind_comes_from_a_real_flow(t: TestStore) {
    let f = setup(t).await;

    // Counted: allowed work behind the claim.
    let (tok, _) = task(&f).await;
    assert_eq!(
        f.verdict(&tok, "procurement.read", "erp:suppliers/1").await,
        "allow"
    );
    let (st, counted) = report(&f, &tok, claim("po-1")).await;
    assert_eq!(st, StatusCode::CREATED, "{counted}");
    assert_eq!(class(&counted), "counted", "{counted}");
    let o = &counted["outcome"];
    assert_eq!(o["value"], "50.00");
    // 0.25 reported + 500k tokens at 2.00 per million.
    assert_eq!(o["cost"], "1.25");
    assert_eq!(o["initiator"], f.alice.as_str());
    assert_eq!(o["owner"], f.alice.as_str());
    assert_eq!(o["chain"][1], "spiffe://acme.example/agent/orchestrator");

    // Duplicate: the retry gets the first answer; it is recorded, not counted.
    let (st, retry) = report(&f, &tok, claim("po-1")).await;
    assert_eq!(st, StatusCode::OK, "{retry}");
    assert_eq!(retry["outcome"], counted["outcome"]);
    let dup_id = retry["duplicate_id"].as_str().unwrap();
    let (st, dup) = f.s.get(&format!("/v1/outcomes/{dup_id}")).await;
    assert_eq!(st, StatusCode::OK, "{dup}");
    assert_eq!(dup["classification"], "duplicate");
    assert_eq!(dup["duplicate_of"], counted["outcome"]["id"]);

    // Phantom: a task with no allowed action claims work.
    let (idle, _) = task(&f).await;
    let (_, phantom) = report(&f, &idle, claim("po-2")).await;
    assert_eq!(class(&phantom), "phantom", "{phantom}");

    // Out of scope: a valid token tried something outside its task.
    let (wide, _) = task(&f).await;
    assert_eq!(
        f.verdict(&wide, "procurement.read", "erp:suppliers/1")
            .await,
        "allow"
    );
    assert_eq!(
        f.verdict(&wide, "payments.initiate", "bank:acme/1").await,
        "deny"
    );
    let (_, tainted) = report(&f, &wide, claim("po-3")).await;
    assert_eq!(class(&tainted), "out_of_scope_actions", "{tainted}");

    // After revocation: the report is kept and classified, not refused.
    let (late, late_task) = task(&f).await;
    assert_eq!(
        f.verdict(&late, "procurement.read", "erp:suppliers/1")
            .await,
        "allow"
    );
    let (st, b) = f.end(&late_task, "revoke", &f.s.token, None).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (st, revoked) = report(&f, &late, claim("po-4")).await;
    assert_eq!(st, StatusCode::CREATED, "{revoked}");
    assert_eq!(class(&revoked), "after_revocation", "{revoked}");

    // Unattributed: the agent's owner was deactivated before the report.
    let (st, a) =
        f.s.post(
            "/v1/agents",
            json!({ "name": "helper", "kind": "agent", "owner": f.mallory, "description": "helper",
                    "ceiling": [{ "action": "procurement.*", "resource": "erp:*" }],
                    "keys": [jwk(HELPER)], "tags": ["finance"] }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    let (st, b) = f
        .root(
            &f.id_token("alice"),
            &f.agent("helper", HELPER),
            procurement(),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let helper = token_of(&b);
    assert_eq!(
        f.verdict(&helper, "procurement.read", "erp:suppliers/1")
            .await,
        "allow"
    );
    let (st, b) =
        f.s.post(
            &format!("/v1/humans/{}/deactivate?force=true", f.mallory),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (_, orphan) = report(&f, &helper, claim("po-5")).await;
    assert_eq!(class(&orphan), "unattributed", "{orphan}");
    assert!(
        orphan["outcome"]["explanation"]
            .as_str()
            .unwrap()
            .contains("helper"),
        "{orphan}"
    );

    // The report counts one transaction and lists every exception by kind.
    let (st, r) =
        f.s.get(&format!(
            "/v1/reports/roai?workflow=procurement&{}",
            period()
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let totals = &r["current"]["totals"];
    assert_eq!(totals["reported"], 6, "{r}");
    assert_eq!(totals["counted"], 1, "{r}");
    for kind in [
        "duplicate",
        "phantom",
        "out_of_scope_actions",
        "after_revocation",
        "unattributed",
    ] {
        assert_eq!(totals["exceptions"][kind], 1, "{kind}: {r}");
    }
    assert_eq!(totals["value"], "50.00");
    // Every report but the duplicate cost 1.25.
    assert_eq!(totals["cost"], "6.25");
    assert_eq!(totals["human_baseline_cost"], "30.00");
    assert_eq!(r["labels"][f.alice.as_str()], "alice");

    // The evidence pack verifies offline against the pinned log key, and
    // its totals are the report's.
    let res =
        f.s.req(
            reqwest::Method::GET,
            &format!("/v1/evidence?workflow=procurement&{}", period()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/zip");
    let zip = res.bytes().await.unwrap().to_vec();
    let key = f.s.state.ledger.verifier();
    let v = mandate_evidence::verify(&zip, Some(&key));
    assert!(v.passed(), "{:#?}", v.checks);
    let summary = v.summary.expect("a summary");
    assert_eq!(summary.transactions, 6);
    assert_eq!(summary.counted, 1);
    let mut bad = zip.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    assert!(!mandate_evidence::verify(&bad, Some(&key)).passed());
}

async fn a_key_raced_from_many_connections_counts_once(t: TestStore) {
    let f = setup(t).await;
    let (tok, _) = task(&f).await;
    assert_eq!(
        f.verdict(&tok, "procurement.read", "erp:suppliers/1").await,
        "allow"
    );
    let url = format!("{}/v1/outcomes", f.s.base);
    let mut racers = Vec::new();
    for _ in 0..10 {
        // A client each: separate connections, as retries from a flaky network.
        let http = reqwest::Client::new();
        let (url, tok) = (url.clone(), tok.clone());
        racers.push(tokio::spawn(async move {
            let res = http
                .post(url)
                .bearer_auth(tok)
                .json(&claim("race"))
                .send()
                .await
                .unwrap();
            read(res).await
        }));
    }
    let mut created = 0;
    let mut ids = std::collections::BTreeSet::new();
    for r in racers {
        let (st, b) = r.await.unwrap();
        match st {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => assert!(b["duplicate_id"].is_string(), "{b}"),
            other => panic!("{other}: {b}"),
        }
        ids.insert(b["outcome"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(created, 1, "exactly one report is first");
    assert_eq!(ids.len(), 1, "every racer got the same first answer");
    let (_, r) =
        f.s.get(&format!(
            "/v1/reports/roai?workflow=procurement&{}",
            period()
        ))
        .await;
    assert_eq!(r["current"]["totals"]["counted"], 1, "{r}");
    assert_eq!(r["current"]["totals"]["exceptions"]["duplicate"], 9, "{r}");
}

async fn bad_reports_are_refused_with_their_reason_and_leave_nothing(t: TestStore) {
    let f = setup(t).await;
    let (tok, _) = task(&f).await;
    assert_eq!(
        f.verdict(&tok, "procurement.read", "erp:suppliers/1").await,
        "allow"
    );
    let (before, _) = f.s.footprint().await;

    let (st, b) = report(&f, "not-a-token", claim("k")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b}");
    // An admin token is not a task credential.
    let (st, _) = report(&f, &f.s.token.clone(), claim("k")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let mut unknown = claim("k");
    unknown["workflow"] = json!("payroll");
    let (st, b) = report(&f, &tok, unknown).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("mandate workflow register"),
        "{b}"
    );
    let mut usd = claim("k");
    usd["cost"]["money"]["currency"] = json!("USD");
    let (st, b) = report(&f, &tok, usd).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("EUR"), "{b}");
    let mut negative = claim("k");
    negative["cost"]["money"]["amount"] = json!("-5.00");
    let (st, b) = report(&f, &tok, negative).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("negative"), "{b}");
    let mut forged = claim("k");
    forged["classification"] = json!("counted");
    let (st, _) = report(&f, &tok, forged).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(f.s.footprint().await.0, before, "refusals write nothing");

    // A key reused for another claim is a conflict, not a duplicate.
    let (st, _) = report(&f, &tok, claim("k")).await;
    assert_eq!(st, StatusCode::CREATED);
    let mut other = claim("k");
    other["external_ref"] = json!("PO-other");
    let (st, b) = report(&f, &tok, other).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");

    // Figures: admins, auditors and the owner; nobody else.
    let path = format!("/v1/reports/roai?workflow=procurement&{}", period());
    let get_as = |who: &'static str| {
        let req =
            f.s.http
                .get(format!("{}{path}", f.s.base))
                .bearer_auth(f.id_token(who));
        async move { read(req.send().await.unwrap()).await }
    };
    assert_eq!(get_as("alice").await.0, StatusCode::OK, "the owner reads");
    assert_eq!(get_as("mallory").await.0, StatusCode::FORBIDDEN);
    let (st, b) =
        f.s.get("/v1/reports/roai?workflow=procurement&from=yesterday&to=x")
            .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    let (st, b) =
        f.s.get(&format!("{path}&baseline_from=2026-01-01T00:00:00Z"))
            .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    // A human registers only workflows they own.
    let req =
        f.s.http
            .post(format!("{}/v1/workflows", f.s.base))
            .bearer_auth(f.id_token("mallory"))
            .json(&workflow(&f.alice));
    assert_eq!(
        read(req.send().await.unwrap()).await.0,
        StatusCode::FORBIDDEN
    );
}

mandate_store::backend_tests!(
    every_exception_kind_comes_from_a_real_flow,
    a_key_raced_from_many_connections_counts_once,
    bad_reports_are_refused_with_their_reason_and_leave_nothing,
);
