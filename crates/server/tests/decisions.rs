//! Runtime authorization over HTTP, on both backends: the decision pipeline
//! step by step, approvals, break-glass, policy versions and the AuthZEN API.
//! Each rule is attacked: a valid token outside its scope, a spent or
//! foreign approval, the initiator approving, an expired grant, an invalid
//! policy push.

use std::time::Duration;

use mandate_core::approval::{Approval, ApprovalStatus};
use mandate_core::decision::Verdict;
use mandate_core::ids::{AgentId, ApprovalId, DecisionId, TaskId};
use mandate_store::testing::TestStore;
use mandate_store::{Change, DecisionWrite};
use reqwest::StatusCode;
use serde_json::{Value, json};

mod common;
use common::fixture::*;
use common::*;

const POLICY: &str = include_str!("../../policy/examples/default.cedar");

/// A payment task for the orchestrator (tagged finance), started by `who`.
fn payment_task(max_calls: u64) -> Value {
    json!([
        { "type": "mandate_task", "purpose": "pay the laptop invoice",
          "actions": ["procurement.read"], "resources": ["erp:*"], "limits": { "max_calls": max_calls } },
        { "type": "mandate_task", "purpose": "pay the laptop invoice",
          "actions": ["payments.initiate"], "resources": ["bank:acme/*"], "limits": { "max_calls": max_calls } },
    ])
}

impl Fixture {
    async fn with_policy(t: TestStore) -> Fixture {
        let f = Fixture::new(t).await;
        let (st, b) = f.s.post("/v1/policies", json!({ "text": POLICY })).await;
        assert_eq!(st, StatusCode::CREATED, "{b}");
        f
    }

    async fn task_for(&self, who: &str, max_calls: u64) -> (String, String) {
        let (st, b) = self
            .root(
                &self.id_token(who),
                &self.agent("orchestrator", ORCH),
                payment_task(max_calls),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        (token_of(&b), task_of(&b))
    }

    async fn as_human(&self, who: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let res = self
            .s
            .http
            .post(format!("{}{path}", self.s.base))
            .bearer_auth(self.id_token(who))
            .json(&body)
            .send()
            .await
            .unwrap();
        read(res).await
    }
}

fn low() -> Value {
    json!({ "risk_score": 10 })
}

fn big_payment(amount: i64) -> Value {
    json!({ "risk_score": 10, "amount": amount })
}

// ---- cases ---------------------------------------------------------------------

async fn each_step_of_the_pipeline_stops_with_its_reason(t: TestStore) {
    let f = Fixture::with_policy(t).await;
    let (_, active) = f.s.get("/v1/policies/active").await;
    let (token, task) = f.task_for("alice", 3).await;

    // Allowed, with the determining policy and the version that decided.
    let before = f.s.state.store.audit_len().await.unwrap();
    let d = f
        .decide(&token, "procurement.read", "erp:invoices/1", low())
        .await;
    assert_eq!(d["decision"], "allow", "{d}");
    assert_eq!(d["policy_hash"], active["hash"]);
    assert_eq!(d["task_id"].as_str(), Some(task.as_str()));
    assert!(
        d["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["policy_id"] == "in-scope"),
        "{d}"
    );
    assert_eq!(
        f.s.state.store.audit_len().await.unwrap(),
        before + 1,
        "one event per decision"
    );
    // The answer is the decision's entry, word for word.
    let (_, entries) =
        f.s.get(&format!("/v1/audit/entries?from={before}&limit=1"))
            .await;
    let entry: Value = serde_json::from_str(entries[0]["entry"].as_str().unwrap()).unwrap();
    assert_eq!(entry["event"]["details"], d);

    // A perfectly valid token, an action outside its task: the confused deputy.
    let d = f
        .decide(
            &token,
            "procurement.po.create",
            "erp:purchase-orders/9",
            low(),
        )
        .await;
    assert_eq!(d["decision"], "deny");
    assert_eq!(codes(&d), ["outside_task_scope"]);
    let metrics = f.s.metrics().await;
    for verdict in ["allow", "deny"] {
        let series = format!("mandate_decisions_total{{decision=\"{verdict}\"}}");
        assert!(metrics.contains(&series), "{series} missing:\n{metrics}");
    }
    assert!(d.get("policy_hash").is_none(), "stopped before policy: {d}");
    let d = f
        .decide(&token, "procurement.read", "hr:payroll/1", low())
        .await;
    assert_eq!(codes(&d), ["outside_task_scope"]);

    // Nothing permits a critical-risk request: default deny.
    let d = f
        .decide(
            &token,
            "procurement.read",
            "erp:invoices/1",
            json!({ "risk_score": 95 }),
        )
        .await;
    assert_eq!(d["decision"], "deny", "{d}");

    // A forbid wins over the permit.
    let d = f
        .decide(
            &token,
            "procurement.read",
            "erp:x",
            json!({ "risk_score": 10, "data_sensitivity": "restricted" }),
        )
        .await;
    assert_eq!(d["decision"], "deny");
    assert!(
        d["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["policy_id"] == "confidential-needs-clearance"),
        "{d}"
    );

    // The call limit (3): one allow so far; two more, then refused. Denials do not count.
    for _ in 0..2 {
        let d = f
            .decide(&token, "procurement.read", "erp:invoices/2", low())
            .await;
        assert_eq!(d["decision"], "allow", "{d}");
    }
    let d = f
        .decide(&token, "procurement.read", "erp:invoices/3", low())
        .await;
    assert_eq!(codes(&d), ["limit_exceeded"], "{d}");

    // Revoked: every decision after the revocation is a deny.
    let (token2, task2) = f.task_for("alice", 10).await;
    assert_eq!(
        f.decide(&token2, "procurement.read", "erp:a", low()).await["decision"],
        "allow"
    );
    let (st, b) =
        f.s.post(
            &format!("/v1/tasks/{task2}/revoke"),
            json!({ "reason": "test" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let d = f.decide(&token2, "procurement.read", "erp:a", low()).await;
    assert_eq!(d["decision"], "deny");
    assert!(
        ["credential_revoked", "task_revoked"].contains(&codes(&d)[0].as_str()),
        "{d}"
    );

    // Forged: not genuine, not attributable, not recorded.
    let before = f.s.state.store.audit_len().await.unwrap();
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    let d = f
        .decide(&forged, "procurement.read", "erp:invoices/1", low())
        .await;
    assert_eq!(d["decision"], "deny");
    assert_eq!(codes(&d), ["invalid_token"]);
    assert!(d.get("task_id").is_none());
    assert_eq!(f.s.state.store.audit_len().await.unwrap(), before);

    // No token at all is a 401 problem, not a decision.
    let res =
        f.s.http
            .post(format!("{}/v1/decisions", f.s.base))
            .json(&json!({ "action": "a", "resource": { "id": "b" } }))
            .send()
            .await
            .unwrap();
    assert_eq!(read(res).await.0, StatusCode::UNAUTHORIZED);
    // Unknown fields are refused, not ignored.
    let res =
        f.s.http
            .post(format!("{}/v1/decisions", f.s.base))
            .bearer_auth(&token)
            .json(&json!({ "action": "a", "resource": { "id": "b" }, "contxt": {} }))
            .send()
            .await
            .unwrap();
    assert_eq!(read(res).await.0, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn expired_tasks_decide_nothing(t: TestStore) {
    let f = Fixture::with_policy(t).await;
    let assertion = f.assertion(&f.agent("orchestrator", ORCH));
    let details = payment_task(5).to_string();
    let (st, b) = f
        .exchange(
            &[
                ("grant_type", mandate_core::credential::GRANT_TOKEN_EXCHANGE),
                ("subject_token", &f.id_token("alice")),
                (
                    "subject_token_type",
                    mandate_core::credential::TOKEN_TYPE_ID,
                ),
                ("actor_token", &assertion),
                ("actor_token_type", mandate_core::credential::TOKEN_TYPE_JWT),
                ("authorization_details", &details),
                ("requested_ttl", "1"),
            ],
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let token = token_of(&b);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let d = f.decide(&token, "procurement.read", "erp:a", low()).await;
    assert_eq!(d["decision"], "deny", "{d}");
    assert!(
        ["invalid_token", "task_expired"].contains(&codes(&d)[0].as_str()),
        "{d}"
    );
}

async fn approvals_are_bound_single_use_and_separated(t: TestStore) {
    let f = Fixture::with_policy(t).await;
    let (token, _) = f.task_for("alice", 50).await;

    let d = f
        .decide(
            &token,
            "payments.initiate",
            "bank:acme/ops",
            big_payment(1_850_000),
        )
        .await;
    assert_eq!(d["decision"], "needs_approval", "{d}");
    assert!(codes(&d).contains(&"approval_required".to_owned()));
    let id = d["approval_id"].as_str().unwrap().to_owned();
    // Asking again waits on the same approval rather than raising another.
    let again = f
        .decide(
            &token,
            "payments.initiate",
            "bank:acme/ops",
            big_payment(1_850_000),
        )
        .await;
    assert_eq!(again["approval_id"].as_str(), Some(id.as_str()));
    let (_, pending) = f.s.get("/v1/approvals?status=pending").await;
    assert_eq!(pending.as_array().unwrap().len(), 1, "{pending}");

    let path = format!("/v1/approvals/{id}/approve");
    // The initiator, someone without the role, and an admin token may not answer.
    assert_eq!(
        f.as_human("alice", &path, json!({})).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        f.as_human("mallory", &path, json!({})).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(f.s.post(&path, json!({})).await.0, StatusCode::FORBIDDEN);
    // Not even an approver, for a task they initiated themselves.
    let (bobs_token, _) = f.task_for("bob", 5).await;
    let d = f
        .decide(
            &bobs_token,
            "payments.initiate",
            "bank:acme/ops",
            big_payment(2_000_000),
        )
        .await;
    let bobs = d["approval_id"].as_str().unwrap();
    let (st, b) = f
        .as_human("bob", &format!("/v1/approvals/{bobs}/approve"), json!({}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("separation of duties"),
        "{b}"
    );

    let (st, a) = f
        .as_human("bob", &path, json!({ "note": "matches the quote" }))
        .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(a["status"], "approved");
    assert_eq!(a["decided_by"].as_str(), Some(f.bob.as_str()));
    // Answered once.
    assert_eq!(
        f.as_human("bob", &path, json!({})).await.0,
        StatusCode::CONFLICT
    );

    // Another resource or another context is another request.
    let other = f
        .decide(
            &token,
            "payments.initiate",
            "bank:acme/treasury",
            big_payment(1_850_000),
        )
        .await;
    assert_eq!(other["decision"], "needs_approval");
    assert_ne!(other["approval_id"].as_str(), Some(id.as_str()));
    let other = f
        .decide(
            &token,
            "payments.initiate",
            "bank:acme/ops",
            big_payment(1_850_001),
        )
        .await;
    assert_eq!(other["decision"], "needs_approval");
    assert_ne!(other["approval_id"].as_str(), Some(id.as_str()));

    // The exact request: allowed once, with the approval as its reason.
    let d = f
        .decide(
            &token,
            "payments.initiate",
            "bank:acme/ops",
            big_payment(1_850_000),
        )
        .await;
    assert_eq!(d["decision"], "allow", "{d}");
    assert_eq!(d["approval_id"].as_str(), Some(id.as_str()));
    assert!(codes(&d).contains(&"approval_granted".to_owned()), "{d}");
    let d = f
        .decide(
            &token,
            "payments.initiate",
            "bank:acme/ops",
            big_payment(1_850_000),
        )
        .await;
    assert_eq!(
        d["decision"], "needs_approval",
        "an approval is single-use: {d}"
    );
    assert_ne!(d["approval_id"].as_str(), Some(id.as_str()));
    let (_, used) = f.s.get(&format!("/v1/approvals/{id}")).await;
    assert_eq!(used["status"], "used");

    // A denial is final for that request.
    let next = d["approval_id"].as_str().unwrap().to_owned();
    let (st, _) = f
        .as_human(
            "bob",
            &format!("/v1/approvals/{next}/deny"),
            json!({ "note": "no" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let d = f
        .decide(
            &token,
            "payments.initiate",
            "bank:acme/ops",
            big_payment(1_850_000),
        )
        .await;
    assert_eq!(d["decision"], "deny", "{d}");
    assert!(codes(&d).contains(&"approval_denied".to_owned()), "{d}");

    // An approval past its expiry cannot be answered (or used).
    let (_, task) = f.task_for("alice", 5).await;
    let task: TaskId = task.parse().unwrap();
    let stored = f.s.state.store.task(task).await.unwrap().unwrap();
    let stale = ApprovalId::from_uuid(uuid::Uuid::now_v7());
    let past = mandate_core::time::Timestamp::from_millis(now().as_millis() - 60_000);
    f.s.state
        .store
        .record_decision(
            &Change {
                actor: mandate_core::audit::Actor::System,
                at: past,
                request_id: None,
            },
            &DecisionWrite {
                id: DecisionId::from_uuid(uuid::Uuid::now_v7()),
                task,
                agent: stored.assignee,
                action: "payments.initiate".into(),
                resource: "bank:acme/ops".into(),
                verdict: Verdict::NeedsApproval,
                details: serde_json::value::to_raw_value(&json!({})).unwrap(),
                max_calls: None,
                counts_call: false,
                spends: None,
                spends_approval: None,
                raises_approval: Some(Approval {
                    id: stale,
                    task,
                    agent: stored.assignee,
                    initiator: stored.initiator,
                    action: "payments.initiate".into(),
                    resource: "bank:acme/ops".into(),
                    digest: "d".into(),
                    policies: vec!["large-payment".into()],
                    context: json!({}),
                    status: ApprovalStatus::Pending,
                    requested_at: past,
                    expires_at: mandate_core::time::Timestamp::from_millis(past.as_millis() + 1000),
                    decided_by: None,
                    decided_at: None,
                    note: None,
                }),
            },
        )
        .await
        .unwrap();
    let (st, b) = f
        .as_human("bob", &format!("/v1/approvals/{stale}/approve"), json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("expired"), "{b}");
    let _ = AgentId::from_uuid(uuid::Uuid::nil());
}

async fn breakglass_is_reasoned_capped_reviewed_and_expires(t: TestStore) {
    let f = Fixture::with_policy(t).await;
    let (token, task) = f.task_for("alice", 50).await;
    let grant = |ttl: i64, reason: &str| {
        json!({ "agent": "orchestrator", "ttl_s": ttl, "reason": reason,
            "scope": [{ "action": "procurement.po.create", "resource": "erp:purchase-orders/*" }] })
    };
    assert_eq!(
        f.s.post("/v1/breakglass", grant(600, "")).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        f.s.post("/v1/breakglass", grant(7200, "incident")).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        f.as_human("bob", "/v1/breakglass", grant(600, "incident"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let d = f
        .decide(
            &token,
            "procurement.po.create",
            "erp:purchase-orders/7",
            low(),
        )
        .await;
    assert_eq!(codes(&d), ["outside_task_scope"]);

    let (st, g) =
        f.s.post("/v1/breakglass", grant(600, "ERP outage INC-1"))
            .await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let d = f
        .decide(
            &token,
            "procurement.po.create",
            "erp:purchase-orders/7",
            low(),
        )
        .await;
    assert_eq!(d["decision"], "allow", "{d}");
    assert_eq!(d["breakglass_id"], g["id"]);
    assert!(codes(&d).contains(&"breakglass".to_owned()));
    // Only what it grants.
    let d = f
        .decide(&token, "records.delete", "erp:purchase-orders/7", low())
        .await;
    assert_eq!(d["decision"], "deny");

    let (_, open) = f.s.get("/v1/breakglass?unreviewed=true").await;
    assert_eq!(open.as_array().unwrap().len(), 1);
    let review = format!("/v1/breakglass/{}/review", g["id"].as_str().unwrap());
    assert_eq!(
        f.s.post(&review, json!({ "note": "fine" })).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        f.as_human("bob", &review, json!({ "note": "" })).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (st, r) = f
        .as_human("bob", &review, json!({ "note": "checked PO-7" }))
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(
        f.as_human("bob", &review, json!({ "note": "again" }))
            .await
            .0,
        StatusCode::CONFLICT
    );
    let (_, open) = f.s.get("/v1/breakglass?unreviewed=true").await;
    assert_eq!(open.as_array().unwrap().len(), 0);

    // It never revives an ended task.
    let (st, _) =
        f.s.post(&format!("/v1/tasks/{task}/revoke"), json!({}))
            .await;
    assert_eq!(st, StatusCode::OK);
    let d = f
        .decide(
            &token,
            "procurement.po.create",
            "erp:purchase-orders/7",
            low(),
        )
        .await;
    assert_eq!(d["decision"], "deny", "{d}");

    // Past its TTL it allows nothing.
    let (token, _) = f.task_for("alice", 50).await;
    let (st, short) =
        f.s.post(
            "/v1/breakglass",
            json!({ "agent": "orchestrator", "ttl_s": 1, "reason": "short",
        "scope": [{ "action": "records.archive", "resource": "erp:*" }] }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{short}");
    assert_eq!(
        f.decide(&token, "records.archive", "erp:x", low()).await["decision"],
        "allow"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let d = f.decide(&token, "records.archive", "erp:x", low()).await;
    assert_eq!(d["decision"], "deny", "{d}");
}

async fn policies_are_validated_versioned_and_rolled_back(t: TestStore) {
    let f = Fixture::new(t).await;
    let (token, _) = f.task_for("alice", 50).await;
    // No policy yet: default deny, saying why.
    let d = f.decide(&token, "procurement.read", "erp:a", low()).await;
    assert_eq!(codes(&d), ["no_policy"]);

    let (st, v1) = f.s.post("/v1/policies", json!({ "text": POLICY })).await;
    assert_eq!(st, StatusCode::CREATED, "{v1}");
    let before = f.s.state.store.audit_len().await.unwrap();
    let broken = "@id(\"x\")\npermit (principal, action, resource)\nwhen { context.risk < 50 };\n";
    let (st, p) = f.s.post("/v1/policies", json!({ "text": broken })).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["location"]["line"], 3, "{p}");
    assert!(
        p["errors"][0]["location"]["column"].as_u64().unwrap() > 1,
        "{p}"
    );
    assert_eq!(
        f.s.state.store.audit_len().await.unwrap(),
        before,
        "a refused push changes nothing"
    );
    let (_, active) = f.s.get("/v1/policies/active").await;
    assert_eq!(
        active["hash"], v1["hash"],
        "the previous version keeps serving"
    );
    assert_eq!(
        f.decide(&token, "procurement.read", "erp:a", low()).await["policy_hash"],
        v1["hash"]
    );
    let (st, _) =
        f.s.post("/v1/policies/validate", json!({ "text": broken }))
            .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);

    let v2_text = format!(
        "{POLICY}\n@id(\"no-archive\")\nforbid (principal, action == Mandate::Action::\"records.archive\", resource);\n"
    );
    let (st, v2) = f.s.post("/v1/policies", json!({ "text": v2_text })).await;
    assert_eq!(st, StatusCode::CREATED, "{v2}");
    assert_ne!(v2["hash"], v1["hash"]);
    assert_eq!(v2["version"], 2);
    assert_eq!(
        f.decide(&token, "procurement.read", "erp:a", low()).await["policy_hash"],
        v2["hash"]
    );
    // Rolling back is pushing the old text: the same version becomes active again.
    let (st, back) = f.s.post("/v1/policies", json!({ "text": POLICY })).await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(back["hash"], v1["hash"]);
    assert_eq!(back["version"], 1);
    let (_, list) = f.s.get("/v1/policies").await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|v| v["active"] == true).count(), 1);
    let (_, shown) =
        f.s.get(&format!(
            "/v1/policies/{}",
            &v2["hash"].as_str().unwrap()[..10]
        ))
        .await;
    assert_eq!(
        shown["text"].as_str(),
        Some(v2_text.replace("\r\n", "\n").as_str())
    );
    assert_eq!(
        f.s.get("/v1/policies/zz").await.0,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too short to be a version"
    );
    assert_eq!(
        f.s.get(&format!("/v1/policies/{}", "ab".repeat(32)))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // Pushing needs an admin.
    assert_eq!(
        f.as_human("bob", "/v1/policies", json!({ "text": POLICY }))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

async fn authzen_requests_and_responses_follow_the_spec(t: TestStore) {
    let f = Fixture::with_policy(t).await;
    let (token, _) = f.task_for("alice", 50).await;
    let spiffe = f.agent("orchestrator", ORCH).spiffe.to_string();

    let (st, meta) = f.s.get("/.well-known/authzen-configuration").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        meta["policy_decision_point"].as_str(),
        Some(f.s.base.as_str())
    );
    assert_eq!(
        meta["access_evaluation_endpoint"],
        format!("{}/access/v1/evaluation", f.s.base)
    );
    assert_eq!(
        meta["access_evaluations_endpoint"],
        format!("{}/access/v1/evaluations", f.s.base)
    );

    let subject = json!({ "type": "agent", "id": spiffe, "properties": { "token": token } });
    let eval = |action: &str, resource: &str| {
        json!({
            "subject": subject, "action": { "name": action },
            "resource": { "type": "erp", "id": resource, "properties": { "sensitivity": "internal" } },
            "context": { "risk_score": 10, "environment": "prod" },
        })
    };
    let (st, r) =
        f.s.post("/access/v1/evaluation", eval("procurement.read", "erp:a"))
            .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["decision"], true);
    assert!(r["context"]["id"].as_str().is_some());
    assert!(r["context"]["reason_admin"]["en"].is_array());
    let (_, r) =
        f.s.post(
            "/access/v1/evaluation",
            eval("procurement.po.create", "erp:a"),
        )
        .await;
    assert_eq!(r["decision"], false);
    assert_eq!(
        r["context"]["mandate"]["reasons"][0]["code"],
        "outside_task_scope"
    );

    // The subject must be the token's agent.
    let mut wrong = eval("procurement.read", "erp:a");
    wrong["subject"]["id"] = json!("spiffe://acme.example/agent/worker");
    let (_, r) = f.s.post("/access/v1/evaluation", wrong).await;
    assert_eq!(r["decision"], false);
    assert_eq!(
        r["context"]["mandate"]["reasons"][0]["code"],
        "subject_mismatch"
    );
    // No token is a malformed request.
    let mut bare = eval("procurement.read", "erp:a");
    bare["subject"]["properties"] = json!({});
    assert_eq!(
        f.s.post("/access/v1/evaluation", bare).await.0,
        StatusCode::BAD_REQUEST
    );
    let mut bad = eval("procurement.read", "erp:a");
    bad["context"]["risk_score"] = json!("high");
    assert_eq!(
        f.s.post("/access/v1/evaluation", bad).await.0,
        StatusCode::BAD_REQUEST
    );

    // Batch: top-level defaults, per-item overrides, the three semantics.
    let batch = |semantic: &str| {
        json!({
            "subject": subject,
            "resource": { "type": "erp", "id": "erp:a" },
            "context": { "risk_score": 10 },
            "evaluations": [
                { "action": { "name": "procurement.read" } },
                { "action": { "name": "records.delete" } },
                { "action": { "name": "procurement.read" }, "resource": { "type": "erp", "id": "erp:b" } },
            ],
            "options": { "evaluations_semantic": semantic },
        })
    };
    let decisions = |r: &Value| -> Vec<bool> {
        r["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["decision"].as_bool().unwrap())
            .collect()
    };
    let (st, r) =
        f.s.post("/access/v1/evaluations", batch("execute_all"))
            .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(decisions(&r), [true, false, true]);
    let (_, r) =
        f.s.post("/access/v1/evaluations", batch("deny_on_first_deny"))
            .await;
    assert_eq!(decisions(&r), [true, false]);
    let (_, r) =
        f.s.post("/access/v1/evaluations", batch("permit_on_first_permit"))
            .await;
    assert_eq!(decisions(&r), [true]);
    // An item with nothing to inherit is refused before anything is decided.
    let before = f.s.state.store.audit_len().await.unwrap();
    let (st, _) = f.s.post("/access/v1/evaluations", json!({
        "subject": subject, "evaluations": [
            { "action": { "name": "procurement.read" }, "resource": { "type": "erp", "id": "erp:a" } },
            { "action": { "name": "procurement.read" } } ] })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(f.s.state.store.audit_len().await.unwrap(), before);
}

async fn dpop_bound_tokens_decide_only_with_a_proof(t: TestStore) {
    let f = Fixture::with_policy(t).await;
    let holder = ed25519_dalek::SigningKey::from_bytes(&[77; 32]);
    let url = format!("{}/oauth2/token", f.s.base);
    let proof = mandate_core::dpop::mint_proof(&holder, "POST", &url, None, now(), &unique());
    let (st, b) = f
        .root(
            &f.id_token("alice"),
            &f.agent("orchestrator", ORCH),
            payment_task(50),
            Some(proof),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let token = token_of(&b);
    let d = f.decide(&token, "procurement.read", "erp:a", low()).await;
    assert_eq!(codes(&d), ["dpop_required"]);
    let decide_url = format!("{}/v1/decisions", f.s.base);
    let with = |key: &ed25519_dalek::SigningKey| {
        mandate_core::dpop::mint_proof(key, "POST", &decide_url, Some(&token), now(), &unique())
    };
    for (key, want) in [
        (&holder, "allow"),
        (&ed25519_dalek::SigningKey::from_bytes(&[78; 32]), "deny"),
    ] {
        let res = f.s.http.post(&decide_url).header("Authorization", format!("DPoP {token}"))
            .header("DPoP", with(key))
            .json(&json!({ "action": "procurement.read", "resource": { "id": "erp:a" }, "context": low() }))
            .send().await.unwrap();
        let (_, d) = read(res).await;
        assert_eq!(d["decision"], want, "{d}");
    }
}

async fn payments_spend_the_task_budget_and_a_child_cannot_widen_it(t: TestStore) {
    let f = Fixture::with_policy(t).await;
    let details = json!([{ "type": "mandate_task", "purpose": "pay small invoices",
        "actions": ["payments.initiate"], "resources": ["bank:acme/*"],
        "limits": { "max_calls": 10, "budget": 100000 } }]);
    let b = f.alice_root(details).await;
    let token = token_of(&b);
    let pay = |amount: i64| json!({ "risk_score": 10, "amount": amount });
    let d = f
        .decide(&token, "payments.initiate", "bank:acme/ops", pay(60_000))
        .await;
    assert_eq!(d["decision"], "allow", "{d}");
    let d = f
        .decide(&token, "payments.initiate", "bank:acme/ops", pay(60_000))
        .await;
    assert_eq!(d["decision"], "deny", "{d}");
    assert!(codes(&d).contains(&"limit_exceeded".to_owned()), "{d}");
    let d = f
        .decide(&token, "payments.initiate", "bank:acme/ops", pay(40_000))
        .await;
    assert_eq!(
        d["decision"], "allow",
        "what is left can still be spent: {d}"
    );
    // A delegation cannot ask for more budget than its parent has.
    let wider = json!([{ "type": "mandate_task", "purpose": "pay",
        "actions": ["payments.initiate"], "resources": ["bank:acme/ops"],
        "limits": { "max_calls": 5, "budget": 200000 } }]);
    let (st, b) = f
        .child(&token, &f.agent("orchestrator", ORCH), wider, None)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["error_description"].as_str().unwrap().contains("budget"),
        "{b}"
    );
}

/// The `decision.made` entries from audit index `from` on: (action, verdict).
async fn session_decisions(store: &dyn mandate_store::Store, from: u64) -> Vec<(String, String)> {
    let len = store.audit_len().await.unwrap();
    store
        .audit_entries(from, (len - from) as u32)
        .await
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.entry).unwrap()["event"].clone())
        .filter(|e| e["kind"] == "decision.made")
        .map(|e| {
            let d = &e["details"];
            (
                d["action"].as_str().unwrap().to_owned(),
                d["decision"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The Mandate action of an MCP method, as the decision records it.
fn decision_action(method: &str) -> String {
    format!("mcp.{}", method.replace('/', "."))
}

/// A COAZ request as a third-party MCP gateway sends it: the task token in
/// the `Mandate-Task-Token` header (when given), the body as its mapping built it.
async fn coaz(f: &Fixture, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut req = f.s.http.post(format!("{}{path}", f.s.base)).json(&body);
    if let Some(t) = token {
        req = req.header("Mandate-Task-Token", t);
    }
    read(req.send().await.unwrap()).await
}

/// The claims of a task token (its payload, unverified: the test reads what
/// Mandate issued).
fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn coaz_requests_are_decided_only_for_the_tokens_identities(t: TestStore) {
    let f = Fixture::with_policy(t).await;
    let (token, task) = f.task_for("alice", 50).await;
    let claims = claims_of(&token);
    let (human, agent) = (claims["sub"].clone(), claims["client_id"].clone());
    assert!(agent.as_str().unwrap().starts_with("spiffe://"), "{claims}");
    // The shape of the draft's default and declared mappings.
    let request = |action: &str, resource: Value, context: Value| {
        json!({ "subject": { "type": "identity", "id": human }, "action": { "name": action },
                "resource": resource, "context": context })
    };
    let erp =
        |id: &str| json!({ "type": "erp", "id": id, "properties": { "sensitivity": "internal" } });
    let anchored = json!({ "agent": agent, "risk_score": 10 });
    let reasons = |r: &Value| -> Vec<String> {
        r["context"]["mandate"]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["code"].as_str().unwrap().to_owned())
            .collect()
    };

    // The right identities: decided by the pipeline, and recorded.
    let before = f.s.state.store.audit_len().await.unwrap();
    let (st, r) = coaz(
        &f,
        "/access/v1/evaluation",
        Some(&token),
        request("procurement.read", erp("erp:a"), anchored.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["decision"], true, "{r}");
    assert_eq!(r["context"]["mandate"]["task_id"], json!(task));
    assert_eq!(f.s.state.store.audit_len().await.unwrap(), before + 1);

    // Adversarial identities: each a deny that names why, decided for no one.
    let mut ctx_without_agent = anchored.clone();
    ctx_without_agent.as_object_mut().unwrap().remove("agent");
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        (
            "a spoofed subject (another human)",
            json!({ "subject": { "type": "identity", "id": "bob" }, "action": { "name": "procurement.read" },
                 "resource": erp("erp:a"), "context": anchored }),
            Some("subject_mismatch"),
        ),
        (
            "the agent posing as the subject",
            json!({ "subject": { "type": "identity", "id": agent }, "action": { "name": "procurement.read" },
                 "resource": erp("erp:a"), "context": anchored }),
            Some("subject_mismatch"),
        ),
        (
            "a spoofed agent",
            request(
                "procurement.read",
                erp("erp:a"),
                json!({ "agent": "spiffe://acme.example/agent/worker", "risk_score": 10 }),
            ),
            Some("agent_mismatch"),
        ),
        (
            "an agent that is not a string",
            request(
                "procurement.read",
                erp("erp:a"),
                json!({ "agent": [agent], "risk_score": 10 }),
            ),
            Some("agent_mismatch"),
        ),
        (
            "no context.agent: the subject alone is anchored",
            request("procurement.read", erp("erp:a"), ctx_without_agent),
            None,
        ),
        (
            "outside the task's scope, with the right identities",
            request("procurement.po.create", erp("erp:a"), anchored.clone()),
            Some("outside_task_scope"),
        ),
    ];
    for (what, body, refused) in cases {
        let before = f.s.state.store.audit_len().await.unwrap();
        let (st, r) = coaz(&f, "/access/v1/evaluation", Some(&token), body).await;
        assert_eq!(st, StatusCode::OK, "{what}: {r}");
        match refused {
            None => assert_eq!(r["decision"], true, "{what}: {r}"),
            Some(code) => {
                assert_eq!(r["decision"], false, "{what}: {r}");
                assert_eq!(reasons(&r)[0], code, "{what}: {r}");
            }
        }
        let recorded = f.s.state.store.audit_len().await.unwrap() - before;
        let mismatch = refused.is_some_and(|c| c.ends_with("_mismatch"));
        assert_eq!(
            recorded,
            u64::from(!mismatch),
            "{what}: a spoof is decided for no task"
        );
    }

    // A forged token is refused; a missing or doubled one is a bad request.
    let (_, r) = coaz(
        &f,
        "/access/v1/evaluation",
        Some("not.a.token"),
        request("procurement.read", erp("erp:a"), anchored.clone()),
    )
    .await;
    assert_eq!(
        (r["decision"].clone(), reasons(&r)[0].as_str()),
        (json!(false), "invalid_token")
    );
    for (token, body, why) in [
        (
            None,
            request("procurement.read", erp("erp:a"), anchored.clone()),
            "Mandate-Task-Token",
        ),
        (
            Some(" "),
            request("procurement.read", erp("erp:a"), anchored.clone()),
            "must carry a task token",
        ),
        (
            Some(token.as_str()),
            json!({ "subject": { "type": "identity", "id": human, "properties": { "token": token } },
            "action": { "name": "procurement.read" }, "resource": erp("erp:a"), "context": anchored }),
            "one token",
        ),
    ] {
        let mut req =
            f.s.http
                .post(format!("{}/access/v1/evaluation", f.s.base))
                .json(&body);
        if let Some(t) = token {
            req = req.header("Mandate-Task-Token", t);
        }
        let res = req.send().await.unwrap();
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
        let (st, p) = read(res).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{p}");
        assert!(p["detail"].as_str().unwrap().contains(why), "{why}: {p}");
    }

    // MCP methods as actions: `tools/call` needs the scope grant
    // `mcp.tools.call`; session methods need only an open task, and are
    // recorded like every decision but not counted as calls.
    let server = json!({ "type": "mcp_server", "id": claims["aud"] });
    let (_, r) = coaz(
        &f,
        "/access/v1/evaluation",
        Some(&token),
        request(
            "tools/call",
            json!({ "type": "tool", "id": "get_weather" }),
            anchored.clone(),
        ),
    )
    .await;
    assert_eq!(r["decision"], false);
    assert_eq!(r["context"]["mandate"]["action"], "mcp.tools.call");
    assert_eq!(reasons(&r), ["outside_task_scope"]);
    let store = &f.s.state.store;
    let task_id: TaskId = task.parse().unwrap();
    let (before, calls_before) = (
        store.audit_len().await.unwrap(),
        store.calls_used(task_id).await.unwrap(),
    );
    let methods = ["initialize", "tools/list", "resources/list", "prompts/list"];
    for method in methods {
        let (_, r) = coaz(
            &f,
            "/access/v1/evaluation",
            Some(&token),
            request(method, server.clone(), json!({ "agent": agent })),
        )
        .await;
        assert_eq!(r["decision"], true, "{method}: {r}");
        assert_eq!(reasons(&r), ["mcp_session"], "{method}");
    }
    let recorded = session_decisions(store.as_ref(), before).await;
    let want: Vec<(String, String)> = methods
        .iter()
        .map(|m| (decision_action(m), "allow".to_owned()))
        .collect();
    assert_eq!(recorded, want, "each session method is a recorded decision");
    assert_eq!(
        store.calls_used(task_id).await.unwrap(),
        calls_before,
        "a session method is not a call: it spends none of the task's limit"
    );

    // Batches: one token, the human at the top, the three semantics.
    let batch = |semantic: &str| {
        json!({ "subject": { "type": "identity", "id": human }, "context": anchored,
                "resource": erp("erp:a"),
                "evaluations": [
                    { "action": { "name": "procurement.read" } },
                    { "action": { "name": "records.delete" } },
                    { "action": { "name": "procurement.read" }, "resource": erp("erp:b") } ],
                "options": { "evaluations_semantic": semantic } })
    };
    for (semantic, want) in [
        ("execute_all", vec![true, false, true]),
        ("deny_on_first_deny", vec![true, false]),
        ("permit_on_first_permit", vec![true]),
    ] {
        let (st, r) = coaz(&f, "/access/v1/evaluations", Some(&token), batch(semantic)).await;
        assert_eq!(st, StatusCode::OK, "{r}");
        let got: Vec<bool> = r["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["decision"].as_bool().unwrap())
            .collect();
        assert_eq!(got, want, "{semantic}");
    }
    let mut spoofed = batch("execute_all");
    spoofed["evaluations"][2]["context"] = json!({ "agent": "spiffe://acme.example/agent/worker" });
    let (_, r) = coaz(&f, "/access/v1/evaluations", Some(&token), spoofed).await;
    assert_eq!(
        r["evaluations"][2]["decision"], false,
        "an entry's own context is anchored too"
    );
    assert_eq!(
        r["evaluations"][2]["context"]["mandate"]["reasons"][0]["code"],
        "agent_mismatch"
    );

    // A policy can forbid a session method.
    let no_listing = format!(
        "{POLICY}\n@id(\"no-tool-listing\")\nforbid (principal, action == Mandate::Action::\"mcp.tools.list\", resource);\n"
    );
    let (st, b) =
        f.s.post("/v1/policies", json!({ "text": no_listing }))
            .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let (_, r) = coaz(
        &f,
        "/access/v1/evaluation",
        Some(&token),
        request("tools/list", server.clone(), json!({ "agent": agent })),
    )
    .await;
    assert_eq!(r["decision"], false, "{r}");
    assert_eq!(reasons(&r), ["policy_forbid"]);
    let after_forbid =
        session_decisions(store.as_ref(), store.audit_len().await.unwrap() - 1).await;
    assert_eq!(
        after_forbid,
        [("mcp.tools.list".to_owned(), "deny".to_owned())],
        "a refused session method is recorded too"
    );

    // A revoked task decides nothing, session methods included.
    let (st, b) =
        f.s.post(&format!("/v1/tasks/{task}/revoke"), json!({}))
            .await;
    assert!(st.is_success(), "{b}");
    for (action, resource) in [
        ("procurement.read", erp("erp:a")),
        ("initialize", server.clone()),
    ] {
        let (_, r) = coaz(
            &f,
            "/access/v1/evaluation",
            Some(&token),
            request(action, resource, anchored.clone()),
        )
        .await;
        assert_eq!(r["decision"], false, "{action}: {r}");
        assert!(
            ["credential_revoked", "task_revoked"].contains(&reasons(&r)[0].as_str()),
            "{action}: {r}"
        );
    }
}

mandate_store::backend_tests!(
    payments_spend_the_task_budget_and_a_child_cannot_widen_it,
    each_step_of_the_pipeline_stops_with_its_reason,
    expired_tasks_decide_nothing,
    approvals_are_bound_single_use_and_separated,
    breakglass_is_reasoned_capped_reviewed_and_expires,
    policies_are_validated_versioned_and_rolled_back,
    authzen_requests_and_responses_follow_the_spec,
    coaz_requests_are_decided_only_for_the_tokens_identities,
    dpop_bound_tokens_decide_only_with_a_proof,
);
