//! `/v1/tasks`: the delegation trees and how tasks end.
//!
//! The assignee ends its own task with its task token (completed or
//! failed); the human who initiated it, the assignee's owner or an admin may
//! revoke it. Ending a task ends its whole subtree in one transaction.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use mandate_core::admin::AdminToken;
use mandate_core::audit::Actor;
use mandate_core::ids::{AgentId, AgentName, HumanId, TaskId};
use mandate_core::task::{Ending, Task, TaskStatus};
use mandate_store::{Change, Ended, PageRequest, TaskFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Page;
use crate::AppState;
use crate::access::{self, Presented};
use crate::extract::{Admin, Query, request_id};
use crate::problem::{ApiResult, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks))
        .routes(routes!(get_task))
        .routes(routes!(complete_task))
        .routes(routes!(fail_task))
        .routes(routes!(revoke_task))
}

pub fn parse_task_id(s: &str) -> ApiResult<TaskId> {
    s.parse()
        .map_err(|_| Problem::bad_request(format!("{s:?} is not a task id (UUID)")))
}

/// The token of an `Authorization: Bearer` (or `DPoP`) header.
use crate::access::bearer_token;

fn bearer(parts: &Parts) -> ApiResult<&str> {
    bearer_token(&parts.headers).ok_or_else(|| {
        Problem::unauthorized(
            "send Authorization: Bearer <token> (or DPoP <token> with a DPoP proof)",
        )
    })
}

/// A request made with a live task token (and its DPoP proof when bound).
pub struct TaskBearer(pub access::Verified, Option<String>);

impl FromRequestParts<AppState> for TaskBearer {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Problem> {
        let token = bearer(parts)?;
        let v =
            access::verify_presented(s, token, &Presented::from_parts(parts), crate::now()).await?;
        Ok(TaskBearer(v, request_id(&parts.headers)))
    }
}

/// An admin, or a human proven by a trusted issuer's ID token.
pub enum Principal {
    Admin(Admin),
    Human(HumanId, Option<String>),
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Problem> {
        let token = bearer(parts)?;
        if AdminToken::parse(token).is_ok() {
            return Ok(Principal::Admin(Admin::from_request_parts(parts, s).await?));
        }
        let human = access::verify_human(s, token, crate::now()).await?;
        Ok(Principal::Human(human.id, request_id(&parts.headers)))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TaskQuery {
    /// Assignee agent id or name.
    agent: Option<String>,
    /// Initiating human's id.
    initiator: Option<String>,
    status: Option<TaskStatus>,
    /// Only tasks in this root task's tree.
    root: Option<String>,
    after: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<u32>,
}

/// List tasks with filters and cursor pagination.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", params(TaskQuery),
    responses((status = 200, body = Page<Task>)), security(("admin" = [])))]
async fn list_tasks(
    State(s): State<AppState>,
    _: Admin,
    Query(q): Query<TaskQuery>,
) -> ApiResult<axum::Json<Page<Task>>> {
    let assignee = match &q.agent {
        Some(a) => Some(agent_id(&s, a).await?),
        None => None,
    };
    let filter = TaskFilter {
        assignee,
        initiator: q
            .initiator
            .as_deref()
            .map(super::humans::parse_human_id)
            .transpose()?,
        status: q.status,
        root: q.root.as_deref().map(parse_task_id).transpose()?,
        now: Some(crate::now()),
    };
    let page = PageRequest {
        after: q.after,
        limit: q.limit.unwrap_or(0),
    };
    Ok(axum::Json(s.store.list_tasks(&filter, &page).await?.into()))
}

pub(crate) async fn agent_id(s: &AppState, key: &str) -> ApiResult<AgentId> {
    if let Ok(id) = key.parse() {
        return Ok(id);
    }
    let name = AgentName::parse(key).map_err(|e| Problem::bad_request(e.to_string()))?;
    Ok(s.store
        .agent_by_name(&name)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no agent named {key:?}")))?
        .id)
}

/// A task and the tasks delegated from it, recursively.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(no_recursion)]
pub struct TaskNode {
    #[serde(flatten)]
    pub task: Task,
    /// Its status now (an open task past its expiry is `expired`).
    pub effective_status: TaskStatus,
    pub children: Vec<TaskNode>,
}

/// `task` and its descendants among `all` (one tree's tasks), as of `now`.
pub fn subtree(all: &[Task], task: &Task, now: mandate_core::time::Timestamp) -> TaskNode {
    TaskNode {
        task: task.clone(),
        effective_status: task.status_at(now),
        children: all
            .iter()
            .filter(|t| t.parent == Some(task.id))
            .map(|t| subtree(all, t, now))
            .collect(),
    }
}

/// One task with its delegation tree below it.
#[utoipa::path(get, path = "/v1/tasks/{task}", tag = "tasks", params(("task" = String, Path)),
    responses((status = 200, body = TaskNode), (status = 404, body = Problem)), security(("admin" = [])))]
async fn get_task(
    State(s): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<TaskNode>> {
    let id = parse_task_id(&id)?;
    let task = s
        .store
        .task(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no task {id}")))?;
    let all = s.store.task_tree(task.root).await?;
    Ok(axum::Json(subtree(&all, &task, crate::now())))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EndRequest {
    /// Why (kept in the audit record).
    reason: Option<String>,
}

/// What ending a task did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndedTask {
    pub task: Task,
    /// Descendant tasks revoked by the cascade.
    pub cascaded: Vec<TaskId>,
}

impl From<Ended> for EndedTask {
    fn from(e: Ended) -> Self {
        EndedTask {
            task: e.task,
            cascaded: e.cascaded,
        }
    }
}

/// The optional JSON body of an ending: empty is fine, malformed is not.
fn end_request(body: &[u8]) -> ApiResult<Option<EndRequest>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "invalid-body", e.to_string()))
}

async fn end_own(
    s: AppState,
    bearer: TaskBearer,
    id: String,
    ending: Ending,
    body: Option<EndRequest>,
) -> ApiResult<axum::Json<EndedTask>> {
    let id = parse_task_id(&id)?;
    let TaskBearer(v, request_id) = bearer;
    if v.task.id != id {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this token is for task {}, not {id}; only the assignee ends its task",
                v.task.id
            ),
        ));
    }
    let change = Change {
        actor: Actor::Agent {
            id: v.task.assignee,
            spiffe_id: v.claims.client_id.clone(),
        },
        at: crate::now(),
        request_id,
    };
    let reason = body
        .and_then(|b| b.reason)
        .unwrap_or_else(|| ending.status().as_str().to_owned());
    Ok(axum::Json(
        s.store.end_task(&change, id, ending, &reason).await?.into(),
    ))
}

/// The assignee completes its task; every task delegated from it is revoked.
#[utoipa::path(post, path = "/v1/tasks/{task}/complete", tag = "tasks", params(("task" = String, Path)),
    request_body(content = Option<EndRequest>), responses((status = 200, body = EndedTask), (status = 401, body = Problem), (status = 409, body = Problem)),
    security(("task_token" = [])))]
async fn complete_task(
    State(s): State<AppState>,
    bearer: TaskBearer,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<EndedTask>> {
    end_own(s, bearer, id, Ending::Complete, end_request(&body)?).await
}

/// The assignee reports its task failed; every task delegated from it is revoked.
#[utoipa::path(post, path = "/v1/tasks/{task}/fail", tag = "tasks", params(("task" = String, Path)),
    request_body(content = Option<EndRequest>), responses((status = 200, body = EndedTask), (status = 401, body = Problem), (status = 409, body = Problem)),
    security(("task_token" = [])))]
async fn fail_task(
    State(s): State<AppState>,
    bearer: TaskBearer,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<EndedTask>> {
    end_own(s, bearer, id, Ending::Fail, end_request(&body)?).await
}

/// Revoke a task and its subtree: by an admin, the human who initiated it, or
/// the assignee's owner (with an ID token from a trusted issuer).
#[utoipa::path(post, path = "/v1/tasks/{task}/revoke", tag = "tasks", params(("task" = String, Path)),
    request_body(content = Option<EndRequest>), responses((status = 200, body = EndedTask), (status = 403, body = Problem), (status = 409, body = Problem)),
    security(("admin" = []), ("id_token" = [])))]
async fn revoke_task(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<EndedTask>> {
    let id = parse_task_id(&id)?;
    let body = end_request(&body)?;
    let task = s
        .store
        .task(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no task {id}")))?;
    let change = match who {
        Principal::Admin(a) => a.change(),
        Principal::Human(h, request_id) => {
            let owner = s.store.agent(task.assignee).await?.map(|a| a.owner);
            if h != task.initiator && Some(h) != owner {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "only the task's initiator, the assignee's owner or an admin may revoke task {id}"
                    ),
                ));
            }
            Change {
                actor: Actor::Human { id: h },
                at: crate::now(),
                request_id,
            }
        }
    };
    let reason = body
        .and_then(|b| b.reason)
        .unwrap_or_else(|| "revoked".to_owned());
    Ok(axum::Json(
        s.store
            .end_task(&change, id, Ending::Revoke, &reason)
            .await?
            .into(),
    ))
}
