//! Human approvals: who may approve what, and for how long.
//!
//! An approval is bound to one exact request (task, action, resource and the
//! request's context digest), expires, and is spent by the one decision it
//! unlocks. The approver is a human with the approver role who is neither
//! the requester nor the human on whose authority the task runs
//! (separation of duties): an agent cannot get its own chain to wave it
//! through.

use serde::{Deserialize, Serialize};

use crate::RuleError;
use crate::human::{Human, HumanRole, HumanStatus};
use crate::ids::{AgentId, ApprovalId, HumanId, TaskId};
use crate::time::Timestamp;

/// How long a human has to answer, and how long an answer stays usable.
pub const APPROVAL_TTL_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    /// Approved and then spent by the decision it unlocked.
    Used,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Used => "used",
        }
    }

    pub fn parse(s: &str) -> Result<Self, RuleError> {
        Ok(match s {
            "pending" => ApprovalStatus::Pending,
            "approved" => ApprovalStatus::Approved,
            "denied" => ApprovalStatus::Denied,
            "used" => ApprovalStatus::Used,
            _ => {
                return Err(RuleError::invalid(
                    "approval status",
                    format!("{s:?} (expected pending, approved, denied or used)"),
                ));
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Approval {
    pub id: ApprovalId,
    pub task: TaskId,
    /// The agent whose request is waiting.
    pub agent: AgentId,
    /// The human on whose authority the task runs: never its approver.
    pub initiator: HumanId,
    pub action: String,
    pub resource: String,
    /// [`crate::decision::request_digest`] of the request it was raised for.
    pub digest: String,
    /// The policies that asked for it.
    pub policies: Vec<String>,
    /// The request's context as the requester sent it, which `digest` binds
    /// (with the task, action and resource): what the approver is shown.
    /// Null for approvals raised before contexts were kept.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub context: serde_json::Value,
    pub status: ApprovalStatus,
    pub requested_at: Timestamp,
    pub expires_at: Timestamp,
    pub decided_by: Option<HumanId>,
    pub decided_at: Option<Timestamp>,
    pub note: Option<String>,
}

impl Approval {
    /// Has it expired at `now`? An expired approval neither waits nor unlocks.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }

    /// Is this approval still waiting for an answer at `now`?
    pub fn check_answerable(&self, now: Timestamp) -> Result<(), RuleError> {
        if self.status != ApprovalStatus::Pending {
            return Err(RuleError::Transition(format!(
                "approval {} is already {}",
                self.id,
                self.status.as_str()
            )));
        }
        if self.is_expired(now) {
            return Err(RuleError::Transition(format!(
                "approval {} expired at {}",
                self.id,
                self.expires_at.rfc3339()
            )));
        }
        Ok(())
    }

    /// May `approver` answer it? (Whether it is still open is
    /// [`Approval::check_answerable`].)
    pub fn check_approver(&self, approver: &Human) -> Result<(), RuleError> {
        if approver.status != HumanStatus::Active {
            return Err(RuleError::Transition(format!(
                "{} is deactivated and cannot approve",
                approver.display_name
            )));
        }
        if approver.id == self.initiator {
            return Err(RuleError::Transition(format!(
                "{} initiated the task and cannot approve its requests (separation of duties)",
                approver.display_name
            )));
        }
        if !approver.roles.contains(&HumanRole::Approver) {
            return Err(RuleError::Transition(format!(
                "{} does not have the approver role",
                approver.display_name
            )));
        }
        Ok(())
    }

    /// Does this approval unlock a request with `digest` at `now`?
    pub fn unlocks(&self, digest: &str, now: Timestamp) -> bool {
        self.status == ApprovalStatus::Approved && self.digest == digest && !self.is_expired(now)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use uuid::Uuid;

    fn human(n: u128, roles: &[HumanRole]) -> Human {
        Human {
            id: HumanId::from_uuid(Uuid::from_u128(n)),
            issuer: "https://idp".into(),
            subject: format!("h{n}"),
            display_name: format!("H{n}"),
            email: None,
            roles: roles.iter().copied().collect::<BTreeSet<_>>(),
            status: HumanStatus::Active,
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
        }
    }

    fn approval() -> Approval {
        Approval {
            id: ApprovalId::from_uuid(Uuid::from_u128(9)),
            task: TaskId::from_uuid(Uuid::from_u128(8)),
            agent: AgentId::from_uuid(Uuid::from_u128(7)),
            initiator: HumanId::from_uuid(Uuid::from_u128(1)),
            action: "payments.initiate".into(),
            resource: "erp:po/1".into(),
            digest: "d1".into(),
            policies: vec!["large-payment".into()],
            context: serde_json::Value::Null,
            status: ApprovalStatus::Pending,
            requested_at: Timestamp::from_millis(0),
            expires_at: Timestamp::from_millis(100),
            decided_by: None,
            decided_at: None,
            note: None,
        }
    }

    #[test]
    fn only_an_active_approver_other_than_the_initiator_may_answer() {
        let a = approval();
        a.check_approver(&human(2, &[HumanRole::Approver])).unwrap();
        // The initiator, even with the role.
        let e = a
            .check_approver(&human(1, &[HumanRole::Approver]))
            .unwrap_err();
        assert!(e.to_string().contains("separation of duties"), "{e}");
        // Without the role.
        assert!(a.check_approver(&human(2, &[])).is_err());
        // Deactivated.
        let mut gone = human(2, &[HumanRole::Approver]);
        gone.status = HumanStatus::Deactivated;
        assert!(a.check_approver(&gone).is_err());
        // Too late, whoever answers.
        a.check_answerable(Timestamp::from_millis(99)).unwrap();
        assert!(a.check_answerable(Timestamp::from_millis(100)).is_err());
    }

    #[test]
    fn an_answer_is_given_once() {
        let mut a = approval();
        for s in [
            ApprovalStatus::Approved,
            ApprovalStatus::Denied,
            ApprovalStatus::Used,
        ] {
            a.status = s;
            assert!(a.check_answerable(Timestamp::from_millis(1)).is_err());
        }
    }

    #[test]
    fn an_approval_unlocks_only_its_own_request_while_fresh() {
        let mut a = approval();
        let now = Timestamp::from_millis(10);
        assert!(!a.unlocks("d1", now), "pending unlocks nothing");
        a.status = ApprovalStatus::Approved;
        assert!(a.unlocks("d1", now));
        assert!(!a.unlocks("d2", now), "another resource or context");
        assert!(!a.unlocks("d1", Timestamp::from_millis(100)), "expired");
        a.status = ApprovalStatus::Used;
        assert!(!a.unlocks("d1", now), "spent");
    }
}
