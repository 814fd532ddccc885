//! Traces read through the audit log's task indexes equal traces read by
//! scanning the whole log, on both backends, from real operations: two
//! interleaved trees with delegation, decisions with reasons, an approval
//! asked, granted and spent, a credential revoked, a cascading revocation.
//! The task columns that migration 9 fills for older rows equal the ones
//! filled at append time, and the log still verifies.

use mandate_core::approval::{APPROVAL_TTL_MS, Approval, ApprovalStatus};
use mandate_core::audit::trace::{Trace, TraceTarget, Tracer};
use mandate_core::decision::Verdict;
use mandate_core::ids::{ApprovalId, DecisionId, TaskId};
use mandate_core::task::{Ending, Task};
use mandate_store::testing::{TestStore, execute_raw, refill_audit_task_columns};
use mandate_store::{DecisionWrite, Store, log};
use serde_json::json;
use uuid::Uuid;

mod common;
use common::*;

/// A decision whose details are what the server records, so the tracer
/// reads its verdict and reasons.
fn decided(task: &Task, verdict: Verdict, action: &str) -> DecisionWrite {
    let mut d = decision(task, verdict);
    d.action = action.into();
    d.details = raw(json!({
        "decision_id": d.id,
        "decision": verdict,
        "reasons": [{ "code": "policy", "message": "matched", "policy_id": format!("p-{action}") }],
        "policy_hash": "ab12",
        "action": action,
        "resource": d.resource,
    }));
    d
}

async fn record(s: &dyn Store, d: &DecisionWrite) {
    s.record_decision(&now(), d).await.unwrap();
}

/// Both readings of `tracer`'s target, which must agree (errors included).
async fn both(s: &dyn Store, tracer: impl Fn() -> Tracer) -> Result<Trace, String> {
    let indexed = log::trace(s, tracer()).await.map_err(|e| e.to_string());
    let scanned = log::trace_by_scan(s, tracer())
        .await
        .map_err(|e| e.to_string());
    assert_eq!(indexed, scanned, "the indexed trace differs from the scan");
    indexed
}

/// The leaf indexes the task and tree indexes serve for these tasks.
async fn indexed(s: &dyn Store, tasks: &[TaskId]) -> Vec<Vec<u64>> {
    let mut out = Vec::new();
    for &task in tasks {
        let by_task = s.audit_entries_by_task(task, 0, 1_000).await.unwrap();
        let by_tree = s
            .audit_entries_by_tree(task, 0, u64::MAX, 1_000)
            .await
            .unwrap();
        out.push(by_task.iter().map(|e| e.index).collect());
        out.push(by_tree.iter().map(|e| e.index).collect());
    }
    out
}

async fn traces_through_the_index_equal_traces_by_scan(t: TestStore) {
    let s = t.store.as_ref();
    let alice = human(s, "alice").await;
    let bob = human(s, "bob").await;
    let carol = human(s, "carol").await;
    let orch = agent(s, "orch", alice).await;
    let worker = agent(s, "worker", alice).await;
    let sub = agent(s, "sub", alice).await;
    let other = agent(s, "other", carol).await;

    // Two trees, their entries interleaved in the log.
    let a_root = root(s, alice, &orch).await;
    let b_root = root(s, carol, &other).await;
    let a_child = child(s, &a_root, &worker).await;
    record(s, &decided(&b_root, Verdict::Allow, "invoice.read")).await;
    let a_leaf = child(s, &a_child, &sub).await;
    let b_child = child(s, &b_root, &orch).await;
    record(s, &decided(&a_root, Verdict::Allow, "invoice.read")).await;
    record(s, &decided(&a_child, Verdict::Deny, "invoice.pay")).await;

    // An approval asked, granted by another human, and spent.
    let approval = Approval {
        id: ApprovalId::from_uuid(Uuid::now_v7()),
        task: a_leaf.id,
        agent: a_leaf.assignee,
        initiator: a_leaf.initiator,
        action: "invoice.approve".into(),
        resource: "erp:invoices/7".into(),
        digest: "digest-1".into(),
        policies: vec!["large-payment".into()],
        context: json!({ "amount": 250_000 }),
        status: ApprovalStatus::Pending,
        requested_at: ts(T0),
        expires_at: ts(T0 + APPROVAL_TTL_MS),
        decided_by: None,
        decided_at: None,
        note: None,
    };
    let mut asks = decided(&a_leaf, Verdict::NeedsApproval, "invoice.approve");
    asks.raises_approval = Some(approval.clone());
    record(s, &asks).await;
    s.answer_approval(&now(), approval.id, true, bob, Some("checked the invoice"))
        .await
        .unwrap();
    let mut spends = decided(&a_leaf, Verdict::Allow, "invoice.approve");
    spends.spends_approval = Some(approval.id);
    set_detail(&mut spends, "approval_id", json!(approval.id));
    record(s, &spends).await;

    // A credential revoked on its own, then a revocation that cascades.
    assert!(s.revoke_credential(&now(), &jti_of(&a_leaf)).await.unwrap());
    record(s, &decided(&b_child, Verdict::Allow, "invoice.read")).await;
    s.end_task(&now(), a_child.id, Ending::Revoke, "no longer needed")
        .await
        .unwrap();
    record(s, &decided(&b_root, Verdict::Deny, "invoice.pay")).await;

    let mut traces = Vec::new();
    for task in [&a_root, &a_child, &a_leaf, &b_root, &b_child] {
        let id = task.id;
        let trace = both(s, || Tracer::new(TraceTarget::Task(id)))
            .await
            .expect("every task traces");
        assert_eq!(
            both(s, || Tracer::for_text(&id.to_string())).await,
            Ok(trace.clone()),
            "a task id as text traces as the task"
        );
        let jti = jti_of(task);
        let by_jti = both(s, || Tracer::for_text(&jti)).await.unwrap();
        assert_eq!(by_jti.root, trace.root);
        traces.push(trace);
    }
    // The trees are told apart, and what happened under each is there.
    assert_eq!(traces[0].tasks.len(), 3, "{:?}", traces[0].tasks);
    assert_eq!(traces[3].tasks.len(), 2);
    assert_eq!(
        traces[0].tasks, traces[2].tasks,
        "a task's trace is its tree's"
    );
    let leaf = traces[0].tasks.iter().find(|n| n.id == a_leaf.id).unwrap();
    assert_eq!(leaf.events.len(), 5, "{:?}", leaf.events);
    assert!(leaf.ended.as_ref().unwrap().cascade_from == Some(a_child.id));
    assert!(traces[0].humans.contains_key(&bob), "the approver is named");
    assert_eq!(traces[0].log_size, s.audit_len().await.unwrap());

    // A decision traced by its id, and an id the log does not hold.
    let decision_id = spends.id;
    let by_decision = both(s, || Tracer::new(TraceTarget::Decision(decision_id)))
        .await
        .unwrap();
    assert_eq!(by_decision.tasks, traces[0].tasks);
    let missing = DecisionId::from_uuid(Uuid::now_v7()).to_string();
    let err = both(s, || Tracer::for_text(&missing)).await.unwrap_err();
    assert!(err.contains("no task, decision"), "{err}");

    // A log written before the task columns: migration 9 fills them from
    // the entries exactly as appends do, and the traces come back the same.
    let all = [a_root.id, a_child.id, a_leaf.id, b_root.id, b_child.id];
    let before = indexed(s, &all).await;
    // [task entries, tree entries] per task: a tree is found by its root only.
    assert!(before[1].len() > before[0].len() && before[3].is_empty());
    execute_raw(
        &t.store,
        "UPDATE audit_log SET task_id = NULL, root_id = NULL",
    )
    .await;
    assert!(
        indexed(s, &all).await.iter().all(Vec::is_empty),
        "the columns were not cleared"
    );
    refill_audit_task_columns(&t.store).await;
    assert_eq!(indexed(s, &all).await, before);
    for (task, before) in [a_root.id, b_root.id]
        .into_iter()
        .zip([&traces[0], &traces[3]])
    {
        let after = both(s, || Tracer::new(TraceTarget::Task(task)))
            .await
            .unwrap();
        assert_eq!(&after, before);
    }
    verified(s).await;
}

/// An entry that is not JSON (tampering) cannot stop the upgrade: the other
/// rows are indexed, that one is left out, and verify names it.
async fn the_refill_skips_an_entry_that_is_not_json(t: TestStore) {
    let s = t.store.as_ref();
    let alice = human(s, "alice").await;
    let orch = agent(s, "orch", alice).await;
    let first = root(s, alice, &orch).await;
    let second = root(s, alice, &orch).await;
    let broken = s.audit_entries_by_task(first.id, 0, 10).await.unwrap()[0].index;
    execute_raw(
        &t.store,
        "UPDATE audit_log SET task_id = NULL, root_id = NULL",
    )
    .await;
    execute_raw(
        &t.store,
        &format!("UPDATE audit_log SET entry = 'not json' WHERE idx = {broken}"),
    )
    .await;
    refill_audit_task_columns(&t.store).await;
    assert!(
        s.audit_entries_by_task(first.id, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let kept = s
        .audit_entries_by_tree(second.id, 0, u64::MAX, 10)
        .await
        .unwrap();
    assert_eq!(kept.len(), 1, "the intact tree is indexed again");
    let verifiers = vec![signer().verifier()];
    let verdict = log::verify(s, ORIGIN, &verifiers, None).await.unwrap();
    assert!(verdict.is_err(), "the tampered entry is reported");
}

/// Migration 10 rebuilds SQLite's log table (its key becomes the rowid) and
/// changes indexes on both backends: every entry comes through byte for
/// byte, still verifies, is still found by task and tree, and appends go on.
async fn the_rowid_layout_upgrade_keeps_every_entry(t: TestStore) {
    let s = t.store.as_ref();
    let alice = human(s, "alice").await;
    let orch = agent(s, "orch", alice).await;
    let a = root(s, alice, &orch).await;
    record(s, &decided(&a, Verdict::Allow, "erp.read")).await;
    let b = root(s, alice, &orch).await;
    let before = s.audit_entries(0, 10_000).await.unwrap();
    let tree = s
        .audit_entries_by_tree(a.id, 0, u64::MAX, 100)
        .await
        .unwrap();
    assert!(TestStore::audit_key_is_rowid(s).await);

    t.undo_migration_10().await;
    assert_eq!(
        TestStore::audit_key_is_rowid(s).await,
        t.backend == mandate_store::Backend::Postgres,
        "the old layout is back"
    );
    let upgraded = t.reopen().await;
    let u = upgraded.as_ref();
    assert!(TestStore::audit_key_is_rowid(u).await);
    let after = u.audit_entries(0, 10_000).await.unwrap();
    assert_eq!(after.len(), before.len());
    for (x, y) in before.iter().zip(&after) {
        assert_eq!(
            (x.index, &x.entry, x.leaf_hash),
            (y.index, &y.entry, y.leaf_hash)
        );
    }
    assert_eq!(
        u.audit_entries_by_tree(a.id, 0, u64::MAX, 100)
            .await
            .unwrap()
            .len(),
        tree.len()
    );
    assert!(
        !u.audit_entries_by_task(b.id, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    verified(u).await;
    let c = root(u, alice, &orch).await;
    assert_eq!(u.audit_entries_by_task(c.id, 0, 10).await.unwrap().len(), 1);
    verified(u).await;
}

mandate_store::backend_tests!(
    the_rowid_layout_upgrade_keeps_every_entry,
    the_refill_skips_an_entry_that_is_not_json,
    traces_through_the_index_equal_traces_by_scan,
);
