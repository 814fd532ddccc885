//! `/v1/workflows`, `/v1/outcomes` and `/v1/reports/roai`: what AI work
//! returned.
//!
//! An agent reports an outcome under its task credential. The report is
//! never lost for being bad news: a revoked task, a retry or a claim with no
//! work behind it is recorded and classified as an exception, so the count
//! that matters (`counted`) can be trusted. Only a credential that is not
//! genuine (forged, expired, missing its DPoP proof) is turned away.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use mandate_core::audit::Actor;
use mandate_core::credential::TaskClaims;
use mandate_core::human::{HumanRole, HumanStatus};
use mandate_core::ids::{HumanId, OutcomeId, TaskId};
use mandate_core::outcome::{
    Claim, NewWorkflow, OutcomeRecord, Period, PeriodFigures, RoaiReport, Workflow, WorkflowName,
};
use mandate_core::task::Task;
use mandate_core::time::Timestamp;
use mandate_store::{Change, CredentialRecord, OutcomeWrite, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::tasks::Principal;
use crate::AppState;
use crate::access::bearer_token;
use crate::access::{self, Presented};
use crate::extract::{Json, Query, request_id};
use crate::problem::{ApiResult, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_workflow, list_workflows))
        .routes(routes!(show_workflow))
        .routes(routes!(report_outcome))
        .routes(routes!(show_outcome))
        .routes(routes!(roai))
}

pub fn parse_workflow(s: &str) -> ApiResult<WorkflowName> {
    WorkflowName::parse(s).map_err(Problem::from)
}

pub async fn known_workflow(s: &AppState, name: &WorkflowName) -> ApiResult<Workflow> {
    s.store.workflow(name).await?.ok_or_else(|| {
        Problem::not_found(format!(
            "no workflow {name} is registered; register it with `mandate workflow register`"
        ))
    })
}

// ---- workflows ------------------------------------------------------------------------

/// Admins register any workflow; a human may register one they own.
#[utoipa::path(post, path = "/v1/workflows", tag = "outcomes", request_body = NewWorkflow,
    responses((status = 201, body = Workflow), (status = 200, body = Workflow), (status = 422, body = Problem)),
    security(("admin" = []), ("id_token" = [])))]
async fn register_workflow(
    State(s): State<AppState>,
    who: Principal,
    Json(wf): Json<NewWorkflow>,
) -> ApiResult<(StatusCode, axum::Json<Workflow>)> {
    let change = match &who {
        Principal::Admin(a) => a.change(),
        Principal::Human(id, request_id) => {
            if *id != wf.owner {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "a human may register only workflows they own; ask an admin otherwise",
                ));
            }
            Change {
                actor: Actor::Human { id: *id },
                at: crate::now(),
                request_id: request_id.clone(),
            }
        }
    };
    let (stored, created) = s.store.register_workflow(&change, &wf).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(stored)))
}

#[utoipa::path(get, path = "/v1/workflows", tag = "outcomes",
    responses((status = 200, body = Vec<Workflow>)), security(("admin" = []), ("id_token" = [])))]
async fn list_workflows(
    State(s): State<AppState>,
    _: Principal,
) -> ApiResult<axum::Json<Vec<Workflow>>> {
    Ok(axum::Json(s.store.list_workflows().await?))
}

#[utoipa::path(get, path = "/v1/workflows/{name}", tag = "outcomes",
    responses((status = 200, body = Workflow), (status = 404, body = Problem)),
    security(("admin" = []), ("id_token" = [])))]
async fn show_workflow(
    State(s): State<AppState>,
    _: Principal,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Workflow>> {
    Ok(axum::Json(
        known_workflow(&s, &parse_workflow(&name)?).await?,
    ))
}

// ---- outcomes -------------------------------------------------------------------------

/// The answer to a report: the outcome that stands for this idempotency key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    /// The first report of the key (this one, unless it was a retry).
    pub outcome: OutcomeRecord,
    /// Set for a retry: the id under which the retry itself was recorded
    /// (as a `duplicate`, never counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_id: Option<OutcomeId>,
}

/// A genuine task credential, live or not: signature, issuer, audience,
/// expiry and (when bound) the DPoP proof are checked; revocation and the
/// task's state are facts the classification records.
async fn reporter(
    s: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    now: Timestamp,
) -> ApiResult<(TaskClaims, CredentialRecord, Task)> {
    let token = bearer_token(headers).ok_or_else(|| {
        Problem::unauthorized(
            "report outcomes with the task credential: Authorization: Bearer <task token> \
             (plus a DPoP proof when the token is bound)",
        )
    })?;
    let claims = access::verify_signature(s, token, now).await?;
    let (credential, task) = access::issued(s, &claims).await?;
    let presented = Presented::new(headers, "POST", uri.path());
    access::check_binding(s, &claims, token, &presented, now).await?;
    Ok((claims, credential, task))
}
/// Who stands behind a task: the human initiator, each agent from the root
/// task down to this one, the reporting agent's owner, and every gap.
struct Attribution {
    chain: Vec<String>,
    gaps: Vec<String>,
    owner: HumanId,
}

async fn attribution(s: &AppState, task: &Task) -> Result<Attribution, StoreError> {
    let tree = s.store.task_tree(task.root).await?;
    let by_id: HashMap<TaskId, &Task> = tree.iter().map(|t| (t.id, t)).collect();
    let mut path = Vec::new();
    let mut next = Some(task.id);
    while let Some(id) = next {
        let Some(t) = by_id.get(&id) else { break };
        path.push(*t);
        next = t.parent;
    }
    path.reverse();
    let mut gaps = Vec::new();
    if path.first().map(|t| t.parent.is_some()).unwrap_or(true) {
        gaps.push(format!(
            "the delegation path from task {} to its root is broken",
            task.id
        ));
    }
    match s.store.human(task.initiator).await? {
        None => gaps.push(format!(
            "the initiator {} is not registered",
            task.initiator
        )),
        Some(h) if h.status != HumanStatus::Active => {
            gaps.push(format!("the initiator {} is deactivated", h.display_name))
        }
        Some(_) => {}
    }
    let mut chain = vec![task.initiator.to_string()];
    let mut owner = None;
    for t in &path {
        chain.push(t.assignee_spiffe.to_string());
        match s.store.agent(t.assignee).await? {
            None => gaps.push(format!("the agent {} is not registered", t.assignee_spiffe)),
            Some(a) => {
                let active_owner = s
                    .store
                    .human(a.owner)
                    .await?
                    .is_some_and(|h| h.status == HumanStatus::Active);
                if a.orphaned || !active_owner {
                    gaps.push(format!(
                        "the owner of {} is not an active human",
                        a.spiffe_id
                    ));
                }
                if t.id == task.id {
                    owner = Some(a.owner);
                }
            }
        }
    }
    let owner = match owner {
        Some(o) => o,
        None => {
            gaps.push(format!(
                "the reporting agent {} has no owner",
                task.assignee_spiffe
            ));
            task.initiator
        }
    };
    Ok(Attribution { chain, gaps, owner })
}

/// Report a completed transaction under the task credential. The same
/// idempotency key returns the first answer (200) and is never counted
/// twice; the retry itself is recorded as a `duplicate`.
#[utoipa::path(post, path = "/v1/outcomes", tag = "outcomes", request_body = Claim,
    responses((status = 201, body = Receipt), (status = 200, body = Receipt, description = "a retry: the first report"),
        (status = 401, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("task_token" = [])))]
async fn report_outcome(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Json(claim): Json<Claim>,
) -> ApiResult<(StatusCode, axum::Json<Receipt>)> {
    let now = crate::now();
    let (claims, credential, task) = reporter(&s, &headers, &uri, now).await?;
    claim.validate()?;
    let wf = s.store.workflow(&claim.workflow).await?.ok_or_else(|| {
        Problem::from(mandate_core::RuleError::Invalid {
            what: "workflow",
            why: format!(
                "no workflow {} is registered; an admin or its owner registers it with `mandate workflow register`",
                claim.workflow
            ),
        })
    })?;
    let valuation = wf.def.value(&claim)?;
    let who = attribution(&s, &task).await?;
    let agent = s
        .store
        .agent(credential.agent)
        .await?
        .ok_or_else(|| Problem::unauthorized("the token's agent is not registered"))?;
    let write = OutcomeWrite {
        id: OutcomeId::from_uuid(Uuid::now_v7()),
        claim,
        task: task.id,
        jti: claims.jti.clone(),
        agent: credential.agent,
        initiator: task.initiator,
        owner: who.owner,
        chain: who.chain,
        chain_gaps: who.gaps,
        currency: wf.def.currency,
        valuation,
    };
    let change = Change {
        actor: Actor::Agent {
            id: agent.id,
            spiffe_id: agent.spiffe_id.to_string(),
        },
        at: now,
        request_id: request_id(&headers),
    };
    let recorded = s.store.record_outcome(&change, &write).await?;
    let class = recorded.record.classification.as_str();
    metrics::counter!("mandate_outcomes_total", "classification" => class).increment(1);
    Ok(match recorded.first {
        Some(first) => (
            StatusCode::OK,
            axum::Json(Receipt {
                outcome: first,
                duplicate_id: Some(recorded.record.id),
            }),
        ),
        None => (
            StatusCode::CREATED,
            axum::Json(Receipt {
                outcome: recorded.record,
                duplicate_id: None,
            }),
        ),
    })
}

/// Readers of figures: admins, auditors and the workflow's owner.
pub async fn check_figures_reader(
    s: &AppState,
    who: &Principal,
    owner: Option<HumanId>,
) -> ApiResult<()> {
    let Principal::Human(id, _) = who else {
        return Ok(());
    };
    let auditor = s
        .store
        .human(*id)
        .await?
        .is_some_and(|h| h.roles.contains(&HumanRole::Auditor));
    if auditor || owner == Some(*id) {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only admins, auditors and the workflow's owner may read its outcomes and figures",
        ))
    }
}

#[utoipa::path(get, path = "/v1/outcomes/{id}", tag = "outcomes",
    responses((status = 200, body = OutcomeRecord), (status = 404, body = Problem)),
    security(("admin" = []), ("id_token" = [])))]
async fn show_outcome(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<OutcomeRecord>> {
    let id: OutcomeId = id
        .parse()
        .map_err(|_| Problem::bad_request(format!("{id:?} is not an outcome id (UUID)")))?;
    let record = s
        .store
        .outcome(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("outcome {id} not found")))?;
    let owner = s
        .store
        .workflow(&record.workflow)
        .await?
        .map(|w| w.def.owner);
    check_figures_reader(&s, &who, owner).await?;
    Ok(axum::Json(record))
}

// ---- reports --------------------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PeriodQuery {
    workflow: String,
    /// Start of the period, RFC 3339 (inclusive).
    from: String,
    /// End of the period, RFC 3339 (exclusive).
    to: String,
    /// Optional baseline period to compare with.
    baseline_from: Option<String>,
    baseline_to: Option<String>,
}

pub fn period(from: &str, to: &str) -> ApiResult<Period> {
    let t = |v: &str, name: &str| {
        Timestamp::parse_rfc3339(v).map_err(|e| Problem::bad_request(format!("{name}: {e}")))
    };
    Ok(Period::new(t(from, "from")?, t(to, "to")?)?)
}

impl PeriodQuery {
    pub(crate) fn period(&self) -> ApiResult<Period> {
        period(&self.from, &self.to)
    }
    pub(crate) fn workflow(&self) -> ApiResult<WorkflowName> {
        parse_workflow(&self.workflow)
    }
}

/// A workflow's figures over a period, from the store's per-day sums.
pub async fn figures(s: &AppState, wf: &Workflow, p: Period) -> ApiResult<PeriodFigures> {
    let rows = s.store.outcome_tally(&wf.def.name, &p).await?;
    Ok(PeriodFigures::from_rows(p, &rows, &wf.def))
}

/// Return on AI for a workflow over a period, optionally beside a baseline
/// period, broken down by agent and by initiator.
#[utoipa::path(get, path = "/v1/reports/roai", tag = "outcomes", params(PeriodQuery),
    responses((status = 200, body = RoaiReport), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("admin" = []), ("id_token" = [])))]
async fn roai(
    State(s): State<AppState>,
    who: Principal,
    Query(q): Query<PeriodQuery>,
) -> ApiResult<axum::Json<RoaiReport>> {
    let wf = known_workflow(&s, &q.workflow()?).await?;
    check_figures_reader(&s, &who, Some(wf.def.owner)).await?;
    let baseline = match (&q.baseline_from, &q.baseline_to) {
        (Some(f), Some(t)) => Some(period(f, t)?),
        (None, None) => None,
        _ => {
            return Err(Problem::bad_request(
                "give both baseline_from and baseline_to, or neither",
            ));
        }
    };
    Ok(axum::Json(report(&s, &wf, q.period()?, baseline).await?))
}

/// A workflow's Return-on-AI report over a period, optionally beside a
/// baseline period, with names for the agents and humans it breaks down by.
/// Callers check the reader first ([`check_figures_reader`]).
pub async fn report(
    s: &AppState,
    wf: &Workflow,
    current: Period,
    baseline: Option<Period>,
) -> ApiResult<RoaiReport> {
    let current = figures(s, wf, current).await?;
    let baseline = match baseline {
        Some(p) => Some(figures(s, wf, p).await?),
        None => None,
    };
    let mut report = RoaiReport::new(&wf.def, current, baseline);
    report.labels = labels(s, &report).await?;
    Ok(report)
}

/// Names for the agent and human ids in a report's breakdowns.
async fn labels(
    s: &AppState,
    r: &RoaiReport,
) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
    let mut out = std::collections::BTreeMap::new();
    let periods = std::iter::once(&r.current).chain(r.baseline.as_ref());
    for p in periods {
        for id in p.by_agent.keys() {
            if let Some(a) = s.store.agent(*id).await? {
                out.insert(id.to_string(), a.name.as_str().to_owned());
            }
        }
        for id in p.by_initiator.keys() {
            if let Ok(h) = id.parse::<HumanId>()
                && let Some(h) = s.store.human(h).await?
            {
                out.insert(id.clone(), h.display_name);
            }
        }
    }
    Ok(out)
}
