//! The MCP side: the gateway is an MCP server to agents and an MCP client to
//! each upstream server, both over streamable HTTP with `rmcp`.
//!
//! `tools/list` shows only the mapped tools the caller's task could be
//! allowed to call; `tools/call` is decided before it is forwarded. Refusals
//! are JSON-RPC errors whose `data` carries the decision (its id, verdict,
//! reasons and, for an approval gate, the approval id to retry after).
//!
//! A server marked `coaz` needs no per-tool configuration: the gateway keeps
//! the `x-authzen-mapping` each tool declares in the server's own
//! `tools/list` answers, builds each call's AuthZEN request with
//! [`crate::coaz`] and has it decided by the configured decision point
//! ([`crate::decision_point`]); with an external one, every other request of
//! the session is gated by its default mapping in [`guard`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use mandate_core::decision::Verdict;
use mandate_core::scope::ResourcePattern;
use mandate_core::tool_call::{CallStatus, Channel};
use mandate_server::decision::{self, Ask, ContextIn, Outcome, ResourceIn};
use mandate_server::routes::decisions::Semantic;
use mandate_store::StoreError;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorCode, Implementation, InitializeResult,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, Peer, RoleClient, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::{Mutex, RwLock};

use crate::Gateway;
use crate::auth::Caller;
use crate::calls::{Call, refusal_message};
use crate::coaz::{self, Inputs, Mapping, Plan};
use crate::config::{GatewayConfig, McpUpstream, ToolMapping};
use crate::decision_point::{DecideError, Gated, Settled, probe};
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
    /// For a `coaz` server: each tool it last listed, with its declared
    /// mapping (or why that mapping is unusable), or `None` for the default.
    declared: RwLock<BTreeMap<String, Declared>>,
}

/// A tool's declared mapping as the gateway last read it from `tools/list`.
pub(crate) type Declared = Option<Arc<Result<Mapping, coaz::MappingError>>>;

/// The declared mapping in a tool's `inputSchema`, if it has one.
fn declared(tool: &Tool) -> Declared {
    tool.input_schema
        .get(coaz::MAPPING_KEY)
        .map(|m| Arc::new(Mapping::parse(m)))
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
                    declared: RwLock::new(BTreeMap::new()),
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

    /// Every tool the server lists, keeping each one's declared mapping
    /// (the gateway learns mappings only from the server, never the agent).
    async fn list(&self, name: &str) -> Result<Vec<Tool>, String> {
        let listed = match self.peer(name).await {
            Ok(peer) => peer.list_all_tools().await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let tools = match listed {
            Ok(t) => t,
            Err(e) => {
                self.reset(name).await;
                return Err(e);
            }
        };
        if let Some(up) = self.servers.get(name) {
            *up.declared.write().await = tools
                .iter()
                .map(|t| (t.name.to_string(), declared(t)))
                .collect();
        }
        Ok(tools)
    }

    /// The `coaz` server that offers `tool` (the first, in configuration
    /// order), with its declared mapping; servers that have not listed it
    /// yet are asked.
    async fn coaz_tool<'c>(
        &self,
        config: &'c GatewayConfig,
        tool: &str,
    ) -> Option<(&'c McpUpstream, Declared)> {
        for refresh in [false, true] {
            for m in config.mcp.iter().filter(|m| m.coaz) {
                let up = self.servers.get(&m.name)?;
                if refresh && self.list(&m.name).await.is_err() {
                    continue;
                }
                if let Some(d) = up.declared.read().await.get(tool) {
                    return Some((m, d.clone()));
                }
            }
        }
        None
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
    // Tool calls and listings are decided by the MCP handler, which knows
    // the tools; every other request is gated here.
    if let (Some(method), Some(caller)) = (
        message.get("method").and_then(Value::as_str),
        parts.extensions.get::<Caller>(),
    ) && !matches!(method, "tools/call" | "tools/list")
        && message.get("id").is_some()
    {
        let params = message.get("params").cloned().unwrap_or_else(|| json!({}));
        if let Err(e) = gate(&gw, method, &params, caller).await {
            let body = json!({ "jsonrpc": "2.0", "id": message["id"], "error": e });
            return (StatusCode::OK, axum::Json(body)).into_response();
        }
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

/// A COAZ mapping error (JSON-RPC -32602): nothing was asked.
fn mapping_error(e: &coaz::MappingError) -> ErrorData {
    tracing::info!(error = %e, "gateway: COAZ mapping error");
    ErrorData::new(ErrorCode(coaz::MAPPING_ERROR), e.to_string(), None)
}

/// A COAZ call that was refused: `-32001` denied, `-32004` approval
/// required, `-32603` the decision point failed; `data` is the decision
/// (and what an external PDP said with a deny, under `pdp_context`).
fn coaz_refused(out: &Outcome, pdp: Option<Value>, unavailable: bool) -> ErrorData {
    let code = match (unavailable, out.decision) {
        (true, _) => ErrorCode(coaz::PDP_ERROR),
        (false, Verdict::NeedsApproval) => APPROVAL_REQUIRED,
        (false, _) => ErrorCode(coaz::DENIED),
    };
    let mut data = serde_json::to_value(out).unwrap_or(Value::Null);
    if let (Some(pdp), Some(d)) = (pdp, data.as_object_mut()) {
        d.insert("pdp_context".into(), pdp);
    }
    ErrorData::new(code, refusal_message(out), Some(data))
}

/// What the profile asks for `method` with these `params`, under the
/// caller's token.
fn plan(
    gw: &Gateway,
    method: &str,
    params: &Value,
    caller: &Caller,
    declared: Option<&Mapping>,
) -> Result<Plan, coaz::MappingError> {
    let token = serde_json::to_value(&caller.0.claims).unwrap_or(Value::Null);
    let inputs = Inputs {
        params,
        token: &token,
        server: Some(&gw.resource),
    };
    coaz::plan(method, inputs, declared, &gw.anchors)
}

/// On a gateway with `coaz` servers, every MCP request other than a tool
/// call is decided by its default mapping before the gateway answers it:
/// `initialize`, `tools/list` and anything else (a method the profile does
/// not map is denied). `ping` and notifications pass. With Mandate's
/// pipeline, session methods need an open task and no forbidding policy,
/// other methods a scope grant of `mcp.<method>` (see
/// [`crate::decision_point::DecisionPoint::gate`]); with an external PDP,
/// its permit. (`tools/list` is then also filtered tool by tool.)
async fn gate(
    gw: &Gateway,
    method: &str,
    params: &Value,
    caller: &Caller,
) -> Result<(), ErrorData> {
    if !gw.config.mcp.iter().any(|m| m.coaz) {
        return Ok(());
    }
    let req = match plan(gw, method, params, caller, None) {
        Err(e) => return Err(mapping_error(&e)),
        Ok(Plan::PassThrough) => return Ok(()),
        Ok(Plan::Deny(why)) => return Err(ErrorData::new(ErrorCode(coaz::DENIED), why, None)),
        Ok(Plan::Ask(req)) => req,
    };
    match gw.decision_point.gate(gw, caller, method, &req).await {
        Ok(None) => Ok(()),
        Ok(Some(Gated::Refused(out))) => Err(coaz_refused(&out, None, false)),
        Ok(Some(Gated::Denied(pdp))) => Err(ErrorData::new(
            ErrorCode(coaz::DENIED),
            format!("{method} was denied by the AuthZEN decision point"),
            pdp.map(|p| json!({ "pdp_context": p })),
        )),
        // `why` names the decision point and its failure (logged as it was recorded).
        Ok(Some(Gated::Unavailable(why))) => Err(ErrorData::new(
            ErrorCode(coaz::PDP_ERROR),
            format!("{method} is refused: {why}"),
            None,
        )),
        Err(DecideError::Store(e)) => Err(store_error(e)),
        Err(DecideError::Mapping(e)) => Err(mapping_error(&e)),
    }
}

impl Proxy {
    /// Listing a `coaz` server's tool in Mandate's pipeline: the probes it
    /// must pass (its action on its resource, where the mapping fixes them)
    /// and whether one is enough (a `permit_on_first_permit` mapping, whose
    /// call one permit allows), or `None` when it can never be allowed.
    fn coaz_probes(&self, tool: &Tool) -> Option<(Vec<(Ask, ResourcePattern)>, bool)> {
        let env = &self.gw.config.environment;
        let name = tool.name.as_ref();
        match declared(tool).as_deref() {
            None => Some((vec![probe("tools/call", Some(name), name, env)?], false)),
            // A broken mapping is listed: calling it says what is wrong.
            Some(Err(_)) => Some((Vec::new(), false)),
            Some(Ok(m)) if m.semantic() == Semantic::PermitOnFirstPermit => {
                let asks = m.literal_asks();
                // An entry whose action an expression decides may permit
                // anything: the tool cannot be ruled out before a call.
                if asks.iter().any(|(action, _)| action.is_none()) {
                    return Some((Vec::new(), false));
                }
                let probes: Vec<_> = asks
                    .into_iter()
                    .filter_map(|(action, resource)| {
                        probe(action.as_deref()?, resource.as_deref(), name, env)
                    })
                    .collect();
                (!probes.is_empty()).then_some((probes, true))
            }
            Some(Ok(m)) => m
                .literal_asks()
                .into_iter()
                .filter_map(|(action, resource)| {
                    action.map(|a| probe(&a, resource.as_deref(), name, env))
                })
                .collect::<Option<Vec<_>>>()
                .map(|p| (p, false)),
        }
    }

    /// Forwards an allowed call and records what became of it.
    async fn forward(
        &self,
        up: &McpUpstream,
        request: CallToolRequestParams,
        call: &Call<'_>,
        decided: &Outcome,
        arguments: Option<Value>,
    ) -> Result<CallToolResponse, ErrorData> {
        let gw = &self.gw;
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
                call.finish(gw, decided, status, arguments, result)
                    .await
                    .map_err(store_error)?;
                Ok(response)
            }
            Err(e) => {
                gw.mcp.reset(&up.name).await;
                let status = CallStatus::Unreachable { error: e.clone() };
                call.finish(gw, decided, status, arguments, None)
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

    /// A call to a `coaz` server's tool: its declared mapping or the default
    /// builds the request; a mapping error is answered before anyone decides.
    async fn call_coaz(
        &self,
        up: &McpUpstream,
        mapping: Declared,
        request: CallToolRequestParams,
        caller: &Caller,
        started: Instant,
    ) -> Result<CallToolResponse, ErrorData> {
        let gw = &self.gw;
        let declared = match mapping.as_deref() {
            None => None,
            Some(Ok(m)) => Some(m),
            Some(Err(e)) => return Err(mapping_error(e)),
        };
        let params = serde_json::to_value(&request).unwrap_or(Value::Null);
        let req = match plan(gw, "tools/call", &params, caller, declared) {
            Err(e) => return Err(mapping_error(&e)),
            Ok(Plan::Ask(req)) => req,
            Ok(Plan::PassThrough | Plan::Deny(_)) => {
                return Err(ErrorData::new(
                    ErrorCode(coaz::DENIED),
                    "tools/call has no mapping",
                    None,
                ));
            }
        };
        let call = Call {
            caller,
            channel: Channel::Mcp,
            upstream: up.name.clone(),
            target: request.name.to_string(),
            started,
        };
        let settled = match gw
            .decision_point
            .decide(gw, caller, &req, Some(&request.name))
            .await
        {
            Ok(s) => s,
            Err(DecideError::Store(e)) => return Err(store_error(e)),
            Err(DecideError::Mapping(e)) => return Err(mapping_error(&e)),
        };
        let arguments = up
            .record_arguments
            .then(|| Value::Object(request.arguments.clone().unwrap_or_default()));
        let (out, pdp, unavailable) = match settled {
            Settled::Allowed(out) => {
                return self.forward(up, request, &call, &out, arguments).await;
            }
            Settled::Refused(out, pdp) => (out, pdp, false),
            Settled::Unavailable(out) => (out, None, true),
        };
        call.finish(gw, &out, CallStatus::Refused, arguments, None)
            .await
            .map_err(store_error)?;
        Err(coaz_refused(&out, pdp, unavailable))
    }

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
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = caller(&ctx)?;
        let params = serde_json::to_value(&request)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        gate(&self.gw, "tools/list", &params, &caller).await?;
        let gw = &self.gw;
        // Each offered tool with the probes it must pass to be shown.
        // (and whether passing one is enough).
        let mut offered: Vec<(Tool, Vec<usize>, bool)> = Vec::new();
        let mut probes = Vec::new();
        let mut names = BTreeSet::new();
        for up in gw
            .config
            .mcp
            .iter()
            .filter(|m| m.coaz || !m.tools.is_empty())
        {
            // An upstream that is down hides its tools; the others still list.
            let tools = match gw.mcp.list(&up.name).await {
                Ok(tools) => tools,
                Err(e) => {
                    tracing::warn!(upstream = %up.name, error = %e, "gateway: cannot list tools");
                    continue;
                }
            };
            for t in tools {
                let (mine, any): (Vec<(Ask, ResourcePattern)>, bool) = if up.coaz {
                    if gw.config.mcp_tool(&t.name).is_some() {
                        continue;
                    }
                    if !gw.decision_point.is_mandate() {
                        (Vec::new(), false)
                    } else {
                        match self.coaz_probes(&t) {
                            Some(p) => p,
                            None => continue,
                        }
                    }
                } else {
                    match up.tools.iter().find(|m| m.name == t.name) {
                        Some(m) => (vec![self.probe(m)], false),
                        None => continue,
                    }
                };
                // One tool per name: the first server to list it offers it.
                if !names.insert(t.name.to_string()) {
                    continue;
                }
                let first = probes.len();
                probes.extend(mine);
                offered.push((t, (first..probes.len()).collect(), any));
            }
        }
        let visible = decision::preview(&gw.app, &caller.0, &probes, mandate_server::now())
            .await
            .map_err(store_error)?;
        let tools = offered
            .into_iter()
            .filter_map(|(tool, needs, any)| {
                let shown = if any {
                    needs.iter().any(|i| visible[*i])
                } else {
                    needs.iter().all(|i| visible[*i])
                };
                shown.then_some(tool)
            })
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
            if let Some((up, mapping)) = gw.mcp.coaz_tool(&gw.config, &request.name).await {
                return self.call_coaz(up, mapping, request, &caller, started).await;
            }
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
        self.forward(up, request, &call, &decided, arguments).await
    }
}
