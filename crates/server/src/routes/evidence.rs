//! `GET /v1/evidence`: an evidence pack for a workflow's Return on AI over a
//! period, for auditors to check offline with `mandate evidence verify`.
//!
//! The pack lists every outcome reported in the period as its audit entry
//! with an inclusion proof against a checkpoint signed now. The figures come
//! from the store's per-day sums; before signing, the server refolds them
//! from the listed entries and refuses to hand out a pack whose figures do
//! not follow (outcomes still being reported in the period, or a damaged
//! rollup), so a pack is consistent when it leaves.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use mandate_core::ids::{AgentId, HumanId, SpiffeId};
use mandate_core::outcome::{OutcomeRecord, Period, PeriodFigures, Workflow};
use mandate_evidence::{
    BoundaryAgent, BoundaryHuman, ControlBoundary, PackInput, PolicyInForce, ProvenEntry,
};
use mandate_store::StoreError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::outcomes::{PeriodQuery, check_figures_reader, known_workflow};
use super::tasks::Principal;
use crate::AppState;
use crate::extract::Query;
use crate::ledger::LedgerError;
use crate::problem::{ApiResult, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export))
}

/// Most transactions one pack may hold; larger periods are split.
const MAX_TRANSACTIONS: usize = 100_000;
/// Snapshot attempts while outcomes are still arriving in the period.
const ATTEMPTS: usize = 3;

/// An evidence pack (zip) for a workflow and period.
#[utoipa::path(get, path = "/v1/evidence", tag = "outcomes", params(PeriodQuery),
    responses((status = 200, content_type = "application/zip", description = "the evidence pack"),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem)),
    security(("admin" = []), ("id_token" = [])))]
async fn export(
    State(s): State<AppState>,
    who: Principal,
    Query(q): Query<PeriodQuery>,
) -> ApiResult<Response> {
    let wf = known_workflow(&s, &q.workflow()?).await?;
    check_figures_reader(&s, &who, Some(wf.def.owner)).await?;
    pack_response(&s, &wf, q.period()?).await
}

/// The evidence pack of `wf` over `period` as a zip download. Callers check
/// the reader first (`check_figures_reader`); the API and the web console
/// both answer with this.
pub async fn pack_response(s: &AppState, wf: &Workflow, period: Period) -> ApiResult<Response> {
    let input = snapshot(s, wf, period).await?;
    let zip = mandate_evidence::build(&input, s.ledger.signer()).map_err(|e| {
        tracing::error!(error = %e, "evidence pack");
        Problem::internal()
    })?;
    let name = format!(
        "attachment; filename=\"evidence-{}-{}.zip\"",
        wf.def.name,
        period.from.rfc3339().get(..10).unwrap_or("period")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        zip,
    )
        .into_response())
}

/// Figures, entries and a checkpoint that agree with each other.
async fn snapshot(s: &AppState, wf: &Workflow, period: Period) -> ApiResult<PackInput> {
    for _ in 0..ATTEMPTS {
        let rows = s.store.outcome_tally(&wf.def.name, &period).await?;
        let figures = PeriodFigures::from_rows(period, &rows, &wf.def);
        let entries = entries(s, wf, &period).await?;
        let records = entries
            .iter()
            .map(|(_, _, r)| r.tally_row())
            .collect::<Vec<_>>();
        if PeriodFigures::from_rows(period, &records, &wf.def) != figures {
            continue;
        }
        let checkpoint = s.ledger.checkpoint(s.store.as_ref()).await?;
        let size = checkpoint.checkpoint.size;
        let indexes: Vec<u64> = entries.iter().map(|(i, _, _)| *i).collect();
        let proofs = s
            .ledger
            .inclusions(s.store.as_ref(), &indexes, size)
            .await
            .map_err(|e| match e {
                LedgerError::Store(e) => Problem::from(e),
                LedgerError::Proof(e) => {
                    tracing::error!(error = %e, "inclusion proofs for evidence");
                    Problem::internal()
                }
            })?;
        let transactions = entries
            .iter()
            .zip(proofs)
            .map(|((index, entry, _), proof)| ProvenEntry {
                leaf_index: *index,
                entry: entry.clone(),
                proof,
            })
            .collect();
        let records: Vec<&OutcomeRecord> = entries.iter().map(|(_, _, r)| r).collect();
        return Ok(PackInput {
            workflow: wf.clone(),
            period,
            figures,
            transactions,
            checkpoint,
            boundary: boundary(s, &period, &records).await?,
            generated_at: crate::now(),
        });
    }
    Err(Problem::new(
        StatusCode::CONFLICT,
        "outcomes-arriving",
        "outcomes are still being reported in this period, so its figures keep changing; \
         export a period that has ended",
    ))
}

async fn entries(
    s: &AppState,
    wf: &Workflow,
    period: &Period,
) -> ApiResult<Vec<(u64, String, OutcomeRecord)>> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .store
            .outcome_entries(&wf.def.name, period, after, 1000)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.index);
        for e in page {
            let record = OutcomeRecord::from_entry(&e.entry)
                .map_err(|e| Problem::from(StoreError::Internal(e)))?;
            out.push((e.index, e.entry, record));
        }
        if out.len() > MAX_TRANSACTIONS {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "pack-too-large",
                format!(
                    "more than {MAX_TRANSACTIONS} outcomes in the period; export shorter periods"
                ),
            ));
        }
    }
    Ok(out)
}

/// The policy versions active at any time in the period, and every agent
/// and human the transactions name (with each agent's owner).
async fn boundary(
    s: &AppState,
    period: &Period,
    records: &[&OutcomeRecord],
) -> Result<ControlBoundary, StoreError> {
    let activations = s.store.policy_activations().await?;
    let mut policies = Vec::new();
    for (i, a) in activations.iter().enumerate() {
        let until = activations.get(i + 1).map(|n| n.at);
        let overlaps = a.at < period.to && until.is_none_or(|u| u > period.from);
        if !overlaps {
            continue;
        }
        if let Some(v) = s.store.policy_version(&a.hash).await? {
            policies.push(PolicyInForce {
                hash: v.hash,
                version: v.version,
                text: v.text,
                active_from: a.at,
                active_until: until,
            });
        }
    }
    let mut agent_ids: BTreeSet<AgentId> = BTreeSet::new();
    let mut human_ids: BTreeSet<HumanId> = BTreeSet::new();
    for r in records {
        agent_ids.insert(r.agent);
        human_ids.insert(r.initiator);
        human_ids.insert(r.owner);
        for hop in r.chain.iter().skip(1) {
            if let Ok((_, _, name)) = SpiffeId::parse(hop)
                && let Some(a) = s.store.agent_by_name(&name).await?
            {
                agent_ids.insert(a.id);
            }
        }
    }
    let mut agents = Vec::new();
    for id in agent_ids {
        if let Some(a) = s.store.agent(id).await? {
            human_ids.insert(a.owner);
            agents.push(BoundaryAgent {
                id: a.id,
                spiffe_id: a.spiffe_id.to_string(),
                name: a.name.as_str().to_owned(),
                owner: a.owner,
            });
        }
    }
    let mut humans = BTreeMap::new();
    for id in human_ids {
        if let Some(h) = s.store.human(id).await? {
            humans.insert(
                id,
                BoundaryHuman {
                    id,
                    display_name: h.display_name,
                    email: h.email,
                },
            );
        }
    }
    Ok(ControlBoundary {
        policies,
        agents,
        humans: humans.into_values().collect(),
    })
}
