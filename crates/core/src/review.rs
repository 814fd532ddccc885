//! Access reviews: an owner re-certifies the ceiling of each agent they own.
//!
//! A campaign lists the owner's agents with what each was actually allowed to
//! do over a window; for each, the owner keeps the ceiling, reduces it (the
//! proposal is the part that was used) or retires the agent. A reduction can
//! only narrow. Items left undecided past the deadline are escalated: posture
//! lists them as findings until someone decides.

use serde::{Deserialize, Serialize};

use crate::RuleError;
use crate::agent::{Agent, AgentStatus};
use crate::human::{Human, check_free_text};
use crate::ids::{AgentId, AgentName, HumanId, ReviewId};
use crate::inventory::InventoryItem;
use crate::scope::{Grant, Scope};
use crate::time::Timestamp;

const DAY_MS: i64 = 86_400_000;
/// A campaign that runs longer than this is not a review.
pub const MAX_DEADLINE_DAYS: u32 = 90;
pub const MAX_WINDOW_DAYS: u32 = 365;

/// What the owner decided for one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "decision", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReviewDecision {
    /// The ceiling stays as it is.
    Keep,
    /// The ceiling becomes this strictly narrower scope.
    Reduce { ceiling: Scope },
    /// The agent is retired: its tasks revoked, its keys removed.
    Retire,
}

impl ReviewDecision {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReviewDecision::Keep => "keep",
            ReviewDecision::Reduce { .. } => "reduce",
            ReviewDecision::Retire => "retire",
        }
    }
}

/// A decision as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Decided {
    #[serde(flatten)]
    pub decision: ReviewDecision,
    pub by: HumanId,
    pub at: Timestamp,
    pub note: String,
    /// Decided after the deadline, once the item had been escalated.
    pub late: bool,
}

/// One agent under review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewItem {
    pub agent: AgentId,
    pub name: AgentName,
    /// The ceiling when the review started.
    pub ceiling: Scope,
    /// The grants of the ceiling used within the window: the proposed reduction.
    pub proposed: Scope,
    /// The grants not used within the window.
    pub unused: Vec<Grant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<Decided>,
}

/// Where a review stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    Open,
    /// Past its deadline with items undecided.
    Escalated,
    Complete,
}

/// A campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Review {
    pub id: ReviewId,
    pub owner: HumanId,
    pub started_at: Timestamp,
    pub deadline: Timestamp,
    /// Use over this many days before the start made the proposals.
    pub window_days: u32,
    pub items: Vec<ReviewItem>,
}

/// The grants of a ceiling that were used since a time, and those that were not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CeilingUse {
    pub used: Vec<Grant>,
    pub unused: Vec<Grant>,
}

impl InventoryItem {
    /// Splits the agent's ceiling by whether each grant allowed something
    /// since `since`. Over-privilege findings and review proposals both come
    /// from here, so they always agree.
    pub fn ceiling_use(&self, since: Timestamp) -> CeilingUse {
        let (used, unused) = self.agent.ceiling.grants().cloned().partition(|g| {
            self.used
                .iter()
                .any(|u| u.last_used >= since && g.allows(&u.action, &u.resource))
        });
        CeilingUse { used, unused }
    }
}

/// What starting a campaign takes.
#[derive(Debug, Clone, Copy)]
pub struct Campaign {
    pub id: ReviewId,
    pub started_at: Timestamp,
    pub deadline_days: u32,
    pub window_days: u32,
}

impl Review {
    /// Opens a campaign over every agent `owner` holds that is not retired.
    pub fn start(
        c: Campaign,
        owner: &Human,
        agents: &[InventoryItem],
    ) -> Result<Review, RuleError> {
        if c.deadline_days == 0 || c.deadline_days > MAX_DEADLINE_DAYS {
            return Err(RuleError::invalid(
                "deadline",
                format!("must be 1 to {MAX_DEADLINE_DAYS} days"),
            ));
        }
        if c.window_days == 0 || c.window_days > MAX_WINDOW_DAYS {
            return Err(RuleError::invalid(
                "window",
                format!("must be 1 to {MAX_WINDOW_DAYS} days"),
            ));
        }
        owner.check_may_own_agents()?;
        let since = c.started_at.plus_millis(-i64::from(c.window_days) * DAY_MS);
        let items: Vec<ReviewItem> = agents
            .iter()
            .filter(|i| i.agent.owner == owner.id && i.agent.status != AgentStatus::Retired)
            .map(|i| {
                let split = i.ceiling_use(since);
                ReviewItem {
                    agent: i.agent.id,
                    name: i.agent.name.clone(),
                    ceiling: i.agent.ceiling.clone(),
                    // Grants come from a valid scope, so a subset of them is one too.
                    proposed: Scope::new(split.used).unwrap_or_else(|_| Scope::empty()),
                    unused: split.unused,
                    decided: None,
                }
            })
            .collect();
        if items.is_empty() {
            return Err(RuleError::Conflict(format!(
                "{} owns no agent that is not retired: there is nothing to review",
                owner.display_name
            )));
        }
        Ok(Review {
            id: c.id,
            owner: owner.id,
            started_at: c.started_at,
            deadline: c
                .started_at
                .plus_millis(i64::from(c.deadline_days) * DAY_MS),
            window_days: c.window_days,
            items,
        })
    }

    pub fn item(&self, agent: AgentId) -> Option<&ReviewItem> {
        self.items.iter().find(|i| i.agent == agent)
    }

    /// Items still undecided after the deadline.
    pub fn overdue(&self, now: Timestamp) -> impl Iterator<Item = &ReviewItem> {
        let past = now > self.deadline;
        self.items
            .iter()
            .filter(move |i| past && i.decided.is_none())
    }

    pub fn status(&self, now: Timestamp) -> ReviewStatus {
        if self.items.iter().all(|i| i.decided.is_some()) {
            ReviewStatus::Complete
        } else if now > self.deadline {
            ReviewStatus::Escalated
        } else {
            ReviewStatus::Open
        }
    }

    /// Only the owner re-certifies their agents: the point of the review is
    /// that the accountable human looks at each one.
    pub fn may_decide(&self, who: &Human) -> bool {
        who.id == self.owner
    }

    /// Checks one decision against the review and the agent as it is now.
    pub fn check_decision(
        &self,
        agent: &Agent,
        decision: &ReviewDecision,
        note: &str,
    ) -> Result<(), RuleError> {
        let item = self.item(agent.id).ok_or_else(|| {
            RuleError::invalid(
                "agent",
                format!("{} is not part of review {}", agent.name, self.id),
            )
        })?;
        if item.decided.is_some() {
            return Err(RuleError::Conflict(format!(
                "{} was already decided in review {}",
                agent.name, self.id
            )));
        }
        if agent.status == AgentStatus::Retired {
            return Err(RuleError::Transition(format!(
                "{} has been retired since the review started",
                agent.name
            )));
        }
        check_free_text("note", note, 2000)?;
        if let ReviewDecision::Reduce { ceiling } = decision {
            if ceiling.is_empty() {
                return Err(RuleError::invalid(
                    "ceiling",
                    "a reduction keeps at least one grant; to remove them all, retire the agent",
                ));
            }
            if let Err(g) = ceiling.check_within(&agent.ceiling) {
                return Err(RuleError::invalid(
                    "ceiling",
                    format!("{g} is not within the current ceiling: a review only narrows"),
                ));
            }
            if agent.ceiling.check_within(ceiling).is_ok() {
                return Err(RuleError::invalid(
                    "ceiling",
                    "it allows all the current ceiling does: decide keep instead",
                ));
            }
        }
        Ok(())
    }

    /// Records a checked decision.
    pub fn record(&mut self, agent: AgentId, decided: Decided) {
        if let Some(i) = self.items.iter_mut().find(|i| i.agent == agent) {
            i.decided = Some(decided);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::agent::AgentKind;
    use crate::human::{HumanRole, HumanStatus};
    use crate::ids::SpiffeId;
    use crate::inventory::Usage;

    const T0: i64 = 1_800_000_000_000;

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn scope(grants: &[(&str, &str)]) -> Scope {
        Scope::new(grants.iter().map(|(a, r)| Grant::new(a, r).unwrap())).unwrap()
    }

    fn human(n: u128, status: HumanStatus) -> Human {
        Human {
            id: HumanId::from_uuid(uuid::Uuid::from_u128(n)),
            issuer: "https://idp.example".into(),
            subject: format!("h{n}"),
            display_name: format!("human {n}"),
            email: None,
            roles: BTreeSet::from([HumanRole::Approver]),
            status,
            created_at: ts(T0),
            updated_at: ts(T0),
        }
    }

    fn item(n: u128, owner: &Human, ceiling: Scope, used: &[(&str, &str, i64)]) -> InventoryItem {
        let name = AgentName::parse(&format!("agent-{n}")).unwrap();
        let td = crate::ids::TrustDomain::parse("acme.example").unwrap();
        InventoryItem {
            agent: Agent {
                id: AgentId::from_uuid(uuid::Uuid::from_u128(1000 + n)),
                spiffe_id: SpiffeId::for_agent(&td, AgentKind::Agent, &name),
                name,
                kind: AgentKind::Agent,
                owner: owner.id,
                orphaned: false,
                description: "d".into(),
                ceiling,
                keys: vec![],
                tools: vec![],
                data_sources: vec![],
                tags: BTreeSet::new(),
                status: AgentStatus::Active,
                created_at: ts(T0),
                updated_at: ts(T0),
            },
            delegators: vec![],
            used: used
                .iter()
                .map(|(a, r, at)| Usage {
                    action: (*a).into(),
                    resource: (*r).into(),
                    calls: 1,
                    first_used: ts(*at),
                    last_used: ts(*at),
                })
                .collect(),
            last_activity: None,
            live_tasks: 0,
            live_credentials: 0,
        }
    }

    fn campaign(at: i64) -> Campaign {
        Campaign {
            id: ReviewId::from_uuid(uuid::Uuid::from_u128(77)),
            started_at: ts(at),
            deadline_days: 14,
            window_days: 30,
        }
    }

    #[test]
    fn proposal_is_the_part_used_within_the_window() {
        let alice = human(1, HumanStatus::Active);
        let now = T0 + 100 * DAY_MS;
        let ceiling = scope(&[
            ("invoice.read", "erp:invoices/*"),
            ("payments.*", "erp:vendors/*"),
            ("po.read", "erp:po/*"),
        ]);
        let agents = [item(
            1,
            &alice,
            ceiling,
            &[
                ("invoice.read", "erp:invoices/7", now - DAY_MS),
                // Used, but before the window: not usage for this review.
                ("po.read", "erp:po/1", now - 40 * DAY_MS),
            ],
        )];
        let r = Review::start(campaign(now), &alice, &agents).unwrap();
        let i = &r.items[0];
        assert_eq!(i.proposed, scope(&[("invoice.read", "erp:invoices/*")]));
        let unused: Vec<String> = i.unused.iter().map(ToString::to_string).collect();
        assert_eq!(
            unused,
            ["payments.* on erp:vendors/*", "po.read on erp:po/*"]
        );
        assert_eq!(r.deadline, ts(now + 14 * DAY_MS));
    }

    #[test]
    fn only_the_owners_live_agents_are_reviewed() {
        let alice = human(1, HumanStatus::Active);
        let bob = human(2, HumanStatus::Active);
        let mut retired = item(2, &alice, scope(&[("a", "r:*")]), &[]);
        retired.agent.status = AgentStatus::Retired;
        let agents = [
            item(1, &alice, scope(&[("a", "r:*")]), &[]),
            retired,
            item(3, &bob, scope(&[("a", "r:*")]), &[]),
        ];
        let r = Review::start(campaign(T0), &alice, &agents).unwrap();
        assert_eq!(r.items.len(), 1);
        assert_eq!(r.items[0].name.as_str(), "agent-1");
        let carol = human(3, HumanStatus::Active);
        assert!(matches!(
            Review::start(campaign(T0), &carol, &agents),
            Err(RuleError::Conflict(_))
        ));
        let gone = human(1, HumanStatus::Deactivated);
        assert!(Review::start(campaign(T0), &gone, &agents).is_err());
        let mut c = campaign(T0);
        c.deadline_days = 0;
        assert!(Review::start(c, &alice, &agents).is_err());
        c.deadline_days = MAX_DEADLINE_DAYS + 1;
        assert!(Review::start(c, &alice, &agents).is_err());
    }

    #[test]
    fn decisions_are_checked_against_the_agent_as_it_is_now() {
        let alice = human(1, HumanStatus::Active);
        let ceiling = scope(&[("invoice.read", "erp:invoices/*"), ("po.read", "erp:po/*")]);
        let agents = [item(1, &alice, ceiling.clone(), &[])];
        let mut r = Review::start(campaign(T0), &alice, &agents).unwrap();
        let a = &agents[0].agent;
        let reduce = |s| ReviewDecision::Reduce { ceiling: s };

        assert!(r.check_decision(a, &ReviewDecision::Keep, "ok").is_ok());
        assert!(
            r.check_decision(a, &reduce(scope(&[("po.read", "erp:po/1")])), "n")
                .is_ok()
        );
        // Widening, equal, empty, blank note: refused.
        let wider = reduce(scope(&[("invoice.*", "erp:invoices/*")]));
        let err = r.check_decision(a, &wider, "n").unwrap_err().to_string();
        assert!(err.contains("only narrows"), "{err}");
        assert!(r.check_decision(a, &reduce(ceiling.clone()), "n").is_err());
        assert!(r.check_decision(a, &reduce(Scope::empty()), "n").is_err());
        assert!(r.check_decision(a, &ReviewDecision::Keep, " ").is_err());
        // An agent outside the review, a retired agent, a second decision.
        let other = item(9, &alice, ceiling.clone(), &[]).agent;
        assert!(
            r.check_decision(&other, &ReviewDecision::Keep, "n")
                .is_err()
        );
        let mut gone = a.clone();
        gone.status = AgentStatus::Retired;
        assert!(matches!(
            r.check_decision(&gone, &ReviewDecision::Retire, "n"),
            Err(RuleError::Transition(_))
        ));
        r.record(
            a.id,
            Decided {
                decision: ReviewDecision::Keep,
                by: alice.id,
                at: ts(T0),
                note: "n".into(),
                late: false,
            },
        );
        assert!(matches!(
            r.check_decision(a, &ReviewDecision::Retire, "n"),
            Err(RuleError::Conflict(_))
        ));
        assert_eq!(r.status(ts(T0 + 100 * DAY_MS)), ReviewStatus::Complete);
    }

    #[test]
    fn undecided_items_are_escalated_after_the_deadline_only() {
        let alice = human(1, HumanStatus::Active);
        let agents = [
            item(1, &alice, scope(&[("a", "r:*")]), &[]),
            item(2, &alice, scope(&[("a", "r:*")]), &[]),
        ];
        let mut r = Review::start(campaign(T0), &alice, &agents).unwrap();
        assert_eq!(r.status(r.deadline), ReviewStatus::Open);
        assert_eq!(r.overdue(r.deadline).count(), 0);
        let after = r.deadline.plus_millis(1);
        assert_eq!(r.status(after), ReviewStatus::Escalated);
        assert_eq!(r.overdue(after).count(), 2);
        r.record(
            agents[0].agent.id,
            Decided {
                decision: ReviewDecision::Keep,
                by: alice.id,
                at: after,
                note: "n".into(),
                late: true,
            },
        );
        let left: Vec<_> = r.overdue(after).map(|i| i.name.as_str()).collect();
        assert_eq!(left, ["agent-2"]);
        assert!(r.may_decide(&alice) && !r.may_decide(&human(2, HumanStatus::Active)));
    }

    fn grant() -> impl Strategy<Value = Grant> {
        let seg = prop::sample::select(vec!["a", "b", "*"]);
        (seg.clone(), seg.clone(), seg).prop_map(|(a, r1, r2)| {
            let action = if a == "*" {
                "x.*".to_string()
            } else {
                format!("x.{a}")
            };
            let resource = if r1 == "*" {
                "r:*".to_string()
            } else {
                format!("r:{r1}/{r2}")
            };
            Grant::new(&action, &resource).unwrap()
        })
    }

    proptest! {
        /// Whatever reduction is asked for, an accepted one allows nothing
        /// the current ceiling does not, and takes something away.
        #[test]
        fn an_accepted_reduction_only_narrows(
            ceiling in prop::collection::btree_set(grant(), 1..5),
            asked in prop::collection::btree_set(grant(), 1..5),
            probe_a in prop::sample::select(vec!["x.a", "x.b", "x.c"]),
            probe_r in prop::sample::select(vec!["r:a/a", "r:b/*", "r:a/b", "r:c"]),
        ) {
            let alice = human(1, HumanStatus::Active);
            let ceiling = Scope::new(ceiling).unwrap();
            let asked = Scope::new(asked).unwrap();
            let agents = [item(1, &alice, ceiling.clone(), &[])];
            let r = Review::start(campaign(T0), &alice, &agents).unwrap();
            let d = ReviewDecision::Reduce { ceiling: asked.clone() };
            if r.check_decision(&agents[0].agent, &d, "n").is_ok() {
                prop_assert!(!asked.allows(probe_a, probe_r) || ceiling.allows(probe_a, probe_r));
                prop_assert!(ceiling.check_within(&asked).is_err());
            }
        }
    }
}
