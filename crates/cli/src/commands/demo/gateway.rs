//! Step 21 of the demo: an agent calls tools through the gateway. A real
//! MCP server (the ERP's) and a REST API (billing, which wants an API key)
//! run on loopback behind it; the agent talks MCP with `rmcp`'s client.

use std::collections::HashMap;

use mandate_core::secret::SecretInfo;
use mandate_gateway::{Gateway, GatewayConfig};
use mandate_server::AppState;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, InitializeResult,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceError, ServiceExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::{ask, step};
use crate::CliError;
use crate::client::Client;
use crate::credentials::{self, AgentIdentity, Subject};

/// The ERP's MCP server: two tools, one of which the task may not reach.
#[derive(Clone)]
struct Erp;

impl ServerHandler for Erp {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let by_id = json!({ "type": "object", "properties": { "id": { "type": "string" } }, "required": ["id"] });
        let schema = by_id.as_object().cloned().unwrap_or_default();
        Ok(ListToolsResult::with_all_items(vec![
            Tool::new("lookup_supplier", "Look up a supplier", schema.clone()),
            Tool::new("delete_supplier", "Delete a supplier", schema),
        ]))
    }

    async fn call_tool(
        &self,
        req: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let id = req
            .arguments
            .as_ref()
            .and_then(|a| a.get("id"))
            .and_then(Value::as_str)
            .unwrap_or("?");
        let text = match req.name.as_ref() {
            "lookup_supplier" => format!("supplier {id}: Northwind Laptops, approved vendor"),
            other => format!("{other} {id}: done"),
        };
        Ok(CallToolResponse::Complete(CallToolResult::success(vec![
            ContentBlock::text(text),
        ])))
    }
}

async fn spawn(app: axum::Router) -> Result<String, CliError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    tokio::spawn(async move { axum::serve(mandate_server::without_delay(listener), app).await });
    Ok(format!("http://{addr}"))
}

/// Billing: answers only with the right key, and (carelessly) echoes it.
async fn billing(key: String) -> Result<String, CliError> {
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let key = key.clone();
        async move {
            let got = req
                .headers()
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let status = if got == key { 200 } else { 401 };
            let body = json!({ "invoice": req.uri().path(), "status": "open", "debug_key": got });
            (
                axum::http::StatusCode::from_u16(status).unwrap_or_default(),
                axum::Json(body),
            )
        }
    });
    spawn(app).await
}

pub(super) fn config(listen: &str, erp: &str, billing: &str) -> String {
    format!(
        r#"listen = "{listen}"
public_url = "http://{listen}"
authorization_server = "http://127.0.0.1:8080"

[[mcp]]
name = "erp"
url = "{erp}/mcp"

[[mcp.tool]]
name = "lookup_supplier"
action = "procurement.read"
resource = "erp:suppliers/{{id}}"

[[mcp.tool]]
name = "delete_supplier"
action = "records.delete"
resource = "erp:suppliers/{{id}}"

[[http]]
name = "billing"
prefix = "/billing"
upstream = "{billing}"
resource = "erp:billing/"
actions = {{ GET = "procurement.read" }}
secret = "billing-api-key"
inject = "header:x-api-key"
"#
    )
}

pub(super) async fn tools(
    c: &Client,
    dir: &std::path::Path,
    agents: &HashMap<&str, AgentIdentity>,
    state: AppState,
) -> Result<(), CliError> {
    step(
        21,
        "An agent calls tools through the gateway: listed by scope, decided per call, the API key injected",
    );
    let key = format!(
        "sk_demo_{}",
        uuid::Uuid::now_v7()
            .simple()
            .to_string()
            .get(20..)
            .unwrap_or("0")
    );
    let info: SecretInfo = c
        .put("/v1/secrets/billing-api-key", &json!({ "value": key }))
        .await?;
    println!(
        "admin stored secret {} (version {}), sealed with the master key",
        info.name, info.version
    );
    let erp = StreamableHttpService::new(
        || Ok(Erp),
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default(),
    );
    let erp = spawn(axum::Router::new().nest_service("/mcp", erp)).await?;
    let billing = billing(key.clone()).await?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let listen = listener
        .local_addr()
        .map_err(|e| CliError::Failed(e.to_string()))?
        .to_string();
    let config = config(&listen, &erp, &billing);
    let gw = GatewayConfig::parse(&config).map_err(|e| CliError::Failed(e.to_string()))?;
    let gw = Gateway::new(state, gw).map_err(|e| CliError::Failed(e.to_string()))?;
    tokio::spawn(mandate_gateway::serve(listener, gw, std::future::pending()));
    println!("gateway on http://{listen}, in front of the ERP's MCP server and the billing API");

    let dev = super::dev_issuer(dir)?;
    let alice = dev.mint("alice", &c.issuer().await?, mandate_server::now(), 300);
    let task = credentials::exchange(
        c,
        Subject::Human(&alice),
        &agents["procurement-agent"],
        &ask(
            "Check the laptop supplier and its invoice",
            &["procurement.read"],
            &["erp:*"],
            10,
        ),
        None,
    )
    .await?;
    let mut transport =
        StreamableHttpClientTransportConfig::with_uri(format!("http://{listen}/mcp"));
    transport.auth_header = Some(task.access_token.clone());
    let agent = ()
        .serve(StreamableHttpClientTransport::with_client(
            reqwest::Client::new(),
            transport,
        ))
        .await
        .map_err(|e| CliError::Failed(format!("MCP session through the gateway: {e}")))?;
    let listed: Vec<String> = agent
        .list_all_tools()
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    println!(
        "tools/list as the agent sees it: {listed:?} (the ERP offers lookup_supplier and delete_supplier)"
    );
    if listed != ["lookup_supplier"] {
        return Err(CliError::Failed(format!("the gateway listed {listed:?}")));
    }
    let call = |name: &'static str| {
        let args = json!({ "id": "sup-17" })
            .as_object()
            .cloned()
            .unwrap_or_default();
        agent.call_tool(CallToolRequestParams::new(name).with_arguments(args))
    };
    let r = call("lookup_supplier")
        .await
        .map_err(|e| CliError::Failed(format!("the allowed call failed: {e}")))?;
    let text = serde_json::to_value(&r.content).unwrap_or_default()[0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!("tools/call lookup_supplier sup-17 -> allowed, forwarded: {text}");
    match call("delete_supplier").await {
        Err(ServiceError::McpError(e)) => {
            println!(
                "tools/call delete_supplier sup-17 (hidden, called anyway) -> JSON-RPC error {}: {}",
                e.code.0, e.message
            );
        }
        other => {
            return Err(CliError::Failed(format!(
                "the hidden tool was not refused: {other:?}"
            )));
        }
    }
    let res = reqwest::Client::new()
        .get(format!("http://{listen}/billing/invoices/inv-2291"))
        .bearer_auth(&task.access_token)
        .send()
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    if !status.is_success() || body.contains(&key) {
        return Err(CliError::Failed(format!(
            "the proxied call answered {status}: {body}"
        )));
    }
    println!(
        "GET /billing/invoices/inv-2291 -> {status}; the gateway added the key, the agent got: {body}"
    );
    let _ = agent.cancel().await;
    Ok(())
}
