//! Access reviews on both backends, from real operations: the proposal comes
//! from recorded usage, an owner's decision changes the ceiling (only ever
//! narrower) or retires the agent in the same transaction as its event, and
//! items left undecided past the deadline become findings.

use mandate_core::agent::AgentStatus;
use mandate_core::audit::EventKind;
use mandate_core::decision::Verdict;
use mandate_core::ids::{HumanId, ReviewId};
use mandate_core::posture::{Facts, FindingKind, Thresholds, assess};
use mandate_core::review::{Campaign, Review, ReviewDecision, ReviewStatus};
use mandate_core::task::TaskStatus;
use mandate_store::testing::TestStore;
use mandate_store::{AgentFilter, PageRequest, ReviewAnswer, ReviewFilter, Store};

mod common;
use common::*;

const DAY: i64 = 24 * HOUR;

/// Opens a review of `owner`'s agents at `start`, as the server does.
async fn open_review(s: &dyn Store, owner: HumanId, start: i64) -> Review {
    let filter = AgentFilter {
        owner: Some(owner),
        ..AgentFilter::default()
    };
    let page = PageRequest {
        after: None,
        limit: 500,
    };
    let agents = s.inventory(&filter, &page, ts(start)).await.unwrap().items;
    let campaign = Campaign {
        id: ReviewId::from_uuid(uuid::Uuid::now_v7()),
        started_at: ts(start),
        deadline_days: 14,
        window_days: 30,
    };
    let owner = s.human(owner).await.unwrap().unwrap();
    let review = Review::start(campaign, &owner, &agents).unwrap();
    s.start_review(&at(start), &review).await.unwrap();
    review
}

fn answer(r: &Review, agent: &mandate_core::agent::Agent, d: ReviewDecision) -> ReviewAnswer {
    ReviewAnswer {
        review: r.id,
        agent: agent.id,
        by: r.owner,
        decision: d,
        note: "checked with the team".into(),
    }
}

async fn review_decisions_change_ceilings_and_are_audited(t: TestStore) {
    let s = t.store.as_ref();
    let alice = human(s, "alice").await;
    let bob = human(s, "bob").await;
    let reader = agent_with(
        s,
        "reader",
        alice,
        &[("invoice.read", "erp:invoices/*"), ("po.read", "erp:po/*")],
    )
    .await;
    let payer = agent(s, "payer", alice).await;
    let spare = agent(s, "spare", alice).await;
    let bobs = agent(s, "bobs", bob).await;
    let reading = root(s, alice, &reader).await;
    let paying = root(s, alice, &payer).await;
    s.record_decision(&at(T0 + 1_000), &decision(&reading, Verdict::Allow))
        .await
        .unwrap();

    let before = s.audit_len().await.unwrap();
    let r = open_review(s, alice, T0 + 2_000).await;
    let names: Vec<_> = r.items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names.len(),
        3,
        "bob's agent is not alice's to review: {names:?}"
    );
    assert!(r.item(bobs.id).is_none());
    let item = r.item(reader.id).unwrap();
    assert_eq!(item.proposed, scope(&[("invoice.read", "erp:invoices/*")]));
    assert_eq!(item.unused.len(), 1);
    assert_eq!(item.unused[0].to_string(), "po.read on erp:po/*");
    assert_eq!(r.item(spare.id).unwrap().proposed.len(), 0);
    let started = events_from(s, before).await;
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].kind, EventKind::ReviewStarted);
    assert_eq!(s.review(r.id).await.unwrap().as_ref(), Some(&r));

    // The proposal: the used part. Its live task is still inside: kept.
    let proposed = item.proposed.clone();
    let decide = at(T0 + 3_000);
    let after = s
        .decide_review(
            &decide,
            &answer(
                &r,
                &reader,
                ReviewDecision::Reduce {
                    ceiling: proposed.clone(),
                },
            ),
        )
        .await
        .unwrap();
    assert_eq!(s.agent(reader.id).await.unwrap().unwrap().ceiling, proposed);
    assert_eq!(stored(s, reading.id).await.status, TaskStatus::Open);
    let d = after.item(reader.id).unwrap().decided.clone().unwrap();
    assert_eq!((d.by, d.at, d.late), (alice, ts(T0 + 3_000), false));

    // A reduction below a live task's scope revokes the task with it.
    let narrow = scope(&[("invoice.read", "erp:invoices/1")]);
    s.decide_review(
        &decide,
        &answer(&r, &payer, ReviewDecision::Reduce { ceiling: narrow }),
    )
    .await
    .unwrap();
    assert_eq!(stored(s, paying.id).await.status, TaskStatus::Revoked);

    // Refused, and nothing written: widening, deciding twice, an agent
    // outside the review.
    let len = s.audit_len().await.unwrap();
    let wider = scope(&[("invoice.*", "erp:*")]);
    for bad in [
        answer(&r, &spare, ReviewDecision::Reduce { ceiling: wider }),
        answer(&r, &reader, ReviewDecision::Keep),
        answer(&r, &bobs, ReviewDecision::Retire),
    ] {
        assert!(s.decide_review(&decide, &bad).await.is_err(), "{bad:?}");
    }
    assert_eq!(s.audit_len().await.unwrap(), len);
    assert_eq!(
        s.agent(spare.id).await.unwrap().unwrap().ceiling,
        spare.ceiling
    );
    assert_eq!(
        s.agent(bobs.id).await.unwrap().unwrap().status,
        AgentStatus::Active
    );

    let done = s
        .decide_review(&decide, &answer(&r, &spare, ReviewDecision::Retire))
        .await
        .unwrap();
    let retired = s.agent(spare.id).await.unwrap().unwrap();
    assert_eq!(retired.status, AgentStatus::Retired);
    assert!(retired.keys.is_empty());
    assert_eq!(done.status(ts(T0 + 100 * DAY)), ReviewStatus::Complete);
    let open = ReviewFilter {
        owner: Some(alice),
        incomplete: true,
    };
    assert!(s.list_reviews(&open).await.unwrap().is_empty());

    let decided: Vec<_> = events_from(s, before)
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::ReviewDecided)
        .collect();
    let what: Vec<_> = decided
        .iter()
        .map(|e| e.details["decision"].clone())
        .collect();
    assert_eq!(what, ["reduce", "reduce", "retire"]);
    assert_eq!(
        decided[0].details["ceiling_after"],
        serde_json::json!(proposed)
    );
    assert!(
        events_from(s, before)
            .await
            .iter()
            .any(|e| e.kind == EventKind::AgentRetired)
    );
    verified(s).await;
}

async fn undecided_items_escalate_to_findings_after_the_deadline(t: TestStore) {
    let s = t.store.as_ref();
    let alice = human(s, "alice").await;
    let one = agent(s, "one", alice).await;
    let two = agent(s, "two", alice).await;
    let r = open_review(s, alice, T0).await;
    let overdue_at = |now: i64| async move {
        let reviews = s
            .list_reviews(&ReviewFilter {
                owner: None,
                incomplete: true,
            })
            .await
            .unwrap();
        let facts = Facts {
            inventory: &[],
            tasks: &[],
            breakglass: &[],
            secrets: &[],
            reviews: &reviews,
        };
        let mut names: Vec<String> = assess(&facts, &Thresholds::default(), ts(now))
            .into_iter()
            .filter(|f| f.kind == FindingKind::ReviewOverdue)
            .map(|f| f.subject)
            .collect();
        names.sort();
        names
    };
    let deadline = r.deadline.as_millis();
    assert!(
        overdue_at(deadline).await.is_empty(),
        "escalated before the deadline"
    );
    assert_eq!(overdue_at(deadline + 1).await, ["one", "two"]);

    // Decided late: recorded as late, and no longer a finding.
    let late = s
        .decide_review(&at(deadline + DAY), &answer(&r, &one, ReviewDecision::Keep))
        .await
        .unwrap();
    assert!(late.item(one.id).unwrap().decided.as_ref().unwrap().late);
    assert_eq!(overdue_at(deadline + DAY).await, ["two"]);
    assert_eq!(s.agent(one.id).await.unwrap().unwrap().ceiling, one.ceiling);
    s.decide_review(&at(deadline + DAY), &answer(&r, &two, ReviewDecision::Keep))
        .await
        .unwrap();
    assert!(overdue_at(deadline + DAY).await.is_empty());
}

mandate_store::backend_tests!(
    review_decisions_change_ceilings_and_are_audited,
    undecided_items_escalate_to_findings_after_the_deadline,
);
