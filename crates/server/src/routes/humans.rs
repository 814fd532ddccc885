//! `/v1/humans`: register, read, list and deactivate human principals.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use mandate_core::agent::AgentStatus;
use mandate_core::human::{Human, HumanStatus, NewHuman};
use mandate_core::ids::HumanId;
use mandate_store::{AgentFilter, Disposition, HumanFilter, PageRequest};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Page;
use crate::AppState;
use crate::extract::{Admin, Json, Query};
use crate::problem::{ApiResult, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_human, list_humans))
        .routes(routes!(get_human))
        .routes(routes!(deactivate_human))
        .routes(routes!(offboard_human))
}

pub(crate) fn parse_human_id(s: &str) -> Result<HumanId, Problem> {
    s.parse()
        .map_err(|_| Problem::not_found(format!("no human {s:?}: human ids are UUIDs")))
}

/// Register a human principal of an external identity provider.
#[utoipa::path(post, path = "/v1/humans", tag = "humans", request_body = NewHuman,
    responses((status = 201, body = Human), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("admin" = [])))]
async fn create_human(
    State(s): State<AppState>,
    admin: Admin,
    Json(new): Json<NewHuman>,
) -> ApiResult<(StatusCode, axum::Json<Human>)> {
    new.validate()?;
    let id = HumanId::from_uuid(crate::install::new_uuid());
    let human = s.store.create_human(&admin.change(), id, &new).await?;
    Ok((StatusCode::CREATED, axum::Json(human)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct HumanQuery {
    status: Option<HumanStatus>,
    /// Cursor from the previous page's `next`.
    after: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<u32>,
}

/// List humans, optionally by status, with cursor pagination.
#[utoipa::path(get, path = "/v1/humans", tag = "humans", params(HumanQuery),
    responses((status = 200, body = Page<Human>)), security(("admin" = [])))]
async fn list_humans(
    State(s): State<AppState>,
    _: Admin,
    Query(q): Query<HumanQuery>,
) -> ApiResult<axum::Json<Page<Human>>> {
    let page = PageRequest {
        after: q.after,
        limit: q.limit.unwrap_or(0),
    };
    Ok(axum::Json(
        s.store
            .list_humans(&HumanFilter { status: q.status }, &page)
            .await?
            .into(),
    ))
}

/// Get one human.
#[utoipa::path(get, path = "/v1/humans/{id}", tag = "humans", params(("id" = String, Path)),
    responses((status = 200, body = Human), (status = 404, body = Problem)), security(("admin" = [])))]
async fn get_human(
    State(s): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Human>> {
    let id = parse_human_id(&id)?;
    let human = s
        .store
        .human(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no human {id}")))?;
    Ok(axum::Json(human))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeactivateQuery {
    /// Deactivate even though they still own agents, which become orphaned
    /// (an emergency: posture lists every orphan until it is transferred).
    #[serde(default)]
    force: bool,
}

/// Deactivate a human. Someone who still owns agents is offboarded
/// (`/offboard`) so none is left without an owner; `force=true` is the
/// emergency path that orphans them.
#[utoipa::path(post, path = "/v1/humans/{id}/deactivate", tag = "humans", params(("id" = String, Path), DeactivateQuery),
    responses((status = 200, body = Human), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("admin" = [])))]
async fn deactivate_human(
    State(s): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Query(q): Query<DeactivateQuery>,
) -> ApiResult<axum::Json<Human>> {
    let id = parse_human_id(&id)?;
    if !q.force {
        let filter = AgentFilter {
            owner: Some(id),
            ..AgentFilter::default()
        };
        let page = PageRequest {
            after: None,
            limit: mandate_store::MAX_PAGE,
        };
        let owned: Vec<String> = s
            .store
            .list_agents(&filter, &page)
            .await?
            .items
            .into_iter()
            .filter(|a| a.status != AgentStatus::Retired)
            .map(|a| a.name.to_string())
            .collect();
        if !owned.is_empty() {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "owner-has-agents",
                format!(
                    "human {id} still owns {}: offboard them (POST /v1/humans/{id}/offboard, `mandate human offboard`) \
                     to transfer or retire each, or deactivate with force=true to orphan them",
                    owned.join(", ")
                ),
            ));
        }
    }
    Ok(axum::Json(
        s.store.deactivate_human(&admin.change(), id).await?,
    ))
}

/// What becomes of one agent: `"retire"`, or `{"transfer_to": "<human id>"}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum AgentFate {
    Retire,
    TransferTo(String),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Offboard {
    /// Every agent the human owns (by id or name), and what becomes of it.
    agents: std::collections::BTreeMap<String, AgentFate>,
}

/// Offboard a human: transfer or retire each agent they own (the plan must
/// name every one), then deactivate them, in one transaction. Retiring
/// revokes the agent's tasks and credentials and removes its keys.
#[utoipa::path(post, path = "/v1/humans/{id}/offboard", tag = "humans", params(("id" = String, Path)),
    request_body = Offboard,
    responses((status = 200, body = Human), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("admin" = [])))]
async fn offboard_human(
    State(s): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Json(body): Json<Offboard>,
) -> ApiResult<axum::Json<Human>> {
    let id = parse_human_id(&id)?;
    let mut plan = Vec::with_capacity(body.agents.len());
    for (key, fate) in body.agents {
        let agent = super::agents::resolve(&s, &key).await?;
        let disposition = match fate {
            AgentFate::Retire => Disposition::Retire,
            AgentFate::TransferTo(h) => Disposition::Transfer(h.parse().map_err(|_| {
                Problem::bad_request(format!("transfer_to {h:?} is not a human id (UUID)"))
            })?),
        };
        plan.push((agent.id, disposition));
    }
    Ok(axum::Json(
        s.store.offboard_human(&admin.change(), id, &plan).await?,
    ))
}
