//! The gateway end to end, on both storage backends: a real MCP client
//! (`rmcp`'s) talks through the gateway to a real MCP server (`rmcp`'s) and
//! an HTTP API that checks the injected key, all on 127.0.0.1.

#[path = "../../server/tests/common/mod.rs"]
mod common;
mod session;

use std::sync::{Arc, Mutex};

use common::fixture::*;
use common::{read, spawn};
use mandate_gateway::{Gateway, GatewayConfig};
use mandate_store::testing::TestStore;
use reqwest::StatusCode;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, InitializeResult, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use session::{agent, call, entries, events, tool_names};

const POLICY: &str = include_str!("../../policy/examples/default.cedar");
const SECRET_V1: &str = "sk_live_first_4f9a";
const SECRET_V2: &str = "sk_live_second_77c1";

// ---- the upstream MCP server ---------------------------------------------------------

#[derive(Clone)]
#[allow(dead_code)] // `tool_router` is read by the generated handler
struct Erp {
    calls: Arc<Mutex<Vec<String>>>,
    tool_router: ToolRouter<Self>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct ById {
    id: String,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Payment {
    invoice: String,
    amount: i64,
}

#[tool_router]
impl Erp {
    #[tool(description = "Look up a supplier")]
    async fn lookup_supplier(&self, Parameters(ById { id }): Parameters<ById>) -> String {
        self.calls
            .lock()
            .unwrap()
            .push(format!("lookup_supplier {id}"));
        format!("supplier {id}: ACME Laptops")
    }

    #[tool(description = "Create a purchase order")]
    async fn create_po(&self, Parameters(ById { id }): Parameters<ById>) -> String {
        self.calls.lock().unwrap().push(format!("create_po {id}"));
        format!("po for {id}")
    }

    #[tool(description = "Pay an invoice")]
    async fn pay_invoice(&self, Parameters(p): Parameters<Payment>) -> String {
        self.calls
            .lock()
            .unwrap()
            .push(format!("pay_invoice {} {}", p.invoice, p.amount));
        format!("paid {}", p.invoice)
    }

    #[tool(description = "Not mapped by the gateway: never offered")]
    async fn drop_everything(&self) -> String {
        self.calls.lock().unwrap().push("drop_everything".into());
        "dropped".into()
    }
}

#[tool_handler]
impl ServerHandler for Erp {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
    }
}

async fn upstream_mcp(calls: Arc<Mutex<Vec<String>>>) -> String {
    let service = StreamableHttpService::new(
        move || {
            Ok(Erp {
                calls: calls.clone(),
                tool_router: Erp::tool_router(),
            })
        },
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default(),
    );
    spawn(axum::Router::new().nest_service("/mcp", service)).await
}

/// A REST API that wants `x-api-key` and, carelessly, echoes it back.
async fn upstream_api(key: Arc<Mutex<String>>, seen: Arc<Mutex<Vec<Value>>>) -> String {
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let key = key.clone();
        let seen = seen.clone();
        async move {
            let headers: serde_json::Map<String, Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                .collect();
            seen.lock().unwrap().push(Value::Object(headers.clone()));
            let got = headers
                .get("x-api-key")
                .and_then(Value::as_str)
                .unwrap_or("");
            let status = if got == *key.lock().unwrap() {
                200
            } else {
                401
            };
            let body = json!({ "path": req.uri().path(), "you_sent": headers });
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                [("x-echo-key", got.to_owned())],
                axum::Json(body),
            )
        }
    });
    spawn(app).await
}

// ---- the gateway ---------------------------------------------------------------------

struct Setup {
    f: Fixture,
    gateway: String,
    calls: Arc<Mutex<Vec<String>>>,
    api_key: Arc<Mutex<String>>,
    api_seen: Arc<Mutex<Vec<Value>>>,
}

fn config(mcp: &str, api: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:8090"
authorization_server = "http://127.0.0.1:8080"
max_message_bytes = 65536
upstream_timeout_ms = 3000

[[mcp]]
name = "erp"
url = "{mcp}/mcp"
record_arguments = true

[[mcp.tool]]
name = "lookup_supplier"
action = "procurement.read"
resource = "erp:suppliers/{{id}}"

[[mcp.tool]]
name = "create_po"
action = "procurement.po.create"
resource = "erp:orders/{{id}}"

[[mcp.tool]]
name = "pay_invoice"
action = "payments.initiate"
resource = "bank:acme/{{invoice}}"
amount_from = "amount"

[[mcp]]
name = "down"
url = "http://127.0.0.1:9/mcp"

[[mcp.tool]]
name = "lookup_archive"
action = "procurement.read"
resource = "erp:archive/{{id}}"

[[http]]
name = "billing"
prefix = "/billing"
upstream = "{api}"
resource = "erp:billing/"
actions = {{ GET = "procurement.read", DELETE = "procurement.delete" }}
secret = "billing-key"
inject = "header:x-api-key"
"#
    )
}

async fn setup(t: TestStore) -> Setup {
    let f = Fixture::new(t).await;
    let (st, b) = f.s.post("/v1/policies", json!({ "text": POLICY })).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let (st, b) = put_secret(&f, SECRET_V1).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let calls = Arc::default();
    let api_key = Arc::new(Mutex::new(SECRET_V1.to_owned()));
    let api_seen = Arc::default();
    let mcp = upstream_mcp(Arc::clone(&calls)).await;
    let api = upstream_api(api_key.clone(), Arc::clone(&api_seen)).await;
    let config = GatewayConfig::parse(&config(&mcp, &api)).unwrap();
    let gw = Gateway::new(f.s.state.clone(), config).unwrap();
    let gateway = spawn(mandate_gateway::router(gw)).await;
    Setup {
        f,
        gateway,
        calls,
        api_key,
        api_seen,
    }
}

async fn put_secret(f: &Fixture, value: &str) -> (StatusCode, Value) {
    let res =
        f.s.req(reqwest::Method::PUT, "/v1/secrets/billing-key")
            .json(&json!({ "value": value }))
            .send()
            .await
            .unwrap();
    read(res).await
}

/// A root task for the orchestrator: read ERP records, initiate payments.
async fn task(f: &Fixture) -> (String, String) {
    let details = json!([
        { "type": "mandate_task", "purpose": "pay the laptop invoice",
          "actions": ["procurement.read"], "resources": ["erp:*"], "limits": { "max_calls": 50 } },
        { "type": "mandate_task", "purpose": "pay the laptop invoice",
          "actions": ["payments.initiate"], "resources": ["bank:acme/*"], "limits": { "max_calls": 50 } },
    ]);
    let b = f.alice_root(details).await;
    (token_of(&b), task_of(&b))
}

fn text(r: &CallToolResult) -> String {
    serde_json::to_value(&r.content).unwrap()[0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

// ---- cases ---------------------------------------------------------------------------

async fn tools_are_listed_and_called_only_within_scope_and_policy(t: TestStore) {
    let g = setup(t).await;
    let (token, task_id) = task(&g.f).await;
    let client = agent(&g.gateway, &token).await;

    let names = tool_names(&client).await;
    // create_po is outside the task's scope; drop_everything has no mapping;
    // the archive's server is down.
    assert_eq!(names, ["lookup_supplier", "pay_invoice"]);

    let r = call(&client, "lookup_supplier", json!({ "id": "s-42" }))
        .await
        .unwrap();
    assert_eq!(text(&r), "supplier s-42: ACME Laptops");

    let e = call(&client, "create_po", json!({ "id": "s-42" }))
        .await
        .unwrap_err();
    assert_eq!(e.code, mandate_gateway::DENIED);
    assert!(e.message.contains("outside_task_scope"), "{}", e.message);
    assert_eq!(e.data.as_ref().unwrap()["decision"], "deny");

    let e = call(&client, "drop_everything", json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code, rmcp::model::ErrorCode::INVALID_PARAMS);
    // An argument that tries to widen the resource is refused before any decision.
    let e = call(&client, "lookup_supplier", json!({ "id": "*" }))
        .await
        .unwrap_err();
    assert_eq!(e.code, rmcp::model::ErrorCode::INVALID_PARAMS);
    assert!(e.message.contains("only letters"), "{}", e.message);

    assert_eq!(*g.calls.lock().unwrap(), ["lookup_supplier s-42"]);

    // Every call that was decided is audited: the decision and the call.
    let calls = events(&g.f, "gateway.call").await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    let ok = &calls[0]["details"];
    assert_eq!(ok["target"], "lookup_supplier");
    assert_eq!(ok["status"], json!({ "kind": "answered", "status": 200 }));
    assert_eq!(ok["arguments"], json!({ "id": "s-42" }));
    assert_eq!(ok["task"], task_id);
    assert_eq!(calls[1]["details"]["status"]["kind"], "refused");
    let decisions = events(&g.f, "decision.made").await;
    assert_eq!(decisions.len(), 2);
    assert_eq!(decisions[0]["details"]["decision_id"], ok["decision"]);
}

async fn approval_gated_calls_succeed_once_approved(t: TestStore) {
    let g = setup(t).await;
    let (token, _) = task(&g.f).await;
    let client = agent(&g.gateway, &token).await;
    let big = json!({ "invoice": "inv-7", "amount": 2_500_000 });

    let e = call(&client, "pay_invoice", big.clone()).await.unwrap_err();
    assert_eq!(e.code, mandate_gateway::APPROVAL_REQUIRED, "{}", e.message);
    let approval = e.data.as_ref().unwrap()["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(g.calls.lock().unwrap().is_empty());

    let res =
        g.f.s
            .http
            .post(format!("{}/v1/approvals/{approval}/approve", g.f.s.base))
            .bearer_auth(g.f.id_token("bob"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
    let (st, b) = read(res).await;
    assert_eq!(st, StatusCode::OK, "{b}");

    let r = call(&client, "pay_invoice", big.clone()).await.unwrap();
    assert_eq!(text(&r), "paid inv-7");
    // Used once: the same request needs a new approval.
    let e = call(&client, "pay_invoice", big).await.unwrap_err();
    assert_eq!(e.code, mandate_gateway::APPROVAL_REQUIRED);
    assert_eq!(*g.calls.lock().unwrap(), ["pay_invoice inv-7 2500000"]);
}

async fn a_revoked_task_is_refused_mid_session(t: TestStore) {
    let g = setup(t).await;
    let (token, task_id) = task(&g.f).await;
    let client = agent(&g.gateway, &token).await;
    call(&client, "lookup_supplier", json!({ "id": "s-1" }))
        .await
        .unwrap();

    let (st, b) = g.f.end(&task_id, "revoke", &g.f.s.token, None).await;
    assert_eq!(st, StatusCode::OK, "{b}");

    let e = call(&client, "lookup_supplier", json!({ "id": "s-2" }))
        .await
        .unwrap_err();
    assert_eq!(e.code, mandate_gateway::DENIED);
    // Revoking the task revoked its credential: refused at the first step.
    assert!(e.message.contains("revoked"), "{}", e.message);
    assert!(client.list_all_tools().await.unwrap().is_empty());
    assert_eq!(*g.calls.lock().unwrap(), ["lookup_supplier s-1"]);
}

async fn an_upstream_that_is_down_gets_a_clear_error_and_is_audited(t: TestStore) {
    let g = setup(t).await;
    let (token, _) = task(&g.f).await;
    let client = agent(&g.gateway, &token).await;
    let e = call(&client, "lookup_archive", json!({ "id": "a-1" }))
        .await
        .unwrap_err();
    assert_eq!(e.code, mandate_gateway::UPSTREAM_UNAVAILABLE);
    assert!(e.message.contains("upstream down"), "{}", e.message);
    let calls = events(&g.f, "gateway.call").await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["details"]["status"]["kind"], "unreachable");
    let decided = events(&g.f, "decision.made").await;
    assert_eq!(decided[0]["details"]["decision"], "allow");
}

async fn requests_without_a_good_credential_or_with_bad_messages_are_refused(t: TestStore) {
    let g = setup(t).await;
    let http = reqwest::Client::new();
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } } });
    let post = |token: Option<&str>, body: String| {
        let mut r = http
            .post(format!("{}/mcp", g.gateway))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };

    for token in [None, Some("not-a-token")] {
        let res = post(token, init.to_string()).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let challenge = res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.contains(
                "resource_metadata=\"http://127.0.0.1:8090/.well-known/oauth-protected-resource\""
            ),
            "{challenge}"
        );
        assert_eq!(token.is_some(), challenge.contains("invalid_token"));
    }
    let meta: Value = http
        .get(format!(
            "{}/.well-known/oauth-protected-resource",
            g.gateway
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["resource"], "http://127.0.0.1:8090/mcp");
    assert_eq!(
        meta["authorization_servers"],
        json!(["http://127.0.0.1:8080"])
    );

    let (token, _) = task(&g.f).await;
    for (bad, code) in [
        ("{ not json".to_owned(), -32700),
        (json!([init]).to_string(), -32600),
        (
            json!({ "jsonrpc": "1.0", "id": 1, "method": "tools/list" }).to_string(),
            -32600,
        ),
        (
            json!({ "jsonrpc": "2.0", "id": 1, "method": 7 }).to_string(),
            -32600,
        ),
        (json!({ "jsonrpc": "2.0", "id": 1 }).to_string(), -32600),
    ] {
        let res = post(Some(&token), bad.clone()).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{bad}: {body}");
    }

    let huge = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": { "pad": "x".repeat(70_000) } });
    let res = post(Some(&token), huge.to_string()).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("65536"),
        "{body}"
    );
    assert!(g.calls.lock().unwrap().is_empty());
}

async fn the_http_proxy_injects_rotates_and_scrubs_the_secret(t: TestStore) {
    let g = setup(t).await;
    let (token, _) = task(&g.f).await;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("{}{path}", g.gateway))
            .bearer_auth(&token)
            .send()
    };

    let res = get("/billing/invoices/inv-7?expand=lines").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let echoed = res.headers()["x-echo-key"].to_str().unwrap().to_owned();
    let body = res.text().await.unwrap();
    assert!(
        !body.contains(SECRET_V1) && !echoed.contains(SECRET_V1),
        "{body}"
    );
    assert!(body.contains("[redacted by mandate]"), "{body}");
    let seen = g.api_seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(seen["x-api-key"], SECRET_V1);
    assert!(
        seen.get("authorization").is_none(),
        "the agent's token was forwarded"
    );

    // Rotation: the agent changes nothing.
    let (st, info) = put_secret(&g.f, SECRET_V2).await;
    assert_eq!((st, info["version"].as_u64()), (StatusCode::OK, Some(2)));
    *g.api_key.lock().unwrap() = SECRET_V2.to_owned();
    let res = get("/billing/invoices/inv-8").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!res.text().await.unwrap().contains(SECRET_V2));

    // Outside the scope: refused with the reason, nothing forwarded.
    let before = g.api_seen.lock().unwrap().len();
    let res = http
        .delete(format!("{}/billing/invoices/inv-8", g.gateway))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (st, b) = read(res).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    assert!(
        b["detail"].as_str().unwrap().contains("outside_task_scope"),
        "{b}"
    );
    // (HTTP clients resolve a literal `..` themselves; the unit tests cover it.)
    for sneaky in ["/billing/a%2Fb", "/billing/*", "/billing/a//b"] {
        let (st, _) = read(get(sneaky).await.unwrap()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{sneaky}");
    }
    assert_eq!(g.api_seen.lock().unwrap().len(), before);
    // A body the gateway will not forward is refused before any decision.
    let decisions = events(&g.f, "decision.made").await.len();
    let res = http
        .get(format!("{}/billing/invoices/inv-9", g.gateway))
        .bearer_auth(&token)
        .body("x".repeat(70_000))
        .send()
        .await
        .unwrap();
    let (st, _) = read(res).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    let (st, _) = read(
        http.post(format!("{}/billing/x", g.gateway))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(events(&g.f, "decision.made").await.len(), decisions);

    let log = entries(&g.f).await.join("\n");
    for secret in [SECRET_V1, SECRET_V2] {
        assert!(!log.contains(secret), "a secret is in the audit log");
    }
    let calls = events(&g.f, "gateway.call").await;
    let statuses: Vec<_> = calls
        .iter()
        .map(|c| c["details"]["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        [
            json!({"kind": "answered", "status": 200}),
            json!({"kind": "answered", "status": 200}),
            json!({"kind": "refused"})
        ]
    );
    assert_eq!(calls[0]["details"]["target"], "GET /billing/invoices/inv-7");
}

async fn dpop_bound_tokens_need_a_fresh_proof_for_each_request(t: TestStore) {
    let g = setup(t).await;
    let holder = ed25519_dalek::SigningKey::from_bytes(&[77; 32]);
    let token_url = format!("{}/oauth2/token", g.f.s.base);
    let proof = mandate_core::dpop::mint_proof(&holder, "POST", &token_url, None, now(), &unique());
    let details = json!([{ "type": "mandate_task", "purpose": "read invoices",
        "actions": ["procurement.read"], "resources": ["erp:*"] }]);
    let (st, b) =
        g.f.root(
            &g.f.id_token("alice"),
            &g.f.agent("orchestrator", ORCH),
            details,
            Some(proof),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let token = token_of(&b);
    let url = format!("{}/billing/invoices/inv-1", g.gateway);
    let http = reqwest::Client::new();
    let send = |proof: Option<String>| {
        let mut r = http
            .get(&url)
            .header("Authorization", format!("DPoP {token}"));
        if let Some(p) = proof {
            r = r.header("DPoP", p);
        }
        r.send()
    };
    let proof = |key: &ed25519_dalek::SigningKey| {
        mandate_core::dpop::mint_proof(key, "GET", &url, Some(&token), now(), &unique())
    };

    let good = proof(&holder);
    let res = send(Some(good.clone())).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let thief = ed25519_dalek::SigningKey::from_bytes(&[78; 32]);
    for (attempt, code) in [
        (None, "dpop_required"),
        (Some(good), "dpop_invalid"),
        (Some(proof(&thief)), "dpop_mismatch"),
    ] {
        let (st, b) = read(send(attempt).await.unwrap()).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
        assert!(b["detail"].as_str().unwrap().contains(code), "{code}: {b}");
    }
    assert_eq!(
        g.api_seen.lock().unwrap().len(),
        1,
        "a refused request was forwarded"
    );
}

mandate_store::backend_tests!(
    dpop_bound_tokens_need_a_fresh_proof_for_each_request,
    tools_are_listed_and_called_only_within_scope_and_policy,
    approval_gated_calls_succeed_once_approved,
    a_revoked_task_is_refused_mid_session,
    an_upstream_that_is_down_gets_a_clear_error_and_is_audited,
    requests_without_a_good_credential_or_with_bad_messages_are_refused,
    the_http_proxy_injects_rotates_and_scrubs_the_secret,
);
