//! `/v1/approvals`: the human-in-the-loop queue.
//!
//! Anyone with the approver role (or an admin) may list; only a human, proven
//! by an ID token from a trusted issuer, may answer, and never for a task
//! they initiated. An answer is recorded once, with its event; an approval
//! unlocks exactly the request it was raised for, once.

use axum::extract::{Path, State};
use mandate_core::approval::{Approval, ApprovalStatus};
use mandate_core::audit::Actor;
use mandate_core::human::HumanRole;
use mandate_core::ids::{ApprovalId, HumanId};
use mandate_store::{ApprovalFilter, Change};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::tasks::{Principal, parse_task_id};
use crate::AppState;
use crate::extract::{Json, Query};
use crate::problem::{ApiResult, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(approve))
        .routes(routes!(deny))
}

pub fn parse_id(s: &str) -> ApiResult<ApprovalId> {
    s.parse()
        .map_err(|_| Problem::bad_request(format!("{s:?} is not an approval id (UUID)")))
}

/// Admins and approvers may read the queue.
async fn check_reader(s: &AppState, who: &Principal) -> ApiResult<()> {
    if let Principal::Human(id, _) = who {
        let h = s.store.human(*id).await?;
        if !h.is_some_and(|h| h.roles.contains(&HumanRole::Approver)) {
            return Err(Problem::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                "only admins and humans with the approver role may read approvals",
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ApprovalQuery {
    status: Option<ApprovalStatus>,
    task: Option<String>,
}

/// List approvals, newest first (pending ones by default).
#[utoipa::path(get, path = "/v1/approvals", tag = "approvals", params(ApprovalQuery),
    responses((status = 200, body = Vec<Approval>)), security(("admin" = []), ("id_token" = [])))]
async fn list(
    State(s): State<AppState>,
    who: Principal,
    Query(q): Query<ApprovalQuery>,
) -> ApiResult<axum::Json<Vec<Approval>>> {
    check_reader(&s, &who).await?;
    let filter = ApprovalFilter {
        status: q.status,
        task: q.task.as_deref().map(parse_task_id).transpose()?,
    };
    Ok(axum::Json(s.store.list_approvals(&filter).await?))
}

#[utoipa::path(get, path = "/v1/approvals/{approval}", tag = "approvals", params(("approval" = String, Path)),
    responses((status = 200, body = Approval), (status = 404, body = Problem)), security(("admin" = []), ("id_token" = [])))]
async fn show(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Approval>> {
    check_reader(&s, &who).await?;
    let id = parse_id(&id)?;
    Ok(axum::Json(s.store.approval(id).await?.ok_or_else(
        || Problem::not_found(format!("no approval {id}")),
    )?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Answer {
    /// Why; kept with the approval and in the audit log.
    note: Option<String>,
}

async fn answer(
    s: &AppState,
    who: Principal,
    id: &str,
    approve: bool,
    note: Option<String>,
) -> ApiResult<axum::Json<Approval>> {
    let Principal::Human(human_id, request_id) = who else {
        return Err(Problem::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            "approvals are answered by a human: authenticate with an ID token, not an admin token",
        ));
    };
    let id = parse_id(id)?;
    answer_as(s, human_id, request_id, id, approve, note.as_deref())
        .await
        .map(axum::Json)
}

/// A human answers an approval: the one path every surface (this API, the
/// web console) takes, so the rules hold everywhere. A closed approval is a
/// conflict (409); a human who may not answer (no approver role, or the
/// task's initiator: separation of duties) is 403; a bad note is 400.
pub async fn answer_as(
    s: &AppState,
    human_id: HumanId,
    request_id: Option<String>,
    id: ApprovalId,
    approve: bool,
    note: Option<&str>,
) -> ApiResult<Approval> {
    let approval = s
        .store
        .approval(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no approval {id}")))?;
    let human = s
        .store
        .human(human_id)
        .await?
        .ok_or_else(|| Problem::unauthorized("the ID token's human is not registered"))?;
    let now = crate::now();
    approval.check_answerable(now)?;
    approval.check_approver(&human).map_err(|e| {
        Problem::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            e.to_string(),
        )
    })?;
    if let Some(n) = note
        && (n.len() > MAX_NOTE || n.chars().any(char::is_control))
    {
        return Err(Problem::bad_request(format!(
            "note: at most {MAX_NOTE} characters, no control characters"
        )));
    }
    let change = Change {
        actor: Actor::Human { id: human.id },
        at: now,
        request_id,
    };
    Ok(s.store
        .answer_approval(&change, id, approve, human.id, note)
        .await?)
}

/// Longest note an approver may give.
pub const MAX_NOTE: usize = 2000;

/// Approve: the same request then gets `allow`, once.
#[utoipa::path(post, path = "/v1/approvals/{approval}/approve", tag = "approvals", params(("approval" = String, Path)),
    request_body = Answer, responses((status = 200, body = Approval), (status = 403, body = Problem), (status = 409, body = Problem)),
    security(("id_token" = [])))]
async fn approve(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<Answer>,
) -> ApiResult<axum::Json<Approval>> {
    answer(&s, who, &id, true, body.note).await
}

/// Deny: the same request is then denied.
#[utoipa::path(post, path = "/v1/approvals/{approval}/deny", tag = "approvals", params(("approval" = String, Path)),
    request_body = Answer, responses((status = 200, body = Approval), (status = 403, body = Problem), (status = 409, body = Problem)),
    security(("id_token" = [])))]
async fn deny(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<Answer>,
) -> ApiResult<axum::Json<Approval>> {
    answer(&s, who, &id, false, body.note).await
}
