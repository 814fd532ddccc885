//! Workflows, reported outcomes and the per-day sums reports read.
//!
//! An outcome is classified inside the transaction that records it, under
//! the task tree's lock (the same lock decisions and task ends take), so the
//! facts it is judged on cannot change between reading and writing. The
//! idempotency key's primary key makes the first report win even when
//! retries race on other connections or nodes.

use mandate_core::RuleError;
use mandate_core::audit::EventKind;
use mandate_core::audit::event::LogEntry;
use mandate_core::audit::verify::StoredEntry;
use mandate_core::ids::{OutcomeId, TaskId};
use mandate_core::outcome::money::Amount;
use mandate_core::outcome::{
    Classification, Facts, NewWorkflow, OutcomeRecord, Period, Sums, TallyRow, Workflow,
    WorkflowName, classify,
};
use mandate_core::time::Timestamp;
use serde_json::json;
use sqlx::{AnyPool, AssertSqlSafe, Row};

use super::audit::append;
use super::convert::{self, to_json};
use super::registry::event;
use super::{SqlStore, WriteTx, db_error};
use crate::*;

/// A UTC day in epoch milliseconds: the rollup's time bucket.
const DAY_MS: i64 = 86_400_000;

// ---- workflows ----------------------------------------------------------------------

pub(crate) async fn register_workflow(
    store: &SqlStore,
    change: &Change,
    wf: &NewWorkflow,
) -> Result<(Workflow, bool)> {
    wf.validate()?;
    let mut w = store.write().await?;
    let owner = super::registry::human_in(w.conn(), wf.owner).await?;
    owner.check_may_own_agents()?;
    let existing = workflow_row(w.conn(), &wf.name).await?;
    let created = existing.is_none();
    let created_at = existing.map_or(change.at, |e| e.created_at);
    if created {
        sqlx::query(
            "INSERT INTO workflows (name, definition, owner, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(wf.name.to_string())
        .bind(to_json(wf))
        .bind(wf.owner.to_string())
        .bind(change.at.as_millis())
        .bind(change.at.as_millis())
        .execute(w.conn())
        .await
        .map_err(db_error)?;
    } else {
        sqlx::query(
            "UPDATE workflows SET definition = $2, owner = $3, updated_at = $4 WHERE name = $1",
        )
        .bind(wf.name.to_string())
        .bind(to_json(wf))
        .bind(wf.owner.to_string())
        .bind(change.at.as_millis())
        .execute(w.conn())
        .await
        .map_err(db_error)?;
    }
    append(
        &mut w,
        event(change, EventKind::WorkflowRegistered)
            .human(wf.owner)
            .details(json!({ "workflow": wf, "created": created })),
    )
    .await?;
    w.commit().await?;
    Ok((
        Workflow {
            def: wf.clone(),
            created_at,
            updated_at: change.at,
        },
        created,
    ))
}

async fn workflow_row<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    name: &WorkflowName,
) -> Result<Option<Workflow>> {
    let row =
        sqlx::query("SELECT definition, created_at, updated_at FROM workflows WHERE name = $1")
            .bind(name.to_string())
            .fetch_optional(db)
            .await
            .map_err(db_error)?;
    row.as_ref().map(workflow_of).transpose()
}

fn workflow_of(r: &sqlx::any::AnyRow) -> Result<Workflow> {
    Ok(Workflow {
        def: convert::json(r, "definition")?,
        created_at: convert::millis(r, "created_at")?,
        updated_at: convert::millis(r, "updated_at")?,
    })
}

pub(crate) async fn workflow(pool: &AnyPool, name: &WorkflowName) -> Result<Option<Workflow>> {
    workflow_row(pool, name).await
}

pub(crate) async fn list_workflows(pool: &AnyPool) -> Result<Vec<Workflow>> {
    let rows =
        sqlx::query("SELECT definition, created_at, updated_at FROM workflows ORDER BY name")
            .fetch_all(pool)
            .await
            .map_err(db_error)?;
    rows.iter().map(workflow_of).collect()
}

// ---- outcomes -----------------------------------------------------------------------

pub(crate) async fn record_outcome(
    store: &SqlStore,
    change: &Change,
    o: &OutcomeWrite,
) -> Result<OutcomeRecorded> {
    o.claim.validate()?;
    let mut w = store.write().await?;
    // Decisions and task ends take this lock too: the facts below hold until commit.
    super::tasks::lock_tree(&mut w, o.task).await?;
    if workflow_row(w.conn(), &o.claim.workflow).await?.is_none() {
        return Err(StoreError::NotFound(format!(
            "workflow {}",
            o.claim.workflow
        )));
    }
    let fingerprint = o.claim.fingerprint();
    let claimed = sqlx::query(
        "INSERT INTO outcome_keys (workflow, idem_key, fingerprint, outcome_id) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (workflow, idem_key) DO NOTHING",
    )
    .bind(o.claim.workflow.to_string())
    .bind(o.claim.idempotency_key.as_str().to_owned())
    .bind(fingerprint.clone())
    .bind(o.id.to_string())
    .execute(w.conn())
    .await
    .map_err(db_error)?
    .rows_affected();
    let first = if claimed == 0 {
        let row = sqlx::query(
            "SELECT fingerprint, outcome_id FROM outcome_keys WHERE workflow = $1 AND idem_key = $2",
        )
        .bind(o.claim.workflow.to_string())
        .bind(o.claim.idempotency_key.as_str().to_owned())
        .fetch_one(w.conn())
        .await
        .map_err(db_error)?;
        if convert::text(&row, "fingerprint")? != fingerprint {
            w.rollback().await?;
            return Err(RuleError::Conflict(format!(
                "the idempotency key {:?} was already used for a different outcome of {}; \
                 use one key per transaction and resend a retry unchanged",
                o.claim.idempotency_key.as_str(),
                o.claim.workflow
            ))
            .into());
        }
        let first: OutcomeId = convert::parsed(&row, "outcome_id")?;
        // The first report may be in this very batch, its entry not yet inserted.
        w.flush_audit().await?;
        Some(
            outcome_in(w.conn(), first)
                .await?
                .ok_or_else(|| StoreError::Internal(format!("outcome {first} has no record")))?,
        )
    } else {
        None
    };
    let facts = facts(&mut w, o, first.as_ref().map(|f| f.id), change.at).await?;
    let classified = classify(&facts);
    let record = OutcomeRecord {
        id: o.id,
        workflow: o.claim.workflow.clone(),
        outcome_type: o.claim.outcome_type.clone(),
        idempotency_key: o.claim.idempotency_key.clone(),
        external_ref: o.claim.external_ref.clone(),
        task: o.task,
        agent: o.agent,
        initiator: o.initiator,
        owner: o.owner,
        chain: o.chain.clone(),
        classification: classified.classification,
        explanation: classified.explanation,
        duplicate_of: first.as_ref().map(|f| f.id),
        currency: o.currency,
        valuation: o.valuation,
        reported_at: change.at,
    };
    let idx = append(
        &mut w,
        event(change, EventKind::OutcomeReported)
            .task(o.task)
            .agent(o.agent)
            .human(o.initiator)
            .credential(o.jti.clone())
            .chain(o.chain.clone())
            .details(
                serde_json::to_value(&record).map_err(|e| StoreError::Internal(e.to_string()))?,
            ),
    )
    .await?;
    insert_outcome(&mut w, &record, idx).await?;
    w.commit().await?;
    Ok(OutcomeRecorded { record, first })
}

/// The record's facts at `now`, read inside the write.
async fn facts(
    w: &mut WriteTx<'_>,
    o: &OutcomeWrite,
    first_report: Option<OutcomeId>,
    now: Timestamp,
) -> Result<Facts> {
    let task = super::tasks::task_in(w, o.task).await?;
    let revoked: Option<i64> =
        sqlx::query_scalar("SELECT revoked_at FROM credentials WHERE jti = $1 AND task_id = $2")
            .bind(o.jti.clone())
            .bind(o.task.to_string())
            .fetch_optional(w.conn())
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                StoreError::NotFound(format!("credential {} of task {}", o.jti, o.task))
            })?;
    let (allowed, denied) = subtree_calls(w, o.task).await?;
    Ok(Facts {
        first_report,
        task_status: task.status_at(now),
        credential_revoked: revoked.is_some(),
        chain_gaps: o.chain_gaps.clone(),
        allowed_actions: allowed,
        denied_actions: denied,
    })
}

/// Allowed and denied decisions under a task and every task delegated from it.
async fn subtree_calls(w: &mut WriteTx<'_>, task: TaskId) -> Result<(u64, u64)> {
    let row = sqlx::query(
        "WITH RECURSIVE sub (id) AS ( \
             SELECT id FROM tasks WHERE id = $1 \
             UNION ALL SELECT t.id FROM tasks t JOIN sub ON t.parent_id = sub.id) \
         SELECT CAST(COALESCE(SUM(calls_used), 0) AS BIGINT) AS allowed, \
                CAST(COALESCE(SUM(denied_calls), 0) AS BIGINT) AS denied \
         FROM tasks WHERE id IN (SELECT id FROM sub)",
    )
    .bind(task.to_string())
    .fetch_one(w.conn())
    .await
    .map_err(db_error)?;
    let get = |c: &str| -> Result<u64> {
        let n: i64 = row.try_get(c).map_err(db_error)?;
        Ok(n.max(0) as u64)
    };
    Ok((get("allowed")?, get("denied")?))
}

async fn insert_outcome(w: &mut WriteTx<'_>, r: &OutcomeRecord, idx: u64) -> Result<()> {
    let v = &r.valuation;
    let (value, cost) = (v.value.units(), v.cost.units());
    let (minutes, tokens) = (as_i64(v.minutes_saved), as_i64(v.model_tokens));
    sqlx::query(
        "INSERT INTO outcomes (id, workflow, reported_at, task_id, agent_id, initiator, classification, \
         value, cost, minutes, tokens, audit_idx) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(r.id.to_string())
    .bind(r.workflow.to_string())
    .bind(r.reported_at.as_millis())
    .bind(r.task.to_string())
    .bind(r.agent.to_string())
    .bind(r.initiator.to_string())
    .bind(r.classification.as_str())
    .bind(value)
    .bind(cost)
    .bind(minutes)
    .bind(tokens)
    .bind(as_i64(idx))
    .execute(w.conn())
    .await
    .map_err(db_error)?;
    sqlx::query(
        "INSERT INTO outcome_rollup (workflow, day, agent_id, initiator, classification, n, value, cost, minutes, tokens) \
         VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8, $9) \
         ON CONFLICT (workflow, day, agent_id, initiator, classification) DO UPDATE SET \
         n = outcome_rollup.n + 1, value = outcome_rollup.value + excluded.value, \
         cost = outcome_rollup.cost + excluded.cost, minutes = outcome_rollup.minutes + excluded.minutes, \
         tokens = outcome_rollup.tokens + excluded.tokens",
    )
    .bind(r.workflow.to_string())
    .bind(r.reported_at.as_millis().div_euclid(DAY_MS) * DAY_MS)
    .bind(r.agent.to_string())
    .bind(r.initiator.to_string())
    .bind(r.classification.as_str())
    .bind(value)
    .bind(cost)
    .bind(minutes)
    .bind(tokens)
    .execute(w.conn())
    .await
    .map_err(db_error)?;
    Ok(())
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// An outcome's record is its audit entry's details: one source of truth.
async fn outcome_in<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    id: OutcomeId,
) -> Result<Option<OutcomeRecord>> {
    let row = sqlx::query(
        "SELECT a.entry FROM outcomes o JOIN audit_log a ON a.idx = o.audit_idx WHERE o.id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(db)
    .await
    .map_err(db_error)?;
    row.map(|r| {
        OutcomeRecord::from_entry(&convert::text(&r, "entry")?).map_err(StoreError::Internal)
    })
    .transpose()
}

pub(crate) async fn outcome(pool: &AnyPool, id: OutcomeId) -> Result<Option<OutcomeRecord>> {
    outcome_in(pool, id).await
}

pub(crate) async fn outcome_entries(
    pool: &AnyPool,
    workflow: &WorkflowName,
    period: &Period,
    after: Option<u64>,
    limit: u32,
) -> Result<Vec<StoredEntry>> {
    let rows = sqlx::query(
        "SELECT a.idx, a.leaf_hash, a.entry FROM outcomes o JOIN audit_log a ON a.idx = o.audit_idx \
         WHERE o.workflow = $1 AND o.reported_at >= $2 AND o.reported_at < $3 AND o.audit_idx > $4 \
         ORDER BY o.audit_idx LIMIT $5",
    )
    .bind(workflow.to_string())
    .bind(period.from.as_millis())
    .bind(period.to.as_millis())
    .bind(after.map_or(-1, as_i64))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter().map(super::audit::stored_entry).collect()
}

// ---- reports ------------------------------------------------------------------------

/// Sums by agent, initiator and class over whole days of the rollup.
const DAY_SUMS: &str = "SELECT agent_id, initiator, classification, CAST(SUM(n) AS BIGINT) AS n, \
     CAST(SUM(value) AS BIGINT) AS value, CAST(SUM(cost) AS BIGINT) AS cost, \
     CAST(SUM(minutes) AS BIGINT) AS minutes, CAST(SUM(tokens) AS BIGINT) AS tokens \
     FROM outcome_rollup WHERE workflow = $1 AND day >= $2 AND day < $3 \
     GROUP BY agent_id, initiator, classification";

/// The same sums over the outcomes themselves, for part of a day.
const OUTCOME_SUMS: &str = "SELECT agent_id, initiator, classification, COUNT(*) AS n, \
     CAST(SUM(value) AS BIGINT) AS value, CAST(SUM(cost) AS BIGINT) AS cost, \
     CAST(SUM(minutes) AS BIGINT) AS minutes, CAST(SUM(tokens) AS BIGINT) AS tokens \
     FROM outcomes WHERE workflow = $1 AND reported_at >= $2 AND reported_at < $3 \
     GROUP BY agent_id, initiator, classification";

/// Whole days come from the rollup; the partial days at either end of the
/// period from the outcomes themselves, so any `[from, to)` is exact.
pub(crate) async fn outcome_tally(
    pool: &AnyPool,
    workflow: &WorkflowName,
    period: &Period,
) -> Result<Vec<TallyRow>> {
    let (from, to) = (period.from.as_millis(), period.to.as_millis());
    // The first midnight at or after `from`, the last at or before `to`.
    let first_day = from.div_euclid(DAY_MS) * DAY_MS
        + if from.rem_euclid(DAY_MS) == 0 {
            0
        } else {
            DAY_MS
        };
    let last_day = to.div_euclid(DAY_MS) * DAY_MS;
    let ranges = if first_day < last_day {
        vec![
            (DAY_SUMS, first_day, last_day),
            (OUTCOME_SUMS, from, first_day),
            (OUTCOME_SUMS, last_day, to),
        ]
    } else {
        vec![(OUTCOME_SUMS, from, to)]
    };
    let mut rows = Vec::new();
    for (sql, lo, hi) in ranges.into_iter().filter(|(_, lo, hi)| lo < hi) {
        let part = sqlx::query(sql)
            .bind(workflow.to_string())
            .bind(lo)
            .bind(hi)
            .fetch_all(pool)
            .await
            .map_err(db_error)?;
        for r in &part {
            rows.push(tally_row(r)?);
        }
    }
    Ok(rows)
}

fn tally_row(r: &sqlx::any::AnyRow) -> Result<TallyRow> {
    let n = |c: &str| -> Result<i64> { r.try_get::<i64, _>(c).map_err(db_error) };
    Ok(TallyRow {
        agent: convert::parsed(r, "agent_id")?,
        initiator: Some(convert::parsed(r, "initiator")?),
        classification: convert::parsed::<Classification>(r, "classification")?,
        sums: Sums {
            n: n("n")?.max(0) as u64,
            value: Amount::from_units(n("value")?),
            cost: Amount::from_units(n("cost")?),
            minutes: n("minutes")?.max(0) as u64,
            tokens: n("tokens")?.max(0) as u64,
        },
    })
}

pub(crate) async fn rebuild_outcome_rollup(store: &SqlStore) -> Result<()> {
    let mut w = store.write().await?;
    sqlx::query("DELETE FROM outcome_rollup")
        .execute(w.conn())
        .await
        .map_err(db_error)?;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO outcome_rollup (workflow, day, agent_id, initiator, classification, n, value, cost, minutes, tokens) \
         SELECT workflow, (reported_at / {DAY_MS}) * {DAY_MS}, agent_id, initiator, classification, \
         COUNT(*), SUM(value), SUM(cost), SUM(minutes), SUM(tokens) FROM outcomes \
         GROUP BY workflow, (reported_at / {DAY_MS}) * {DAY_MS}, agent_id, initiator, classification"
    )))
    .execute(w.conn())
    .await
    .map_err(db_error)?;
    w.commit().await
}

pub(crate) async fn policy_activations(pool: &AnyPool) -> Result<Vec<PolicyActivation>> {
    let rows =
        sqlx::query("SELECT entry FROM audit_log WHERE kind = 'policy.activated' ORDER BY idx")
            .fetch_all(pool)
            .await
            .map_err(db_error)?;
    rows.iter()
        .map(|r| {
            let e: LogEntry = serde_json::from_str(&convert::text(r, "entry")?)
                .map_err(|e| StoreError::Internal(format!("policy activation entry: {e}")))?;
            let hash = e.event.details["hash"]
                .as_str()
                .ok_or_else(|| StoreError::Internal("policy activation without a hash".into()))?;
            Ok(PolicyActivation {
                hash: hash.to_owned(),
                at: e.event.at,
            })
        })
        .collect()
}
