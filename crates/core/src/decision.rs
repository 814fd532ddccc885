//! Decisions: the checks a request must pass before policy is even asked.
//!
//! The pipeline is fixed (token, task open, scope, limits, then Cedar) and
//! each step can stop with its own reason. The steps that are pure rules live
//! here; token verification and Cedar live above this crate. The rule that
//! matters most: a valid token does not make an action allowed — an action
//! outside the task's scope is refused before policy runs (the confused
//! deputy), and nothing here ever turns a refusal into an allow.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::TaskId;
use crate::scope::ResourcePattern;
use crate::task::{Task, TaskStatus};
use crate::time::Timestamp;

/// The three answers a decision can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Deny,
    NeedsApproval,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::NeedsApproval => "needs_approval",
        }
    }
}

/// Why the pipeline stopped before policy: a stable machine code plus a
/// sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The task is completed, failed, revoked or expired.
    TaskNotOpen(TaskStatus),
    /// The token is valid but the action or resource is not in its task's scope.
    OutsideTaskScope,
    /// The task has used every call it was given.
    LimitExceeded { max_calls: u64 },
}

impl Stop {
    pub fn code(&self) -> &'static str {
        match self {
            Stop::TaskNotOpen(TaskStatus::Expired) => "task_expired",
            Stop::TaskNotOpen(TaskStatus::Revoked) => "task_revoked",
            Stop::TaskNotOpen(_) => "task_ended",
            Stop::OutsideTaskScope => "outside_task_scope",
            Stop::LimitExceeded { .. } => "limit_exceeded",
        }
    }

    pub fn message(&self, action: &str, resource: &str) -> String {
        match self {
            Stop::TaskNotOpen(s) => format!("the task is {}", s.as_str()),
            Stop::OutsideTaskScope => format!(
                "{action} on {resource} is outside the task's scope (the token is valid, the action is not)"
            ),
            Stop::LimitExceeded { max_calls } => {
                format!("the task has used all {max_calls} of its calls")
            }
        }
    }
}

/// Steps 2 and 3 of the pipeline: the task is open at `now`, and the action
/// on the resource lies inside its scope. (Limits are checked where the call
/// is counted, atomically; see [`check_calls`].)
pub fn admit(task: &Task, now: Timestamp, action: &str, resource: &str) -> Result<(), Stop> {
    open_at(task, now)?;
    if !task.scope.allows(action, resource) {
        return Err(Stop::OutsideTaskScope);
    }
    Ok(())
}

/// [`admit`] for a resource not yet known: the task is open and its scope
/// reaches `action` on some resource `resources` matches. A tool is listed
/// by this; each call is still admitted on its concrete resource.
pub fn admit_any(
    task: &Task,
    now: Timestamp,
    action: &str,
    resources: &ResourcePattern,
) -> Result<(), Stop> {
    open_at(task, now)?;
    if !task.scope.reaches(action, resources) {
        return Err(Stop::OutsideTaskScope);
    }
    Ok(())
}

/// Step 2 alone: the task is open at `now`. What MCP's session methods need
/// (see the server's `decision::session`): they reach no resource, so no
/// scope is asked of them.
pub fn open_at(task: &Task, now: Timestamp) -> Result<(), Stop> {
    match task.status_at(now) {
        TaskStatus::Open => Ok(()),
        s => Err(Stop::TaskNotOpen(s)),
    }
}

/// Step 4: may one more call be made, given `used` calls so far?
pub fn check_calls(task: &Task, used: u64) -> Result<(), Stop> {
    match task.limits.max_calls {
        Some(max) if used >= max => Err(Stop::LimitExceeded { max_calls: max }),
        _ => Ok(()),
    }
}

/// The digest an approval is bound to: the task, the action, the resource
/// and the request context, as canonical JSON (keys sorted, so the same
/// request always gives the same digest). The caller leaves out what changes
/// on a retry of the same request (its time, its approval state).
pub fn request_digest(
    task: TaskId,
    action: &str,
    resource: &serde_json::Value,
    context: &serde_json::Value,
) -> String {
    let body = serde_json::json!({
        "task": task,
        "action": action,
        "resource": resource,
        "context": context,
    });
    hex(&Sha256::digest(sorted(&body).to_string().as_bytes()))
}

/// `v` with every object's keys in sorted order. Rebuilt explicitly because
/// serde_json keeps insertion order when any crate in the build enables its
/// `preserve_order` feature.
fn sorted(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            serde_json::Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentKind;
    use crate::ids::{AgentId, AgentName, HumanId, SpiffeId, TrustDomain};
    use crate::scope::{Grant, Scope};
    use crate::task::Limits;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn task(grants: &[(&str, &str)], max_calls: Option<u64>) -> Task {
        Task {
            id: TaskId::from_uuid(Uuid::now_v7()),
            parent: None,
            root: TaskId::from_uuid(Uuid::nil()),
            depth: 0,
            purpose: "p".into(),
            initiator: HumanId::from_uuid(Uuid::nil()),
            assignee: AgentId::from_uuid(Uuid::nil()),
            assignee_spiffe: SpiffeId::for_agent(
                &TrustDomain::parse("acme.test").unwrap(),
                AgentKind::Agent,
                &AgentName::parse("a").unwrap(),
            ),
            delegator: None,
            scope: Scope::new(grants.iter().map(|(a, r)| Grant::new(a, r).unwrap())).unwrap(),
            limits: Limits {
                max_calls,
                ..Limits::default()
            },
            expires_at: Timestamp::from_millis(1_000),
            status: TaskStatus::Open,
            created_at: Timestamp::from_millis(0),
            ended_at: None,
            end_reason: None,
        }
    }

    #[test]
    fn a_valid_task_does_not_admit_what_its_scope_does_not_cover() {
        let t = task(&[("invoices.read", "erp:invoices/*")], None);
        let now = Timestamp::from_millis(10);
        admit(&t, now, "invoices.read", "erp:invoices/7").unwrap();
        assert_eq!(
            admit(&t, now, "payments.initiate", "erp:invoices/7"),
            Err(Stop::OutsideTaskScope)
        );
        assert_eq!(
            admit(&t, now, "invoices.read", "erp:payroll/7"),
            Err(Stop::OutsideTaskScope)
        );
    }

    #[test]
    fn ended_and_expired_tasks_admit_nothing() {
        let mut t = task(&[("*", "*")], None);
        assert_eq!(
            admit(&t, Timestamp::from_millis(1_000), "a", "b"),
            Err(Stop::TaskNotOpen(TaskStatus::Expired))
        );
        for s in [
            TaskStatus::Revoked,
            TaskStatus::Completed,
            TaskStatus::Failed,
        ] {
            t.status = s;
            assert_eq!(
                admit(&t, Timestamp::from_millis(1), "a", "b"),
                Err(Stop::TaskNotOpen(s))
            );
        }
        assert_eq!(
            Stop::TaskNotOpen(TaskStatus::Revoked).code(),
            "task_revoked"
        );
    }

    #[test]
    fn calls_stop_at_the_limit() {
        let t = task(&[("*", "*")], Some(2));
        check_calls(&t, 0).unwrap();
        check_calls(&t, 1).unwrap();
        assert_eq!(
            check_calls(&t, 2),
            Err(Stop::LimitExceeded { max_calls: 2 })
        );
        check_calls(&task(&[("*", "*")], None), u64::MAX).unwrap();
    }

    #[test]
    fn digests_bind_every_part_of_the_request() {
        let t = TaskId::from_uuid(Uuid::nil());
        let r = serde_json::json!({"id": "erp:x", "sensitivity": "internal"});
        let c = serde_json::json!({"amount": 5, "risk_score": 10});
        let d = request_digest(t, "pay", &r, &c);
        assert_eq!(
            d,
            request_digest(
                t,
                "pay",
                &r,
                &serde_json::json!({"risk_score": 10, "amount": 5})
            )
        );
        assert_ne!(d, request_digest(t, "pay2", &r, &c));
        assert_ne!(
            d,
            request_digest(
                t,
                "pay",
                &serde_json::json!({"id": "erp:y", "sensitivity": "internal"}),
                &c
            )
        );
        assert_ne!(
            d,
            request_digest(
                t,
                "pay",
                &r,
                &serde_json::json!({"amount": 6, "risk_score": 10})
            )
        );
        assert_ne!(
            d,
            request_digest(TaskId::from_uuid(Uuid::max()), "pay", &r, &c)
        );
    }

    proptest! {
        /// Whatever the scope and request, admission never lets through an
        /// action the scope does not allow.
        #[test]
        fn admission_never_widens_scope(
            grants in proptest::collection::vec(("[a-c]{1,2}\\*?", "[x-z]{1,2}\\*?"), 0..4),
            action in "[a-c]{1,3}",
            resource in "[x-z]{1,3}",
        ) {
            let g: Vec<(&str, &str)> = grants.iter().map(|(a, r)| (a.as_str(), r.as_str())).collect();
            let t = task(&g, None);
            let admitted = admit(&t, Timestamp::from_millis(1), &action, &resource).is_ok();
            prop_assert_eq!(admitted, t.scope.allows(&action, &resource));
        }
    }
}
