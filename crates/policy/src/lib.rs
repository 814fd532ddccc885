//! Mandate's policy-as-code: Cedar policies, validated against Mandate's
//! schema, deciding `allow`, `deny` or `needs_approval` with reasons.
//!
//! Policies are written in [Cedar](https://www.cedarpolicy.com) and run by the
//! `cedar-policy` crate; this crate adds what Mandate needs around it and
//! performs no I/O, so the server, the CLI and an offline verifier all get
//! the same answers from the same text.
//!
//! - [`schema`]: the entity types (`Mandate::Human`, `Agent`, `Task`, `Tool`,
//!   `Resource`, `Environment`) and request context every policy is checked
//!   against, and how actions are declared.
//! - [`PolicySet::parse`]: parse, apply Mandate's conventions, validate
//!   strictly; refused sets report every problem with line and column. A set
//!   is identified by [`PolicySet::hash`], the SHA-256 of its text.
//! - [`evaluate`]: one [`DecisionRequest`] in, one [`Evaluation`] out.
//! - [`diff`]: what changed between two versions, by policy `@id`.
//!
//! # Actions
//!
//! Each Mandate action string is a Cedar action id:
//! `forbid (principal, action == Mandate::Action::"payments.initiate", resource)
//! when { context has amount && context.amount > 10000 };`. Cedar's validator
//! only knows declared actions, so the schema is completed per policy set
//! with every action the set mentions (strict validation stays on; see
//! [`schema`]). An action id ending in `*` is a group, as in task scopes:
//! `action in Mandate::Action::"payments.*"`. Optional context fields
//! (`tool`, `amount`) must be tested with `has` before use; the validator
//! refuses a policy that does not.
//!
//! # Approvals
//!
//! A `forbid` annotated `@approval("required")` is an *approval gate*: when
//! it is satisfied, and nothing else forbids, and something permits, the
//! answer is `needs_approval` — or `allow` once `context.approval` is
//! `"approved"` (`deny` when `"denied"`). A gate is a forbid rather than a
//! specially marked permit because Cedar's rule that forbid overrides
//! permit then protects it: adding a broad permit later can never silently
//! remove a human from the loop, and a gate can be scoped as narrowly as any
//! forbid. A request that no policy permits is denied outright, since an
//! approval could not make it allowed. `@approval` on a permit is refused at
//! push time so nobody relies on the other reading.
//!
//! # Failing closed
//!
//! Nothing permitted means deny. A forbid that fails to evaluate (e.g.
//! integer overflow) counts as satisfied; a permit that fails does not
//! permit. A request that cannot be put to Cedar is denied with the error.
#![forbid(unsafe_code)]

pub mod diff;
mod entities;
pub mod error;
pub mod evaluate;
pub mod policy_set;
pub mod request;
pub mod schema;
mod slice;

pub use diff::{Change, PolicyChange, diff};
pub use error::{Location, PolicyError, Problem, ProblemKind};
pub use evaluate::{Decision, EvalError, Evaluation, Reason, Role, evaluate};
pub use policy_set::{Effect, PolicyInfo, PolicySet, canonical_text, hash_text};
pub use request::{
    AgentFacts, ApprovalState, DecisionRequest, RequestContext, ResourceFacts, TaskFacts,
};
