//! Audit events and the log entries that carry them.
//!
//! An entry is the exact byte string that is hashed into the Merkle tree. It
//! holds its own index and the previous entry's leaf hash, so a deleted,
//! swapped or inserted row is caught by reading the log alone, even before
//! the checkpoint comparison. Events never carry secrets or whole tokens.

use serde::{Deserialize, Serialize};

use crate::ids::{AdminCredentialId, AgentId, HumanId, TaskId};
use crate::time::Timestamp;

use super::merkle::{Hash, leaf_hash};

/// What happened. The string forms are stable: auditors filter on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventKind {
    #[serde(rename = "system.initialized")]
    SystemInitialized,
    #[serde(rename = "admin.credential_created")]
    AdminCredentialCreated,
    #[serde(rename = "human.registered")]
    HumanRegistered,
    #[serde(rename = "human.deactivated")]
    HumanDeactivated,
    #[serde(rename = "agent.registered")]
    AgentRegistered,
    #[serde(rename = "agent.suspended")]
    AgentSuspended,
    #[serde(rename = "agent.resumed")]
    AgentResumed,
    #[serde(rename = "agent.retired")]
    AgentRetired,
    #[serde(rename = "agent.owner_transferred")]
    AgentOwnerTransferred,
    #[serde(rename = "agent.key_added")]
    AgentKeyAdded,
    #[serde(rename = "agent.key_removed")]
    AgentKeyRemoved,
    #[serde(rename = "issuer.trusted")]
    IssuerTrusted,
    #[serde(rename = "signing_key.rotated")]
    SigningKeyRotated,
    /// A human started a task for an agent, and its credential was issued.
    #[serde(rename = "task.created")]
    TaskCreated,
    /// An agent delegated a narrower child task, and its credential was issued.
    #[serde(rename = "task.delegated")]
    TaskDelegated,
    #[serde(rename = "task.completed")]
    TaskCompleted,
    #[serde(rename = "task.failed")]
    TaskFailed,
    #[serde(rename = "task.revoked")]
    TaskRevoked,
    #[serde(rename = "credential.revoked")]
    CredentialRevoked,
    /// A policy set version became the active one.
    #[serde(rename = "policy.activated")]
    PolicyActivated,
    /// An authorization decision, with its verdict and reasons.
    #[serde(rename = "decision.made")]
    DecisionMade,
    #[serde(rename = "approval.requested")]
    ApprovalRequested,
    #[serde(rename = "approval.granted")]
    ApprovalGranted,
    #[serde(rename = "approval.denied")]
    ApprovalDenied,
    #[serde(rename = "breakglass.granted")]
    BreakGlassGranted,
    #[serde(rename = "breakglass.reviewed")]
    BreakGlassReviewed,
    #[serde(rename = "workflow.registered")]
    WorkflowRegistered,
    /// An agent reported an outcome; the details are its `OutcomeRecord`.
    #[serde(rename = "outcome.reported")]
    OutcomeReported,
    /// A gateway secret was stored for the first time (never its value).
    #[serde(rename = "secret.stored")]
    SecretStored,
    /// A gateway secret was replaced; agents are not touched.
    #[serde(rename = "secret.rotated")]
    SecretRotated,
    /// What became of a call through the gateway; the details are its `ToolCall`.
    #[serde(rename = "gateway.call")]
    GatewayCall,
    /// An access-review campaign opened; the details list its items.
    #[serde(rename = "review.started")]
    ReviewStarted,
    /// An owner kept, reduced or retired one agent's ceiling in a review.
    #[serde(rename = "review.decided")]
    ReviewDecided,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SystemInitialized => "system.initialized",
            EventKind::AdminCredentialCreated => "admin.credential_created",
            EventKind::HumanRegistered => "human.registered",
            EventKind::HumanDeactivated => "human.deactivated",
            EventKind::AgentRegistered => "agent.registered",
            EventKind::AgentSuspended => "agent.suspended",
            EventKind::AgentResumed => "agent.resumed",
            EventKind::AgentRetired => "agent.retired",
            EventKind::AgentOwnerTransferred => "agent.owner_transferred",
            EventKind::AgentKeyAdded => "agent.key_added",
            EventKind::AgentKeyRemoved => "agent.key_removed",
            EventKind::IssuerTrusted => "issuer.trusted",
            EventKind::SigningKeyRotated => "signing_key.rotated",
            EventKind::TaskCreated => "task.created",
            EventKind::TaskDelegated => "task.delegated",
            EventKind::TaskCompleted => "task.completed",
            EventKind::TaskFailed => "task.failed",
            EventKind::TaskRevoked => "task.revoked",
            EventKind::CredentialRevoked => "credential.revoked",
            EventKind::PolicyActivated => "policy.activated",
            EventKind::DecisionMade => "decision.made",
            EventKind::ApprovalRequested => "approval.requested",
            EventKind::ApprovalGranted => "approval.granted",
            EventKind::ApprovalDenied => "approval.denied",
            EventKind::BreakGlassGranted => "breakglass.granted",
            EventKind::BreakGlassReviewed => "breakglass.reviewed",
            EventKind::WorkflowRegistered => "workflow.registered",
            EventKind::OutcomeReported => "outcome.reported",
            EventKind::SecretStored => "secret.stored",
            EventKind::SecretRotated => "secret.rotated",
            EventKind::GatewayCall => "gateway.call",
            EventKind::ReviewStarted => "review.started",
            EventKind::ReviewDecided => "review.decided",
        }
    }
}

/// Who caused the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    /// The installation itself (`mandate init`).
    System,
    /// An operator holding an admin credential, named by its public id.
    Admin { credential: AdminCredentialId },
    /// A human authenticated by a trusted issuer's ID token.
    Human { id: HumanId },
    /// An agent, by its SPIFFE id (authenticated by assertion or task token).
    Agent { id: AgentId, spiffe_id: String },
}

/// One auditable fact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    pub kind: EventKind,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human: Option<HumanId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    /// A credential, by its jti (never the token itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// The authority chain: the human initiator, then each agent hop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// Kind-specific facts (names, scopes, key ids, old and new owner ...).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: serde_json::Value,
}

impl AuditEvent {
    pub fn new(kind: EventKind, at: Timestamp, actor: Actor) -> Self {
        AuditEvent {
            kind,
            at,
            request_id: None,
            actor,
            human: None,
            agent: None,
            task: None,
            credential: None,
            chain: Vec::new(),
            details: serde_json::Value::Null,
        }
    }
    pub fn request_id(mut self, id: Option<String>) -> Self {
        self.request_id = id;
        self
    }
    pub fn human(mut self, id: HumanId) -> Self {
        self.human = Some(id);
        self
    }
    pub fn agent(mut self, id: AgentId) -> Self {
        self.agent = Some(id);
        self
    }
    pub fn task(mut self, id: TaskId) -> Self {
        self.task = Some(id);
        self
    }
    pub fn credential(mut self, jti: impl Into<String>) -> Self {
        self.credential = Some(jti.into());
        self
    }
    pub fn chain(mut self, chain: Vec<String>) -> Self {
        self.chain = chain;
        self
    }
    pub fn details(mut self, d: serde_json::Value) -> Self {
        self.details = d;
        self
    }
}

/// The hashed form of an event: its position and its predecessor's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    pub index: u64,
    /// Hex leaf hash of the previous entry; all zeros for the first.
    pub prev: String,
    pub event: AuditEvent,
}

/// The `prev` of entry 0.
pub const GENESIS_PREV: Hash = [0u8; 32];

impl LogEntry {
    pub fn new(index: u64, prev: &Hash, event: AuditEvent) -> Self {
        LogEntry {
            index,
            prev: super::to_hex(prev),
            event,
        }
    }

    /// The exact bytes that are stored and hashed, and their leaf hash: the
    /// entry's JSON as serde writes it (fields in declaration order).
    pub fn encode(&self) -> (String, Hash) {
        let prev = serde_json::to_string(&self.prev).expect("a string always serialises");
        EncodedEvent::new(&self.event).splice(self.index, &prev)
    }
}

/// An event serialised before its place in the log is known.
///
/// Serialising is most of an entry's encoding, and it does not depend on
/// the index or the previous hash, so an append does it before it waits for
/// the log's single writer; with the position known, [`EncodedEvent::at`]
/// only joins the parts and hashes them.
#[derive(Debug, Clone)]
pub struct EncodedEvent {
    json: String,
}

impl EncodedEvent {
    pub fn new(event: &AuditEvent) -> Self {
        EncodedEvent {
            json: serde_json::to_string(event).expect("audit events always serialise"),
        }
    }

    /// `event` with `details` already serialised: the same text as
    /// [`EncodedEvent::new`] writes for the event with those details, without
    /// building them as a [`serde_json::Value`] first. The event's own
    /// details must be null.
    pub fn with_details(event: &AuditEvent, details: &serde_json::value::RawValue) -> Self {
        debug_assert!(event.details.is_null(), "the details are given apart");
        let mut json = serde_json::to_string(event).expect("audit events always serialise");
        // `details` is the last field and skipped when null, as serde does.
        if details.get() != "null" {
            json.pop();
            json.push_str(",\"details\":");
            json.push_str(details.get());
            json.push('}');
        }
        EncodedEvent { json }
    }

    /// The entry at `index` after `prev`, as [`LogEntry::encode`] writes it,
    /// and its leaf hash.
    pub fn at(&self, index: u64, prev: &Hash) -> (String, Hash) {
        let mut quoted = String::with_capacity(66);
        quoted.push('"');
        quoted.push_str(&super::to_hex(prev));
        quoted.push('"');
        self.splice(index, &quoted)
    }

    /// `{"index":…,"prev":…,"event":…}` with `prev` already a JSON string.
    fn splice(&self, index: u64, prev: &str) -> (String, Hash) {
        use std::fmt::Write as _;
        let mut text = String::with_capacity(self.json.len() + prev.len() + 48);
        let _ = write!(text, "{{\"index\":{index},\"prev\":{prev},\"event\":");
        text.push_str(&self.json);
        text.push('}');
        let hash = leaf_hash(text.as_bytes());
        (text, hash)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn event(
        kind: EventKind,
        text: &str,
        chain: Vec<String>,
        request: Option<String>,
    ) -> AuditEvent {
        let mut e = AuditEvent::new(
            kind,
            Timestamp::from_millis(1_765_000_000_000),
            Actor::System,
        )
        .agent(AgentId::from_uuid(uuid::Uuid::from_u128(7)))
        .chain(chain)
        .details(json!({ "reason": text, "n": 3, "nested": { "list": [text, null, 1.5] } }));
        e.request_id = request;
        e
    }

    proptest! {
        /// The spliced entry is byte for byte what serde writes for the
        /// whole entry (what every stored entry was written as), and reads
        /// back as the same entry.
        #[test]
        fn spliced_entries_are_serdes_bytes(
            index in any::<u64>(),
            prev in any::<[u8; 32]>(),
            text in any::<String>(),
            chain in proptest::collection::vec(any::<String>(), 0..3),
            request in proptest::option::of(any::<String>()),
            kind in prop::sample::select(vec![
                EventKind::GatewayCall, EventKind::DecisionMade, EventKind::HumanRegistered,
            ]),
        ) {
            let e = event(kind, &text, chain, request);
            let entry = LogEntry::new(index, &prev, e.clone());
            let serde = serde_json::to_string(&entry).unwrap();
            let (text, hash) = EncodedEvent::new(&e).at(index, &prev);
            prop_assert_eq!(&text, &serde);
            prop_assert_eq!(hash, leaf_hash(serde.as_bytes()));
            prop_assert_eq!((text.clone(), hash), entry.encode());
            prop_assert_eq!(serde_json::from_str::<LogEntry>(&text).unwrap(), entry);
        }

        /// Details given as text make the same entry as the same details
        /// given as a value, null (no details) included.
        #[test]
        fn details_given_as_text_encode_as_given_as_a_value(
            text in any::<String>(),
            chain in proptest::collection::vec(any::<String>(), 0..3),
            request in proptest::option::of(any::<String>()),
            null in any::<bool>(),
        ) {
            let mut e = event(EventKind::DecisionMade, &text, chain, request);
            if null {
                e.details = serde_json::Value::Null;
            }
            let raw = serde_json::value::to_raw_value(&e.details).unwrap();
            let apart = AuditEvent { details: serde_json::Value::Null, ..e.clone() };
            let prev = [9; 32];
            prop_assert_eq!(
                EncodedEvent::with_details(&apart, &raw).at(5, &prev),
                EncodedEvent::new(&e).at(5, &prev)
            );
        }
    }
}
