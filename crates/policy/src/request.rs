//! What a decision is asked about, as plain Rust, and its Cedar form.
//!
//! Callers (the server's decision pipeline, tests, the demo) fill in a
//! [`DecisionRequest`] from their own records; this module alone knows how
//! that becomes Cedar entities and a context record matching
//! `mandate.cedarschema`. Building both from typed fields is what keeps every
//! request conforming to the schema the policies were validated against, so
//! validation at push time holds at decision time.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use cedar_policy::{Context, Entities, Entity, EntityUid, Request, RestrictedExpression};
use mandate_core::agent::{Agent, AgentKind};
use mandate_core::ids::{HumanId, SpiffeId, TaskId};
use mandate_core::task::Task;
use mandate_core::time::Timestamp;
use serde::{Deserialize, Serialize};

use crate::schema::TYPES;

/// One agent of the delegation chain, as policies see it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AgentFacts {
    pub spiffe_id: SpiffeId,
    pub kind: AgentKind,
    pub owner: HumanId,
    pub tags: BTreeSet<String>,
}

impl From<&Agent> for AgentFacts {
    fn from(a: &Agent) -> Self {
        AgentFacts {
            spiffe_id: a.spiffe_id.clone(),
            kind: a.kind,
            owner: a.owner,
            tags: a.tags.clone(),
        }
    }
}

/// The task the request is made under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskFacts {
    pub id: TaskId,
    pub purpose: String,
    pub depth: u32,
}

impl From<&Task> for TaskFacts {
    fn from(t: &Task) -> Self {
        TaskFacts {
            id: t.id,
            purpose: t.purpose.clone(),
            depth: t.depth,
        }
    }
}

/// What the action is done to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceFacts {
    /// The resource string, as in task scopes (`erp:invoices/2026-01`).
    pub id: String,
    pub sensitivity: String,
    pub labels: BTreeSet<String>,
}

/// The state of a human approval bound to exactly this request.
///
/// Binding (same task, action, resource and context digest; unexpired;
/// single use) is the caller's job: this crate trusts what it is told.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    #[default]
    None,
    Approved,
    Denied,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::None => "none",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
        }
    }
}

/// Facts about the moment of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestContext {
    /// The tool called, when the action goes through one.
    pub tool: Option<String>,
    pub environment: String,
    pub data_sensitivity: String,
    pub time: Timestamp,
    /// 0 to 100; larger values are treated as 100 (the riskiest, not an error
    /// that would skip a forbid).
    pub risk_score: u8,
    pub approval: ApprovalState,
    /// Money moved, in minor units, when the action moves money.
    pub amount: Option<i64>,
}

/// Everything a policy decision is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRequest {
    /// The human on whose authority the whole chain acts.
    pub initiator: HumanId,
    /// The agents that delegated down to `agent`, root first (empty when the
    /// human gave the task to `agent` directly).
    pub delegators: Vec<AgentFacts>,
    /// The acting agent: Cedar's `principal`.
    pub agent: AgentFacts,
    pub task: TaskFacts,
    /// The Mandate action, e.g. `payments.initiate`: Cedar's
    /// `Mandate::Action::"payments.initiate"`.
    pub action: String,
    pub resource: ResourceFacts,
    pub context: RequestContext,
}

const MAX_RISK: u8 = 100;

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn long(n: i64) -> RestrictedExpression {
    RestrictedExpression::new_long(n)
}

fn uid(u: EntityUid) -> RestrictedExpression {
    RestrictedExpression::new_entity_uid(u)
}

fn strings<'a>(items: impl IntoIterator<Item = &'a String>) -> RestrictedExpression {
    RestrictedExpression::new_set(items.into_iter().map(|s| string(s)))
}

impl DecisionRequest {
    /// The acting agent last, after its delegators.
    pub fn chain(&self) -> impl Iterator<Item = &AgentFacts> {
        self.delegators.iter().chain(std::iter::once(&self.agent))
    }

    /// The Cedar request and entities, with the action entity inside
    /// `action_parents` (the groups containing it).
    pub(crate) fn to_cedar(
        &self,
        action_parents: &[EntityUid],
    ) -> Result<(Request, Arc<Entities>), String> {
        let t = &*TYPES;
        let human = |h: &HumanId| t.uid(&t.human, &h.to_string());
        let agent_uid = |a: &AgentFacts| t.uid(&t.agent, a.spiffe_id.as_str());
        let c = &self.context;

        let task_uid = t.uid(&t.task, &self.task.id.to_string());
        let resource_uid = t.uid(&t.resource, &self.resource.id);
        let action_uid = t.uid(&t.action, &self.action);
        let entities = crate::entities::whole(
            self,
            action_parents,
            || self.base_entities(&task_uid),
            |base| self.add_own(base, &resource_uid, &action_uid, action_parents),
        )?;

        let secs = c.time.as_secs();
        let chain_ids: Vec<String> = self
            .chain()
            .map(|a| a.spiffe_id.as_str().to_owned())
            .collect();
        let mut pairs: Vec<(String, RestrictedExpression)> = vec![
            ("environment".into(), string(&c.environment)),
            ("data_sensitivity".into(), string(&c.data_sensitivity)),
            ("time".into(), long(secs)),
            ("hour".into(), long(secs.rem_euclid(86_400) / 3_600)),
            (
                "risk_score".into(),
                long(i64::from(c.risk_score.min(MAX_RISK))),
            ),
            ("purpose".into(), string(&self.task.purpose)),
            (
                "chain_depth".into(),
                long(i64::try_from(self.delegators.len()).unwrap_or(i64::MAX)),
            ),
            ("chain".into(), strings(&chain_ids)),
            ("approval".into(), string(c.approval.as_str())),
            ("task".into(), uid(task_uid)),
            ("initiator".into(), uid(human(&self.initiator))),
        ];
        if let Some(tool) = &c.tool {
            pairs.push(("tool".into(), string(tool)));
        }
        if let Some(amount) = c.amount {
            pairs.push(("amount".into(), long(amount)));
        }
        let context = Context::from_pairs(pairs).map_err(|e| e.to_string())?;

        let request = Request::new(
            agent_uid(&self.agent),
            action_uid,
            resource_uid,
            context,
            None,
        )
        .map_err(|e| e.to_string())?;
        Ok((request, entities))
    }

    /// `base` with this request's resource (inside its environment and tool)
    /// and action (inside its groups) added.
    fn add_own(
        &self,
        base: Entities,
        resource_uid: &EntityUid,
        action_uid: &EntityUid,
        action_parents: &[EntityUid],
    ) -> Result<Entities, String> {
        let t = &*TYPES;
        let c = &self.context;
        let mut resource_parents: HashSet<EntityUid> =
            [t.uid(&t.environment, &c.environment)].into();
        if let Some(tool) = &c.tool {
            resource_parents.insert(t.uid(&t.tool, tool));
        }
        let resource = Entity::new(
            resource_uid.clone(),
            [
                ("path".to_owned(), string(&self.resource.id)),
                ("sensitivity".to_owned(), string(&self.resource.sensitivity)),
                ("labels".to_owned(), strings(&self.resource.labels)),
            ]
            .into(),
            resource_parents,
        )
        .map_err(|e| e.to_string())?;
        let action =
            Entity::new_no_attrs(action_uid.clone(), action_parents.iter().cloned().collect());
        // Only the resource and the action are new: Cedar repairs the
        // transitive closure for them alone.
        base.add_entities([resource, action], None)
            .map_err(|e| e.to_string())
    }

    /// The entities that stay the same over a task's calls: the agents of the
    /// chain and the task. Humans, environments and tools have no attributes
    /// and no parents in the schema, so they are left out: Cedar compares
    /// their uids and follows `in` through the resource's own parents all the
    /// same, and the transitive closure has fewer nodes to walk.
    fn base_entities(&self, task_uid: &EntityUid) -> Result<Entities, String> {
        let t = &*TYPES;
        let human = |h: &HumanId| t.uid(&t.human, &h.to_string());
        let mut entities: Vec<Entity> = Vec::new();
        let mut seen: HashSet<EntityUid> = HashSet::new();
        for a in self.chain() {
            let e = crate::entities::agent(a, || {
                Entity::new(
                    t.uid(&t.agent, a.spiffe_id.as_str()),
                    [
                        ("spiffe_id".to_owned(), string(a.spiffe_id.as_str())),
                        ("kind".to_owned(), string(a.kind.as_str())),
                        ("owner".to_owned(), uid(human(&a.owner))),
                        ("tags".to_owned(), strings(&a.tags)),
                    ]
                    .into(),
                    HashSet::new(),
                )
                .map_err(|e| e.to_string())
            })?;
            // The same agent twice in a chain is one entity; Cedar refuses
            // duplicates.
            if seen.insert(e.uid()) {
                entities.push(e);
            }
        }
        entities.push(
            Entity::new(
                task_uid.clone(),
                [
                    ("purpose".to_owned(), string(&self.task.purpose)),
                    ("depth".to_owned(), long(i64::from(self.task.depth))),
                    ("initiator".to_owned(), uid(human(&self.initiator))),
                ]
                .into(),
                HashSet::new(),
            )
            .map_err(|e| e.to_string())?,
        );
        Entities::from_entities(entities, None).map_err(|e| e.to_string())
    }
}
