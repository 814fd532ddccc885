//! Which reported outcomes count, and why the others do not.
//!
//! An outcome is a claim; it counts only when the record behind it holds up:
//! a first report (not a retry), an attributable chain from a human through
//! every agent to an accountable owner, a task still open when it was
//! reported, at least one allowed action behind it and no refused one. The
//! checks run in a fixed order so each exception has exactly one kind.

use serde::{Deserialize, Serialize};

use crate::RuleError;
use crate::ids::OutcomeId;
use crate::task::TaskStatus;

/// The class of a reported outcome. Only `counted` adds to Return on AI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    Counted,
    /// A retry: the idempotency key was reported before.
    Duplicate,
    /// The task or credential was no longer valid (revoked, ended, expired)
    /// when the outcome was reported.
    AfterRevocation,
    /// The identity chain has a gap: an initiator or owner who is not an
    /// active human, or an agent that is missing.
    Unattributed,
    /// At least one action under the task was refused.
    OutOfScopeActions,
    /// No allowed action under the task stands behind the claim.
    Phantom,
}

impl Classification {
    pub const ALL: [Classification; 6] = [
        Classification::Counted,
        Classification::Duplicate,
        Classification::AfterRevocation,
        Classification::Unattributed,
        Classification::OutOfScopeActions,
        Classification::Phantom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Counted => "counted",
            Classification::Duplicate => "duplicate",
            Classification::AfterRevocation => "after_revocation",
            Classification::Unattributed => "unattributed",
            Classification::OutOfScopeActions => "out_of_scope_actions",
            Classification::Phantom => "phantom",
        }
    }

    /// What the class means, for reports and evidence packs.
    pub fn definition(self) -> &'static str {
        match self {
            Classification::Counted => {
                "first report of its idempotency key, complete identity chain, task open and valid when reported, at least one allowed action and no refused action under the task"
            }
            Classification::Duplicate => {
                "the idempotency key was already reported; the first report stands, the retry is never counted"
            }
            Classification::AfterRevocation => {
                "the task or its credential was revoked, ended or expired when the outcome was reported"
            }
            Classification::Unattributed => {
                "the chain from the human initiator through each agent to an accountable owner is incomplete"
            }
            Classification::OutOfScopeActions => {
                "at least one action recorded under the task (or a task delegated from it) was denied"
            }
            Classification::Phantom => {
                "no allowed action was recorded under the task: nothing authorised stands behind the claim"
            }
        }
    }
}

impl std::str::FromStr for Classification {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        Classification::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                RuleError::invalid(
                    "classification",
                    format!(
                        "{s:?} (expected counted, duplicate, after_revocation, unattributed, out_of_scope_actions or phantom)"
                    ),
                )
            })
    }
}

/// What the record says about a claim at the moment it is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The earlier outcome with the same idempotency key, if any.
    pub first_report: Option<OutcomeId>,
    /// The task's status at report time (expiry applied).
    pub task_status: TaskStatus,
    pub credential_revoked: bool,
    /// Gaps in the identity chain, each in words ("owner of agent x is deactivated").
    pub chain_gaps: Vec<String>,
    /// Decisions under the task and every task delegated from it.
    pub allowed_actions: u64,
    pub denied_actions: u64,
}

/// A classification with the sentence that explains it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Classified {
    pub classification: Classification,
    pub explanation: String,
}

/// Classifies a claim from its facts. Pure and total: every fact pattern
/// has exactly one answer, and `counted` is reached only when every check
/// passed (default: not counted).
pub fn classify(f: &Facts) -> Classified {
    let (classification, explanation) = if let Some(first) = f.first_report {
        (
            Classification::Duplicate,
            format!("retry of outcome {first}, which was reported first with this idempotency key"),
        )
    } else if f.task_status != TaskStatus::Open {
        (
            Classification::AfterRevocation,
            format!(
                "the task was {} when the outcome was reported",
                f.task_status.as_str()
            ),
        )
    } else if f.credential_revoked {
        (
            Classification::AfterRevocation,
            "the task credential was revoked when the outcome was reported".to_owned(),
        )
    } else if !f.chain_gaps.is_empty() {
        (Classification::Unattributed, f.chain_gaps.join("; "))
    } else if f.denied_actions > 0 {
        (
            Classification::OutOfScopeActions,
            format!(
                "{} of {} actions under the task were denied",
                f.denied_actions,
                f.denied_actions + f.allowed_actions
            ),
        )
    } else if f.allowed_actions == 0 {
        (
            Classification::Phantom,
            "no allowed action was recorded under the task".to_owned(),
        )
    } else {
        (
            Classification::Counted,
            format!(
                "{} allowed action(s), none denied; task open; chain complete",
                f.allowed_actions
            ),
        )
    };
    Classified {
        classification,
        explanation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn clean() -> Facts {
        Facts {
            first_report: None,
            task_status: TaskStatus::Open,
            credential_revoked: false,
            chain_gaps: vec![],
            allowed_actions: 3,
            denied_actions: 0,
        }
    }

    #[test]
    fn each_kind_has_its_trigger() {
        assert_eq!(classify(&clean()).classification, Classification::Counted);
        let cases: Vec<(Facts, Classification)> = vec![
            (
                Facts {
                    first_report: Some(OutcomeId::from_uuid(uuid::Uuid::nil())),
                    ..clean()
                },
                Classification::Duplicate,
            ),
            (
                Facts {
                    task_status: TaskStatus::Revoked,
                    ..clean()
                },
                Classification::AfterRevocation,
            ),
            (
                Facts {
                    credential_revoked: true,
                    ..clean()
                },
                Classification::AfterRevocation,
            ),
            (
                Facts {
                    chain_gaps: vec!["owner deactivated".into()],
                    ..clean()
                },
                Classification::Unattributed,
            ),
            (
                Facts {
                    denied_actions: 1,
                    ..clean()
                },
                Classification::OutOfScopeActions,
            ),
            (
                Facts {
                    allowed_actions: 0,
                    ..clean()
                },
                Classification::Phantom,
            ),
        ];
        for (facts, expected) in cases {
            let c = classify(&facts);
            assert_eq!(c.classification, expected, "{facts:?}");
            assert!(!c.explanation.is_empty());
        }
    }

    fn any_status() -> impl Strategy<Value = TaskStatus> {
        proptest::sample::select(TaskStatus::ALL.to_vec())
    }

    proptest! {
        /// Counted is reached only when every single condition holds: no
        /// combination of facts with any flaw is ever counted.
        #[test]
        fn counted_only_when_everything_holds(
            dup in any::<bool>(),
            status in any_status(),
            revoked in any::<bool>(),
            gaps in 0usize..3,
            allowed in 0u64..5,
            denied in 0u64..5,
        ) {
            let f = Facts {
                first_report: dup.then(|| OutcomeId::from_uuid(uuid::Uuid::nil())),
                task_status: status,
                credential_revoked: revoked,
                chain_gaps: (0..gaps).map(|i| format!("gap {i}")).collect(),
                allowed_actions: allowed,
                denied_actions: denied,
            };
            let clean = !dup && status == TaskStatus::Open && !revoked && gaps == 0
                && allowed > 0 && denied == 0;
            prop_assert_eq!(classify(&f).classification == Classification::Counted, clean);
        }
    }
}
