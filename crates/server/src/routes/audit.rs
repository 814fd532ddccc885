//! `/v1/audit`: checkpoints, entries and Merkle proofs.
//!
//! Checkpoints, proofs and the verifier key reveal only hashes, so anyone
//! may fetch them (as with a public transparency log); entries carry who did
//! what and need an admin credential.

use axum::extract::State;
use axum::http::StatusCode;
use mandate_core::audit::checkpoint::SignedCheckpoint;
use mandate_core::audit::to_hex;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::extract::{Admin, Query};
use crate::ledger::LedgerError;
use crate::problem::{ApiResult, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(latest_checkpoint, make_checkpoint))
        .routes(routes!(verifier))
        .routes(routes!(entries))
        .routes(routes!(inclusion))
        .routes(routes!(consistency))
}

impl From<LedgerError> for Problem {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Store(s) => s.into(),
            LedgerError::Proof(p) => Problem::bad_request(p.to_string()),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    pub origin: String,
    pub size: u64,
    /// Hex SHA-256 root hash.
    pub root: String,
    /// The C2SP signed note, verbatim.
    pub note: String,
}

impl From<&SignedCheckpoint> for CheckpointView {
    fn from(cp: &SignedCheckpoint) -> Self {
        CheckpointView {
            origin: cp.checkpoint.origin.clone(),
            size: cp.checkpoint.size,
            root: to_hex(&cp.checkpoint.root),
            note: cp.note.clone(),
        }
    }
}

/// The latest signed checkpoint.
#[utoipa::path(get, path = "/v1/audit/checkpoint", tag = "audit",
    responses((status = 200, body = CheckpointView), (status = 404, body = Problem)))]
async fn latest_checkpoint(State(s): State<AppState>) -> ApiResult<axum::Json<CheckpointView>> {
    let cps = s.store.checkpoints().await?;
    let last = cps
        .last()
        .ok_or_else(|| Problem::not_found("no checkpoint has been signed yet"))?;
    Ok(axum::Json(last.into()))
}

/// Sign a checkpoint over the log as it stands now.
#[utoipa::path(post, path = "/v1/audit/checkpoint", tag = "audit",
    responses((status = 201, body = CheckpointView)), security(("admin" = [])))]
async fn make_checkpoint(
    State(s): State<AppState>,
    _: Admin,
) -> ApiResult<(StatusCode, axum::Json<CheckpointView>)> {
    let cp = s.ledger.checkpoint(s.store.as_ref()).await?;
    Ok((StatusCode::CREATED, axum::Json((&cp).into())))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifierView {
    pub origin: String,
    /// C2SP note verifier key: pin it to check checkpoints offline.
    pub vkey: String,
}

/// The log's origin and the checkpoint verifier key.
#[utoipa::path(get, path = "/v1/audit/verifier", tag = "audit", responses((status = 200, body = VerifierView)))]
async fn verifier(State(s): State<AppState>) -> axum::Json<VerifierView> {
    axum::Json(VerifierView {
        origin: s.ledger.origin().to_owned(),
        vkey: s.ledger.verifier().to_vkey(),
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EntriesQuery {
    /// First leaf index (default 0).
    from: Option<u64>,
    /// At most this many entries, 1 to 1000 (default 100).
    limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EntryView {
    pub index: u64,
    pub leaf_hash: String,
    /// The exact hashed entry text (a JSON document).
    pub entry: String,
}

/// Stored log entries in order.
#[utoipa::path(get, path = "/v1/audit/entries", tag = "audit", params(EntriesQuery),
    responses((status = 200, body = Vec<EntryView>)), security(("admin" = [])))]
async fn entries(
    State(s): State<AppState>,
    _: Admin,
    Query(q): Query<EntriesQuery>,
) -> ApiResult<axum::Json<Vec<EntryView>>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = s.store.audit_entries(q.from.unwrap_or(0), limit).await?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|r| EntryView {
                index: r.index,
                leaf_hash: to_hex(&r.leaf_hash),
                entry: r.entry,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct InclusionQuery {
    index: u64,
    /// Tree size the proof is for (default: the current size).
    size: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InclusionView {
    pub index: u64,
    pub size: u64,
    pub leaf_hash: String,
    pub root: String,
    /// Hex hashes, RFC 9162 §2.1.3 order.
    pub proof: Vec<String>,
}

/// RFC 9162 inclusion proof for one entry.
#[utoipa::path(get, path = "/v1/audit/proof/inclusion", tag = "audit", params(InclusionQuery),
    responses((status = 200, body = InclusionView), (status = 400, body = Problem)))]
async fn inclusion(
    State(s): State<AppState>,
    Query(q): Query<InclusionQuery>,
) -> ApiResult<axum::Json<InclusionView>> {
    let p = s
        .ledger
        .inclusion(s.store.as_ref(), q.index, q.size)
        .await?;
    let leaf = s
        .ledger
        .leaf(s.store.as_ref(), q.index)
        .await?
        .ok_or_else(|| Problem::not_found("no such entry"))?;
    Ok(axum::Json(InclusionView {
        index: q.index,
        size: p.size,
        leaf_hash: to_hex(&leaf),
        root: to_hex(&p.root),
        proof: p.hashes.iter().map(|h| to_hex(h)).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ConsistencyQuery {
    from: u64,
    /// Newer tree size (default: the current size).
    to: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyView {
    pub from: u64,
    pub to: u64,
    pub old_root: String,
    pub new_root: String,
    pub proof: Vec<String>,
}

/// RFC 9162 consistency proof between two tree sizes.
#[utoipa::path(get, path = "/v1/audit/proof/consistency", tag = "audit", params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyView), (status = 400, body = Problem)))]
async fn consistency(
    State(s): State<AppState>,
    Query(q): Query<ConsistencyQuery>,
) -> ApiResult<axum::Json<ConsistencyView>> {
    let (old_root, p) = s.ledger.consistency(s.store.as_ref(), q.from, q.to).await?;
    Ok(axum::Json(ConsistencyView {
        from: q.from,
        to: p.size,
        old_root: to_hex(&old_root),
        new_root: to_hex(&p.root),
        proof: p.hashes.iter().map(|h| to_hex(h)).collect(),
    }))
}
