//! One conformance suite for every storage backend.
//!
//! Each case is an async fn taking a fresh [`TestStore`]; the macro at the
//! bottom runs every case once on SQLite and once on PostgreSQL, so the test
//! names (`sqlite::…`, `postgres::…`) show both backends ran.

use std::collections::{BTreeSet, HashSet};

use ed25519_dalek::SigningKey;
use mandate_core::RuleError;
use mandate_core::admin::AdminToken;
use mandate_core::agent::{AgentKind, AgentStatus, Lifecycle, NewAgent};
use mandate_core::audit::checkpoint::{NoteSigner, NoteVerifier};
use mandate_core::audit::merkle::MerkleTree;
use mandate_core::audit::verify::VerifyError;
use mandate_core::audit::{Actor, EventKind, LogEntry};
use mandate_core::human::{HumanStatus, NewHuman};
use mandate_core::ids::{AdminCredentialId, AgentId, AgentName, HumanId, SpiffeId, TrustDomain};
use mandate_core::jwk::Ed25519Jwk;
use mandate_core::scope::{Grant, Scope};
use mandate_core::time::Timestamp;
use mandate_store::testing::{TestStore, execute_raw};
use mandate_store::{
    AgentFilter, Change, HumanFilter, Installation, PageRequest, SigningKeyRecord, Store,
    StoreError, log,
};
use uuid::Uuid;

const ORIGIN: &str = "acme.example/mandate/audit";

fn change() -> Change {
    Change {
        actor: Actor::System,
        at: Timestamp::from_millis(1_800_000_000_000),
        request_id: Some("req-1".into()),
    }
}

fn hid() -> HumanId {
    HumanId::from_uuid(Uuid::now_v7())
}

fn aid() -> AgentId {
    AgentId::from_uuid(Uuid::now_v7())
}

fn td() -> TrustDomain {
    TrustDomain::parse("acme.example").unwrap()
}

fn jwk(seed: u8) -> Ed25519Jwk {
    Ed25519Jwk::from_verifying_key(&SigningKey::from_bytes(&[seed; 32]).verifying_key(), None)
}

async fn human(s: &dyn Store, subject: &str) -> HumanId {
    let id = hid();
    let new = NewHuman {
        issuer: "https://idp.acme.example".into(),
        subject: subject.into(),
        display_name: subject.to_uppercase(),
        email: Some(format!("{subject}@acme.example")),
        roles: Default::default(),
    };
    s.create_human(&change(), id, &new).await.unwrap();
    id
}

fn new_agent(name: &str, owner: HumanId) -> NewAgent {
    NewAgent {
        name: AgentName::parse(name).unwrap(),
        kind: AgentKind::Agent,
        owner,
        description: format!("{name} does things"),
        ceiling: Scope::new([Grant::new("invoice.*", "erp:invoices/*").unwrap()]).unwrap(),
        keys: vec![jwk(1)],
        tools: vec!["search".into()],
        data_sources: vec!["erp".into()],
        tags: BTreeSet::from(["team:finance".to_owned()]),
    }
}

async fn register(
    s: &dyn Store,
    name: &str,
    owner: HumanId,
) -> Result<mandate_core::agent::Agent, StoreError> {
    let new = new_agent(name, owner);
    let spiffe = SpiffeId::for_agent(&td(), new.kind, &new.name);
    s.create_agent(&change(), aid(), &spiffe, &new).await
}

fn signer(seed: u8) -> NoteSigner {
    NoteSigner::new(ORIGIN.into(), SigningKey::from_bytes(&[seed; 32])).unwrap()
}

async fn verify(
    s: &dyn Store,
    trusted: Option<&mandate_core::audit::checkpoint::SignedCheckpoint>,
) -> Result<u64, VerifyError> {
    let verifiers: Vec<NoteVerifier> = vec![signer(1).verifier()];
    log::verify(s, ORIGIN, &verifiers, trusted)
        .await
        .unwrap()
        .map(|r| r.entries)
}

fn is_rule(e: &StoreError) -> bool {
    matches!(e, StoreError::Rule(_))
}

// ---- cases ---------------------------------------------------------------------

async fn initialises_once(t: TestStore) {
    let s = &*t.store;
    assert!(s.installation().await.unwrap().is_none());
    let token = AdminToken::from_parts(AdminCredentialId::from_uuid(Uuid::now_v7()), [5; 32]);
    let install = Installation {
        trust_domain: td(),
        issuer: "https://mandate.acme.example".into(),
        log_origin: ORIGIN.into(),
        created_at: change().at,
    };
    let key = SigningKeyRecord {
        kid: "k1".into(),
        public_key: "pk".into(),
        sealed_private: "sealed".into(),
        created_at: change().at,
        active: true,
        retired_at: None,
    };
    s.initialize(&install, (token.id(), token.hash()), &key)
        .await
        .unwrap();
    assert_eq!(s.installation().await.unwrap().unwrap(), install);
    assert!(token.matches(&s.admin_credential(token.id()).await.unwrap().unwrap()));
    assert!(
        s.admin_credential(AdminCredentialId::from_uuid(Uuid::now_v7()))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.signing_keys().await.unwrap(), vec![key.clone()]);
    let again = s
        .initialize(&install, (token.id(), token.hash()), &key)
        .await
        .unwrap_err();
    assert!(
        matches!(again, StoreError::Rule(RuleError::Conflict(_))),
        "{again}"
    );
    assert_eq!(
        s.audit_len().await.unwrap(),
        2,
        "init writes its two events, the refused re-init none"
    );
}

async fn humans_are_unique_per_issuer_and_subject(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let got = s.human(alice).await.unwrap().unwrap();
    assert_eq!(
        (got.display_name.as_str(), got.status),
        ("ALICE", HumanStatus::Active)
    );
    let dup = NewHuman {
        issuer: got.issuer.clone(),
        subject: "alice".into(),
        display_name: "A2".into(),
        email: None,
        roles: Default::default(),
    };
    assert!(is_rule(
        &s.create_human(&change(), hid(), &dup).await.unwrap_err()
    ));
    let bad = NewHuman {
        issuer: "not a url".into(),
        subject: "x".into(),
        display_name: "X".into(),
        email: None,
        roles: Default::default(),
    };
    assert!(is_rule(
        &s.create_human(&change(), hid(), &bad).await.unwrap_err()
    ));
    assert_eq!(
        s.audit_len().await.unwrap(),
        1,
        "refused registrations leave no trace"
    );
    assert!(s.human(hid()).await.unwrap().is_none());
}

async fn an_agent_needs_an_active_owner(t: TestStore) {
    let s = &*t.store;
    let unknown = register(s, "ghost-owned", hid()).await.unwrap_err();
    assert!(unknown.to_string().contains("no human"), "{unknown}");
    let bob = human(s, "bob").await;
    s.deactivate_human(&change(), bob).await.unwrap();
    let gone = register(s, "orphan-at-birth", bob).await.unwrap_err();
    assert!(gone.to_string().contains("deactivated"), "{gone}");
    assert_eq!(
        s.list_agents(&AgentFilter::default(), &PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        0
    );
}

async fn registers_and_reads_an_agent(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let a = register(s, "research", alice).await.unwrap();
    assert_eq!(a.spiffe_id.as_str(), "spiffe://acme.example/agent/research");
    assert_eq!(
        (a.status, a.orphaned, a.owner),
        (AgentStatus::Active, false, alice)
    );
    assert_eq!(a.keys.len(), 1);
    assert_eq!(s.agent(a.id).await.unwrap().unwrap(), a);
    assert_eq!(s.agent_by_name(&a.name).await.unwrap().unwrap(), a);
    let dup = register(s, "research", alice).await.unwrap_err();
    assert!(dup.to_string().contains("already taken"), "{dup}");
}

async fn retired_is_terminal_and_its_name_never_reused(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let a = register(s, "procurement", alice).await.unwrap();
    let a1 = s
        .change_agent_lifecycle(&change(), a.id, Lifecycle::Suspend)
        .await
        .unwrap();
    assert_eq!(a1.status, AgentStatus::Suspended);
    assert_eq!(
        s.change_agent_lifecycle(&change(), a.id, Lifecycle::Resume)
            .await
            .unwrap()
            .status,
        AgentStatus::Active
    );
    assert_eq!(
        s.change_agent_lifecycle(&change(), a.id, Lifecycle::Retire)
            .await
            .unwrap()
            .status,
        AgentStatus::Retired
    );
    for op in [Lifecycle::Resume, Lifecycle::Suspend, Lifecycle::Retire] {
        assert!(is_rule(
            &s.change_agent_lifecycle(&change(), a.id, op)
                .await
                .unwrap_err()
        ));
    }
    let carol = human(s, "carol").await;
    assert!(is_rule(
        &s.transfer_agent(&change(), a.id, carol).await.unwrap_err()
    ));
    assert!(is_rule(
        &s.add_agent_key(&change(), a.id, &jwk(2)).await.unwrap_err()
    ));
    let reuse = register(s, "procurement", alice).await.unwrap_err();
    assert!(reuse.to_string().contains("never reused"), "{reuse}");
    assert_eq!(
        s.agent(a.id).await.unwrap().unwrap().status,
        AgentStatus::Retired
    );
}

async fn deactivating_an_owner_orphans_until_transfer(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let bob = human(s, "bob").await;
    let a = register(s, "code", alice).await.unwrap();
    let b = register(s, "orchestrator", bob).await.unwrap();
    s.deactivate_human(&change(), alice).await.unwrap();
    assert!(is_rule(
        &s.deactivate_human(&change(), alice).await.unwrap_err()
    ));
    assert!(s.agent(a.id).await.unwrap().unwrap().orphaned);
    assert!(!s.agent(b.id).await.unwrap().unwrap().orphaned);
    let orphans = s
        .list_agents(
            &AgentFilter {
                orphaned: Some(true),
                ..Default::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        orphans.items.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![a.id]
    );
    // Only to an active human.
    assert!(is_rule(
        &s.transfer_agent(&change(), a.id, alice).await.unwrap_err()
    ));
    let moved = s.transfer_agent(&change(), a.id, bob).await.unwrap();
    assert_eq!((moved.owner, moved.orphaned), (bob, false));
    let listed = s
        .list_humans(
            &HumanFilter {
                status: Some(HumanStatus::Deactivated),
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
}

async fn keys_rotate_by_add_then_remove(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let a = register(s, "keyed", alice).await.unwrap();
    let a = s.add_agent_key(&change(), a.id, &jwk(2)).await.unwrap();
    assert_eq!(a.keys.len(), 2);
    assert!(is_rule(
        &s.add_agent_key(&change(), a.id, &jwk(2)).await.unwrap_err()
    ));
    let old = a.keys[0].kid.clone();
    let a = s.remove_agent_key(&change(), a.id, &old).await.unwrap();
    assert_eq!(
        a.keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>(),
        vec![jwk(2).kid().to_owned()]
    );
    assert!(is_rule(
        &s.remove_agent_key(&change(), a.id, &old).await.unwrap_err()
    ));
}

async fn filters_and_pages_without_gaps_or_repeats(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let bob = human(s, "bob").await;
    for i in 0..7 {
        register(
            s,
            &format!("agent-{i}"),
            if i % 2 == 0 { alice } else { bob },
        )
        .await
        .unwrap();
    }
    let mut seen = HashSet::new();
    let mut page = PageRequest {
        after: None,
        limit: 3,
    };
    let mut pages = 0;
    loop {
        let p = s.list_agents(&AgentFilter::default(), &page).await.unwrap();
        pages += 1;
        assert!(p.items.len() <= 3);
        for a in &p.items {
            assert!(seen.insert(a.id), "agent {} listed twice", a.name);
        }
        match p.next {
            Some(n) => page.after = Some(n),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (7, 3));
    let by_owner = AgentFilter {
        owner: Some(alice),
        ..Default::default()
    };
    assert_eq!(
        s.list_agents(&by_owner, &PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        4
    );
    let by_tag = AgentFilter {
        tag: Some("team:finance".into()),
        kind: Some(AgentKind::Agent),
        ..Default::default()
    };
    assert_eq!(
        s.list_agents(&by_tag, &PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        7
    );
    // '_' must not act as a LIKE wildcard or similar: exact tag match only.
    let near = AgentFilter {
        tag: Some("team_finance".into()),
        ..Default::default()
    };
    assert_eq!(
        s.list_agents(&near, &PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        0
    );
}

async fn every_change_is_audited_in_order(t: TestStore) {
    let s = &*t.store;
    let alice = human(s, "alice").await;
    let a = register(s, "audited", alice).await.unwrap();
    s.change_agent_lifecycle(&change(), a.id, Lifecycle::Suspend)
        .await
        .unwrap();
    let _ = register(s, "audited", alice).await.unwrap_err();
    let rows = s.audit_entries(0, 100).await.unwrap();
    let kinds: Vec<EventKind> = rows
        .iter()
        .map(|r| {
            serde_json::from_str::<LogEntry>(&r.entry)
                .unwrap()
                .event
                .kind
        })
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::HumanRegistered,
            EventKind::AgentRegistered,
            EventKind::AgentSuspended
        ]
    );
    assert_eq!(rows.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 1, 2]);
    // The leaf hashes alone (what keeps the Merkle tree in step) are the
    // entries' own, in order, page by page.
    let leaves: Vec<_> = rows.iter().map(|r| r.leaf_hash).collect();
    assert_eq!(s.audit_leaf_hashes(0, 100).await.unwrap(), leaves);
    assert_eq!(s.audit_leaf_hashes(1, 1).await.unwrap(), leaves[1..2]);
    assert_eq!(s.audit_leaf_hashes(2, 100).await.unwrap(), leaves[2..]);
    assert!(s.audit_leaf_hashes(3, 100).await.unwrap().is_empty());
    let entry: LogEntry = serde_json::from_str(&rows[1].entry).unwrap();
    assert_eq!(
        (entry.event.agent, entry.event.human),
        (Some(a.id), Some(alice))
    );
    assert_eq!(entry.event.request_id.as_deref(), Some("req-1"));
    assert_eq!(verify(s, None).await, Ok(3));
}

async fn concurrent_writers_keep_the_log_dense(t: TestStore) {
    let store = t.store.clone();
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move { human(&*s, &format!("user{i}")).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut tree = MerkleTree::new();
    log::checkpoint(&*store, &mut tree, &signer(1), ORIGIN, change().at)
        .await
        .unwrap();
    assert_eq!(verify(&*store, None).await, Ok(24));
}

/// Under concurrency (on SQLite, many writes share one group-committed
/// transaction), a refused write takes nothing else down with it: exactly
/// the good writes are kept, each with its one audit event.
async fn refused_writes_in_a_busy_batch_lose_nothing_else(t: TestStore) {
    let store = t.store.clone();
    // Every third subject repeats an earlier one: a unique violation mid-batch.
    let tasks: Vec<_> = (0..90)
        .map(|i| {
            let s = store.clone();
            let subject = if i % 3 == 2 {
                format!("user{}", i - 2)
            } else {
                format!("user{i}")
            };
            tokio::spawn(async move {
                let new = NewHuman {
                    issuer: "https://idp.acme.example".into(),
                    subject: subject.clone(),
                    display_name: subject,
                    email: None,
                    roles: Default::default(),
                };
                let id = hid();
                s.create_human(&change(), id, &new).await.map(|_| id)
            })
        })
        .collect();
    let mut kept = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(id) => kept.push(id),
            Err(StoreError::Rule(RuleError::Conflict(_))) => refused += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((kept.len(), refused), (60, 30));
    for id in &kept {
        assert!(
            store.human(*id).await.unwrap().is_some(),
            "an acknowledged write is missing"
        );
    }
    assert_eq!(store.audit_len().await.unwrap(), 60);
    assert_eq!(verify(&*store, None).await, Ok(60));
}

// ---- tampering: the attacker has write access to the database ------------------

async fn tampered(t: &TestStore, n: usize) -> mandate_core::audit::checkpoint::SignedCheckpoint {
    for i in 0..n {
        human(&*t.store, &format!("t{i}")).await;
    }
    let mut tree = MerkleTree::new();
    log::checkpoint(&*t.store, &mut tree, &signer(1), ORIGIN, change().at)
        .await
        .unwrap()
}

async fn detects_a_changed_field(t: TestStore) {
    tampered(&t, 5).await;
    execute_raw(
        &t.store,
        "UPDATE audit_log SET entry = REPLACE(entry, 'T2', 'MALLORY') WHERE idx = 2",
    )
    .await;
    assert!(matches!(
        verify(&*t.store, None).await,
        Err(VerifyError::Entry { position: 2, .. })
    ));
}

async fn detects_a_changed_field_with_recomputed_hash(t: TestStore) {
    tampered(&t, 5).await;
    let row = t.store.audit_entries(4, 1).await.unwrap().remove(0);
    let forged = row.entry.replace("T4", "MALLORY");
    let hash =
        mandate_core::audit::to_hex(&mandate_core::audit::merkle::leaf_hash(forged.as_bytes()));
    let sql = format!(
        "UPDATE audit_log SET entry = '{}', leaf_hash = '{hash}' WHERE idx = 4",
        forged.replace('\'', "''")
    );
    execute_raw(&t.store, &sql).await;
    assert!(matches!(
        verify(&*t.store, None).await,
        Err(VerifyError::Checkpoint { size: 5, .. })
    ));
}

async fn detects_a_deleted_event(t: TestStore) {
    tampered(&t, 5).await;
    execute_raw(&t.store, "DELETE FROM audit_log WHERE idx = 1").await;
    assert!(matches!(
        verify(&*t.store, None).await,
        Err(VerifyError::Entry { position: 1, .. })
    ));
}

async fn detects_swapped_events(t: TestStore) {
    tampered(&t, 5).await;
    execute_raw(&t.store, "UPDATE audit_log SET idx = -1 WHERE idx = 1").await;
    execute_raw(&t.store, "UPDATE audit_log SET idx = 1 WHERE idx = 3").await;
    execute_raw(&t.store, "UPDATE audit_log SET idx = 3 WHERE idx = -1").await;
    assert!(matches!(
        verify(&*t.store, None).await,
        Err(VerifyError::Entry { position: 1, .. })
    ));
}

async fn detects_a_forged_insert(t: TestStore) {
    tampered(&t, 5).await;
    // Shift the tail up and slot a copy of another entry in.
    for i in (2..5).rev() {
        execute_raw(
            &t.store,
            &format!("UPDATE audit_log SET idx = {} WHERE idx = {i}", i + 1),
        )
        .await;
    }
    execute_raw(
        &t.store,
        "INSERT INTO audit_log (idx, kind, at, agent_id, human_id, leaf_hash, entry) \
         SELECT 2, kind, at, agent_id, human_id, leaf_hash, entry FROM audit_log WHERE idx = 0",
    )
    .await;
    assert!(matches!(
        verify(&*t.store, None).await,
        Err(VerifyError::Entry { position: 2, .. })
    ));
}

async fn detects_a_truncated_tail(t: TestStore) {
    tampered(&t, 5).await;
    execute_raw(&t.store, "DELETE FROM audit_log WHERE idx >= 3").await;
    assert_eq!(
        verify(&*t.store, None).await,
        Err(VerifyError::Truncated {
            entries: 3,
            size: 5
        })
    );
}

async fn detects_a_checkpoint_signed_by_another_key(t: TestStore) {
    tampered(&t, 3).await;
    execute_raw(&t.store, "DELETE FROM audit_checkpoints").await;
    let mut tree = MerkleTree::new();
    log::checkpoint(&*t.store, &mut tree, &signer(9), ORIGIN, change().at)
        .await
        .unwrap();
    assert!(matches!(
        verify(&*t.store, None).await,
        Err(VerifyError::Checkpoint { size: 3, .. })
    ));
}

async fn detects_a_rollback_to_an_older_prefix(t: TestStore) {
    // The auditor keeps the checkpoint at size 6; the attacker rolls the
    // database back to the size-4 state (entries and checkpoints).
    let kept = tampered(&t, 6).await;
    execute_raw(&t.store, "DELETE FROM audit_log WHERE idx >= 4").await;
    execute_raw(&t.store, "DELETE FROM audit_checkpoints").await;
    let mut tree = MerkleTree::new();
    log::checkpoint(&*t.store, &mut tree, &signer(1), ORIGIN, change().at)
        .await
        .unwrap();
    assert_eq!(
        verify(&*t.store, None).await,
        Ok(4),
        "without the kept checkpoint the prefix looks fine"
    );
    assert_eq!(
        verify(&*t.store, Some(&kept)).await,
        Err(VerifyError::Truncated {
            entries: 4,
            size: 6
        })
    );
}

mandate_store::backend_tests!(
    initialises_once,
    humans_are_unique_per_issuer_and_subject,
    an_agent_needs_an_active_owner,
    registers_and_reads_an_agent,
    retired_is_terminal_and_its_name_never_reused,
    deactivating_an_owner_orphans_until_transfer,
    keys_rotate_by_add_then_remove,
    filters_and_pages_without_gaps_or_repeats,
    every_change_is_audited_in_order,
    concurrent_writers_keep_the_log_dense,
    refused_writes_in_a_busy_batch_lose_nothing_else,
    detects_a_changed_field,
    detects_a_changed_field_with_recomputed_hash,
    detects_a_deleted_event,
    detects_swapped_events,
    detects_a_forged_insert,
    detects_a_truncated_tail,
    detects_a_checkpoint_signed_by_another_key,
    detects_a_rollback_to_an_older_prefix,
);
