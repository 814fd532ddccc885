//! `/v1/agents`: the registry of non-human identities.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use mandate_core::agent::{Agent, AgentKind, AgentStatus, Lifecycle, NewAgent};
use mandate_core::ids::{AgentId, AgentName, SpiffeId};
use mandate_core::inventory::InventoryItem;
use mandate_core::jwk::Ed25519Jwk;
use mandate_store::{AgentFilter, PageRequest};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Page;
use super::humans::parse_human_id;
use crate::AppState;
use crate::extract::{Admin, Json, Query};
use crate::problem::{ApiResult, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_agent, list_agents))
        .routes(routes!(get_agent))
        .routes(routes!(inventory))
        .routes(routes!(suspend_agent))
        .routes(routes!(resume_agent))
        .routes(routes!(retire_agent))
        .routes(routes!(transfer_agent))
        .routes(routes!(add_key))
        .routes(routes!(remove_key))
}

/// Resolves a path segment that is either an agent id or an agent name.
pub(crate) async fn resolve(s: &AppState, key: &str) -> ApiResult<Agent> {
    let found = match key.parse::<AgentId>() {
        Ok(id) => s.store.agent(id).await?,
        Err(_) => match AgentName::parse(key) {
            Ok(name) => s.store.agent_by_name(&name).await?,
            Err(_) => None,
        },
    };
    found.ok_or_else(|| Problem::not_found(format!("no agent {key:?} (give its id or its name)")))
}

/// Register an agent. Its owner must be an active human.
#[utoipa::path(post, path = "/v1/agents", tag = "agents", request_body = NewAgent,
    responses((status = 201, body = Agent), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("admin" = [])))]
async fn create_agent(
    State(s): State<AppState>,
    admin: Admin,
    Json(new): Json<NewAgent>,
) -> ApiResult<(StatusCode, axum::Json<Agent>)> {
    new.validate()?;
    let id = AgentId::from_uuid(crate::install::new_uuid());
    let spiffe = SpiffeId::for_agent(&s.install.trust_domain, new.kind, &new.name);
    let agent = s
        .store
        .create_agent(&admin.change(), id, &spiffe, &new)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(agent)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AgentQuery {
    /// Owner's human id.
    owner: Option<String>,
    kind: Option<AgentKind>,
    status: Option<AgentStatus>,
    tag: Option<String>,
    /// Only agents whose owner is deactivated (true) or active (false).
    orphaned: Option<bool>,
    after: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<u32>,
}

impl AgentQuery {
    fn split(self) -> Result<(AgentFilter, PageRequest), Problem> {
        let owner = match &self.owner {
            Some(o) => Some(o.parse().map_err(|_| {
                Problem::bad_request(format!("owner {o:?} is not a human id (UUID)"))
            })?),
            None => None,
        };
        let filter = AgentFilter {
            owner,
            kind: self.kind,
            status: self.status,
            tag: self.tag,
            orphaned: self.orphaned,
            name_contains: None,
        };
        let page = PageRequest {
            after: self.after,
            limit: self.limit.unwrap_or(0),
        };
        Ok((filter, page))
    }
}

/// List agents with filters and cursor pagination.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", params(AgentQuery),
    responses((status = 200, body = Page<Agent>)), security(("admin" = [])))]
async fn list_agents(
    State(s): State<AppState>,
    _: Admin,
    Query(q): Query<AgentQuery>,
) -> ApiResult<axum::Json<Page<Agent>>> {
    let (filter, page) = q.split()?;
    Ok(axum::Json(
        s.store.list_agents(&filter, &page).await?.into(),
    ))
}

/// The inventory: each agent with its owner, who delegates to it, what it
/// was actually allowed to do, its last activity, and its live tasks,
/// credentials and keys. Same filters and pages as `GET /v1/agents`.
#[utoipa::path(get, path = "/v1/inventory", tag = "agents", params(AgentQuery),
    responses((status = 200, body = Page<InventoryItem>)), security(("admin" = [])))]
async fn inventory(
    State(s): State<AppState>,
    _: Admin,
    Query(q): Query<AgentQuery>,
) -> ApiResult<axum::Json<Page<InventoryItem>>> {
    let (filter, page) = q.split()?;
    Ok(axum::Json(
        s.store
            .inventory(&filter, &page, crate::now())
            .await?
            .into(),
    ))
}

/// Get one agent by id or name.
#[utoipa::path(get, path = "/v1/agents/{agent}", tag = "agents", params(("agent" = String, Path, description = "id or name")),
    responses((status = 200, body = Agent), (status = 404, body = Problem)), security(("admin" = [])))]
async fn get_agent(
    State(s): State<AppState>,
    _: Admin,
    Path(key): Path<String>,
) -> ApiResult<axum::Json<Agent>> {
    Ok(axum::Json(resolve(&s, &key).await?))
}

async fn lifecycle(
    s: AppState,
    admin: Admin,
    key: String,
    op: Lifecycle,
) -> ApiResult<axum::Json<Agent>> {
    let agent = resolve(&s, &key).await?;
    Ok(axum::Json(
        s.store
            .change_agent_lifecycle(&admin.change(), agent.id, op)
            .await?,
    ))
}

/// Suspend an active agent.
#[utoipa::path(post, path = "/v1/agents/{agent}/suspend", tag = "agents", params(("agent" = String, Path)),
    responses((status = 200, body = Agent), (status = 409, body = Problem)), security(("admin" = [])))]
async fn suspend_agent(
    State(s): State<AppState>,
    admin: Admin,
    Path(key): Path<String>,
) -> ApiResult<axum::Json<Agent>> {
    lifecycle(s, admin, key, Lifecycle::Suspend).await
}

/// Resume a suspended agent.
#[utoipa::path(post, path = "/v1/agents/{agent}/resume", tag = "agents", params(("agent" = String, Path)),
    responses((status = 200, body = Agent), (status = 409, body = Problem)), security(("admin" = [])))]
async fn resume_agent(
    State(s): State<AppState>,
    admin: Admin,
    Path(key): Path<String>,
) -> ApiResult<axum::Json<Agent>> {
    lifecycle(s, admin, key, Lifecycle::Resume).await
}

/// Retire an agent, permanently.
#[utoipa::path(post, path = "/v1/agents/{agent}/retire", tag = "agents", params(("agent" = String, Path)),
    responses((status = 200, body = Agent), (status = 409, body = Problem)), security(("admin" = [])))]
async fn retire_agent(
    State(s): State<AppState>,
    admin: Admin,
    Path(key): Path<String>,
) -> ApiResult<axum::Json<Agent>> {
    lifecycle(s, admin, key, Lifecycle::Retire).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Transfer {
    /// The new owner's human id; must be active.
    owner: String,
}

/// Transfer ownership to another active human.
#[utoipa::path(post, path = "/v1/agents/{agent}/transfer", tag = "agents", params(("agent" = String, Path)),
    request_body = Transfer, responses((status = 200, body = Agent), (status = 409, body = Problem)), security(("admin" = [])))]
async fn transfer_agent(
    State(s): State<AppState>,
    admin: Admin,
    Path(key): Path<String>,
    Json(t): Json<Transfer>,
) -> ApiResult<axum::Json<Agent>> {
    let agent = resolve(&s, &key).await?;
    let owner = parse_human_id(&t.owner)?;
    Ok(axum::Json(
        s.store
            .transfer_agent(&admin.change(), agent.id, owner)
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewKey {
    /// An Ed25519 public JWK.
    jwk: Ed25519Jwk,
}

/// Add an attestation public key (rotation: add the new key, then remove the old).
#[utoipa::path(post, path = "/v1/agents/{agent}/keys", tag = "agents", params(("agent" = String, Path)),
    request_body = NewKey, responses((status = 200, body = Agent), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("admin" = [])))]
async fn add_key(
    State(s): State<AppState>,
    admin: Admin,
    Path(key): Path<String>,
    Json(k): Json<NewKey>,
) -> ApiResult<axum::Json<Agent>> {
    let agent = resolve(&s, &key).await?;
    Ok(axum::Json(
        s.store
            .add_agent_key(&admin.change(), agent.id, &k.jwk)
            .await?,
    ))
}

/// Remove an attestation key by its key id.
#[utoipa::path(delete, path = "/v1/agents/{agent}/keys/{kid}", tag = "agents",
    params(("agent" = String, Path), ("kid" = String, Path)),
    responses((status = 200, body = Agent), (status = 422, body = Problem)), security(("admin" = [])))]
async fn remove_key(
    State(s): State<AppState>,
    admin: Admin,
    Path((key, kid)): Path<(String, String)>,
) -> ApiResult<axum::Json<Agent>> {
    let agent = resolve(&s, &key).await?;
    Ok(axum::Json(
        s.store
            .remove_agent_key(&admin.change(), agent.id, &kid)
            .await?,
    ))
}
