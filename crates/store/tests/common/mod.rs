//! Setup shared by the storage suites: a clock, humans, agents and tasks as
//! the server would build them, and audit helpers. Each suite uses a subset.

#![allow(dead_code)]

use std::collections::BTreeSet;

use ed25519_dalek::SigningKey;
use mandate_core::RuleError;
use mandate_core::agent::{Agent, AgentKind, NewAgent};
use mandate_core::audit::checkpoint::{NoteSigner, NoteVerifier};
use mandate_core::audit::merkle::MerkleTree;
use mandate_core::audit::{Actor, AuditEvent, LogEntry};
use mandate_core::decision::Verdict;
use mandate_core::human::{HumanRole, NewHuman};
use mandate_core::ids::{AgentId, AgentName, DecisionId, HumanId, SpiffeId, TaskId, TrustDomain};
use mandate_core::jwk::Ed25519Jwk;
use mandate_core::scope::{Grant, Scope};
use mandate_core::task::{Limits, Task, TaskStatus};
use mandate_core::time::Timestamp;
use mandate_store::{Change, CredentialRecord, DecisionWrite, NewTask, Store, StoreError, log};
use serde_json::json;
use uuid::Uuid;

pub const ORIGIN: &str = "acme.example/mandate/audit";
pub const IDP: &str = "https://idp.acme.example";
/// The clock at the start of every case.
pub const T0: i64 = 1_800_000_000_000;
pub const HOUR: i64 = 3_600_000;

pub fn at(ms: i64) -> Change {
    Change {
        actor: Actor::System,
        at: Timestamp::from_millis(ms),
        request_id: Some("req-t".into()),
    }
}

pub fn now() -> Change {
    at(T0)
}

pub fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

pub fn jwk(seed: u8) -> Ed25519Jwk {
    Ed25519Jwk::from_verifying_key(&SigningKey::from_bytes(&[seed; 32]).verifying_key(), None)
}

pub async fn human_at(s: &dyn Store, issuer: &str, subject: &str) -> HumanId {
    human_with(s, issuer, subject, &[]).await
}

/// A human at `issuer` holding `roles`.
pub async fn human_with(
    s: &dyn Store,
    issuer: &str,
    subject: &str,
    roles: &[HumanRole],
) -> HumanId {
    let id = HumanId::from_uuid(Uuid::now_v7());
    let new = NewHuman {
        issuer: issuer.into(),
        subject: subject.into(),
        display_name: subject.to_uppercase(),
        email: None,
        roles: roles.iter().copied().collect(),
    };
    s.create_human(&now(), id, &new).await.unwrap();
    id
}

pub async fn human(s: &dyn Store, subject: &str) -> HumanId {
    human_at(s, IDP, subject).await
}

pub async fn agent(s: &dyn Store, name: &str, owner: HumanId) -> Agent {
    agent_with(s, name, owner, &[("invoice.*", "erp:invoices/*")]).await
}

pub fn scope(grants: &[(&str, &str)]) -> Scope {
    Scope::new(grants.iter().map(|(a, r)| Grant::new(a, r).unwrap())).unwrap()
}

/// An agent whose ceiling is `ceiling` (ACTION, RESOURCE pairs).
pub async fn agent_with(
    s: &dyn Store,
    name: &str,
    owner: HumanId,
    ceiling: &[(&str, &str)],
) -> Agent {
    let new = NewAgent {
        name: AgentName::parse(name).unwrap(),
        kind: AgentKind::Agent,
        owner,
        description: format!("{name} does things"),
        ceiling: scope(ceiling),
        keys: vec![jwk(1)],
        tools: vec![],
        data_sources: vec![],
        tags: BTreeSet::new(),
    };
    let td = TrustDomain::parse("acme.example").unwrap();
    let spiffe = SpiffeId::for_agent(&td, new.kind, &new.name);
    s.create_agent(&now(), AgentId::from_uuid(Uuid::now_v7()), &spiffe, &new)
        .await
        .unwrap()
}

/// A task as the server would build it: a root for `initiator`, or a
/// delegation under `parent` (whose initiator and root it inherits).
pub fn task_with_id(
    id: TaskId,
    parent: Option<&Task>,
    initiator: HumanId,
    assignee: &Agent,
    expires_at: i64,
) -> Task {
    Task {
        id,
        parent: parent.map(|p| p.id),
        root: parent.map_or(id, |p| p.root),
        depth: parent.map_or(0, |p| p.depth + 1),
        purpose: format!("work for {}", assignee.name.as_str()),
        initiator: parent.map_or(initiator, |p| p.initiator),
        assignee: assignee.id,
        assignee_spiffe: assignee.spiffe_id.clone(),
        delegator: parent.map(|p| p.assignee),
        scope: Scope::new([Grant::new("invoice.read", "erp:invoices/*").unwrap()]).unwrap(),
        limits: Limits {
            max_calls: Some(10),
            budget: None,
        },
        expires_at: ts(expires_at),
        status: TaskStatus::Open,
        created_at: ts(T0),
        ended_at: None,
        end_reason: None,
    }
}

pub fn task_for(
    parent: Option<&Task>,
    initiator: HumanId,
    assignee: &Agent,
    expires_at: i64,
) -> Task {
    task_with_id(
        TaskId::from_uuid(Uuid::now_v7()),
        parent,
        initiator,
        assignee,
        expires_at,
    )
}

pub fn jti_of(task: &Task) -> String {
    format!("cred-{}", task.id)
}

/// The task with its first credential, consuming `single_use`.
pub fn issue(task: Task, single_use: &[&str]) -> NewTask {
    let credential = CredentialRecord {
        jti: jti_of(&task),
        task: task.id,
        agent: task.assignee,
        kid: "k1".into(),
        issued_at: task.created_at,
        expires_at: task.expires_at.min(ts(T0 + 15 * 60_000)),
        cnf_jkt: Some(format!("jkt-{}", task.assignee)),
        revoked_at: None,
    };
    NewTask {
        chain: vec![
            format!("human:{}", task.initiator),
            task.assignee_spiffe.as_str().to_owned(),
        ],
        single_use: single_use
            .iter()
            .map(|j| ((*j).to_owned(), ts(T0 + 60_000)))
            .collect(),
        task,
        credential,
    }
}

pub async fn root(s: &dyn Store, initiator: HumanId, assignee: &Agent) -> Task {
    let new = issue(task_for(None, initiator, assignee, T0 + HOUR), &[]);
    s.create_task(&now(), &new).await.unwrap();
    new.task
}

pub async fn child(s: &dyn Store, parent: &Task, assignee: &Agent) -> Task {
    let new = issue(
        task_for(Some(parent), parent.initiator, assignee, T0 + HOUR),
        &[],
    );
    s.create_task(&now(), &new).await.unwrap();
    new.task
}

pub async fn stored(s: &dyn Store, id: TaskId) -> Task {
    s.task(id).await.unwrap().expect("task is stored")
}

pub async fn revoked_at(s: &dyn Store, task: &Task) -> Option<Timestamp> {
    s.credential(&jti_of(task))
        .await
        .unwrap()
        .expect("credential is stored")
        .revoked_at
}

/// Every audit event from position `from` on.
pub async fn events_from(s: &dyn Store, from: u64) -> Vec<AuditEvent> {
    s.audit_entries(from, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str::<LogEntry>(&r.entry).unwrap().event)
        .collect()
}

pub fn signer() -> NoteSigner {
    NoteSigner::new(ORIGIN.into(), SigningKey::from_bytes(&[1; 32])).unwrap()
}

/// Signs a checkpoint over the whole log and verifies it; returns the size.
pub async fn verified(s: &dyn Store) -> u64 {
    let mut tree = MerkleTree::new();
    log::checkpoint(s, &mut tree, &signer(), ORIGIN, now().at)
        .await
        .unwrap();
    let verifiers: Vec<NoteVerifier> = vec![signer().verifier()];
    let report = log::verify(s, ORIGIN, &verifiers, None)
        .await
        .unwrap()
        .expect("the audit log verifies");
    assert_eq!(report.entries, s.audit_len().await.unwrap());
    report.entries
}

pub fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Rule(RuleError::Conflict(_)))
}

pub fn is_transition(e: &StoreError) -> bool {
    matches!(e, StoreError::Rule(RuleError::Transition(_)))
}

pub fn ids(tasks: &[Task]) -> BTreeSet<TaskId> {
    tasks.iter().map(|t| t.id).collect()
}

/// Details as the server gives them: JSON text.
pub fn raw(details: serde_json::Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(&details).unwrap()
}

/// `d`'s details as a value.
pub fn details(d: &DecisionWrite) -> serde_json::Value {
    serde_json::from_str(d.details.get()).unwrap()
}

/// Sets `key` in `d`'s details.
pub fn set_detail(d: &mut DecisionWrite, key: &str, value: serde_json::Value) {
    let mut all = details(d);
    all[key] = value;
    d.details = raw(all);
}

/// A decision as the server records it: allows count a call, within the
/// task's limit.
pub fn decision(task: &Task, verdict: Verdict) -> DecisionWrite {
    let id = DecisionId::from_uuid(Uuid::now_v7());
    DecisionWrite {
        id,
        task: task.id,
        agent: task.assignee,
        action: "invoice.read".into(),
        resource: "erp:invoices/7".into(),
        verdict,
        details: raw(json!({ "decision": id, "verdict": verdict.as_str() })),
        max_calls: task.limits.max_calls,
        counts_call: verdict == Verdict::Allow,
        spends_approval: None,
        raises_approval: None,
        spends: None,
    }
}
