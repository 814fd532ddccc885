//! Human principals: the people agents act for and are owned by.
//!
//! Mandate does not hold passwords: a human is the subject of an external
//! identity provider, identified by (issuer, subject).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::RuleError;
use crate::ids::HumanId;
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HumanStatus {
    Active,
    /// Left the organisation or lost their role. Terminal: their agents stay
    /// orphaned until ownership moves to an active human.
    Deactivated,
}

impl HumanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HumanStatus::Active => "active",
            HumanStatus::Deactivated => "deactivated",
        }
    }
    pub fn parse(s: &str) -> Result<Self, RuleError> {
        match s {
            "active" => Ok(HumanStatus::Active),
            "deactivated" => Ok(HumanStatus::Deactivated),
            _ => Err(RuleError::invalid(
                "human status",
                format!("{s:?} (expected active or deactivated)"),
            )),
        }
    }
}

/// What a human may do in Mandate beyond owning agents and starting tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HumanRole {
    /// May answer approval requests (never for tasks they initiated).
    Approver,
    /// May read Return-on-AI reports and export evidence packs.
    Auditor,
    /// Sees everything in the web console (inventory, lineage, posture, the
    /// audit log). Admin API calls still need the admin token.
    Admin,
}

impl HumanRole {
    pub fn as_str(self) -> &'static str {
        match self {
            HumanRole::Approver => "approver",
            HumanRole::Auditor => "auditor",
            HumanRole::Admin => "admin",
        }
    }
}

/// A human as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Human {
    pub id: HumanId,
    pub issuer: String,
    pub subject: String,
    pub display_name: String,
    pub email: Option<String>,
    pub roles: BTreeSet<HumanRole>,
    pub status: HumanStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Human {
    /// The rule behind "an agent cannot exist without an active owner".
    pub fn check_may_own_agents(&self) -> Result<(), RuleError> {
        match self.status {
            HumanStatus::Active => Ok(()),
            HumanStatus::Deactivated => Err(RuleError::Transition(format!(
                "human {} ({}) is deactivated and cannot own agents",
                self.id, self.display_name
            ))),
        }
    }

    pub fn deactivate(&self) -> Result<HumanStatus, RuleError> {
        match self.status {
            HumanStatus::Active => Ok(HumanStatus::Deactivated),
            HumanStatus::Deactivated => Err(RuleError::Transition(format!(
                "human {} is already deactivated",
                self.id
            ))),
        }
    }
}

/// A validated registration request for a human.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewHuman {
    /// The external identity provider's issuer URL (`iss`).
    pub issuer: String,
    /// The subject at that issuer (`sub`).
    pub subject: String,
    pub display_name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub roles: BTreeSet<HumanRole>,
}

pub(crate) fn check_free_text(what: &'static str, s: &str, max: usize) -> Result<(), RuleError> {
    if s.trim().is_empty() || s.len() > max {
        return Err(RuleError::invalid(
            what,
            format!("must be 1 to {max} characters and not blank"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(RuleError::invalid(
            what,
            "control characters are not allowed",
        ));
    }
    Ok(())
}

impl NewHuman {
    pub fn validate(&self) -> Result<(), RuleError> {
        check_free_text("issuer", &self.issuer, 255)?;
        if !(self.issuer.starts_with("https://") || self.issuer.starts_with("http://"))
            || self.issuer.contains(char::is_whitespace)
        {
            return Err(RuleError::invalid(
                "issuer",
                format!("{:?} is not an http(s) URL", self.issuer),
            ));
        }
        check_free_text("subject", &self.subject, 255)?;
        check_free_text("display_name", &self.display_name, 200)?;
        if let Some(email) = &self.email {
            let ok = email.len() <= 254
                && !email.contains(char::is_whitespace)
                && matches!(email.split_once('@'), Some((l, d)) if !l.is_empty() && d.contains('.') && !d.contains('@'));
            if !ok {
                return Err(RuleError::invalid(
                    "email",
                    format!("{email:?} is not an email address"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(issuer: &str, email: Option<&str>) -> NewHuman {
        NewHuman {
            issuer: issuer.into(),
            subject: "alice".into(),
            display_name: "Alice".into(),
            email: email.map(Into::into),
            roles: BTreeSet::new(),
        }
    }

    #[test]
    fn validates_issuer_and_email() {
        new("https://idp.example", Some("alice@example.com"))
            .validate()
            .unwrap();
        assert!(new("idp.example", None).validate().is_err());
        assert!(
            new("https://idp.example", Some("alice"))
                .validate()
                .is_err()
        );
        assert!(
            new("https://idp.example", Some("a@b@c.d"))
                .validate()
                .is_err()
        );
        assert!(new("https://i dp", None).validate().is_err());
    }

    #[test]
    fn deactivated_humans_cannot_own_and_cannot_be_deactivated_twice() {
        let mut h = Human {
            id: HumanId::from_uuid(uuid::Uuid::nil()),
            issuer: "https://idp".into(),
            subject: "s".into(),
            display_name: "S".into(),
            email: None,
            roles: BTreeSet::new(),
            status: HumanStatus::Active,
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
        };
        h.check_may_own_agents().unwrap();
        h.status = h.deactivate().unwrap();
        assert!(h.check_may_own_agents().is_err());
        assert!(h.deactivate().is_err());
    }
}
