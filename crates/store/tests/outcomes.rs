//! Conformance cases for workflows, reported outcomes and their tallies, on
//! both backends.
//!
//! Adversarial where the count is: retries race from many connections for
//! one key, a different claim tries to reuse a key, outcomes are reported
//! against revoked tasks, tasks with refused actions and tasks with no action
//! at all, and tallies over arbitrary periods must equal a brute-force sum of
//! the records themselves.

use std::sync::Arc;

use mandate_core::agent::Agent;
use mandate_core::decision::Verdict;
use mandate_core::ids::{HumanId, OutcomeId};
use mandate_core::outcome::money::Amount;
use mandate_core::outcome::{
    Claim, Classification, IdempotencyKey, NewWorkflow, OutcomeRecord, OutcomeType, Period,
    PeriodFigures, Valuation, ValueModel, WorkflowName,
};
use mandate_core::task::{Ending, Task};
use mandate_store::testing::TestStore;
use mandate_store::{OutcomeWrite, Recorded, Store, StoreError};
use uuid::Uuid;

mod common;
use common::*;

const DAY: i64 = 86_400_000;

fn workflow(owner: HumanId) -> NewWorkflow {
    NewWorkflow {
        name: WorkflowName::parse("invoices").unwrap(),
        description: "one supplier invoice checked and booked".into(),
        owner,
        currency: "EUR".parse().unwrap(),
        baseline_cost: Amount::from_whole(12),
        baseline_minutes: 20,
        value_model: ValueModel::TimeSaved,
        token_price: None,
    }
}

struct World {
    alice: HumanId,
    agent: Agent,
}

async fn world(s: &dyn Store) -> World {
    let alice = human(s, "alice").await;
    let agent = agent(s, "clerk", alice).await;
    s.register_workflow(&now(), &workflow(alice)).await.unwrap();
    World { alice, agent }
}

async fn decide(s: &dyn Store, task: &Task, verdict: Verdict) {
    let d = decision(task, verdict);
    assert_eq!(s.record_decision(&now(), &d).await.unwrap(), Recorded::Done);
}

fn claim(key: &str) -> Claim {
    Claim {
        workflow: WorkflowName::parse("invoices").unwrap(),
        outcome_type: OutcomeType::parse("invoice.booked").unwrap(),
        idempotency_key: IdempotencyKey::parse(key).unwrap(),
        value: None,
        cost: None,
        external_ref: Some(format!("INV-{key}")),
    }
}

fn report(w: &World, task: &Task, key: &str) -> OutcomeWrite {
    OutcomeWrite {
        id: OutcomeId::from_uuid(Uuid::now_v7()),
        claim: claim(key),
        task: task.id,
        jti: jti_of(task),
        agent: task.assignee,
        initiator: task.initiator,
        owner: w.alice,
        chain: vec![
            format!("human:{}", task.initiator),
            w.agent.spiffe_id.to_string(),
        ],
        chain_gaps: vec![],
        currency: "EUR".parse().unwrap(),
        valuation: Valuation {
            value: Amount::from_whole(12),
            cost: Amount::from_units(1500),
            minutes_saved: 20,
            model_tokens: 3000,
        },
    }
}

async fn classified(s: &dyn Store, o: &OutcomeWrite, at_ms: i64) -> OutcomeRecord {
    s.record_outcome(&at(at_ms), o).await.unwrap().record
}

async fn outcomes_are_classified_from_the_record(t: TestStore) {
    let s: &dyn Store = &*t.store;
    let w = world(s).await;

    // Allowed work behind the claim, nothing refused: counted.
    let good = root(s, w.alice, &w.agent).await;
    decide(s, &good, Verdict::Allow).await;
    let counted = classified(s, &report(&w, &good, "k-good"), T0 + 1).await;
    assert_eq!(
        counted.classification,
        Classification::Counted,
        "{}",
        counted.explanation
    );

    // Work done by a subagent on a delegated task counts for the parent.
    let parent = root(s, w.alice, &w.agent).await;
    let sub = child(s, &parent, &w.agent).await;
    decide(s, &sub, Verdict::Allow).await;
    let delegated = classified(s, &report(&w, &parent, "k-delegated"), T0 + 2).await;
    assert_eq!(delegated.classification, Classification::Counted);

    // Nothing allowed under the task: phantom. A pending approval is not work.
    let idle = root(s, w.alice, &w.agent).await;
    decide(s, &idle, Verdict::NeedsApproval).await;
    let phantom = classified(s, &report(&w, &idle, "k-phantom"), T0 + 3).await;
    assert_eq!(phantom.classification, Classification::Phantom);

    // One refused action, even beside allowed ones, taints the transaction.
    let mixed = root(s, w.alice, &w.agent).await;
    decide(s, &mixed, Verdict::Allow).await;
    let sub = child(s, &mixed, &w.agent).await;
    decide(s, &sub, Verdict::Deny).await;
    let tainted = classified(s, &report(&w, &mixed, "k-denied"), T0 + 4).await;
    assert_eq!(tainted.classification, Classification::OutOfScopeActions);
    assert!(
        tainted.explanation.contains("1 of 2"),
        "{}",
        tainted.explanation
    );

    // Reported after the task was revoked, or with a revoked credential.
    let revoked = root(s, w.alice, &w.agent).await;
    decide(s, &revoked, Verdict::Allow).await;
    s.end_task(&now(), revoked.id, Ending::Revoke, "stop")
        .await
        .unwrap();
    let late = classified(s, &report(&w, &revoked, "k-revoked"), T0 + 5).await;
    assert_eq!(late.classification, Classification::AfterRevocation);
    let cred = root(s, w.alice, &w.agent).await;
    decide(s, &cred, Verdict::Allow).await;
    assert!(s.revoke_credential(&now(), &jti_of(&cred)).await.unwrap());
    let late = classified(s, &report(&w, &cred, "k-cred"), T0 + 6).await;
    assert_eq!(late.classification, Classification::AfterRevocation);

    // Expired by the clock (the stored status still says open).
    let expired = root(s, w.alice, &w.agent).await;
    decide(s, &expired, Verdict::Allow).await;
    let late = classified(s, &report(&w, &expired, "k-expired"), T0 + HOUR + 1).await;
    assert_eq!(late.classification, Classification::AfterRevocation);
    assert!(late.explanation.contains("expired"), "{}", late.explanation);

    // A gap in the chain.
    let gap = root(s, w.alice, &w.agent).await;
    decide(s, &gap, Verdict::Allow).await;
    let mut o = report(&w, &gap, "k-gap");
    o.chain_gaps = vec!["the owner of clerk is deactivated".into()];
    let unattributed = classified(s, &o, T0 + 7).await;
    assert_eq!(unattributed.classification, Classification::Unattributed);
    assert!(unattributed.explanation.contains("deactivated"));

    // Every record reads back from its audit entry, exactly.
    for r in [&counted, &phantom, &tainted, &unattributed] {
        assert_eq!(s.outcome(r.id).await.unwrap().as_ref(), Some(r));
    }
    verified(s).await;
}

async fn a_retry_returns_the_first_report_and_counts_as_a_duplicate(t: TestStore) {
    let s: &dyn Store = &*t.store;
    let w = world(s).await;
    let task = root(s, w.alice, &w.agent).await;
    decide(s, &task, Verdict::Allow).await;
    let first = s
        .record_outcome(&at(T0 + 1), &report(&w, &task, "k1"))
        .await
        .unwrap();
    assert!(first.first.is_none());
    let retry = s
        .record_outcome(&at(T0 + 2), &report(&w, &task, "k1"))
        .await
        .unwrap();
    assert_eq!(
        retry.first.as_ref(),
        Some(&first.record),
        "the first answer is returned"
    );
    assert_eq!(retry.record.classification, Classification::Duplicate);
    assert_eq!(retry.record.duplicate_of, Some(first.record.id));

    // The same key with a different claim is refused and leaves nothing.
    let before = s.audit_len().await.unwrap();
    let mut other = report(&w, &task, "k1");
    other.claim.external_ref = Some("INV-other".into());
    let e = s.record_outcome(&at(T0 + 3), &other).await.unwrap_err();
    assert!(is_conflict(&e), "{e:?}");
    assert_eq!(s.audit_len().await.unwrap(), before);
    assert!(s.outcome(other.id).await.unwrap().is_none());

    // An unknown workflow is refused, also leaving nothing.
    let mut unknown = report(&w, &task, "k2");
    unknown.claim.workflow = WorkflowName::parse("payroll").unwrap();
    let e = s.record_outcome(&at(T0 + 4), &unknown).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
    assert_eq!(s.audit_len().await.unwrap(), before);

    let period = Period::new(ts(T0), ts(T0 + DAY)).unwrap();
    let figures = figures(s, &period).await;
    assert_eq!(figures.totals.counted, 1);
    assert_eq!(figures.totals.exceptions[&Classification::Duplicate], 1);
}

async fn a_key_reported_concurrently_counts_once(t: TestStore) {
    let w = world(&*t.store).await;
    let s: Arc<dyn Store> = t.store.clone();
    // Several tasks, so the racers do not all queue on one task tree's lock.
    let mut reports = Vec::new();
    for _ in 0..12 {
        let task = root(&*s, w.alice, &w.agent).await;
        decide(&*s, &task, Verdict::Allow).await;
        let mut o = report(&w, &task, "same-key");
        // Identical claim from every racer (the fingerprint must match).
        o.claim = claim("same-key");
        reports.push(o);
    }
    // All start together, so on SQLite the retries share the first report's
    // group-commit batch and must read its entry before it is committed.
    let start = Arc::new(tokio::sync::Barrier::new(reports.len()));
    let mut handles = Vec::new();
    for (i, o) in reports.into_iter().enumerate() {
        let s = s.clone();
        let start = start.clone();
        handles.push(tokio::spawn(async move {
            start.wait().await;
            s.record_outcome(&at(T0 + 10 + i as i64), &o).await
        }));
    }
    let mut firsts = Vec::new();
    let mut dups = Vec::new();
    for h in handles {
        let r = h.await.unwrap().unwrap();
        match r.first {
            None => firsts.push(r.record),
            Some(first) => dups.push((r.record, first)),
        }
    }
    assert_eq!(firsts.len(), 1, "exactly one racer is first");
    assert_eq!(dups.len(), 11);
    for (dup, first) in &dups {
        assert_eq!(dup.classification, Classification::Duplicate);
        assert_eq!(first.id, firsts[0].id);
        assert_eq!(dup.duplicate_of, Some(firsts[0].id));
    }
    let period = Period::new(ts(T0), ts(T0 + DAY)).unwrap();
    assert_eq!(figures(&*s, &period).await.totals.counted, 1);
    verified(&*s).await;
}

async fn figures(s: &dyn Store, period: &Period) -> PeriodFigures {
    let wf = s
        .workflow(&WorkflowName::parse("invoices").unwrap())
        .await
        .unwrap()
        .unwrap();
    let rows = s.outcome_tally(&wf.def.name, period).await.unwrap();
    PeriodFigures::from_rows(*period, &rows, &wf.def)
}

/// Brute force: the figures of the records themselves.
async fn recomputed(s: &dyn Store, period: &Period) -> PeriodFigures {
    let wf = s
        .workflow(&WorkflowName::parse("invoices").unwrap())
        .await
        .unwrap()
        .unwrap();
    let entries = s
        .outcome_entries(&wf.def.name, period, None, 10_000)
        .await
        .unwrap();
    let rows: Vec<_> = entries
        .iter()
        .map(|e| {
            let r = OutcomeRecord::from_entry(&e.entry).unwrap();
            assert!(period.contains(r.reported_at));
            r.tally_row()
        })
        .collect();
    PeriodFigures::from_rows(*period, &rows, &wf.def)
}

async fn tallies_are_exact_for_any_period(t: TestStore) {
    let s: &dyn Store = &*t.store;
    let w = world(s).await;
    let good = root(s, w.alice, &w.agent).await;
    decide(s, &good, Verdict::Allow).await;
    let idle = root(s, w.alice, &w.agent).await;
    // Outcomes spread over four days at irregular times, some phantom.
    let mut n = 0;
    for step in 0..40i64 {
        let t = T0 + step * (DAY / 10) + step * 7_919;
        let task = if step % 3 == 0 { &idle } else { &good };
        let mut o = report(&w, task, &format!("k{step}"));
        o.valuation.value = Amount::from_units(10_000 + step * 37);
        s.record_outcome(&at(t), &o).await.unwrap();
        n += 1;
    }
    // A retry, so duplicates are in the sums too.
    s.record_outcome(&at(T0 + 5), &report(&w, &good, "k1"))
        .await
        .unwrap();
    n += 1;
    let day0 = T0.div_euclid(DAY) * DAY;
    let periods = [
        (T0, T0 + 5 * DAY),              // everything
        (day0, day0 + DAY),              // one aligned day
        (day0 + DAY, day0 + 3 * DAY),    // aligned, two whole days
        (T0 + 12_345, T0 + 2 * DAY + 1), // unaligned both ends, whole days inside
        (T0 + DAY / 3, T0 + DAY / 2),    // inside one day
        (T0 - DAY, T0),                  // before everything
    ];
    for (from, to) in periods {
        let p = Period::new(ts(from), ts(to)).unwrap();
        assert_eq!(
            figures(s, &p).await,
            recomputed(s, &p).await,
            "period {from}..{to}"
        );
    }
    let all = Period::new(ts(T0), ts(T0 + 5 * DAY)).unwrap();
    assert_eq!(figures(s, &all).await.totals.reported, n);
    // Rebuilding the per-day sums from the outcomes changes nothing.
    let before = figures(s, &all).await;
    s.rebuild_outcome_rollup().await.unwrap();
    assert_eq!(figures(s, &all).await, before);
}

async fn workflows_register_update_and_need_an_active_owner(t: TestStore) {
    let s: &dyn Store = &*t.store;
    let alice = human(s, "alice").await;
    let bob = human(s, "bob").await;
    let (wf, created) = s.register_workflow(&now(), &workflow(alice)).await.unwrap();
    assert!(created);
    let mut changed = workflow(bob);
    changed.baseline_minutes = 30;
    let (again, created) = s.register_workflow(&at(T0 + 1), &changed).await.unwrap();
    assert!(!created);
    assert_eq!(again.created_at, wf.created_at);
    assert_eq!(again.def.baseline_minutes, 30);
    assert_eq!(s.list_workflows().await.unwrap(), vec![again]);
    s.deactivate_human(&now(), alice).await.unwrap();
    let e = s
        .register_workflow(&now(), &workflow(alice))
        .await
        .unwrap_err();
    assert!(is_transition(&e), "{e:?}");
    let mut bad = workflow(bob);
    bad.baseline_minutes = 0;
    assert!(s.register_workflow(&now(), &bad).await.is_err());
    assert_eq!(s.policy_activations().await.unwrap(), vec![]);
}

mandate_store::backend_tests!(
    outcomes_are_classified_from_the_record,
    a_retry_returns_the_first_report_and_counts_as_a_duplicate,
    a_key_reported_concurrently_counts_once,
    tallies_are_exact_for_any_period,
    workflows_register_update_and_need_an_active_owner,
);
