//! A decision's context (`Store::decision_context`) on both backends: one
//! read that must agree with the per-item reads it replaces (credential,
//! task, ancestors and their assignees, calls used, the active policy), and
//! must show every change the moment it committed, since nodes cache none of
//! it.

use mandate_core::decision::Verdict;
use mandate_core::ids::TaskId;
use mandate_core::task::{Ending, TaskStatus};
use mandate_store::testing::TestStore;
use mandate_store::{ChainAgent, Recorded, Store, StoreError};
use uuid::Uuid;

mod common;
use common::*;

const POLICY_HASH: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

async fn a_root_task_reads_as_its_per_item_reads(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let orch = agent(s, "orchestrator", alice).await;
    let task = root(s, alice, &orch).await;

    let ctx = s
        .decision_context(&jti_of(&task), task.id)
        .await
        .unwrap()
        .expect("the task is stored");
    assert_eq!(ctx.credential, s.credential(&jti_of(&task)).await.unwrap());
    assert_eq!(ctx.task, stored(s, task.id).await);
    let stored_agent = s.agent(orch.id).await.unwrap().unwrap();
    assert_eq!(ctx.agent, ChainAgent::from(&stored_agent));
    assert!(ctx.ancestors.is_empty());
    assert_eq!(ctx.calls_used, 0);
    assert_eq!(ctx.policy_hash, None);

    // A counted call and a pushed policy show in the next read.
    s.activate_policy(&now(), POLICY_HASH, "// nothing")
        .await
        .unwrap();
    let recorded = s
        .record_decision(&now(), &decision(&task, Verdict::Allow))
        .await
        .unwrap();
    assert_eq!(recorded, Recorded::Done);
    let ctx = s
        .decision_context(&jti_of(&task), task.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ctx.calls_used, 1);
    assert_eq!(ctx.calls_used, s.calls_used(task.id).await.unwrap());
    assert_eq!(ctx.policy_hash.as_deref(), Some(POLICY_HASH));
    assert_eq!(ctx.policy_hash, s.active_policy_hash().await.unwrap());
}

async fn unknown_tasks_and_credentials_are_not_invented(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let orch = agent(s, "orchestrator", alice).await;
    let task = root(s, alice, &orch).await;
    let other = root(s, alice, &orch).await;

    let unknown = TaskId::from_uuid(Uuid::now_v7());
    assert!(
        s.decision_context(&jti_of(&task), unknown)
            .await
            .unwrap()
            .is_none()
    );
    // A jti nobody issued: the task is there, the credential is not.
    let ctx = s
        .decision_context("cred-forged", task.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ctx.credential, None);
    assert_eq!(ctx.task.id, task.id);
    // Another task's jti comes back as that task's credential, for the
    // caller to refuse: the store does not pair them up.
    let ctx = s
        .decision_context(&jti_of(&other), task.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ctx.credential.map(|c| c.task), Some(other.id));
    assert_eq!(ctx.task.id, task.id);
}

async fn a_delegated_task_comes_with_its_chain(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let orch = agent(s, "orchestrator", alice).await;
    let research = agent(s, "research", alice).await;
    let writer = agent(s, "writer", alice).await;
    let top = root(s, alice, &orch).await;
    let middle = child(s, &top, &research).await;
    let bottom = child(s, &middle, &writer).await;
    // A sibling branch is not part of the chain.
    child(s, &top, &writer).await;

    let ctx = s
        .decision_context(&jti_of(&bottom), bottom.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ctx.task, stored(s, bottom.id).await);
    assert_eq!(ctx.agent.id, writer.id);
    let chain: Vec<_> = ctx
        .ancestors
        .iter()
        .map(|(t, a)| (t.id, t.assignee, a.id))
        .collect();
    assert_eq!(
        chain,
        [
            (middle.id, research.id, research.id),
            (top.id, orch.id, orch.id),
        ]
    );
    assert_eq!(ctx.ancestors[0].0, stored(s, middle.id).await);
    assert_eq!(
        ctx.ancestors[1].1,
        ChainAgent::from(&s.agent(orch.id).await.unwrap().unwrap())
    );
    // The credential read is only the bottom task's.
    assert_eq!(ctx.credential.map(|c| c.task), Some(bottom.id));
}

/// Revocations and task ends are seen by the very next read (nothing is
/// cached between reads), down the whole tree.
async fn ends_and_revocations_show_at_once(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let orch = agent(s, "orchestrator", alice).await;
    let research = agent(s, "research", alice).await;
    let top = root(s, alice, &orch).await;
    let below = child(s, &top, &research).await;
    let read = |task: TaskId, jti: String| async move {
        s.decision_context(&jti, task).await.unwrap().unwrap()
    };
    assert!(
        read(below.id, jti_of(&below))
            .await
            .credential
            .unwrap()
            .revoked_at
            .is_none()
    );

    assert!(s.revoke_credential(&now(), &jti_of(&top)).await.unwrap());
    let ctx = read(top.id, jti_of(&top)).await;
    assert!(ctx.credential.unwrap().revoked_at.is_some());
    assert_eq!(ctx.task.status, TaskStatus::Open);

    s.end_task(&now(), top.id, Ending::Complete, "done")
        .await
        .unwrap();
    let ctx = read(below.id, jti_of(&below)).await;
    assert!(ctx.credential.unwrap().revoked_at.is_some());
    assert_eq!(ctx.task.status, TaskStatus::Revoked);
    assert_eq!(ctx.ancestors[0].0.status, TaskStatus::Completed);
}

/// Another node (another process on an SQLite file) is another store on the
/// same database: what it commits, the next read here sees; and its writer
/// holding the log's lock never keeps a decision from reading.
async fn another_nodes_writes_show_at_once_and_never_block_reads(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let orch = agent(s, "orchestrator", alice).await;
    let task = root(s, alice, &orch).await;
    let read = || async { s.decision_context(&jti_of(&task), task.id).await };
    assert!(
        read()
            .await
            .unwrap()
            .unwrap()
            .credential
            .unwrap()
            .revoked_at
            .is_none()
    );

    let other = t.reopen().await;
    assert!(
        other
            .revoke_credential(&now(), &jti_of(&task))
            .await
            .unwrap()
    );
    other
        .activate_policy(&now(), POLICY_HASH, "// nothing")
        .await
        .unwrap();
    let ctx = read().await.unwrap().unwrap();
    assert!(ctx.credential.unwrap().revoked_at.is_some());
    assert_eq!(ctx.policy_hash.as_deref(), Some(POLICY_HASH));

    let lock = t.hold_write_lock().await;
    let during = read().await;
    lock.release().await;
    let ctx = during
        .expect("a read while another writer holds the lock")
        .unwrap();
    assert_eq!(ctx.task.id, task.id);
    other.close().await;
}

/// A closed store reads nothing more: a decision then fails as unavailable
/// (503, retried elsewhere) instead of deciding on what it last saw.
async fn a_closed_store_refuses_reads_as_unavailable(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let orch = agent(s, "orchestrator", alice).await;
    let task = root(s, alice, &orch).await;
    assert!(
        s.decision_context(&jti_of(&task), task.id)
            .await
            .unwrap()
            .is_some()
    );
    t.store.close().await;
    let after = s.decision_context(&jti_of(&task), task.id).await;
    assert!(
        matches!(after, Err(StoreError::Unavailable(_))),
        "{after:?}"
    );
}

mandate_store::backend_tests!(
    a_closed_store_refuses_reads_as_unavailable,
    another_nodes_writes_show_at_once_and_never_block_reads,
    a_root_task_reads_as_its_per_item_reads,
    unknown_tasks_and_credentials_are_not_invented,
    a_delegated_task_comes_with_its_chain,
    ends_and_revocations_show_at_once,
);
