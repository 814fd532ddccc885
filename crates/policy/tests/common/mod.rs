//! Requests for tests: one ordinary, low-risk request to vary field by field.
#![allow(dead_code)]

use std::collections::BTreeSet;

use mandate_core::agent::AgentKind;
use mandate_core::ids::{AgentName, HumanId, SpiffeId, TaskId, TrustDomain};
use mandate_core::time::Timestamp;
use mandate_policy::{
    AgentFacts, ApprovalState, DecisionRequest, PolicySet, RequestContext, ResourceFacts, TaskFacts,
};

pub const ALICE: &str = "00000000-0000-7000-8000-00000000a11c";
pub const BOB: &str = "00000000-0000-7000-8000-000000000b0b";
pub const TASK: &str = "00000000-0000-7000-8000-0000000007a5";
/// 2026-11-23T14:30:00Z.
pub const NOON_ISH: i64 = 1_795_444_200;

pub fn human(id: &str) -> HumanId {
    id.parse().unwrap()
}

pub fn spiffe(kind: AgentKind, name: &str) -> SpiffeId {
    SpiffeId::for_agent(
        &TrustDomain::parse("acme.example").unwrap(),
        kind,
        &AgentName::parse(name).unwrap(),
    )
}

pub fn agent(name: &str, tags: &[&str]) -> AgentFacts {
    AgentFacts {
        spiffe_id: spiffe(AgentKind::Agent, name),
        kind: AgentKind::Agent,
        owner: human(BOB),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

/// `billing` (tagged finance) doing `action` on an internal invoice in
/// staging, at low risk, on a task Alice started.
pub fn request(action: &str) -> DecisionRequest {
    DecisionRequest {
        initiator: human(ALICE),
        delegators: Vec::new(),
        agent: agent("billing", &["finance"]),
        task: TaskFacts {
            id: TASK.parse::<TaskId>().unwrap(),
            purpose: "pay supplier invoices".into(),
            depth: 0,
        },
        action: action.into(),
        resource: ResourceFacts {
            id: "erp:invoices/2026-001".into(),
            sensitivity: "internal".into(),
            labels: BTreeSet::new(),
        },
        context: RequestContext {
            tool: None,
            environment: "staging".into(),
            data_sensitivity: "internal".into(),
            time: Timestamp::from_millis(NOON_ISH * 1000),
            risk_score: 10,
            approval: ApprovalState::None,
            amount: None,
        },
    }
}

pub fn set(text: &str) -> PolicySet {
    PolicySet::parse(text).unwrap_or_else(|e| panic!("{e}\n{e:#?}"))
}

pub const DEFAULT: &str = include_str!("../../examples/default.cedar");
