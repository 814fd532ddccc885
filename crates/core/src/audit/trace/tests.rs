use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::audit::event::{AuditEvent, GENESIS_PREV};
use crate::outcome::Amount;

const ORCH: &str = "spiffe://acme.example/agent/orchestrator";
const WORKER: &str = "spiffe://acme.example/agent/worker";
const SUB: &str = "spiffe://acme.example/agent/sub";
const OTHER: &str = "spiffe://acme.example/agent/other";
const POLICY: &str = "8328f419515af33ccbb2fc75fa1293cc089ffa13d3a34798cdc7a50955a2eafe";

/// Scenario ids have the top bit clear; the proptest's random ids set it,
/// so the two never meet.
fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn at(i: u64) -> Timestamp {
    Timestamp::from_millis(1_800_000_000_000 + i as i64 * 1000)
}

fn agent_actor(id: AgentId, spiffe: &str) -> Actor {
    Actor::Agent {
        id,
        spiffe_id: spiffe.into(),
    }
}

fn admin() -> Actor {
    Actor::Admin {
        credential: crate::ids::AdminCredentialId::from_uuid(uuid(0xAD)),
    }
}

/// Every id of the scenario, and the leaves the assertions look for.
struct Ids {
    alice: HumanId,
    carol: HumanId,
    mallory: HumanId,
    orch: AgentId,
    worker: AgentId,
    sub: AgentId,
    other_agent: AgentId,
    root: TaskId,
    child: TaskId,
    grandchild: TaskId,
    other: TaskId,
    d_allow: DecisionId,
    d_deny: DecisionId,
    d_needs: DecisionId,
    d_spend: DecisionId,
    d_glass: DecisionId,
    d_other: DecisionId,
    approval: ApprovalId,
    refused: ApprovalId,
    glass: BreakGlassId,
    outcome: OutcomeId,
    other_outcome: OutcomeId,
}

fn ids() -> Ids {
    Ids {
        alice: HumanId::from_uuid(uuid(1)),
        carol: HumanId::from_uuid(uuid(2)),
        mallory: HumanId::from_uuid(uuid(3)),
        orch: AgentId::from_uuid(uuid(11)),
        worker: AgentId::from_uuid(uuid(12)),
        sub: AgentId::from_uuid(uuid(13)),
        other_agent: AgentId::from_uuid(uuid(14)),
        root: TaskId::from_uuid(uuid(21)),
        child: TaskId::from_uuid(uuid(22)),
        grandchild: TaskId::from_uuid(uuid(23)),
        other: TaskId::from_uuid(uuid(24)),
        d_allow: DecisionId::from_uuid(uuid(31)),
        d_deny: DecisionId::from_uuid(uuid(32)),
        d_needs: DecisionId::from_uuid(uuid(33)),
        d_spend: DecisionId::from_uuid(uuid(34)),
        d_glass: DecisionId::from_uuid(uuid(35)),
        d_other: DecisionId::from_uuid(uuid(36)),
        approval: ApprovalId::from_uuid(uuid(41)),
        refused: ApprovalId::from_uuid(uuid(42)),
        glass: BreakGlassId::from_uuid(uuid(51)),
        outcome: OutcomeId::from_uuid(uuid(61)),
        other_outcome: OutcomeId::from_uuid(uuid(62)),
    }
}

// ---- events as the store writes them ------------------------------------------------------

fn human_registered(h: HumanId, name: &str) -> AuditEvent {
    AuditEvent::new(EventKind::HumanRegistered, at(0), admin())
        .human(h)
        .details(
            json!({ "issuer": "https://idp", "subject": name, "display_name": name, "roles": [] }),
        )
}

struct NewTask<'a> {
    id: TaskId,
    parent: Option<TaskId>,
    root: TaskId,
    agent: AgentId,
    initiator: HumanId,
    chain: &'a [&'a str],
    jti: &'a str,
    purpose: &'a str,
    scope: Value,
}

fn created(t: NewTask<'_>) -> AuditEvent {
    let kind = if t.parent.is_some() {
        EventKind::TaskDelegated
    } else {
        EventKind::TaskCreated
    };
    let spiffe = t.chain.last().copied().unwrap_or_default();
    AuditEvent::new(kind, at(1), agent_actor(t.agent, spiffe))
        .task(t.id)
        .agent(t.agent)
        .human(t.initiator)
        .credential(t.jti)
        .chain(t.chain.iter().map(|s| s.to_string()).collect())
        .details(json!({
            "purpose": t.purpose, "scope": t.scope, "limits": { "max_calls": 20 },
            "parent": t.parent, "root": t.root, "depth": t.chain.len() - 2,
            "expires_at": at(900), "credential_expires_at": at(900), "dpop_bound": false,
        }))
}

fn decision(task: TaskId, agent: AgentId, details: Value) -> AuditEvent {
    AuditEvent::new(EventKind::DecisionMade, at(2), agent_actor(agent, "x"))
        .task(task)
        .agent(agent)
        .details(details)
}

fn reason(code: &str, policy: Option<&str>) -> Value {
    json!({ "code": code, "message": format!("because {code}"), "policy_id": policy })
}

fn asked(task: TaskId, agent: AgentId, approval: ApprovalId) -> AuditEvent {
    AuditEvent::new(EventKind::ApprovalRequested, at(3), agent_actor(agent, "x"))
        .task(task)
        .agent(agent)
        .details(json!({
            "approval": approval, "action": "payments.initiate", "resource": "bank:acme/ops",
            "policies": ["large-payment"], "digest": "00", "expires_at": at(600),
        }))
}

fn answered(kind: EventKind, task: TaskId, by: HumanId, approval: ApprovalId) -> AuditEvent {
    AuditEvent::new(kind, at(4), Actor::Human { id: by })
        .task(task)
        .human(by)
        .details(json!({ "approval": approval, "note": "checked the quote" }))
}

fn outcome(t: &Ids, task: TaskId, agent: AgentId, id: OutcomeId, key: &str) -> AuditEvent {
    let record = OutcomeRecord {
        id,
        workflow: WorkflowName::parse("procurement").unwrap(),
        outcome_type: OutcomeType::parse("po.created").unwrap(),
        idempotency_key: IdempotencyKey::parse(key).unwrap(),
        external_ref: Some(key.to_uppercase()),
        task,
        agent,
        initiator: t.alice,
        owner: t.alice,
        chain: vec![t.alice.to_string(), ORCH.into()],
        classification: Classification::Counted,
        explanation: "1 allowed action(s), none denied; task open; chain complete".into(),
        duplicate_of: None,
        currency: "EUR".parse().unwrap(),
        valuation: Valuation {
            value: "50.00".parse::<Amount>().unwrap(),
            cost: "0.50".parse::<Amount>().unwrap(),
            minutes_saved: 0,
            model_tokens: 1000,
        },
        reported_at: at(5),
    };
    AuditEvent::new(EventKind::OutcomeReported, at(5), agent_actor(agent, ORCH))
        .task(task)
        .agent(agent)
        .human(t.alice)
        .credential("jti-root")
        .details(serde_json::to_value(record).unwrap())
}

fn ended(kind: EventKind, task: TaskId, by: Actor, reason: &str, cascade: &[TaskId]) -> AuditEvent {
    AuditEvent::new(kind, at(8), by)
        .task(task)
        .details(json!({ "reason": reason, "credentials_revoked": ["j"], "cascades_to": cascade }))
}

/// Two trees interleaved: Alice's (root -> child -> grandchild) with every
/// kind of item, and Mallory's `other` task, which must never show up.
fn scenario() -> (Vec<LogEntry>, Ids) {
    let t = ids();
    let (alice, carol) = (t.alice.to_string(), t.carol);
    let grant = |a: &str, r: &str| json!([{ "action": a, "resource": r }]);
    let events = vec![
        human_registered(t.alice, "Alice"),
        human_registered(t.carol, "Carol"),
        human_registered(t.mallory, "Mallory"),
        created(NewTask {
            id: t.root,
            parent: None,
            root: t.root,
            agent: t.orch,
            initiator: t.alice,
            chain: &[&alice, ORCH],
            jti: "jti-root",
            purpose: "Buy 20 laptops",
            scope: grant("procurement.*", "erp:*"),
        }),
        created(NewTask {
            id: t.other,
            parent: None,
            root: t.other,
            agent: t.other_agent,
            initiator: t.mallory,
            chain: &[&t.mallory.to_string(), OTHER],
            jti: "jti-other",
            purpose: "Something else",
            scope: grant("x.*", "y:*"),
        }),
        created(NewTask {
            id: t.child,
            parent: Some(t.root),
            root: t.root,
            agent: t.worker,
            initiator: t.alice,
            chain: &[&alice, ORCH, WORKER],
            jti: "jti-child",
            purpose: "Compare suppliers",
            scope: grant("procurement.read", "erp:suppliers/*"),
        }),
        decision(
            t.root,
            t.orch,
            json!({ "decision_id": t.d_allow, "decision": "allow", "policy_hash": POLICY,
                "reasons": [reason("policy_permit", Some("in-scope"))], "task_id": t.root,
                "action": "procurement.read", "resource": "erp:suppliers/1" }),
        ),
        decision(
            t.other,
            t.other_agent,
            json!({ "decision_id": t.d_other, "decision": "allow", "reasons": [],
                "action": "x.y", "resource": "y:1" }),
        ),
        decision(
            t.child,
            t.worker,
            json!({ "decision_id": t.d_deny, "decision": "deny",
                "reasons": [reason("outside_task_scope", None)],
                "action": "procurement.po.create", "resource": "erp:purchase-orders/1" }),
        ),
        asked(t.root, t.orch, t.approval),
        decision(
            t.root,
            t.orch,
            json!({ "decision_id": t.d_needs, "decision": "needs_approval", "policy_hash": POLICY,
                "reasons": [reason("approval_required", Some("large-payment"))],
                "action": "payments.initiate", "resource": "bank:acme/ops", "approval_id": t.approval }),
        ),
        answered(EventKind::ApprovalGranted, t.root, carol, t.approval),
        decision(
            t.root,
            t.orch,
            json!({ "decision_id": t.d_spend, "decision": "allow", "policy_hash": POLICY,
                "reasons": [reason("approval_granted", Some("large-payment"))],
                "action": "payments.initiate", "resource": "bank:acme/ops", "approval_id": t.approval }),
        ),
        AuditEvent::new(EventKind::BreakGlassGranted, at(6), admin())
            .agent(t.worker)
            .details(
                json!({ "id": t.glass, "scope": grant("procurement.po.create", "erp:*"),
                "reason": "INC-4471", "expires_at": at(900) }),
            ),
        decision(
            t.child,
            t.worker,
            json!({ "decision_id": t.d_glass, "decision": "allow",
                "reasons": [reason("outside_task_scope", None), reason("breakglass", None)],
                "action": "procurement.po.create", "resource": "erp:purchase-orders/1",
                "breakglass_id": t.glass }),
        ),
        asked(t.child, t.worker, t.refused),
        answered(EventKind::ApprovalDenied, t.child, carol, t.refused),
        created(NewTask {
            id: t.grandchild,
            parent: Some(t.child),
            root: t.root,
            agent: t.sub,
            initiator: t.alice,
            chain: &[&alice, ORCH, WORKER, SUB],
            jti: "jti-grand",
            purpose: "Read one supplier",
            scope: grant("procurement.read", "erp:suppliers/1"),
        }),
        outcome(&t, t.root, t.orch, t.outcome, "po-77"),
        outcome(&t, t.other, t.other_agent, t.other_outcome, "x-1"),
        AuditEvent::new(EventKind::CredentialRevoked, at(7), agent_actor(t.sub, SUB))
            .task(t.grandchild)
            .agent(t.sub)
            .credential("jti-grand"),
        ended(
            EventKind::TaskCompleted,
            t.root,
            agent_actor(t.orch, ORCH),
            "PO raised",
            &[t.child, t.grandchild],
        ),
        ended(
            EventKind::TaskRevoked,
            t.child,
            agent_actor(t.orch, ORCH),
            "ancestor task was completed",
            &[],
        ),
        ended(
            EventKind::TaskRevoked,
            t.grandchild,
            agent_actor(t.orch, ORCH),
            "ancestor task was completed",
            &[],
        ),
        ended(EventKind::TaskRevoked, t.other, admin(), "stop", &[]),
        AuditEvent::new(
            EventKind::BreakGlassReviewed,
            at(9),
            Actor::Human { id: t.carol },
        )
        .agent(t.worker)
        .human(t.carol)
        .details(json!({ "id": t.glass, "note": "justified" })),
    ];
    (entries(events), t)
}

fn entries(events: Vec<AuditEvent>) -> Vec<LogEntry> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| LogEntry::new(i as u64, &GENESIS_PREV, e))
        .collect()
}

fn trace(log: &[LogEntry], tracer: Tracer) -> Result<Trace, TraceError> {
    tracer.run(|| log.iter())
}

fn decision_ids(n: &TaskNode) -> Vec<DecisionId> {
    n.events
        .iter()
        .filter_map(|i| match &i.event {
            TraceEvent::Decision(d) => Some(d.id),
            _ => None,
        })
        .collect()
}

fn types(n: &TaskNode) -> Vec<String> {
    n.events
        .iter()
        .map(|i| {
            serde_json::to_value(i).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

// ---- the tree ----------------------------------------------------------------------

#[test]
fn a_task_traces_to_its_whole_tree_with_every_item_in_log_order() {
    let (log, t) = scenario();
    let tr = trace(&log, Tracer::new(TraceTarget::Task(t.root))).unwrap();
    assert_eq!(tr.root, t.root);
    assert_eq!(tr.initiator, t.alice);
    assert_eq!(tr.target, TraceTarget::Task(t.root));
    assert_eq!(tr.target_leaf, 3);
    assert_eq!(tr.log_size, log.len() as u64);
    let order: Vec<TaskId> = tr.tasks.iter().map(|n| n.id).collect();
    assert_eq!(order, [t.root, t.child, t.grandchild]);

    let root = &tr.tasks[0];
    assert_eq!(root.purpose, "Buy 20 laptops");
    assert_eq!((root.agent, root.agent_spiffe.as_str()), (t.orch, ORCH));
    assert_eq!(root.delegator, None);
    assert_eq!(root.jti.as_deref(), Some("jti-root"));
    assert_eq!(root.leaf, 3);
    assert_eq!(
        types(root),
        [
            "decision",
            "approval_requested",
            "decision",
            "approval_granted",
            "decision",
            "outcome"
        ]
    );
    assert_eq!(decision_ids(root), [t.d_allow, t.d_needs, t.d_spend]);
    let TraceEvent::Decision(first) = &root.events[0].event else {
        panic!("{:?}", root.events[0])
    };
    assert_eq!(first.verdict, Verdict::Allow);
    assert_eq!(first.policy_hash.as_deref(), Some(POLICY));
    assert_eq!(first.reasons[0].code, "policy_permit");
    assert_eq!(first.reasons[0].policy_id.as_deref(), Some("in-scope"));
    assert_eq!(root.events[0].leaf, 6);
    let TraceEvent::ApprovalGranted(a) = &root.events[3].event else {
        panic!("{:?}", root.events[3])
    };
    assert_eq!((a.approval, a.by), (t.approval, t.carol));
    let TraceEvent::Outcome(o) = &root.events[5].event else {
        panic!("{:?}", root.events[5])
    };
    assert_eq!(o.id, t.outcome);
    assert_eq!(o.idempotency_key.as_str(), "po-77");
    assert_eq!(o.classification, Classification::Counted);
    let end = root.ended.as_ref().unwrap();
    assert_eq!(end.status, TaskStatus::Completed);
    assert_eq!((end.reason.as_str(), end.cascade_from), ("PO raised", None));

    let child = &tr.tasks[1];
    assert_eq!(child.parent, Some(t.root));
    assert_eq!(child.delegator.as_deref(), Some(ORCH));
    assert_eq!(child.agent_spiffe, WORKER);
    assert_eq!(
        child.scope.grants().next().unwrap().to_string(),
        "procurement.read on erp:suppliers/*"
    );
    assert_eq!(
        types(child),
        [
            "decision",
            "decision",
            "approval_requested",
            "approval_denied"
        ]
    );
    assert_eq!(decision_ids(child), [t.d_deny, t.d_glass]);
    let end = child.ended.as_ref().unwrap();
    assert_eq!(
        (end.status, end.cascade_from),
        (TaskStatus::Revoked, Some(t.root))
    );

    let grand = &tr.tasks[2];
    assert_eq!(
        (grand.parent, grand.delegator.as_deref()),
        (Some(t.child), Some(WORKER))
    );
    assert_eq!(types(grand), ["credential_revoked"]);
    assert_eq!(grand.ended.as_ref().unwrap().cascade_from, Some(t.root));

    // Names from the registrations; the grant with its review.
    assert_eq!(
        tr.humans.keys().copied().collect::<Vec<_>>(),
        [t.alice, t.carol]
    );
    assert_eq!(tr.humans[&t.carol].display_name, "Carol");
    assert_eq!(tr.humans[&t.alice].leaf, 0);
    assert_eq!(tr.breakglass.len(), 1);
    let g = &tr.breakglass[0];
    assert_eq!(
        (g.id, g.reason.as_str(), g.agent),
        (t.glass, "INC-4471", t.worker)
    );
    assert_eq!(g.review.as_ref().unwrap().by, t.carol);
}

#[test]
fn another_tree_interleaved_never_appears() {
    let (log, t) = scenario();
    let tr = trace(&log, Tracer::new(TraceTarget::Task(t.root))).unwrap();
    let json = serde_json::to_string(&tr).unwrap();
    for foreign in [
        t.other.to_string(),
        t.mallory.to_string(),
        t.other_agent.to_string(),
        t.d_other.to_string(),
        t.other_outcome.to_string(),
        "jti-other".into(),
        OTHER.into(),
    ] {
        assert!(!json.contains(&foreign), "{foreign} leaked into {json}");
    }
    // And the other tree traces to itself alone.
    let other = trace(&log, Tracer::new(TraceTarget::Task(t.other))).unwrap();
    assert_eq!(other.tasks.len(), 1);
    assert_eq!(decision_ids(&other.tasks[0]), [t.d_other]);
    assert_eq!(types(&other.tasks[0]), ["decision", "outcome"]);
    assert_eq!(other.humans[&t.mallory].display_name, "Mallory");
}

#[test]
fn a_decision_a_jti_an_outcome_or_a_subtask_find_the_same_tree() {
    let (log, t) = scenario();
    let whole = trace(&log, Tracer::new(TraceTarget::Task(t.root))).unwrap();
    for (target, leaf) in [
        (TraceTarget::Decision(t.d_glass), 14),
        (TraceTarget::Decision(t.d_allow), 6),
        (TraceTarget::Jti("jti-grand".into()), 17),
        (TraceTarget::Outcome(t.outcome), 18),
        (TraceTarget::Task(t.grandchild), 17),
    ] {
        let tr = trace(&log, Tracer::new(target.clone())).unwrap();
        assert_eq!((&tr.target, tr.target_leaf), (&target, leaf));
        assert_eq!(
            Trace {
                target: whole.target.clone(),
                target_leaf: whole.target_leaf,
                ..tr
            },
            whole,
            "{target}"
        );
    }
}

#[test]
fn one_string_is_identified_by_the_log() {
    let (log, t) = scenario();
    for (text, want) in [
        (t.root.to_string(), TraceTarget::Task(t.root)),
        (t.d_deny.to_string(), TraceTarget::Decision(t.d_deny)),
        (t.outcome.to_string(), TraceTarget::Outcome(t.outcome)),
        ("jti-child".to_owned(), TraceTarget::Jti("jti-child".into())),
    ] {
        let tr = trace(&log, Tracer::for_text(&text)).unwrap();
        assert_eq!(tr.target, want);
        assert_eq!(tr.root, t.root);
    }
}

#[test]
fn a_target_not_in_the_log_is_an_error_naming_it() {
    let (log, _) = scenario();
    let err = trace(&log, Tracer::for_text("nonsense")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no task, decision, outcome or credential (jti) \"nonsense\" in the audit log"
    );
    let unknown = TaskId::from_uuid(uuid(999));
    let err = trace(&log, Tracer::new(TraceTarget::Task(unknown))).unwrap_err();
    assert_eq!(err, TraceError::NotFound(format!("task {unknown}")));
    // An approval id is not something to trace from.
    let err = trace(&log, Tracer::for_text(&ids().approval.to_string())).unwrap_err();
    assert!(matches!(err, TraceError::NotFound(_)), "{err}");
    assert!(trace(&[], Tracer::new(TraceTarget::Jti("j".into()))).is_err());
}

#[test]
fn a_decision_whose_task_was_never_created_is_an_error() {
    let t = ids();
    let log = entries(vec![decision(
        t.root,
        t.orch,
        json!({ "decision_id": t.d_allow, "decision": "allow", "reasons": [],
            "action": "a", "resource": "r" }),
    )]);
    let err = trace(&log, Tracer::new(TraceTarget::Decision(t.d_allow))).unwrap_err();
    assert_eq!(
        err,
        TraceError::NoCreation {
            task: t.root,
            target: TraceTarget::Decision(t.d_allow)
        }
    );
}

#[test]
fn an_unreadable_entry_of_the_tree_is_named() {
    let (mut log, t) = scenario();
    log[8].event.details = json!({ "decision": "maybe" });
    let err = trace(&log, Tracer::new(TraceTarget::Task(t.root))).unwrap_err();
    assert!(
        matches!(
            err,
            TraceError::Malformed {
                index: 8,
                kind: "decision.made",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn the_trace_round_trips_through_json() {
    let (log, t) = scenario();
    let tr = trace(&log, Tracer::new(TraceTarget::Outcome(t.outcome))).unwrap();
    let v = serde_json::to_value(&tr).unwrap();
    assert_eq!(v["target"], json!({ "kind": "outcome", "id": t.outcome }));
    assert_eq!(v["tasks"][0]["events"][0]["type"], "decision");
    assert_eq!(v["tasks"][0]["events"][0]["verdict"], "allow");
    assert_eq!(v["tasks"][0]["events"][5]["idempotency_key"], "po-77");
    assert_eq!(v["tasks"][1]["ended"]["cascade_from"], json!(t.root));
    let back: Trace = serde_json::from_value(v).unwrap();
    assert_eq!(back, tr);
}

#[test]
fn later_passes_skip_what_they_do_not_need() {
    let (log, t) = scenario();
    let mut read = Vec::new();
    let mut tracer = Tracer::new(TraceTarget::Decision(t.d_glass));
    loop {
        let start = tracer.start();
        let mut n = 0;
        for e in log.iter().skip(start as usize) {
            n += 1;
            if tracer.feed(e).is_break() {
                break;
            }
        }
        read.push((start, n));
        match tracer.end_pass().unwrap() {
            Next::Pass(next) => tracer = next,
            Next::Done(_) => break,
        }
    }
    // Find the decision; find its task's creation (the child, not the root:
    // the collect pass then starts at 0); collect; name (to the review, the
    // last entry, since a break-glass grant was used).
    assert_eq!(read, [(0, 15), (0, 6), (0, 26), (0, 26)]);
    // A root task's id: its creation is the root's, so collection starts there.
    let mut tracer = Tracer::new(TraceTarget::Task(t.root));
    for e in &log {
        if tracer.feed(e).is_break() {
            break;
        }
    }
    let Next::Pass(tracer) = tracer.end_pass().unwrap() else {
        panic!("a trace needs more than one pass")
    };
    assert_eq!(tracer.start(), 3);
}

// ---- arbitrary unrelated entries ------------------------------------------------------------

const KINDS: [EventKind; 28] = [
    EventKind::SystemInitialized,
    EventKind::AdminCredentialCreated,
    EventKind::HumanRegistered,
    EventKind::HumanDeactivated,
    EventKind::AgentRegistered,
    EventKind::AgentSuspended,
    EventKind::AgentResumed,
    EventKind::AgentRetired,
    EventKind::AgentOwnerTransferred,
    EventKind::AgentKeyAdded,
    EventKind::AgentKeyRemoved,
    EventKind::IssuerTrusted,
    EventKind::SigningKeyRotated,
    EventKind::TaskCreated,
    EventKind::TaskDelegated,
    EventKind::TaskCompleted,
    EventKind::TaskFailed,
    EventKind::TaskRevoked,
    EventKind::CredentialRevoked,
    EventKind::PolicyActivated,
    EventKind::DecisionMade,
    EventKind::ApprovalRequested,
    EventKind::ApprovalGranted,
    EventKind::ApprovalDenied,
    EventKind::BreakGlassGranted,
    EventKind::BreakGlassReviewed,
    EventKind::WorkflowRegistered,
    EventKind::OutcomeReported,
];

/// A random id that no scenario id equals (top bit set).
fn foreign() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(|n| Uuid::from_u128(n | (1 << 127)))
}

fn details() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<String>().prop_map(Value::String),
        (foreign(), foreign()).prop_map(|(a, b)| json!({
            "parent": a, "root": b, "decision_id": a, "id": b, "approval": a,
            "display_name": "Eve", "cascades_to": [a],
        })),
        (foreign(), any::<i64>()).prop_map(|(a, n)| json!({
            "purpose": n, "scope": "all", "parent": a, "decision": n, "reasons": a,
        })),
    ]
}

fn unrelated() -> impl Strategy<Value = AuditEvent> {
    (
        0..KINDS.len(),
        proptest::option::of(foreign()),
        proptest::option::of(foreign()),
        proptest::option::of(foreign()),
        proptest::option::of("f-[a-z0-9]{1,8}"),
        proptest::collection::vec(".{0,12}", 0..4),
        details(),
    )
        .prop_map(|(k, task, human, agent, jti, chain, details)| AuditEvent {
            kind: KINDS[k],
            at: at(k as u64),
            request_id: None,
            actor: admin(),
            human: human.map(HumanId::from_uuid),
            agent: agent.map(AgentId::from_uuid),
            task: task.map(TaskId::from_uuid),
            credential: jti,
            chain,
            details,
        })
}

/// Alice's tree only (no other tree), as events.
fn related() -> (Vec<AuditEvent>, Ids) {
    let (log, t) = scenario();
    let foreign_tasks = [t.other];
    let keep = |e: &AuditEvent| {
        !e.task.is_some_and(|x| foreign_tasks.contains(&x)) && e.human != Some(t.mallory)
    };
    let events = log.into_iter().map(|e| e.event).filter(keep).collect();
    (events, t)
}

/// The related events in order, with `fillers` placed `gaps[i]` before the
/// i-th (and the rest after the last).
fn interleave(related: &[AuditEvent], gaps: &[usize], fillers: &[AuditEvent]) -> Vec<LogEntry> {
    let mut out = Vec::new();
    let mut f = fillers.iter();
    for (i, gap) in gaps.iter().enumerate() {
        out.extend(f.by_ref().take(*gap).cloned());
        if let Some(e) = related.get(i) {
            out.push(e.clone());
        }
    }
    out.extend(f.cloned());
    entries(out)
}

fn layouts() -> impl Strategy<Value = (Vec<usize>, Vec<AuditEvent>, Vec<AuditEvent>)> {
    let n = related().0.len() + 1;
    proptest::collection::vec(0..3usize, n).prop_flat_map(|gaps| {
        let fillers = gaps.iter().sum::<usize>();
        (
            Just(gaps),
            proptest::collection::vec(unrelated(), fillers),
            proptest::collection::vec(unrelated(), fillers),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn unrelated_entries_never_change_the_trace((gaps, a, b) in layouts()) {
        let (related, t) = related();
        let log_a = interleave(&related, &gaps, &a);
        let log_b = interleave(&related, &gaps, &b);
        for target in [
            TraceTarget::Task(t.root),
            TraceTarget::Decision(t.d_glass),
            TraceTarget::Jti("jti-child".into()),
            TraceTarget::Outcome(t.outcome),
        ] {
            let from_a = trace(&log_a, Tracer::new(target.clone()));
            let from_b = trace(&log_b, Tracer::new(target.clone()));
            prop_assert!(from_a.is_ok(), "{target}: {from_a:?}");
            prop_assert_eq!(&from_a, &from_b);
            let tr = from_a.unwrap();
            prop_assert_eq!(tr.tasks.len(), 3);
            prop_assert_eq!(tr.humans.len(), 2);
        }
    }

    #[test]
    fn tracing_anything_in_an_arbitrary_log_never_panics(
        events in proptest::collection::vec(unrelated(), 0..40),
        text in ".{0,40}",
        pick in any::<prop::sample::Index>(),
    ) {
        let log = entries(events);
        let _ = trace(&log, Tracer::for_text(&text));
        if !log.is_empty() {
            let e = &log[pick.index(log.len())].event;
            for t in [e.task.map(|t| t.to_string()), e.credential.clone()].into_iter().flatten() {
                let _ = trace(&log, Tracer::for_text(&t));
            }
        }
    }
}

#[test]
fn a_gateway_call_follows_its_decision_in_the_trace() {
    use crate::tool_call::{CallStatus, Channel, ToolCall};
    let (mut log, t) = scenario();
    let call = ToolCall {
        decision: DecisionId::from_uuid(uuid(900)),
        task: t.root,
        agent: t.orch,
        channel: Channel::Mcp,
        upstream: "erp".into(),
        target: "lookup_supplier".into(),
        status: CallStatus::Answered {
            status: 200,
            tool_error: false,
        },
        duration_us: 1234,
        arguments: None,
        result: None,
    };
    let event = AuditEvent::new(EventKind::GatewayCall, at(9), agent_actor(t.orch, ORCH))
        .task(t.root)
        .agent(t.orch)
        .details(serde_json::to_value(&call).unwrap());
    let mut events: Vec<AuditEvent> = log.drain(..).map(|e| e.event).collect();
    events.push(event);
    let log = entries(events);
    let tr = trace(&log, Tracer::new(TraceTarget::Task(t.root))).unwrap();
    let last = tr.tasks[0].events.last().unwrap();
    assert_eq!(last.event, TraceEvent::ToolCall(call));
    assert_eq!(last.leaf, log.len() as u64 - 1);
}

// ---- feeding only what each pass needs ----------------------------------------------

/// Feeds each pass only the entries [`Tracer::need`] names, as a store with
/// indexes by task, tree root and human does (and the whole log where it
/// says so, or where a task's entries did not end the pass).
fn trace_by_need(log: &[LogEntry], mut tracer: Tracer) -> Result<Trace, TraceError> {
    fn feed<'a>(tracer: &mut Tracer, entries: impl Iterator<Item = &'a LogEntry>) -> bool {
        for e in entries {
            if tracer.feed(e).is_break() {
                return true;
            }
        }
        false
    }
    loop {
        let start = tracer.start();
        let from_start = log.iter().filter(|e| e.index >= start);
        match tracer.need() {
            Need::Task(task) => {
                let of_task = log.iter().filter(|e| e.event.task == Some(task));
                if !feed(&mut tracer, of_task) {
                    feed(&mut tracer, from_start);
                }
            }
            Need::Tree(root) => {
                let tasks: BTreeSet<TaskId> = log
                    .iter()
                    .filter(|e| {
                        is_creation(e.event.kind) && detail_uuid(e, "root") == Some(*root.as_uuid())
                    })
                    .filter_map(|e| e.event.task)
                    .collect();
                let of_tree =
                    from_start.filter(|e| e.event.task.is_some_and(|t| tasks.contains(&t)));
                feed(&mut tracer, of_tree);
                tracer.read_to(log.len() as u64);
            }
            Need::Registrations(humans) => {
                let registered = log.iter().filter(|e| {
                    e.event.kind == EventKind::HumanRegistered
                        && e.event.human.is_some_and(|h| humans.contains(&h))
                });
                feed(&mut tracer, registered);
            }
            Need::Log => {
                feed(&mut tracer, from_start);
            }
        }
        match tracer.end_pass()? {
            Next::Pass(next) => tracer = next,
            Next::Done(trace) => return Ok(trace),
        }
    }
}

#[test]
fn feeding_only_what_each_pass_needs_gives_the_same_trace() {
    let (log, t) = scenario();
    let mut targets: Vec<Box<dyn Fn() -> Tracer>> = Vec::new();
    for target in [
        TraceTarget::Task(t.root),
        TraceTarget::Task(t.grandchild),
        TraceTarget::Task(t.other),
        TraceTarget::Decision(t.d_glass),
        TraceTarget::Outcome(t.other_outcome),
        TraceTarget::Jti("jti-child".into()),
        TraceTarget::Task(TaskId::from_uuid(uuid(99))),
    ] {
        targets.push(Box::new(move || Tracer::new(target.clone())));
    }
    for text in [
        t.child.to_string(),
        t.d_deny.to_string(),
        t.outcome.to_string(),
        "jti-child".to_owned(),
        "nonsense".to_owned(),
    ] {
        targets.push(Box::new(move || Tracer::for_text(&text)));
    }
    let mut traced = 0;
    for make in &targets {
        let whole = trace(&log, make());
        assert_eq!(trace_by_need(&log, make()), whole);
        traced += usize::from(whole.is_ok());
    }
    assert_eq!(traced, targets.len() - 2, "only the unknown targets fail");
}
