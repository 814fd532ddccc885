//! Rows to domain types. Anything that does not parse back is reported as
//! an internal error naming the column, never silently defaulted.
//!
//! A row is anything with [`Columns`]: sqlx's rows (both backends) and the
//! inline SQLite reader's (see `readers`), so one decoding serves both.

use std::borrow::Cow;

use mandate_core::agent::{Agent, AgentStatus};
use mandate_core::approval::{Approval, ApprovalStatus};
use mandate_core::breakglass::BreakGlass;
use mandate_core::human::{Human, HumanStatus};
use mandate_core::ids::SpiffeId;
use mandate_core::time::Timestamp;
use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::db_error;
use crate::{Result, StoreError};

/// A stored row's columns by name: the two kinds of value Mandate stores.
pub(crate) trait Columns {
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
}

impl Columns for AnyRow {
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        self.try_get(col).map_err(db_error)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        self.try_get(col).map_err(db_error)
    }
}

fn corrupt(col: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("stored column {col} is malformed: {e}"))
}

fn required<T>(v: Option<T>, col: &str) -> Result<T> {
    v.ok_or_else(|| corrupt(col, "NULL where a value is required"))
}

pub(crate) fn text(r: &impl Columns, col: &str) -> Result<String> {
    required(r.opt_text(col)?, col)
}

pub(crate) fn int(r: &impl Columns, col: &str) -> Result<i64> {
    required(r.opt_int(col)?, col)
}

pub(crate) fn millis(r: &impl Columns, col: &str) -> Result<Timestamp> {
    Ok(Timestamp::from_millis(int(r, col)?))
}

pub(crate) fn parsed<T: std::str::FromStr>(r: &impl Columns, col: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    text(r, col)?.parse().map_err(|e| corrupt(col, e))
}

pub(crate) fn json<T: DeserializeOwned>(r: &impl Columns, col: &str) -> Result<T> {
    serde_json::from_str(&text(r, col)?).map_err(|e| corrupt(col, e))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("domain values always serialise")
}

pub(crate) fn human(r: &AnyRow) -> Result<Human> {
    Ok(Human {
        id: parsed(r, "id")?,
        issuer: text(r, "issuer")?,
        subject: text(r, "subject")?,
        display_name: text(r, "display_name")?,
        email: opt_text(r, "email")?,
        roles: json(r, "roles")?,
        status: HumanStatus::parse(&text(r, "status")?).map_err(|e| corrupt("status", e))?,
        created_at: millis(r, "created_at")?,
        updated_at: millis(r, "updated_at")?,
    })
}

pub(crate) fn agent(r: &AnyRow) -> Result<Agent> {
    let spiffe: String = text(r, "spiffe_id")?;
    let (td, kind, name) = SpiffeId::parse(&spiffe).map_err(|e| corrupt("spiffe_id", e))?;
    let owner_status =
        HumanStatus::parse(&text(r, "owner_status")?).map_err(|e| corrupt("owner_status", e))?;
    Ok(Agent {
        id: parsed(r, "id")?,
        spiffe_id: SpiffeId::for_agent(&td, kind, &name),
        name,
        kind,
        owner: parsed(r, "owner_id")?,
        orphaned: owner_status == HumanStatus::Deactivated,
        description: text(r, "description")?,
        ceiling: json(r, "ceiling")?,
        keys: json(r, "keys")?,
        tools: json(r, "tools")?,
        data_sources: json(r, "data_sources")?,
        tags: json(r, "tags")?,
        status: parsed::<AgentStatus>(r, "status")?,
        created_at: millis(r, "created_at")?,
        updated_at: millis(r, "updated_at")?,
    })
}

/// A column's name under `prefix`: a row joining several tables names each
/// table's columns with a prefix of its own (see `context`).
fn col<'a>(prefix: &str, name: &'a str) -> Cow<'a, str> {
    if prefix.is_empty() {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("{prefix}{name}"))
    }
}

pub(crate) fn opt_millis(r: &impl Columns, col: &str) -> Result<Option<Timestamp>> {
    Ok(r.opt_int(col)?.map(Timestamp::from_millis))
}

pub(crate) fn opt_text(r: &impl Columns, col: &str) -> Result<Option<String>> {
    r.opt_text(col)
}

/// The SPIFFE id of a task row's assignee (`assignee_spiffe`).
pub(crate) fn task_spiffe(r: &impl Columns) -> Result<SpiffeId> {
    let spiffe = text(r, "assignee_spiffe")?;
    let (td, kind, name) = SpiffeId::parse(&spiffe).map_err(|e| corrupt("assignee_spiffe", e))?;
    Ok(SpiffeId::for_agent(&td, kind, &name))
}

pub(crate) fn task(r: &impl Columns) -> Result<mandate_core::task::Task> {
    Ok(mandate_core::task::Task {
        id: parsed(r, "id")?,
        parent: opt_text(r, "parent_id")?
            .map(|p| p.parse())
            .transpose()
            .map_err(|e| corrupt("parent_id", e))?,
        root: parsed(r, "root_id")?,
        depth: u32::try_from(int(r, "depth")?).map_err(|e| corrupt("depth", e))?,
        purpose: text(r, "purpose")?,
        initiator: parsed(r, "initiator")?,
        assignee: parsed(r, "assignee")?,
        assignee_spiffe: task_spiffe(r)?,
        delegator: opt_text(r, "delegator")?
            .map(|p| p.parse())
            .transpose()
            .map_err(|e| corrupt("delegator", e))?,
        scope: json(r, "scope")?,
        limits: json(r, "limits")?,
        expires_at: millis(r, "expires_at")?,
        status: parsed(r, "status")?,
        created_at: millis(r, "created_at")?,
        ended_at: opt_millis(r, "ended_at")?,
        end_reason: opt_text(r, "end_reason")?,
    })
}

pub(crate) fn credential(r: &AnyRow) -> Result<crate::CredentialRecord> {
    credential_at(r, "")
}

/// A credential from the columns named `prefix` + its usual column names.
pub(crate) fn credential_at(r: &impl Columns, p: &str) -> Result<crate::CredentialRecord> {
    Ok(crate::CredentialRecord {
        jti: text(r, &col(p, "jti"))?,
        task: parsed(r, &col(p, "task_id"))?,
        agent: parsed(r, &col(p, "agent_id"))?,
        kid: text(r, &col(p, "kid"))?,
        issued_at: millis(r, &col(p, "issued_at"))?,
        expires_at: millis(r, &col(p, "expires_at"))?,
        cnf_jkt: opt_text(r, &col(p, "cnf_jkt"))?,
        revoked_at: opt_millis(r, &col(p, "revoked_at"))?,
    })
}

fn opt_parsed<T: std::str::FromStr>(r: &impl Columns, col: &str) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    opt_text(r, col)?
        .map(|v| v.parse().map_err(|e| corrupt(col, e)))
        .transpose()
}

pub(crate) fn policy_version(r: &AnyRow) -> Result<crate::PolicyVersion> {
    let hash = text(r, "hash")?;
    Ok(crate::PolicyVersion {
        version: int(r, "version")?,
        active: opt_text(r, "active_hash")?.as_deref() == Some(hash.as_str()),
        hash,
        text: text(r, "text")?,
        pushed_at: millis(r, "pushed_at")?,
        pushed_by: json(r, "pushed_by")?,
    })
}

pub(crate) fn approval(r: &AnyRow) -> Result<Approval> {
    Ok(Approval {
        id: parsed(r, "id")?,
        task: parsed(r, "task_id")?,
        agent: parsed(r, "agent_id")?,
        initiator: parsed(r, "initiator")?,
        action: text(r, "action")?,
        resource: text(r, "resource")?,
        digest: text(r, "digest")?,
        policies: json(r, "policies")?,
        context: opt_text(r, "context")?
            .map(|c| serde_json::from_str(&c).map_err(|e| corrupt("context", e)))
            .transpose()?
            .unwrap_or_default(),
        status: ApprovalStatus::parse(&text(r, "status")?).map_err(|e| corrupt("status", e))?,
        requested_at: millis(r, "requested_at")?,
        expires_at: millis(r, "expires_at")?,
        decided_by: opt_parsed(r, "decided_by")?,
        decided_at: opt_millis(r, "decided_at")?,
        note: opt_text(r, "note")?,
    })
}

pub(crate) fn breakglass(r: &AnyRow) -> Result<BreakGlass> {
    Ok(BreakGlass {
        id: parsed(r, "id")?,
        agent: parsed(r, "agent_id")?,
        scope: json(r, "scope")?,
        reason: text(r, "reason")?,
        granted_by: json(r, "granted_by")?,
        granted_at: millis(r, "granted_at")?,
        expires_at: millis(r, "expires_at")?,
        reviewed_by: opt_parsed(r, "reviewed_by")?,
        reviewed_at: opt_millis(r, "reviewed_at")?,
        review_note: opt_text(r, "review_note")?,
    })
}
