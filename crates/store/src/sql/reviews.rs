//! Access-review campaigns and the owner decisions that change ceilings.

use mandate_core::agent::Lifecycle;
use mandate_core::audit::EventKind;
use mandate_core::review::{Decided, Review, ReviewDecision};
use serde_json::json;
use sqlx::{AnyPool, AssertSqlSafe};

use super::audit::append;
use super::convert::{json, to_json};
use super::registry::{agent_for_update, event, lifecycle_in};
use super::{SqlStore, WriteTx, db_error};
use crate::*;

const SELECT: &str = "SELECT body FROM access_reviews";

pub(crate) async fn start_review(store: &SqlStore, change: &Change, review: &Review) -> Result<()> {
    let mut w = store.write().await?;
    sqlx::query(
        "INSERT INTO access_reviews (id, owner_id, started_at, deadline, complete, body) \
         VALUES ($1, $2, $3, $4, 0, $5)",
    )
    .bind(review.id.to_string())
    .bind(review.owner.to_string())
    .bind(review.started_at.as_millis())
    .bind(review.deadline.as_millis())
    .bind(to_json(review))
    .execute(w.conn())
    .await
    .map_err(db_error)?;
    let items: Vec<_> = review
        .items
        .iter()
        .map(|i| json!({ "agent": i.agent, "name": i.name, "ceiling": i.ceiling, "proposed": i.proposed }))
        .collect();
    append(
        &mut w,
        event(change, EventKind::ReviewStarted)
            .human(review.owner)
            .details(json!({
                "review": review.id, "deadline": review.deadline,
                "window_days": review.window_days, "items": items,
            })),
    )
    .await?;
    w.commit().await
}

pub(crate) async fn review(pool: &AnyPool, id: ReviewId) -> Result<Option<Review>> {
    let row = sqlx::query(AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
        .bind(id.to_string())
        .fetch_optional(pool)
        .await
        .map_err(db_error)?;
    row.map(|r| json(&r, "body")).transpose()
}

pub(crate) async fn list_reviews(store: &SqlStore, filter: &ReviewFilter) -> Result<Vec<Review>> {
    let mut q = super::registry::Filtered::new(SELECT);
    if let Some(owner) = filter.owner {
        q.and("owner_id", owner.to_string());
    }
    if filter.incomplete {
        q.and_const("complete = 0");
    }
    let rows = q
        .order_by("started_at DESC, id DESC")
        .fetch_all(store)
        .await?;
    rows.iter().map(|r| json(r, "body")).collect()
}

async fn review_for_update(w: &mut WriteTx<'_>, id: ReviewId) -> Result<Review> {
    let lock = if w.backend == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let row = sqlx::query(AssertSqlSafe(format!("{SELECT} WHERE id = $1{lock}")))
        .bind(id.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(db_error)?
        .ok_or_else(|| StoreError::NotFound(format!("review {id}")))?;
    json(&row, "body")
}

pub(crate) async fn decide_review(
    store: &SqlStore,
    change: &Change,
    d: &ReviewAnswer,
) -> Result<Review> {
    let mut w = store.write().await?;
    let mut review = review_for_update(&mut w, d.review).await?;
    let agent = agent_for_update(&mut w, d.agent).await?;
    review.check_decision(&agent, &d.decision, &d.note)?;
    let mut details = json!({
        "review": review.id, "decision": d.decision.as_str(), "note": d.note,
        "ceiling_before": agent.ceiling, "late": change.at > review.deadline,
    });
    match &d.decision {
        ReviewDecision::Keep => {}
        ReviewDecision::Reduce { ceiling } => {
            sqlx::query("UPDATE agents SET ceiling = $1, updated_at = $2 WHERE id = $3")
                .bind(to_json(ceiling))
                .bind(change.at.as_millis())
                .bind(agent.id.to_string())
                .execute(w.conn())
                .await
                .map_err(db_error)?;
            details["ceiling_after"] = json!(ceiling);
            // A narrower ceiling that live tasks could still exceed would
            // narrow nothing until they expire.
            let reason = format!(
                "the ceiling of {} was reduced in access review {}",
                agent.spiffe_id, review.id
            );
            super::tasks::revoke_agent_tasks_where(&mut w, change, agent.id, &reason, |t| {
                t.scope.check_within(ceiling).is_err()
            })
            .await?;
        }
        ReviewDecision::Retire => {
            let retired = lifecycle_in(&mut w, change, agent.id, Lifecycle::Retire).await?;
            append(&mut w, retired).await?;
        }
    }
    review.record(
        agent.id,
        Decided {
            decision: d.decision.clone(),
            by: d.by,
            at: change.at,
            note: d.note.clone(),
            late: change.at > review.deadline,
        },
    );
    let complete = review.items.iter().all(|i| i.decided.is_some());
    sqlx::query("UPDATE access_reviews SET body = $1, complete = $2 WHERE id = $3")
        .bind(to_json(&review))
        .bind(i64::from(complete))
        .bind(review.id.to_string())
        .execute(w.conn())
        .await
        .map_err(db_error)?;
    append(
        &mut w,
        event(change, EventKind::ReviewDecided)
            .agent(agent.id)
            .human(d.by)
            .details(details),
    )
    .await?;
    w.commit().await?;
    Ok(review)
}
