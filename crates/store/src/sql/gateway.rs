//! The gateway's state: sealed downstream secrets, and the record of each
//! call that went through it.

use mandate_core::audit::EventKind;
use mandate_core::secret::{SealedSecret, SecretInfo, SecretName};
use mandate_core::tool_call::ToolCall;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::audit::{Prepared, append};
use super::convert::{millis, text};
use super::registry::event;
use super::{SqlStore, db_error};
use crate::*;

pub(crate) async fn store_secret(
    store: &SqlStore,
    change: &Change,
    secret: &SealedSecret,
) -> Result<SecretInfo> {
    let mut w = store.write().await?;
    // One statement creates or rotates, so two rotations racing each get
    // their own version.
    let row = sqlx::query(
        "INSERT INTO secrets (name, sealed, version, created_at, rotated_at) VALUES ($1, $2, 1, $3, $3) \
         ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, \
         version = secrets.version + 1, rotated_at = excluded.rotated_at \
         RETURNING name, version, created_at, rotated_at",
    )
    .bind(secret.name.as_str())
    .bind(&secret.sealed)
    .bind(change.at.as_millis())
    .fetch_one(w.conn())
    .await
    .map_err(db_error)?;
    let info = info(&row)?;
    let kind = if info.version == 1 {
        EventKind::SecretStored
    } else {
        EventKind::SecretRotated
    };
    append(
        &mut w,
        event(change, kind).details(json!({ "name": info.name, "version": info.version })),
    )
    .await?;
    w.commit().await?;
    Ok(info)
}

pub(crate) async fn secret(
    pool: &AnyPool,
    name: &SecretName,
) -> Result<Option<(SealedSecret, SecretInfo)>> {
    let row = sqlx::query(
        "SELECT name, sealed, version, created_at, rotated_at FROM secrets WHERE name = $1",
    )
    .bind(name.as_str())
    .fetch_optional(pool)
    .await
    .map_err(db_error)?;
    row.map(|r| {
        let info = info(&r)?;
        let sealed = SealedSecret {
            name: info.name.clone(),
            sealed: text(&r, "sealed")?,
        };
        Ok((sealed, info))
    })
    .transpose()
}

pub(crate) async fn list_secrets(pool: &AnyPool) -> Result<Vec<SecretInfo>> {
    let rows =
        sqlx::query("SELECT name, version, created_at, rotated_at FROM secrets ORDER BY name")
            .fetch_all(pool)
            .await
            .map_err(db_error)?;
    rows.iter().map(info).collect()
}

fn info(r: &AnyRow) -> Result<SecretInfo> {
    let version: i64 = r.try_get("version").map_err(db_error)?;
    Ok(SecretInfo {
        name: SecretName::parse(&text(r, "name")?)?,
        version: u32::try_from(version)
            .map_err(|_| StoreError::Internal(format!("secret version {version}")))?,
        created_at: millis(r, "created_at")?,
        rotated_at: millis(r, "rotated_at")?,
    })
}

pub(crate) async fn record_tool_call(
    store: &SqlStore,
    change: &Change,
    call: &ToolCall,
) -> Result<u64> {
    // The hot path of every gateway call: an append and nothing else.
    let details = serde_json::value::to_raw_value(call)
        .map_err(|e| StoreError::Internal(format!("cannot serialise a tool call: {e}")))?;
    store
        .append_alone(
            Prepared::with_details(
                &event(change, EventKind::GatewayCall)
                    .agent(call.agent)
                    .task(call.task),
                &details,
            ),
            None,
        )
        .await
}
