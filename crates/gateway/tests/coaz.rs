//! The gateway as a COAZ enforcement point, end to end on both storage
//! backends: an MCP server (rmcp) whose tools declare `x-authzen-mapping`,
//! an external AuthZEN decision point stand-in on 127.0.0.1 that records
//! what it was asked, Mandate's own pipeline as the other decision point,
//! and agents on rmcp's client and on the official Python SDK (`mcp`).

#[path = "../../server/tests/common/mod.rs"]
mod common;
mod session;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::fixture::*;
use common::spawn;
use mandate_gateway::{Gateway, GatewayConfig};
use mandate_store::testing::TestStore;
use reqwest::StatusCode;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, InitializeResult,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use session::{agent, call, call_decisions, events, tool_names};

const POLICY: &str = include_str!("../../policy/examples/default.cedar");
const PDP_SECRET: &str = "pdp-bearer-3c1e";
/// The Python MCP SDK the end-to-end test drives (PyPI `mcp`).
const PY_MCP: &str = "mcp==2.3.0";

// ---- the upstream MCP server: tools that declare their mappings ----------------------

fn tool(name: &'static str, props: Value, mapping: Option<Value>) -> Tool {
    let mut schema = json!({ "type": "object", "properties": props });
    if let Some(m) = mapping {
        schema["x-authzen-mapping"] = m;
    }
    let schema: JsonObject = serde_json::from_value(schema).unwrap();
    Tool::new(name, format!("{name} (test tool)"), Arc::new(schema))
}

/// The draft's own example tools, and a few that try their luck.
fn crm_tools() -> Vec<Tool> {
    let s = json!({ "type": "string" });
    vec![
        tool(
            "get_customer",
            json!({ "id": s, "case": s }),
            Some(json!({ "evaluation": {
                "subject": { "type": "identity", "id": "$token.sub" },
                "action": { "name": "get_customer" },
                "resource": { "type": "customer", "id": "$params.arguments.id" },
                "context": { "agent": "$token.?client_id", "case": "$params.arguments.?case" } } })),
        ),
        tool(
            "copy_object",
            json!({ "source": s, "destination": s }),
            Some(json!({ "evaluations": {
                "subject": { "type": "identity", "id": "$token.sub" },
                "context": { "agent": "$token.?client_id" },
                "evaluations": [
                    { "action": { "name": "read" }, "resource": { "type": "storage_object", "id": "$params.arguments.source" } },
                    { "action": { "name": "write" }, "resource": { "type": "storage_object", "id": "$params.arguments.destination" } } ] } })),
        ),
        tool("get_local_weather", json!({ "zip": s }), None),
        // Lets the caller name the acting agent: refused as a mapping error.
        tool(
            "spoof_agent",
            json!({ "id": s, "agent": s }),
            Some(json!({ "evaluation": {
                "action": { "name": "get_customer" },
                "resource": { "type": "customer", "id": "$params.arguments.id" },
                "context": { "agent": "$params.arguments.agent" } } })),
        ),
        // Two envelopes: malformed.
        tool(
            "broken",
            json!({}),
            Some(json!({ "evaluation": {}, "evaluations": {} })),
        ),
        tool(
            "delete_customer",
            json!({ "id": s }),
            Some(json!({ "evaluation": {
                "action": { "name": "delete_customer" },
                "resource": { "type": "customer", "id": "$params.arguments.id" } } })),
        ),
        // AuthZEN's `||`: either decision is enough.
        delete_or_get("either_customer", "permit_on_first_permit"),
        // AuthZEN's `&&`, stopping at the first deny.
        delete_or_get("both_customer", "deny_on_first_deny"),
    ]
}

/// A tool that asks two decisions on one customer, `delete_customer` then
/// `get_customer`, adding up by `semantic`.
fn delete_or_get(name: &'static str, semantic: &str) -> Tool {
    tool(
        name,
        json!({ "id": { "type": "string" } }),
        Some(json!({ "evaluations": {
            "options": { "evaluations_semantic": semantic },
            "resource": { "type": "customer", "id": "$params.arguments.id" },
            "evaluations": [
                { "action": { "name": "delete_customer" } },
                { "action": { "name": "get_customer" } } ] } })),
    )
}

#[derive(Clone)]
struct Crm {
    calls: Arc<Mutex<Vec<String>>>,
}

impl ServerHandler for Crm {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(crm_tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = Value::Object(request.arguments.unwrap_or_default());
        let line = format!("{} {args}", request.name);
        self.calls.lock().unwrap().push(line.clone());
        Ok(CallToolResponse::Complete(CallToolResult::success(vec![
            ContentBlock::text(format!("done: {line}")),
        ])))
    }
}

async fn upstream(calls: Arc<Mutex<Vec<String>>>) -> String {
    let service = StreamableHttpService::new(
        move || {
            Ok(Crm {
                calls: calls.clone(),
            })
        },
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default(),
    );
    spawn(axum::Router::new().nest_service("/mcp", service)).await
}

// ---- the external AuthZEN decision point stand-in -----------------------------------

/// How the stand-in answers.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Permits everything except `write`, `delete_customer` and `cust-denied`.
    Policy,
    Status(u16),
    Garbage,
    /// Answers after this many milliseconds (longer than the gateway waits).
    Slow(u64),
}

/// One request to the stand-in: path, `Authorization` header, body.
type Asked = (String, Option<String>, Value);

#[derive(Clone)]
struct Pdp {
    asked: Arc<Mutex<Vec<Asked>>>,
    mode: Arc<Mutex<Mode>>,
}

fn permits(action: &Value, resource: &Value) -> bool {
    let denied = ["write", "delete_customer"];
    !denied.iter().any(|d| action["name"] == *d) && resource["id"] != "cust-denied"
}

fn answer(permit: bool) -> Value {
    if permit {
        json!({ "decision": true })
    } else {
        json!({ "decision": false, "context": { "reason_user": { "en": "not for this agent" } } })
    }
}

impl Pdp {
    async fn start() -> (Pdp, String) {
        let pdp = Pdp {
            asked: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Policy)),
        };
        let p = pdp.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let p = p.clone();
            async move {
                let path = req.uri().path().to_owned();
                let auth = req
                    .headers()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned());
                let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                p.asked
                    .lock()
                    .unwrap()
                    .push((path.clone(), auth, body.clone()));
                let mode = *p.mode.lock().unwrap();
                let ok = |v: Value| (axum::http::StatusCode::OK, v.to_string());
                match mode {
                    Mode::Status(s) => (axum::http::StatusCode::from_u16(s).unwrap(), "{}".into()),
                    Mode::Garbage => ok(json!({ "verdict": "yes" })),
                    Mode::Slow(ms) => {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        ok(answer(true))
                    }
                    Mode::Policy if path == "/access/v1/evaluations" => {
                        // AuthZEN's semantics: stop where the option says.
                        let semantic = body["options"]["evaluations_semantic"].as_str();
                        let mut items = Vec::new();
                        for e in body["evaluations"].as_array().unwrap() {
                            let action = e.get("action").unwrap_or(&body["action"]);
                            let resource = e.get("resource").unwrap_or(&body["resource"]);
                            let permit = permits(action, resource);
                            items.push(answer(permit));
                            match (semantic, permit) {
                                (Some("deny_on_first_deny"), false)
                                | (Some("permit_on_first_permit"), true) => break,
                                _ => {}
                            }
                        }
                        ok(json!({ "evaluations": items }))
                    }
                    Mode::Policy => ok(answer(permits(&body["action"], &body["resource"]))),
                }
            }
        });
        let url = spawn(app).await;
        (pdp, url)
    }

    fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

// ---- the gateway ---------------------------------------------------------------------

/// Who decides the gateway's COAZ requests in a test.
#[derive(Clone, Copy, PartialEq)]
enum Decider {
    /// Mandate's pipeline, in process (no `[decision_point]`).
    Pipeline,
    /// The recording stand-in PDP.
    StandIn,
    /// A Mandate server on loopback as the external PDP, given the agent's
    /// task token (`send_task_token`), or not.
    MandateServer { send_task_token: bool },
}

fn config(mcp: &str, pdp: Option<&str>, send_task_token: bool) -> String {
    let dp = pdp
        .map(|url| {
            format!("[decision_point]\nurl = \"{url}\"\nsecret = \"pdp-token\"\ntimeout_ms = 400\nsend_task_token = {send_task_token}\n")
        })
        .unwrap_or_default();
    format!(
        r#"
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:8090"
authorization_server = "http://127.0.0.1:8080"
upstream_timeout_ms = 3000
{dp}
[[mcp]]
name = "crm"
url = "{mcp}/mcp"
coaz = true
record_arguments = true
"#
    )
}

struct Setup {
    f: Fixture,
    gateway: String,
    calls: Arc<Mutex<Vec<String>>>,
    pdp: Option<Pdp>,
}

async fn setup(t: TestStore, decider: Decider) -> Setup {
    let f = Fixture::new(t).await;
    let (st, b) = f.s.post("/v1/policies", json!({ "text": POLICY })).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let res =
        f.s.req(reqwest::Method::PUT, "/v1/secrets/pdp-token")
            .json(&json!({ "value": PDP_SECRET }))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let calls = Arc::default();
    let mcp = upstream(Arc::clone(&calls)).await;
    let (pdp, url, send) = match decider {
        Decider::Pipeline => (None, None, false),
        Decider::StandIn => {
            let (p, u) = Pdp::start().await;
            (Some(p), Some(u), false)
        }
        Decider::MandateServer { send_task_token } => {
            (None, Some(f.s.base.clone()), send_task_token)
        }
    };
    let config = GatewayConfig::parse(&config(&mcp, url.as_deref(), send)).unwrap();
    let gw = Gateway::new(f.s.state.clone(), config).unwrap();
    let gateway = spawn(mandate_gateway::router(gw)).await;
    Setup {
        f,
        gateway,
        calls,
        pdp,
    }
}

/// A root task for the orchestrator; its token and claims.
async fn task(f: &Fixture, details: Value) -> (String, Value) {
    task_for(f, "orchestrator", ORCH, details).await
}

async fn task_for(f: &Fixture, agent: &str, seed: u8, details: Value) -> (String, Value) {
    let (st, b) = f
        .root(&f.id_token("alice"), &f.agent(agent, seed), details, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let token = token_of(&b);
    let payload = token.split('.').nth(1).unwrap();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    (token, serde_json::from_slice(&claims).unwrap())
}

fn any_scope() -> Value {
    json!([{ "type": "mandate_task", "purpose": "look after customers",
        "actions": ["procurement.read"], "resources": ["erp:*"] }])
}

fn anchored(claims: &Value) -> (Value, Value) {
    (
        json!({ "type": "identity", "id": claims["sub"] }),
        claims["client_id"].clone(),
    )
}

/// A call the gateway let through and the upstream answered.
async fn answered(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    tool: &str,
    args: Value,
) {
    let r = call(client, tool, args).await.unwrap();
    let text = serde_json::to_string(&r.content).unwrap();
    assert!(text.contains(&format!("done: {tool}")), "{text}");
}

/// `spoof_agent` called with another agent in its arguments: a mapping
/// error (-32602), refused by the gateway before any decision point.
async fn spoofing_agent(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    id: &str,
) -> ErrorData {
    let e = call(
        client,
        "spoof_agent",
        json!({ "id": id, "agent": "spiffe://evil/agent/x" }),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code.0, -32602, "{}", e.message);
    e
}

// ---- cases ---------------------------------------------------------------------------

async fn an_external_pdp_decides_what_the_servers_mappings_ask(t: TestStore) {
    let g = setup(t, Decider::StandIn).await;
    let pdp = g.pdp.as_ref().unwrap();
    let (token, claims) = task(&g.f, any_scope()).await;
    let (subject, agent_id) = anchored(&claims);
    assert!(
        agent_id.as_str().unwrap().starts_with("spiffe://"),
        "{claims}"
    );
    let client = agent(&g.gateway, &token).await;

    // tools/list is itself decided (the default mapping), and the agent sees
    // the server's declared mappings as the server wrote them.
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "both_customer",
            "broken",
            "copy_object",
            "delete_customer",
            "either_customer",
            "get_customer",
            "get_local_weather",
            "spoof_agent"
        ]
    );
    for t in &tools {
        let upstream = crm_tools().into_iter().find(|u| u.name == t.name).unwrap();
        assert_eq!(
            t.input_schema.get("x-authzen-mapping"),
            upstream.input_schema.get("x-authzen-mapping"),
            "{} is advertised as declared",
            t.name
        );
    }
    // The session's initialize and the listing were decided first, by
    // their default mappings, with the anchored identities.
    let asked = pdp.asked();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[0].0, "/access/v1/evaluation");
    assert_eq!(
        asked[0].1.as_deref(),
        Some(format!("Bearer {PDP_SECRET}").as_str())
    );
    assert_eq!(asked[0].2["action"], json!({ "name": "initialize" }));
    assert_eq!(asked[0].2["subject"], subject);
    assert_eq!(asked[0].2["context"]["agent"], agent_id);
    assert!(
        asked[0].2["context"]["protocol_version"].is_string(),
        "{:?}",
        asked[0]
    );
    assert_eq!(
        asked[1].2,
        json!({ "subject": subject, "context": { "agent": agent_id },
                "action": { "name": "tools/list" },
                "resource": { "type": "mcp_server", "id": claims["aud"] } })
    );

    // A declared evaluation mapping: exactly the request the draft describes.
    answered(
        &client,
        "get_customer",
        json!({ "id": "cust-12345", "case": "case-67890" }),
    )
    .await;
    assert_eq!(
        pdp.asked()[2].2,
        json!({ "subject": subject, "action": { "name": "get_customer" },
                "resource": { "type": "customer", "id": "cust-12345" },
                "context": { "agent": agent_id, "case": "case-67890" } })
    );

    // No mapping: the default tools/call mapping.
    call(&client, "get_local_weather", json!({ "zip": "10001" }))
        .await
        .unwrap();
    assert_eq!(
        pdp.asked()[3].2,
        json!({ "subject": subject, "context": { "agent": agent_id },
                "action": { "name": "tools/call" },
                "resource": { "type": "tool", "id": "get_local_weather" } })
    );

    // The evaluations envelope goes to the Access Evaluations API; one deny refuses.
    let e = call(
        &client,
        "copy_object",
        json!({ "source": "/b/q1.pdf", "destination": "/b/archive/q1.pdf" }),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code.0, -32001, "{}", e.message);
    let (path, _, body) = pdp.asked()[4].clone();
    assert_eq!(path, "/access/v1/evaluations");
    assert_eq!(body["evaluations"].as_array().unwrap().len(), 2);
    assert_eq!(body["subject"], subject);
    assert_eq!(body["context"], json!({ "agent": agent_id }));
    let data = e.data.unwrap();
    assert_eq!(data["decision"], "deny");
    assert_eq!(
        data["pdp_context"],
        json!({ "reason_user": { "en": "not for this agent" } })
    );
    assert_eq!(data["reasons"][0]["code"], "authzen_pdp");

    let e = call(&client, "get_customer", json!({ "id": "cust-denied" }))
        .await
        .unwrap_err();
    assert_eq!(e.code.0, -32001);

    // Mapping errors: -32602, and the decision point is not asked.
    let before = pdp.asked().len();
    let e = spoofing_agent(&client, "cust-1").await;
    assert!(
        e.message.contains(
            "context.agent resolved to 'spiffe://evil/agent/x' but the agent-identity claim is"
        ),
        "{}",
        e.message
    );
    let e = call(&client, "broken", json!({})).await.unwrap_err();
    assert_eq!(e.code.0, -32602);
    assert!(e.message.contains("exactly one member"), "{}", e.message);
    let e = call(&client, "copy_object", json!({ "source": "/b/a" }))
        .await
        .unwrap_err();
    assert_eq!(
        e.code.0, -32602,
        "a missing argument is a mapping error: {}",
        e.message
    );
    assert_eq!(pdp.asked().len(), before, "a mapping error reached the PDP");

    // Methods the gateway does not serve are gated too: an unknown one is
    // denied without asking; a mapped one is asked by its default mapping.
    let raw = |body: Value| {
        reqwest::Client::new()
            .post(format!("{}/mcp", g.gateway))
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .json(&body)
            .send()
    };
    let res = raw(json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/delete_all" }))
        .await
        .unwrap();
    let b: Value = res.json().await.unwrap();
    assert_eq!(
        (b["id"].clone(), b["error"]["code"].clone()),
        (json!(7), json!(-32001)),
        "{b}"
    );
    assert_eq!(
        pdp.asked().len(),
        before,
        "an unknown method was sent to the PDP"
    );
    raw(json!({ "jsonrpc": "2.0", "id": 8, "method": "resources/read", "params": { "uri": "file:///q1.pdf" } }))
        .await
        .unwrap();
    let asked = pdp.asked();
    assert_eq!(asked.len(), before + 1);
    assert_eq!(
        asked[before].2["resource"],
        json!({ "type": "resource", "id": "file:///q1.pdf" })
    );
    assert_eq!(asked[before].2["subject"], subject);

    assert_eq!(
        *g.calls.lock().unwrap(),
        [
            r#"get_customer {"id":"cust-12345","case":"case-67890"}"#,
            r#"get_local_weather {"zip":"10001"}"#
        ]
    );
    // Every decided call is audited: the PDP's verdict and the call.
    let decisions = call_decisions(&g.f).await;
    let verdicts: Vec<&str> = decisions
        .iter()
        .map(|d| d["details"]["decision"].as_str().unwrap())
        .collect();
    // The tool calls, then the `resources/read` the gateway gated.
    assert_eq!(
        verdicts,
        ["allow", "allow", "allow", "deny", "deny", "allow"]
    );
    assert!(
        decisions
            .iter()
            .all(|d| d["details"]["reasons"][0]["code"] == "authzen_pdp")
    );
    assert_eq!(decisions[0]["details"]["action"], "get_customer");
    assert_eq!(decisions[0]["details"]["resource"], "cust-12345");
    assert_eq!(decisions[5]["details"]["action"], "resources/read");
    assert_eq!(decisions[5]["details"]["resource"], "file:///q1.pdf");
    let calls = events(&g.f, "gateway.call").await;
    let statuses: Vec<&str> = calls
        .iter()
        .map(|c| c["details"]["status"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["answered", "answered", "refused", "refused"]);
    assert_eq!(
        calls[2]["details"]["decision"],
        decisions[3]["details"]["decision_id"]
    );

    // `options` go to the PDP as the mapping wrote them, and its answers add
    // up by them: `||` is allowed by its second answer; `&&` is refused by
    // its first, the only one this PDP gives when it stops at a deny.
    let n = pdp.asked().len();
    call(&client, "either_customer", json!({ "id": "cust-9" }))
        .await
        .unwrap();
    let (path, _, body) = pdp.asked()[n].clone();
    assert_eq!(path, "/access/v1/evaluations");
    assert_eq!(
        body["options"],
        json!({ "evaluations_semantic": "permit_on_first_permit" })
    );
    assert_eq!(
        (body["subject"].clone(), body["context"]["agent"].clone()),
        (subject, agent_id)
    );
    let e = call(&client, "both_customer", json!({ "id": "cust-9" }))
        .await
        .unwrap_err();
    assert_eq!(e.code.0, -32001, "{}", e.message);
    assert_eq!(
        pdp.asked()[n + 1].2["options"],
        json!({ "evaluations_semantic": "deny_on_first_deny" })
    );
    // After the five tool-call decisions and the `resources/read` above.
    let verdicts: Vec<String> = call_decisions(&g.f).await[6..]
        .iter()
        .map(|d| d["details"]["decision"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(verdicts, ["deny", "allow", "deny"]);
    assert_eq!(g.calls.lock().unwrap().len(), 3);
}

async fn a_pdp_that_fails_refuses_the_call(t: TestStore) {
    let g = setup(t, Decider::StandIn).await;
    let pdp = g.pdp.as_ref().unwrap();
    let (token, _) = task(&g.f, any_scope()).await;
    let client = agent(&g.gateway, &token).await;
    for (mode, why) in [
        (Mode::Status(503), "HTTP 503"),
        (Mode::Status(401), "HTTP 401"),
        (Mode::Garbage, "not an AuthZEN decision"),
        (Mode::Slow(1500), "did not answer within 400 ms"),
    ] {
        pdp.set(mode);
        let e = call(&client, "get_customer", json!({ "id": "cust-1" }))
            .await
            .unwrap_err();
        assert_eq!(e.code.0, -32603, "{}", e.message);
        assert!(
            e.message.contains("pdp_unavailable") && e.message.contains(why),
            "{why}: {}",
            e.message
        );
        assert_eq!(e.data.unwrap()["decision"], "deny");
    }
    // A new session's initialize is refused too.
    let mut cfg = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", g.gateway));
    cfg.auth_header = Some(token.clone());
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), cfg);
    assert!(
        ().serve(transport).await.is_err(),
        "initialize passed a failing PDP"
    );
    // A failing listing is refused too, not shown unchecked.
    let e = client.list_all_tools().await.unwrap_err();
    assert!(
        e.to_string().contains("-32603") || e.to_string().contains("decision point"),
        "{e}"
    );
    assert!(
        g.calls.lock().unwrap().is_empty(),
        "a call went through a failing PDP"
    );
    let decisions = call_decisions(&g.f).await;
    assert_eq!(decisions.len(), 4);
    assert!(decisions.iter().all(|d| d["details"]["decision"] == "deny"
        && d["details"]["reasons"][0]["code"] == "pdp_unavailable"));
    assert_eq!(events(&g.f, "gateway.call").await.len(), 4);
}

async fn mandates_pipeline_decides_coaz_tools_by_default(t: TestStore) {
    let g = setup(t, Decider::Pipeline).await;
    let (token, _) = crm_task(&g.f, &[]).await;
    let client = agent(&g.gateway, &token).await;
    let names = tool_names(&client).await;
    // copy_object, delete_customer and both_customer can never be in this
    // task's scope; either_customer needs only one of its decisions.
    assert_eq!(
        names,
        [
            "broken",
            "either_customer",
            "get_customer",
            "get_local_weather",
            "spoof_agent"
        ]
    );

    for (tool, args) in [
        ("get_customer", json!({ "id": "cust-7" })),
        ("get_local_weather", json!({ "zip": "10001" })),
    ] {
        answered(&client, tool, args).await;
    }
    let e = call(&client, "delete_customer", json!({ "id": "cust-7" }))
        .await
        .unwrap_err();
    assert_eq!(e.code.0, -32001);
    assert!(e.message.contains("outside_task_scope"), "{}", e.message);
    let e = call(&client, "get_customer", json!({ "id": "other-7" }))
        .await
        .unwrap_err();
    assert_eq!(e.code.0, -32001);
    let e = call(
        &client,
        "spoof_agent",
        json!({ "id": "cust-7", "agent": "someone" }),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code.0, -32602);
    let decisions = call_decisions(&g.f).await;
    assert_eq!(decisions.len(), 4, "a mapping error was decided");
    assert_eq!(decisions[0]["details"]["action"], "get_customer");
    assert_eq!(decisions[0]["details"]["resource"], "cust-7");
    assert_eq!(decisions[1]["details"]["action"], "mcp.tools.call");
    assert_eq!(decisions[1]["details"]["resource"], "get_local_weather");
    assert_eq!(g.calls.lock().unwrap().len(), 2);

    // `options` are honoured: `||` is allowed by its second decision, `&&`
    // stops at its first deny (one decision made, not two).
    answered(&client, "either_customer", json!({ "id": "cust-7" })).await;
    let e = call(&client, "both_customer", json!({ "id": "cust-7" }))
        .await
        .unwrap_err();
    assert_eq!(e.code.0, -32001);
    assert!(e.message.contains("outside_task_scope"), "{}", e.message);
    let decisions = call_decisions(&g.f).await;
    let made: Vec<(&str, &str)> = decisions[4..]
        .iter()
        .map(|d| {
            (
                d["details"]["action"].as_str().unwrap(),
                d["details"]["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        made,
        [
            ("delete_customer", "deny"),
            ("get_customer", "allow"),
            ("delete_customer", "deny")
        ]
    );
    assert_eq!(g.calls.lock().unwrap().len(), 3);
}

/// An agent whose ceiling names the CRM's actions as its mappings write
/// them, and a task for it: `get_customer` on `cust-*`, `mcp.tools.call` on
/// `get_local_weather`, and `extra` grants (action, resource).
async fn crm_task(f: &Fixture, extra: &[(&str, &str)]) -> (String, Value) {
    const CRM_AGENT: u8 = 31;
    let mut grants = vec![
        ("get_customer", "cust-*"),
        ("mcp.tools.call", "get_local_weather"),
    ];
    grants.extend_from_slice(extra);
    let mut ceiling: Vec<Value> = grants
        .iter()
        .map(|(a, r)| json!({ "action": a, "resource": r }))
        .collect();
    ceiling.push(json!({ "action": "delete_customer", "resource": "cust-*" }));
    let (st, b) =
        f.s.post(
            "/v1/agents",
            json!({ "name": "crm-agent", "kind": "agent", "owner": f.alice, "description": "crm",
                "ceiling": ceiling, "keys": [common::jwk(CRM_AGENT)], "tags": [] }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let details: Vec<Value> = grants
        .iter()
        .map(|(a, r)| {
            json!({ "type": "mandate_task", "purpose": "look after customers",
                    "actions": [a], "resources": [r] })
        })
        .collect();
    task_for(f, "crm-agent", CRM_AGENT, Value::Array(details)).await
}

/// One JSON-RPC request straight to the gateway (no MCP session): what the
/// gateway's COAZ gate answers, before any MCP server reads it.
async fn raw(gateway: &str, token: &str, body: Value) -> Value {
    let res = reqwest::Client::new()
        .post(format!("{gateway}/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&body)
        .send()
        .await
        .unwrap();
    let text = res.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

async fn mandates_pipeline_decides_every_mcp_method(t: TestStore) {
    let g = setup(t, Decider::Pipeline).await;
    let (token, claims) = crm_task(&g.f, &[("mcp.resources.read", "file:///docs/*")]).await;
    let task_id: mandate_core::ids::TaskId = claims["task_id"].as_str().unwrap().parse().unwrap();
    // A task scoped to its tools still opens a session and lists: session
    // methods need no scope grant.
    let client = agent(&g.gateway, &token).await;
    assert!(
        tool_names(&client)
            .await
            .contains(&"get_customer".to_owned())
    );
    // Session methods are recorded like every decision; nothing else was decided.
    let sessions: Vec<(String, String)> = events(&g.f, "decision.made")
        .await
        .iter()
        .map(|d| {
            let v = |k: &str| d["details"][k].as_str().unwrap().to_owned();
            (v("action"), v("decision"))
        })
        .collect();
    for action in ["mcp.initialize", "mcp.tools.list"] {
        assert!(
            sessions.contains(&(action.to_owned(), "allow".to_owned())),
            "{action} is recorded: {sessions:?}"
        );
    }
    assert!(call_decisions(&g.f).await.is_empty());
    assert_eq!(
        g.f.s.state.store.calls_used(task_id).await.unwrap(),
        0,
        "session methods spend none of the task's calls"
    );

    let rpc = |id: u32, method: &str, params: Value| json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
    // Every other method is a decision of `mcp.<method>` on the resource its
    // default mapping names: in scope, it passes the gate (this gateway then
    // serves only tools); out of scope, a recorded deny.
    let b = raw(
        &g.gateway,
        &token,
        rpc(1, "resources/read", json!({ "uri": "file:///docs/a.txt" })),
    )
    .await;
    assert_ne!(b["error"]["code"], -32001, "{b}");
    assert_ne!(b["error"]["code"], -32602, "{b}");
    for (id, method, params, code, why) in [
        (
            2,
            "resources/read",
            json!({ "uri": "file:///etc/passwd" }),
            -32001,
            "outside_task_scope",
        ),
        (
            3,
            "prompts/get",
            json!({ "name": "summarise" }),
            -32001,
            "outside_task_scope",
        ),
        (
            4,
            "tasks/get",
            json!({ "taskId": "t-1" }),
            -32001,
            "outside_task_scope",
        ),
        // Unknown methods are denied without a decision; bad resources are mapping errors.
        (5, "tools/delete_all", json!({}), -32001, "no COAZ mapping"),
        (
            6,
            "resources/read",
            json!({ "uri": "file:///docs/*" }),
            -32602,
            "wildcard",
        ),
        (7, "resources/read", json!({}), -32602, "uri"),
    ] {
        let b = raw(&g.gateway, &token, rpc(id, method, params)).await;
        assert_eq!(b["id"], id, "{b}");
        assert_eq!(b["error"]["code"], code, "{method}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(why),
            "{method}: {b}"
        );
    }
    let decisions = call_decisions(&g.f).await;
    let made: Vec<(&str, &str, &str)> = decisions
        .iter()
        .map(|d| {
            let d = &d["details"];
            (
                d["action"].as_str().unwrap(),
                d["resource"].as_str().unwrap(),
                d["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        made,
        [
            ("mcp.resources.read", "file:///docs/a.txt", "allow"),
            ("mcp.resources.read", "file:///etc/passwd", "deny"),
            ("mcp.prompts.get", "summarise", "deny"),
            ("mcp.tasks.get", "t-1", "deny"),
        ]
    );

    // A policy may forbid a session method: here, listing tools.
    let no_listing = format!(
        "{POLICY}\n@id(\"no-tool-listing\")\nforbid (principal, action == Mandate::Action::\"mcp.tools.list\", resource);\n"
    );
    let (st, b) =
        g.f.s
            .post("/v1/policies", json!({ "text": no_listing }))
            .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let e = client.list_all_tools().await.unwrap_err().to_string();
    assert!(
        e.contains("no-tool-listing") || e.contains("policy_forbid"),
        "{e}"
    );
    // (tools/list is decided in the MCP session, where the listing is made.)

    // A revoked task cannot open a session any more.
    let task = decisions[0]["details"]["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, b) =
        g.f.s
            .post(&format!("/v1/tasks/{task}/revoke"), json!({}))
            .await;
    assert!(st.is_success(), "{b}");
    let b = raw(
        &g.gateway,
        &token,
        rpc(
            9,
            "initialize",
            json!({ "protocolVersion": "2025-06-18",
        "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } }),
        ),
    )
    .await;
    assert_eq!(b["error"]["code"], -32001, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("revoked"),
        "{b}"
    );
}

/// A gateway whose external PDP is the fixture's Mandate server, and a CRM
/// task's token and claims.
async fn behind_mandate_as_pdp(t: TestStore, send_task_token: bool) -> (Setup, String, Value) {
    let g = setup(t, Decider::MandateServer { send_task_token }).await;
    let (token, claims) = crm_task(&g.f, &[]).await;
    (g, token, claims)
}

async fn mandate_is_the_decision_point_of_a_coaz_gateway(t: TestStore) {
    let (g, token, claims) = behind_mandate_as_pdp(t, true).await;
    let client = agent(&g.gateway, &token).await;
    // initialize and tools/list were asked of Mandate (session methods), and
    // an external PDP's listing is not filtered tool by tool.
    assert_eq!(tool_names(&client).await.len(), 8);

    for (tool, args) in [
        ("get_customer", json!({ "id": "cust-7" })),
        ("get_local_weather", json!({ "zip": "10001" })),
        ("either_customer", json!({ "id": "cust-7" })),
    ] {
        answered(&client, tool, args).await;
    }
    for (tool, id, why) in [
        ("delete_customer", "cust-7", "outside_task_scope"),
        ("get_customer", "other-7", "outside_task_scope"),
        ("both_customer", "cust-7", "outside_task_scope"),
    ] {
        let e = call(&client, tool, json!({ "id": id })).await.unwrap_err();
        assert_eq!(e.code.0, -32001, "{tool}: {}", e.message);
        let data = e.data.unwrap();
        assert_eq!(
            data["pdp_context"]["mandate"]["reasons"][0]["code"], why,
            "{tool}: Mandate's own reason comes back: {data}"
        );
    }
    // A spoofing mapping never reaches Mandate: the gateway refuses it first.
    spoofing_agent(&client, "cust-7").await;
    assert_eq!(
        *g.calls.lock().unwrap(),
        [
            r#"get_customer {"id":"cust-7"}"#,
            r#"get_local_weather {"zip":"10001"}"#,
            r#"either_customer {"id":"cust-7"}"#
        ]
    );

    // Mandate decided each call under the agent's task (its pipeline's
    // reasons), and the gateway recorded what it enforced (authzen_pdp).
    let decisions = call_decisions(&g.f).await;
    let by = |code: &str| {
        decisions
            .iter()
            .filter(|d| {
                d["details"]["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["code"] == code)
            })
            .count()
    };
    // Allowed: get_customer, mcp.tools.call, either's get_customer.
    assert_eq!(by("policy_permit"), 3, "{decisions:?}");
    // Refused: delete, other-7, either's delete, both's delete (stopped there).
    assert_eq!(by("outside_task_scope"), 4, "{decisions:?}");
    assert_eq!(by("authzen_pdp"), 7, "{decisions:?}");
    let task_id = claims["task_id"].clone();
    assert!(decisions.iter().all(|d| d["details"]["task_id"] == task_id));
    assert!(
        decisions
            .iter()
            .any(|d| d["details"]["action"] == "mcp.tools.call"
                && d["details"]["resource"] == "get_local_weather")
    );

    // Revoked mid-session: Mandate refuses the next call.
    let task = task_id.as_str().unwrap();
    let (st, b) =
        g.f.s
            .post(&format!("/v1/tasks/{task}/revoke"), json!({}))
            .await;
    assert!(st.is_success(), "{b}");
    let e = call(&client, "get_customer", json!({ "id": "cust-7" }))
        .await
        .unwrap_err();
    assert_eq!(e.code.0, -32001, "{}", e.message);
    let code = e.data.unwrap()["pdp_context"]["mandate"]["reasons"][0]["code"].clone();
    assert!(
        code == "credential_revoked" || code == "task_revoked",
        "{code}"
    );
    assert_eq!(g.calls.lock().unwrap().len(), 3);
}

async fn mandate_as_pdp_needs_the_task_token(t: TestStore) {
    // Without `send_task_token`, Mandate has no credential to decide under:
    // it answers 400, and the gateway fails closed.
    let (g, token, _) = behind_mandate_as_pdp(t, false).await;
    let b = raw(
        &g.gateway,
        &token,
        json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": { "name": "t", "version": "1" } } }),
    )
    .await;
    assert_eq!(b["error"]["code"], -32603, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("HTTP 400"),
        "{b}"
    );
}

/// The venv with the official Python MCP SDK, made once under the target
/// directory (once per test process: the backends' tests run in parallel).
/// A failure to install fails the test: it is never skipped.
fn python_sdk() -> std::path::PathBuf {
    static SDK: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    SDK.get_or_init(install_python_sdk).clone()
}

fn install_python_sdk() -> std::path::PathBuf {
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_owned();
    let venv = target.join("py-mcp");
    let python = venv.join("bin/python");
    let has_sdk = |p: &std::path::Path| {
        Command::new(p)
            .args([
                "-c",
                "import importlib.metadata as m; assert m.version('mcp') == '2.3.0'",
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_sdk(&python) {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "could not create a Python venv at {} (`python3 -m venv` is needed for the Python SDK test)",
            venv.display()
        );
        let out = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", PY_MCP])
            .output()
            .expect("pip runs");
        assert!(
            out.status.success() && has_sdk(&python),
            "could not install the official Python MCP SDK ({PY_MCP}) into {}: {}",
            venv.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    python
}

async fn the_official_python_sdk_works_through_the_coaz_gateway(t: TestStore) {
    let python = python_sdk();
    let g = setup(t, Decider::StandIn).await;
    let pdp = g.pdp.as_ref().unwrap();
    let (token, claims) = task(&g.f, any_scope()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/coaz_client.py");
    let url = format!("{}/mcp", g.gateway);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("GATEWAY_URL", url)
            .env("TASK_TOKEN", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    let mut listed: Vec<&str> = report["tools"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    listed.sort();
    assert_eq!(listed.len(), 8, "{report}");
    // The SDK sees each declared mapping in the tool's inputSchema.
    assert_eq!(
        report["tools"]["get_customer"]["x-authzen-mapping"]["evaluation"]["resource"]["id"],
        "$params.arguments.id"
    );
    assert_eq!(
        report["tools"]["get_local_weather"]["x-authzen-mapping"],
        Value::Null
    );
    assert_eq!(
        report["allowed"]["text"],
        r#"done: get_customer {"id":"cust-42"}"#
    );
    assert_eq!(report["denied"]["code"], -32001, "{report}");
    assert_eq!(report["spoofed"]["code"], -32602, "{report}");
    assert!(
        report["spoofed"]["message"]
            .as_str()
            .unwrap()
            .contains("agent-identity claim")
    );

    let (subject, agent_id) = anchored(&claims);
    let asked = pdp.asked();
    let get_customer = asked
        .iter()
        .find(|(_, _, b)| b["resource"]["id"] == "cust-42")
        .unwrap();
    assert_eq!(get_customer.2["subject"], subject);
    assert_eq!(get_customer.2["context"]["agent"], agent_id);
    assert!(
        !asked
            .iter()
            .any(|(_, _, b)| b.to_string().contains("mallory")),
        "the spoofed call reached the PDP"
    );
    assert_eq!(
        *g.calls.lock().unwrap(),
        [r#"get_customer {"id":"cust-42"}"#]
    );
}

mandate_store::backend_tests!(
    mandates_pipeline_decides_every_mcp_method,
    mandate_is_the_decision_point_of_a_coaz_gateway,
    mandate_as_pdp_needs_the_task_token,
    an_external_pdp_decides_what_the_servers_mappings_ask,
    a_pdp_that_fails_refuses_the_call,
    mandates_pipeline_decides_coaz_tools_by_default,
    the_official_python_sdk_works_through_the_coaz_gateway,
);
