//! The MCP side: the gateway is an MCP server to agents and an MCP client to
//! each upstream server, both over streamable HTTP with `rmcp`.
//!
//! `tools/list` shows only the mapped tools the caller's task could be
//! allowed to call; `tools/call` is decided before it is forwarded. Refusals
//! are JSON-RPC errors whose `data` carries the decision (its id, verdict,
//! reasons and, for an approval gate, the approval id to retry after).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use mandate_core::decision::Verdict;
use mandate_core::scope::ResourcePattern;
use mandate_core::tool_call::{CallStatus, Channel};
use mandate_server::decision::{self, Ask, ContextIn, Outcome, ResourceIn};
use mandate_store::StoreError;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorCode, Implementation, InitializeResult,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, Peer, RoleClient, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::Gateway;
use crate::auth::Caller;
use crate::calls::{Call, refusal_message};
use crate::config::{GatewayConfig, ToolMapping};
use crate::mapping::{MappingError, argument};

/// JSON-RPC error codes of the gateway (implementation-defined server errors).
pub const DENIED: ErrorCode = ErrorCode(-32003);
pub const APPROVAL_REQUIRED: ErrorCode = ErrorCode(-32004);
pub const UPSTREAM_UNAVAILABLE: ErrorCode = ErrorCode(-32005);
pub const UNAVAILABLE: ErrorCode = ErrorCode(-32006);

/// One client session per upstream MCP server, opened on first use and
/// reopened after a failure.
pub(crate) struct Upstreams {
    servers: BTreeMap<String, Upstream>,
}

struct Upstream {
    url: String,
    http: reqwest::Client,
    session: Mutex<Option<RunningService<RoleClient, ()>>>,
}

impl Upstreams {
    /// Sessions over `http`, the gateway's client (its timeout, no redirects).
    pub fn new(config: &GatewayConfig, http: &reqwest::Client) -> Self {
        let servers = config
            .mcp
            .iter()
            .map(|m| {
                let up = Upstream {
                    url: m.url.clone(),
                    http: http.clone(),
                    session: Mutex::new(None),
                };
                (m.name.clone(), up)
            })
            .collect();
        Upstreams { servers }
    }

    async fn peer(&self, name: &str) -> Result<Peer<RoleClient>, String> {
        let up = self
            .servers
            .get(name)
            .ok_or_else(|| format!("no upstream {name}"))?;
        let mut session = up.session.lock().await;
        if let Some(s) = session.as_ref()
            && !s.is_closed()
        {
            return Ok(s.peer().clone());
        }
        let transport = StreamableHttpClientTransport::with_client(
            up.http.clone(),
            StreamableHttpClientTransportConfig::with_uri(up.url.clone()),
        );
        let running = ().serve(transport).await.map_err(|e| e.to_string())?;
        let peer = running.peer().clone();
        *session = Some(running);
        Ok(peer)
    }

    /// Drops a session that failed, so the next call opens a fresh one.
    async fn reset(&self, name: &str) {
        if let Some(up) = self.servers.get(name) {
            up.session.lock().await.take();
        }
    }
}

/// Checks each POSTed message before the MCP server reads it, so a bad one
/// gets a JSON-RPC error (RFC-style codes: -32700 parse error, -32600 invalid
/// request) with HTTP 400, and an oversized one 413 with the limit named.
pub(crate) async fn guard(
    axum::extract::State(gw): axum::extract::State<Arc<Gateway>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{Method, StatusCode};
    use axum::response::IntoResponse;
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let limit = gw.config.max_message_bytes;
    let (parts, body) = req.into_parts();
    let reply = |status: StatusCode, code: i32, message: String| {
        let body =
            json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } });
        (status, axum::Json(body)).into_response()
    };
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            -32600,
            format!("the message is larger than this gateway's limit of {limit} bytes"),
        );
    };
    let message: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return reply(StatusCode::BAD_REQUEST, -32700, format!("parse error: {e}"));
        }
    };
    if let Err(why) = crate::message::check(&message) {
        return reply(
            StatusCode::BAD_REQUEST,
            -32600,
            format!("invalid request: {why}"),
        );
    }
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// The MCP endpoint, as a tower service for the router.
pub(crate) fn service(gw: Arc<Gateway>) -> StreamableHttpService<Proxy, LocalSessionManager> {
    let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    if let Ok(url) = reqwest::Url::parse(&gw.config.public_url)
        && let Some(host) = url.host_str()
    {
        hosts.push(host.to_owned());
        if let Some(port) = url.port() {
            hosts.push(format!("{host}:{port}"));
        }
    }
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_max_request_body_bytes(gw.config.max_message_bytes);
    StreamableHttpService::new(
        move || Ok(Proxy { gw: gw.clone() }),
        LocalSessionManager::default().into(),
        config,
    )
}

/// One agent session's MCP server.
#[derive(Clone)]
pub struct Proxy {
    gw: Arc<Gateway>,
}

fn caller(ctx: &RequestContext<RoleServer>) -> Result<Caller, ErrorData> {
    ctx.extensions
        .get::<axum::http::request::Parts>()
        .and_then(|p| p.extensions.get::<Caller>())
        .cloned()
        // The router authenticates every request first; reaching here
        // without a caller would be a wiring bug, so fail closed.
        .ok_or_else(|| ErrorData::new(DENIED, "no authenticated caller", None))
}

fn store_error(e: StoreError) -> ErrorData {
    tracing::warn!(error = %e, "gateway: store unavailable");
    ErrorData::new(
        UNAVAILABLE,
        "Mandate's store is unavailable; nothing was forwarded, retry later",
        None,
    )
}

fn refused(out: &Outcome) -> ErrorData {
    let code = match out.decision {
        Verdict::NeedsApproval => APPROVAL_REQUIRED,
        _ => DENIED,
    };
    ErrorData::new(
        code,
        refusal_message(out),
        Some(serde_json::to_value(out).unwrap_or(Value::Null)),
    )
}

impl Proxy {
    fn context(&self, tool: &ToolMapping) -> ContextIn {
        ContextIn {
            tool: Some(tool.name.clone()),
            environment: Some(self.gw.config.environment.clone()),
            ..ContextIn::default()
        }
    }

    /// What a call with these arguments asks.
    fn ask(
        &self,
        tool: &ToolMapping,
        args: &serde_json::Map<String, Value>,
    ) -> Result<Ask, MappingError> {
        let sensitivity = match &tool.sensitivity_from {
            Some(field) if args.contains_key(field) => argument(args, field)?,
            _ => tool.sensitivity.clone(),
        };
        let mut context = self.context(tool);
        if let Some(field) = &tool.amount_from {
            context.amount = match args.get(field) {
                None => None,
                Some(v) => Some(v.as_i64().ok_or_else(|| {
                    MappingError(format!("argument {field:?} must be an integer amount"))
                })?),
            };
        }
        Ok(Ask {
            action: tool.action.as_str().to_owned(),
            resource: ResourceIn {
                id: tool.resource.render(args)?,
                sensitivity,
                labels: tool.labels.clone(),
            },
            context,
        })
    }

    /// What listing a tool probes: its action on its resources' common prefix.
    fn probe(&self, tool: &ToolMapping) -> (Ask, ResourcePattern) {
        let pattern = tool.resource.pattern().clone();
        let id = pattern.as_str().trim_end_matches('*').to_owned();
        let ask = Ask {
            action: tool.action.as_str().to_owned(),
            resource: ResourceIn {
                id,
                sensitivity: tool.sensitivity.clone(),
                labels: tool.labels.clone(),
            },
            context: self.context(tool),
        };
        (ask, pattern)
    }
}

impl ServerHandler for Proxy {
    fn get_info(&self) -> ServerConfig {
        let mut info = InitializeResult::new(ServerCapabilities::builder().enable_tools().build());
        info.server_info = Implementation::new("mandate-gateway", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "Tools are listed and called under your Mandate task credential; every call is decided and audited."
                .into(),
        );
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = caller(&ctx)?;
        let gw = &self.gw;
        let mut offered = Vec::new();
        for up in gw.config.mcp.iter().filter(|m| !m.tools.is_empty()) {
            // An upstream that is down hides its tools; the others still list.
            let listed = match gw.mcp.peer(&up.name).await {
                Ok(peer) => peer.list_all_tools().await.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match listed {
                Ok(tools) => offered.extend(tools.into_iter().filter_map(|t| {
                    let m = up.tools.iter().find(|m| m.name == t.name)?;
                    Some((t, m))
                })),
                Err(e) => {
                    tracing::warn!(upstream = %up.name, error = %e, "gateway: cannot list tools");
                    gw.mcp.reset(&up.name).await;
                }
            }
        }
        let probes: Vec<_> = offered.iter().map(|(_, m)| self.probe(m)).collect();
        let visible = decision::preview(&gw.app, &caller.0, &probes, mandate_server::now())
            .await
            .map_err(store_error)?;
        let tools = offered
            .into_iter()
            .zip(visible)
            .filter_map(|((tool, _), shown)| shown.then_some(tool))
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = caller(&ctx)?;
        let gw = &self.gw;
        let started = Instant::now();
        let Some((up, tool)) = gw.config.mcp_tool(&request.name) else {
            return Err(ErrorData::invalid_params(
                format!("no tool {:?} is offered through this gateway", request.name),
                None,
            ));
        };
        let args = request.arguments.clone().unwrap_or_default();
        let ask = self
            .ask(tool, &args)
            .map_err(|e| ErrorData::invalid_params(format!("tool {}: {e}", tool.name), None))?;
        let call = Call {
            caller: &caller,
            channel: Channel::Mcp,
            upstream: up.name.clone(),
            target: tool.name.clone(),
            started,
        };
        let decided = call.decide(gw, &ask).await.map_err(store_error)?;
        let arguments = up.record_arguments.then(|| Value::Object(args));
        if decided.decision != Verdict::Allow {
            call.finish(gw, &decided, CallStatus::Refused, arguments, None)
                .await
                .map_err(store_error)?;
            return Err(refused(&decided));
        }
        let answer = match gw.mcp.peer(&up.name).await {
            Ok(peer) => peer
                .call_tool_once(request)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match answer {
            Ok(response) => {
                let tool_error =
                    matches!(&response, CallToolResponse::Complete(r) if r.is_error == Some(true));
                let result = match &response {
                    CallToolResponse::Complete(r) if up.record_results => {
                        Some(serde_json::to_value(r).unwrap_or(Value::Null))
                    }
                    _ => None,
                };
                let status = CallStatus::Answered {
                    status: 200,
                    tool_error,
                };
                call.finish(gw, &decided, status, arguments, result)
                    .await
                    .map_err(store_error)?;
                Ok(response)
            }
            Err(e) => {
                gw.mcp.reset(&up.name).await;
                let status = CallStatus::Unreachable { error: e.clone() };
                call.finish(gw, &decided, status, arguments, None)
                    .await
                    .map_err(store_error)?;
                Err(ErrorData::new(
                    UPSTREAM_UNAVAILABLE,
                    format!(
                        "upstream {} did not complete the call: {e} (the call was allowed by decision {} and is audited)",
                        up.name, decided.decision_id
                    ),
                    Some(json!({ "upstream": up.name, "decision_id": decided.decision_id })),
                ))
            }
        }
    }
}
