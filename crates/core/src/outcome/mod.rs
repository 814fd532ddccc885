//! Outcomes and Return on AI: the unit of value is a completed, authorised,
//! de-duplicated transaction with an attributable identity chain.
//!
//! An agent reports a [`Claim`]; the record behind it decides its
//! [`Classification`] ([`classify`]); the workflow values it
//! ([`workflow`]); reports fold the stored figures ([`roai`]).

pub mod classify;
pub mod money;
pub mod roai;
pub mod workflow;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::RuleError;
use crate::ids::{AgentId, HumanId, OutcomeId, TaskId};
use crate::time::Timestamp;

pub use classify::{Classification, Classified, Facts, classify};
pub use money::{Amount, Currency, Money};
pub use roai::{Figures, Period, PeriodFigures, RoaiReport, Sums, TallyRow};
pub use workflow::{NewWorkflow, Valuation, ValueModel, Workflow, WorkflowName};

/// Lowercase names: letters, digits, `.`, `-`, `_`, 1 to 64 characters,
/// starting with a letter or digit.
pub(crate) fn slug<'a>(what: &'static str, s: &'a str) -> Result<&'a str, RuleError> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if s.is_empty() || s.len() > 64 || !first_ok || !s.chars().all(ok_char) {
        return Err(RuleError::invalid(
            what,
            format!("{s:?}: use 1-64 lowercase letters, digits, '.', '-' or '_'"),
        ));
    }
    Ok(s)
}

/// What kind of result an outcome is (`invoice.paid`, `ticket.resolved`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, example = "invoice.paid"))]
#[serde(transparent)]
pub struct OutcomeType(String);

impl OutcomeType {
    pub fn parse(s: &str) -> Result<Self, RuleError> {
        slug("outcome type", s).map(|s| OutcomeType(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for OutcomeType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OutcomeType::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The client's name for one transaction: the same key is the same
/// transaction, however often it is reported. Visible ASCII, 1-200 bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, example = "inv-2026-00042"))]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(s: &str) -> Result<Self, RuleError> {
        if s.is_empty() || s.len() > 200 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(RuleError::invalid(
                "idempotency key",
                "use 1-200 visible ASCII characters (no spaces), unique per transaction",
            ));
        }
        Ok(IdempotencyKey(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for IdempotencyKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        IdempotencyKey::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Business value an outcome claims.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimedValue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub money: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes_saved: Option<u32>,
}

/// What producing the outcome cost.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimedCost {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub money: Option<Money>,
}

/// An outcome as an agent reports it (`POST /v1/outcomes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Claim {
    pub workflow: WorkflowName,
    pub outcome_type: OutcomeType,
    pub idempotency_key: IdempotencyKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ClaimedValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<ClaimedCost>,
    /// The transaction's id in the business system (invoice number ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<String>,
}

impl Claim {
    pub fn validate(&self) -> Result<(), RuleError> {
        let amounts = [
            self.value.as_ref().and_then(|v| v.money),
            self.cost.as_ref().and_then(|c| c.money),
        ];
        for m in amounts.into_iter().flatten() {
            m.amount.check_not_negative("amount")?;
        }
        if let Some(r) = &self.external_ref
            && (r.is_empty() || r.len() > 200 || r.chars().any(char::is_control))
        {
            return Err(RuleError::invalid(
                "external_ref",
                "use 1-200 characters without control characters",
            ));
        }
        Ok(())
    }

    /// SHA-256 over the claim's canonical JSON: a retry must send the same
    /// claim, a different claim under a used key is refused.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(self).expect("claims always serialise");
        crate::audit::to_hex(&Sha256::digest(json))
    }
}

/// An outcome as recorded: the claim, who stands behind it, its class and
/// its figures. Exactly this is the `outcome.reported` audit event's details,
/// which is what evidence packs prove and recompute from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OutcomeRecord {
    pub id: OutcomeId,
    pub workflow: WorkflowName,
    pub outcome_type: OutcomeType,
    pub idempotency_key: IdempotencyKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<String>,
    /// The task whose credential reported it.
    pub task: TaskId,
    /// The reporting agent.
    pub agent: AgentId,
    /// The human who started the task.
    pub initiator: HumanId,
    /// The reporting agent's accountable owner.
    pub owner: HumanId,
    /// The human initiator, then each agent hop (SPIFFE ids).
    pub chain: Vec<String>,
    pub classification: Classification,
    pub explanation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<OutcomeId>,
    pub currency: Currency,
    #[serde(flatten)]
    pub valuation: Valuation,
    pub reported_at: Timestamp,
}

impl OutcomeRecord {
    /// The record an `outcome.reported` log entry carries, from the entry's
    /// exact stored text: what the store, the server and auditors read back.
    pub fn from_entry(entry: &str) -> Result<Self, String> {
        let e: crate::audit::LogEntry =
            serde_json::from_str(entry).map_err(|e| format!("outcome audit entry: {e}"))?;
        if e.event.kind != crate::audit::EventKind::OutcomeReported {
            return Err(format!(
                "audit entry {} is a {}, not an outcome",
                e.index,
                e.event.kind.as_str()
            ));
        }
        serde_json::from_value(e.event.details)
            .map_err(|e| format!("outcome audit entry details: {e}"))
    }

    /// This outcome's contribution to a tally.
    pub fn tally_row(&self) -> TallyRow {
        TallyRow {
            agent: self.agent,
            initiator: Some(self.initiator),
            classification: self.classification,
            sums: Sums {
                n: 1,
                value: self.valuation.value,
                cost: self.valuation.cost,
                minutes: self.valuation.minutes_saved,
                tokens: self.valuation.model_tokens,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys_are_checked() {
        assert!(WorkflowName::parse("invoice-processing").is_ok());
        for bad in ["", "Invoices", "-x", "a b", &"x".repeat(65)] {
            assert!(WorkflowName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(IdempotencyKey::parse("inv-42").is_ok());
        for bad in ["", "a b", "é", &"k".repeat(201)] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn claims_refuse_unknown_fields_and_fingerprint_stably() {
        let c: Claim = serde_json::from_str(
            r#"{"workflow":"invoices","outcome_type":"invoice.paid","idempotency_key":"k1",
                "value":{"money":{"amount":"10.00","currency":"EUR"}}}"#,
        )
        .unwrap();
        let again: Claim = serde_json::from_str(
            r#"{"idempotency_key":"k1","outcome_type":"invoice.paid","workflow":"invoices",
                "value":{"money":{"currency":"EUR","amount":"10"}}}"#,
        )
        .unwrap();
        assert_eq!(c.fingerprint(), again.fingerprint());
        let other = Claim {
            external_ref: Some("x".into()),
            ..c.clone()
        };
        assert_ne!(c.fingerprint(), other.fingerprint());
        assert!(
            serde_json::from_str::<Claim>(
                r#"{"workflow":"w","outcome_type":"t","idempotency_key":"k","counted":true}"#
            )
            .is_err()
        );
    }
}
