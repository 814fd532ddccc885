//! A decision's context (`Store::decision_context`) on both backends: one
//! read that must agree with the per-item reads it replaces (credential,
//! task, ancestors and their assignees, calls used, the active policy), and
//! must show every change the moment it committed. On an SQLite file a read
//! is reused while the context epoch stands, so the tests here read once
//! before each change (the read the change must not be served from), and
//! the last ones try to get a stale read out of that reuse: every column a
//! context holds must move the epoch, a change made behind the store's back
//! too, and any sequence of changes must read as the per-item reads do.

use mandate_core::agent::{Agent, AgentStatus, Lifecycle};
use mandate_core::decision::Verdict;
use mandate_core::ids::TaskId;
use mandate_core::task::{Ending, Task, TaskStatus};
use mandate_store::testing::{self, TestStore, execute_raw, fetch_raw};
use mandate_store::{Backend, ChainAgent, DecisionContext, Recorded, Store, StoreError};
use proptest::prelude::*;
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

/// The agents of the chain as stored now: a suspension, a resumption or a
/// new owner of any of them shows in the next read.
async fn agent_changes_show_at_once(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let bob = human(s, "bob").await;
    let orch = agent(s, "orchestrator", alice).await;
    let research = agent(s, "research", alice).await;
    let top = root(s, alice, &orch).await;
    let below = child(s, &top, &research).await;
    let read = || async {
        s.decision_context(&jti_of(&below), below.id)
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(read().await.ancestors[0].1.status, AgentStatus::Active);

    s.change_agent_lifecycle(&now(), orch.id, Lifecycle::Suspend)
        .await
        .unwrap();
    assert_eq!(read().await.ancestors[0].1.status, AgentStatus::Suspended);
    s.change_agent_lifecycle(&now(), orch.id, Lifecycle::Resume)
        .await
        .unwrap();
    assert_eq!(read().await.ancestors[0].1.status, AgentStatus::Active);
    s.transfer_agent(&now(), research.id, bob).await.unwrap();
    assert_eq!(read().await.agent.owner, bob);
}

mandate_store::backend_tests!(
    agent_changes_show_at_once,
    a_closed_store_refuses_reads_as_unavailable,
    another_nodes_writes_show_at_once_and_never_block_reads,
    a_root_task_reads_as_its_per_item_reads,
    unknown_tasks_and_credentials_are_not_invented,
    a_delegated_task_comes_with_its_chain,
    ends_and_revocations_show_at_once,
);

/// The counters a read takes afresh rather than from the epoch.
const COUNTERS: [&str; 3] = ["calls_used", "denied_calls", "budget_spent"];

async fn epoch(t: &TestStore) -> String {
    fetch_raw(
        &t.store,
        "SELECT CAST(n AS TEXT) FROM context_epoch WHERE id = 1",
    )
    .await
    .remove(0)
}

/// A column added to `tasks` and forgotten in the epoch's trigger would be
/// served stale: so each column is written by hand, and each but the
/// counters must move the epoch.
#[tokio::test]
async fn every_task_column_but_the_counters_moves_the_epoch() {
    let t = testing::store(Backend::Sqlite).await;
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let orch = agent(s, "orchestrator", alice).await;
    let task = root(s, alice, &orch).await;
    let columns = fetch_raw(s, "SELECT name FROM pragma_table_info('tasks')").await;
    assert!(columns.len() > COUNTERS.len() + 10, "{columns:?}");
    for column in &columns {
        let before = epoch(&t).await;
        let n = execute_raw(
            s,
            &format!(
                "UPDATE tasks SET {column} = {column} WHERE id = '{}'",
                task.id
            ),
        )
        .await;
        assert_eq!(n, 1);
        let moved = epoch(&t).await != before;
        assert_eq!(
            moved,
            !COUNTERS.contains(&column.as_str()),
            "writing tasks.{column} {} the context epoch",
            if moved { "moved" } else { "did not move" }
        );
    }
    for (table, set) in [
        ("credentials", "revoked_at = revoked_at"),
        ("agents", "status = status"),
        ("active_policy", "hash = hash"),
    ] {
        let before = epoch(&t).await;
        execute_raw(s, &format!("UPDATE {table} SET {set}")).await;
        assert_ne!(epoch(&t).await, before, "writing {table}");
    }
}

/// A change made behind the store's back (a statement run by hand on the
/// file, another program) is seen by the next read all the same: the
/// trigger, not the store's own code, moves the epoch.
#[tokio::test]
async fn a_change_made_by_hand_shows_at_once() {
    let t = testing::store(Backend::Sqlite).await;
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let orch = agent(s, "orchestrator", alice).await;
    let task = root(s, alice, &orch).await;
    let read = || async {
        s.decision_context(&jti_of(&task), task.id)
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(read().await.task.status, TaskStatus::Open);
    // Twice, so that the second read is one that could have been reused.
    assert_eq!(read().await.task.status, TaskStatus::Open);

    let other = t.reopen().await;
    execute_raw(
        &other,
        &format!(
            "UPDATE tasks SET status = 'revoked' WHERE id = '{}'",
            task.id
        ),
    )
    .await;
    assert_eq!(read().await.task.status, TaskStatus::Revoked);
    execute_raw(
        &other,
        &format!(
            "UPDATE credentials SET revoked_at = 1 WHERE jti = '{}'",
            jti_of(&task)
        ),
    )
    .await;
    assert!(read().await.credential.unwrap().revoked_at.is_some());
    other.close().await;
}

/// One step of a history the reuse must not get wrong.
#[derive(Debug, Clone)]
enum Step {
    Read(usize),
    Record(usize, bool),
    RevokeCredential(usize),
    End(usize),
    Delegate(usize, usize),
    Lifecycle(usize, bool),
    Transfer(usize),
    Policy(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => any::<usize>().prop_map(Step::Read),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(t, a)| Step::Record(t, a)),
        1 => any::<usize>().prop_map(Step::RevokeCredential),
        1 => any::<usize>().prop_map(Step::End),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(t, a)| Step::Delegate(t, a)),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(a, s)| Step::Lifecycle(a, s)),
        1 => any::<usize>().prop_map(Step::Transfer),
        1 => (0u8..3).prop_map(Step::Policy),
    ]
}

/// The context as the per-item reads (none of them reused) give it.
async fn per_item(s: &dyn Store, task: &Task) -> DecisionContext {
    let chain_agent = |a: Option<Agent>| ChainAgent::from(&a.expect("agent is stored"));
    let stored_task = stored(s, task.id).await;
    let mut ancestors = Vec::new();
    let mut parent = stored_task.parent;
    while let Some(id) = parent {
        let t = stored(s, id).await;
        parent = t.parent;
        let a = chain_agent(s.agent(t.assignee).await.unwrap());
        ancestors.push((t, a));
    }
    DecisionContext {
        credential: s.credential(&jti_of(task)).await.unwrap(),
        agent: chain_agent(s.agent(stored_task.assignee).await.unwrap()),
        task: stored_task,
        calls_used: s.calls_used(task.id).await.unwrap(),
        ancestors,
        policy_hash: s.active_policy_hash().await.unwrap(),
    }
}

fn same(a: &DecisionContext, b: &DecisionContext) -> bool {
    a.credential == b.credential
        && a.task == b.task
        && a.agent == b.agent
        && a.ancestors == b.ancestors
        && a.calls_used == b.calls_used
        && a.policy_hash == b.policy_hash
}

async fn history(steps: Vec<Step>) -> std::result::Result<(), TestCaseError> {
    let t = testing::store(Backend::Sqlite).await;
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let bob = human(s, "bob").await;
    let mut agents = Vec::new();
    for name in ["orchestrator", "research", "writer"] {
        agents.push(agent(s, name, alice).await);
    }
    let mut tasks = vec![root(s, alice, &agents[0]).await];
    for step in steps {
        let task = |i: usize| tasks[i % tasks.len()].clone();
        match step {
            Step::Read(i) => {
                let task = task(i);
                let read = s
                    .decision_context(&jti_of(&task), task.id)
                    .await
                    .unwrap()
                    .unwrap();
                let expected = per_item(s, &task).await;
                prop_assert!(same(&read, &expected), "{read:#?}\n!=\n{expected:#?}");
            }
            Step::Record(i, allow) => {
                let verdict = if allow { Verdict::Allow } else { Verdict::Deny };
                s.record_decision(&now(), &decision(&task(i), verdict))
                    .await
                    .unwrap();
            }
            Step::RevokeCredential(i) => {
                s.revoke_credential(&now(), &jti_of(&task(i)))
                    .await
                    .unwrap();
            }
            Step::End(i) => {
                // Refused when it already ended: nothing changes then.
                let _ = s
                    .end_task(&now(), task(i).id, Ending::Complete, "done")
                    .await;
            }
            Step::Delegate(i, a) => {
                let parent = stored(s, task(i).id).await;
                let assignee = &agents[a % agents.len()];
                let new = issue(task_for(Some(&parent), alice, assignee, T0 + HOUR), &[]);
                // Refused under an ended task or to a suspended agent.
                if s.create_task(&now(), &new).await.is_ok() {
                    tasks.push(new.task);
                }
            }
            Step::Lifecycle(a, suspend) => {
                let op = if suspend {
                    Lifecycle::Suspend
                } else {
                    Lifecycle::Resume
                };
                let _ = s
                    .change_agent_lifecycle(&now(), agents[a % agents.len()].id, op)
                    .await;
            }
            Step::Transfer(a) => {
                let agent = s.agent(agents[a % agents.len()].id).await.unwrap().unwrap();
                let to = if agent.owner == alice { bob } else { alice };
                s.transfer_agent(&now(), agent.id, to).await.unwrap();
            }
            Step::Policy(k) => {
                let hash = format!("{:064x}", k + 1);
                s.activate_policy(&now(), &hash, &format!("// {k}"))
                    .await
                    .unwrap();
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever happened before, a read is what the per-item reads say is
    /// stored now.
    #[test]
    fn any_history_reads_as_stored(steps in proptest::collection::vec(step(), 1..40)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(history(steps))?;
    }
}
