//! Tasks (mandates): bounded units of work, and how they end.
//!
//! A task is open until it is completed or failed by its assignee, revoked,
//! or passes its expiry. Ending is final, and ending a task ends its whole
//! subtree (the store applies the cascade; the rule is here).

use serde::{Deserialize, Serialize};

use crate::RuleError;
use crate::ids::{AgentId, HumanId, SpiffeId, TaskId};
use crate::scope::Scope;
use crate::time::Timestamp;

/// Per-task limits, enforced at decision time. A child's limits never exceed
/// its parent's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u64>,
    /// Money the task may move, in minor units (as `context.amount`):
    /// spent by allowed decisions that carry an amount, and charged to every
    /// ancestor with a budget too, so delegating never multiplies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<u64>,
}

/// Is `inner` at least as tight as `outer` (no limit is the loosest)?
fn tighter(inner: Option<u64>, outer: Option<u64>) -> bool {
    match (inner, outer) {
        (_, None) => true,
        (Some(c), Some(p)) => c <= p,
        (None, Some(_)) => false,
    }
}

impl Limits {
    /// Is every limit at least as tight as `outer`'s?
    pub fn within(&self, outer: &Limits) -> bool {
        self.looser_than(outer).is_none()
    }

    /// The first limit looser than `outer`'s, named, with both values.
    pub fn looser_than(&self, outer: &Limits) -> Option<String> {
        let show = |v: Option<u64>| v.map_or("unlimited".to_owned(), |n| n.to_string());
        [
            ("max_calls", self.max_calls, outer.max_calls),
            ("budget", self.budget, outer.budget),
        ]
        .into_iter()
        .find(|(_, inner, outer)| !tighter(*inner, *outer))
        .map(|(name, inner, outer)| {
            format!(
                "{name} {} is looser than the parent task's {}",
                show(inner),
                show(outer)
            )
        })
    }

    /// Combines two requested limits: the tighter of each.
    pub fn merge(&self, other: &Limits) -> Limits {
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        Limits {
            max_calls: min(self.max_calls, other.max_calls),
            budget: min(self.budget, other.budget),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Open,
    Completed,
    Failed,
    Revoked,
    Expired,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 5] = [
        TaskStatus::Open,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Revoked,
        TaskStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Open => "open",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Revoked => "revoked",
            TaskStatus::Expired => "expired",
        }
    }
}

impl std::str::FromStr for TaskStatus {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        TaskStatus::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                RuleError::invalid(
                    "task status",
                    format!("{s:?} (expected open, completed, failed, revoked or expired)"),
                )
            })
    }
}

/// How a task is ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Complete,
    Fail,
    Revoke,
}

impl Ending {
    pub fn status(self) -> TaskStatus {
        match self {
            Ending::Complete => TaskStatus::Completed,
            Ending::Fail => TaskStatus::Failed,
            Ending::Revoke => TaskStatus::Revoked,
        }
    }
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Task {
    pub id: TaskId,
    pub parent: Option<TaskId>,
    /// The task at the top of this delegation tree.
    pub root: TaskId,
    /// 0 for a task a human started; parent's depth + 1 for a delegation.
    pub depth: u32,
    pub purpose: String,
    /// The human on whose authority the whole chain acts.
    pub initiator: HumanId,
    pub assignee: AgentId,
    pub assignee_spiffe: SpiffeId,
    /// The agent that delegated this task (None when a human started it).
    pub delegator: Option<AgentId>,
    pub scope: Scope,
    pub limits: Limits,
    pub expires_at: Timestamp,
    /// Stored status; see [`Task::status_at`] for the effective one.
    pub status: TaskStatus,
    pub created_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub end_reason: Option<String>,
}

impl Task {
    /// The status as of `now`: an open task past its expiry is expired.
    pub fn status_at(&self, now: Timestamp) -> TaskStatus {
        match self.status {
            TaskStatus::Open if now >= self.expires_at => TaskStatus::Expired,
            s => s,
        }
    }

    /// May this task's credentials be used at `now`?
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.status_at(now) == TaskStatus::Open
    }

    /// The ending rule: only an open, unexpired task can end, and only once.
    pub fn check_end(&self, now: Timestamp) -> Result<(), RuleError> {
        match self.status_at(now) {
            TaskStatus::Open => Ok(()),
            s => Err(RuleError::Transition(format!(
                "task {} is already {}",
                self.id,
                s.as_str()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_only_tighten() {
        let none = Limits::default();
        let ten = Limits {
            max_calls: Some(10),
            ..Limits::default()
        };
        let five = Limits {
            max_calls: Some(5),
            ..Limits::default()
        };
        assert!(five.within(&ten) && ten.within(&none) && none.within(&none));
        assert!(!ten.within(&five));
        assert!(!none.within(&ten), "dropping a limit would widen the grant");
        let budget = |b| Limits {
            budget: Some(b),
            ..five.clone()
        };
        assert!(budget(500).within(&budget(1000)));
        let over = budget(1500).looser_than(&budget(1000)).unwrap();
        assert!(over.contains("budget 1500"), "{over}");
        let dropped = five.looser_than(&budget(1000)).unwrap();
        assert!(dropped.contains("budget unlimited"), "{dropped}");
        assert_eq!(budget(700).merge(&budget(300)).budget, Some(300));
        assert_eq!(five.merge(&budget(300)).budget, Some(300));
    }
}
