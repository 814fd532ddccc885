//! Gateway overhead per tool call: the same MCP `tools/call` made directly
//! to an upstream server and through the gateway (authentication, the full
//! decision pipeline with its audit entry, forwarding, and the call's own
//! audit entry), sequentially over loopback, in one run. Prints p50 and p99
//! of both and the difference. SQLite always; PostgreSQL too when
//! MANDATE_TEST_DATABASE_URL is set.
//!
//! `cargo bench -p mandate-gateway --bench overhead`

#[path = "../../server/tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::time::{Duration, Instant};

use common::fixture::*;
use common::spawn;
use mandate_gateway::{Gateway, GatewayConfig};
use mandate_store::Backend;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, InitializeResult,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleClient, RoleServer, ServerHandler, ServiceExt};
use serde_json::json;

/// The `mandate` binary's allocator, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CALLS: usize = 2_000;
const WARMUP: usize = 100;
const POLICY: &str = include_str!("../../policy/examples/default.cedar");

#[derive(Clone)]
struct Echo;

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
    }
    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = json!({ "type": "object" }).as_object().cloned().unwrap();
        Ok(ListToolsResult::with_all_items(vec![Tool::new(
            "lookup_supplier",
            "Look up a supplier",
            schema,
        )]))
    }
    async fn call_tool(
        &self,
        _: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        Ok(CallToolResponse::Complete(CallToolResult::success(vec![
            ContentBlock::text("ok"),
        ])))
    }
}

async fn client(url: String, token: Option<String>) -> RunningService<RoleClient, ()> {
    let mut cfg = StreamableHttpClientTransportConfig::with_uri(url);
    cfg.auth_header = token;
    ().serve(StreamableHttpClientTransport::with_client(
        reqwest::Client::new(),
        cfg,
    ))
    .await
    .unwrap()
}

async fn timings(c: &RunningService<RoleClient, ()>) -> Vec<Duration> {
    let args = json!({ "id": "s-1" }).as_object().cloned().unwrap();
    let mut out = Vec::with_capacity(CALLS);
    for i in 0..WARMUP + CALLS {
        let params = CallToolRequestParams::new("lookup_supplier").with_arguments(args.clone());
        let t = Instant::now();
        c.call_tool(params).await.expect("the call is allowed");
        if i >= WARMUP {
            out.push(t.elapsed());
        }
    }
    out.sort();
    out
}

fn pct(v: &[Duration], p: f64) -> f64 {
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i].as_secs_f64() * 1e6
}

async fn run(backend: Backend) {
    let f = Fixture::new(mandate_store::testing::store(backend).await).await;
    let (_, b) = f.s.post("/v1/policies", json!({ "text": POLICY })).await;
    assert!(b["hash"].is_string(), "{b}");
    let upstream = spawn(axum::Router::new().nest_service(
        "/mcp",
        StreamableHttpService::new(
            || Ok(Echo),
            LocalSessionManager::default().into(),
            StreamableHttpServerConfig::default(),
        ),
    ))
    .await;
    let config = format!(
        r#"
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:8090"
authorization_server = "http://127.0.0.1:8080"
[[mcp]]
name = "erp"
url = "{upstream}/mcp"
[[mcp.tool]]
name = "lookup_supplier"
action = "procurement.read"
resource = "erp:suppliers/{{id}}"
"#
    );
    let gw = Gateway::new(f.s.state.clone(), GatewayConfig::parse(&config).unwrap()).unwrap();
    let gateway = spawn(mandate_gateway::router(gw)).await;
    let details = json!([{ "type": "mandate_task", "purpose": "benchmark",
        "actions": ["procurement.read"], "resources": ["erp:*"] }]);
    let (_, b) = f
        .root(
            &f.id_token("alice"),
            &f.agent("orchestrator", ORCH),
            details,
            None,
        )
        .await;
    let token = token_of(&b);

    let direct = timings(&client(format!("{upstream}/mcp"), None).await).await;
    let through = timings(&client(format!("{gateway}/mcp"), Some(token)).await).await;
    let name = match backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    };
    println!(
        "{name:<10} {CALLS} sequential tools/call over loopback\n\
         {:<12} p50 {:>8.0} µs   p99 {:>8.0} µs\n\
         {:<12} p50 {:>8.0} µs   p99 {:>8.0} µs\n\
         {:<12} p50 {:>8.0} µs   p99 {:>8.0} µs",
        "  direct",
        pct(&direct, 0.50),
        pct(&direct, 0.99),
        "  gateway",
        pct(&through, 0.50),
        pct(&through, 0.99),
        "  added",
        pct(&through, 0.50) - pct(&direct, 0.50),
        pct(&through, 0.99) - pct(&direct, 0.99),
    );
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        run(Backend::Sqlite).await;
        if std::env::var_os(mandate_store::testing::PG_URL_VAR).is_some() {
            run(Backend::Postgres).await;
        }
    });
}
