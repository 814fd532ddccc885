//! The inventory and offboarding on both backends, from real operations:
//! who delegates to each agent, what it was allowed to do (refusals are not
//! usage), what it holds at a given time; and an owner leaves only once each
//! of their agents is transferred or retired.

use mandate_core::decision::Verdict;
use mandate_core::inventory::{DelegatedBy, Delegator};
use mandate_store::testing::TestStore;
use mandate_store::{AgentFilter, PageRequest, Store};

mod common;
use common::*;

async fn inventory_shows_delegators_usage_and_live_holdings(t: TestStore) {
    let s = t.store.as_ref();
    let alice = human(s, "alice").await;
    let bob = human(s, "bob").await;
    let orch = agent(s, "orch", alice).await;
    let worker = agent(s, "worker", alice).await;
    let bobs = agent(s, "bobs-agent", bob).await;
    let parent = root(s, alice, &orch).await;
    let task = child(s, &parent, &worker).await;

    let mut read = decision(&task, Verdict::Allow);
    s.record_decision(&at(T0 + 1_000), &read).await.unwrap();
    read.id = mandate_core::ids::DecisionId::from_uuid(uuid::Uuid::now_v7());
    s.record_decision(&at(T0 + 2_000), &read).await.unwrap();
    let mut refused = decision(&task, Verdict::Deny);
    refused.action = "payments.initiate".into();
    s.record_decision(&at(T0 + 3_000), &refused).await.unwrap();

    let page = PageRequest {
        after: None,
        limit: 100,
    };
    let all = s
        .inventory(&AgentFilter::default(), &page, ts(T0 + 60_000))
        .await
        .unwrap();
    let find = |id| all.items.iter().find(|i| i.agent.id == id).unwrap().clone();

    let w = find(worker.id);
    assert_eq!(
        w.delegators,
        [DelegatedBy {
            by: Delegator::Agent(orch.id),
            tasks: 1
        }]
    );
    assert_eq!(
        w.used.len(),
        1,
        "a refused action is not usage: {:?}",
        w.used
    );
    let u = &w.used[0];
    assert_eq!(
        (u.action.as_str(), u.resource.as_str(), u.calls),
        ("invoice.read", "erp:invoices/7", 2)
    );
    assert_eq!(
        (u.first_used, u.last_used),
        (ts(T0 + 1_000), ts(T0 + 2_000))
    );
    assert_eq!(w.last_activity, Some(ts(T0 + 2_000)));
    assert_eq!((w.live_tasks, w.live_credentials), (1, 1));

    let o = find(orch.id);
    assert_eq!(
        o.delegators,
        [DelegatedBy {
            by: Delegator::Human(alice),
            tasks: 1
        }]
    );
    assert!(o.used.is_empty());
    assert_eq!((o.live_tasks, o.live_credentials), (1, 1));

    let idle = find(bobs.id);
    assert!(idle.delegators.is_empty() && idle.used.is_empty() && idle.last_activity.is_none());
    assert_eq!((idle.live_tasks, idle.live_credentials), (0, 0));

    // Past the tasks' expiry nothing is live, and usage stays.
    let later = s
        .inventory(&AgentFilter::default(), &page, ts(T0 + 2 * HOUR))
        .await
        .unwrap();
    let w = later
        .items
        .iter()
        .find(|i| i.agent.id == worker.id)
        .unwrap();
    assert_eq!((w.live_tasks, w.live_credentials, w.used.len()), (0, 0, 1));

    let filter = AgentFilter {
        owner: Some(bob),
        ..AgentFilter::default()
    };
    let bobs_only = s.inventory(&filter, &page, ts(T0)).await.unwrap();
    let ids: Vec<_> = bobs_only.items.iter().map(|i| i.agent.id).collect();
    assert_eq!(ids, [bobs.id]);
}

async fn offboarding_transfers_or_retires_every_agent_then_deactivates(t: TestStore) {
    use mandate_core::audit::EventKind;
    use mandate_core::human::HumanStatus;
    use mandate_core::task::TaskStatus;
    use mandate_store::Disposition;
    let s = t.store.as_ref();
    let alice = human(s, "alice").await;
    let bob = human(s, "bob").await;
    let keep = agent(s, "keeper", alice).await;
    let drop = agent(s, "dropper", alice).await;
    let bobs = agent(s, "bobs", bob).await;
    let task = root(s, alice, &drop).await;
    let before = s.audit_len().await.unwrap();

    for plan in [
        vec![(keep.id, Disposition::Transfer(bob))],
        vec![
            (keep.id, Disposition::Retire),
            (keep.id, Disposition::Retire),
        ],
        vec![
            (keep.id, Disposition::Retire),
            (drop.id, Disposition::Retire),
            (bobs.id, Disposition::Retire),
        ],
        vec![
            (keep.id, Disposition::Transfer(alice)),
            (drop.id, Disposition::Retire),
        ],
    ] {
        assert!(
            s.offboard_human(&now(), alice, &plan).await.is_err(),
            "{plan:?} accepted"
        );
        assert_eq!(
            s.audit_len().await.unwrap(),
            before,
            "a refused plan wrote: {plan:?}"
        );
    }
    assert_eq!(
        s.human(alice).await.unwrap().unwrap().status,
        HumanStatus::Active
    );

    let plan = [
        (keep.id, Disposition::Transfer(bob)),
        (drop.id, Disposition::Retire),
    ];
    let h = s.offboard_human(&now(), alice, &plan).await.unwrap();
    assert_eq!(h.status, HumanStatus::Deactivated);
    let kept = s.agent(keep.id).await.unwrap().unwrap();
    assert_eq!((kept.owner, kept.orphaned), (bob, false));
    let dropped = s.agent(drop.id).await.unwrap().unwrap();
    assert_eq!(dropped.status, mandate_core::agent::AgentStatus::Retired);
    assert!(dropped.keys.is_empty(), "a retired agent kept its keys");
    assert_eq!(stored(s, task.id).await.status, TaskStatus::Revoked);
    assert!(revoked_at(s, &task).await.is_some());
    let kinds: Vec<EventKind> = events_from(s, before)
        .await
        .iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.contains(&EventKind::AgentOwnerTransferred)
            && kinds.contains(&EventKind::AgentRetired)
    );
    assert_eq!(kinds.last(), Some(&EventKind::HumanDeactivated));
    let last = events_from(s, before).await.pop().unwrap();
    assert_eq!(last.details["orphaned_agents"], serde_json::json!([]));
    verified(s).await;
}

/// Every item of the inventory, `limit` agents a page.
async fn paged(s: &dyn Store, limit: u32, at: i64) -> Vec<mandate_core::inventory::InventoryItem> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .inventory(
                &AgentFilter::default(),
                &PageRequest { after, limit },
                ts(at),
            )
            .await
            .unwrap();
        out.extend(page.items);
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

/// The inventory reads each fact for a whole page at once: a page of many
/// agents must say for each exactly what a page of that agent alone says.
async fn a_page_of_many_agents_equals_pages_of_one(t: TestStore) {
    let s = t.store.as_ref();
    let alice = human(s, "alice").await;
    let bob = human(s, "bob").await;
    let mut agents = Vec::new();
    for i in 0..12 {
        let owner = if i % 3 == 0 { bob } else { alice };
        agents.push(agent(s, &format!("agent-{i:02}"), owner).await);
    }
    // Roots, delegations two deep, usage, a refusal, revocations.
    for (i, a) in agents.iter().enumerate().filter(|(i, _)| i % 4 != 3) {
        let r = root(s, if i % 2 == 0 { alice } else { bob }, a).await;
        let c = child(s, &r, &agents[(i + 1) % agents.len()]).await;
        let g = child(s, &c, &agents[(i + 5) % agents.len()]).await;
        for (n, task) in [&r, &c, &g].into_iter().enumerate().take(i % 3 + 1) {
            let mut d = decision(task, Verdict::Allow);
            d.resource = format!("erp:invoices/{n}");
            s.record_decision(&at(T0 + 1_000 * (i as i64 + n as i64)), &d)
                .await
                .unwrap();
        }
        s.record_decision(&at(T0 + 500), &decision(&g, Verdict::Deny))
            .await
            .unwrap();
        if i % 5 == 0 {
            s.revoke_credential(&now(), &common::jti_of(&c))
                .await
                .unwrap();
        }
        if i % 6 == 1 {
            s.end_task(&now(), r.id, mandate_core::task::Ending::Complete, "done")
                .await
                .unwrap();
        }
    }
    for when in [T0 + 60_000, T0 + 2 * HOUR] {
        let many = paged(s, 500, when).await;
        let one_by_one = paged(s, 1, when).await;
        assert_eq!(many.len(), agents.len());
        assert_eq!(many, one_by_one);
    }
    // And the facts are really there to compare.
    let many = paged(s, 500, T0 + 60_000).await;
    assert!(
        many.iter()
            .any(|i| i.used.len() > 1 && i.delegators.len() > 1)
    );
    assert!(many.iter().any(|i| i.live_tasks > 1));
    assert!(many.iter().any(|i| i.live_credentials < i.live_tasks));
    let later = paged(s, 500, T0 + 2 * HOUR).await;
    assert!(later.iter().all(|i| i.live_tasks == 0));
    assert!(later.iter().any(|i| i.last_activity.is_some()));
}

mandate_store::backend_tests!(
    a_page_of_many_agents_equals_pages_of_one,
    inventory_shows_delegators_usage_and_live_holdings,
    offboarding_transfers_or_retires_every_agent_then_deactivates,
);
