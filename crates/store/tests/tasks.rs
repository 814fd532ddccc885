//! Conformance cases for tasks, credentials, trusted issuers, signing-key
//! rotation and single-use ids, run on both backends like `conformance.rs`.
//!
//! The callers' views are deliberately stale where it matters: a task is
//! offered for an agent that was suspended after the caller looked it up, or
//! under a parent that ended meanwhile, because the store's own re-checks are
//! what these cases pin down.

use std::collections::BTreeSet;
use std::time::Duration;

use mandate_core::admin::AdminToken;
use mandate_core::agent::{Agent, AgentStatus, Lifecycle};
use mandate_core::audit::EventKind;
use mandate_core::human::HumanStatus;
use mandate_core::ids::{AdminCredentialId, AgentId, TaskId, TrustDomain};
use mandate_core::task::{Ending, Task, TaskStatus};
use mandate_store::testing::{TestStore, postgres_url};
use mandate_store::{
    Backend, Installation, NewTask, PageRequest, SigningKeyRecord, Store, StoreError, TaskFilter,
};
use serde_json::json;
use uuid::Uuid;

/// The key of the audit advisory lock on PostgreSQL (`"mandate"`).
const AUDIT_LOCK: i64 = 0x006d_616e_6461_7465;

mod common;
use common::*;

/// Asserts that a refused `new` left no task and no credential, and that
/// `unspent` (its single-use ids that were fresh) are still unspent.
async fn nothing_written(s: &dyn Store, new: &NewTask, unspent: &[&str]) {
    assert!(s.task(new.task.id).await.unwrap().is_none(), "task written");
    assert!(
        s.credential(&new.credential.jti).await.unwrap().is_none(),
        "credential written"
    );
    for jti in unspent {
        s.consume_jti(jti, ts(T0 + 60_000))
            .await
            .unwrap_or_else(|e| panic!("{jti} was spent by a refused request: {e}"));
    }
}

// ---- creating tasks ------------------------------------------------------------

async fn a_task_is_stored_with_its_credential_and_event(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let orch = agent(s, "orchestrator", alice).await;
    let research = agent(s, "research", alice).await;
    let before = s.audit_len().await.unwrap();

    let r = issue(
        task_for(None, alice, &orch, T0 + HOUR),
        &["assert-1", "proof-1"],
    );
    s.create_task(&now(), &r).await.unwrap();
    assert_eq!(s.task(r.task.id).await.unwrap(), Some(r.task.clone()));
    assert_eq!(
        s.credential(&r.credential.jti).await.unwrap(),
        Some(r.credential.clone())
    );

    let c = issue(
        task_for(Some(&r.task), alice, &research, T0 + HOUR / 2),
        &["assert-2"],
    );
    s.create_task(&at(T0 + 1), &c).await.unwrap();
    let got = stored(s, c.task.id).await;
    assert_eq!(got, c.task);
    assert_eq!(
        (got.parent, got.root, got.depth, got.delegator),
        (Some(r.task.id), r.task.id, 1, Some(orch.id))
    );
    assert_eq!(
        s.credential(&c.credential.jti).await.unwrap(),
        Some(c.credential.clone())
    );

    let evs = events_from(s, before).await;
    assert_eq!(evs.len(), 2, "one event per task: {evs:?}");
    let (created, delegated) = (&evs[0], &evs[1]);
    assert_eq!(created.kind, EventKind::TaskCreated);
    assert_eq!(
        (
            created.task,
            created.agent,
            created.human,
            created.credential.as_deref()
        ),
        (
            Some(r.task.id),
            Some(orch.id),
            Some(alice),
            Some(r.credential.jti.as_str())
        )
    );
    assert_eq!(created.chain, r.chain);
    assert_eq!(created.request_id.as_deref(), Some("req-t"));
    assert_eq!(created.details["parent"], json!(null));
    assert_eq!(created.details["dpop_bound"], json!(true));
    assert_eq!(created.details["scope"], json!(r.task.scope));
    assert_eq!(delegated.kind, EventKind::TaskDelegated);
    assert_eq!(
        (delegated.task, delegated.agent, delegated.human),
        (Some(c.task.id), Some(research.id), Some(alice))
    );
    assert_eq!(delegated.details["parent"], json!(r.task.id));
    assert_eq!(delegated.details["root"], json!(r.task.id));
    assert_eq!(delegated.details["depth"], json!(1));

    for jti in ["assert-1", "proof-1", "assert-2"] {
        let e = s.consume_jti(jti, ts(T0 + 60_000)).await.unwrap_err();
        assert!(is_conflict(&e), "{jti} should be spent: {e}");
    }
    assert_eq!(verified(s).await, before + 2);
}

async fn a_replayed_single_use_id_refuses_the_whole_task(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let orch = agent(s, "orchestrator", alice).await;
    let first = issue(
        task_for(None, alice, &orch, T0 + HOUR),
        &["assert-1", "proof-1"],
    );
    s.create_task(&now(), &first).await.unwrap();
    let len = s.audit_len().await.unwrap();

    // The replayed id comes second, after a fresh one that must roll back.
    let replay = issue(
        task_for(None, alice, &orch, T0 + HOUR),
        &["proof-fresh", "assert-1"],
    );
    let e = s.create_task(&now(), &replay).await.unwrap_err();
    assert!(is_conflict(&e), "{e}");
    nothing_written(s, &replay, &["proof-fresh"]).await;

    // The same id twice within one request.
    let twice = issue(task_for(None, alice, &orch, T0 + HOUR), &["dup", "dup"]);
    let e = s.create_task(&now(), &twice).await.unwrap_err();
    assert!(is_conflict(&e), "{e}");
    assert!(s.task(twice.task.id).await.unwrap().is_none());
    assert!(s.credential(&twice.credential.jti).await.unwrap().is_none());
    s.consume_jti("dup", ts(T0 + 60_000)).await.unwrap();

    // An id spent on its own cannot then carry a task.
    s.consume_jti("standalone", ts(T0 + 60_000)).await.unwrap();
    let after = issue(task_for(None, alice, &orch, T0 + HOUR), &["standalone"]);
    let e = s.create_task(&now(), &after).await.unwrap_err();
    assert!(is_conflict(&e), "{e}");
    assert!(s.task(after.task.id).await.unwrap().is_none());

    // A reused credential jti or task id is refused the same way.
    let mut same_jti = issue(task_for(None, alice, &orch, T0 + HOUR), &["fresh-a"]);
    same_jti.credential.jti = first.credential.jti.clone();
    let e = s.create_task(&now(), &same_jti).await.unwrap_err();
    assert!(is_conflict(&e), "{e}");
    assert!(s.task(same_jti.task.id).await.unwrap().is_none());
    s.consume_jti("fresh-a", ts(T0 + 60_000)).await.unwrap();
    let mut same_id = issue(first.task.clone(), &["fresh-b"]);
    same_id.credential.jti = "cred-other".into();
    let e = s.create_task(&now(), &same_id).await.unwrap_err();
    assert!(is_conflict(&e), "{e}");
    assert!(s.credential("cred-other").await.unwrap().is_none());
    s.consume_jti("fresh-b", ts(T0 + 60_000)).await.unwrap();

    assert_eq!(s.audit_len().await.unwrap(), len, "refusals leave no trace");
    let all = s
        .list_tasks(&TaskFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(ids(&all.items), BTreeSet::from([first.task.id]));
    assert_eq!(stored(s, first.task.id).await, first.task);
}

async fn a_jti_is_consumed_once(t: TestStore) {
    let s = &*t.store;
    let len = s.audit_len().await.unwrap();
    s.consume_jti("j-1", ts(T0 + 1000)).await.unwrap();
    let e = s.consume_jti("j-1", ts(T0 + 9000)).await.unwrap_err();
    assert!(is_conflict(&e), "{e}");
    s.consume_jti("j-2", ts(T0 + 1000)).await.unwrap();
    // Case matters: "J-1" is another id.
    s.consume_jti("J-1", ts(T0 + 1000)).await.unwrap();

    // Racing replays: exactly one wins, every other is a conflict.
    let racers: Vec<_> = (0..16)
        .map(|_| {
            let st = t.store.clone();
            tokio::spawn(async move { st.consume_jti("race", ts(T0 + 1000)).await })
        })
        .collect();
    let mut won = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(()) => won += 1,
            Err(e) => assert!(is_conflict(&e), "a lost race must be a conflict: {e}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(s.audit_len().await.unwrap(), len);
}

async fn an_assignee_that_cannot_work_gets_no_task(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let bob = human(s, "bob").await;
    // Looked up while active; changed before the task is created.
    let suspended = agent(s, "suspended", alice).await;
    let retired = agent(s, "retired", alice).await;
    let orphaned = agent(s, "orphaned", bob).await;
    let active = agent(s, "active", alice).await;
    s.change_agent_lifecycle(&now(), suspended.id, Lifecycle::Suspend)
        .await
        .unwrap();
    s.change_agent_lifecycle(&now(), retired.id, Lifecycle::Retire)
        .await
        .unwrap();
    s.deactivate_human(&now(), bob).await.unwrap();
    let parent = root(s, alice, &active).await;
    let len = s.audit_len().await.unwrap();

    for (a, what) in [
        (&suspended, "suspended"),
        (&retired, "retired"),
        (&orphaned, "orphaned"),
    ] {
        for p in [None, Some(&parent)] {
            let jti = format!("assert-{what}-{}", p.is_some());
            let new = issue(task_for(p, alice, a, T0 + HOUR), &[&jti]);
            let e = s.create_task(&now(), &new).await.unwrap_err();
            assert!(
                is_transition(&e),
                "{what} (delegated: {}): {e}",
                p.is_some()
            );
            nothing_written(s, &new, &[&jti]).await;
        }
    }

    let ghost = Agent {
        id: AgentId::from_uuid(Uuid::now_v7()),
        ..active.clone()
    };
    let new = issue(task_for(None, alice, &ghost, T0 + HOUR), &["assert-ghost"]);
    let e = s.create_task(&now(), &new).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    nothing_written(s, &new, &["assert-ghost"]).await;

    assert_eq!(s.audit_len().await.unwrap(), len);
    let open = s
        .list_tasks(&TaskFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(ids(&open.items), BTreeSet::from([parent.id]));
}

async fn a_closed_parent_takes_no_children(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let orch = agent(s, "orchestrator", alice).await;
    let research = agent(s, "research", alice).await;
    let mut parents = Vec::new();
    for (ending, what) in [
        (Ending::Revoke, "revoked"),
        (Ending::Complete, "completed"),
        (Ending::Fail, "failed"),
    ] {
        let p = root(s, alice, &orch).await;
        s.end_task(&now(), p.id, ending, "ended").await.unwrap();
        parents.push((p, what));
    }
    let short = issue(task_for(None, alice, &orch, T0 + 1000), &[]);
    s.create_task(&now(), &short).await.unwrap();
    parents.push((short.task, "expired"));
    let len = s.audit_len().await.unwrap();

    let later = at(T0 + 2000);
    for (p, what) in &parents {
        // The caller's copy of the parent still says open.
        let jti = format!("assert-{what}");
        let new = issue(
            task_for(Some(p), alice, &research, p.expires_at.as_millis()),
            &[&jti],
        );
        let e = s.create_task(&later, &new).await.unwrap_err();
        assert!(is_transition(&e), "{what}: {e}");
        assert!(e.to_string().contains(what), "{what}: {e}");
        nothing_written(s, &new, &[&jti]).await;
    }

    let unknown = task_for(None, alice, &orch, T0 + HOUR);
    let new = issue(
        task_for(Some(&unknown), alice, &research, T0 + HOUR),
        &["assert-y"],
    );
    let e = s.create_task(&later, &new).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    nothing_written(s, &new, &["assert-y"]).await;
    assert_eq!(s.audit_len().await.unwrap(), len);
}

// ---- ending tasks ----------------------------------------------------------------

async fn completing_a_root_revokes_every_open_descendant(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let orch = agent(s, "orchestrator", alice).await;
    let research = agent(s, "research", alice).await;
    let code = agent(s, "code", alice).await;
    let r = root(s, alice, &orch).await;
    let c1 = child(s, &r, &research).await;
    let g1 = child(s, &c1, &code).await;
    let g2 = child(s, &c1, &code).await;
    let c2 = child(s, &r, &research).await;
    let g3 = child(s, &c2, &code).await;

    // A branch that ended first keeps its own ending.
    let t1 = at(T0 + 1000);
    let done = s
        .end_task(&t1, c2.id, Ending::Complete, "c2 done")
        .await
        .unwrap();
    assert_eq!(done.cascaded, vec![g3.id]);
    assert_eq!(
        (
            done.task.status,
            done.task.ended_at,
            done.task.end_reason.as_deref()
        ),
        (TaskStatus::Completed, Some(t1.at), Some("c2 done"))
    );

    let len = s.audit_len().await.unwrap();
    let t2 = at(T0 + 2000);
    let ended = s
        .end_task(&t2, r.id, Ending::Complete, "all done")
        .await
        .unwrap();
    assert_eq!(ended.task, stored(s, r.id).await);
    assert_eq!(
        (
            ended.task.status,
            ended.task.ended_at,
            ended.task.end_reason.as_deref()
        ),
        (TaskStatus::Completed, Some(t2.at), Some("all done"))
    );
    assert_eq!(ended.cascaded.len(), 3, "each descendant once: {ended:?}");
    let cascaded: BTreeSet<TaskId> = ended.cascaded.iter().copied().collect();
    assert_eq!(cascaded, BTreeSet::from([c1.id, g1.id, g2.id]));
    assert_eq!(revoked_at(s, &r).await, Some(t2.at));
    for d in [&c1, &g1, &g2] {
        let got = stored(s, d.id).await;
        assert_eq!(
            (got.status, got.ended_at),
            (TaskStatus::Revoked, Some(t2.at))
        );
        assert!(
            got.end_reason
                .as_deref()
                .is_some_and(|why| why.contains(&r.id.to_string())),
            "{:?}",
            got.end_reason
        );
        assert_eq!(revoked_at(s, d).await, Some(t2.at));
    }
    let c2_now = stored(s, c2.id).await;
    assert_eq!(
        (c2_now.status, c2_now.ended_at, c2_now.end_reason.as_deref()),
        (TaskStatus::Completed, Some(t1.at), Some("c2 done"))
    );
    assert_eq!(revoked_at(s, &c2).await, Some(t1.at));
    let g3_now = stored(s, g3.id).await;
    assert_eq!(
        (g3_now.status, g3_now.ended_at),
        (TaskStatus::Revoked, Some(t1.at))
    );
    assert_eq!(revoked_at(s, &g3).await, Some(t1.at));

    // One event per ended task, the ended one first.
    let evs = events_from(s, len).await;
    assert_eq!(evs.len(), 4, "{evs:?}");
    assert_eq!(
        (evs[0].kind, evs[0].task, evs[0].agent),
        (EventKind::TaskCompleted, Some(r.id), Some(orch.id))
    );
    assert_eq!(evs[0].details["credentials_revoked"], json!([jti_of(&r)]));
    let listed: BTreeSet<String> = serde_json::from_value(evs[0].details["cascades_to"].clone())
        .expect("cascades_to lists task ids");
    assert_eq!(
        listed,
        cascaded
            .iter()
            .map(|id| id.to_string())
            .collect::<BTreeSet<_>>()
    );
    let mut revoked = BTreeSet::new();
    for e in &evs[1..] {
        assert_eq!(e.kind, EventKind::TaskRevoked);
        let id = e.task.unwrap();
        assert!(revoked.insert(id), "two events for {id}");
        let task = stored(s, id).await;
        assert_eq!(
            (e.agent, e.human),
            (Some(task.assignee), Some(task.initiator))
        );
        assert_eq!(e.details["credentials_revoked"], json!([jti_of(&task)]));
    }
    assert_eq!(revoked, cascaded);

    // Ending is final, whatever the ending, and a refusal writes nothing.
    for (id, ending) in [
        (r.id, Ending::Complete),
        (r.id, Ending::Revoke),
        (c1.id, Ending::Fail),
        (g1.id, Ending::Revoke),
        (c2.id, Ending::Complete),
        (g3.id, Ending::Revoke),
    ] {
        let e = s
            .end_task(&at(T0 + 3000), id, ending, "again")
            .await
            .unwrap_err();
        assert!(is_transition(&e), "{e}");
    }
    let e = s
        .end_task(
            &t2,
            TaskId::from_uuid(Uuid::now_v7()),
            Ending::Revoke,
            "ghost",
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    assert_eq!(s.audit_len().await.unwrap(), len + 4);
    assert_eq!(stored(s, c1.id).await.ended_at, Some(t2.at));
    verified(s).await;
}

async fn ending_a_middle_task_spares_its_ancestors_and_siblings(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let orch = agent(s, "orchestrator", alice).await;
    let research = agent(s, "research", alice).await;
    let r = root(s, alice, &orch).await;
    let c1 = child(s, &r, &research).await;
    let g1 = child(s, &c1, &orch).await;
    let c2 = child(s, &r, &research).await;
    let len = s.audit_len().await.unwrap();

    let ended = s
        .end_task(&at(T0 + 1000), c1.id, Ending::Fail, "tool broke")
        .await
        .unwrap();
    assert_eq!(ended.task.status, TaskStatus::Failed);
    assert_eq!(ended.cascaded, vec![g1.id]);
    assert_eq!(stored(s, g1.id).await.status, TaskStatus::Revoked);
    for open in [&r, &c2] {
        assert_eq!(stored(s, open.id).await, *open);
        assert_eq!(revoked_at(s, open).await, None);
    }
    let kinds: Vec<_> = events_from(s, len).await.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::TaskFailed, EventKind::TaskRevoked]);

    // The root can still delegate; the failed branch cannot.
    child(s, &r, &research).await;
    let new = issue(task_for(Some(&c1), alice, &orch, T0 + HOUR), &[]);
    let e = s.create_task(&at(T0 + 2000), &new).await.unwrap_err();
    assert!(is_transition(&e), "{e}");
}

async fn revoking_a_credential_reports_whether_it_did(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let orch = agent(s, "orchestrator", alice).await;
    let r = root(s, alice, &orch).await;
    let other = root(s, alice, &orch).await;
    let jti = jti_of(&r);
    let len = s.audit_len().await.unwrap();

    let t1 = at(T0 + 1000);
    assert!(s.revoke_credential(&t1, &jti).await.unwrap());
    assert_eq!(revoked_at(s, &r).await, Some(t1.at));
    assert!(!s.revoke_credential(&at(T0 + 2000), &jti).await.unwrap());
    assert_eq!(
        revoked_at(s, &r).await,
        Some(t1.at),
        "first revocation kept"
    );
    assert!(!s.revoke_credential(&t1, "no-such-jti").await.unwrap());
    assert!(!s.revoke_credential(&t1, "").await.unwrap());
    // Only that credential: its task and the other task's stay as they were.
    assert_eq!(stored(s, r.id).await, r);
    assert_eq!(revoked_at(s, &other).await, None);

    let evs = events_from(s, len).await;
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(
        (
            evs[0].kind,
            evs[0].credential.as_deref(),
            evs[0].task,
            evs[0].agent
        ),
        (
            EventKind::CredentialRevoked,
            Some(jti.as_str()),
            Some(r.id),
            Some(orch.id)
        )
    );

    // Ending the task later leaves the earlier revocation alone.
    s.end_task(&at(T0 + 3000), r.id, Ending::Revoke, "stop")
        .await
        .unwrap();
    assert_eq!(revoked_at(s, &r).await, Some(t1.at));
    let last = events_from(s, len + 1).await;
    assert_eq!(last[0].details["credentials_revoked"], json!([]));
    verified(s).await;
}

// ---- agent lifecycle cascades ----------------------------------------------------

async fn suspending_or_retiring_an_agent_revokes_its_open_work(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let bob = human(s, "bob").await;
    let orch = agent(s, "orchestrator", alice).await;
    let research = agent(s, "research", alice).await;
    let code = agent(s, "code", alice).await;
    let r = root(s, alice, &orch).await;
    let c = child(s, &r, &research).await;
    let g = child(s, &c, &code).await;
    // research also delegates to itself: the descendant is revoked once.
    let r2 = root(s, bob, &research).await;
    let c2 = child(s, &r2, &research).await;
    let done = root(s, alice, &research).await;
    s.end_task(&at(T0 + 1000), done.id, Ending::Complete, "done")
        .await
        .unwrap();
    let other = root(s, alice, &code).await;
    let len = s.audit_len().await.unwrap();

    let t2 = at(T0 + 2000);
    let a = s
        .change_agent_lifecycle(&t2, research.id, Lifecycle::Suspend)
        .await
        .unwrap();
    assert_eq!(a.status, AgentStatus::Suspended);
    let hit = [&c, &g, &r2, &c2];
    for task in hit {
        let got = stored(s, task.id).await;
        assert_eq!(
            (got.status, got.ended_at),
            (TaskStatus::Revoked, Some(t2.at)),
            "{}",
            task.purpose
        );
        assert_eq!(revoked_at(s, task).await, Some(t2.at));
    }
    for spared in [&r, &other] {
        assert_eq!(stored(s, spared.id).await.status, TaskStatus::Open);
        assert_eq!(revoked_at(s, spared).await, None);
    }
    let d = stored(s, done.id).await;
    assert_eq!(
        (d.status, d.ended_at),
        (TaskStatus::Completed, Some(ts(T0 + 1000)))
    );

    let evs = events_from(s, len).await;
    assert_eq!(evs.len(), 5, "{evs:?}");
    assert_eq!(evs[4].kind, EventKind::AgentSuspended);
    let mut revoked = BTreeSet::new();
    for e in &evs[..4] {
        assert_eq!(e.kind, EventKind::TaskRevoked);
        assert!(revoked.insert(e.task.unwrap()), "two events for one task");
    }
    assert_eq!(revoked, hit.iter().map(|t| t.id).collect::<BTreeSet<_>>());

    // Resuming does not reopen anything.
    s.change_agent_lifecycle(&at(T0 + 2500), research.id, Lifecycle::Resume)
        .await
        .unwrap();
    assert_eq!(stored(s, c.id).await.status, TaskStatus::Revoked);

    // Retiring does the same for code's open work, and only that.
    let oc = child(s, &other, &code).await;
    let t3 = at(T0 + 3000);
    s.change_agent_lifecycle(&t3, code.id, Lifecycle::Retire)
        .await
        .unwrap();
    for task in [&other, &oc] {
        let got = stored(s, task.id).await;
        assert_eq!(
            (got.status, got.ended_at),
            (TaskStatus::Revoked, Some(t3.at))
        );
        assert_eq!(revoked_at(s, task).await, Some(t3.at));
    }
    assert_eq!(
        stored(s, g.id).await.ended_at,
        Some(t2.at),
        "already revoked"
    );
    assert_eq!(stored(s, r.id).await.status, TaskStatus::Open);
    verified(s).await;
}

async fn suspending_an_agent_with_an_expired_task(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let research = agent(s, "research", alice).await;
    let code = agent(s, "code", alice).await;
    let short = issue(task_for(None, alice, &research, T0 + 1000), &[]);
    s.create_task(&now(), &short).await.unwrap();
    let live = root(s, alice, &research).await;
    let short_c = issue(task_for(Some(&short.task), alice, &code, T0 + 1000), &[]);
    s.create_task(&now(), &short_c).await.unwrap();

    // The short task has expired (nothing stores that); suspending must work.
    let later = at(T0 + 2000);
    let a = s
        .change_agent_lifecycle(&later, research.id, Lifecycle::Suspend)
        .await
        .unwrap();
    assert_eq!(a.status, AgentStatus::Suspended);
    let got = stored(s, live.id).await;
    assert_eq!(got.status, TaskStatus::Revoked);
    for expired in [&short.task, &short_c.task] {
        let got = stored(s, expired.id).await;
        assert_eq!(got.status_at(later.at), TaskStatus::Expired);
        assert_eq!(got.ended_at, None, "an expired task has already ended");
    }
    s.change_agent_lifecycle(&at(T0 + 3000), research.id, Lifecycle::Retire)
        .await
        .unwrap();
    s.change_agent_lifecycle(&at(T0 + 3000), code.id, Lifecycle::Retire)
        .await
        .unwrap();
    verified(s).await;
}

// ---- reading tasks ---------------------------------------------------------------

async fn lists_tasks_by_filter_and_page(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let bob = human(s, "bob").await;
    let a = agent(s, "agent-a", alice).await;
    let b = agent(s, "agent-b", alice).await;
    let ra1 = root(s, alice, &a).await;
    let ra2 = root(s, alice, &a).await;
    let rb = root(s, bob, &b).await;
    let ca = child(s, &ra1, &b).await;
    s.end_task(&now(), ra2.id, Ending::Complete, "done")
        .await
        .unwrap();

    let list = |f: TaskFilter| async move {
        ids(&s
            .list_tasks(&f, &PageRequest::default())
            .await
            .unwrap()
            .items)
    };
    let set = |ts: &[&Task]| ts.iter().map(|t| t.id).collect::<BTreeSet<_>>();
    let cases = [
        (
            TaskFilter {
                assignee: Some(a.id),
                ..Default::default()
            },
            set(&[&ra1, &ra2]),
        ),
        (
            TaskFilter {
                assignee: Some(b.id),
                ..Default::default()
            },
            set(&[&rb, &ca]),
        ),
        (
            TaskFilter {
                initiator: Some(bob),
                ..Default::default()
            },
            set(&[&rb]),
        ),
        (
            TaskFilter {
                initiator: Some(alice),
                ..Default::default()
            },
            set(&[&ra1, &ra2, &ca]),
        ),
        (
            TaskFilter {
                status: Some(TaskStatus::Completed),
                ..Default::default()
            },
            set(&[&ra2]),
        ),
        (
            TaskFilter {
                status: Some(TaskStatus::Open),
                ..Default::default()
            },
            set(&[&ra1, &rb, &ca]),
        ),
        (
            TaskFilter {
                status: Some(TaskStatus::Revoked),
                ..Default::default()
            },
            set(&[]),
        ),
        (
            TaskFilter {
                root: Some(ra1.id),
                ..Default::default()
            },
            set(&[&ra1, &ca]),
        ),
        (
            TaskFilter {
                assignee: Some(b.id),
                initiator: Some(alice),
                ..Default::default()
            },
            set(&[&ca]),
        ),
        (
            TaskFilter {
                assignee: Some(a.id),
                status: Some(TaskStatus::Open),
                root: Some(ra1.id),
                initiator: Some(alice),
                now: None,
            },
            set(&[&ra1]),
        ),
        // Past their expiry, the open tasks are listed as expired, not open.
        (
            TaskFilter {
                status: Some(TaskStatus::Expired),
                now: Some(ts(T0 + 2 * HOUR)),
                ..Default::default()
            },
            set(&[&ra1, &rb, &ca]),
        ),
        (
            TaskFilter {
                status: Some(TaskStatus::Open),
                now: Some(ts(T0 + 2 * HOUR)),
                ..Default::default()
            },
            set(&[]),
        ),
        (
            TaskFilter {
                status: Some(TaskStatus::Open),
                now: Some(ts(T0)),
                ..Default::default()
            },
            set(&[&ra1, &rb, &ca]),
        ),
        (
            TaskFilter {
                status: Some(TaskStatus::Completed),
                now: Some(ts(T0 + 2 * HOUR)),
                ..Default::default()
            },
            set(&[&ra2]),
        ),
        (
            TaskFilter {
                assignee: Some(AgentId::from_uuid(Uuid::now_v7())),
                ..Default::default()
            },
            set(&[]),
        ),
        (TaskFilter::default(), set(&[&ra1, &ra2, &rb, &ca])),
    ];
    for (filter, want) in cases {
        assert_eq!(list(filter.clone()).await, want, "{filter:?}");
    }
    let all = s
        .list_tasks(&TaskFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(all.items.iter().find(|t| t.id == ca.id), Some(&ca));

    // Pages: no gaps, no repeats, ascending, the last one says so.
    for _ in 0..3 {
        root(s, alice, &a).await;
    }
    for (filter, limit, total, pages) in [
        (TaskFilter::default(), 3, 7, 3),
        (
            TaskFilter {
                assignee: Some(a.id),
                ..Default::default()
            },
            2,
            5,
            3,
        ),
        (
            TaskFilter {
                assignee: Some(a.id),
                ..Default::default()
            },
            5,
            5,
            1,
        ),
    ] {
        let mut seen: Vec<TaskId> = Vec::new();
        let mut page = PageRequest { after: None, limit };
        let mut n = 0;
        loop {
            let p = s.list_tasks(&filter, &page).await.unwrap();
            n += 1;
            assert!(p.items.len() <= limit as usize);
            seen.extend(p.items.iter().map(|t| t.id));
            match p.next {
                Some(next) => {
                    assert_eq!(next, p.items.last().unwrap().id.to_string());
                    page.after = Some(next);
                }
                None => break,
            }
            assert!(n < 10, "pagination does not end");
        }
        let unique: BTreeSet<TaskId> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "a task listed twice");
        assert_eq!((seen.len(), n), (total, pages), "{filter:?} by {limit}");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "not in id order");
    }
}

async fn a_task_tree_lists_parents_before_children(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let a = agent(s, "agent-a", alice).await;
    // Each task gets a smaller id than its parent, so an order by id alone
    // would put children first.
    let id = |n: u128| TaskId::from_uuid(Uuid::from_u128(n));
    let make = async |n: u128, parent: Option<&Task>| {
        let new = issue(task_with_id(id(n), parent, alice, &a, T0 + HOUR), &[]);
        s.create_task(&now(), &new).await.unwrap();
        new.task
    };
    let r = make(0x90, None).await;
    let c1 = make(0x80, Some(&r)).await;
    let c2 = make(0x70, Some(&r)).await;
    let g1 = make(0x60, Some(&c1)).await;
    let g2 = make(0x50, Some(&c2)).await;
    let gg = make(0x40, Some(&g1)).await;
    // Another tree with interleaved ids stays out.
    let other = make(0x85, None).await;
    make(0x45, Some(&other)).await;

    let tree = s.task_tree(r.id).await.unwrap();
    assert_eq!(
        ids(&tree),
        [&r, &c1, &c2, &g1, &g2, &gg]
            .iter()
            .map(|t| t.id)
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(tree.len(), 6);
    assert_eq!(tree[0], r);
    for (i, task) in tree.iter().enumerate() {
        if let Some(p) = task.parent {
            let at = tree.iter().position(|x| x.id == p).expect("parent listed");
            assert!(at < i, "{} listed before its parent", task.id);
        }
        assert_eq!(*task, stored(s, task.id).await);
    }
    assert!(
        s.task_tree(TaskId::from_uuid(Uuid::now_v7()))
            .await
            .unwrap()
            .is_empty()
    );
}

// ---- keys, issuers, humans -------------------------------------------------------

fn key(kid: &str, created: i64) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        public_key: format!("pk-{kid}"),
        sealed_private: format!("sealed-{kid}"),
        created_at: ts(created),
        active: true,
        retired_at: None,
    }
}

async fn rotating_the_signing_key_retires_the_old_one(t: TestStore) {
    let s = &*t.store;
    let token = AdminToken::from_parts(AdminCredentialId::from_uuid(Uuid::now_v7()), [5; 32]);
    let install = Installation {
        trust_domain: TrustDomain::parse("acme.example").unwrap(),
        issuer: "https://mandate.acme.example".into(),
        log_origin: ORIGIN.into(),
        created_at: ts(T0),
    };
    let k1 = key("k1", T0);
    s.initialize(&install, (token.id(), token.hash()), &k1)
        .await
        .unwrap();
    let len = s.audit_len().await.unwrap();

    let k2 = key("k2", T0 + 1000);
    s.rotate_signing_key(&at(T0 + 1000), &k2).await.unwrap();
    let retired_k1 = SigningKeyRecord {
        active: false,
        retired_at: Some(ts(T0 + 1000)),
        ..k1.clone()
    };
    assert_eq!(
        s.signing_keys().await.unwrap(),
        vec![retired_k1.clone(), k2.clone()]
    );

    let k3 = key("k3", T0 + 2000);
    s.rotate_signing_key(&at(T0 + 2000), &k3).await.unwrap();
    let retired_k2 = SigningKeyRecord {
        active: false,
        retired_at: Some(ts(T0 + 2000)),
        ..k2.clone()
    };
    let want = vec![retired_k1, retired_k2, k3.clone()];
    assert_eq!(
        s.signing_keys().await.unwrap(),
        want,
        "k1 keeps its first retirement time"
    );

    // Re-using a kid is refused and changes nothing: k3 keeps signing.
    let e = s
        .rotate_signing_key(&at(T0 + 3000), &key("k2", T0 + 3000))
        .await
        .unwrap_err();
    assert!(is_conflict(&e), "{e}");
    assert_eq!(s.signing_keys().await.unwrap(), want);

    let evs = events_from(s, len).await;
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert!(evs.iter().all(|e| e.kind == EventKind::SigningKeyRotated));
    assert_eq!(evs[0].details, json!({ "new": "k2", "retired": ["k1"] }));
    assert_eq!(evs[1].details, json!({ "new": "k3", "retired": ["k2"] }));
    verified(s).await;
}

async fn a_trusted_issuer_is_upserted(t: TestStore) {
    let s = &*t.store;
    let other = "https://login.partner.example";
    assert_eq!(s.trusted_issuer(IDP).await.unwrap(), None);
    let jwks = |kids: &[&str]| {
        json!({ "keys": kids.iter().map(|k| json!({
            "kty": "OKP", "crv": "Ed25519", "kid": k, "x": format!("x-{k}"),
        })).collect::<Vec<_>>() })
    };
    s.trust_issuer(&now(), IDP, &jwks(&["a"])).await.unwrap();
    assert_eq!(s.trusted_issuer(IDP).await.unwrap(), Some(jwks(&["a"])));
    s.trust_issuer(&at(T0 + 1000), IDP, &jwks(&["b", "c"]))
        .await
        .unwrap();
    assert_eq!(
        s.trusted_issuer(IDP).await.unwrap(),
        Some(jwks(&["b", "c"])),
        "re-trusting replaces the keys"
    );
    assert_eq!(s.trusted_issuer(other).await.unwrap(), None);
    assert_eq!(
        s.trusted_issuer(&format!("{IDP}/")).await.unwrap(),
        None,
        "issuers match exactly"
    );
    s.trust_issuer(&now(), other, &jwks(&["p"])).await.unwrap();
    assert_eq!(s.trusted_issuer(other).await.unwrap(), Some(jwks(&["p"])));
    assert_eq!(
        s.trusted_issuer(IDP).await.unwrap(),
        Some(jwks(&["b", "c"]))
    );

    let evs = events_from(s, 0).await;
    assert_eq!(evs.len(), 3);
    assert!(evs.iter().all(|e| e.kind == EventKind::IssuerTrusted));
    assert_eq!(
        evs.iter().map(|e| e.details.clone()).collect::<Vec<_>>(),
        [
            json!({ "issuer": IDP, "kids": ["a"] }),
            json!({ "issuer": IDP, "kids": ["b", "c"] }),
            json!({ "issuer": other, "kids": ["p"] }),
        ]
    );
    verified(s).await;
}

async fn a_human_is_found_by_issuer_and_subject(t: TestStore) {
    let s = &*t.store;
    let other = "https://login.partner.example";
    let alice = human_at(s, IDP, "alice").await;
    let alice2 = human_at(s, other, "alice").await;
    let bob = human_at(s, IDP, "bob").await;
    let found = |issuer: &'static str, subject: &'static str| async move {
        s.human_by_subject(issuer, subject)
            .await
            .unwrap()
            .map(|h| h.id)
    };
    assert_eq!(found(IDP, "alice").await, Some(alice));
    assert_eq!(found(other, "alice").await, Some(alice2));
    assert_eq!(found(IDP, "bob").await, Some(bob));
    assert_eq!(found(other, "bob").await, None);
    assert_eq!(
        found(IDP, "Alice").await,
        None,
        "subjects are case-sensitive"
    );
    assert_eq!(found(IDP, "ali%").await, None);
    assert_eq!(found(IDP, "").await, None);
    assert_eq!(found("https://idp.acme.example/", "alice").await, None);
    let got = s.human_by_subject(IDP, "alice").await.unwrap().unwrap();
    assert_eq!(got, s.human(alice).await.unwrap().unwrap());
    // A deactivated human is still found; refusing it is the caller's rule.
    s.deactivate_human(&now(), bob).await.unwrap();
    assert_eq!(
        s.human_by_subject(IDP, "bob")
            .await
            .unwrap()
            .unwrap()
            .status,
        HumanStatus::Deactivated
    );
}

// ---- concurrency -----------------------------------------------------------------

/// A delegation racing the end of its tree: either the child is refused, or
/// it is created and then revoked by the cascade. Never an open task left
/// under an ended ancestor, and never a storage error.
async fn a_delegation_racing_the_end_of_its_tree(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let orch = agent(s, "orchestrator", alice).await;
    let research = agent(s, "research", alice).await;
    let code = agent(s, "code", alice).await;
    for round in 0..8 {
        let r = root(s, alice, &orch).await;
        let c = child(s, &r, &research).await;
        let g = issue(task_for(Some(&c), alice, &code, T0 + HOUR), &[]);
        let gid = g.task.id;
        // On PostgreSQL, hold the audit lock so both requests are in flight
        // at once, each past its first row lock, before either can finish.
        let hold = hold_audit_lock(&t).await;
        let (st1, st2) = (t.store.clone(), t.store.clone());
        let create = async move { st1.create_task(&at(T0 + 10), &g).await };
        let end = async move {
            st2.end_task(&at(T0 + 10), r.id, Ending::Revoke, "stop")
                .await
        };
        // Even rounds start the delegation first, odd ones the end.
        let (create, end) = if round % 2 == 0 {
            let create = tokio::spawn(create);
            tokio::time::sleep(Duration::from_millis(30)).await;
            (create, tokio::spawn(end))
        } else {
            let end = tokio::spawn(end);
            tokio::time::sleep(Duration::from_millis(30)).await;
            (tokio::spawn(create), end)
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        release(hold).await;
        let created = create.await.unwrap();
        let ended = end.await.unwrap();
        if let Err(e) = &created {
            assert!(is_transition(e), "round {round}: create failed with {e}");
        }
        let ended = ended.unwrap_or_else(|e| panic!("round {round}: end failed with {e}"));
        let tree = s.task_tree(r.id).await.unwrap();
        for task in &tree {
            assert_ne!(
                task.status,
                TaskStatus::Open,
                "round {round}: {} left open under an ended root ({})",
                task.purpose,
                if created.is_ok() {
                    "delegation won"
                } else {
                    "delegation refused"
                }
            );
        }
        assert_eq!(tree.iter().any(|x| x.id == gid), created.is_ok());
        let mut want = vec![c.id];
        if created.is_ok() {
            want.push(gid);
        }
        let mut got = ended.cascaded.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "round {round}");
    }
    verified(s).await;
}

/// Holds the PostgreSQL audit advisory lock (`AUDIT_LOCK` in `sql/audit.rs`)
/// on a connection of its own; nothing on SQLite, whose writers queue.
async fn hold_audit_lock(t: &TestStore) -> Option<sqlx::AnyConnection> {
    use sqlx::Connection as _;
    if t.backend != Backend::Postgres {
        return None;
    }
    let mut conn = sqlx::AnyConnection::connect(&postgres_url()).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(AUDIT_LOCK)
        .execute(&mut conn)
        .await
        .unwrap();
    Some(conn)
}

async fn release(hold: Option<sqlx::AnyConnection>) {
    use sqlx::Connection as _;
    if let Some(mut conn) = hold {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(AUDIT_LOCK)
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
}

mandate_store::backend_tests!(
    a_task_is_stored_with_its_credential_and_event,
    a_replayed_single_use_id_refuses_the_whole_task,
    a_jti_is_consumed_once,
    an_assignee_that_cannot_work_gets_no_task,
    a_closed_parent_takes_no_children,
    completing_a_root_revokes_every_open_descendant,
    ending_a_middle_task_spares_its_ancestors_and_siblings,
    revoking_a_credential_reports_whether_it_did,
    suspending_or_retiring_an_agent_revokes_its_open_work,
    suspending_an_agent_with_an_expired_task,
    lists_tasks_by_filter_and_page,
    a_task_tree_lists_parents_before_children,
    rotating_the_signing_key_retires_the_old_one,
    a_trusted_issuer_is_upserted,
    a_human_is_found_by_issuer_and_subject,
    a_delegation_racing_the_end_of_its_tree,
);
