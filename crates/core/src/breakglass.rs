//! Break-glass: an emergency grant outside normal policy.
//!
//! It exists because real incidents do not wait for a policy change, and it
//! is made deliberately uncomfortable: a reason is mandatory, it lasts at
//! most an hour by default, every decision it allows carries its id, and it
//! stays flagged as unreviewed until a human records a review. It never
//! revives a revoked or expired task: the token and task checks still run.

use serde::{Deserialize, Serialize};

use crate::RuleError;
use crate::audit::Actor;
use crate::human::check_free_text;
use crate::ids::{AgentId, BreakGlassId, HumanId};
use crate::scope::Scope;
use crate::time::Timestamp;

/// The longest a break-glass grant may last unless the server is configured
/// otherwise.
pub const DEFAULT_MAX_TTL_MS: i64 = 60 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BreakGlass {
    pub id: BreakGlassId,
    pub agent: AgentId,
    /// What it allows beyond the task's scope and policy.
    pub scope: Scope,
    pub reason: String,
    pub granted_by: Actor,
    pub granted_at: Timestamp,
    pub expires_at: Timestamp,
    pub reviewed_by: Option<HumanId>,
    pub reviewed_at: Option<Timestamp>,
    pub review_note: Option<String>,
}

impl BreakGlass {
    /// A new grant, checked: a real reason and a TTL within `max_ttl_ms`.
    #[allow(clippy::too_many_arguments)]
    pub fn grant(
        id: BreakGlassId,
        agent: AgentId,
        scope: Scope,
        reason: &str,
        granted_by: Actor,
        now: Timestamp,
        ttl_ms: i64,
        max_ttl_ms: i64,
    ) -> Result<BreakGlass, RuleError> {
        check_free_text("reason", reason, 1000)?;
        if scope.is_empty() {
            return Err(RuleError::invalid(
                "scope",
                "a break-glass grant needs at least one grant",
            ));
        }
        if ttl_ms <= 0 || ttl_ms > max_ttl_ms {
            return Err(RuleError::invalid(
                "ttl",
                format!("must be between 1 second and {} seconds", max_ttl_ms / 1000),
            ));
        }
        Ok(BreakGlass {
            id,
            agent,
            scope,
            reason: reason.trim().to_owned(),
            granted_by,
            granted_at: now,
            expires_at: Timestamp::from_millis(now.as_millis().saturating_add(ttl_ms)),
            reviewed_by: None,
            reviewed_at: None,
            review_note: None,
        })
    }

    /// Does it allow `action` on `resource` for its agent at `now`?
    pub fn covers(&self, now: Timestamp, action: &str, resource: &str) -> bool {
        now < self.expires_at && self.scope.allows(action, resource)
    }

    pub fn is_reviewed(&self) -> bool {
        self.reviewed_at.is_some()
    }

    /// The review rule: once, by a human, with a note.
    pub fn check_review(&self, note: &str) -> Result<(), RuleError> {
        check_free_text("note", note, 2000)?;
        if self.is_reviewed() {
            return Err(RuleError::Transition(format!(
                "break-glass grant {} is already reviewed",
                self.id
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Grant;
    use uuid::Uuid;

    fn grant(reason: &str, ttl: i64) -> Result<BreakGlass, RuleError> {
        BreakGlass::grant(
            BreakGlassId::from_uuid(Uuid::nil()),
            AgentId::from_uuid(Uuid::nil()),
            Scope::new([Grant::new("payments.*", "erp:*").unwrap()]).unwrap(),
            reason,
            Actor::System,
            Timestamp::from_millis(1_000),
            ttl,
            DEFAULT_MAX_TTL_MS,
        )
    }

    #[test]
    fn reason_is_mandatory_and_ttl_is_capped() {
        assert!(grant("", 1_000).is_err());
        assert!(grant("   ", 1_000).is_err());
        assert!(grant("incident 42", 0).is_err());
        assert!(grant("incident 42", DEFAULT_MAX_TTL_MS + 1).is_err());
        grant("incident 42", DEFAULT_MAX_TTL_MS).unwrap();
    }

    #[test]
    fn it_covers_its_scope_until_it_expires() {
        let g = grant("incident 42", 5_000).unwrap();
        assert!(g.covers(
            Timestamp::from_millis(2_000),
            "payments.initiate",
            "erp:po/1"
        ));
        assert!(!g.covers(Timestamp::from_millis(2_000), "records.delete", "erp:po/1"));
        assert!(!g.covers(
            Timestamp::from_millis(6_000),
            "payments.initiate",
            "erp:po/1"
        ));
    }

    #[test]
    fn it_is_reviewed_once() {
        let mut g = grant("incident 42", 5_000).unwrap();
        assert!(g.check_review("").is_err());
        g.check_review("checked the payment, fine").unwrap();
        g.reviewed_at = Some(Timestamp::from_millis(3_000));
        assert!(g.check_review("again").is_err());
    }
}
