//! The decision: allow, deny or needs_approval, with the policies that decided it.
//!
//! Cedar answers allow or deny. Mandate adds one outcome on top, with one
//! rule (see the crate docs): a satisfied `forbid` annotated
//! `@approval("required")` is an *approval gate*. In order:
//!
//! 1. a satisfied forbid that is not a gate — or any forbid that failed to
//!    evaluate (fail closed) — denies;
//! 2. with no satisfied permit, the request is denied by default;
//! 3. with satisfied gates, the approval state decides: `approved` allows,
//!    `denied` denies, otherwise the answer is `needs_approval`;
//! 4. otherwise it is allowed.
//!
//! Forbids are evaluated apart from permits so both sides are known: Cedar
//! alone reports only the forbids once one is satisfied, and "would anything
//! permit this" decides between `needs_approval` (worth asking a human) and
//! deny (an approval could not help).

use std::collections::BTreeMap;

use cedar_policy::{Authorizer, Decision as CedarDecision, Entities, Request, Response};
use mandate_core::scope::ActionPattern;
use serde::{Deserialize, Serialize};

use crate::policy_set::{Effect, PolicySet, pid};
use crate::request::{ApprovalState, DecisionRequest};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
    NeedsApproval,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::NeedsApproval => "needs_approval",
        }
    }
}

/// What a determining policy did to the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A permit that was satisfied.
    Permitted,
    /// A forbid that was satisfied (or failed to evaluate).
    Forbidden,
    /// A gate waiting for a human approval.
    ApprovalRequired,
    /// A gate lifted by an approval.
    ApprovalGranted,
    /// A gate whose approval was refused.
    ApprovalDenied,
}

/// One determining policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub policy_id: String,
    pub effect: Effect,
    pub role: Role,
    /// All its annotations (`@reason`, `@approval`, ...), `id` included.
    pub annotations: BTreeMap<String, String>,
}

/// A policy that could not be evaluated for this request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalError {
    /// `None` when the request itself could not be built.
    pub policy_id: Option<String>,
    pub message: String,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    pub decision: Decision,
    /// The determining policies, in source order. Empty for a default deny.
    pub reasons: Vec<Reason>,
    pub errors: Vec<EvalError>,
}

impl Evaluation {
    /// Denied because nothing permitted it (and nothing forbade it).
    pub fn is_default_deny(&self) -> bool {
        self.decision == Decision::Deny && self.reasons.is_empty()
    }

    fn refused(message: String) -> Evaluation {
        Evaluation {
            decision: Decision::Deny,
            reasons: Vec::new(),
            errors: vec![EvalError {
                policy_id: None,
                message,
            }],
        }
    }
}

/// The policies of `set` that were satisfied, and those that failed.
fn satisfied(
    set: &cedar_policy::PolicySet,
    request: &Request,
    entities: &Entities,
    errors: &mut Vec<EvalError>,
) -> (Vec<String>, Vec<String>) {
    let mut hits = Vec::new();
    let mut failed = Vec::new();
    if !set.is_empty() {
        let response: Response = Authorizer::new().is_authorized(request, set, entities);
        // A set holds only permits or only forbids, so every determining
        // policy it reports was satisfied (an empty reason means none was).
        hits.extend(response.diagnostics().reason().map(|id| pid(id).to_owned()));
        for e in response.diagnostics().errors() {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = e;
            let id = pid(e.policy_id()).to_owned();
            errors.push(EvalError {
                policy_id: Some(id.clone()),
                message: e.inner().to_string(),
            });
            failed.push(id);
        }
        debug_assert!(
            response.decision() == CedarDecision::Deny
                || response.diagnostics().reason().next().is_some()
        );
    }
    (hits, failed)
}

/// Decides `request` under `set`. Never fails: a request that cannot be put
/// to Cedar is denied, with the reason in `errors`.
pub fn evaluate(set: &PolicySet, request: &DecisionRequest) -> Evaluation {
    // Request actions are concrete task-scope actions; a `*` would make the
    // action a group and match policies meant for the whole group.
    if request.action.contains('*') || ActionPattern::parse(&request.action).is_err() {
        return Evaluation::refused(format!(
            "{:?} is not a valid action (lowercase letters, digits, '.', '_', '-', ':')",
            request.action
        ));
    }
    let index = &set.index;
    let slice = index.slice(&request.action);
    let (cedar_request, entities) = match request.to_cedar(&slice.action_parents) {
        Ok(built) => built,
        Err(e) => return Evaluation::refused(format!("request could not be built: {e}")),
    };

    let mut errors = Vec::new();
    let (forbids, failed) = satisfied(
        &slice.policies.forbids,
        &cedar_request,
        &entities,
        &mut errors,
    );
    let reason = |id: &str, role: Role| -> Reason {
        let info = set.policy(id);
        Reason {
            policy_id: id.to_owned(),
            effect: info.map_or(Effect::Forbid, |p| p.effect),
            role,
            annotations: info.map(|p| p.annotations.clone()).unwrap_or_default(),
        }
    };
    let finish = |decision: Decision, mut reasons: Vec<Reason>, errors: Vec<EvalError>| {
        reasons.sort_by_key(|r| set.position(&r.policy_id));
        reasons.dedup_by(|a, b| a.policy_id == b.policy_id);
        Evaluation {
            decision,
            reasons,
            errors,
        }
    };

    let is_gate = |id: &str| set.policy(id).is_some_and(|p| p.is_approval_gate());
    let (gates, hard): (Vec<String>, Vec<String>) = forbids.into_iter().partition(|id| is_gate(id));
    // A forbid that errored is treated as satisfied: its author meant to stop
    // something, and Cedar's "skip it" would let that through.
    let hard: Vec<String> = hard.into_iter().chain(failed).collect();
    if !hard.is_empty() {
        let reasons = hard.iter().map(|id| reason(id, Role::Forbidden)).collect();
        return finish(Decision::Deny, reasons, errors);
    }

    let (permits, _) = satisfied(
        &slice.policies.permits,
        &cedar_request,
        &entities,
        &mut errors,
    );
    if permits.is_empty() {
        return finish(Decision::Deny, Vec::new(), errors);
    }
    let permitted = permits.iter().map(|id| reason(id, Role::Permitted));
    if gates.is_empty() {
        return finish(Decision::Allow, permitted.collect(), errors);
    }
    match request.context.approval {
        ApprovalState::Approved => {
            let lifted = gates.iter().map(|id| reason(id, Role::ApprovalGranted));
            finish(Decision::Allow, permitted.chain(lifted).collect(), errors)
        }
        ApprovalState::Denied => {
            let refused = gates.iter().map(|id| reason(id, Role::ApprovalDenied));
            finish(Decision::Deny, refused.collect(), errors)
        }
        ApprovalState::None => {
            let waiting = gates.iter().map(|id| reason(id, Role::ApprovalRequired));
            finish(Decision::NeedsApproval, waiting.collect(), errors)
        }
    }
}
