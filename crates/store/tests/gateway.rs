//! The gateway's state on both backends: secrets are stored sealed, rotate
//! with a new version and an audit event that never carries the value; a
//! call through the gateway lands in the verified log.

use mandate_core::audit::EventKind;
use mandate_core::ids::DecisionId;
use mandate_core::sealed::MasterKey;
use mandate_core::secret::{SealedSecret, SecretName, SecretValue};
use mandate_core::tool_call::{CallStatus, Channel, ToolCall};
use mandate_store::Store;
use mandate_store::testing::TestStore;
use uuid::Uuid;

mod common;
use common::*;

fn sealed(name: &str, value: &str, nonce: u8) -> SealedSecret {
    SealedSecret::seal(
        &MasterKey::from_bytes([3; 32]),
        SecretName::parse(name).unwrap(),
        &SecretValue::new(value.into()).unwrap(),
        [nonce; 12],
    )
}

async fn secrets_rotate_with_versions_and_never_log_values(t: TestStore) {
    let s = t.store.as_ref();
    let from = s.audit_len().await.unwrap();
    let name = SecretName::parse("billing-key").unwrap();
    assert!(s.secret(&name).await.unwrap().is_none());

    let first = s
        .store_secret(&at(1_000), &sealed("billing-key", "sk_one", 1))
        .await
        .unwrap();
    assert_eq!(
        (first.version, first.created_at, first.rotated_at),
        (1, ts(1_000), ts(1_000))
    );
    let second = s
        .store_secret(&at(2_000), &sealed("billing-key", "sk_two", 2))
        .await
        .unwrap();
    assert_eq!(
        (second.version, second.created_at, second.rotated_at),
        (2, ts(1_000), ts(2_000))
    );

    let (stored, info) = s.secret(&name).await.unwrap().unwrap();
    assert_eq!(info, second);
    let master = MasterKey::from_bytes([3; 32]);
    assert_eq!(stored.open(&master).unwrap().expose(), "sk_two");
    assert_eq!(s.list_secrets().await.unwrap(), vec![second]);

    let events = events_from(s, from).await;
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::SecretStored, EventKind::SecretRotated]);
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        !text.contains("sk_one") && !text.contains("sk_two"),
        "{text}"
    );
    assert!(
        !text.contains(&stored.sealed),
        "the sealed blob is in the log"
    );
    verified(s).await;
}

async fn concurrent_rotations_each_get_their_own_version(t: TestStore) {
    let s = t.store.clone();
    let mut joins = Vec::new();
    for i in 0..8u8 {
        let s = s.clone();
        joins.push(tokio::spawn(async move {
            s.store_secret(&now(), &sealed("race", &format!("v{i}"), i))
                .await
                .unwrap()
                .version
        }));
    }
    let mut versions = Vec::new();
    for j in joins {
        versions.push(j.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, (1..=8).collect::<Vec<u32>>());
}

async fn tool_calls_are_logged_against_their_task(t: TestStore) {
    let s = t.store.as_ref();
    let alice = human(s, "alice").await;
    let bot = agent(s, "gw-bot", alice).await;
    let task = root(s, alice, &bot).await;
    let call = ToolCall {
        decision: DecisionId::from_uuid(Uuid::now_v7()),
        task: task.id,
        agent: bot.id,
        channel: Channel::Mcp,
        upstream: "crm".into(),
        target: "lookup_customer".into(),
        status: CallStatus::Unreachable {
            error: "connection refused".into(),
        },
        duration_us: 812,
        arguments: None,
        result: None,
    };
    let index = s.record_tool_call(&now(), &call).await.unwrap();
    let event = events_from(s, index).await.remove(0);
    assert_eq!(event.kind, EventKind::GatewayCall);
    assert_eq!((event.task, event.agent), (Some(task.id), Some(bot.id)));
    assert_eq!(
        serde_json::from_value::<ToolCall>(event.details).unwrap(),
        call
    );
    verified(s).await;
}

fn call_record(task: &mandate_core::task::Task, n: u64) -> ToolCall {
    ToolCall {
        decision: DecisionId::from_uuid(Uuid::now_v7()),
        task: task.id,
        agent: task.assignee,
        channel: Channel::Mcp,
        upstream: "crm".into(),
        target: format!("call-{n}"),
        status: CallStatus::Unreachable {
            error: "connection refused".into(),
        },
        duration_us: n,
        arguments: None,
        result: None,
    }
}

/// Call records are appends with no statement of their own (on SQLite they
/// wait in the group-commit batch for one multi-row insert): mixed into busy
/// batches with writes that are refused half-way and with a retried outcome
/// that reads an entry of its own batch, every acknowledged record is in the
/// log at the index it was given, nothing refused is, and the log verifies.
async fn call_records_in_busy_batches_keep_the_log_exact(t: TestStore) {
    let s = t.store.clone();
    let alice = human(&*s, "alice").await;
    let bot = agent(&*s, "gw-bot", alice).await;
    let task = root(&*s, alice, &bot).await;
    let from = s.audit_len().await.unwrap();
    let mut joins = Vec::new();
    for i in 0..150u64 {
        let s = s.clone();
        let task = task.clone();
        joins.push(tokio::spawn(async move {
            match i % 3 {
                0 => {
                    let call = call_record(&task, i);
                    let index = s.record_tool_call(&now(), &call).await.unwrap();
                    Some((index, call))
                }
                // Every other one repeats a subject: refused after its savepoint began.
                1 => {
                    let subject = format!("user{}", i - i % 6);
                    let _ = s
                        .create_human(
                            &now(),
                            mandate_core::ids::HumanId::from_uuid(Uuid::now_v7()),
                            &mandate_core::human::NewHuman {
                                issuer: "https://idp.acme.example".into(),
                                subject: subject.clone(),
                                display_name: subject,
                                email: None,
                                roles: Default::default(),
                            },
                        )
                        .await;
                    None
                }
                _ => {
                    // The caller gives up while queued or mid-batch: the record,
                    // once queued, is the drainer's and may still be kept, whole.
                    let call = call_record(&task, i);
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_micros(i * 7 % 300),
                        s.record_tool_call(&now(), &call),
                    )
                    .await;
                    None
                }
            }
        }));
    }
    let mut acked = Vec::new();
    for j in joins {
        if let Some(r) = j.await.unwrap() {
            acked.push(r);
        }
    }
    assert_eq!(acked.len(), 50);
    let events = events_from(&*s, from).await;
    for (index, call) in &acked {
        let e = &events[(*index - from) as usize];
        assert_eq!(e.kind, EventKind::GatewayCall);
        assert_eq!(
            serde_json::from_value::<ToolCall>(e.details.clone()).unwrap(),
            *call
        );
    }
    let humans = events
        .iter()
        .filter(|e| e.kind == EventKind::HumanRegistered)
        .count();
    let calls = events
        .iter()
        .filter(|e| e.kind == EventKind::GatewayCall)
        .count();
    // 50 creations of 25 distinct subjects: 25 kept. Cancelled records may
    // or may not have been acknowledged before the timeout, but each one in
    // the log is whole and in order.
    assert_eq!(humans, 25);
    assert!((50..=100).contains(&calls), "{calls}");
    assert_eq!(events.len(), humans + calls);
    verified(&*s).await;
}

mandate_store::backend_tests!(
    secrets_rotate_with_versions_and_never_log_values,
    concurrent_rotations_each_get_their_own_version,
    tool_calls_are_logged_against_their_task,
    call_records_in_busy_batches_keep_the_log_exact,
);
