//! Identifiers: opaque record ids and SPIFFE identities.
//!
//! Record ids are UUIDs (v7 when minted by the server, so they sort by
//! creation time and make stable pagination cursors). Agent identities follow
//! the SPIFFE ID rules, `spiffe://<trust-domain>/<kind>/<name>`; the
//! constructors here are the only way to build them, so a value of these types
//! is always well formed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::RuleError;
use crate::agent::AgentKind;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, format = Uuid))]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub const fn from_uuid(u: Uuid) -> Self {
                $name(u)
            }
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = RuleError;
            fn from_str(s: &str) -> Result<Self, RuleError> {
                Uuid::parse_str(s)
                    .map($name)
                    .map_err(|_| RuleError::invalid($what, format!("{s:?} is not a UUID")))
            }
        }
    };
}

uuid_id!(
    /// A human principal's record id.
    HumanId, "human id"
);
uuid_id!(
    /// An agent (non-human identity) record id.
    AgentId, "agent id"
);
uuid_id!(
    /// A task (mandate): one bounded unit of delegated work.
    TaskId, "task id"
);
uuid_id!(
    /// One authorization decision, as recorded in the audit log.
    DecisionId, "decision id"
);
uuid_id!(
    /// A request for a human approval, bound to one exact request.
    ApprovalId, "approval id"
);
uuid_id!(
    /// An emergency grant outside normal policy.
    BreakGlassId, "break-glass id"
);
uuid_id!(
    /// A reported outcome (one claimed transaction, or a retry of one).
    OutcomeId, "outcome id"
);
uuid_id!(
    /// An access-review campaign: one owner re-certifying their agents' ceilings.
    ReviewId, "review id"
);
uuid_id!(
    /// An admin credential's public id (the part of the token before the secret).
    AdminCredentialId, "admin credential id"
);

fn is_segment_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')
}

/// A SPIFFE trust domain, e.g. `acme.example`.
///
/// Lowercase letters, digits, `.`, `-` and `_` only (the SPIFFE ID spec), at
/// most 255 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TrustDomain(String);

impl TrustDomain {
    pub fn parse(s: &str) -> Result<Self, RuleError> {
        let bad = |why: &str| RuleError::invalid("trust domain", format!("{s:?}: {why}"));
        if s.is_empty() || s.len() > 255 {
            return Err(bad("must be 1 to 255 characters"));
        }
        if !s.chars().all(is_segment_char) {
            return Err(bad(
                "only lowercase letters, digits, '.', '-' and '_' are allowed",
            ));
        }
        if s.starts_with('.') || s.ends_with('.') || s.contains("..") {
            return Err(bad("labels separated by '.' must not be empty"));
        }
        Ok(TrustDomain(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TrustDomain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        TrustDomain::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// An agent's name: one SPIFFE path segment, unique forever within Mandate.
///
/// Stricter than SPIFFE on purpose: lowercase only (so `Billing` and
/// `billing` cannot be two agents that look alike), starting with a letter or
/// digit, at most 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String))]
#[serde(transparent)]
pub struct AgentName(String);

impl AgentName {
    pub fn parse(s: &str) -> Result<Self, RuleError> {
        let bad = |why: &str| RuleError::invalid("agent name", format!("{s:?}: {why}"));
        if s.is_empty() || s.len() > 63 {
            return Err(bad("must be 1 to 63 characters"));
        }
        if !s.chars().all(is_segment_char) {
            return Err(bad(
                "a SPIFFE path segment allows only lowercase letters, digits, '.', '-' and '_'",
            ));
        }
        if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(bad("must start with a letter or a digit"));
        }
        Ok(AgentName(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AgentName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        AgentName::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// `spiffe://<trust-domain>/<kind>/<name>`: the identity an agent presents.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String))]
#[serde(transparent)]
pub struct SpiffeId(String);

impl SpiffeId {
    pub fn for_agent(td: &TrustDomain, kind: AgentKind, name: &AgentName) -> Self {
        SpiffeId(format!("spiffe://{td}/{}/{name}", kind.as_str()))
    }

    /// Parses an agent SPIFFE id back into its parts, refusing anything that
    /// [`SpiffeId::for_agent`] would not have produced.
    pub fn parse(s: &str) -> Result<(TrustDomain, AgentKind, AgentName), RuleError> {
        let bad = |why: &str| RuleError::invalid("SPIFFE id", format!("{s:?}: {why}"));
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or_else(|| bad("must start with spiffe://"))?;
        let mut parts = rest.split('/');
        let (Some(td), Some(kind), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected spiffe://<trust-domain>/<kind>/<name>"));
        };
        Ok((
            TrustDomain::parse(td)?,
            kind.parse()?,
            AgentName::parse(name)?,
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let (td, kind, name) = SpiffeId::parse(&s).map_err(serde::de::Error::custom)?;
        Ok(SpiffeId::for_agent(&td, kind, &name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn agent_names_follow_spiffe_segment_rules() {
        for ok in ["research", "procurement-agent", "a", "agent_7", "v1.2"] {
            AgentName::parse(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "-lead",
            "Upper",
            "has space",
            "a/b",
            "é",
            &"x".repeat(64),
        ] {
            assert!(AgentName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn trust_domains_are_validated() {
        TrustDomain::parse("acme.example").unwrap();
        for bad in ["", "ACME", "a..b", ".a", "a.", "a/b", "a:80"] {
            assert!(TrustDomain::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn spiffe_id_round_trips() {
        let td = TrustDomain::parse("acme.example").unwrap();
        let name = AgentName::parse("research").unwrap();
        let id = SpiffeId::for_agent(&td, AgentKind::Agent, &name);
        assert_eq!(id.as_str(), "spiffe://acme.example/agent/research");
        assert_eq!(
            SpiffeId::parse(id.as_str()).unwrap(),
            (td, AgentKind::Agent, name)
        );
    }

    #[test]
    fn malformed_spiffe_ids_are_refused() {
        for bad in [
            "https://acme/agent/x",
            "spiffe://acme/agent",
            "spiffe://acme/agent/x/y",
            "spiffe://acme/robot/x",
            "spiffe://acme/agent/",
            "spiffe:///agent/x",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    proptest! {
        #[test]
        fn any_accepted_name_makes_a_parseable_spiffe_id(s in "[a-z0-9][a-z0-9._-]{0,62}") {
            let name = AgentName::parse(&s).unwrap();
            let td = TrustDomain::parse("t.example").unwrap();
            let id = SpiffeId::for_agent(&td, AgentKind::Service, &name);
            prop_assert_eq!(SpiffeId::parse(id.as_str()).unwrap().2, name);
        }

        #[test]
        fn name_parser_never_panics(s in ".{0,80}") {
            let _ = AgentName::parse(&s);
            let _ = SpiffeId::parse(&s);
        }
    }
}
