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
//! One authorizer call over the action's whole slice answers most requests:
//! Cedar reports the satisfied permits when it allows, the satisfied forbids
//! when one is, nothing when neither is, and every policy that failed. Only
//! when the forbids it reports are all gates is a second call made, over the
//! permits alone: Cedar reports only the forbids once one is satisfied, and
//! "would anything permit this" decides between `needs_approval` (worth
//! asking a human) and deny (an approval could not help).

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

/// Cedar's answer over one set of policies.
struct Answer {
    allowed: bool,
    /// The determining policies: the satisfied permits if it allowed, else
    /// the satisfied forbids (none when no policy was satisfied).
    hits: Vec<String>,
    /// The policies that failed to evaluate (Cedar skips them).
    failed: Vec<EvalError>,
}

fn authorize(set: &cedar_policy::PolicySet, request: &Request, entities: &Entities) -> Answer {
    if set.is_empty() {
        return Answer {
            allowed: false,
            hits: Vec::new(),
            failed: Vec::new(),
        };
    }
    let response: Response = Authorizer::new().is_authorized(request, set, entities);
    let d = response.diagnostics();
    Answer {
        allowed: response.decision() == CedarDecision::Allow,
        hits: d.reason().map(|id| pid(id).to_owned()).collect(),
        failed: d
            .errors()
            .map(|e| {
                let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = e;
                EvalError {
                    policy_id: Some(pid(e.policy_id()).to_owned()),
                    message: e.inner().to_string(),
                }
            })
            .collect(),
    }
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

    let answer = authorize(&slice.policies.all, &cedar_request, &entities);
    let mut errors = answer.failed;
    errors.sort_by_key(|e| e.policy_id.as_deref().map(|id| set.position(id)));
    let failed = errors
        .iter()
        .filter_map(|e| e.policy_id.clone())
        .filter(|id| set.policy(id).is_none_or(|p| p.effect == Effect::Forbid));
    // Allowed: no forbid was satisfied and the hits are the permits. Denied:
    // the hits are the satisfied forbids, or nothing when no policy was.
    let (forbids, permits) = if answer.allowed {
        (Vec::new(), answer.hits)
    } else {
        (answer.hits, Vec::new())
    };
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

    // Only gates stopped Cedar (or nothing did): what would it permit?
    let permits = if answer.allowed || gates.is_empty() {
        permits
    } else {
        // Its errors are the permits' of the first call, already kept.
        authorize(&slice.policies.permits, &cedar_request, &entities).hits
    };
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
