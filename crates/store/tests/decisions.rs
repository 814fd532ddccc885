//! Conformance cases for policy versions, decisions and what they spend
//! (calls, approvals), approvals and break-glass grants, run on both
//! backends like `tasks.rs`.
//!
//! The cases are adversarial where money would be: concurrent requests race
//! for the last calls of a task and for one approval, expired and used
//! approvals are offered again, and every refused spend must leave nothing
//! behind (no call counted, no event).

use std::collections::BTreeSet;
use std::sync::Arc;

use mandate_core::RuleError;
use mandate_core::agent::Agent;
use mandate_core::approval::{APPROVAL_TTL_MS, Approval, ApprovalStatus};
use mandate_core::audit::{Actor, EventKind};
use mandate_core::breakglass::{BreakGlass, DEFAULT_MAX_TTL_MS};
use mandate_core::decision::Verdict;
use mandate_core::human::HumanRole;
use mandate_core::ids::{AgentId, ApprovalId, BreakGlassId, HumanId, TaskId};
use mandate_core::scope::{Grant, Scope};
use mandate_core::task::Task;
use mandate_store::testing::{TestStore, execute_raw};
use mandate_store::{
    ApprovalFilter, DecisionWrite, HumanFilter, PageRequest, Recorded, Store, StoreError,
};
use serde_json::json;
use uuid::Uuid;

mod common;
use common::*;

// ---- setup -----------------------------------------------------------------------

/// Alice starts the work, Bob approves, the agent works on one root task
/// allowed `max_calls` calls.
struct World {
    alice: HumanId,
    bob: HumanId,
    agent: Agent,
    task: Task,
}

async fn world(s: &dyn Store, max_calls: Option<u64>) -> World {
    let alice = human(s, "alice").await;
    let bob = human_with(s, IDP, "bob", &[HumanRole::Approver]).await;
    let agent = agent(s, "procurement", alice).await;
    let task = task_in(s, alice, &agent, max_calls).await;
    World {
        alice,
        bob,
        agent,
        task,
    }
}

async fn task_in(s: &dyn Store, initiator: HumanId, agent: &Agent, max: Option<u64>) -> Task {
    let mut t = task_for(None, initiator, agent, T0 + HOUR);
    t.limits.max_calls = max;
    let new = issue(t, &[]);
    s.create_task(&now(), &new).await.unwrap();
    new.task
}

/// A pending approval for `digest` of `task`, requested at `requested`.
fn pending(task: &Task, digest: &str, requested: i64) -> Approval {
    Approval {
        id: ApprovalId::from_uuid(Uuid::now_v7()),
        task: task.id,
        agent: task.assignee,
        initiator: task.initiator,
        action: "invoice.read".into(),
        resource: "erp:invoices/7".into(),
        digest: digest.into(),
        policies: vec!["large-payment".into()],
        context: serde_json::json!({ "amount": 250_000, "purpose": "quarterly payment" }),
        status: ApprovalStatus::Pending,
        requested_at: ts(requested),
        expires_at: ts(requested + APPROVAL_TTL_MS),
        decided_by: None,
        decided_at: None,
        note: None,
    }
}

/// Records the needs-approval decision that raises `a`.
async fn raise(s: &dyn Store, task: &Task, a: &Approval) {
    let mut d = decision(task, Verdict::NeedsApproval);
    d.raises_approval = Some(a.clone());
    assert_eq!(
        s.record_decision(&at(a.requested_at.as_millis()), &d)
            .await
            .unwrap(),
        Recorded::Done
    );
}

/// The allow decision that spends approval `id`.
fn spending(task: &Task, id: ApprovalId) -> DecisionWrite {
    let mut d = decision(task, Verdict::Allow);
    d.spends_approval = Some(id);
    d
}

fn as_human(id: HumanId, ms: i64) -> mandate_store::Change {
    mandate_store::Change {
        actor: Actor::Human { id },
        at: ts(ms),
        request_id: Some("req-h".into()),
    }
}

fn kinds(events: &[mandate_core::audit::AuditEvent]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

fn is_invalid(e: &StoreError) -> bool {
    matches!(e, StoreError::Rule(RuleError::Invalid { .. }))
}

fn is_not_found(e: &StoreError) -> bool {
    matches!(e, StoreError::NotFound(_))
}

// ---- calls ------------------------------------------------------------------------

async fn the_call_limit_holds_under_concurrency(t: TestStore) {
    let s: Arc<dyn Store> = t.store.clone();
    let w = world(&*s, Some(5)).await;
    let before = s.audit_len().await.unwrap();

    let racers: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            let d = decision(&w.task, Verdict::Allow);
            tokio::spawn(async move { s.record_decision(&at(T0 + i), &d).await.unwrap() })
        })
        .collect();
    let mut done = 0;
    let mut over = 0;
    for r in racers {
        match r.await.unwrap() {
            Recorded::Done => done += 1,
            Recorded::OverLimit => over += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((done, over), (5, 15));
    assert_eq!(s.calls_used(w.task.id).await.unwrap(), 5);
    let evs = events_from(&*s, before).await;
    assert_eq!(kinds(&evs), vec![EventKind::DecisionMade; 5]);
    for e in &evs {
        assert_eq!((e.task, e.agent), (Some(w.task.id), Some(w.agent.id)));
        assert_eq!(e.details["verdict"], json!("allow"));
    }

    // At the limit: another allow writes nothing; a refusal is still recorded
    // without counting.
    let len = s.audit_len().await.unwrap();
    let d = decision(&w.task, Verdict::Allow);
    assert_eq!(
        s.record_decision(&now(), &d).await.unwrap(),
        Recorded::OverLimit
    );
    assert_eq!(
        s.audit_len().await.unwrap(),
        len,
        "an over-limit call wrote"
    );
    let d = decision(&w.task, Verdict::Deny);
    assert_eq!(s.record_decision(&now(), &d).await.unwrap(), Recorded::Done);
    assert_eq!(s.calls_used(w.task.id).await.unwrap(), 5);
    let last = events_from(&*s, len).await;
    assert_eq!(kinds(&last), vec![EventKind::DecisionMade]);
    assert_eq!(last[0].details, details(&d));
    verified(&*s).await;
}

async fn calls_without_a_limit_are_counted_and_refusals_are_not(t: TestStore) {
    let s = &*t.store;
    let w = world(s, None).await;
    assert_eq!(s.calls_used(w.task.id).await.unwrap(), 0);
    for _ in 0..3 {
        let d = decision(&w.task, Verdict::Allow);
        assert_eq!(s.record_decision(&now(), &d).await.unwrap(), Recorded::Done);
    }
    let d = decision(&w.task, Verdict::Deny);
    assert_eq!(s.record_decision(&now(), &d).await.unwrap(), Recorded::Done);
    assert_eq!(s.calls_used(w.task.id).await.unwrap(), 3);

    // A limit of zero allows nothing.
    let none = task_in(s, w.alice, &w.agent, Some(0)).await;
    let d = decision(&none, Verdict::Allow);
    assert_eq!(
        s.record_decision(&now(), &d).await.unwrap(),
        Recorded::OverLimit
    );
    assert_eq!(s.calls_used(none.id).await.unwrap(), 0);

    // Unknown tasks are refused, for counting and reading alike.
    let ghost = TaskId::from_uuid(Uuid::now_v7());
    let mut d = decision(&w.task, Verdict::Allow);
    d.task = ghost;
    let len = s.audit_len().await.unwrap();
    assert!(is_not_found(
        &s.record_decision(&now(), &d).await.unwrap_err()
    ));
    d.counts_call = false;
    assert!(is_not_found(
        &s.record_decision(&now(), &d).await.unwrap_err()
    ));
    assert!(is_not_found(&s.calls_used(ghost).await.unwrap_err()));
    assert_eq!(s.audit_len().await.unwrap(), len);
    verified(s).await;
}

// ---- approvals ------------------------------------------------------------------

async fn an_approval_is_raised_answered_and_spent_exactly_once(t: TestStore) {
    let s: Arc<dyn Store> = t.store.clone();
    let w = world(&*s, Some(10)).await;
    let before = s.audit_len().await.unwrap();

    let a = pending(&w.task, "digest-1", T0);
    raise(&*s, &w.task, &a).await;
    assert_eq!(s.approval(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        s.approval_for(w.task.id, "digest-1").await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(s.approval_for(w.task.id, "digest-2").await.unwrap(), None);
    assert_eq!(
        s.calls_used(w.task.id).await.unwrap(),
        0,
        "asking is not a call"
    );
    let evs = events_from(&*s, before).await;
    assert_eq!(
        kinds(&evs),
        vec![EventKind::ApprovalRequested, EventKind::DecisionMade]
    );
    assert_eq!(
        (evs[0].task, evs[0].agent),
        (Some(w.task.id), Some(w.agent.id))
    );
    assert_eq!(evs[0].details["approval"], json!(a.id));
    assert_eq!(evs[0].details["action"], json!(a.action));
    assert_eq!(evs[0].details["resource"], json!(a.resource));
    assert_eq!(evs[0].details["policies"], json!(a.policies));

    // Pending unlocks nothing: the spend is refused and its counted call undone.
    let len = s.audit_len().await.unwrap();
    assert_eq!(
        s.record_decision(&at(T0 + 1), &spending(&w.task, a.id))
            .await
            .unwrap(),
        Recorded::ApprovalSpent
    );
    assert_eq!(s.calls_used(w.task.id).await.unwrap(), 0);
    assert_eq!(s.audit_len().await.unwrap(), len);

    // Bob approves.
    let got = s
        .answer_approval(&as_human(w.bob, T0 + 2), a.id, true, w.bob, Some("ok"))
        .await
        .unwrap();
    assert_eq!(got.status, ApprovalStatus::Approved);
    assert_eq!(
        (got.decided_by, got.decided_at, got.note.as_deref()),
        (Some(w.bob), Some(ts(T0 + 2)), Some("ok"))
    );
    assert_eq!(s.approval(a.id).await.unwrap(), Some(got.clone()));
    let evs = events_from(&*s, len).await;
    assert_eq!(kinds(&evs), vec![EventKind::ApprovalGranted]);
    assert_eq!(
        (evs[0].task, evs[0].human, evs[0].actor.clone()),
        (Some(w.task.id), Some(w.bob), Actor::Human { id: w.bob })
    );
    assert_eq!(evs[0].details, json!({ "approval": a.id, "note": "ok" }));

    // An answer is given once, whichever way.
    for approve in [true, false] {
        let e = s
            .answer_approval(&as_human(w.bob, T0 + 3), a.id, approve, w.bob, None)
            .await
            .unwrap_err();
        assert!(is_transition(&e), "{e}");
    }

    // Another task's decision cannot spend it.
    let other = task_in(&*s, w.alice, &w.agent, Some(10)).await;
    assert_eq!(
        s.record_decision(&at(T0 + 3), &spending(&other, a.id))
            .await
            .unwrap(),
        Recorded::ApprovalSpent
    );
    assert_eq!(s.calls_used(other.id).await.unwrap(), 0);

    // Two requests race to spend it: one wins.
    let len = s.audit_len().await.unwrap();
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let s = s.clone();
            let d = spending(&w.task, a.id);
            tokio::spawn(async move { s.record_decision(&at(T0 + 4), &d).await.unwrap() })
        })
        .collect();
    let mut outcomes = Vec::new();
    for r in racers {
        outcomes.push(r.await.unwrap());
    }
    outcomes.sort_by_key(|o| *o != Recorded::Done);
    assert_eq!(outcomes, vec![Recorded::Done, Recorded::ApprovalSpent]);
    assert_eq!(s.calls_used(w.task.id).await.unwrap(), 1);
    assert_eq!(
        s.approval(a.id).await.unwrap().unwrap().status,
        ApprovalStatus::Used
    );
    let evs = events_from(&*s, len).await;
    assert_eq!(kinds(&evs), vec![EventKind::DecisionMade]);

    // Spent is spent, and cannot be answered either.
    assert_eq!(
        s.record_decision(&at(T0 + 5), &spending(&w.task, a.id))
            .await
            .unwrap(),
        Recorded::ApprovalSpent
    );
    assert!(is_transition(
        &s.answer_approval(&as_human(w.bob, T0 + 5), a.id, true, w.bob, None)
            .await
            .unwrap_err()
    ));
    assert_eq!(s.calls_used(w.task.id).await.unwrap(), 1);
    verified(&*s).await;
}

async fn an_expired_approval_can_be_neither_answered_nor_spent(t: TestStore) {
    let s = &*t.store;
    let w = world(s, Some(10)).await;

    // Answered too late.
    let late = pending(&w.task, "late", T0);
    raise(s, &w.task, &late).await;
    let expiry = late.expires_at.as_millis();
    let len = s.audit_len().await.unwrap();
    for ms in [expiry, expiry + 1] {
        let e = s
            .answer_approval(&as_human(w.bob, ms), late.id, true, w.bob, None)
            .await
            .unwrap_err();
        assert!(is_transition(&e), "{e}");
    }
    assert_eq!(s.approval(late.id).await.unwrap(), Some(late.clone()));

    // Approved in time, spent too late.
    let a = pending(&w.task, "stale", T0);
    raise(s, &w.task, &a).await;
    s.answer_approval(&as_human(w.bob, T0 + 1), a.id, true, w.bob, None)
        .await
        .unwrap();
    let len2 = s.audit_len().await.unwrap();
    assert_eq!(len2, len + 3, "one raise (two events) and one answer");
    assert_eq!(
        s.record_decision(&at(expiry), &spending(&w.task, a.id))
            .await
            .unwrap(),
        Recorded::ApprovalSpent
    );
    assert_eq!(s.audit_len().await.unwrap(), len2);
    assert_eq!(s.calls_used(w.task.id).await.unwrap(), 0);
    assert_eq!(
        s.approval(a.id).await.unwrap().unwrap().status,
        ApprovalStatus::Approved
    );
    // Just before expiry it still works.
    assert_eq!(
        s.record_decision(&at(expiry - 1), &spending(&w.task, a.id))
            .await
            .unwrap(),
        Recorded::Done
    );
    verified(s).await;
}

async fn a_denied_or_unknown_approval_unlocks_nothing(t: TestStore) {
    let s = &*t.store;
    let w = world(s, Some(10)).await;
    let a = pending(&w.task, "d", T0);
    raise(s, &w.task, &a).await;
    let len = s.audit_len().await.unwrap();
    let got = s
        .answer_approval(
            &as_human(w.bob, T0 + 1),
            a.id,
            false,
            w.bob,
            Some("too much"),
        )
        .await
        .unwrap();
    assert_eq!(got.status, ApprovalStatus::Denied);
    let evs = events_from(s, len).await;
    assert_eq!(kinds(&evs), vec![EventKind::ApprovalDenied]);
    assert_eq!(evs[0].human, Some(w.bob));
    assert_eq!(evs[0].details["note"], json!("too much"));
    assert_eq!(
        s.record_decision(&at(T0 + 2), &spending(&w.task, a.id))
            .await
            .unwrap(),
        Recorded::ApprovalSpent
    );
    let ghost = ApprovalId::from_uuid(Uuid::now_v7());
    assert_eq!(
        s.record_decision(&at(T0 + 2), &spending(&w.task, ghost))
            .await
            .unwrap(),
        Recorded::ApprovalSpent
    );
    assert!(is_not_found(
        &s.answer_approval(&as_human(w.bob, T0 + 2), ghost, true, w.bob, None)
            .await
            .unwrap_err()
    ));
    // An answer by nobody known is refused and leaves it pending.
    let b = pending(&w.task, "e", T0);
    raise(s, &w.task, &b).await;
    let nobody = HumanId::from_uuid(Uuid::now_v7());
    assert!(is_not_found(
        &s.answer_approval(&as_human(nobody, T0 + 2), b.id, true, nobody, None)
            .await
            .unwrap_err()
    ));
    assert_eq!(
        s.approval(b.id).await.unwrap().unwrap().status,
        ApprovalStatus::Pending
    );
    // An approval raised for another task than its decision's is refused.
    let other = task_in(s, w.alice, &w.agent, None).await;
    let mut d = decision(&other, Verdict::NeedsApproval);
    d.raises_approval = Some(pending(&w.task, "f", T0));
    let len = s.audit_len().await.unwrap();
    assert!(is_invalid(
        &s.record_decision(&now(), &d).await.unwrap_err()
    ));
    assert_eq!(s.audit_len().await.unwrap(), len);
    assert_eq!(s.calls_used(w.task.id).await.unwrap(), 0);
    verified(s).await;
}

async fn approvals_are_listed_newest_first(t: TestStore) {
    let s = &*t.store;
    let w = world(s, None).await;
    let other = task_in(s, w.alice, &w.agent, None).await;
    let a1 = pending(&w.task, "same", T0);
    let a2 = pending(&other, "x", T0 + 1);
    let a3 = pending(&w.task, "same", T0 + 2);
    for a in [&a1, &a2, &a3] {
        let task = if a.task == w.task.id { &w.task } else { &other };
        raise(s, task, a).await;
    }
    s.answer_approval(&as_human(w.bob, T0 + 3), a1.id, false, w.bob, None)
        .await
        .unwrap();

    let ids = |v: Vec<Approval>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.list_approvals(&ApprovalFilter::default()).await.unwrap()),
        vec![a3.id, a2.id, a1.id]
    );
    let by_task = ApprovalFilter {
        task: Some(w.task.id),
        ..Default::default()
    };
    assert_eq!(
        ids(s.list_approvals(&by_task).await.unwrap()),
        vec![a3.id, a1.id]
    );
    let pending_only = ApprovalFilter {
        status: Some(ApprovalStatus::Pending),
        ..Default::default()
    };
    assert_eq!(
        ids(s.list_approvals(&pending_only).await.unwrap()),
        vec![a3.id, a2.id]
    );
    let both = ApprovalFilter {
        status: Some(ApprovalStatus::Denied),
        task: Some(w.task.id),
    };
    assert_eq!(ids(s.list_approvals(&both).await.unwrap()), vec![a1.id]);
    // The newest for the digest, whatever its state.
    assert_eq!(
        s.approval_for(w.task.id, "same")
            .await
            .unwrap()
            .map(|a| a.id),
        Some(a3.id)
    );
    assert_eq!(s.approval_for(other.id, "same").await.unwrap(), None);
}

// ---- policy versions ------------------------------------------------------------------

fn hash(prefix: &str, n: u64) -> String {
    format!("{prefix}{:0>width$x}", n, width = 64 - prefix.len())
}

async fn policy_versions_are_immutable_and_exactly_one_is_active(t: TestStore) {
    let s = &*t.store;
    assert_eq!(s.active_policy().await.unwrap(), None);
    assert!(s.policy_versions().await.unwrap().is_empty());
    let admin = human_with(s, IDP, "admin", &[]).await;
    let before = s.audit_len().await.unwrap();

    let h1 = hash("aaaa0001", 1);
    let h2 = hash("bbbb0002", 2);
    let v1 = s
        .activate_policy(&as_human(admin, T0 + 1), &h1, "permit one;")
        .await
        .unwrap();
    assert_eq!(
        (v1.version, v1.hash.as_str(), v1.text.as_str(), v1.active),
        (1, h1.as_str(), "permit one;", true)
    );
    assert_eq!(
        (v1.pushed_at, v1.pushed_by.clone()),
        (ts(T0 + 1), Actor::Human { id: admin })
    );
    let v2 = s
        .activate_policy(&at(T0 + 2), &h2, "permit two;")
        .await
        .unwrap();
    assert_eq!((v2.version, v2.active), (2, true));
    assert_eq!(s.active_policy().await.unwrap(), Some(v2.clone()));

    // Rollback: the old version becomes active again, unchanged.
    let back = s
        .activate_policy(&at(T0 + 3), &h1, "permit one;")
        .await
        .unwrap();
    assert_eq!(back, v1, "same version, text, pusher and time");
    assert_eq!(s.active_policy().await.unwrap(), Some(v1.clone()));
    let all = s.policy_versions().await.unwrap();
    assert_eq!(
        all.iter()
            .map(|v| (v.version, v.active))
            .collect::<Vec<_>>(),
        vec![(2, false), (1, true)],
        "newest first, exactly one active"
    );
    // Idempotent re-activation.
    s.activate_policy(&at(T0 + 4), &h1, "permit one;")
        .await
        .unwrap();
    assert_eq!(s.policy_versions().await.unwrap().len(), 2);

    // A hash is bound to its text; a malformed hash is refused.
    let len = s.audit_len().await.unwrap();
    let e = s
        .activate_policy(&at(T0 + 5), &h2, "forbid all;")
        .await
        .unwrap_err();
    assert!(is_conflict(&e), "{e}");
    let (upper, long, not_hex) = (h1.to_uppercase(), format!("{h1}0"), hash("zz", 1));
    for bad in ["", "abc", upper.as_str(), long.as_str(), not_hex.as_str()] {
        let e = s.activate_policy(&at(T0 + 5), bad, "x").await.unwrap_err();
        assert!(is_invalid(&e), "{bad}: {e}");
    }
    assert_eq!(s.audit_len().await.unwrap(), len, "refusals wrote");
    assert_eq!(s.active_policy().await.unwrap().unwrap().hash, h1);
    assert_eq!(
        s.policy_version(&h2).await.unwrap().unwrap().text,
        "permit two;"
    );

    let evs = events_from(s, before).await;
    assert_eq!(kinds(&evs), vec![EventKind::PolicyActivated; 4]);
    assert_eq!(evs[0].actor, Actor::Human { id: admin });
    assert_eq!(evs[0].details["hash"], json!(h1));
    assert_eq!(evs[0].details["version"], json!(1));
    assert_eq!(evs[0].details["previous"], json!(null));
    assert_eq!(evs[2].details["hash"], json!(h1));
    assert_eq!(evs[2].details["version"], json!(1));
    assert_eq!(evs[2].details["previous"], json!(h2));
    verified(s).await;
}

async fn policy_versions_are_found_by_unique_prefix(t: TestStore) {
    let s = &*t.store;
    let h1 = hash("deadbeef1", 1);
    let h2 = hash("deadbeef2", 2);
    let h3 = hash("0123456789", 3);
    for (i, h) in [&h1, &h2, &h3].into_iter().enumerate() {
        s.activate_policy(&at(T0 + i as i64), h, &format!("text {i}"))
            .await
            .unwrap();
    }
    let found = |v: Option<mandate_store::PolicyVersion>| v.map(|v| v.hash);
    assert_eq!(
        found(s.policy_version(&h1).await.unwrap()),
        Some(h1.clone())
    );
    assert_eq!(
        found(s.policy_version("01234567").await.unwrap()),
        Some(h3.clone())
    );
    assert_eq!(
        found(s.policy_version(" DEADBEEF2 ").await.unwrap()),
        Some(h2.clone()),
        "upper case and surrounding space"
    );
    assert_eq!(
        found(s.policy_version(&h1[..63]).await.unwrap()),
        Some(h1.clone())
    );
    assert_eq!(
        found(s.policy_version(&h2.to_uppercase()).await.unwrap()),
        Some(h2.clone())
    );
    // Hex that matches nothing.
    assert_eq!(s.policy_version("deadbeef3").await.unwrap(), None);
    assert_eq!(s.policy_version("ffffffff").await.unwrap(), None);
    assert_eq!(s.policy_version(&hash("ff", 9)).await.unwrap(), None);
    // Ambiguous, too short, not hex or too long: refused, never a guess.
    let too_long = format!("{h1}0");
    for bad in [
        "deadbeef",
        "0123456",
        "",
        "0123456z",
        "%%%%%%%%",
        "deadbeef_",
        too_long.as_str(),
    ] {
        let e = s.policy_version(bad).await.unwrap_err();
        assert!(is_invalid(&e), "{bad:?}: {e}");
    }
}

async fn concurrent_pushes_get_dense_versions(t: TestStore) {
    let s: Arc<dyn Store> = t.store.clone();
    let pushes: Vec<_> = (0..8u64)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.activate_policy(&at(T0 + i as i64), &hash("c0ffee", i), &format!("v{i}"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut versions = BTreeSet::new();
    for p in pushes {
        versions.insert(p.await.unwrap().version);
    }
    assert_eq!(versions, (1..=8).collect());
    let all = s.policy_versions().await.unwrap();
    assert_eq!(all.len(), 8);
    assert_eq!(all.iter().filter(|v| v.active).count(), 1);
    let active = s.active_policy().await.unwrap().unwrap();
    assert!(all.iter().any(|v| v.active && v.hash == active.hash));
    assert_eq!(s.audit_len().await.unwrap(), 8);
    verified(&*s).await;
}

// ---- break-glass ------------------------------------------------------------------------

fn grant(agent: AgentId, at_ms: i64, ttl: i64) -> BreakGlass {
    BreakGlass::grant(
        BreakGlassId::from_uuid(Uuid::now_v7()),
        agent,
        Scope::new([Grant::new("payments.*", "erp:*").unwrap()]).unwrap(),
        "  incident 42: payroll run stuck ",
        Actor::System,
        ts(at_ms),
        ttl,
        DEFAULT_MAX_TTL_MS,
    )
    .unwrap()
}

async fn breakglass_is_active_until_expiry_and_reviewed_once(t: TestStore) {
    let s = &*t.store;
    let w = world(s, None).await;
    let other = agent(s, "research", w.alice).await;
    let before = s.audit_len().await.unwrap();

    let g = grant(w.agent.id, T0, 60_000);
    s.grant_breakglass(&at(T0), &g).await.unwrap();
    assert_eq!(s.breakglass(g.id).await.unwrap(), Some(g.clone()));
    assert_eq!(g.reason, "incident 42: payroll run stuck");
    let g2 = grant(w.agent.id, T0 + 10, 1_000);
    s.grant_breakglass(&at(T0 + 10), &g2).await.unwrap();

    let active = |now: i64, agent: AgentId| async move {
        s.active_breakglass(agent, ts(now))
            .await
            .unwrap()
            .into_iter()
            .map(|g| g.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(active(T0 + 500, w.agent.id).await, vec![g2.id, g.id]);
    assert_eq!(active(T0 + 1_010, w.agent.id).await, vec![g.id]);
    assert_eq!(active(T0 + 59_999, w.agent.id).await, vec![g.id]);
    assert!(active(T0 + 60_000, w.agent.id).await.is_empty());
    assert!(active(T0 + 500, other.id).await.is_empty());

    let unreviewed = |only: bool| async move {
        s.list_breakglass(only)
            .await
            .unwrap()
            .into_iter()
            .map(|g| g.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(unreviewed(true).await, vec![g2.id, g.id]);

    // Reviewed once, by a known human, with a note.
    let len = s.audit_len().await.unwrap();
    assert!(is_invalid(
        &s.review_breakglass(&as_human(w.bob, T0 + 20), g.id, w.bob, "  ")
            .await
            .unwrap_err()
    ));
    let nobody = HumanId::from_uuid(Uuid::now_v7());
    assert!(is_not_found(
        &s.review_breakglass(&as_human(nobody, T0 + 20), g.id, nobody, "fine")
            .await
            .unwrap_err()
    ));
    let ghost = BreakGlassId::from_uuid(Uuid::now_v7());
    assert!(is_not_found(
        &s.review_breakglass(&as_human(w.bob, T0 + 20), ghost, w.bob, "fine")
            .await
            .unwrap_err()
    ));
    assert_eq!(s.audit_len().await.unwrap(), len);
    let reviewed = s
        .review_breakglass(&as_human(w.bob, T0 + 20), g.id, w.bob, "checked the run")
        .await
        .unwrap();
    assert_eq!(
        (
            reviewed.reviewed_by,
            reviewed.reviewed_at,
            reviewed.review_note.as_deref()
        ),
        (Some(w.bob), Some(ts(T0 + 20)), Some("checked the run"))
    );
    assert_eq!(s.breakglass(g.id).await.unwrap(), Some(reviewed));
    let e = s
        .review_breakglass(&as_human(w.alice, T0 + 21), g.id, w.alice, "again")
        .await
        .unwrap_err();
    assert!(is_transition(&e), "{e}");
    assert_eq!(unreviewed(true).await, vec![g2.id]);
    assert_eq!(unreviewed(false).await, vec![g2.id, g.id]);
    // A review does not end the grant; only time does.
    assert_eq!(active(T0 + 30_000, w.agent.id).await, vec![g.id]);

    // Grants for unknown agents and duplicate ids are refused.
    let ghost_agent = grant(AgentId::from_uuid(Uuid::now_v7()), T0, 1_000);
    let len2 = s.audit_len().await.unwrap();
    assert!(is_not_found(
        &s.grant_breakglass(&at(T0), &ghost_agent).await.unwrap_err()
    ));
    assert!(is_conflict(
        &s.grant_breakglass(&at(T0), &g2).await.unwrap_err()
    ));
    assert_eq!(s.audit_len().await.unwrap(), len2);

    let evs = events_from(s, before).await;
    assert_eq!(
        kinds(&evs),
        vec![
            EventKind::BreakGlassGranted,
            EventKind::BreakGlassGranted,
            EventKind::BreakGlassReviewed
        ]
    );
    assert_eq!(evs[0].agent, Some(w.agent.id));
    assert_eq!(
        evs[0].details,
        json!({
            "id": g.id, "scope": g.scope, "reason": g.reason, "expires_at": g.expires_at,
        })
    );
    assert_eq!(
        (evs[2].human, evs[2].agent),
        (Some(w.bob), Some(w.agent.id))
    );
    assert_eq!(evs[2].details["id"], json!(g.id));
    verified(s).await;
}

// ---- humans --------------------------------------------------------------------------------

async fn human_roles_round_trip(t: TestStore) {
    let s = &*t.store;
    let plain = human(s, "plain").await;
    let approver = human_with(s, IDP, "approver", &[HumanRole::Approver]).await;
    let roles = |h: Option<mandate_core::human::Human>| h.unwrap().roles;
    assert!(roles(s.human(plain).await.unwrap()).is_empty());
    assert_eq!(
        roles(s.human(approver).await.unwrap()),
        BTreeSet::from([HumanRole::Approver])
    );
    assert_eq!(
        roles(s.human_by_subject(IDP, "approver").await.unwrap()),
        BTreeSet::from([HumanRole::Approver])
    );
    let listed = s
        .list_humans(&HumanFilter::default(), &PageRequest::default())
        .await
        .unwrap()
        .items;
    let with_roles: Vec<_> = listed.iter().filter(|h| !h.roles.is_empty()).collect();
    assert_eq!(with_roles.len(), 1);
    assert_eq!(with_roles[0].id, approver);
    // The registration event records the roles.
    let evs = events_from(s, 0).await;
    assert_eq!(evs[1].kind, EventKind::HumanRegistered);
    assert_eq!(evs[1].details["roles"], json!(["approver"]));
    assert_eq!(evs[0].details["roles"], json!([]));
}

/// Budgets are charged up the delegation chain: a child's spend counts
/// against its parent's budget too, and a refused spend leaves nothing.
async fn budgets_are_charged_to_the_whole_chain(t: TestStore) {
    let s: &dyn Store = &*t.store;
    let w = world(s, None).await;
    let mut parent = task_for(None, w.alice, &w.agent, T0 + HOUR);
    parent.limits.budget = Some(1000);
    s.create_task(&now(), &issue(parent.clone(), &[]))
        .await
        .unwrap();
    let mut kid = task_for(Some(&parent), w.alice, &w.agent, T0 + HOUR);
    kid.limits.budget = Some(800);
    s.create_task(&now(), &issue(kid.clone(), &[]))
        .await
        .unwrap();
    let spend = |task: &Task, amount: u64| {
        let mut d = decision(task, Verdict::Allow);
        d.spends = Some(amount);
        d
    };
    let rec = |d: DecisionWrite| async move { s.record_decision(&now(), &d).await.unwrap() };
    assert_eq!(rec(spend(&kid, 500)).await, Recorded::Done);
    // 500 + 400 is over the child's 800.
    let before = s.audit_len().await.unwrap();
    let calls = s.calls_used(kid.id).await.unwrap();
    assert_eq!(rec(spend(&kid, 400)).await, Recorded::OverBudget);
    assert_eq!(
        s.audit_len().await.unwrap(),
        before,
        "a refused spend writes nothing"
    );
    assert_eq!(
        s.calls_used(kid.id).await.unwrap(),
        calls,
        "nor counts a call"
    );
    // The parent has 500 left: 400 fits, then the child's 200 does not
    // (its own budget has room, the parent's has not).
    assert_eq!(rec(spend(&parent, 400)).await, Recorded::Done);
    assert_eq!(rec(spend(&kid, 200)).await, Recorded::OverBudget);
    assert_eq!(rec(spend(&kid, 100)).await, Recorded::Done);
    // Denials and unbudgeted amounts spend nothing.
    let mut denied = spend(&parent, 10_000);
    denied.verdict = Verdict::Deny;
    denied.counts_call = false;
    assert_eq!(rec(denied).await, Recorded::Done);
    assert_eq!(rec(spend(&parent, 1)).await, Recorded::OverBudget);
}

/// Plain decisions (no limit, budget or approval to check) are tallied in
/// the group-commit batch and their counts written once per batch. Raced
/// against refusals and guarded decisions (a call limit) on two tasks: walking
/// the log in order, no guarded allow comes after the limit was reached, and
/// the counters and the usage equal what the log says.
async fn tallied_decisions_are_counted_before_any_guarded_one(t: TestStore) {
    const LIMIT: u64 = 30;
    let s: Arc<dyn Store> = t.store.clone();
    let w = world(&*s, None).await;
    let other = task_in(&*s, w.alice, &w.agent, None).await;
    let before = s.audit_len().await.unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(120));
    let racers: Vec<_> = (0..120u64)
        .map(|i| {
            let s = s.clone();
            let start = start.clone();
            let (task, verdict) = match i % 4 {
                3 => (&other, Verdict::Deny),
                2 => (&w.task, Verdict::Deny),
                _ => (&w.task, Verdict::Allow),
            };
            let mut d = decision(task, verdict);
            // Every third allow on the main task is guarded by the limit.
            let guarded = verdict == Verdict::Allow && i % 3 == 0;
            if guarded {
                d.max_calls = Some(LIMIT);
            }
            set_detail(&mut d, "guarded", json!(guarded));
            tokio::spawn(async move {
                start.wait().await;
                (
                    guarded,
                    s.record_decision(&at(T0 + i as i64), &d).await.unwrap(),
                )
            })
        })
        .collect();
    let mut refused = 0;
    for r in racers {
        match r.await.unwrap() {
            (_, Recorded::Done) => {}
            (true, Recorded::OverLimit) => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let evs = events_from(&*s, before).await;
    let mut allowed = 0;
    let (mut denied, mut denied_other) = (0, 0);
    for e in &evs {
        assert_eq!(e.kind, EventKind::DecisionMade);
        match (e.task == Some(w.task.id), e.details["verdict"].as_str()) {
            (true, Some("allow")) => {
                if e.details["guarded"] == json!(true) {
                    assert!(
                        allowed < LIMIT,
                        "a guarded allow was counted after {allowed} calls: it missed tallied ones"
                    );
                }
                allowed += 1;
            }
            (true, Some("deny")) => denied += 1,
            (false, Some("deny")) => denied_other += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(evs.len(), 120 - refused);
    assert_eq!((denied, denied_other), (30, 30));
    assert_eq!(s.calls_used(w.task.id).await.unwrap(), allowed);
    assert_eq!(s.calls_used(other.id).await.unwrap(), 0);
    // The usage kept for the inventory is every allowed call, once each.
    let page = PageRequest {
        after: None,
        limit: 100,
    };
    let inv = s
        .inventory(&Default::default(), &page, at(T0 + 1_000).at)
        .await
        .unwrap();
    let item = inv.items.iter().find(|i| i.agent.id == w.agent.id).unwrap();
    assert_eq!(item.used.len(), 1);
    assert_eq!(item.used[0].calls, allowed);
    verified(&*s).await;
}

/// The same, made deterministic: with the log's write lock held from outside,
/// plain allows queue first (one drainer takes them all when the lock is
/// free) and guarded allows queue behind them, so they run in that order (in
/// one batch, or on an SQLite file the plain ones in a batch of their own
/// just before). The guarded ones must see the tallied calls and be refused.
async fn guarded_decisions_see_the_tally_of_their_batch(t: TestStore) {
    const LIMIT: u64 = 30;
    let s: Arc<dyn Store> = t.store.clone();
    let w = world(&*s, None).await;
    let before = s.audit_len().await.unwrap();
    let lock = t.hold_write_lock().await;
    let spawn = |guarded: bool, i: i64| {
        let s = s.clone();
        let mut d = decision(&w.task, Verdict::Allow);
        if guarded {
            d.max_calls = Some(LIMIT);
        }
        tokio::spawn(async move { s.record_decision(&at(T0 + i), &d).await.unwrap() })
    };
    let plain: Vec<_> = (0..40).map(|i| spawn(false, i)).collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let guarded: Vec<_> = (40..50).map(|i| spawn(true, i)).collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    lock.release().await;
    for p in plain {
        assert_eq!(p.await.unwrap(), Recorded::Done);
    }
    for g in guarded {
        assert_eq!(g.await.unwrap(), Recorded::OverLimit);
    }
    assert_eq!(s.calls_used(w.task.id).await.unwrap(), 40);
    assert_eq!(events_from(&*s, before).await.len(), 40);
    verified(&*s).await;
}

/// Plain decisions' records are written in batches (on an SQLite file in one
/// hand-off through SQLite's own API). A batch whose write fails must keep
/// nothing, neither a record nor a count, and tell every decision in it; the
/// next batch then writes as before.
async fn a_failed_batch_of_records_keeps_nothing(t: TestStore) {
    let s: Arc<dyn Store> = t.store.clone();
    let w = world(&*s, None).await;
    let record = |i: i64| {
        let (s, d) = (s.clone(), decision(&w.task, Verdict::Allow));
        tokio::spawn(async move { s.record_decision(&at(T0 + i), &d).await })
    };
    assert_eq!(record(0).await.unwrap().unwrap(), Recorded::Done);
    let before = s.audit_len().await.unwrap();
    let (refuse, allow) = match t.backend {
        mandate_store::Backend::Sqlite => (
            "CREATE TRIGGER refuse_appends BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
            "DROP TRIGGER refuse_appends",
        ),
        mandate_store::Backend::Postgres => (
            "CREATE FUNCTION refuse_appends() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
             CREATE TRIGGER refuse_appends BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION refuse_appends()",
            "DROP TRIGGER refuse_appends ON audit_log",
        ),
    };
    execute_raw(&t.store, refuse).await;
    let refused: Vec<_> = (1..=20).map(record).collect();
    for r in refused {
        let got = r.await.unwrap();
        assert!(matches!(got, Err(StoreError::Unavailable(_))), "{got:?}");
    }
    assert_eq!(s.audit_len().await.unwrap(), before);
    assert_eq!(s.calls_used(w.task.id).await.unwrap(), 1);
    execute_raw(&t.store, allow).await;
    assert_eq!(record(21).await.unwrap().unwrap(), Recorded::Done);
    assert_eq!(s.calls_used(w.task.id).await.unwrap(), 2);
    assert_eq!(s.audit_len().await.unwrap(), before + 1);
    verified(&*s).await;
}

/// A closed store records nothing more: a decision's record fails as
/// unavailable (503) rather than being acknowledged and lost.
async fn a_closed_store_refuses_records_as_unavailable(t: TestStore) {
    let s: Arc<dyn Store> = t.store.clone();
    let w = world(&*s, None).await;
    let d = decision(&w.task, Verdict::Allow);
    assert_eq!(
        s.record_decision(&at(T0), &d).await.unwrap(),
        Recorded::Done
    );
    t.store.close().await;
    let d = decision(&w.task, Verdict::Allow);
    let after = s.record_decision(&at(T0 + 1), &d).await;
    assert!(
        matches!(after, Err(StoreError::Unavailable(_))),
        "{after:?}"
    );
}

mandate_store::backend_tests!(
    a_failed_batch_of_records_keeps_nothing,
    a_closed_store_refuses_records_as_unavailable,
    budgets_are_charged_to_the_whole_chain,
    the_call_limit_holds_under_concurrency,
    tallied_decisions_are_counted_before_any_guarded_one,
    guarded_decisions_see_the_tally_of_their_batch,
    calls_without_a_limit_are_counted_and_refusals_are_not,
    an_approval_is_raised_answered_and_spent_exactly_once,
    an_expired_approval_can_be_neither_answered_nor_spent,
    a_denied_or_unknown_approval_unlocks_nothing,
    approvals_are_listed_newest_first,
    policy_versions_are_immutable_and_exactly_one_is_active,
    policy_versions_are_found_by_unique_prefix,
    concurrent_pushes_get_dense_versions,
    breakglass_is_active_until_expiry_and_reviewed_once,
    human_roles_round_trip,
);
