//! `/v1/reviews`: access-review campaigns. An admin opens one for an owner;
//! the owner, signed in with an ID token, keeps, reduces or retires each of
//! their agents' ceilings; items undecided past the deadline show up in
//! posture as `review_overdue` findings.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use mandate_core::audit::Actor;
use mandate_core::ids::{HumanId, ReviewId};
use mandate_core::review::{Campaign, Review, ReviewDecision, ReviewStatus};
use mandate_core::scope::Scope;
use mandate_core::time::Timestamp;
use mandate_store::{AgentFilter, Change, ReviewAnswer, ReviewFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::humans::parse_human_id;
use super::posture::all_pages;
use super::tasks::Principal;
use crate::AppState;
use crate::extract::{Admin, Json, Query};
use crate::problem::{ApiResult, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start, list))
        .routes(routes!(show))
        .routes(routes!(decide))
}

/// A review as of the time it is read.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReviewView {
    #[serde(flatten)]
    pub review: Review,
    pub status: ReviewStatus,
}

impl ReviewView {
    fn at(review: Review, now: Timestamp) -> Self {
        let status = review.status(now);
        ReviewView { review, status }
    }
}

fn parse_id(s: &str) -> ApiResult<ReviewId> {
    s.parse()
        .map_err(|_| Problem::not_found(format!("no review {s:?}: review ids are UUIDs")))
}

/// Admins read every review; a human reads only the reviews of their own agents.
fn check_reader(who: &Principal, owner: HumanId) -> ApiResult<()> {
    match who {
        Principal::Human(id, _) if *id != owner => Err(Problem::forbidden(
            "a human may read only the reviews of the agents they own",
        )),
        _ => Ok(()),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StartReview {
    /// The owner whose agents are reviewed (human id).
    owner: String,
    /// Days the owner has to decide (1 to 90, default 14).
    #[serde(default = "default_deadline")]
    deadline_days: u32,
    /// Days of use behind each proposal (1 to 365, default 30).
    #[serde(default = "default_window")]
    window_days: u32,
}

fn default_deadline() -> u32 {
    14
}
fn default_window() -> u32 {
    30
}

/// Open a review of every agent an owner holds (retired ones excepted), each
/// with the proposed reduction: the part of its ceiling used in the window.
#[utoipa::path(post, path = "/v1/reviews", tag = "agents", request_body = StartReview,
    responses((status = 201, body = ReviewView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("admin" = [])))]
async fn start(
    State(s): State<AppState>,
    admin: Admin,
    Json(body): Json<StartReview>,
) -> ApiResult<(StatusCode, axum::Json<ReviewView>)> {
    let owner_id = parse_human_id(&body.owner)?;
    let owner = s
        .store
        .human(owner_id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no human {owner_id}")))?;
    let change = admin.change();
    let store = s.store.as_ref();
    let filter = &AgentFilter {
        owner: Some(owner_id),
        ..AgentFilter::default()
    };
    let agents = all_pages(|p| async move { store.inventory(filter, &p, change.at).await }).await?;
    let campaign = Campaign {
        id: ReviewId::from_uuid(crate::install::new_uuid()),
        started_at: change.at,
        deadline_days: body.deadline_days,
        window_days: body.window_days,
    };
    let review = Review::start(campaign, &owner, &agents)?;
    store.start_review(&change, &review).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(ReviewView::at(review, change.at)),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ReviewQuery {
    /// Only this owner's reviews (human id).
    owner: Option<String>,
    /// Only reviews with items still undecided.
    #[serde(default)]
    incomplete: bool,
}

/// List reviews, newest first. A human sees only their own.
#[utoipa::path(get, path = "/v1/reviews", tag = "agents", params(ReviewQuery),
    responses((status = 200, body = Vec<ReviewView>)), security(("admin" = []), ("id_token" = [])))]
async fn list(
    State(s): State<AppState>,
    who: Principal,
    Query(q): Query<ReviewQuery>,
) -> ApiResult<axum::Json<Vec<ReviewView>>> {
    let mut owner = q.owner.as_deref().map(parse_human_id).transpose()?;
    if let Principal::Human(id, _) = &who {
        check_reader(&who, owner.unwrap_or(*id))?;
        owner = Some(*id);
    }
    let filter = ReviewFilter {
        owner,
        incomplete: q.incomplete,
    };
    let now = crate::now();
    let reviews = s.store.list_reviews(&filter).await?;
    Ok(axum::Json(
        reviews
            .into_iter()
            .map(|r| ReviewView::at(r, now))
            .collect(),
    ))
}

async fn load(s: &AppState, id: &str) -> ApiResult<Review> {
    let id = parse_id(id)?;
    s.store
        .review(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no review {id}")))
}

#[utoipa::path(get, path = "/v1/reviews/{review}", tag = "agents", params(("review" = String, Path)),
    responses((status = 200, body = ReviewView), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("admin" = []), ("id_token" = [])))]
async fn show(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ReviewView>> {
    let review = load(&s, &id).await?;
    check_reader(&who, review.owner)?;
    Ok(axum::Json(ReviewView::at(review, crate::now())))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum DecisionKind {
    Keep,
    Reduce,
    Retire,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Decide {
    /// The agent, by id or name.
    agent: String,
    decision: DecisionKind,
    /// For `reduce` only: the new ceiling, strictly narrower than the current one.
    #[schema(value_type = Option<Vec<Object>>)]
    ceiling: Option<Scope>,
    /// Why: mandatory, kept with the review and in the audit log.
    note: String,
}

impl Decide {
    fn decision(&self) -> ApiResult<ReviewDecision> {
        match (self.decision, &self.ceiling) {
            (DecisionKind::Reduce, Some(c)) => Ok(ReviewDecision::Reduce { ceiling: c.clone() }),
            (DecisionKind::Reduce, None) => Err(Problem::bad_request(
                "reduce needs the new ceiling: \"ceiling\": [{\"action\": ..., \"resource\": ...}] (the review's `proposed` is a start)",
            )),
            (_, Some(_)) => Err(Problem::bad_request(
                "a ceiling is given only with \"decision\": \"reduce\"",
            )),
            (DecisionKind::Keep, None) => Ok(ReviewDecision::Keep),
            (DecisionKind::Retire, None) => Ok(ReviewDecision::Retire),
        }
    }
}

/// The owner's decision on one agent, applied at once: a reduction replaces
/// the ceiling (only ever narrower) and revokes open tasks it no longer
/// covers; a retirement revokes the agent's tasks and removes its keys.
#[utoipa::path(post, path = "/v1/reviews/{review}/decisions", tag = "agents", params(("review" = String, Path)),
    request_body = Decide,
    responses((status = 200, body = ReviewView), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("id_token" = [])))]
async fn decide(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<Decide>,
) -> ApiResult<axum::Json<ReviewView>> {
    let Principal::Human(human, request_id) = who else {
        return Err(Problem::forbidden(
            "a review is decided by the agents' owner: authenticate with their ID token, not an admin token",
        ));
    };
    let decision = body.decision()?;
    let review = load(&s, &id).await?;
    let reviewer = s
        .store
        .human(human)
        .await?
        .ok_or_else(|| Problem::unauthorized("the ID token's human is not registered"))?;
    if !review.may_decide(&reviewer) {
        return Err(Problem::forbidden(
            "only the owner of the reviewed agents decides their ceilings",
        ));
    }
    let agent = super::agents::resolve(&s, &body.agent).await?;
    let change = Change {
        actor: Actor::Human { id: human },
        at: crate::now(),
        request_id,
    };
    let answer = ReviewAnswer {
        review: review.id,
        agent: agent.id,
        by: human,
        decision,
        note: body.note,
    };
    let review = s.store.decide_review(&change, &answer).await?;
    Ok(axum::Json(ReviewView::at(review, change.at)))
}
