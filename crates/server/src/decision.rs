//! The decision pipeline: may this task token do this action on this
//! resource, now, in this context?
//!
//! The steps run in a fixed order and each can stop with its own reason:
//! token (signature, issuer, audience, times) -> credential not revoked and
//! proof of possession when bound -> task open -> action and resource inside
//! the task's scope -> per-task call limit -> Cedar with the whole chain as
//! entities -> human approval -> break-glass. Anything not explicitly allowed
//! is denied. Every decision made under a genuine token is recorded in the
//! audit log in the same transaction that spends a call or an approval; a
//! request whose token is not genuine cannot be attributed to any task and is
//! only counted in metrics, so forged traffic cannot flood the log.

use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use mandate_core::approval::{APPROVAL_TTL_MS, Approval, ApprovalStatus};
use mandate_core::audit::Actor;
use mandate_core::credential::TaskClaims;
use mandate_core::decision::{self, Stop, Verdict};
use mandate_core::ids::{ApprovalId, BreakGlassId, DecisionId, TaskId};
use mandate_core::scope::ResourcePattern;
use mandate_core::task::Task;
use mandate_core::time::Timestamp;
use mandate_policy::{
    AgentFacts, ApprovalState, Decision, DecisionRequest, Evaluation, PolicySet, RequestContext,
    ResourceFacts, Role, TaskFacts,
};
use mandate_store::{
    ChainAgent, Change, CredentialRecord, DecisionContext, DecisionWrite, Recorded, StoreError,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::access::{self, Presented, Refusal};

/// The active policy set: a cache of the stored `active_policy` row. Every
/// decision reads the stored hash (one single-row query) and reloads the set
/// when it changed, so a push or rollback through any node holds on every
/// node from the next decision after it returned.
#[derive(Default)]
pub struct ActivePolicy(RwLock<Loaded>);

#[derive(Default)]
struct Loaded {
    /// The stored hash this was loaded from (also when that set no longer parses).
    hash: Option<String>,
    set: Option<Arc<PolicySet>>,
}

impl ActivePolicy {
    pub fn current(&self) -> Option<Arc<PolicySet>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).set.clone()
    }

    pub fn replace(&self, set: PolicySet) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Loaded {
            hash: Some(set.hash().to_owned()),
            set: Some(Arc::new(set)),
        };
    }

    /// The set active in the store now, reloaded if another node changed it.
    pub async fn current_in(
        &self,
        store: &dyn mandate_store::Store,
    ) -> Result<Option<Arc<PolicySet>>, StoreError> {
        let stored = store.active_policy_hash().await?;
        self.current_at(stored, store).await
    }

    /// The set whose hash the store gave as active (`stored`, read with the
    /// rest of a decision's context), reloaded if it is not the one loaded.
    pub async fn current_at(
        &self,
        stored: Option<String>,
        store: &dyn mandate_store::Store,
    ) -> Result<Option<Arc<PolicySet>>, StoreError> {
        {
            let loaded = self.0.read().unwrap_or_else(|e| e.into_inner());
            if loaded.hash == stored {
                return Ok(loaded.set.clone());
            }
        }
        let fresh = Self::load(store)
            .await?
            .0
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        let set = fresh.set.clone();
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(set)
    }

    /// Loads the stored active version. A stored set that no longer
    /// validates (a schema change) is not used: every decision then denies.
    pub async fn load(store: &dyn mandate_store::Store) -> Result<ActivePolicy, StoreError> {
        let active = ActivePolicy::default();
        if let Some(v) = store.active_policy().await? {
            match PolicySet::parse(&v.text) {
                Ok(set) => active.replace(set),
                Err(e) => {
                    tracing::error!(hash = %v.hash, error = %e,
                        "the active policy set no longer validates; every decision will deny");
                    *active.0.write().unwrap_or_else(|e| e.into_inner()) = Loaded {
                        hash: Some(v.hash),
                        set: None,
                    };
                }
            }
        }
        Ok(active)
    }
}

/// What the action is done to, as a caller describes it.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceIn {
    /// As in task scopes, e.g. `erp:invoices/2026-01`.
    pub id: String,
    /// Data classification: public, internal, confidential or restricted.
    #[serde(default = "internal")]
    pub sensitivity: String,
    #[serde(default)]
    pub labels: Vec<String>,
}

/// Facts about the moment, as a caller describes them.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextIn {
    pub tool: Option<String>,
    /// e.g. dev, staging, prod (default prod: the strictest reading).
    pub environment: Option<String>,
    pub data_sensitivity: Option<String>,
    /// 0 to 100.
    pub risk_score: Option<u8>,
    /// Money moved, in minor units.
    pub amount: Option<i64>,
}

fn internal() -> String {
    "internal".into()
}

/// One decision request.
pub struct Ask {
    pub action: String,
    pub resource: ResourceIn,
    pub context: ContextIn,
}

/// Why a decision came out as it did: a pipeline step or a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReasonOut {
    /// Stable machine code: `outside_task_scope`, `policy_forbid`, `approval_required` ...
    pub code: String,
    pub message: String,
    /// The determining policy, when a policy decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

impl ReasonOut {
    /// A reason given by a step rather than a policy.
    pub fn step(code: &str, message: impl Into<String>) -> Self {
        ReasonOut {
            code: code.to_owned(),
            message: message.into(),
            policy_id: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// The answer, with everything needed to trace it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Outcome {
    pub decision_id: DecisionId,
    pub decision: Verdict,
    pub reasons: Vec<ReasonOut>,
    /// The policy set version that decided (absent when a step before policy stopped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
    pub action: String,
    pub resource: String,
    /// Set when the decision is `needs_approval`, or when an approval was spent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<ApprovalId>,
    /// Set when a break-glass grant allowed what would otherwise be denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakglass_id: Option<BreakGlassId>,
}

/// A decision as recorded: the outcome, and its JSON exactly as the audit
/// entry holds it, which `POST /v1/decisions` sends as it is rather than
/// serialising the outcome a second time.
pub struct Decided {
    pub outcome: Outcome,
    /// None when nothing was recorded: then serialised only if it is sent.
    json: Option<Box<RawValue>>,
}

impl Decided {
    /// An outcome that was not recorded (its token was not genuine).
    pub fn unrecorded(outcome: Outcome) -> Self {
        Decided {
            outcome,
            json: None,
        }
    }
}

impl axum::response::IntoResponse for Decided {
    fn into_response(self) -> axum::response::Response {
        let Some(json) = self.json else {
            return axum::Json(self.outcome).into_response();
        };
        let json: Box<str> = json.into();
        (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            String::from(json),
        )
            .into_response()
    }
}

/// A token that is genuine (signed by Mandate, for Mandate, in its times),
/// with its credential and task as stored now.
pub struct Holder {
    pub claims: TaskClaims,
    pub credential: CredentialRecord,
    pub task: Task,
    /// Why it may not act at all, decided once per token (revoked, missing
    /// proof of possession ...).
    pub refused: Option<ReasonOut>,
    /// The rest of what deciding reads, from the same store call.
    facts: Facts,
}

/// What the pipeline reads besides the credential and the task, read with
/// them in one store call (one request, one snapshot; never kept across
/// requests).
struct Facts {
    /// The task's assignee, as Cedar sees it.
    agent: AgentFacts,
    /// Each agent that delegated down to the task, from the root's assignee.
    delegators: Vec<AgentFacts>,
    calls_used: u64,
    /// The active policy version's hash.
    policy_hash: Option<String>,
}

impl Facts {
    fn of(ctx: &DecisionContext) -> Self {
        // Walk up the tree: each parent task's assignee delegated to its child.
        let mut delegators = Vec::new();
        let mut below = &ctx.task;
        for (parent, assignee) in &ctx.ancestors {
            if below.delegator.is_none() || below.parent != Some(parent.id) {
                break;
            }
            delegators.push(agent_facts(assignee));
            below = parent;
        }
        delegators.reverse();
        Facts {
            agent: agent_facts(&ctx.agent),
            delegators,
            calls_used: ctx.calls_used,
            policy_hash: ctx.policy_hash.clone(),
        }
    }
}

/// An agent of the chain as Cedar sees it.
fn agent_facts(a: &ChainAgent) -> AgentFacts {
    AgentFacts {
        spiffe_id: a.spiffe_id.clone(),
        kind: a.kind,
        owner: a.owner,
        tags: a.tags.clone(),
    }
}

/// Steps 1-2: who holds this token. The inner `Err` (with the reason) when
/// the token is not genuine; such requests are not attributable and not
/// recorded. The outer `Err` is a store that could not be read: no decision
/// was made, and the caller answers 503 so the client retries.
pub async fn authenticate(
    s: &AppState,
    token: &str,
    presented: &Presented,
    now: Timestamp,
) -> Result<Result<Holder, ReasonOut>, StoreError> {
    let invalid = |why: String| ReasonOut::step("invalid_token", why);
    let claims = match access::verify_signature(s, token, now).await {
        Ok(c) => c,
        Err(Refusal::Store(e)) => return Err(e),
        Err(e) => return Ok(Err(invalid(e.to_string()))),
    };
    let (credential, ctx) = match access::decision_context(s, &claims).await {
        Ok(found) => found,
        Err(Refusal::Store(e)) => return Err(e),
        Err(e) => return Ok(Err(invalid(e.to_string()))),
    };
    let facts = Facts::of(&ctx);
    let task = ctx.task;
    let refused = if credential.revoked_at.is_some() {
        Some(ReasonOut::step(
            "credential_revoked",
            "the token was revoked",
        ))
    } else {
        match access::check_binding(s, &claims, token, presented, now).await {
            Ok(()) => None,
            Err(Refusal::Store(e)) => return Err(e),
            Err(e @ Refusal::DpopMismatch) => Some(ReasonOut::step("dpop_mismatch", e.to_string())),
            Err(e @ Refusal::DpopMissing) => Some(ReasonOut::step("dpop_required", e.to_string())),
            Err(e) => Some(ReasonOut::step("dpop_invalid", e.to_string())),
        }
    };
    Ok(Ok(Holder {
        claims,
        credential,
        task,
        refused,
        facts,
    }))
}

/// The change an agent makes acting under `task` (a decision, or what
/// became of a call the decision let through).
pub fn acting(task: &Task, at: Timestamp, request_id: Option<String>) -> Change {
    Change {
        actor: Actor::Agent {
            id: task.assignee,
            spiffe_id: task.assignee_spiffe.to_string(),
        },
        at,
        request_id,
    }
}

/// A decision about to be made for `ask` under `task`: denied until a step
/// says otherwise, and its audit record.
fn fresh(task: &Task, ask: &Ask) -> (Outcome, DecisionWrite) {
    let out = Outcome {
        decision_id: DecisionId::from_uuid(Uuid::now_v7()),
        decision: Verdict::Deny,
        reasons: Vec::new(),
        policy_hash: None,
        task_id: Some(task.id),
        action: ask.action.clone(),
        resource: ask.resource.id.clone(),
        approval_id: None,
        breakglass_id: None,
    };
    let write = DecisionWrite {
        id: out.decision_id,
        task: task.id,
        agent: task.assignee,
        action: ask.action.clone(),
        resource: ask.resource.id.clone(),
        verdict: Verdict::Deny,
        details: RawValue::NULL.to_owned(),
        max_calls: task.limits.max_calls,
        counts_call: false,
        // Money moved is charged to the task's budget (and its ancestors').
        spends: ask.context.amount.map(|a| a.max(0).unsigned_abs()),
        spends_approval: None,
        raises_approval: None,
    };
    (out, write)
}

/// Decides `ask` for an authenticated holder and records the decision.
pub async fn decide(
    s: &AppState,
    holder: &Holder,
    ask: &Ask,
    request_id: Option<String>,
    now: Timestamp,
) -> Result<Outcome, StoreError> {
    Ok(decide_recorded(s, holder, ask, request_id, now)
        .await?
        .outcome)
}

/// [`decide`], with the outcome's JSON as its audit entry holds it.
pub async fn decide_recorded(
    s: &AppState,
    holder: &Holder,
    ask: &Ask,
    request_id: Option<String>,
    now: Timestamp,
) -> Result<Decided, StoreError> {
    let task = &holder.task;
    let (mut out, mut write) = fresh(task, ask);
    let change = acting(task, now, request_id);

    if let Some(r) = &holder.refused {
        out.reasons.push(r.clone());
        return record(s, &change, out, write).await;
    }
    // Step 3 and the scope: a break-glass grant may stand in for the scope,
    // never for an ended task.
    let mut overridable = false;
    match decision::admit(task, now, &ask.action, &ask.resource.id) {
        Ok(()) => {}
        Err(stop @ Stop::OutsideTaskScope) => {
            out.reasons.push(stop_reason(&stop, ask));
            overridable = true;
        }
        Err(stop) => {
            out.reasons.push(stop_reason(&stop, ask));
            return record(s, &change, out, write).await;
        }
    }
    // Step 4: the call limit is checked here for a clear early answer (with
    // the calls used as read with the task) and again, atomically, when the
    // call is counted.
    if let Err(stop) = decision::check_calls(task, holder.facts.calls_used) {
        out.reasons.push(stop_reason(&stop, ask));
        return record(s, &change, out, write).await;
    }
    if !overridable {
        // Step 5: policy.
        match active_set(s, holder).await? {
            None => out.reasons.push(ReasonOut::step(
                "no_policy",
                "no policy set is active; push one with `mandate policy push`",
            )),
            Some(set) => {
                out.policy_hash = Some(set.hash().to_owned());
                let request = policy_request(holder, ask);
                let mut eval = mandate_policy::evaluate(&set, &request);
                // The digest is only needed when an approval gate is in play:
                // keep the hashing off the common allow/deny path.
                let mut digest = None;
                if eval.decision == Decision::NeedsApproval {
                    let d = digest.insert(approval_digest(task.id, ask));
                    eval = with_approval(s, &set, request, d, now, &mut write, &mut out, &eval)
                        .await?;
                }
                explain(&eval, &mut out);
                out.decision = verdict(eval.decision);
                if out.decision == Verdict::NeedsApproval && out.approval_id.is_none() {
                    let approval = Approval {
                        id: ApprovalId::from_uuid(Uuid::now_v7()),
                        task: task.id,
                        agent: task.assignee,
                        initiator: task.initiator,
                        action: ask.action.clone(),
                        resource: ask.resource.id.clone(),
                        digest: digest.unwrap_or_else(|| approval_digest(task.id, ask)),
                        policies: gate_ids(&eval),
                        // Kept so the approver sees exactly what the digest binds.
                        context: serde_json::to_value(&ask.context).unwrap_or_default(),
                        status: ApprovalStatus::Pending,
                        requested_at: now,
                        expires_at: Timestamp::from_millis(now.as_millis() + APPROVAL_TTL_MS),
                        decided_by: None,
                        decided_at: None,
                        note: None,
                    };
                    out.approval_id = Some(approval.id);
                    write.raises_approval = Some(approval);
                }
                overridable = out.decision != Verdict::Allow;
            }
        }
    }
    // Step 6: break-glass, for what scope or policy refused.
    if overridable {
        let grants = s.store.active_breakglass(task.assignee, now).await?;
        if let Some(g) = grants
            .iter()
            .find(|g| g.covers(now, &ask.action, &ask.resource.id))
        {
            out.decision = Verdict::Allow;
            out.breakglass_id = Some(g.id);
            // An approval raised by this request is moot: break-glass decided.
            if write.raises_approval.take().is_some() {
                out.approval_id = None;
            }
            out.reasons.push(ReasonOut::step(
                "breakglass",
                format!("allowed by break-glass grant {}: {}", g.id, g.reason),
            ));
        }
    }
    record(s, &change, out, write).await
}

/// Records a decision another decision point made for this holder (the
/// gateway asking an external AuthZEN PDP): a `decision.made` entry like
/// Mandate's own, with that verdict and `reasons`, so every call through the
/// gateway still has its decision in the log. None of Mandate's steps ran:
/// no scope, limit, budget or policy was checked, and no amount is spent;
/// an allowed call counts as one of the task's calls when `spends` says so.
pub async fn record_external(
    s: &AppState,
    holder: &Holder,
    ask: &Ask,
    verdict: Verdict,
    reasons: Vec<ReasonOut>,
    spends: Spends,
    now: Timestamp,
) -> Result<Outcome, StoreError> {
    let task = &holder.task;
    let (mut out, mut write) = fresh(task, ask);
    out.decision = verdict;
    out.reasons = reasons;
    // Mandate's limits were not checked, so nothing is spent against them.
    write.max_calls = None;
    write.spends = None;
    Ok(
        record_spending(s, &acting(task, now, None), out, write, spends)
            .await?
            .outcome,
    )
}

/// An MCP method name as a Mandate action: `mcp.` and the method with `/`
/// as `.`, lowercased (`tools/call` -> `mcp.tools.call`, `logging/setLevel`
/// -> `mcp.logging.setlevel`, `initialize` -> `mcp.initialize`). Any other
/// name is already a Mandate action (or is refused as one later). Mandate
/// actions cannot contain `/`, so the two never collide; `initialize` is the
/// one MCP method without a `/` that is decided (`ping` passes through).
pub fn mcp_action(name: &str) -> String {
    if name.contains('/') || name == "initialize" {
        format!("mcp.{}", name.replace('/', ".").to_ascii_lowercase())
    } else {
        name.to_owned()
    }
}

/// MCP's session methods, as Mandate actions: opening a session, listing
/// what a server offers, and setting its log level. They reach none of the
/// server's data (a listing through Mandate's gateway is itself filtered by
/// scope, tool by tool), so no task scope grants them and every open task may
/// use them unless a policy forbids it; see [`session`].
pub const SESSION_ACTIONS: &[&str] = &[
    "mcp.initialize",
    "mcp.tools.list",
    "mcp.resources.list",
    "mcp.prompts.list",
    "mcp.tasks.list",
    "mcp.logging.setlevel",
];

/// Is `action` (a Mandate action) one of MCP's session methods?
pub fn is_session_action(action: &str) -> bool {
    SESSION_ACTIONS.contains(&action)
}

/// Decides one of MCP's [`SESSION_ACTIONS`] for `holder`. Requiring a scope
/// grant for `mcp.initialize` would break every task that was scoped to its
/// tools, and requiring a Cedar permit would break every policy set written
/// for tool actions; so the token must be live (not revoked, proof of
/// possession when bound), the task open, and the active policy must not
/// forbid the request (a `forbid` on, say, `Mandate::Action::"mcp.tools.list"`
/// refuses it; an approval gate refuses it too, as no approval can be raised
/// for a session). Every such decision is recorded, allowed or refused, as
/// every decision is; nothing is spent, since a session method gives access
/// to nothing, and every call made in the session is decided in full.
pub async fn session(
    s: &AppState,
    holder: &Holder,
    ask: &Ask,
    request_id: Option<String>,
    now: Timestamp,
) -> Result<Outcome, StoreError> {
    let task = &holder.task;
    let (mut out, write) = fresh(task, ask);
    let refusal = if let Some(r) = &holder.refused {
        Some(r.clone())
    } else if let Err(stop) = decision::open_at(task, now) {
        Some(stop_reason(&stop, ask))
    } else {
        None
    };
    if let Some(r) = refusal {
        out.reasons.push(r);
    } else if let Some(set) = active_set(s, holder).await? {
        out.policy_hash = Some(set.hash().to_owned());
        let request = policy_request(holder, ask);
        let eval = mandate_policy::evaluate(&set, &request);
        let forbidden = eval
            .reasons
            .iter()
            .any(|r| matches!(r.role, Role::Forbidden | Role::ApprovalRequired))
            // The request could not be put to Cedar at all: fail closed.
            || eval.errors.iter().any(|e| e.policy_id.is_none());
        if forbidden {
            explain(&eval, &mut out);
        } else {
            out.decision = Verdict::Allow;
        }
    } else {
        out.decision = Verdict::Allow;
    }
    if out.decision == Verdict::Allow {
        out.reasons.push(ReasonOut::step(
            "mcp_session",
            format!(
                "{} is an MCP session method: allowed to an open task unless a policy forbids it (no scope grant needed; not counted as a call)",
                ask.action
            ),
        ));
    }
    let change = acting(task, now, request_id);
    Ok(record_spending(s, &change, out, write, Spends::Nothing)
        .await?
        .outcome)
}

/// Which of `asks` could this holder be allowed now, each on some resource
/// its pattern matches? For listing tools before their arguments are known:
/// the task is open, its scope reaches the action, and the policy does not
/// deny the probe (an approval gate still lists the tool). Nothing is
/// recorded, counted or raised; every call is decided in full by [`decide`].
pub async fn preview(
    s: &AppState,
    holder: &Holder,
    asks: &[(Ask, ResourcePattern)],
    now: Timestamp,
) -> Result<Vec<bool>, StoreError> {
    let task = &holder.task;
    let reachable: Vec<bool> = asks
        .iter()
        .map(|(ask, resources)| {
            holder.refused.is_none()
                && decision::admit_any(task, now, &ask.action, resources).is_ok()
        })
        .collect();
    let Some(set) = active_set(s, holder).await? else {
        return Ok(vec![false; asks.len()]);
    };
    let Some(first) = asks
        .iter()
        .zip(&reachable)
        .find_map(|((a, _), r)| r.then_some(a))
    else {
        return Ok(reachable);
    };
    // The chain is read once; only the action, resource and context differ.
    let mut request = policy_request(holder, first);
    let mut out = Vec::with_capacity(asks.len());
    for ((ask, _), reachable) in asks.iter().zip(reachable) {
        if !reachable {
            out.push(false);
            continue;
        }
        let probe = policy_request_for(request, ask);
        out.push(mandate_policy::evaluate(&set, &probe).decision != Decision::Deny);
        request = probe;
    }
    Ok(out)
}

fn stop_reason(stop: &Stop, ask: &Ask) -> ReasonOut {
    ReasonOut::step(stop.code(), stop.message(&ask.action, &ask.resource.id))
}

fn verdict(d: Decision) -> Verdict {
    match d {
        Decision::Allow => Verdict::Allow,
        Decision::Deny => Verdict::Deny,
        Decision::NeedsApproval => Verdict::NeedsApproval,
    }
}

/// The approval-state second pass: an approval bound to exactly this request
/// either lifts the gate (and is spent), refuses it, or is still pending.
#[allow(clippy::too_many_arguments)]
async fn with_approval(
    s: &AppState,
    set: &PolicySet,
    mut request: DecisionRequest,
    digest: &str,
    now: Timestamp,
    write: &mut DecisionWrite,
    out: &mut Outcome,
    first: &Evaluation,
) -> Result<Evaluation, StoreError> {
    let Some(a) = s.store.approval_for(write.task, digest).await? else {
        return Ok(first.clone());
    };
    if a.is_expired(now) {
        return Ok(first.clone());
    }
    match a.status {
        ApprovalStatus::Approved => {
            request.context.approval = ApprovalState::Approved;
            write.spends_approval = Some(a.id);
            out.approval_id = Some(a.id);
            Ok(mandate_policy::evaluate(set, &request))
        }
        ApprovalStatus::Denied => {
            request.context.approval = ApprovalState::Denied;
            out.approval_id = Some(a.id);
            Ok(mandate_policy::evaluate(set, &request))
        }
        ApprovalStatus::Pending => {
            out.approval_id = Some(a.id);
            Ok(first.clone())
        }
        ApprovalStatus::Used => Ok(first.clone()),
    }
}

fn gate_ids(eval: &Evaluation) -> Vec<String> {
    eval.reasons
        .iter()
        .filter(|r| r.role == Role::ApprovalRequired)
        .map(|r| r.policy_id.clone())
        .collect()
}

fn explain(eval: &Evaluation, out: &mut Outcome) {
    for r in &eval.reasons {
        let code = match r.role {
            Role::Permitted => "policy_permit",
            Role::Forbidden => "policy_forbid",
            Role::ApprovalRequired => "approval_required",
            Role::ApprovalGranted => "approval_granted",
            Role::ApprovalDenied => "approval_denied",
        };
        let message = r
            .annotations
            .get("reason")
            .cloned()
            .unwrap_or_else(|| format!("policy {}", r.policy_id));
        out.reasons.push(ReasonOut {
            code: code.into(),
            message,
            policy_id: Some(r.policy_id.clone()),
            annotations: r.annotations.clone(),
        });
    }
    for e in &eval.errors {
        out.reasons.push(ReasonOut {
            code: "policy_error".into(),
            message: e.message.clone(),
            policy_id: e.policy_id.clone(),
            annotations: BTreeMap::new(),
        });
    }
    if eval.is_default_deny() {
        out.reasons.push(ReasonOut::step(
            "no_permit",
            "no policy permits this request (default deny)",
        ));
    }
}

/// The digest an approval is bound to: everything about the request except
/// its time.
fn approval_digest(task: TaskId, ask: &Ask) -> String {
    let resource = serde_json::to_value(&ask.resource).unwrap_or_default();
    let context = serde_json::to_value(&ask.context).unwrap_or_default();
    decision::request_digest(task, &ask.action, &resource, &context)
}

/// The policy set active when the holder's context was read.
async fn active_set(s: &AppState, holder: &Holder) -> Result<Option<Arc<PolicySet>>, StoreError> {
    s.policy
        .current_at(holder.facts.policy_hash.clone(), s.store.as_ref())
        .await
}

/// The Cedar request: the initiator, every agent of the chain, the task.
fn policy_request(holder: &Holder, ask: &Ask) -> DecisionRequest {
    let task = &holder.task;
    DecisionRequest {
        initiator: task.initiator,
        delegators: holder.facts.delegators.clone(),
        agent: holder.facts.agent.clone(),
        task: TaskFacts::from(task),
        action: ask.action.clone(),
        resource: resource_facts(ask),
        context: request_context(ask),
    }
}

/// `request` (same chain and task) asking `ask` instead.
fn policy_request_for(request: DecisionRequest, ask: &Ask) -> DecisionRequest {
    DecisionRequest {
        action: ask.action.clone(),
        resource: resource_facts(ask),
        context: request_context(ask),
        ..request
    }
}

fn resource_facts(ask: &Ask) -> ResourceFacts {
    ResourceFacts {
        id: ask.resource.id.clone(),
        sensitivity: ask.resource.sensitivity.clone(),
        labels: ask.resource.labels.iter().cloned().collect(),
    }
}

fn request_context(ask: &Ask) -> RequestContext {
    let c = &ask.context;
    RequestContext {
        tool: c.tool.clone(),
        environment: c.environment.clone().unwrap_or_else(|| "prod".into()),
        data_sensitivity: c
            .data_sensitivity
            .clone()
            .unwrap_or_else(|| ask.resource.sensitivity.clone()),
        time: crate::now(),
        risk_score: c.risk_score.unwrap_or(0),
        approval: ApprovalState::None,
        amount: c.amount,
    }
}

/// What an allowed decision uses up of its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spends {
    /// One of the task's calls, and any amount the call moves: an action.
    Call,
    /// Nothing: one of MCP's session methods, which reaches no data (see
    /// [`session`]). Still recorded, never counted against a limit.
    Nothing,
}

async fn record(
    s: &AppState,
    change: &Change,
    out: Outcome,
    write: DecisionWrite,
) -> Result<Decided, StoreError> {
    record_spending(s, change, out, write, Spends::Call).await
}

/// Records the decision; an allowed one uses up what `spends` says. If the
/// call limit or the approval was used up by a concurrent request, the
/// answer becomes a deny.
async fn record_spending(
    s: &AppState,
    change: &Change,
    mut out: Outcome,
    mut write: DecisionWrite,
    spends: Spends,
) -> Result<Decided, StoreError> {
    // An approval is spent only by the allow it unlocks.
    if out.decision != Verdict::Allow {
        write.spends_approval = None;
    }
    if spends == Spends::Nothing {
        write.max_calls = None;
        write.spends = None;
    }
    loop {
        write.verdict = out.decision;
        write.counts_call = out.decision == Verdict::Allow && spends == Spends::Call;
        // Serialised straight to text: the entry needs no `Value` of it.
        write.details =
            serde_json::value::to_raw_value(&out).unwrap_or_else(|_| RawValue::NULL.to_owned());
        let lost = match s.store.record_decision(change, &write).await? {
            Recorded::Done => {
                crate::observe::decision_made(out.decision);
                return Ok(Decided {
                    outcome: out,
                    json: Some(write.details),
                });
            }
            Recorded::OverLimit => ReasonOut::step(
                "limit_exceeded",
                "the task's call limit was reached by a concurrent request",
            ),
            Recorded::ApprovalSpent => ReasonOut::step(
                "approval_spent",
                "the approval for this request was already used",
            ),
            Recorded::OverBudget => ReasonOut::step(
                "limit_exceeded",
                format!(
                    "an amount of {} would exceed the budget left to this task or to a task it was delegated from",
                    write.spends.unwrap_or_default()
                ),
            ),
        };
        out.decision = Verdict::Deny;
        out.breakglass_id = None;
        out.reasons.push(lost);
        write.spends_approval = None;
        write.raises_approval = None;
    }
}
