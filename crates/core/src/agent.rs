//! Agents (non-human identities): kinds, lifecycle, ownership and keys.

use std::collections::BTreeSet;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::RuleError;
use crate::human::check_free_text;
use crate::ids::{AgentId, AgentName, HumanId, SpiffeId};
use crate::jwk::Ed25519Jwk;
use crate::scope::Scope;
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    Agent,
    Model,
    Pipeline,
    Service,
}

impl AgentKind {
    pub const ALL: [AgentKind; 4] = [
        AgentKind::Agent,
        AgentKind::Model,
        AgentKind::Pipeline,
        AgentKind::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::Agent => "agent",
            AgentKind::Model => "model",
            AgentKind::Pipeline => "pipeline",
            AgentKind::Service => "service",
        }
    }
}

impl FromStr for AgentKind {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        AgentKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                RuleError::invalid(
                    "agent kind",
                    format!("{s:?} (expected agent, model, pipeline or service)"),
                )
            })
    }
}

/// `active <-> suspended -> retired`; retired is terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Active,
    Suspended,
    Retired,
}

/// What an operator asks of an agent's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Suspend,
    Resume,
    Retire,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Suspended => "suspended",
            AgentStatus::Retired => "retired",
        }
    }

    /// The lifecycle rule. Retiring is allowed from active or suspended;
    /// nothing leaves retired, so a retired identity never authenticates again.
    pub fn apply(self, op: Lifecycle) -> Result<AgentStatus, RuleError> {
        use AgentStatus::*;
        match (self, op) {
            (Active, Lifecycle::Suspend) => Ok(Suspended),
            (Suspended, Lifecycle::Resume) => Ok(Active),
            (Active | Suspended, Lifecycle::Retire) => Ok(Retired),
            (Retired, _) => Err(RuleError::Transition(
                "the agent is retired; retirement is permanent (register a new agent instead)"
                    .into(),
            )),
            (Suspended, Lifecycle::Suspend) => Err(RuleError::Transition(
                "the agent is already suspended".into(),
            )),
            (Active, Lifecycle::Resume) => {
                Err(RuleError::Transition("the agent is already active".into()))
            }
        }
    }
}

impl FromStr for AgentStatus {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        [
            AgentStatus::Active,
            AgentStatus::Suspended,
            AgentStatus::Retired,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| {
            RuleError::invalid(
                "agent status",
                format!("{s:?} (expected active, suspended or retired)"),
            )
        })
    }
}

/// A public key an agent proves itself with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttestationKey {
    pub kid: String,
    pub jwk: Ed25519Jwk,
    pub created_at: Timestamp,
}

/// An agent as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Agent {
    pub id: AgentId,
    pub name: AgentName,
    pub kind: AgentKind,
    pub spiffe_id: SpiffeId,
    pub owner: HumanId,
    /// True while the owner is deactivated: nobody is accountable for it.
    pub orphaned: bool,
    pub description: String,
    pub ceiling: Scope,
    pub keys: Vec<AttestationKey>,
    pub tools: Vec<String>,
    pub data_sources: Vec<String>,
    pub tags: BTreeSet<String>,
    pub status: AgentStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A registration request, checked by [`NewAgent::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    pub name: AgentName,
    pub kind: AgentKind,
    pub owner: HumanId,
    pub description: String,
    /// The most this agent may ever be granted.
    pub ceiling: Scope,
    #[serde(default)]
    pub keys: Vec<Ed25519Jwk>,
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub data_sources: Vec<String>,
    #[serde(default)]
    pub tags: BTreeSet<String>,
}

pub const MAX_KEYS: usize = 8;
const MAX_LIST: usize = 64;

impl NewAgent {
    pub fn validate(&self) -> Result<(), RuleError> {
        check_free_text("description", &self.description, 1024)?;
        check_keys(&self.keys)?;
        for (what, list) in [("tools", &self.tools), ("data_sources", &self.data_sources)] {
            if list.len() > MAX_LIST {
                return Err(RuleError::invalid(
                    what,
                    format!("at most {MAX_LIST} entries"),
                ));
            }
            for item in list {
                check_free_text(what, item, 128)?;
            }
        }
        if self.tags.len() > MAX_LIST {
            return Err(RuleError::invalid(
                "tags",
                format!("at most {MAX_LIST} tags"),
            ));
        }
        for t in &self.tags {
            check_tag(t)?;
        }
        Ok(())
    }
}

/// Tags are filter keys, so they are kept to a simple, unambiguous alphabet.
pub fn check_tag(t: &str) -> Result<(), RuleError> {
    let ok = !t.is_empty()
        && t.len() <= 64
        && t.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | ':' | '=')
        });
    if ok {
        Ok(())
    } else {
        Err(RuleError::invalid(
            "tag",
            format!("{t:?}: 1 to 64 of a-z 0-9 - _ . : ="),
        ))
    }
}

fn check_keys(keys: &[Ed25519Jwk]) -> Result<(), RuleError> {
    if keys.len() > MAX_KEYS {
        return Err(RuleError::invalid(
            "keys",
            format!("at most {MAX_KEYS} keys"),
        ));
    }
    let mut seen = BTreeSet::new();
    for k in keys {
        if !seen.insert(k.kid()) {
            return Err(RuleError::Conflict(format!(
                "key id {:?} appears twice",
                k.kid()
            )));
        }
    }
    Ok(())
}

impl Agent {
    /// May `key` be added? Key ids are unique per agent and there is a cap,
    /// so rotation means add-then-remove, never an unbounded pile of keys.
    pub fn check_add_key(&self, key: &Ed25519Jwk) -> Result<(), RuleError> {
        self.check_not_retired()?;
        if self
            .keys
            .iter()
            .any(|k| k.kid == key.kid() || k.jwk.thumbprint() == key.thumbprint())
        {
            return Err(RuleError::Conflict(format!(
                "the agent already has key {:?}",
                key.kid()
            )));
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(RuleError::Conflict(format!(
                "the agent already has {MAX_KEYS} keys; remove one first"
            )));
        }
        Ok(())
    }

    pub fn check_remove_key(&self, kid: &str) -> Result<(), RuleError> {
        self.check_not_retired()?;
        if !self.keys.iter().any(|k| k.kid == kid) {
            return Err(RuleError::invalid(
                "kid",
                format!("the agent has no key {kid:?}"),
            ));
        }
        Ok(())
    }

    /// Ownership moves only to an active human, and never for a retired agent.
    pub fn check_transfer(&self, new_owner: &crate::human::Human) -> Result<(), RuleError> {
        self.check_not_retired()?;
        new_owner.check_may_own_agents()?;
        if new_owner.id == self.owner && !self.orphaned {
            return Err(RuleError::Conflict(
                "the agent is already owned by that human".into(),
            ));
        }
        Ok(())
    }

    fn check_not_retired(&self) -> Result<(), RuleError> {
        match self.status {
            AgentStatus::Retired => Err(RuleError::Transition(
                "the agent is retired and can no longer change".into(),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AgentStatus::*;
    use Lifecycle::*;

    #[test]
    fn lifecycle_table() {
        assert_eq!(Active.apply(Suspend), Ok(Suspended));
        assert_eq!(Suspended.apply(Resume), Ok(Active));
        assert_eq!(Active.apply(Retire), Ok(Retired));
        assert_eq!(Suspended.apply(Retire), Ok(Retired));
        assert!(Active.apply(Resume).is_err());
        assert!(Suspended.apply(Suspend).is_err());
    }

    #[test]
    fn retired_is_terminal() {
        for op in [Suspend, Resume, Retire] {
            assert!(Retired.apply(op).is_err());
        }
    }

    #[test]
    fn tags_are_restricted() {
        check_tag("team:finance").unwrap();
        for bad in ["", "Team", "a b", &"t".repeat(65)] {
            assert!(check_tag(bad).is_err());
        }
    }
}
