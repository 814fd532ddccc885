//! Return on AI: the figures a report shows, computed from sums of outcomes.
//!
//! The same fold serves the store's report (over pre-aggregated rows) and
//! the offline evidence check (over the pack's transactions), so a pack's
//! totals recompute exactly or the pack fails.
//!
//! Definitions: *value* counts only `counted` outcomes; *cost* counts every
//! outcome except duplicates (the spend behind a phantom or a refused task was
//! real, a retry's was already reported); ROAI = (value − cost) ÷ cost.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::RuleError;
use crate::ids::{AgentId, HumanId};
use crate::time::Timestamp;

use super::classify::Classification;
use super::money::{Amount, Currency};
use super::workflow::{NewWorkflow, WorkflowName};

/// A half-open time range `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Period {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl Period {
    pub fn new(from: Timestamp, to: Timestamp) -> Result<Self, RuleError> {
        if from >= to {
            return Err(RuleError::invalid(
                "period",
                format!(
                    "from ({}) must be before to ({})",
                    from.rfc3339(),
                    to.rfc3339()
                ),
            ));
        }
        Ok(Period { from, to })
    }

    pub fn contains(&self, t: Timestamp) -> bool {
        self.from <= t && t < self.to
    }
}

/// Sums over a group of outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sums {
    pub n: u64,
    pub value: Amount,
    pub cost: Amount,
    pub minutes: u64,
    pub tokens: u64,
}

impl Sums {
    pub fn add(&mut self, o: &Sums) {
        self.n += o.n;
        self.value = self.value.saturating_add(o.value);
        self.cost = self.cost.saturating_add(o.cost);
        self.minutes = self.minutes.saturating_add(o.minutes);
        self.tokens = self.tokens.saturating_add(o.tokens);
    }
}

/// Outcomes of one class, by one agent, for one initiator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TallyRow {
    pub agent: AgentId,
    pub initiator: Option<HumanId>,
    pub classification: Classification,
    pub sums: Sums,
}

/// The figures of a report, for a whole period or one agent or initiator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Figures {
    /// Every outcome reported, counted or not.
    pub reported: u64,
    pub counted: u64,
    /// Outcomes not counted, by kind (every kind listed, zeros included).
    pub exceptions: BTreeMap<Classification, u64>,
    pub value: Amount,
    pub cost: Amount,
    /// value − cost (may be negative).
    pub net: Amount,
    /// (value − cost) ÷ cost; absent when nothing was spent.
    pub roai: Option<f64>,
    /// Human minutes the counted transactions saved.
    pub minutes_saved: u64,
    /// What the counted transactions would have cost done by humans.
    pub human_baseline_cost: Amount,
    pub model_tokens: u64,
}

impl Figures {
    /// Folds per-class sums into figures.
    pub fn from_classes(by_class: &BTreeMap<Classification, Sums>, wf: &NewWorkflow) -> Self {
        let mut exceptions: BTreeMap<Classification, u64> = Classification::ALL
            .into_iter()
            .filter(|c| *c != Classification::Counted)
            .map(|c| (c, 0))
            .collect();
        let mut reported = 0;
        let mut cost = Amount::ZERO;
        let mut tokens = 0u64;
        for (class, s) in by_class {
            reported += s.n;
            if *class != Classification::Counted {
                *exceptions.entry(*class).or_default() += s.n;
            }
            if *class != Classification::Duplicate {
                cost = cost.saturating_add(s.cost);
                tokens = tokens.saturating_add(s.tokens);
            }
        }
        let counted = by_class
            .get(&Classification::Counted)
            .copied()
            .unwrap_or_default();
        let net = Amount::from_units(counted.value.units().saturating_sub(cost.units()));
        let roai = (cost.units() > 0).then(|| net.units() as f64 / cost.units() as f64);
        Figures {
            reported,
            counted: counted.n,
            exceptions,
            value: counted.value,
            cost,
            net,
            roai,
            minutes_saved: counted.minutes,
            human_baseline_cost: wf.baseline_cost.times(counted.n),
            model_tokens: tokens,
        }
    }
}

/// A period's figures with the breakdowns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeriodFigures {
    pub period: Period,
    pub totals: Figures,
    /// By the agent that reported the outcome.
    pub by_agent: BTreeMap<AgentId, Figures>,
    /// By the human who initiated the task (`none` when there was none).
    pub by_initiator: BTreeMap<String, Figures>,
}

/// The key of outcomes without a human initiator in `by_initiator`.
pub const NO_INITIATOR: &str = "none";

impl PeriodFigures {
    pub fn from_rows(period: Period, rows: &[TallyRow], wf: &NewWorkflow) -> Self {
        let mut total: BTreeMap<Classification, Sums> = BTreeMap::new();
        let mut agents: BTreeMap<AgentId, BTreeMap<Classification, Sums>> = BTreeMap::new();
        let mut initiators: BTreeMap<String, BTreeMap<Classification, Sums>> = BTreeMap::new();
        for r in rows {
            total.entry(r.classification).or_default().add(&r.sums);
            agents
                .entry(r.agent)
                .or_default()
                .entry(r.classification)
                .or_default()
                .add(&r.sums);
            let who = r
                .initiator
                .map_or_else(|| NO_INITIATOR.to_owned(), |h| h.to_string());
            initiators
                .entry(who)
                .or_default()
                .entry(r.classification)
                .or_default()
                .add(&r.sums);
        }
        PeriodFigures {
            period,
            totals: Figures::from_classes(&total, wf),
            by_agent: fold(agents, wf),
            by_initiator: fold(initiators, wf),
        }
    }
}

fn fold<K: Ord>(
    m: BTreeMap<K, BTreeMap<Classification, Sums>>,
    wf: &NewWorkflow,
) -> BTreeMap<K, Figures> {
    m.into_iter()
        .map(|(k, v)| (k, Figures::from_classes(&v, wf)))
        .collect()
}

/// A Return-on-AI report for one workflow, with an optional baseline period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoaiReport {
    pub workflow: WorkflowName,
    pub description: String,
    pub currency: Currency,
    /// The human baseline per transaction, as entered by the owner.
    pub baseline_cost: Amount,
    pub baseline_minutes: u32,
    pub value_model: String,
    pub current: PeriodFigures,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<PeriodFigures>,
    /// Display names for the ids in the breakdowns.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl RoaiReport {
    pub fn new(wf: &NewWorkflow, current: PeriodFigures, baseline: Option<PeriodFigures>) -> Self {
        RoaiReport {
            workflow: wf.name.clone(),
            description: wf.description.clone(),
            currency: wf.currency,
            baseline_cost: wf.baseline_cost,
            baseline_minutes: wf.baseline_minutes,
            value_model: wf.value_model.as_str().to_owned(),
            current,
            baseline,
            labels: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::workflow::ValueModel;
    use proptest::prelude::*;

    fn wf() -> NewWorkflow {
        NewWorkflow {
            name: WorkflowName::parse("invoices").unwrap(),
            description: "one invoice processed".into(),
            owner: HumanId::from_uuid(uuid::Uuid::nil()),
            currency: "EUR".parse().unwrap(),
            baseline_cost: Amount::from_whole(12),
            baseline_minutes: 20,
            value_model: ValueModel::TimeSaved,
            token_price: None,
        }
    }

    fn sums(n: u64, value: i64, cost: i64) -> Sums {
        Sums {
            n,
            value: Amount::from_whole(value),
            cost: Amount::from_whole(cost),
            minutes: n * 20,
            tokens: n * 1000,
        }
    }

    #[test]
    fn value_counts_only_counted_and_cost_skips_duplicates() {
        let by: BTreeMap<_, _> = [
            (Classification::Counted, sums(10, 120, 20)),
            (Classification::Duplicate, sums(3, 36, 6)),
            (Classification::Phantom, sums(2, 24, 4)),
        ]
        .into();
        let f = Figures::from_classes(&by, &wf());
        assert_eq!(f.reported, 15);
        assert_eq!(f.counted, 10);
        assert_eq!(f.exceptions[&Classification::Duplicate], 3);
        assert_eq!(f.exceptions[&Classification::Phantom], 2);
        assert_eq!(f.exceptions[&Classification::Unattributed], 0);
        assert_eq!(f.value, Amount::from_whole(120));
        assert_eq!(f.cost, Amount::from_whole(24));
        assert_eq!(f.net, Amount::from_whole(96));
        assert_eq!(f.roai, Some(4.0));
        assert_eq!(f.minutes_saved, 200);
        assert_eq!(f.human_baseline_cost, Amount::from_whole(120));
    }

    #[test]
    fn no_cost_means_no_ratio() {
        let by: BTreeMap<_, _> = [(Classification::Counted, sums(1, 5, 0))].into();
        assert_eq!(Figures::from_classes(&by, &wf()).roai, None);
    }

    proptest! {
        /// Breakdowns add up to the totals, whatever the rows.
        #[test]
        fn breakdowns_sum_to_totals(rows in proptest::collection::vec(
            (0u8..3, 0u8..3, 0usize..6, 1u64..50, 0i64..1000, 0i64..1000), 0..40)
        ) {
            let rows: Vec<TallyRow> = rows.into_iter().map(|(a, h, c, n, v, k)| TallyRow {
                agent: AgentId::from_uuid(uuid::Uuid::from_u128(u128::from(a))),
                initiator: (h > 0).then(|| HumanId::from_uuid(uuid::Uuid::from_u128(u128::from(h)))),
                classification: Classification::ALL[c],
                sums: sums(n, v, k),
            }).collect();
            let p = Period::new(Timestamp::from_millis(0), Timestamp::from_millis(1)).unwrap();
            let f = PeriodFigures::from_rows(p, &rows, &wf());
            let counted: u64 = f.by_agent.values().map(|x| x.counted).sum();
            prop_assert_eq!(counted, f.totals.counted);
            let reported: u64 = f.by_initiator.values().map(|x| x.reported).sum();
            prop_assert_eq!(reported, f.totals.reported);
            let cost: i64 = f.by_agent.values().map(|x| x.cost.units()).sum();
            prop_assert_eq!(cost, f.totals.cost.units());
        }
    }
}
