//! An agent's MCP session through the gateway (rmcp's client), and what the
//! audit log says of its calls; shared by the gateway's test files.

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceError, ServiceExt};
use serde_json::Value;

use mandate_server::decision;

use crate::common::fixture::Fixture;

/// Opens the agent's session with its task token.
pub async fn agent(gateway: &str, token: &str) -> RunningService<RoleClient, ()> {
    let mut cfg = StreamableHttpClientTransportConfig::with_uri(format!("{gateway}/mcp"));
    cfg.auth_header = Some(token.to_owned());
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), cfg);
    ().serve(transport)
        .await
        .expect("the agent's MCP session opens")
}

/// One tool call: the result, or the JSON-RPC error the gateway answered.
pub async fn call(
    client: &RunningService<RoleClient, ()>,
    tool: &str,
    args: Value,
) -> Result<CallToolResult, rmcp::ErrorData> {
    let params = CallToolRequestParams::new(tool.to_owned())
        .with_arguments(args.as_object().unwrap().clone());
    match client.call_tool(params).await {
        Ok(r) => Ok(r),
        Err(ServiceError::McpError(e)) => Err(e),
        Err(e) => panic!("transport error calling {tool}: {e}"),
    }
}

/// The names of the tools the gateway lists to this agent, sorted.
pub async fn tool_names(client: &RunningService<RoleClient, ()>) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

/// The stored text of every audit entry, in log order.
pub async fn entries(f: &Fixture) -> Vec<String> {
    let store = &f.s.state.store;
    let len = store.audit_len().await.unwrap();
    store
        .audit_entries(0, len as u32)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.entry)
        .collect()
}

/// Every audit event of a kind, as JSON.
pub async fn events(f: &Fixture, kind: &str) -> Vec<Value> {
    entries(f)
        .await
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap()["event"].clone())
        .filter(|e| e["kind"] == kind)
        .collect()
}

/// The recorded decisions of everything but MCP's session methods (which
/// are recorded too, but not counted as calls), as JSON. Only gateways
/// with `coaz` servers decide session methods.
#[allow(dead_code)]
pub async fn call_decisions(f: &Fixture) -> Vec<Value> {
    events(f, "decision.made")
        .await
        .into_iter()
        .filter(|d| {
            // As a remote PDP was asked (`tools/list`) or as Mandate's action.
            let action = d["details"]["action"].as_str().unwrap();
            !decision::is_session_action(&decision::mcp_action(action))
        })
        .collect()
}
