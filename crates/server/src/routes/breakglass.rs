//! `/v1/breakglass`: emergency grants outside normal policy.
//!
//! Granted by an admin with a mandatory reason and a capped TTL; listed as
//! unreviewed until a human records a review.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use mandate_core::audit::Actor;
use mandate_core::breakglass::{BreakGlass, DEFAULT_MAX_TTL_MS};
use mandate_core::ids::BreakGlassId;
use mandate_core::scope::{Grant, Scope};
use mandate_store::Change;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::tasks::Principal;
use crate::AppState;
use crate::extract::{Admin, Json, Query};
use crate::problem::{ApiResult, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(grant, list))
        .routes(routes!(review))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct GrantRequest {
    /// Agent id or name.
    agent: String,
    scope: Vec<Grant>,
    /// Seconds; at most 3600.
    ttl_s: i64,
    reason: String,
}

/// Grant break-glass access to an agent (admin).
#[utoipa::path(post, path = "/v1/breakglass", tag = "breakglass", request_body = GrantRequest,
    responses((status = 201, body = BreakGlass), (status = 422, body = Problem)), security(("admin" = [])))]
async fn grant(
    State(s): State<AppState>,
    admin: Admin,
    Json(req): Json<GrantRequest>,
) -> ApiResult<(StatusCode, axum::Json<BreakGlass>)> {
    let agent = super::tasks::agent_id(&s, &req.agent).await?;
    if s.store.agent(agent).await?.is_none() {
        return Err(Problem::not_found(format!("no agent {}", req.agent)));
    }
    let change = admin.change();
    let g = BreakGlass::grant(
        BreakGlassId::from_uuid(Uuid::now_v7()),
        agent,
        Scope::new(req.scope)?,
        &req.reason,
        change.actor.clone(),
        change.at,
        req.ttl_s.saturating_mul(1000),
        DEFAULT_MAX_TTL_MS,
    )?;
    s.store.grant_breakglass(&change, &g).await?;
    Ok((StatusCode::CREATED, axum::Json(g)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only grants nobody has reviewed yet.
    #[serde(default)]
    unreviewed: bool,
}

/// Every grant, newest first.
#[utoipa::path(get, path = "/v1/breakglass", tag = "breakglass", params(ListQuery),
    responses((status = 200, body = Vec<BreakGlass>)), security(("admin" = []), ("id_token" = [])))]
async fn list(
    State(s): State<AppState>,
    _: Principal,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Vec<BreakGlass>>> {
    Ok(axum::Json(s.store.list_breakglass(q.unreviewed).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReviewRequest {
    note: String,
}

/// Record a human's review of a grant (ID token).
#[utoipa::path(post, path = "/v1/breakglass/{grant}/review", tag = "breakglass", params(("grant" = String, Path)),
    request_body = ReviewRequest, responses((status = 200, body = BreakGlass), (status = 409, body = Problem)),
    security(("id_token" = [])))]
async fn review(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(req): Json<ReviewRequest>,
) -> ApiResult<axum::Json<BreakGlass>> {
    let Principal::Human(human, request_id) = who else {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a review is recorded by a human: authenticate with an ID token, not an admin token",
        ));
    };
    let id: BreakGlassId = id
        .parse()
        .map_err(|_| Problem::bad_request(format!("{id:?} is not a break-glass id (UUID)")))?;
    let g = s
        .store
        .breakglass(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no break-glass grant {id}")))?;
    g.check_review(&req.note)?;
    let change = Change {
        actor: Actor::Human { id: human },
        at: crate::now(),
        request_id,
    };
    Ok(axum::Json(
        s.store
            .review_breakglass(&change, id, human, &req.note)
            .await?,
    ))
}
