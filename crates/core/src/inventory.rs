//! The register of what exists: every agent with who answers for it, who
//! delegates to it, what it actually did and what it holds now.

use serde::{Deserialize, Serialize};

use crate::agent::Agent;
use crate::ids::{AgentId, HumanId};
use crate::time::Timestamp;

/// An action on a resource the agent was allowed, and how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    pub action: String,
    pub resource: String,
    pub calls: u64,
    pub first_used: Timestamp,
    pub last_used: Timestamp,
}

/// Who gave the agent work: a human starting a task, or an agent
/// delegating a subtask.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Delegator {
    Human(HumanId),
    Agent(AgentId),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DelegatedBy {
    pub by: Delegator,
    /// Tasks it gave this agent.
    pub tasks: u64,
}

/// One agent in the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InventoryItem {
    /// The registration: owner, kind, status, tags, ceiling, keys with their creation times.
    pub agent: Agent,
    pub delegators: Vec<DelegatedBy>,
    /// What it was allowed to do, most recent first.
    pub used: Vec<Usage>,
    /// Its latest allowed action or task, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<Timestamp>,
    /// Open tasks not past their expiry.
    pub live_tasks: u64,
    /// Credentials neither revoked nor expired.
    pub live_credentials: u64,
}
