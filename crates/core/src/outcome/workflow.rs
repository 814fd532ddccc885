//! The workflow registry: what a transaction is worth and what a human
//! would have spent doing it, as entered by the workflow's owner.
//!
//! Valuation happens once, when an outcome is reported, with the workflow as
//! it stood then; the value is stored with the outcome and its audit event,
//! so editing a workflow later never rewrites history and an evidence pack's
//! totals recompute from the pack alone.

use serde::{Deserialize, Serialize};

use crate::RuleError;
use crate::ids::HumanId;
use crate::time::Timestamp;

use super::Claim;
use super::money::{Amount, Currency};
use super::slug;

/// A workflow's name: `invoice-processing`, `kyc.refresh` ...
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, example = "invoice-processing"))]
#[serde(transparent)]
pub struct WorkflowName(String);

impl WorkflowName {
    pub fn parse(s: &str) -> Result<Self, RuleError> {
        slug("workflow name", s).map(|s| WorkflowName(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for WorkflowName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for WorkflowName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        WorkflowName::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// How a counted transaction's value is worked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ValueModel {
    /// The money amount each outcome reports (an invoice total, a recovered sum).
    Reported,
    /// A fixed amount per transaction.
    PerTransaction { amount: Amount },
    /// Human time saved, priced at the baseline rate: minutes reported by
    /// the outcome (or the baseline minutes) × baseline cost ÷ baseline minutes.
    TimeSaved,
}

impl ValueModel {
    pub fn as_str(&self) -> &'static str {
        match self {
            ValueModel::Reported => "reported",
            ValueModel::PerTransaction { .. } => "per_transaction",
            ValueModel::TimeSaved => "time_saved",
        }
    }
}

/// A workflow to register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewWorkflow {
    pub name: WorkflowName,
    pub description: String,
    /// The accountable human: enters the baseline, answers for the figures.
    pub owner: HumanId,
    /// Every amount of the workflow and its outcomes is in this currency.
    pub currency: Currency,
    /// What one transaction costs when a human does it.
    pub baseline_cost: Amount,
    /// How long one transaction takes a human, in minutes.
    pub baseline_minutes: u32,
    pub value_model: ValueModel,
    /// Price of one million model tokens, to cost outcomes that report tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_price: Option<Amount>,
}

impl NewWorkflow {
    pub fn validate(&self) -> Result<(), RuleError> {
        let len = self.description.trim().chars().count();
        if len == 0 || len > 500 {
            return Err(RuleError::invalid(
                "workflow description",
                "say in 1 to 500 characters what one transaction of this workflow is",
            ));
        }
        self.baseline_cost.check_not_negative("baseline cost")?;
        if let Some(p) = self.token_price {
            p.check_not_negative("token price")?;
        }
        if let ValueModel::PerTransaction { amount } = self.value_model {
            amount.check_not_negative("value per transaction")?;
        }
        if self.baseline_minutes == 0 {
            return Err(RuleError::invalid(
                "baseline minutes",
                "must be at least 1: how long one transaction takes a human",
            ));
        }
        Ok(())
    }
}

/// A registered workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Workflow {
    #[serde(flatten)]
    pub def: NewWorkflow,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An outcome's figures in the workflow's currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Valuation {
    pub value: Amount,
    pub cost: Amount,
    pub minutes_saved: u64,
    pub model_tokens: u64,
}

impl NewWorkflow {
    /// Values a claim under this workflow. Amounts in another currency are
    /// refused rather than converted: Mandate does not guess exchange rates.
    pub fn value(&self, claim: &Claim) -> Result<Valuation, RuleError> {
        claim.validate()?;
        let in_currency = |m: &super::money::Money, what: &'static str| {
            if m.currency == self.currency {
                Ok(m.amount)
            } else {
                Err(RuleError::invalid(
                    what,
                    format!(
                        "the workflow {} accounts in {}, the outcome reports {}; convert before reporting",
                        self.name, self.currency, m.currency
                    ),
                ))
            }
        };
        let minutes = claim
            .value
            .as_ref()
            .and_then(|v| v.minutes_saved)
            .unwrap_or(self.baseline_minutes);
        let value = match self.value_model {
            ValueModel::Reported => match claim.value.as_ref().and_then(|v| v.money.as_ref()) {
                Some(m) => in_currency(m, "value")?,
                None => {
                    return Err(RuleError::invalid(
                        "value",
                        format!(
                            "the workflow {} values outcomes by the amount they report: send value.money",
                            self.name
                        ),
                    ));
                }
            },
            ValueModel::PerTransaction { amount } => amount,
            ValueModel::TimeSaved => self
                .baseline_cost
                .scaled(u64::from(minutes), u64::from(self.baseline_minutes)),
        };
        let tokens = claim
            .cost
            .as_ref()
            .and_then(|c| c.model_tokens)
            .unwrap_or(0);
        let mut cost = match claim.cost.as_ref().and_then(|c| c.money.as_ref()) {
            Some(m) => in_currency(m, "cost")?,
            None => Amount::ZERO,
        };
        if let Some(price) = self.token_price {
            cost = cost.saturating_add(price.scaled(tokens, 1_000_000));
        }
        Ok(Valuation {
            value,
            cost,
            minutes_saved: u64::from(minutes),
            model_tokens: tokens,
        })
    }
}
