//! The one error type for a broken domain rule.
//!
//! Every variant names what was wrong in words an operator can act on; the
//! server maps them to 4xx problem details and the CLI prints them as one line.

/// A domain rule refused an input or a state change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// A value does not have the required shape (name, id, JWK, pattern ...).
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    /// A state change that the lifecycle forbids.
    #[error("{0}")]
    Transition(String),
    /// A change that conflicts with existing state (duplicate name, key ...).
    #[error("{0}")]
    Conflict(String),
}

impl RuleError {
    pub(crate) fn invalid(what: &'static str, why: impl Into<String>) -> Self {
        RuleError::Invalid {
            what,
            why: why.into(),
        }
    }
}
